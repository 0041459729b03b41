"""A stand-in for Meta's Graph API (WhatsApp Cloud API), served by uvicorn on a free
loopback port in a thread, and builders of the webhook notifications Meta sends.

It speaks the documented format:

- ``GET /v{N}/{media_id}`` (bearer token) → ``{messaging_product, url, mime_type, sha256,
  file_size, id}``;
- ``GET {url}`` (the same bearer token) → the file's bytes;
- ``POST /v{N}/{phone_number_id}/messages`` (bearer token) with a text message →
  ``{messaging_product, contacts, messages: [{id: "wamid..."}]}``; the request bodies are
  kept in :attr:`GraphStandin.sent`.

Errors come as Graph's ``{"error": {message, type, code, fbtrace_id}}``: 401 for a wrong
token, 400 for an unknown media id or a malformed message.

Usage::

    with GraphStandin() as graph:
        media_id = graph.add_media(jpeg_bytes, "image/jpeg")
        client = GraphClient(graph.base_url, graph.access_token, graph.api_version, http)
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import socket
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from sigueme.reports.whatsapp import SIGNATURE_HEADER, sign

_VERSION = re.compile(r"^v\d+(\.\d+)?$")


@dataclass
class StandinMedia:
    data: bytes
    mime_type: str
    file_size: int
    """The size announced (the real one unless a test lies)."""
    sha256: str
    chunked: bool
    """Serve without a Content-Length (the download cannot know the size up front)."""


def _error(status: int, message: str, kind: str, code: int) -> JSONResponse:
    body = {"error": {"message": message, "type": kind, "code": code, "fbtrace_id": "Standin"}}
    return JSONResponse(body, status_code=status)


class GraphStandin:
    """The stand-in server. Start it with ``with`` (or :meth:`start` / :meth:`stop`)."""

    def __init__(self, *, access_token: str = "standin-token", api_version: str = "v23.0"):
        self.access_token = access_token
        self.api_version = api_version
        self.media: dict[str, StandinMedia] = {}
        self.sent: list[dict[str, Any]] = []
        """The JSON bodies of the messages sent, in order."""
        self.requests: list[tuple[str, str]] = []
        """(method, path) of every request received."""
        self._ids = itertools.count(1)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self.port = 0

    # -- what tests arrange --------------------------------------------------------------

    def add_media(
        self,
        data: bytes,
        mime_type: str,
        *,
        media_id: str | None = None,
        file_size: int | None = None,
        sha256: str | None = None,
        chunked: bool = False,
    ) -> str:
        """Make ``data`` available as a media file; its id. ``file_size`` and ``sha256``
        override what the look-up announces."""
        media_id = media_id or f"{1000000000000000 + next(self._ids)}"
        self.media[media_id] = StandinMedia(
            data=data,
            mime_type=mime_type,
            file_size=len(data) if file_size is None else file_size,
            sha256=hashlib.sha256(data).hexdigest() if sha256 is None else sha256,
            chunked=chunked,
        )
        return media_id

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- the server ----------------------------------------------------------------------

    def _authorised(self, request: Request) -> bool:
        self.requests.append((request.method, request.url.path))
        return request.headers.get("authorization") == f"Bearer {self.access_token}"

    async def _media_info(self, request: Request) -> Response:
        if not self._authorised(request):
            return _error(401, "Invalid OAuth access token.", "OAuthException", 190)
        version, media_id = request.path_params["version"], request.path_params["media_id"]
        media = self.media.get(media_id)
        if not _VERSION.match(version) or media is None:
            return _error(
                400,
                f"Unsupported get request. Object '{media_id}' does not exist",
                "GraphMethodException",
                100,
            )
        return JSONResponse(
            {
                "messaging_product": "whatsapp",
                "url": f"{self.base_url}/whatsapp_business/attachments/?mid={media_id}&ext=1",
                "mime_type": media.mime_type,
                "sha256": media.sha256,
                "file_size": media.file_size,
                "id": media_id,
            }
        )

    async def _download(self, request: Request) -> Response:
        if not self._authorised(request):
            return _error(401, "Invalid OAuth access token.", "OAuthException", 190)
        media = self.media.get(request.query_params.get("mid", ""))
        if media is None:
            return _error(404, "Media not found", "GraphMethodException", 100)
        if not media.chunked:
            return Response(media.data, media_type=media.mime_type)

        async def chunks() -> AsyncIterator[bytes]:
            for start in range(0, len(media.data), 64 * 1024):
                yield media.data[start : start + 64 * 1024]

        return StreamingResponse(chunks(), media_type=media.mime_type)

    async def _messages(self, request: Request) -> Response:
        if not self._authorised(request):
            return _error(401, "Invalid OAuth access token.", "OAuthException", 190)
        try:
            body = json.loads(await request.body())
        except ValueError:
            return _error(400, "Invalid JSON", "OAuthException", 100)
        text = body.get("text") if isinstance(body, dict) else None
        valid = (
            isinstance(body, dict)
            and body.get("messaging_product") == "whatsapp"
            and isinstance(body.get("to"), str)
            and body.get("type") == "text"
            and isinstance(text, dict)
            and isinstance(text.get("body"), str)
            and 0 < len(text["body"]) <= 4096
        )
        if not valid or not _VERSION.match(request.path_params["version"]):
            return _error(400, "(#100) Invalid parameter", "OAuthException", 100)
        self.sent.append({"phone_number_id": request.path_params["phone_number_id"], **body})
        wamid = f"wamid.STANDIN{next(self._ids):06d}"
        return JSONResponse(
            {
                "messaging_product": "whatsapp",
                "contacts": [{"input": body["to"], "wa_id": body["to"]}],
                "messages": [{"id": wamid}],
            }
        )

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/whatsapp_business/attachments/", self._download, methods=["GET"]),
                Route("/{version}/{phone_number_id}/messages", self._messages, methods=["POST"]),
                Route("/{version}/{media_id}", self._media_info, methods=["GET"]),
            ]
        )

    def start(self) -> GraphStandin:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = int(sock.getsockname()[1])
        config = uvicorn.Config(
            self.app(), log_level="warning", lifespan="off", ws="none", http="h11"
        )
        self._server = uvicorn.Server(config)
        self._socket = sock
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 15
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the Graph stand-in did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=15)
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = self._socket = None

    def __enter__(self) -> GraphStandin:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


# -- webhook notifications, as Meta sends them ---------------------------------------------

PHONE_NUMBER_ID = "106540352242922"
DISPLAY_NUMBER = "527775006264"


def message(
    kind: str,
    content: dict[str, Any] | None = None,
    *,
    wamid: str,
    timestamp: int,
    sender: str | None = "5217771234567",
    user_id: str | None = None,
) -> dict[str, Any]:
    """One entry of ``messages``: ``message("text", {"body": "hola"}, ...)``."""
    entry: dict[str, Any] = {"id": wamid, "timestamp": str(timestamp), "type": kind}
    if sender is not None:
        entry["from"] = sender
    if user_id is not None:
        entry["from_user_id"] = user_id
    if content is not None:
        entry[kind] = content
    return entry


def notification(
    *messages: dict[str, Any],
    name: str | None = "Ana",
    wa_id: str | None = "5217771234567",
    user_id: str | None = "MX.1502576394655843",
    statuses: list[dict[str, Any]] | None = None,
    phone_number_id: str = PHONE_NUMBER_ID,
) -> dict[str, Any]:
    """A ``whatsapp_business_account`` notification holding ``messages`` from one contact
    (or only ``statuses``)."""
    contact: dict[str, Any] = {}
    if name is not None:
        contact["profile"] = {"name": name}
    if wa_id is not None:
        contact["wa_id"] = wa_id
    if user_id is not None:
        contact["user_id"] = user_id
    value: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": DISPLAY_NUMBER, "phone_number_id": phone_number_id},
    }
    if messages:
        value["contacts"] = [contact]
        value["messages"] = list(messages)
    if statuses is not None:
        value["statuses"] = statuses
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": "102290129340398", "changes": [{"field": "messages", "value": value}]}],
    }


def signed(app_secret: str, document: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    """The raw body of ``document`` and the headers Meta sends with it."""
    body = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()
    return body, {"Content-Type": "application/json", SIGNATURE_HEADER: sign(app_secret, body)}
