"""Keep tokens, secrets and positions out of the server's logs, whatever their level.

- uvicorn hands its ``uvicorn.error`` logger to the websockets library, which at DEBUG
  traces every connection: the upgrade request's headers (``Authorization: Bearer
  sgm_...``) and every frame in and out (fixes with their positions, ``auth`` frames
  with tokens). ``sigueme serve --log-level debug`` would write all of it.
  :class:`NoWebsocketTraffic` drops those traces (records the websockets library itself
  makes, at DEBUG or below) and keeps the rest, uvicorn's own lines included.
- httpx logs every request it makes at INFO with its whole URL: a webhook's URL may
  carry a key in its query string, a WhatsApp media download URL is signed.
  :class:`NoRequestUrls` drops those lines (the service logs each webhook attempt
  itself, with the URL cut to scheme, host and path).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Final

import websockets

TRACED_LOGGERS: Final = ("uvicorn.error", "websockets.server", "websockets.protocol")
"""Where the websockets library logs a connection's traffic: uvicorn's logger, or its own."""
_WEBSOCKETS_DIR: Final = str(Path(websockets.__file__).resolve().parent)


class NoWebsocketTraffic(logging.Filter):
    """Drops the websockets library's per-connection traces (DEBUG and below)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.DEBUG:
            return True
        from_websockets = hasattr(record, "websocket") or str(
            Path(record.pathname).resolve()
        ).startswith(_WEBSOCKETS_DIR)
        return not from_websockets


class NoRequestUrls(logging.Filter):
    """Drops httpx's ``HTTP Request: METHOD URL "STATUS"`` lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (isinstance(record.msg, str) and record.msg.startswith("HTTP Request:"))


def _install(name: str, kind: type[logging.Filter]) -> None:
    logger = logging.getLogger(name)
    if not any(isinstance(f, kind) for f in logger.filters):
        logger.addFilter(kind())


def keep_secrets_out_of_logs() -> None:
    """Install the filters of this module (once; a server may start several apps)."""
    for name in TRACED_LOGGERS:
        _install(name, NoWebsocketTraffic)
    _install("httpx", NoRequestUrls)
