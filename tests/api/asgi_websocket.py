"""A websocket client that talks to an ASGI app in process, on the test's event loop.

Starlette's ``TestClient`` runs the app in a thread with an event loop of its own (and
warns about httpx): the app's database engine, opened by the ``app`` fixture on the
test's loop, cannot be used from there. This client speaks the ASGI websocket messages
directly, so the app runs on the same loop as the test and its fixtures::

    async with connect(app, "/v1/trips/x/phone", headers={...}) as ws:
        await ws.send_json({"type": "ping"})
        assert await ws.receive_json() == {"type": "pong"}

A close from the server raises :class:`Closed` with its code and reason.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from types import TracebackType
from typing import Any

from starlette.types import ASGIApp, Message

TIMEOUT_S = 10.0


class Closed(Exception):
    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(f"closed {code}: {reason}")
        self.code = code
        self.reason = reason


class AsgiWebSocket:
    def __init__(self, app: ASGIApp, path: str, headers: Mapping[str, str] | None) -> None:
        self.app = app
        self.path = path
        self.headers = [(b"host", b"testserver")] + [
            (k.lower().encode(), v.encode()) for k, v in (headers or {}).items()
        ]
        self._to_app: asyncio.Queue[Message] = asyncio.Queue()
        self._from_app: asyncio.Queue[Message] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.closed: Closed | None = None

    async def __aenter__(self) -> AsgiWebSocket:
        scope = {
            "type": "websocket",
            "asgi": {"version": "3.0", "spec_version": "2.4"},
            "http_version": "1.1",
            "scheme": "ws",
            "server": ("testserver", 80),
            "client": ("127.0.0.1", 50000),
            "root_path": "",
            "path": self.path,
            "raw_path": self.path.encode(),
            "query_string": b"",
            "headers": self.headers,
            "subprotocols": [],
            "state": {},
        }
        self._task = asyncio.create_task(self._run(scope))
        await self._to_app.put({"type": "websocket.connect"})
        message = await self._next()
        if message["type"] != "websocket.accept":
            raise AssertionError(f"not accepted: {message}")
        return self

    async def _run(self, scope: dict[str, Any]) -> None:
        try:
            await self.app(scope, self._to_app.get, self._from_app.put)
        finally:
            await self._from_app.put({"type": "test.app_returned"})

    async def _next(self) -> Message:
        if self.closed is not None:
            raise self.closed
        message = await asyncio.wait_for(self._from_app.get(), TIMEOUT_S)
        if message["type"] == "websocket.close":
            self.closed = Closed(message.get("code", 1000), message.get("reason") or "")
            raise self.closed
        if message["type"] == "test.app_returned":
            assert self._task is not None
            await self._task  # raises what the app raised
            raise AssertionError("the app returned without closing the websocket")
        return message

    async def send_text(self, text: str) -> None:
        await self._to_app.put({"type": "websocket.receive", "text": text})

    async def send_bytes(self, data: bytes) -> None:
        await self._to_app.put({"type": "websocket.receive", "bytes": data})

    async def send_json(self, obj: Any) -> None:
        await self.send_text(json.dumps(obj))

    async def receive_text(self) -> str:
        message = await self._next()
        assert message["type"] == "websocket.send", message
        text = message.get("text")
        assert isinstance(text, str), message
        return text

    async def receive_json(self) -> Any:
        return json.loads(await self.receive_text())

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._task is not None
        if not self._task.done():
            await self._to_app.put({"type": "websocket.disconnect", "code": 1000})
            await asyncio.wait_for(self._task, TIMEOUT_S)
        elif exc is None:
            await self._task


def connect(app: ASGIApp, path: str, headers: Mapping[str, str] | None = None) -> AsgiWebSocket:
    return AsgiWebSocket(app, path, headers)
