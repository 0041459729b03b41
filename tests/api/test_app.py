"""The app as a whole: start-up on an out-of-date database, lifespan hooks, body size
limit, domain errors as HTTP answers, the OpenAPI schema."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from sigueme.api.app import create_app
from sigueme.api.limits import MAX_BODY_BYTES
from sigueme.errors import (
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    SchemaOutOfDate,
    SiguemeError,
    Unauthorized,
)
from sigueme.geo import GeoError, Route
from sigueme.settings import Settings


def _client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


async def test_an_unmigrated_database_refuses_to_start_and_says_what_to_run(
    tmp_path: Path,
) -> None:
    app = create_app(Settings(database_url=SecretStr(f"sqlite+aiosqlite:///{tmp_path}/new.db")))
    entered: list[str] = []

    @asynccontextmanager
    async def hook(_app: FastAPI) -> AsyncIterator[None]:
        entered.append("hook")
        yield

    app.state.lifespan_hooks.append(hook)
    with pytest.raises(SchemaOutOfDate, match=r"run `sigueme migrate`"):
        async with app.router.lifespan_context(app):
            pass  # pragma: no cover - never reached
    assert entered == []  # nothing starts on a database it cannot use


async def test_hooks_start_in_order_and_stop_in_reverse_even_after_a_failed_start(
    database_url: str,
) -> None:
    events: list[str] = []

    def hook(name: str, fail: bool = False):  # type: ignore[no-untyped-def]
        @asynccontextmanager
        async def run(app: FastAPI) -> AsyncIterator[None]:
            assert app.state.sessions is not None  # the database is ready first
            if fail:
                raise RuntimeError(f"{name} cannot start")
            events.append(f"start {name}")
            try:
                yield
            finally:
                events.append(f"stop {name}")

        return run

    app = create_app(Settings(database_url=SecretStr(database_url)))
    app.state.lifespan_hooks.extend([hook("purge"), hook("relay")])
    async with app.router.lifespan_context(app):
        assert events == ["start purge", "start relay"]
    assert events == ["start purge", "start relay", "stop relay", "stop purge"]

    events.clear()
    broken = create_app(Settings(database_url=SecretStr(database_url)))
    broken.state.lifespan_hooks.extend([hook("purge"), hook("relay", fail=True)])
    with pytest.raises(RuntimeError, match="relay cannot start"):
        async with broken.router.lifespan_context(broken):
            pass  # pragma: no cover - never reached
    assert events == ["start purge", "stop purge"]


async def test_a_body_over_the_limit_is_413_before_parsing(client: httpx.AsyncClient) -> None:
    too_big = b"{" + b" " * MAX_BODY_BYTES + b"}"
    response = await client.post("/v1/users", content=too_big)
    assert response.status_code == 413
    assert "larger than" in response.json()["detail"]

    async def chunks() -> AsyncIterator[bytes]:
        # No Content-Length: the limit applies to the bytes as they arrive.
        for _ in range(3):
            yield b" " * (MAX_BODY_BYTES // 2)

    response = await client.post("/v1/users", content=chunks())
    assert response.status_code == 413

    # Under the limit the request goes on to authentication as usual.
    response = await client.post("/v1/users", content=b" " * (MAX_BODY_BYTES - 10))
    assert response.status_code == 401


def _boom(exc: Exception) -> FastAPI:
    app = create_app(Settings(database_url=SecretStr("sqlite+aiosqlite:///unused.db")))

    @app.get("/boom")
    async def boom() -> None:
        raise exc

    return app


@pytest.mark.parametrize(
    ("exc", "status", "detail"),
    [
        (NotFound("no trip 7"), 404, "no trip 7"),
        (Forbidden("not yours"), 403, "not yours"),
        (Conflict("the trip is finished"), 409, "the trip is finished"),
        (SchemaOutOfDate("run `sigueme migrate`"), 503, "run `sigueme migrate`"),
        (SiguemeError("unlisted"), 500, "unlisted"),
    ],
)
async def test_domain_errors_answer_with_their_status(
    exc: Exception, status: int, detail: str
) -> None:
    # No lifespan needed: the route touches no database.
    async with _client(_boom(exc)) as client:
        response = await client.get("/boom")
    assert response.status_code == status
    assert response.json() == {"detail": detail}
    assert "www-authenticate" not in response.headers


async def test_unauthorized_carries_www_authenticate() -> None:
    async with _client(_boom(Unauthorized("who are you"))) as client:
        response = await client.get("/boom")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


async def test_invalid_and_geo_errors_are_422_naming_the_field() -> None:
    async with _client(_boom(Invalid("stops[2].radius_m", "must be positive"))) as client:
        response = await client.get("/boom")
    assert response.status_code == 422
    assert response.json() == {
        "detail": [
            {"loc": ["stops", 2, "radius_m"], "msg": "must be positive", "type": "value_error"}
        ]
    }
    with pytest.raises(GeoError) as refused:
        Route([(-99.23, 18.92)])
    async with _client(_boom(refused.value)) as client:
        response = await client.get("/boom")
    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["loc"][0] == "route"
    assert error["type"] == "value_error"
    assert error["msg"]


async def test_the_openapi_schema_documents_bearer_auth_and_the_routes(
    client: httpx.AsyncClient,
) -> None:
    schema = (await client.get("/openapi.json")).json()
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    for path in ("/v1/me", "/v1/users", "/v1/users/{name}/disable", "/v1/users/{name}/tokens"):
        assert path in schema["paths"]
    assert {"/healthz", "/readyz", "/metrics"} <= set(schema["paths"])


async def test_nul_characters_are_refused_anywhere_with_a_clear_400(
    client: httpx.AsyncClient,
) -> None:
    """PostgreSQL refuses NUL in text: the service says so before the database does."""
    cases = [
        client.get("/v1/trips/%00"),
        client.get("/v1/trips?scope=mine%00"),
        client.post(
            "/v1/trips",
            content=b'{"label": "a\\u0000b"}',
            headers={"content-type": "application/json"},
        ),
        client.post(
            "/osmand/x",
            content=b"id=1%00&lat=18.9&lon=-99.2",
            headers={"content-type": "application/x-www-form-urlencoded"},
        ),
    ]
    for response in [await c for c in cases]:
        assert response.status_code == 400, response.text
        assert response.json() == {"detail": "NUL characters are not accepted in any field"}


async def test_a_percent_sign_in_json_text_is_fine(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/trips", content=b'{"label": "100%00"}', headers={"content-type": "application/json"}
    )
    assert response.status_code == 401  # got past the NUL check to authentication
