"""The police queue over HTTP: who may work it, what it refuses, a dispatcher's system
reading, acknowledging and reclaiming alert changes (on the database queue and on the
Redis Stream), and a Redis that is down answering 503."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import pytest_asyncio
from conftest import Account, AddAccount
from fastapi import FastAPI
from pydantic import SecretStr

from sigueme.api.app import create_app
from sigueme.bus.queue import DEFAULT_GROUP, PoliceQueue, RedisStreamQueue
from sigueme.settings import Settings
from sigueme.store.models import Role
from sigueme.store.users import add_user

READ = {"consumer": "cad-cuernavaca-1", "count": 10}


def change(n: int) -> dict[str, str]:
    return {"outbox_id": str(n), "alert_id": f"alert-{n}", "event": "raised", "severity": "4"}


def queue_of(app: FastAPI) -> PoliceQueue:
    queue: PoliceQueue = app.state.police_queue
    return queue


# -- who may ----------------------------------------------------------------------------------

CALLS: list[tuple[str, str, dict[str, Any] | None]] = [
    ("POST", "/v1/queue/read", READ),
    ("POST", "/v1/queue/ack", {"ids": ["1"]}),
    ("POST", "/v1/queue/claim", {"consumer": "cad-1", "min_idle_ms": 1000}),
    ("GET", "/v1/queue", None),
]


@pytest.mark.parametrize(("method", "path", "body"), CALLS)
async def test_no_token_is_401(
    client: httpx.AsyncClient, method: str, path: str, body: dict[str, Any] | None
) -> None:
    response = await client.request(method, path, json=body)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize("role", [Role.TRAVELLER, Role.MONITOR])
@pytest.mark.parametrize(("method", "path", "body"), CALLS)
async def test_travellers_and_monitors_are_refused(
    client: httpx.AsyncClient,
    add_account: AddAccount,
    role: Role,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    app: FastAPI,
) -> None:
    await queue_of(app).publish(change(1))
    who = await add_account("ana", role)

    response = await client.request(method, path, json=body, headers=who.headers)

    assert response.status_code == 403
    assert "dispatcher" in response.json()["detail"]
    assert await queue_of(app).pending() == 0, "a refused read took an entry"


@pytest.mark.parametrize("role", [Role.DISPATCHER, Role.ADMIN])
async def test_dispatchers_and_admins_may(
    client: httpx.AsyncClient, add_account: AddAccount, role: Role
) -> None:
    who = await add_account("lupita", role)
    response = await client.get("/v1/queue", headers=who.headers)
    assert response.status_code == 200, response.text


# -- what it refuses --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "loc"),
    [
        ("/v1/queue/read", {"count": 1}, ["body", "consumer"]),
        ("/v1/queue/read", {"consumer": ""}, ["body", "consumer"]),
        ("/v1/queue/read", {"consumer": "cad 1"}, ["body", "consumer"]),
        ("/v1/queue/read", {"consumer": "cad/1"}, ["body", "consumer"]),
        ("/v1/queue/read", {"consumer": "c" * 101}, ["body", "consumer"]),
        ("/v1/queue/read", {"consumer": "cad-1", "count": 0}, ["body", "count"]),
        ("/v1/queue/read", {"consumer": "cad-1", "count": 101}, ["body", "count"]),
        ("/v1/queue/read", {"consumer": "cad-1", "block_ms": -1}, ["body", "block_ms"]),
        ("/v1/queue/read", {"consumer": "cad-1", "block_ms": 30_001}, ["body", "block_ms"]),
        ("/v1/queue/read", {"consumer": "cad-1", "group": "x"}, ["body", "group"]),
        ("/v1/queue/ack", {"ids": []}, ["body", "ids"]),
        ("/v1/queue/ack", {"ids": [str(n) for n in range(1001)]}, ["body", "ids"]),
        ("/v1/queue/ack", {"ids": ["1764284400000-0", "abc"]}, ["body", "ids", 1]),
        ("/v1/queue/ack", {}, ["body", "ids"]),
        ("/v1/queue/claim", {"consumer": "cad-1"}, ["body", "min_idle_ms"]),
        ("/v1/queue/claim", {"consumer": "cad-1", "min_idle_ms": 999}, ["body", "min_idle_ms"]),
        (
            "/v1/queue/claim",
            {"consumer": "cad-1", "min_idle_ms": 1000, "count": 0},
            ["body", "count"],
        ),
    ],
)
async def test_bad_requests_are_422_and_change_nothing(
    client: httpx.AsyncClient,
    add_account: AddAccount,
    app: FastAPI,
    path: str,
    body: dict[str, Any],
    loc: list[str | int],
) -> None:
    entry_id = await queue_of(app).publish(change(1))
    await queue_of(app).read("cad-0")
    lupita = await add_account("lupita", Role.DISPATCHER)

    response = await client.post(path, json=body, headers=lupita.headers)

    assert response.status_code == 422, response.text
    assert loc in [e["loc"] for e in response.json()["detail"]]
    assert await queue_of(app).pending() == 1
    assert await queue_of(app).ack([entry_id]) == 1


# -- working the queue ------------------------------------------------------------------------


@dataclass
class Desk:
    """A dispatcher's system talking to one app."""

    client: httpx.AsyncClient
    who: Account

    async def read(self, consumer: str, **body: Any) -> list[dict[str, Any]]:
        response = await self.client.post(
            "/v1/queue/read", json={"consumer": consumer, **body}, headers=self.who.headers
        )
        assert response.status_code == 200, response.text
        entries: list[dict[str, Any]] = response.json()["entries"]
        return entries

    async def ack(self, ids: list[str]) -> int:
        response = await self.client.post(
            "/v1/queue/ack", json={"ids": ids}, headers=self.who.headers
        )
        assert response.status_code == 200, response.text
        acknowledged: int = response.json()["acknowledged"]
        return acknowledged

    async def claim(self, consumer: str, **body: Any) -> list[dict[str, Any]]:
        response = await self.client.post(
            "/v1/queue/claim",
            json={"consumer": consumer, "min_idle_ms": 1000, **body},
            headers=self.who.headers,
        )
        assert response.status_code == 200, response.text
        entries: list[dict[str, Any]] = response.json()["entries"]
        return entries

    async def info(self) -> dict[str, Any]:
        response = await self.client.get("/v1/queue", headers=self.who.headers)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


async def work_the_queue(desk: Desk, queue: PoliceQueue) -> None:
    """Read, acknowledge, reclaim what a crashed reader held: what every backend does."""
    ids = [await queue.publish(change(n)) for n in range(3)]

    first = await desk.read("cad-1", count=2)
    assert first == [
        {"id": ids[0], "fields": change(0), "deliveries": 1},
        {"id": ids[1], "fields": change(1), "deliveries": 1},
    ]
    assert (await desk.info())["pending"] == 2
    assert await desk.ack([ids[0]]) == 1
    assert await desk.ack([ids[0]]) == 0

    # cad-2 takes the last one and crashes; cad-1 still holds ids[1], unacknowledged.
    assert [e["id"] for e in await desk.read("cad-2", count=10)] == [ids[2]]
    assert await desk.read("cad-3", count=10) == []
    assert await desk.claim("cad-3") == [], "nothing idle for a second yet"
    await asyncio.sleep(1.1)
    reclaimed = await desk.claim("cad-3", count=10)
    assert reclaimed == [
        {"id": ids[1], "fields": change(1), "deliveries": 2},
        {"id": ids[2], "fields": change(2), "deliveries": 2},
    ]
    assert await desk.ack([ids[1], ids[2]]) == 2
    assert (await desk.info())["pending"] == 0
    await asyncio.sleep(1.1)
    assert await desk.claim("cad-4") == []
    assert await desk.read("cad-4") == []


async def test_read_ack_claim_on_the_database(
    client: httpx.AsyncClient, add_account: AddAccount, app: FastAPI
) -> None:
    desk = Desk(client, await add_account("lupita", Role.DISPATCHER))

    assert await desk.info() == {
        "pending": 0,
        "backend": "database",
        "stream": "police_queue",
        "group": DEFAULT_GROUP,
    }
    await work_the_queue(desk, queue_of(app))


async def test_a_blocking_read_gets_an_entry_published_meanwhile(
    client: httpx.AsyncClient, add_account: AddAccount, app: FastAPI
) -> None:
    desk = Desk(client, await add_account("lupita", Role.DISPATCHER))
    reader = asyncio.create_task(desk.read("cad-1", block_ms=10_000))
    await asyncio.sleep(0.2)
    entry_id = await queue_of(app).publish(change(7))

    got = await asyncio.wait_for(reader, 10)

    assert [(e["id"], e["fields"]) for e in got] == [(entry_id, change(7))]


# -- on Redis ---------------------------------------------------------------------------------


async def _add(app: FastAPI, name: str, role: Role) -> Account:
    async with app.state.sessions() as session:
        user, token = await add_user(session, name, role)
        await session.commit()
    return Account(id=user.id, name=user.name, role=role, token=token)


@pytest_asyncio.fixture(loop_scope="session")
async def redis_app(database_url: str, redis_url: str) -> AsyncIterator[FastAPI]:
    """The app on Redis, its queue on a stream of this test's own (tests share Redis)."""
    application = create_app(
        Settings(database_url=SecretStr(database_url), redis_url=SecretStr(redis_url))
    )
    async with application.router.lifespan_context(application):
        assert isinstance(application.state.police_queue, RedisStreamQueue)
        stream = f"sigueme:test:police:{uuid.uuid4().hex}"
        application.state.police_queue = RedisStreamQueue(application.state.redis, stream=stream)
        try:
            yield application
        finally:
            await application.state.redis.delete(stream)


@pytest.mark.redis
async def test_read_ack_claim_on_redis(redis_app: FastAPI) -> None:
    transport = httpx.ASGITransport(app=redis_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://sigueme.test") as c:
        desk = Desk(c, await _add(redis_app, "lupita", Role.DISPATCHER))
        queue = queue_of(redis_app)

        info = await desk.info()
        assert info == {
            "pending": 0,
            "backend": "redis",
            "stream": queue.stream,
            "group": DEFAULT_GROUP,
        }
        await work_the_queue(desk, queue)


@pytest.mark.redis
async def test_a_redis_that_is_down_is_503_with_retry_after(database_url: str) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app(
        Settings(
            database_url=SecretStr(database_url),
            redis_url=SecretStr(f"redis://127.0.0.1:{port}/0"),
        )
    )
    async with app.router.lifespan_context(app):
        lupita = await _add(app, "lupita", Role.DISPATCHER)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://sigueme.test") as c:
            for method, path, body in CALLS:
                response = await c.request(method, path, json=body, headers=lupita.headers)

                assert response.status_code == 503, (path, response.text)
                assert response.headers["Retry-After"] == "5"
                assert "Redis is unavailable" in response.json()["detail"]
