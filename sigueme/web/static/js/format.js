// Spanish (es-MX) labels, times in Morelos' zone, and a DOM builder that never
// parses HTML: every text from the API goes in as a text node.

export const TIME_ZONE = "America/Mexico_City";

const timeFormat = new Intl.DateTimeFormat("es-MX", {
  timeZone: TIME_ZONE,
  hour: "2-digit",
  minute: "2-digit",
  hourCycle: "h23",
});
const dateTimeFormat = new Intl.DateTimeFormat("es-MX", {
  timeZone: TIME_ZONE,
  day: "numeric",
  month: "short",
  hour: "2-digit",
  minute: "2-digit",
  second: "2-digit",
  hourCycle: "h23",
});
const numberFormat = new Intl.NumberFormat("es-MX", { maximumFractionDigits: 1 });

export const ROUTE_STATUS = {
  pending: "por iniciar",
  on_route: "en ruta",
  drifting: "desviándose",
  off_route: "fuera de ruta",
  stopped: "detenido",
  late: "retrasado",
  arrived: "llegó",
  signal_lost: "sin señal",
};

export const TRIP_STATUS = {
  active: "en curso",
  finished: "terminado",
  cancelled: "cancelado",
};

export const ALERT_KIND = {
  sos: "Botón de pánico (SOS)",
  off_route: "Fuera de la ruta planeada",
  stopped: "Detenido fuera de las paradas previstas",
  late: "Retraso respecto al plan",
  backtracking: "Regresa sobre la ruta",
  signal_lost: "Sin señal del teléfono",
  overdue: "No llegó a su destino a tiempo",
  risk_zone: "Entró a una zona de riesgo",
  report: "Reporte ciudadano",
};

/** A report's categories (sigueme/reports/categories.py), in the order a dispatcher picks. */
export const REPORT_CATEGORY = {
  attack_violence: "Agresión o violencia",
  threat: "Amenaza",
  political_violence_women: "Violencia política contra las mujeres en razón de género",
  polling_station_obstruction: "Obstrucción de una casilla",
  vote_buying_coercion: "Compra o coacción del voto",
  misuse_public_resources: "Uso indebido de recursos públicos",
  other: "Otro",
};

/** Where a report came from. */
export const REPORT_SOURCE = { whatsapp: "WhatsApp", api: "API" };

/** Where a report's position came from. */
export const POSITION_SOURCE = {
  phone: "GPS del teléfono",
  map: "punto elegido en un mapa",
  whatsapp: "ubicación compartida por WhatsApp",
  photo: "GPS de la foto",
  text: "lugar descrito",
};

/** An evidence file's kind. */
export const MEDIA_KIND = { image: "Foto", audio: "Audio", video: "Video" };

export const SEVERITY = { 1: "baja", 2: "media", 3: "alta", 4: "máxima" };

export const ALERT_STATUS = {
  open: "abierta",
  acknowledged: "atendida",
  dispatched: "unidad enviada",
  resolved: "resuelta",
  cancelled: "cancelada por la persona",
};

export const LIVE_ALERT_STATUSES = ["open", "acknowledged", "dispatched"];

export const OUTCOME = {
  assisted: "persona auxiliada",
  false_alarm: "falsa alarma",
  no_contact: "sin contacto",
  safe: "la persona está a salvo",
  other: "otro",
};

export const ACTION = {
  raised: "alerta generada",
  repeated: "se repitió",
  condition_ended: "la condición terminó",
  escalated: "escaló (sin atender a tiempo)",
  acknowledged: "atendida",
  dispatched: "unidad enviada",
  resolved: "resuelta",
  cancelled: "cancelada por la persona",
  duress: "PIN de coacción",
  referred_fede: "turnada a la FEDE Morelos",
  revealed: "se consultó quién reportó",
  category_changed: "categoría cambiada",
  channel_changed: "canal cambiado",
};

export const ROLE = {
  traveller: "persona que viaja",
  monitor: "monitor",
  dispatcher: "despacho, Policía Morelos",
  admin: "administración",
};

function toDate(value) {
  if (value === null || value === undefined) return null;
  const date = value instanceof Date ? value : new Date(value);
  return Number.isNaN(date.getTime()) ? null : date;
}

/** "14:05" in Morelos' time, or "—". */
export function clock(value) {
  const date = toDate(value);
  return date ? timeFormat.format(date) : "—";
}

/** "28 may, 14:05:10" in Morelos' time, or "—". */
export function dateTime(value) {
  const date = toDate(value);
  return date ? dateTimeFormat.format(date) : "—";
}

/** A span of seconds: "menos de 1 min", "12 min", "1 h 05 min". */
export function duration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "—";
  const minutes = Math.round(Math.abs(seconds) / 60);
  if (minutes < 1) return "menos de 1 min";
  if (minutes < 60) return `${minutes} min`;
  return `${Math.floor(minutes / 60)} h ${String(minutes % 60).padStart(2, "0")} min`;
}

/** "hace 3 min" from an ISO time. */
export function ago(value, now = Date.now()) {
  const date = toDate(value);
  if (!date) return "—";
  const seconds = (now - date.getTime()) / 1000;
  if (seconds < 45) return "hace un momento";
  return `hace ${duration(seconds)}`;
}

/** "450 m", "3.2 km". */
export function distance(metres) {
  if (metres === null || metres === undefined || !Number.isFinite(metres)) return "—";
  if (Math.abs(metres) < 1000) return `${Math.round(metres)} m`;
  return `${numberFormat.format(metres / 1000)} km`;
}

/** Predicted minus planned arrival: "a tiempo", "+7 min", "3 min antes". */
export function delay(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "";
  if (Math.abs(seconds) < 60) return "a tiempo";
  return seconds > 0 ? `${duration(seconds)} tarde` : `${duration(seconds)} antes`;
}

/** A file size: "830 B", "12.4 KB", "3.1 MB". */
export function bytes(size) {
  if (size === null || size === undefined || !Number.isFinite(size)) return "—";
  if (size < 1024) return `${size} B`;
  if (size < 1024 * 1024) return `${numberFormat.format(size / 1024)} KB`;
  return `${numberFormat.format(size / (1024 * 1024))} MB`;
}

export function percent(value) {
  if (value === null || value === undefined || !Number.isFinite(value)) return "—";
  return `${Math.round(value)} %`;
}

/**
 * An element with properties and children. ``text`` and string children become text
 * nodes; attributes are set one by one (never ``innerHTML``), and ``on*`` attributes are
 * refused so no text can become code.
 */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "text") node.textContent = String(value);
    else if (key === "className") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key === "on") {
      for (const [event, handler] of Object.entries(value)) node.addEventListener(event, handler);
    } else if (key.startsWith("on") || key === "innerHTML" || key === "style") {
      throw new Error(`el: refused property ${key}`);
    } else node.setAttribute(key, value === true ? "" : String(value));
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replace the children of ``node``. */
export function fill(node, ...children) {
  node.replaceChildren();
  append(node, children);
  return node;
}

/** A definition list row: ``<div><dt>label</dt><dd>value</dd></div>``. */
export function fact(label, value, extra = {}) {
  return el("div", { className: "fact", ...extra }, el("dt", { text: label }), el("dd", {}, value));
}
