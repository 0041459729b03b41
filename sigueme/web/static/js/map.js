// The live map (/map, /map/trips/{id}) and the share-link page (/s/{token}).
//
// The page asks the API who the viewer is, lists the trips they may see (monitors: shared
// with them; travellers: their own; dispatchers and admins: active), reads each trip
// (plan, last position, progress) and its track, then follows them on /v1/live: positions
// and statuses move the map, alerts appear in a banner with a sound. Nothing is reloaded.

import { ApiError, api, forgetToken, goToLogin, savedToken } from "./api.js";
import {
  ALERT_STATUS,
  LIVE_ALERT_STATUSES,
  ROLE,
  ROUTE_STATUS,
  TRIP_STATUS,
  ago,
  clock,
  delay,
  distance,
  el,
  fact,
  fill,
  percent,
} from "./format.js";
import { FEED_STATE, LiveFeed } from "./live.js";
import { TripLayer, createMap, fitAll, leafletReady } from "./mapview.js";
import { beep, soundButton } from "./sound.js";

const WORLD = [-180, -90, 180, 90];
const MAX_TRIPS = 100;
const RELIST_MS = 60_000;
const TICK_MS = 15_000;
const SOUNDED_EVENTS = new Set(["raised", "escalated"]);

const page = document.body.dataset.page; // "map" or "share"
const $ = (id) => document.getElementById(id);

const state = {
  token: null,
  me: null,
  focus: null, // one trip id (a trip's page, a share link)
  area: false, // dispatchers and admins follow an area, not a list
  map: null,
  feed: null,
  trips: new Map(),
  ended: false,
};

// -- one trip -----------------------------------------------------------------------------

class TripView {
  constructor(id) {
    this.id = id;
    this.label = "";
    this.owner = "";
    this.status = "active";
    this.routeStatus = "pending";
    this.routeLengthM = null;
    this.progressFraction = null;
    this.progressM = null;
    this.predictedArrival = null;
    this.plannedArrival = null;
    this.delayS = null;
    this.battery = null;
    this.accuracy = null;
    this.distanceM = null;
    this.lastT = null;
    this.silenceTimeoutS = null;
    this.alerts = new Map();
    this.layer = state.map ? new TripLayer(state.map, id) : null;
    this.card = el("article", {
      className: "trip-card",
      dataset: { tripId: id },
      "aria-labelledby": `trip-${id}-title`,
    });
    $("trips").append(this.card);
  }

  /** From GET /v1/trips/{id}. */
  fromDetail(trip) {
    this.label = trip.label || "Viaje sin nombre";
    this.owner = trip.owner;
    this.status = trip.status;
    this.routeStatus = trip.route_status;
    this.plannedArrival = trip.plan.arrival;
    this.routeLengthM = trip.plan.route_length_m;
    this.silenceTimeoutS = trip.plan.silence_timeout_s;
    this.predictedArrival = trip.predicted_arrival;
    this.delayS = trip.delay_s;
    if (trip.progress) {
      this.progressM = trip.progress.m;
      this.progressFraction = trip.progress.percent / 100;
    }
    if (this.layer) {
      this.layer.setLabel(this.label);
      this.layer.setRoute(trip.route);
      this.layer.setCorridor(trip.corridor);
    }
    const fix = trip.last_fix;
    if (fix) {
      this.place(fix.position.coordinates, fix.t, {
        accuracy: fix.accuracy_m,
        battery: fix.battery,
        distance_m: fix.off_route_m,
      });
    }
  }

  /** From a snapshot's route feature. */
  fromRouteFeature(feature) {
    const p = feature.properties;
    if (!this.label) this.label = p.label || "Viaje sin nombre";
    this.owner = p.owner || this.owner;
    this.status = p.status;
    this.routeStatus = p.route_status;
    this.plannedArrival = p.arrival;
    this.routeLengthM = p.route_length_m;
    if (this.layer) {
      this.layer.setLabel(this.label);
      this.layer.setRoute(feature.geometry);
    }
  }

  /** A position (or status) update; older than what is shown: ignored. */
  update(feature) {
    const p = feature.properties;
    if (p.t && this.lastT && new Date(p.t) < new Date(this.lastT)) return false;
    this.routeStatus = p.route_status ?? this.routeStatus;
    if (p.progress_fraction !== null && p.progress_fraction !== undefined) {
      this.progressFraction = p.progress_fraction;
      this.progressM = p.progress_m;
    }
    if (p.predicted_arrival !== undefined) this.predictedArrival = p.predicted_arrival;
    if (p.delay_s !== undefined) this.delayS = p.delay_s;
    if (feature.geometry && feature.geometry.type === "Point") {
      this.place(feature.geometry.coordinates, p.t, p, true);
    } else {
      this.render();
    }
    return true;
  }

  place([lon, lat], t, props, extend = false) {
    if (props.battery !== null && props.battery !== undefined) this.battery = props.battery;
    this.accuracy = props.accuracy ?? null;
    if (props.distance_m !== undefined) this.distanceM = props.distance_m;
    const newer = !this.lastT || new Date(t) > new Date(this.lastT);
    this.lastT = t;
    if (this.layer) {
      if (extend && newer) this.layer.extendTrack(lon, lat);
      this.layer.setPosition(lon, lat, this.accuracy, this.shownStatus());
    }
    this.render();
  }

  /** The status to show: the monitor's, or "sin señal" when the phone went quiet. */
  shownStatus(now = Date.now()) {
    if (this.status !== "active") return this.routeStatus === "arrived" ? "arrived" : "pending";
    const silent = [...this.alerts.values()].some(
      (a) => a.kind === "signal_lost" && LIVE_ALERT_STATUSES.includes(a.status),
    );
    const quiet =
      this.lastT &&
      this.silenceTimeoutS &&
      (now - new Date(this.lastT).getTime()) / 1000 > this.silenceTimeoutS;
    if ((silent || quiet) && this.routeStatus !== "arrived") return "signal_lost";
    return this.routeStatus;
  }

  statusText() {
    if (this.status !== "active") return TRIP_STATUS[this.status] || this.status;
    const status = this.shownStatus();
    return ROUTE_STATUS[status] || status;
  }

  render() {
    const status = this.status === "active" ? this.shownStatus() : this.status;
    this.card.dataset.status = status;
    if (this.layer) this.layer.setStatus(this.shownStatus());
    const liveAlerts = [...this.alerts.values()]
      .filter((a) => LIVE_ALERT_STATUSES.includes(a.status))
      .sort((a, b) => b.severity - a.severity);
    const progress =
      this.progressFraction === null ? null : Math.max(0, Math.min(1, this.progressFraction));
    const remaining =
      this.routeLengthM !== null && this.progressM !== null
        ? Math.max(0, this.routeLengthM - this.progressM)
        : null;
    const arrival = this.predictedArrival
      ? [clock(this.predictedArrival), el("span", { className: "sub", text: delay(this.delayS) })]
      : "—";
    fill(
      this.card,
      el(
        "header",
        { className: "trip-head" },
        el("h3", { id: `trip-${this.id}-title`, text: this.label || "Viaje" }),
        el("span", {
          className: `pill status-${status}`,
          text: this.statusText(),
          "data-role": "trip-status",
        }),
      ),
      this.owner ? el("p", { className: "trip-owner", text: `Viaja: ${this.owner}` }) : null,
      el(
        "div",
        { className: "progress-row" },
        el("progress", {
          max: "100",
          value: progress === null ? "0" : String(Math.round(progress * 100)),
          "aria-label": "Avance del viaje",
        }),
        el("span", {
          className: "progress-text",
          "data-role": "trip-progress",
          text: progress === null ? "sin avance aún" : percent(progress * 100),
        }),
      ),
      el(
        "dl",
        { className: "facts" },
        fact("Llegada prevista", arrival, { dataset: { role: "trip-eta" } }),
        fact("Llegada planeada", clock(this.plannedArrival)),
        fact("Falta", distance(remaining)),
        fact(
          "Batería",
          this.battery === null ? "—" : percent(this.battery),
          this.battery !== null && this.battery <= 15 ? { className: "fact is-warn" } : {},
        ),
        fact("Última señal", this.lastT ? ago(this.lastT) : "sin señal aún", {
          dataset: { role: "trip-last" },
        }),
        fact("Precisión", this.accuracy === null ? "—" : distance(this.accuracy)),
      ),
      liveAlerts.length
        ? el(
            "ul",
            { className: "trip-alerts", "aria-label": "Alertas activas del viaje" },
            liveAlerts.map((a) =>
              el(
                "li",
                { className: `sev-${a.severity}`, dataset: { alertId: a.id } },
                el("strong", { text: a.title }),
                " · ",
                ALERT_STATUS[a.status] || a.status_label || a.status,
                " · ",
                clock(a.opened_at),
              ),
            ),
          )
        : null,
      el(
        "div",
        { className: "card-actions" },
        el("button", {
          type: "button",
          className: "btn btn-quiet btn-small",
          text: "Ver en el mapa",
          on: { click: () => this.layer && this.layer.focus(16, true) },
        }),
      ),
    );
  }

  /** An alert of this trip, from the feed or the trip's list. */
  alert(alert, geometry) {
    this.alerts.set(alert.id, alert);
    if (this.layer && geometry && geometry.type === "Point") {
      const [lon, lat] = geometry.coordinates;
      this.layer.setAlert(alert.id, lon, lat, alert.severity, alert.title);
    }
    this.render();
  }

  remove() {
    if (this.layer) this.layer.remove();
    this.card.remove();
  }
}

// -- alerts -----------------------------------------------------------------------------------

function showBanner(alert, event, { sound }) {
  const box = $("banners");
  const previous = box.querySelector(`[data-alert-id="${CSS.escape(alert.id)}"]`);
  const live = LIVE_ALERT_STATUSES.includes(alert.status);
  if (!live) {
    if (previous) {
      const status = previous.querySelector("[data-role=banner-status]");
      if (status) status.textContent = ALERT_STATUS[alert.status] || alert.status;
      previous.classList.add("is-closed");
    }
    return;
  }
  const trip = state.trips.get(alert.trip?.id);
  const banner = el(
    "div",
    {
      className: `banner sev-${alert.severity}`,
      role: "alert",
      dataset: { alertId: alert.id, event },
    },
    el(
      "div",
      { className: "banner-text" },
      el("strong", { className: "banner-title", text: alert.title }),
      el(
        "span",
        { className: "banner-who" },
        [alert.traveller?.name, alert.trip?.label].filter(Boolean).join(" · "),
      ),
      el(
        "span",
        { className: "banner-meta" },
        `Severidad ${alert.severity_label || alert.severity} · desde las ${clock(alert.opened_at)} · `,
        el("span", { "data-role": "banner-status", text: ALERT_STATUS[alert.status] || alert.status }),
      ),
    ),
    el(
      "div",
      { className: "banner-actions" },
      trip
        ? el("button", {
            type: "button",
            className: "btn btn-light btn-small",
            text: "Ver en el mapa",
            on: { click: () => trip.layer && trip.layer.focus(16, true) },
          })
        : null,
      el("button", {
        type: "button",
        className: "btn btn-ghost btn-small",
        text: "Ocultar",
        "aria-label": "Ocultar este aviso",
        on: {
          click: (e) => {
            e.target.closest(".banner").remove();
            resized();
          },
        },
      }),
    ),
  );
  if (previous) previous.replaceWith(banner);
  else box.prepend(banner);
  while (box.children.length > 4) box.lastElementChild.remove();
  resized();
  if (sound) {
    beep(alert.severity >= 4 ? 3 : 2);
    document.title = `¡Alerta! ${alert.title} · Sígueme`;
  }
}

/** The banners push the map down: Leaflet must measure it again. */
function resized() {
  if (state.map) state.map.invalidateSize();
}

function onAlertFeature(feature) {
  const p = feature.properties;
  const alert = p.alert;
  const trip = state.trips.get(p.trip_id);
  if (trip) trip.alert(alert, feature.geometry);
  showBanner(alert, p.event, { sound: SOUNDED_EVENTS.has(p.event) });
}

// -- loading ----------------------------------------------------------------------------------

async function loadTrip(id) {
  let view = state.trips.get(id);
  if (!view) {
    view = new TripView(id);
    state.trips.set(id, view);
  }
  const [trip, track, alerts] = await Promise.all([
    api(`/v1/trips/${encodeURIComponent(id)}`, { token: state.token }),
    api(`/v1/trips/${encodeURIComponent(id)}/track`, { token: state.token }),
    api(`/v1/trips/${encodeURIComponent(id)}/alerts`, { token: state.token }).catch(() => ({
      alerts: [],
    })),
  ]);
  const fixes = track.features.filter(
    (f) => f.properties.kind === "fix" && f.properties.verdict === "accepted",
  );
  if (view.layer) view.layer.setTrack(fixes.map((f) => f.geometry.coordinates));
  view.fromDetail(trip);
  for (const alert of alerts.alerts) {
    view.alert(alert, alert.position);
    if (alert.status === "open") showBanner(alert, "open", { sound: false });
  }
  view.render();
  return view;
}

function dropTrip(id) {
  const view = state.trips.get(id);
  if (view) {
    view.remove();
    state.trips.delete(id);
  }
  notePanel();
}

async function listTrips() {
  const scope = { monitor: "shared", traveller: "mine" }[state.me.role] || "active";
  const answer = await api(`/v1/trips?scope=${scope}&status=active&limit=${MAX_TRIPS}`, {
    token: state.token,
  });
  return answer.trips.map((t) => t.id);
}

async function loadAll(ids) {
  const results = await Promise.allSettled(ids.map((id) => loadTrip(id)));
  results.forEach((result, i) => {
    if (result.status === "rejected") {
      if (result.reason instanceof ApiError && result.reason.status === 401) throw result.reason;
      dropTrip(ids[i]);
    }
  });
}

function notePanel() {
  const note = $("panel-note");
  if (state.trips.size) {
    note.textContent = "";
    return;
  }
  const empty = {
    monitor: "No hay viajes activos compartidos contigo ahora. Esta lista se actualiza sola.",
    traveller: "No tienes viajes activos ahora.",
    dispatcher: "No hay viajes con alertas activas ahora.",
    admin: "No hay viajes activos ahora.",
  };
  note.textContent = state.focus
    ? "Este viaje no existe o ya no tienes acceso a él."
    : empty[state.me?.role] || "";
}

// -- the live feed ----------------------------------------------------------------------------

function onSnapshot(collection) {
  const byTrip = new Map();
  for (const feature of collection.features) {
    const id = feature.properties.trip_id;
    if (!byTrip.has(id)) byTrip.set(id, []);
    byTrip.get(id).push(feature);
  }
  for (const [id, features] of byTrip) {
    let view = state.trips.get(id);
    const fresh = !view;
    if (fresh) {
      view = new TripView(id);
      state.trips.set(id, view);
    }
    for (const feature of features) {
      const kind = feature.properties.kind;
      if (kind === "route") view.fromRouteFeature(feature);
      else if (kind === "corridor" && view.layer) view.layer.setCorridor(feature.geometry);
      else if (kind === "position") view.update(feature);
    }
    view.render();
    // A trip that entered the area: its track and details, in the background.
    if (fresh) loadTrip(id).catch(() => {});
  }
  notePanel();
}

function onFrame(frame) {
  if (frame.type === "FeatureCollection") {
    onSnapshot(frame);
    return;
  }
  if (frame.type === "Feature") {
    const kind = frame.properties?.kind;
    if (kind === "alert") {
      onAlertFeature(frame);
      return;
    }
    const view = state.trips.get(frame.properties?.trip_id);
    if (view && (kind === "position" || kind === "status")) view.update(frame);
    return;
  }
  if (frame.type === "unsubscribed") {
    if (page === "share" && frame.reason === "access ended") {
      linkEnded();
      return;
    }
    if (frame.reason !== "requested") frame.trips.forEach(dropTrip);
  }
}

function follow(feed) {
  if (state.area) feed.subscribeArea(WORLD);
  else if (page !== "share") feed.subscribeTrips([...state.trips.keys()]);
  // A share link is subscribed to its trip by the server at once.
}

function startFeed() {
  state.feed = new LiveFeed({
    token: state.token,
    onReady: follow,
    onFrame,
    onState: (s) => {
      const node = $("feed-state");
      node.textContent = FEED_STATE[s] || s;
      node.dataset.state = s;
    },
    onAuthLost: () => {
      if (page === "share") linkEnded();
      else {
        forgetToken();
        goToLogin("expirada");
      }
    },
  });
  state.feed.start();
}

// -- the share link ---------------------------------------------------------------------------

function linkEnded() {
  if (state.ended) return;
  state.ended = true;
  if (state.feed) state.feed.stop();
  for (const id of [...state.trips.keys()]) dropTrip(id);
  $("banners").replaceChildren();
  document.body.classList.add("is-ended");
  fill(
    $("panel"),
    el(
      "div",
      { className: "ended", role: "alert", "data-role": "link-ended" },
      el("h2", { text: "Este enlace ya no es válido" }),
      el("p", {
        text:
          "El enlace expiró o la persona que viaja lo revocó, así que su ubicación ya no se " +
          "muestra aquí. Si necesitas seguir el viaje, pídele un enlace nuevo.",
      }),
      el("p", {
        className: "muted",
        text: "En una emergencia llama al 911.",
      }),
    ),
  );
  $("feed-state").textContent = "enlace vencido";
  $("feed-state").dataset.state = "closed";
}

function linkToken() {
  const match = location.pathname.match(/^\/s\/([^/]+)$/);
  return match ? decodeURIComponent(match[1]) : null;
}

// -- start --------------------------------------------------------------------------------------

function tripFromPath() {
  const match = location.pathname.match(/^\/map\/trips\/([^/]+)$/);
  return match ? decodeURIComponent(match[1]) : null;
}

async function start() {
  soundButton($("sound"));
  state.token = page === "share" ? linkToken() : savedToken();
  if (!state.token) {
    if (page === "share") linkEnded();
    else goToLogin();
    return;
  }
  try {
    state.me = await api("/v1/me", { token: state.token });
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) {
      if (page === "share") linkEnded();
      else {
        forgetToken();
        goToLogin("expirada");
      }
      return;
    }
    $("panel-note").textContent = error.message_es || "No se pudo cargar.";
    return;
  }
  const me = state.me;
  if (page === "share") {
    if (me.kind !== "link") {
      linkEnded();
      return;
    }
    state.focus = me.trip_id;
  } else {
    if (me.kind === "link") {
      location.replace(`/entrar`);
      return;
    }
    $("who").textContent = `${me.display_name || me.name} · ${ROLE[me.role] || me.role}`;
    $("logout").addEventListener("click", () => {
      forgetToken();
      location.assign("/entrar");
    });
    if (me.role === "dispatcher" || me.role === "admin") $("console-link").hidden = false;
    state.focus = tripFromPath();
    state.area = !state.focus && (me.role === "dispatcher" || me.role === "admin");
  }
  if (leafletReady($("map"))) state.map = createMap($("map"));
  try {
    const ids = state.focus ? [state.focus] : await listTrips();
    await loadAll(ids);
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) {
      if (page === "share") linkEnded();
      else goToLogin("expirada");
      return;
    }
    $("panel-note").textContent = error.message_es || "No se pudo cargar la lista de viajes.";
  }
  if (state.focus) {
    const view = state.trips.get(state.focus);
    if (view && view.layer) view.layer.focus();
    $("panel-title").textContent = view ? "Viaje" : "Viaje no disponible";
  } else if (state.map) {
    fitAll(state.map, [...state.trips.values()].map((v) => v.layer).filter(Boolean));
  }
  notePanel();
  startFeed();
  setInterval(tick, TICK_MS);
  if (!state.focus && !state.area) setInterval(relist, RELIST_MS);
  if (page === "share") setInterval(checkLink, 30_000);
  document.body.dataset.ready = "true";
}

function tick() {
  for (const view of state.trips.values()) view.render();
}

async function relist() {
  try {
    const ids = await listTrips();
    const known = new Set(state.trips.keys());
    const added = ids.filter((id) => !known.has(id));
    for (const id of known) if (!ids.includes(id)) dropTrip(id);
    if (added.length) {
      await loadAll(added);
      state.feed?.subscribeTrips(added);
    }
    notePanel();
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) goToLogin("expirada");
  }
}

async function checkLink() {
  if (state.ended) return;
  try {
    await api("/v1/me", { token: state.token });
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) linkEnded();
  }
}

start();
