"""Liveness, readiness and metrics as a load balancer and Prometheus see them."""

from __future__ import annotations

import re
import socket
import uuid
from typing import TYPE_CHECKING

import asyncpg
import httpx
from pydantic import SecretStr

from sigueme.api.app import create_app
from sigueme.settings import Settings
from sigueme.store.models import Role

if TYPE_CHECKING:
    from tests.api.conftest import AddAccount


async def test_healthz_answers_without_touching_anything(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_is_ok_when_the_database_answers(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_is_503_with_the_reason_when_the_database_is_gone(
    postgres_dsn: str, postgis_template: str
) -> None:
    """The database disappears under a running app: readiness says so, liveness not."""
    name = f"sigueme_gone_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(postgres_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{postgis_template}"')
        base = postgres_dsn.split("://", 1)[1].rsplit("/", 1)[0]
        app = create_app(Settings(database_url=SecretStr(f"postgresql+asyncpg://{base}/{name}")))
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                assert (await client.get("/readyz")).status_code == 200
                await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
                response = await client.get("/readyz")
                assert response.status_code == 503
                body = response.json()
                assert body["status"] == "unavailable"
                assert body["reason"].startswith("database: ")
                assert f'"{name}" does not exist' in body["reason"]
                assert (await client.get("/healthz")).status_code == 200
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def _sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in Prometheus text, or None when absent."""
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name + "{"):
            continue
        # Label values may hold braces themselves (route templates): cut at the last.
        got = dict(re.findall(r'(\w+)="([^"]*)"', line[len(name) : line.rindex("}")]))
        if got == labels:
            return float(line.rsplit(" ", 1)[1])
    return None


async def test_metrics_count_requests_by_route_template_and_status(
    client: httpx.AsyncClient, add_account: AddAccount
) -> None:
    admin = await add_account("root", Role.ADMIN)
    await add_account("maria.secreta")
    await client.get("/v1/me")
    await client.get("/v1/me")
    await client.get("/v1/me", headers=admin.headers)
    await client.post("/v1/users/maria.secreta/disable", headers=admin.headers)
    await client.get("/nowhere/5f0c7a2e-0000-4000-8000-000000000000")

    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    count = "sigueme_http_requests_total"
    assert _sample(text, count, method="GET", route="/v1/me", status="401") == 2.0
    assert _sample(text, count, method="GET", route="/v1/me", status="200") == 1.0
    disable = {"method": "POST", "route": "/v1/users/{name}/disable", "status": "200"}
    assert _sample(text, count, **disable) == 1.0
    assert _sample(text, count, method="GET", route="<unmatched>", status="404") == 1.0
    observed = "sigueme_http_request_duration_seconds_count"
    assert _sample(text, observed, method="GET", route="/v1/me", status="401") == 2.0
    bucket = "sigueme_http_request_duration_seconds_bucket"
    assert _sample(text, bucket, method="GET", route="/v1/me", status="401", le="+Inf") == 2.0
    # Labels are templates: no user name, id or token ever appears.
    for secret in ("maria.secreta", "5f0c7a2e", admin.token, "sgm_"):
        assert secret not in text


async def _readyz_with_redis(database_url: str, redis_url: str) -> httpx.Response:
    settings = Settings(database_url=SecretStr(database_url), redis_url=SecretStr(redis_url))
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await client.get("/readyz")


async def test_readyz_checks_redis_when_it_is_configured(database_url: str, redis_url: str) -> None:
    response = await _readyz_with_redis(database_url, redis_url)
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_a_redis_that_is_down_degrades_but_does_not_stop_the_service(
    database_url: str,
) -> None:
    """Nothing waits on Redis to be stored, so the service starts and stays ready; the
    operator still sees why the live feed and the police queue lag."""
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    response = await _readyz_with_redis(database_url, f"redis://127.0.0.1:{port}/0")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded"
    assert body["reason"].startswith("redis: ")
