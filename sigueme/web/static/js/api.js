// The API with the viewer's token. The token lives in sessionStorage (gone when the tab
// closes) and travels only in the Authorization header, never in a URL (share links
// excepted: their URL is the token, by design).

const TOKEN_KEY = "sigueme.token";

export function savedToken() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function saveToken(token) {
  sessionStorage.setItem(TOKEN_KEY, token);
}

export function forgetToken() {
  sessionStorage.removeItem(TOKEN_KEY);
}

export class ApiError extends Error {
  constructor(status, detail) {
    super(`${status}: ${detail}`);
    this.status = status;
    this.detail = detail;
  }

  /** What to tell the viewer, in Spanish. */
  get message_es() {
    switch (this.status) {
      case 0:
        return "No hay conexión con el servicio. Revisa la red e intenta de nuevo.";
      case 401:
        return "La clave no es válida, fue revocada o expiró.";
      case 403:
        return "Tu cuenta no tiene permiso para esto.";
      case 404:
        return "No existe o ya no tienes acceso.";
      case 409:
        return "La alerta ya cambió de estado; la vista se actualizó.";
      case 422:
        return `Datos no válidos: ${this.detail}`;
      case 429:
        return "Demasiadas solicitudes; espera un momento.";
      default:
        return "El servicio no respondió bien; intenta de nuevo en un momento.";
    }
  }
}

function detailOf(body, fallback) {
  if (body && typeof body.detail === "string") return body.detail;
  if (body && Array.isArray(body.detail) && body.detail.length) {
    const first = body.detail[0];
    const where = Array.isArray(first.loc) ? first.loc.filter((p) => p !== "body").join(".") : "";
    return where ? `${where}: ${first.msg}` : String(first.msg);
  }
  return fallback;
}

/**
 * Call the API. Resolves with the parsed JSON (``raw``: the Response); rejects with an
 * ApiError for any answer that is not 2xx, or status 0 when the network failed.
 */
export async function api(path, { method = "GET", body, token = savedToken(), raw = false } = {}) {
  const headers = { Accept: raw ? "*/*" : "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
      credentials: "omit",
      referrerPolicy: "no-referrer",
    });
  } catch {
    throw new ApiError(0, "network error");
  }
  if (!response.ok) {
    let parsed = null;
    try {
      parsed = await response.json();
    } catch {
      parsed = null;
    }
    throw new ApiError(response.status, detailOf(parsed, response.statusText));
  }
  if (raw) return response;
  return response.status === 204 ? null : response.json();
}

/** Where a role works. */
export function homeFor(me) {
  if (me.kind === "link") return null;
  return me.role === "dispatcher" || me.role === "admin" ? "/console" : "/map";
}

/** The log-in page, coming back to this page afterwards. */
export function goToLogin(reason) {
  const back = location.pathname + location.search;
  const query = new URLSearchParams({ volver: back });
  if (reason) query.set("motivo", reason);
  location.replace(`/entrar?${query}`);
}

/** A same-site path to go back to, or null (never another site). */
export function safeBack(value) {
  if (typeof value !== "string" || !value.startsWith("/") || value.startsWith("//")) return null;
  if (value.startsWith("/s/") || value.includes("\\")) return null;
  return value;
}
