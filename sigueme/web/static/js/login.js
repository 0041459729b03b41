// Log-in: the viewer pastes their token; the API says who they are (/v1/me) and the
// page goes where their role works. The token is kept in this tab only (sessionStorage).
// A pasted share link (or its sgl_ token) opens the share page instead.

import { ApiError, api, forgetToken, homeFor, safeBack, saveToken, savedToken } from "./api.js";
import { ROLE } from "./format.js";

const $ = (id) => document.getElementById(id);
const LINK = /(?:^|\/s\/)(sgl_[A-Za-z0-9_-]+)\s*$/;

function go(me) {
  const back = safeBack(new URLSearchParams(location.search).get("volver"));
  const home = homeFor(me);
  // The console is for dispatchers and admins; anyone else goes to the map.
  const target = back && !(back.startsWith("/console") && home !== "/console") ? back : home;
  location.replace(target || "/map");
}

async function submit(event) {
  event.preventDefault();
  const error = $("login-error");
  error.textContent = "";
  const value = $("token").value.trim();
  if (!value) {
    error.textContent = "Pega tu clave de acceso.";
    $("token").focus();
    return;
  }
  const link = value.match(LINK);
  if (link) {
    location.assign(`/s/${encodeURIComponent(link[1])}`);
    return;
  }
  const button = $("login-submit");
  button.disabled = true;
  try {
    const me = await api("/v1/me", { token: value });
    if (me.kind === "link") {
      location.assign(`/s/${encodeURIComponent(value)}`);
      return;
    }
    saveToken(value);
    $("login-status").textContent = `Hola, ${me.display_name || me.name} (${ROLE[me.role] || me.role}).`;
    go(me);
  } catch (err) {
    error.textContent =
      err instanceof ApiError ? err.message_es : "No se pudo comprobar la clave; intenta de nuevo.";
    $("token").select();
  } finally {
    button.disabled = false;
  }
}

async function start() {
  $("login-form").addEventListener("submit", submit);
  $("show-token").addEventListener("change", (event) => {
    $("token").type = event.target.checked ? "text" : "password";
  });
  const reason = new URLSearchParams(location.search).get("motivo");
  if (reason === "expirada") {
    forgetToken();
    $("login-note").textContent = "Tu sesión terminó o la clave ya no es válida. Vuelve a entrar.";
    $("login-note").hidden = false;
    return;
  }
  const token = savedToken();
  if (!token) return;
  try {
    go(await api("/v1/me", { token }));
  } catch {
    forgetToken();
  }
}

start();
