"""What the websocket handlers share: the phone's socket (:mod:`sigueme.api.live`) and
the watchers' feed (:mod:`sigueme.api.watch`).

Both speak JSON text frames, refuse binary ones, close a frame that is too big (1009),
take the token from ``Authorization: Bearer`` or from a first ``auth`` frame sent in time
(4401 otherwise), and close after too many malformed frames in a row (1008).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any, ClassVar, Final, NoReturn, Protocol, TypeVar

from fastapi import WebSocket, WebSocketDisconnect

from sigueme.api.phone_protocol import dumps

POLICY: Final = 1008
TOO_BIG: Final = 1009
UNAUTHENTICATED: Final = 4401


class Closed(Exception):
    """The server closed the connection: the handler ends quietly."""


class _AuthFrame(Protocol):
    @property
    def token(self) -> str: ...


AuthFrame = TypeVar("AuthFrame", bound=_AuthFrame)


class JsonSocket:
    """An accepted websocket of JSON text frames, at most :attr:`max_frame_bytes` each."""

    max_frame_bytes: ClassVar[int]
    quiet_close: ClassVar[bool] = False
    """Ignore a failure to close (the socket may be closed already)."""

    def __init__(
        self, websocket: WebSocket, *, auth_timeout_s: float, bad_frames_in_a_row: int
    ) -> None:
        self.ws = websocket
        self.auth_timeout_s = auth_timeout_s
        self.bad_frames_in_a_row = bad_frames_in_a_row
        self.bad_in_a_row = 0

    async def close(self, code: int, reason: str) -> NoReturn:
        if self.quiet_close:
            with contextlib.suppress(RuntimeError, WebSocketDisconnect):
                await self.ws.close(code=int(code), reason=reason)
        else:
            await self.ws.close(code=int(code), reason=reason)
        raise Closed

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send_text(dumps(frame))

    async def receive_text(self) -> str | None:
        """The next text frame; ``None`` for a binary one. Too big: closed (1009)."""
        message = await self.ws.receive()
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", 1000))
        limit = self.max_frame_bytes
        text: str | None = message.get("text")
        if text is None:
            data: bytes | None = message.get("bytes")
            if data is not None and len(data) > limit:
                await self.close(TOO_BIG, f"frames are at most {limit} bytes")
            return None
        if len(text) > limit // 4 and len(text.encode()) > limit:
            await self.close(TOO_BIG, f"frames are at most {limit} bytes")
        return text

    # -- authentication --------------------------------------------------------------

    def header_token(self) -> str | None:
        value = self.ws.headers.get("authorization")
        if value is None:
            return None
        scheme, _, token = value.partition(" ")
        return token.strip() if scheme.lower() == "bearer" else ""

    async def auth_token(
        self,
        parse: Callable[[str], object],
        errors: type[Exception],
        auth: type[AuthFrame],
    ) -> str:
        """The header's token, else that of the first frame, which must be an ``auth``
        frame (``parse`` raising ``errors`` for a bad one) within the timeout (4401)."""
        token = self.header_token()
        if token is not None:
            return token
        try:
            text = await asyncio.wait_for(self.receive_text(), self.auth_timeout_s)
        except TimeoutError:
            await self.close(UNAUTHENTICATED, "no auth frame in time")
        frame: object = None
        if text is not None:
            with contextlib.suppress(errors):
                frame = parse(text)
        if not isinstance(frame, auth):
            await self.close(
                UNAUTHENTICATED,
                'authenticate first: header Authorization: Bearer, or {"type": "auth"}',
            )
        return frame.token

    # -- malformed frames --------------------------------------------------------------

    async def bad_frame(self) -> None:
        """Count a malformed frame: too many in a row, closed (1008). A good frame sets
        :attr:`bad_in_a_row` back to 0."""
        self.bad_in_a_row += 1
        if self.bad_in_a_row > self.bad_frames_in_a_row:
            await self.close(POLICY, "too many malformed frames")
