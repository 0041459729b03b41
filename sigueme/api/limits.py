"""Bounds on requests, enforced before anything parses them: body size, and no NUL
characters anywhere (no field of Sígueme's holds one, and PostgreSQL refuses them in
text: better a clear 400 than a database error)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_BODY_BYTES = 2 * 2**20
"""2 MiB: a 20,000-vertex route as GeoJSON with full-precision coordinates is under 1 MiB."""
REPORT_UPLOADS: Mapping[str, int] = {"/v1/reports": 5 * 16 * 2**20 + 2**20}
"""Paths that take multipart uploads of evidence files, and their body limits: five files
of up to 16 MiB, and the fields."""


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body larger than {limit} bytes")


class NulCharacter(HTTPException):
    def __init__(self) -> None:
        super().__init__(400, "NUL characters are not accepted in any field")


_RAW_NUL = (b"\x00", b"\\u0000")  # a NUL byte, or JSON's escape of one
_URL_NUL = (b"\x00", b"%00")  # in a path, a query string or a form body


def _has_nul(data: bytes, marks: tuple[bytes, ...] = _URL_NUL) -> bool:
    lowered = data.lower()
    return any(mark in lowered for mark in marks)


class BodySizeLimit:
    """ASGI middleware answering 413 to an HTTP request whose body exceeds ``limit``.

    A declared ``Content-Length`` over the limit is refused before reading a byte; a
    body that arrives without one (chunked) is refused as soon as the bytes read pass
    the limit, so nothing larger is ever held in memory or parsed."""

    def __init__(
        self,
        app: ASGIApp,
        limit: int = MAX_BODY_BYTES,
        *,
        uploads: Mapping[str, int] = REPORT_UPLOADS,
    ) -> None:
        self.app = app
        self.limit = limit
        self.uploads = dict(uploads)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if (
            "\x00" in scope["path"]
            or _has_nul(scope.get("query_string", b""))
            or _has_nul(scope.get("raw_path") or b"")
        ):
            await self._refuse(send, 400, NulCharacter().detail)
            return
        content_type = next((v for k, v in scope["headers"] if k == b"content-type"), b"")
        # A multipart upload to a path that takes files: binary files hold NUL bytes (the
        # route checks its text fields itself), and they are larger than other bodies.
        upload = content_type.startswith(b"multipart/form-data") and scope["path"] in self.uploads
        limit = self.uploads[scope["path"]] if upload else self.limit
        for key, value in scope["headers"]:
            if key == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await self._refuse(send, 400, "invalid Content-Length header")
                    return
                if declared > limit:
                    await self._refuse(send, 413, BodyTooLarge(limit).detail)
                    return
        received = 0
        started = False
        tail = b""  # the end of the previous chunk: a NUL escape may straddle two
        form = content_type.startswith(b"application/x-www-form-urlencoded")
        body_marks: tuple[bytes, ...] = () if upload else _URL_NUL if form else _RAW_NUL

        async def counting_receive() -> Message:
            nonlocal received, tail
            message = await receive()
            if message["type"] == "http.request":
                chunk = message.get("body", b"")
                received += len(chunk)
                if received > limit:
                    # FastAPI re-raises HTTPExceptions met while reading a body, so
                    # this reaches the exception middleware and becomes a 413.
                    raise BodyTooLarge(limit)
                if body_marks and _has_nul(tail + chunk, body_marks):
                    raise NulCharacter()
                tail = chunk[-5:]
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except (BodyTooLarge, NulCharacter) as exc:
            # Raised where no handler turned it into a response (a route reading the
            # raw stream itself, say): answer here if we still can.
            if started:
                raise
            await self._refuse(send, exc.status_code, exc.detail)

    @staticmethod
    async def _refuse(send: Send, status: int, detail: str) -> None:
        body = json.dumps({"detail": detail}, separators=(",", ":")).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


_REFUSAL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"detail": {"type": "string"}},
    "required": ["detail"],
}
_REFUSALS: dict[str, dict[str, Any]] = {
    "400": {
        "description": "A NUL character in the path, the query string or the body.",
        "content": {"application/json": {"schema": _REFUSAL_SCHEMA}},
    },
    "413": {
        "description": "The request body is larger than the limit (2 MiB for most).",
        "content": {"application/json": {"schema": _REFUSAL_SCHEMA}},
    },
}
_BODY_METHODS = frozenset({"post", "put", "patch"})


def document_refusals(openapi: Callable[[], dict[str, Any]]) -> Callable[[], dict[str, Any]]:
    """Wrap an app's ``openapi`` so that every operation documents what
    :class:`BodySizeLimit` answers before the operation runs: 400 (a NUL character),
    and for methods with a body, 413. An operation that documents them itself keeps
    its own."""

    def with_refusals() -> dict[str, Any]:
        schema = openapi()
        for item in schema.get("paths", {}).values():
            for method, operation in item.items():
                responses = operation.setdefault("responses", {})
                responses.setdefault("400", _REFUSALS["400"])
                if method in _BODY_METHODS:
                    responses.setdefault("413", _REFUSALS["413"])
        return schema

    return with_refusals
