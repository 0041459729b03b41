// The dispatchers' console (/console): the alert queue, most urgent first, live.
//
// The queue comes from GET /v1/alerts (filters: status, kind, the map's visible area) and
// is asked again whenever the live feed (/v1/live, the dispatcher's area) says an alert
// changed, and every 20 s besides. Opening an alert reads GET /v1/alerts/{id} (route,
// track, traveller, history) and the trip (corridor, position now) while the dispatcher may
// see it. Every step (acknowledge, dispatch, resolve) asks for a note and goes through the
// API; the view then shows what the API says.

import { ApiError, api, forgetToken, goToLogin, savedToken } from "./api.js";
import {
  ACTION,
  ALERT_KIND,
  ALERT_STATUS,
  LIVE_ALERT_STATUSES,
  OUTCOME,
  ROLE,
  SEVERITY,
  ago,
  clock,
  dateTime,
  delay,
  distance,
  duration,
  el,
  fact,
  fill,
  percent,
} from "./format.js";
import { FEED_STATE, LiveFeed } from "./live.js";
import { SEVERITY_COLOR, TripLayer, createMap, leafletReady } from "./mapview.js";
import { beep, soundButton } from "./sound.js";

const WORLD = [-180, -90, 180, 90];
const REFRESH_MS = 20_000;
const TICK_MS = 15_000;
const QUEUE_LIMIT = 200;
const SOUNDED_EVENTS = new Set(["raised", "escalated"]);

const $ = (id) => document.getElementById(id);

const state = {
  token: null,
  me: null,
  map: null,
  markers: null,
  alerts: [],
  total: 0,
  selectedId: null,
  detail: null,
  detailLayer: null,
  now: new Map(), // trip id -> {lon, lat, accuracy, status, t}
  feed: null,
  refreshTimer: null,
  action: null,
  loading: false,
  again: false,
};

// -- the queue --------------------------------------------------------------------------------

function queueQuery() {
  const params = new URLSearchParams();
  const status = $("filter-status").value;
  if (status !== "live") params.append("status", status);
  const kind = $("filter-kind").value;
  if (kind) params.append("kind", kind);
  if ($("filter-area").checked && state.map) {
    const b = state.map.getBounds();
    const clamp = (v, lo, hi) => Math.min(hi, Math.max(lo, v));
    params.set(
      "bbox",
      [
        clamp(b.getWest(), -180, 180),
        clamp(b.getSouth(), -90, 90),
        clamp(b.getEast(), -180, 180),
        clamp(b.getNorth(), -90, 90),
      ]
        .map((v) => v.toFixed(5))
        .join(","),
    );
  }
  params.set("limit", String(QUEUE_LIMIT));
  return params;
}

async function loadQueue() {
  if (state.loading) {
    state.again = true;
    return;
  }
  state.loading = true;
  try {
    const answer = await api(`/v1/alerts?${queueQuery()}`, { token: state.token });
    state.alerts = answer.alerts;
    renderCounts(answer.counts_live_by_severity || {});
    state.total = answer.total;
    renderQueue();
    drawMarkers();
    $("queue-error").textContent = "";
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) {
      forgetToken();
      goToLogin("expirada");
      return;
    }
    $("queue-error").textContent = error.message_es || "No se pudo leer la cola.";
  } finally {
    state.loading = false;
  }
  if (state.again) {
    state.again = false;
    loadQueue();
  }
}

function scheduleQueue(delayMs = 150) {
  clearTimeout(state.refreshTimer);
  state.refreshTimer = setTimeout(loadQueue, delayMs);
}

function renderCounts(counts) {
  for (const severity of [4, 3, 2, 1]) {
    const node = $(`count-${severity}`);
    node.textContent = String(counts[String(severity)] || 0);
    node.closest(".count").classList.toggle("is-zero", !counts[String(severity)]);
  }
}

function renderQueue() {
  const list = $("queue");
  const total = state.total;
  $("queue-total").textContent =
    total === 1 ? "1 alerta" : `${total} alertas${total > state.alerts.length ? " (se muestran las primeras)" : ""}`;
  if (!state.alerts.length) {
    fill(list, el("li", { className: "queue-empty", text: "No hay alertas con estos filtros." }));
    return;
  }
  fill(
    list,
    state.alerts.map((a) =>
      el(
        "li",
        {},
        el(
          "button",
          {
            type: "button",
            className: `queue-item sev-${a.severity}${a.id === state.selectedId ? " is-selected" : ""}`,
            dataset: { alertId: a.id, status: a.status },
            "aria-current": a.id === state.selectedId ? "true" : null,
            on: { click: () => select(a.id) },
          },
          el("span", {
            className: `sev-badge sev-${a.severity}`,
            text: SEVERITY[a.severity] || a.severity_label,
          }),
          el(
            "span",
            { className: "q-main" },
            el("span", { className: "q-title", text: a.title || ALERT_KIND[a.kind] || a.kind }),
            el(
              "span",
              { className: "q-who" },
              [a.traveller?.name, a.trip?.label].filter(Boolean).join(" · "),
            ),
          ),
          el(
            "span",
            { className: "q-meta" },
            el("span", {
              className: `status-pill st-${a.status}`,
              text: ALERT_STATUS[a.status] || a.status_label,
            }),
            el("span", { className: "q-age", text: `abierta ${ago(a.opened_at)}` }),
            a.escalations
              ? el("span", {
                  className: "q-esc",
                  text: a.escalations === 1 ? "escaló 1 vez" : `escaló ${a.escalations} veces`,
                })
              : null,
          ),
        ),
      ),
    ),
  );
}

function drawMarkers() {
  if (!state.map) return;
  const L = window.L;
  state.markers.clearLayers();
  for (const a of state.alerts) {
    if (!a.position) continue;
    const [lon, lat] = a.position.coordinates;
    const color = SEVERITY_COLOR[a.severity] || SEVERITY_COLOR[3];
    L.circleMarker([lat, lon], {
      radius: a.id === state.selectedId ? 11 : 8,
      color: "#ffffff",
      weight: 2,
      fillColor: color,
      fillOpacity: 0.95,
    })
      .bindTooltip(el("span", { text: `${a.title} · ${a.traveller?.name || ""}` }))
      .on("click", () => select(a.id))
      .addTo(state.markers);
  }
}

// -- one alert --------------------------------------------------------------------------------

async function select(alertId) {
  state.selectedId = alertId;
  history.replaceState(null, "", `/console?alerta=${encodeURIComponent(alertId)}`);
  renderQueue();
  drawMarkers();
  await loadDetail({ fit: true });
}

async function loadDetail({ fit = false } = {}) {
  const id = state.selectedId;
  if (!id) return;
  let alert;
  try {
    alert = await api(`/v1/alerts/${encodeURIComponent(id)}`, { token: state.token });
  } catch (error) {
    fill($("detail"), el("p", { className: "error", text: error.message_es || "No se pudo leer." }));
    return;
  }
  if (state.selectedId !== id) return;
  state.detail = alert;
  renderDetail(alert);
  drawDetail(alert, fit);
  // The trip's corridor and where it is now, while the dispatcher may see it: only while
  // the alert is live (a resolved alert no longer opens its trip; its record stays).
  if (!LIVE_ALERT_STATUSES.includes(alert.status)) return;
  try {
    const trip = await api(`/v1/trips/${encodeURIComponent(alert.trip.id)}`, {
      token: state.token,
    });
    if (state.selectedId !== id || !state.detailLayer) return;
    state.detailLayer.setCorridor(trip.corridor);
    const off = trip.last_fix ? trip.last_fix.off_route_m : null;
    const node = document.querySelector("[data-role=distance] dd");
    if (node && alert.distance_m === null && off !== null && off !== undefined) {
      node.textContent = `${distance(off)} (ahora)`;
    }
    if (trip.last_fix) {
      const [lon, lat] = trip.last_fix.position.coordinates;
      setNow(alert.trip.id, {
        lon,
        lat,
        accuracy: trip.last_fix.accuracy_m,
        status: trip.route_status,
        t: trip.last_fix.t,
      });
    }
  } catch {
    // The trip just stopped being visible (the alert was closed meanwhile).
  }
}

function setNow(tripId, now) {
  const previous = state.now.get(tripId);
  if (previous && now.t && previous.t && new Date(now.t) < new Date(previous.t)) return;
  state.now.set(tripId, now);
  if (state.detail && state.detail.trip.id === tripId) {
    if (state.detailLayer) state.detailLayer.setPosition(now.lon, now.lat, now.accuracy, now.status);
    const node = document.querySelector("[data-role=position-now] dd");
    if (node) node.textContent = nowText(now);
  }
}

function nowText(now) {
  if (!now) return "—";
  return `${now.lat.toFixed(5)}, ${now.lon.toFixed(5)} (${ago(now.t)})`;
}

function drawDetail(alert, fit) {
  if (!state.map) return;
  if (state.detailLayer) state.detailLayer.remove();
  const layer = new TripLayer(state.map, alert.trip.id, {
    label: alert.traveller?.name || alert.trip.label || "",
  });
  state.detailLayer = layer;
  layer.setRoute(alert.route);
  if (alert.track && alert.track.coordinates.length) layer.setTrack(alert.track.coordinates);
  if (alert.position) {
    const [lon, lat] = alert.position.coordinates;
    layer.setAlert(alert.id, lon, lat, alert.severity, `Al generarse la alerta (${clock(alert.position_at)})`);
  }
  const now = state.now.get(alert.trip.id);
  if (now) layer.setPosition(now.lon, now.lat, now.accuracy, now.status);
  if (fit) layer.focus(16);
}

function renderDetail(a) {
  const live = LIVE_ALERT_STATUSES.includes(a.status);
  const contact = a.traveller?.contact;
  const phone = contact ? contact.replace(/[^0-9+]/g, "") : "";
  const positionAt = a.position
    ? `${a.position.coordinates[1].toFixed(5)}, ${a.position.coordinates[0].toFixed(5)} (${clock(a.position_at)})`
    : "—";
  fill(
    $("detail"),
    el(
      "header",
      { className: "detail-head" },
      el(
        "div",
        {},
        el("h2", { id: "detail-title", text: a.title }),
        el(
          "p",
          { className: "detail-sub" },
          [a.traveller?.name, a.traveller?.profile, a.trip?.label].filter(Boolean).join(" · "),
        ),
      ),
      el(
        "div",
        { className: "detail-pills" },
        el("span", {
          className: `sev-badge sev-${a.severity}`,
          text: `Severidad ${SEVERITY[a.severity] || a.severity_label}`,
        }),
        el("span", {
          className: `status-pill st-${a.status}`,
          "data-role": "alert-status",
          text: ALERT_STATUS[a.status] || a.status_label,
        }),
      ),
    ),
    el("p", { className: "description", text: a.description }),
    el(
      "div",
      { className: "actions", role: "group", "aria-label": "Acciones sobre la alerta" },
      el("button", {
        type: "button",
        className: "btn btn-primary",
        id: "do-acknowledge",
        text: "Atender",
        disabled: a.status !== "open",
        on: { click: () => openAction("acknowledge") },
      }),
      el("button", {
        type: "button",
        className: "btn btn-primary",
        id: "do-dispatch",
        text: "Registrar unidad enviada",
        disabled: !live,
        on: { click: () => openAction("dispatch") },
      }),
      el("button", {
        type: "button",
        className: "btn btn-secondary",
        id: "do-resolve",
        text: "Resolver",
        disabled: !live,
        on: { click: () => openAction("resolve") },
      }),
      el("button", {
        type: "button",
        className: "btn btn-quiet",
        id: "do-cap",
        text: "Exportar CAP",
        on: { click: () => exportCap(a.id) },
      }),
    ),
    el(
      "dl",
      { className: "facts facts-grid" },
      fact("Persona", [a.traveller?.name, a.traveller?.profile].filter(Boolean).join(" · ") || "—"),
      fact(
        "Contacto",
        contact ? el("a", { href: `tel:${phone}`, text: contact }) : "sin contacto registrado",
      ),
      fact("Abierta", `${dateTime(a.opened_at)} (${ago(a.opened_at)})`),
      fact("Distancia a la ruta", distance(a.distance_m), { dataset: { role: "distance" } }),
      fact("Tiempo fuera de ruta", a.time_off_route_s === null ? "—" : duration(a.time_off_route_s)),
      fact("Llegada planeada", clock(a.planned_arrival)),
      fact(
        "Llegada prevista",
        a.predicted_arrival ? `${clock(a.predicted_arrival)} (${delay(a.delay_s)})` : "—",
      ),
      fact(
        "Batería",
        a.battery === null ? "—" : percent(a.battery),
        a.battery !== null && a.battery <= 15 ? { className: "fact is-warn" } : {},
      ),
      fact("Precisión", a.accuracy_m === null ? "—" : distance(a.accuracy_m)),
      fact("Posición al alertar", positionAt),
      fact("Posición ahora", nowText(state.now.get(a.trip.id)), {
        dataset: { role: "position-now" },
      }),
      fact("Unidad", a.unit || "—", { dataset: { role: "unit" } }),
      fact("Resultado", a.outcome ? OUTCOME[a.outcome] || a.outcome : "—"),
      fact("Repeticiones / escalamientos", `${a.count} / ${a.escalations}`),
    ),
    el("h3", { text: "Historial" }),
    el(
      "ol",
      { className: "history", "aria-label": "Historial de la alerta" },
      (a.history || []).map((h) =>
        el(
          "li",
          { dataset: { action: h.action } },
          el("time", { datetime: h.at, text: dateTime(h.at) }),
          el("strong", { text: ACTION[h.action] || h.action }),
          h.by ? el("span", { className: "muted", text: ` por ${h.by}` }) : null,
          h.note ? el("q", { text: h.note }) : null,
        ),
      ),
    ),
  );
}

// -- steps ------------------------------------------------------------------------------------

const STEPS = {
  acknowledge: {
    title: "Atender la alerta",
    help: "Indica que alguien de despacho ya se ocupa. Deja una nota para el registro.",
    submit: "Atender",
    body: (f) => ({ note: f.note }),
  },
  dispatch: {
    title: "Registrar unidad enviada",
    help: "Anota la unidad que va en camino (por ejemplo MOR-114) y cualquier detalle.",
    submit: "Registrar",
    body: (f) => ({ unit: f.unit, note: f.note }),
  },
  resolve: {
    title: "Resolver la alerta",
    help: "Elige cómo terminó y deja una nota. La alerta sale de la cola activa.",
    submit: "Resolver",
    body: (f) => ({ outcome: f.outcome, note: f.note }),
  },
};

function openAction(step) {
  const conf = STEPS[step];
  state.action = step;
  $("action-title").textContent = conf.title;
  $("action-help").textContent = conf.help;
  $("action-submit").textContent = conf.submit;
  $("action-error").textContent = "";
  $("unit-field").hidden = step !== "dispatch";
  $("unit").required = step === "dispatch";
  $("outcome-field").hidden = step !== "resolve";
  $("outcome").required = step === "resolve";
  $("action-form").reset();
  $("action-dialog").showModal();
  (step === "dispatch" ? $("unit") : step === "resolve" ? $("outcome") : $("note")).focus();
}

async function submitAction(event) {
  event.preventDefault();
  const step = state.action;
  const id = state.selectedId;
  if (!step || !id) return;
  const form = $("action-form");
  if (!form.reportValidity()) return;
  const fields = {
    note: $("note").value.trim() || null,
    unit: $("unit").value.trim(),
    outcome: $("outcome").value,
  };
  const button = $("action-submit");
  button.disabled = true;
  try {
    await api(`/v1/alerts/${encodeURIComponent(id)}/${step}`, {
      method: "POST",
      body: STEPS[step].body(fields),
      token: state.token,
    });
    $("action-dialog").close();
    toast(
      { acknowledge: "Alerta atendida.", dispatch: "Unidad registrada.", resolve: "Alerta resuelta." }[
        step
      ],
    );
  } catch (error) {
    $("action-error").textContent = error.message_es || "No se pudo guardar.";
    if (error instanceof ApiError && error.status === 409) {
      await loadDetail();
    }
    return;
  } finally {
    button.disabled = false;
  }
  await Promise.all([loadDetail(), loadQueue()]);
}

async function exportCap(id) {
  try {
    const response = await api(`/v1/alerts/${encodeURIComponent(id)}.cap`, {
      token: state.token,
      raw: true,
    });
    const blob = await response.blob();
    const url = URL.createObjectURL(blob);
    const link = el("a", { href: url, download: `alerta-${id}.xml`, hidden: true });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 30_000);
    toast("Alerta exportada en formato CAP 1.2.");
  } catch (error) {
    toast(error.message_es || "No se pudo exportar.");
  }
}

function toast(text) {
  const node = $("toast");
  node.textContent = text;
  node.hidden = false;
  clearTimeout(node._timer);
  node._timer = setTimeout(() => {
    node.hidden = true;
  }, 4000);
}

// -- live -------------------------------------------------------------------------------------

function onFrame(frame) {
  if (frame.type === "FeatureCollection") {
    for (const f of frame.features) if (f.properties.kind === "position") onPosition(f);
    scheduleQueue();
    return;
  }
  if (frame.type !== "Feature") return;
  const p = frame.properties || {};
  if (p.kind === "position") onPosition(frame);
  else if (p.kind === "alert") {
    scheduleQueue();
    if (SOUNDED_EVENTS.has(p.event)) {
      beep(p.alert && p.alert.severity >= 4 ? 3 : 2);
      flash(p.alert);
    }
    if (p.alert && p.alert.id === state.selectedId) loadDetail();
  }
}

function onPosition(feature) {
  const p = feature.properties;
  const [lon, lat] = feature.geometry.coordinates;
  setNow(p.trip_id, { lon, lat, accuracy: p.accuracy, status: p.route_status, t: p.t });
  if (state.detail && state.detail.trip.id === p.trip_id && state.detailLayer) {
    state.detailLayer.extendTrack(lon, lat);
  }
}

function hideFlash() {
  $("new-alert").hidden = true;
  if (state.map) state.map.invalidateSize();
}

function flash(alert) {
  if (!alert) return;
  const node = $("new-alert");
  fill(
    node,
    el("strong", { text: `Nueva alerta: ${alert.title}` }),
    ` · ${alert.traveller?.name || ""} · severidad ${SEVERITY[alert.severity] || ""}`,
    el(
      "span",
      { className: "banner-actions" },
      el("button", {
        type: "button",
        className: "btn btn-light btn-small",
        text: "Abrir",
        on: {
          click: () => {
            hideFlash();
            select(alert.id);
          },
        },
      }),
      el("button", {
        type: "button",
        className: "btn btn-ghost btn-small",
        text: "Ocultar",
        "aria-label": "Ocultar el aviso de nueva alerta",
        on: { click: hideFlash },
      }),
    ),
  );
  node.hidden = false;
  if (state.map) state.map.invalidateSize();
  document.title = `¡Alerta! ${alert.title} · Consola Sígueme`;
}

// -- start --------------------------------------------------------------------------------------

function fillFilters() {
  const kind = $("filter-kind");
  for (const [value, label] of Object.entries(ALERT_KIND)) {
    kind.append(el("option", { value, text: label }));
  }
  const outcome = $("outcome");
  for (const [value, label] of Object.entries(OUTCOME)) {
    outcome.append(el("option", { value, text: label }));
  }
  for (const id of ["filter-status", "filter-kind", "filter-area"]) {
    $(id).addEventListener("change", () => loadQueue());
  }
}

async function start() {
  soundButton($("sound"));
  state.token = savedToken();
  if (!state.token) {
    goToLogin();
    return;
  }
  try {
    state.me = await api("/v1/me", { token: state.token });
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) {
      forgetToken();
      goToLogin("expirada");
    } else $("queue-error").textContent = error.message_es || "No se pudo cargar.";
    return;
  }
  const me = state.me;
  $("who").textContent = `${me.display_name || me.name} · ${ROLE[me.role] || me.role || ""}`;
  $("logout").addEventListener("click", () => {
    forgetToken();
    location.assign("/entrar");
  });
  if (me.role !== "dispatcher" && me.role !== "admin") {
    fill(
      $("main"),
      el(
        "section",
        { className: "notice", role: "alert" },
        el("h2", { text: "Esta consola es para despacho" }),
        el("p", {
          text: "La consola de alertas es para el personal de despacho de Policía Morelos y la administración de Sígueme. Tu cuenta puede ver sus viajes en el mapa.",
        }),
        el("a", { className: "btn btn-primary", href: "/map", text: "Ir al mapa" }),
      ),
    );
    return;
  }
  fillFilters();
  $("action-form").addEventListener("submit", submitAction);
  $("action-cancel").addEventListener("click", () => $("action-dialog").close());
  if (leafletReady($("map"))) {
    state.map = createMap($("map"), { zoom: 10 });
    state.markers = window.L.featureGroup().addTo(state.map);
    state.map.on("moveend", () => {
      if ($("filter-area").checked) scheduleQueue(300);
    });
  } else {
    $("filter-area").disabled = true;
  }
  await loadQueue();
  const wanted = new URLSearchParams(location.search).get("alerta");
  if (wanted) await select(wanted);
  state.feed = new LiveFeed({
    token: state.token,
    onReady: (feed) => feed.subscribeArea(WORLD),
    onFrame,
    onState: (s) => {
      $("feed-state").textContent = FEED_STATE[s] || s;
      $("feed-state").dataset.state = s;
      if (s === "live") scheduleQueue();
    },
    onAuthLost: () => {
      forgetToken();
      goToLogin("expirada");
    },
  });
  state.feed.start();
  setInterval(loadQueue, REFRESH_MS);
  setInterval(renderQueue, TICK_MS);
  document.body.dataset.ready = "true";
}

start();
