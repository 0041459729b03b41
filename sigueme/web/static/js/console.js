// The dispatchers' console (/console): the alert queue, most urgent first, live.
//
// The queue comes from GET /v1/alerts (filters: status, kind, the map's visible area) and
// is asked again whenever the live feed (/v1/live, the dispatcher's area) says an alert
// changed, and every 20 s besides (citizens' reports without a trip have no trip channel on
// the feed: the periodic refresh is how they arrive). Opening an alert reads
// GET /v1/alerts/{id} (route, track, traveller, history) and the trip (corridor, position
// now) while the dispatcher may see it; a report's alert also reads GET /v1/reports/{id}
// (its files with their SHA-256), and each file is fetched with the token only when asked
// for (shown from a blob: URL). Every step (acknowledge, dispatch, resolve; for a report
// also the audited reveal, the FEDE referral and the category) goes through the API in a
// dialog; the view then shows what the API says.

import { ApiError, api, forgetToken, goToLogin, savedToken } from "./api.js";
import {
  ACTION,
  ALERT_KIND,
  ALERT_STATUS,
  LIVE_ALERT_STATUSES,
  MEDIA_KIND,
  OUTCOME,
  POSITION_SOURCE,
  REPORT_CATEGORY,
  REPORT_SOURCE,
  ROLE,
  SEVERITY,
  ago,
  bytes,
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
import { MORELOS, SEVERITY_COLOR, TripLayer, createMap, leafletReady } from "./mapview.js";
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
  mapNote: null,
  report: null, // GET /v1/reports/{id} of the selected report's alert
  reportError: "",
  media: new Map(), // media id -> {url, type, name, verified}: files opened (blob: URLs)
  revealed: null, // the reveal's answer for the selected report
  queueLoaded: false,
  seen: new Set(), // alert ids the queue has shown
  newest: 0, // the latest opened_at the queue has shown (ms)
  now: new Map(), // trip id -> {lon, lat, accuracy, status, t}
  feed: null,
  refreshTimer: null,
  action: null,
  actionAlert: null,
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
    announceNew(answer.alerts);
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

/**
 * A citizen's report without a trip reaches the console only through the queue's refresh
 * (it has no trip channel on the live feed): one that opened since the last look rings and
 * shows the strip, as the feed does for trip alerts.
 */
function announceNew(alerts) {
  const first = !state.queueLoaded;
  state.queueLoaded = true;
  let newest = state.newest;
  for (const a of alerts) {
    const opened = new Date(a.opened_at).getTime() || 0;
    const fresh = !state.seen.has(a.id) && opened > state.newest;
    state.seen.add(a.id);
    newest = Math.max(newest, opened);
    if (!first && fresh && !a.trip && a.status === "open") {
      beep(a.severity >= 4 ? 3 : 2);
      flash(a);
    }
  }
  state.newest = newest;
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
            a.trip || !a.report
              ? el(
                  "span",
                  { className: "q-who" },
                  [a.traveller?.name, a.trip?.label].filter(Boolean).join(" · "),
                )
              : null,
            a.report
              ? el(
                  "span",
                  { className: "q-who q-report", dataset: { role: "report-line" } },
                  reportLine(a.report),
                )
              : null,
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

/** A report's row in the queue: category, folio, channel, source. */
function reportLine(r) {
  return [
    r.category_label || REPORT_CATEGORY[r.category] || r.category,
    r.folio ? `Folio ${r.folio}` : "sin folio",
    r.channel ? `Canal ${r.channel}` : "Cola general",
    REPORT_SOURCE[r.source] ? `vía ${REPORT_SOURCE[r.source]}` : null,
  ]
    .filter(Boolean)
    .join(" · ");
}

function markerLabel(a) {
  if (a.report && !a.trip) {
    return [a.report.category_label, a.report.folio].filter(Boolean).join(" · ");
  }
  return a.traveller?.name || "";
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
      .bindTooltip(el("span", { text: `${a.title} · ${markerLabel(a)}` }))
      .on("click", () => select(a.id))
      .addTo(state.markers);
  }
}

// -- one alert --------------------------------------------------------------------------------

async function select(alertId) {
  if (alertId !== state.selectedId) forgetSelection();
  state.selectedId = alertId;
  history.replaceState(null, "", `/console?alerta=${encodeURIComponent(alertId)}`);
  renderQueue();
  drawMarkers();
  await loadDetail({ fit: true });
}

/** What was opened for the previous alert goes: its files' blob: URLs, who reported it. */
function forgetSelection() {
  for (const entry of state.media.values()) URL.revokeObjectURL(entry.url);
  state.media.clear();
  state.revealed = null;
  state.report = null;
  state.reportError = "";
}

async function loadDetail({ fit = false } = {}) {
  const id = state.selectedId;
  if (!id) return;
  let alert;
  try {
    alert = await api(`/v1/alerts/${encodeURIComponent(id)}`, { token: state.token });
  } catch (error) {
    if (state.selectedId !== id) return;
    fill($("detail"), el("p", { className: "error", text: error.message_es || "No se pudo leer." }));
    return;
  }
  if (state.selectedId !== id) return;
  // A citizen's report: its files (kind, type, size, SHA-256) and its FEDE referral.
  let report = null;
  let reportError = "";
  if (alert.report) {
    try {
      report = await api(`/v1/reports/${encodeURIComponent(alert.report.id)}`, {
        token: state.token,
      });
    } catch (error) {
      reportError = error.message_es || "No se pudo leer el reporte.";
    }
    if (state.selectedId !== id) return;
  }
  state.detail = alert;
  state.report = report;
  state.reportError = reportError;
  renderDetail(alert);
  drawDetail(alert, fit);
  // The trip's corridor and where it is now, while the dispatcher may see it: only while
  // the alert is live (a resolved alert no longer opens its trip; its record stays).
  if (!alert.trip || !LIVE_ALERT_STATUSES.includes(alert.status)) return;
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
  if (state.detail?.trip && state.detail.trip.id === tripId) {
    if (state.detailLayer) state.detailLayer.setPosition(now.lon, now.lat, now.accuracy, now.status);
    const node = document.querySelector("[data-role=position-now] dd");
    if (node) node.textContent = nowText(now);
  }
}

function nowText(now) {
  if (!now) return "—";
  return `${now.lat.toFixed(5)}, ${now.lon.toFixed(5)} (${ago(now.t)})`;
}

function pointText(point, at) {
  if (!point) return "—";
  const [lon, lat] = point.coordinates;
  return `${lat.toFixed(5)}, ${lon.toFixed(5)}${at ? ` (${clock(at)})` : ""}`;
}

function drawDetail(alert, fit) {
  if (!state.map) return;
  const L = window.L;
  if (state.detailLayer) state.detailLayer.remove();
  if (state.mapNote) state.mapNote.remove();
  state.mapNote = null;
  const report = alert.report;
  const layer = new TripLayer(state.map, alert.trip ? alert.trip.id : null, {
    label: alert.traveller?.name || alert.trip?.label || "",
  });
  state.detailLayer = layer;
  if (alert.trip) {
    layer.setRoute(alert.route);
    if (alert.track && alert.track.coordinates.length) layer.setTrack(alert.track.coordinates);
  }
  if (alert.position) {
    const [lon, lat] = alert.position.coordinates;
    const when = clock(alert.position_at);
    layer.setAlert(
      alert.id,
      lon,
      lat,
      alert.severity,
      report ? `Lugar del reporte (${when})` : `Al generarse la alerta (${when})`,
    );
    if (report) {
      L.circleMarker([lat, lon], {
        radius: 7,
        color: "#ffffff",
        weight: 2,
        fillColor: SEVERITY_COLOR[alert.severity] || SEVERITY_COLOR[3],
        fillOpacity: 1,
      })
        .bindTooltip(el("span", { text: report.folio ? `Reporte ${report.folio}` : "Reporte" }), {
          permanent: true,
          // Joined to a trip, the traveller's own label is on the right of the same spot.
          direction: alert.trip ? "left" : "right",
          offset: alert.trip ? [-10, 0] : [10, 0],
        })
        .addTo(layer.group);
    }
  }
  // Where the report's photos say they were taken (their GPS metadata), when they say so.
  for (const [i, m] of (state.report?.media || []).entries()) {
    if (!m.position) continue;
    const [lon, lat] = m.position.coordinates;
    const text = `${MEDIA_KIND[m.kind] || "Archivo"} ${i + 1} (sus metadatos)`;
    L.circleMarker([lat, lon], {
      radius: 5,
      color: "#1d4f8a",
      weight: 2,
      fillColor: "#ffffff",
      fillOpacity: 1,
    })
      .bindTooltip(el("span", { text }), {
        permanent: true,
        direction: "top",
        offset: [0, -6],
        className: "map-tooltip-small",
      })
      .addTo(layer.group);
  }
  if (alert.trip) {
    const now = state.now.get(alert.trip.id);
    if (now) layer.setPosition(now.lon, now.lat, now.accuracy, now.status);
  }
  if (report && !alert.position) showMapNote(report);
  if (fit) {
    if (layer.bounds()) layer.focus(16);
    else state.map.setView(MORELOS, 10, { animate: false });
  }
}

/** On the map: this report has no position, and where it says it happened. */
function showMapNote(report) {
  const L = window.L;
  const Note = L.Control.extend({
    onAdd: () => {
      const node = el(
        "div",
        { className: "map-note", role: "note", dataset: { role: "no-location" } },
        el("strong", { text: "Sin ubicación" }),
        el("span", {
          text: report.place
            ? `Lugar indicado: ${report.place}`
            : "El reporte no trae coordenadas ni un lugar descrito.",
        }),
      );
      L.DomEvent.disableClickPropagation(node);
      return node;
    },
  });
  state.mapNote = new Note({ position: "topright" }).addTo(state.map);
}

function renderDetail(a) {
  const r = a.report;
  const sub = r
    ? [
        r.category_label,
        r.folio ? `Folio ${r.folio}` : null,
        r.channel ? `Canal ${r.channel}` : "Cola general",
        a.trip ? a.traveller?.name : null,
        a.trip?.label,
      ]
    : [a.traveller?.name, a.traveller?.profile, a.trip?.label];
  fill(
    $("detail"),
    el(
      "header",
      { className: "detail-head" },
      el(
        "div",
        {},
        el("h2", { id: "detail-title", text: a.title }),
        el("p", { className: "detail-sub" }, sub.filter(Boolean).join(" · ")),
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
    actions(a),
    r ? reportSection(a, r, state.report) : null,
    a.trip || !r ? tripFacts(a) : null,
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

function actions(a) {
  const live = LIVE_ALERT_STATUSES.includes(a.status);
  const r = a.report;
  const full = state.report;
  const electoral = full ? full.electoral : r?.electoral;
  return el(
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
    r
      ? el("button", {
          type: "button",
          className: "btn btn-secondary",
          id: "do-reveal",
          text: "Ver quién reportó",
          on: { click: () => openAction("reveal") },
        })
      : null,
    r && electoral
      ? el("button", {
          type: "button",
          className: "btn btn-secondary",
          id: "do-fede",
          text: "Turnar a la FEDE",
          disabled: Boolean(full?.referred_fede),
          title: full?.referred_fede ? "Ya se turnó a la FEDE Morelos" : null,
          on: { click: () => openAction("fede") },
        })
      : null,
    r
      ? el("button", {
          type: "button",
          className: "btn btn-quiet",
          id: "do-category",
          text: "Cambiar categoría",
          on: { click: () => openAction("category") },
        })
      : null,
    el("button", {
      type: "button",
      className: "btn btn-quiet",
      id: "do-cap",
      text: "Exportar CAP",
      on: { click: () => exportCap(a.id) },
    }),
  );
}

/** What a trip alert shows: the traveller, the route, the arrival, the phone. */
function tripFacts(a) {
  const contact = a.traveller?.contact;
  const phone = contact ? contact.replace(/[^0-9+]/g, "") : "";
  const tripId = a.trip ? a.trip.id : null;
  return el(
    "dl",
    { className: "facts facts-grid", dataset: { role: "trip-facts" } },
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
    fact("Posición al alertar", pointText(a.position, a.position_at)),
    fact("Posición ahora", nowText(tripId ? state.now.get(tripId) : null), {
      dataset: { role: "position-now" },
    }),
    fact("Unidad", a.unit || "—", { dataset: { role: "unit" } }),
    fact("Resultado", a.outcome ? OUTCOME[a.outcome] || a.outcome : "—"),
    fact("Repeticiones / escalamientos", `${a.count} / ${a.escalations}`),
  );
}

/**
 * A citizen's report: its text (as text), what it is, where, who may know who made it,
 * and its files. ``r`` is the alert's summary; ``full`` is GET /v1/reports/{id} (or null).
 */
function reportSection(a, r, full) {
  const text = full ? full.text : r.text;
  const place = full ? full.place : r.place;
  const position = full ? full.position : a.position;
  const fede = full?.referred_fede;
  const electoral = full ? full.electoral : r.electoral;
  const where = position
    ? `${pointText(position)} · ${POSITION_SOURCE[full?.position_source] || "coordenadas"}`
    : "Sin ubicación";
  return el(
    "section",
    { className: "report", "aria-labelledby": "report-title", dataset: { reportId: r.id } },
    el("h3", { id: "report-title", text: "Lo que se reportó" }),
    text
      ? el("blockquote", { className: "report-text", dataset: { role: "report-text" }, text })
      : el("p", { className: "muted", dataset: { role: "report-text" }, text: "(Sin texto)" }),
    el(
      "dl",
      { className: "facts facts-grid", dataset: { role: "report-facts" } },
      fact(
        "Categoría",
        r.category_label || REPORT_CATEGORY[r.category] || r.category,
        { dataset: { role: "report-category" } },
      ),
      fact("Folio", r.folio || "—", { dataset: { role: "report-folio" } }),
      fact("Canal", r.channel || "Cola general (sin canal)", {
        dataset: { role: "report-channel" },
      }),
      fact("Origen", REPORT_SOURCE[r.source] || r.source || "—", {
        dataset: { role: "report-source" },
      }),
      fact(
        "Identidad",
        r.anonymous
          ? ["Anónimo", el("span", { className: "sub", text: "no se guardó quién reportó" })]
          : [
              "Protegida",
              el("span", { className: "sub", text: "solo con «Ver quién reportó», auditado" }),
            ],
        { dataset: { role: "report-identity" } },
      ),
      fact("Lugar", place || "—", { dataset: { role: "report-place" } }),
      fact("Ubicación", where, {
        dataset: { role: "report-position" },
        className: position ? "fact" : "fact is-warn",
      }),
      fact("Ocurrió", dateTime(full ? full.occurred_at : a.position_at)),
      full ? fact("Recibido", dateTime(full.received_at)) : null,
      fact(
        "FEDE Morelos",
        fede
          ? [
              `Turnado el ${dateTime(fede.at)}`,
              fede.note ? el("span", { className: "sub", text: fede.note }) : null,
            ]
          : electoral
            ? `Posible delito electoral${full?.legal_basis ? ` (${full.legal_basis})` : ""}; ` +
              "sin turnar"
            : "No es delito electoral",
        { dataset: { role: "report-fede" } },
      ),
      a.trip ? null : fact("Abierta", `${dateTime(a.opened_at)} (${ago(a.opened_at)})`),
      a.trip ? null : fact("Unidad", a.unit || "—", { dataset: { role: "unit" } }),
      a.trip ? null : fact("Resultado", a.outcome ? OUTCOME[a.outcome] || a.outcome : "—"),
      a.trip ? null : fact("Repeticiones / escalamientos", `${a.count} / ${a.escalations}`),
    ),
    state.revealed && state.revealed.report_id === r.id ? reporterBox(state.revealed) : null,
    mediaSection(r, full),
  );
}

/** The reveal's answer: who made the report, and that looking was recorded. */
function reporterBox(who) {
  const contact = who.contact;
  const phone = contact ? contact.replace(/[^0-9+]/g, "") : "";
  return el(
    "div",
    {
      className: "reporter",
      role: "region",
      "aria-label": "Quién reportó",
      dataset: { role: "reporter" },
    },
    el("h4", { text: "Quién reportó" }),
    el(
      "dl",
      { className: "facts" },
      fact("Nombre", who.anonymous ? "Anónimo" : who.name || "—", {
        dataset: { role: "reporter-name" },
      }),
      fact(
        "Contacto",
        contact ? el("a", { href: `tel:${phone}`, text: contact }) : "—",
        { dataset: { role: "reporter-contact" } },
      ),
      fact("Cuenta en Sígueme", who.user || "—"),
      fact("Origen", REPORT_SOURCE[who.source] || who.source || "—"),
    ),
    el("p", {
      className: "fine",
      text:
        "Esta consulta quedó registrada en la bitácora de auditoría con tu nombre, la hora y " +
        "el motivo. No compartas estos datos fuera del caso.",
    }),
  );
}

function mediaSection(r, full) {
  let body;
  if (!full) {
    body = el("p", {
      className: state.reportError ? "error" : "muted",
      text: state.reportError || `${r.media} archivo(s); no se pudo leer la lista.`,
    });
  } else if (!full.media || !full.media.length) {
    body = el("p", { className: "muted", text: "Sin archivos adjuntos." });
  } else {
    body = el(
      "ul",
      { className: "media-list", "aria-label": "Archivos del reporte" },
      full.media.map((m, i) => mediaItem(full, m, i)),
    );
  }
  const count = full?.media ? full.media.length : r.media;
  return el(
    "div",
    { className: "report-media", dataset: { role: "report-media" } },
    el("h4", { text: count ? `Archivos (${count})` : "Archivos" }),
    body,
  );
}

const OPEN_LABEL = { image: "Ver foto", audio: "Escuchar audio", video: "Ver video" };

function mediaItem(report, m, i) {
  const view = el("div", { className: "media-view", dataset: { role: "media-view" } });
  const opened = state.media.get(m.id);
  const item = el(
    "li",
    { className: "media-item", dataset: { mediaId: m.id, kind: m.kind } },
    el(
      "div",
      { className: "media-head" },
      el("strong", { text: `${MEDIA_KIND[m.kind] || "Archivo"} ${i + 1}` }),
      el("span", { className: "muted", text: ` · ${m.content_type} · ${bytes(m.size)}` }),
      m.received_at
        ? el("span", { className: "muted", text: ` · recibido ${dateTime(m.received_at)}` })
        : null,
    ),
    el(
      "p",
      { className: "media-hash" },
      "SHA-256 ",
      el("code", { dataset: { role: "sha256" }, text: m.sha256 }),
    ),
    opened
      ? null
      : m.url
        ? el("button", {
            type: "button",
            className: "btn btn-quiet btn-small",
            dataset: { role: "open-media" },
            text: OPEN_LABEL[m.kind] || "Abrir archivo",
            on: { click: (event) => openMedia(report, m, view, event.currentTarget) },
          })
        : el("p", { className: "muted", text: "El archivo ya no está disponible." }),
    view,
  );
  if (opened) fill(view, mediaViewer(m, opened, i));
  return item;
}

/** Fetch one evidence file with the token and show it from a blob: URL. */
async function openMedia(report, m, view, button) {
  const alertId = state.selectedId;
  button.disabled = true;
  fill(view, el("p", { className: "muted", text: "Descargando…" }));
  let entry;
  try {
    const response = await api(
      `/v1/reports/${encodeURIComponent(report.id)}/media/${encodeURIComponent(m.id)}`,
      { token: state.token, raw: true },
    );
    const blob = await response.blob();
    const type = (blob.type || m.content_type || "").split(";")[0];
    const extension = (type.split("/")[1] || "bin").replace(/[^a-z0-9]/gi, "");
    entry = {
      url: URL.createObjectURL(blob),
      type,
      name: `${report.folio || `reporte-${report.id}`}-${m.id}.${extension}`,
      verified: await verify(blob, m.sha256),
    };
  } catch (error) {
    button.disabled = false;
    fill(
      view,
      el("p", { className: "error", text: error.message_es || "No se pudo descargar el archivo." }),
    );
    return;
  }
  if (state.selectedId !== alertId) {
    URL.revokeObjectURL(entry.url);
    return;
  }
  state.media.set(m.id, entry);
  button.remove();
  const index = (state.report?.media || []).findIndex((x) => x.id === m.id);
  fill(view, mediaViewer(m, entry, index));
}

/** Whether the bytes received have the SHA-256 the report lists (null: cannot tell here). */
async function verify(blob, sha256) {
  if (!sha256 || !window.crypto?.subtle) return null;
  try {
    const digest = await crypto.subtle.digest("SHA-256", await blob.arrayBuffer());
    const hex = [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
    return hex === sha256.toLowerCase();
  } catch {
    return null;
  }
}

function mediaViewer(m, entry, index) {
  const label = `${MEDIA_KIND[m.kind] || "Archivo"} ${index + 1} del reporte`;
  let player;
  if (entry.type.startsWith("image/")) {
    player = el("img", {
      src: entry.url,
      alt: label,
      className: "media-img",
      dataset: { role: "media-image" },
    });
  } else if (entry.type.startsWith("audio/")) {
    player = el("audio", {
      src: entry.url,
      controls: true,
      preload: "metadata",
      "aria-label": label,
    });
  } else if (entry.type.startsWith("video/")) {
    player = el("video", {
      src: entry.url,
      controls: true,
      preload: "metadata",
      playsinline: true,
      className: "media-video",
      "aria-label": label,
    });
  }
  return [
    player,
    el(
      "p",
      { className: "media-tools" },
      el("a", {
        className: "btn btn-quiet btn-small",
        href: entry.url,
        download: entry.name,
        text: "Descargar",
        dataset: { role: "download-media" },
      }),
      entry.verified === null
        ? null
        : el("span", {
            className: entry.verified ? "media-ok" : "media-bad",
            dataset: { role: "media-verified" },
            text: entry.verified
              ? "Huella SHA-256 comprobada en este equipo"
              : "¡La huella SHA-256 no coincide con la registrada!",
          }),
    ),
  ];
}

// -- steps ------------------------------------------------------------------------------------

const alertPath = (step) => (a) => `/v1/alerts/${encodeURIComponent(a.id)}/${step}`;
const reportPath = (suffix) => (a) => `/v1/reports/${encodeURIComponent(a.report.id)}${suffix}`;

const STEPS = {
  acknowledge: {
    title: "Atender la alerta",
    help: "Indica que alguien de despacho ya se ocupa. Deja una nota para el registro.",
    submit: "Atender",
    fields: ["note"],
    path: alertPath("acknowledge"),
    body: (f) => ({ note: f.note }),
    done: "Alerta atendida.",
  },
  dispatch: {
    title: "Registrar unidad enviada",
    help: "Anota la unidad que va en camino (por ejemplo MOR-114) y cualquier detalle.",
    submit: "Registrar",
    fields: ["unit", "note"],
    path: alertPath("dispatch"),
    body: (f) => ({ unit: f.unit, note: f.note }),
    done: "Unidad registrada.",
  },
  resolve: {
    title: "Resolver la alerta",
    help: "Elige cómo terminó y deja una nota. La alerta sale de la cola activa.",
    submit: "Resolver",
    fields: ["outcome", "note"],
    path: alertPath("resolve"),
    body: (f) => ({ outcome: f.outcome, note: f.note }),
    done: "Alerta resuelta.",
  },
  reveal: {
    title: "Ver quién reportó",
    help:
      "La identidad de quien reporta está protegida. Escribe por qué necesitas verla: la " +
      "consulta queda registrada en la bitácora de auditoría con tu nombre, la hora y el motivo.",
    submit: "Ver quién reportó",
    fields: ["reason"],
    path: reportPath("/reveal"),
    body: (f) => ({ reason: f.reason }),
    done: "Consulta registrada en la auditoría.",
    answered: (answer) => {
      state.revealed = answer;
    },
  },
  fede: {
    title: "Turnar a la FEDE Morelos",
    help:
      "Posible delito electoral: se turna a la Fiscalía Especializada en Delitos Electorales. " +
      "Queda como un paso del historial; el estado de la alerta no cambia.",
    submit: "Turnar",
    fields: ["note"],
    path: reportPath("/refer-fede"),
    body: (f) => ({ note: f.note }),
    done: "Reporte turnado a la FEDE Morelos.",
    conflict: "Este reporte ya se turnó a la FEDE, o su categoría no es un delito electoral.",
  },
  category: {
    title: "Cambiar la categoría",
    help: "La severidad de la alerta sigue a la categoría. El cambio queda en el historial.",
    submit: "Guardar",
    fields: ["category"],
    method: "PATCH",
    path: reportPath(""),
    body: (f) => ({ category: f.category }),
    done: "Categoría cambiada.",
  },
};

const FIELDS = {
  unit: { field: "unit-field", input: "unit", required: true },
  outcome: { field: "outcome-field", input: "outcome", required: true },
  reason: { field: "reason-field", input: "reason", required: true },
  category: { field: "category-field", input: "category", required: true },
  note: { field: "note-field", input: "note", required: false },
};

function openAction(step) {
  const conf = STEPS[step];
  if (!state.detail) return;
  state.action = step;
  state.actionAlert = state.detail;
  $("action-title").textContent = conf.title;
  $("action-help").textContent = conf.help;
  $("action-submit").textContent = conf.submit;
  $("action-error").textContent = "";
  $("action-form").reset();
  for (const [name, f] of Object.entries(FIELDS)) {
    const shown = conf.fields.includes(name);
    $(f.field).hidden = !shown;
    $(f.input).required = shown && f.required;
  }
  if (step === "category") {
    $("category").value = state.detail.report?.category || "";
  }
  $("action-dialog").showModal();
  $(FIELDS[conf.fields[0]].input).focus();
}

async function submitAction(event) {
  event.preventDefault();
  const step = state.action;
  const alert = state.actionAlert;
  if (!step || !alert || alert.id !== state.selectedId) return;
  const conf = STEPS[step];
  const form = $("action-form");
  if (!form.reportValidity()) return;
  const fields = {
    note: $("note").value.trim() || null,
    unit: $("unit").value.trim(),
    outcome: $("outcome").value,
    reason: $("reason").value.trim(),
    category: $("category").value,
  };
  if (step === "reveal" && fields.reason.length < 3) {
    $("action-error").textContent = "Escribe el motivo de la consulta (al menos 3 caracteres).";
    $("reason").focus();
    return;
  }
  const button = $("action-submit");
  button.disabled = true;
  try {
    const answer = await api(conf.path(alert), {
      method: conf.method || "POST",
      body: conf.body(fields),
      token: state.token,
    });
    if (conf.answered) conf.answered(answer);
    $("action-dialog").close();
    toast(conf.done);
  } catch (error) {
    $("action-error").textContent =
      error instanceof ApiError && error.status === 409 && conf.conflict
        ? conf.conflict
        : error.message_es || "No se pudo guardar.";
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
  if (state.detail?.trip && state.detail.trip.id === p.trip_id && state.detailLayer) {
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
    ` · ${markerLabel(alert)} · severidad ${SEVERITY[alert.severity] || ""}`,
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
  const category = $("category");
  for (const [value, label] of Object.entries(REPORT_CATEGORY)) {
    category.append(el("option", { value, text: label }));
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
  setInterval(loadQueue, REFRESH_MS);
  setInterval(renderQueue, TICK_MS);
  await loadQueue();
  // An alert's map_url: /console?alerta=… (this page's own links) or ?alert=… (a report's).
  const query = new URLSearchParams(location.search);
  const wanted = query.get("alerta") || query.get("alert");
  if (wanted) {
    try {
      await select(wanted);
    } catch (error) {
      $("queue-error").textContent = error.message_es || "No se pudo abrir la alerta.";
    }
  }
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
  document.body.dataset.ready = "true";
}

start();
