"""The web router: the pages, their headers, their files and Leaflet, served by the app
itself (no database needed: a page carries no data, only configuration)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from pydantic import SecretStr

from sigueme.api import web
from sigueme.api.app import create_app
from sigueme.settings import DEFAULT_TILE_URL, Settings

PAGES = ["/", "/entrar", "/map", "/map/trips/8c1f0c52-7d2e-4a8e-a1de-0d4f6c1b2a3e", "/console"]
SHARE = "/s/sgl_AbCdEf0123456789"
STATIC = Path(web.__file__).parents[1] / "web" / "static"


def _client(tmp_path: Path, **settings: str) -> httpx.AsyncClient:
    app = create_app(
        Settings.model_validate(
            {"database_url": SecretStr(f"sqlite+aiosqlite:///{tmp_path}/unused.db"), **settings}
        )
    )
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sigueme.test")


@pytest_asyncio.fixture(loop_scope="session")
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(tmp_path) as c:
        yield c


def _csp(response: httpx.Response) -> dict[str, list[str]]:
    directives: dict[str, list[str]] = {}
    for part in response.headers["content-security-policy"].split(";"):
        name, *values = part.split()
        directives[name] = values
    return directives


@pytest.mark.parametrize("path", [*PAGES, SHARE])
async def test_pages_are_spanish_html_with_strict_headers(
    client: httpx.AsyncClient, path: str
) -> None:
    response = await client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert '<html lang="es-MX">' in response.text
    assert '<meta name="viewport"' in response.text
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["cache-control"] == "no-store"
    csp = _csp(response)
    assert csp["default-src"] == ["'none'"]
    assert csp["script-src"] == ["'self'"]
    assert csp["style-src"] == ["'self'"]
    assert csp["connect-src"] == ["'self'"]
    assert csp["frame-ancestors"] == ["'none'"]
    assert csp["base-uri"] == ["'none'"]
    # blob: the console's evidence files, fetched with the token (never from a URL).
    assert csp["img-src"] == ["'self'", "blob:", "https://tile.openstreetmap.org"]
    assert csp["media-src"] == ["blob:"]
    assert "unsafe" not in response.headers["content-security-policy"]


async def test_head_answers_like_get(client: httpx.AsyncClient) -> None:
    response = await client.head("/map")
    assert response.status_code == 200
    assert response.headers["referrer-policy"] == "no-referrer"


async def test_a_share_page_carries_nothing_of_its_token_or_trip(
    client: httpx.AsyncClient,
) -> None:
    """The page is the same for every link: the token stays in the address bar, read
    by the page's script and checked by the API."""
    one = await client.get("/s/sgl_first")
    two = await client.get("/s/sgl_second")
    assert one.text == two.text
    assert "sgl_first" not in one.text
    assert 'name="robots" content="noindex' in one.text


async def test_pages_hold_no_inline_code_and_load_only_local_files(
    client: httpx.AsyncClient,
) -> None:
    """What the CSP requires (no inline script or style) and what working offline
    requires (every file from this service), checked on the pages' source."""
    for path in [*PAGES, SHARE]:
        text = (await client.get(path)).text
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", text), path
        assert "<style" not in text, path
        assert " style=" not in text, path
        assert not re.search(r"\son[a-z]+=", text), path
        refs = re.findall(r'(?:src|href)="([^"]+)"', text)
        assert refs, path
        for ref in refs:
            assert ref.startswith(("/", "#")), (path, ref)
            assert not ref.startswith("//"), (path, ref)
            if ref.startswith("/static/"):
                got = await client.get(ref)
                assert got.status_code == 200, ref
                assert got.headers["x-content-type-options"] == "nosniff"


async def test_scripts_import_only_modules_that_exist() -> None:
    scripts = sorted((STATIC / "js").glob("*.js"))
    assert {p.name for p in scripts} >= {"map.js", "console.js", "login.js", "api.js"}
    for script in scripts:
        text = script.read_text(encoding="utf-8")
        for module in re.findall(r'from "(\./[^"]+)"', text):
            assert (script.parent / module).is_file(), (script.name, module)
        # Text from the API is put in as text, never parsed as HTML.
        assert ".innerHTML =" not in text, script.name
        assert "insertAdjacentHTML" not in text, script.name
        assert "eval(" not in text, script.name
        assert "http://" not in text, script.name
        assert "https://" not in text, script.name


@pytest.mark.parametrize(
    ("path", "media_type"),
    [
        ("/static/css/app.css", "text/css"),
        ("/static/js/map.js", "text/javascript"),
        ("/static/icon.svg", "image/svg+xml"),
        ("/static/vendor/leaflet/leaflet.js", "text/javascript"),
        ("/static/vendor/leaflet/leaflet.css", "text/css"),
        ("/static/vendor/leaflet/images/layers.png", "image/png"),
    ],
)
async def test_static_files_and_leaflet_are_served(
    client: httpx.AsyncClient, path: str, media_type: str
) -> None:
    response = await client.get(path)
    assert response.status_code == 200, path
    assert response.headers["content-type"].startswith(media_type)
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"


async def test_the_served_leaflet_is_the_locked_version(client: httpx.AsyncClient) -> None:
    lock = (Path(__file__).parents[2] / "package-lock.json").read_text()
    version = re.search(r'"node_modules/leaflet":\s*{\s*"version":\s*"([^"]+)"', lock)
    assert version is not None
    body = (await client.get("/static/vendor/leaflet/leaflet.js")).text
    assert f"Leaflet {version.group(1)}" in body[:300]


@pytest.mark.parametrize(
    "path",
    [
        "/static/../pyproject.toml",
        "/static/%2e%2e/%2e%2e/api/web.py",
        "/static/..%2F..%2Fapi%2Fweb.py",
        "/static/vendor/leaflet/%2e%2e/%2e%2e/package.json",
        "/static/js/nope.js",
        "/static/js",
        "/static/vendor/leaflet/leaflet.js.LICENSE",
        "/static/entrar.html",
    ],
)
async def test_nothing_else_is_served_as_static(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 404, path
    assert "import " not in response.text
    assert "[project]" not in response.text


async def test_without_leaflet_its_urls_say_how_to_install_it(
    client: httpx.AsyncClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(web, "LEAFLET_DIRS", (tmp_path / "none",))
    response = await client.get("/static/vendor/leaflet/leaflet.js")
    assert response.status_code == 404
    assert "scripts/setup.sh" in response.text
    assert "npm ci" in response.text
    # The pages themselves still load (and say the map is unavailable).
    assert (await client.get("/map")).status_code == 200


async def test_the_tile_template_reaches_the_page_and_the_csp(tmp_path: Path) -> None:
    template = "https://{s}.tiles.example.mx/base/{z}/{x}/{y}.png?key=k1"
    async with _client(
        tmp_path, tile_url=template, tile_attribution='Mapa © "CES" <Morelos> & OSM'
    ) as c:
        response = await c.get("/map")
    assert _csp(response)["img-src"] == ["'self'", "blob:", "https://*.tiles.example.mx"]
    assert (
        '<meta name="sigueme-tile-url" '
        'content="https://{s}.tiles.example.mx/base/{z}/{x}/{y}.png?key=k1">' in response.text
    )
    # The attribution is text: escaped in the page, never markup.
    assert "Mapa © &quot;CES&quot; &lt;Morelos&gt; &amp; OSM" in response.text
    assert "<Morelos>" not in response.text


async def test_without_tiles_images_come_from_this_service_only(tmp_path: Path) -> None:
    async with _client(tmp_path, tile_url="") as c:
        response = await c.get("/console")
    assert _csp(response)["img-src"] == ["'self'", "blob:"]
    assert '<meta name="sigueme-tile-url" content="">' in response.text


def test_the_default_tiles_are_openstreetmaps() -> None:
    assert Settings().tile_url == DEFAULT_TILE_URL
    assert web.tile_origin(DEFAULT_TILE_URL) == "https://tile.openstreetmap.org"
    assert web.tile_origin("http://localhost:8080/{z}/{x}/{y}.png") == "http://localhost:8080"
    assert web.tile_origin("https://a{s}.example.mx/{z}/{x}/{y}.png") == "https:"
    assert web.tile_origin("") is None


@pytest.mark.parametrize(
    "bad",
    [
        "https://tiles.example.mx/{z}/{x}.png",
        "javascript:alert(1)//{z}{x}{y}",
        "https://tiles.example.mx/{z}/{x}/{y}.png; script-src *",
        'https://tiles.example.mx/{z}/{x}/{y}.png" onload="x',
        "ftp://tiles.example.mx/{z}/{x}/{y}.png",
    ],
)
def test_a_tile_template_that_could_break_out_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="tile_url"):
        Settings(tile_url=bad)


async def test_the_api_and_its_docs_keep_their_own_headers(client: httpx.AsyncClient) -> None:
    """The page CSP is the pages' own: it would break /docs (Swagger's files)."""
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    assert "content-security-policy" not in response.headers
    assert "/entrar" not in response.text  # the pages are not in the API's schema
