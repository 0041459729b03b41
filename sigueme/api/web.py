"""The web pages: the log-in, the live map, the share-link page and the dispatchers'
console (``sigueme/web/``), their scripts and styles (``sigueme/web/static/``), and
Leaflet, which the service serves itself so the pages work with no internet.

The pages carry no data: they are the same for everyone, and everything they show
comes from the API with the viewer's token (so the API's access rules are the only
ones). What a page is told by the server is configuration only: the base-map tile
template and its attribution (``SIGUEME_TILE_URL``, ``SIGUEME_TILE_ATTRIBUTION``).

Every answer here carries a strict Content-Security-Policy (scripts, styles and
connections to this origin only; images also from the tile host), ``nosniff``, and
``Referrer-Policy: no-referrer``: a share link's token is in its URL
(``/s/{token}``), and no request a page makes may pass it on.

Leaflet comes from ``node_modules/leaflet/dist`` in a checkout (``scripts/setup.sh``
installs it with ``npm ci`` from ``package-lock.json``), or from
``sigueme/web/vendor/leaflet`` inside an installed package (the Docker image copies it
there). When neither is present, its URLs answer 404 with what to run, and the map
pages say that the map is unavailable.
"""

from __future__ import annotations

import html
import logging
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Final
from urllib.parse import urlsplit

from fastapi import APIRouter
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, HTMLResponse, PlainTextResponse, Response

from sigueme.api.deps import SettingsDep
from sigueme.settings import Settings

log = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False)

WEB_DIR: Final = Path(__file__).resolve().parents[1] / "web"
STATIC_DIR: Final = WEB_DIR / "static"
LEAFLET_DIRS: Final = (
    WEB_DIR / "vendor" / "leaflet",  # an installed package (the Docker image)
    WEB_DIR.parents[1] / "node_modules" / "leaflet" / "dist",  # a checkout
)
"""Where Leaflet's ``dist`` is looked for, in this order."""

MEDIA_TYPES: Final = {
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".map": "application/json; charset=utf-8",
    ".png": "image/png",
    ".svg": "image/svg+xml",
}
"""The only files served as static: anything else answers 404."""

LEAFLET_MISSING: Final = (
    "Leaflet is not installed, so the map pages cannot draw their maps.\n"
    "Run scripts/setup.sh (it runs `npm ci --omit=dev --ignore-scripts` from "
    "package-lock.json into node_modules/), then reload the page.\n\n"
    "Leaflet no está instalado: el mapa no puede mostrarse. Quien opera el servicio debe "
    "ejecutar scripts/setup.sh.\n"
)

COMMON_HEADERS: Final = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-origin",
}

READ: Final = ["GET", "HEAD"]

TripId = Annotated[str, PathParam(min_length=1, max_length=36)]
LinkToken = Annotated[str, PathParam(min_length=1, max_length=200)]


# -- headers ----------------------------------------------------------------------------------


def tile_origin(tile_url: str) -> str | None:
    """The CSP source the tiles of ``tile_url`` come from (``{s}.`` as ``*.``), or
    ``None`` without tiles."""
    if not tile_url:
        return None
    parts = urlsplit(tile_url)
    host = parts.netloc
    if host.startswith("{s}."):
        host = "*." + host[len("{s}.") :]
    if "{" in host:
        # A placeholder elsewhere in the host: CSP has no pattern for it.
        return f"{parts.scheme}:"
    return f"{parts.scheme}://{host}"


def content_security_policy(settings: Settings) -> str:
    """Self only; images also from the tile host. A report's evidence (photos, audio,
    video), fetched with the token, is shown from ``blob:`` URLs the page makes itself.
    No inline script or style, no framing, no plugins; forms post here only."""
    images = ["'self'", "blob:"]
    origin = tile_origin(settings.tile_url)
    if origin is not None:
        images.append(origin)
    return "; ".join(
        [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            f"img-src {' '.join(images)}",
            "media-src blob:",
            "font-src 'self'",
            # 'self' takes in ws:// and wss:// of this host (CSP Level 3): the live feed.
            "connect-src 'self'",
            "manifest-src 'self'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


def page_headers(settings: Settings) -> dict[str, str]:
    return {
        **COMMON_HEADERS,
        "Content-Security-Policy": content_security_policy(settings),
        "X-Frame-Options": "DENY",
        "Cross-Origin-Opener-Policy": "same-origin",
        "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
        # A page is the same for everyone, but a share page's URL holds a token: keep no copy.
        "Cache-Control": "no-store",
    }


# -- pages ------------------------------------------------------------------------------------


@lru_cache(maxsize=16)
def _template(name: str) -> str:
    return (WEB_DIR / name).read_text(encoding="utf-8")


def render(name: str, settings: Settings) -> str:
    """The page ``name`` with its configuration filled in (escaped)."""
    text = _template(name)
    for key, value in (
        ("tile_url", settings.tile_url),
        ("tile_attribution", settings.tile_attribution),
    ):
        text = text.replace("{{" + key + "}}", html.escape(value, quote=True))
    return text


def _page(name: str, settings: Settings) -> HTMLResponse:
    return HTMLResponse(render(name, settings), headers=page_headers(settings))


@router.api_route("/", methods=READ, response_class=HTMLResponse)
@router.api_route("/entrar", methods=READ, response_class=HTMLResponse)
async def login_page(settings: SettingsDep) -> HTMLResponse:
    """Log-in: paste a token; the page asks ``/v1/me`` and goes where the role works."""
    return _page("entrar.html", settings)


@router.api_route("/map", methods=READ, response_class=HTMLResponse)
async def map_page(settings: SettingsDep) -> HTMLResponse:
    """The live map of every trip the viewer may see."""
    return _page("mapa.html", settings)


@router.api_route("/map/trips/{trip_id}", methods=READ, response_class=HTMLResponse)
async def trip_map_page(trip_id: TripId, settings: SettingsDep) -> HTMLResponse:
    """The live map of one trip (an alert's ``map_url``)."""
    return _page("mapa.html", settings)


@router.api_route("/s/{token}", methods=READ, response_class=HTMLResponse)
async def share_page(token: LinkToken, settings: SettingsDep) -> HTMLResponse:
    """The page of a share link: its one trip, without logging in, while it lasts. The
    token is read by the page from its own URL and checked by the API."""
    return _page("enlace.html", settings)


@router.api_route("/console", methods=READ, response_class=HTMLResponse)
async def console_page(settings: SettingsDep) -> HTMLResponse:
    """The dispatchers' console: the alert queue, live."""
    return _page("consola.html", settings)


# -- static files -----------------------------------------------------------------------------


def leaflet_dir() -> Path | None:
    """Leaflet's ``dist`` directory, or ``None`` when it is not installed."""
    for candidate in LEAFLET_DIRS:
        if (candidate / "leaflet.js").is_file():
            return candidate
    return None


def _file(base: Path, path: str) -> FileResponse | None:
    """``base/path`` when it is a servable file inside ``base``; ``None`` otherwise."""
    root = base.resolve()
    target = (root / path).resolve()
    if not target.is_relative_to(root) or not target.is_file():
        return None
    media_type = MEDIA_TYPES.get(target.suffix)
    if media_type is None:
        return None
    return FileResponse(
        target,
        media_type=media_type,
        headers={**COMMON_HEADERS, "Cache-Control": "no-cache"},
    )


def _not_found(text: str = "not found\n") -> PlainTextResponse:
    return PlainTextResponse(text, status_code=404, headers=dict(COMMON_HEADERS))


_warned = False


@router.api_route("/static/vendor/leaflet/{path:path}", methods=READ)
async def leaflet_file(path: str) -> Response:
    """Leaflet's files (``leaflet.js``, ``leaflet.css``, ``images/...``)."""
    global _warned
    base = leaflet_dir()
    if base is None:
        if not _warned:
            _warned = True
            log.error("Leaflet is not installed: the map pages cannot draw; run scripts/setup.sh")
        return _not_found(LEAFLET_MISSING)
    return _file(base, path) or _not_found()


@router.api_route("/static/{path:path}", methods=READ)
async def static_file(path: str) -> Response:
    """The pages' scripts, styles and icons."""
    return _file(STATIC_DIR, path) or _not_found()
