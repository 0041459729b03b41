"""The WhatsApp Cloud API webhook: ``GET /webhooks/whatsapp`` (Meta's verification
handshake) and ``POST /webhooks/whatsapp`` (signed notifications of the messages people
send to the commission's number). No bearer token: the handshake checks the verify
token, every notification is checked against ``X-Hub-Signature-256`` over the raw body.

Order of work for a notification, so a forged or replayed call costs nothing: the body
is read up to :data:`~sigueme.reports.whatsapp.MAX_NOTIFICATION_BYTES` (413 beyond),
the signature checked (401, nothing stored), the body parsed (422), the messages already
taken skipped; only then are media fetched and reports written
(:class:`~sigueme.services.reports.WhatsAppInbox`). 200 once every new message is
committed; 503 when a media file could not be fetched for a passing reason or the
evidence store failed, so that Meta sends the notification again (what was taken is
skipped then).

WhatsApp is off until it is configured: without ``SIGUEME_WHATSAPP_VERIFY_TOKEN`` the
handshake answers 404; without ``SIGUEME_WHATSAPP_APP_SECRET`` and
``SIGUEME_WHATSAPP_ACCESS_TOKEN`` notifications answer 503 (or 404 when nothing of
WhatsApp is configured).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from sigueme.api.deps import SettingsDep
from sigueme.api.fixes_in import wake_relay
from sigueme.reports.storage import EvidenceStoreError
from sigueme.reports.whatsapp import (
    MAX_NOTIFICATION_BYTES,
    SIGNATURE_HEADER,
    GraphError,
    parse_notification,
    verify_challenge,
    verify_signature,
)
from sigueme.services.reports import InboxResult, WhatsAppInbox
from sigueme.settings import Settings
from sigueme.store.models import utcnow

log = logging.getLogger(__name__)

router = APIRouter(tags=["whatsapp"])

PATH = "/webhooks/whatsapp"
NOT_CONFIGURED = (
    "WhatsApp is not configured on this service (SIGUEME_WHATSAPP_VERIFY_TOKEN, "
    "SIGUEME_WHATSAPP_APP_SECRET, SIGUEME_WHATSAPP_ACCESS_TOKEN)"
)


def _configured(settings: Settings) -> bool:
    return any(
        s is not None and s.get_secret_value()
        for s in (
            settings.whatsapp_verify_token,
            settings.whatsapp_app_secret,
            settings.whatsapp_access_token,
        )
    )


def _detail(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


@router.get(
    PATH,
    summary="Meta's webhook verification handshake",
    response_class=PlainTextResponse,
    responses={403: {"description": "Wrong verify token."}, 404: {"description": "Off."}},
)
async def handshake(request: Request, settings: SettingsDep) -> Response:
    """``hub.mode=subscribe``, ``hub.verify_token`` (the configured one) and
    ``hub.challenge``: the challenge, as text. 403 otherwise."""
    token = settings.whatsapp_verify_token
    if token is None or not token.get_secret_value():
        return _detail(404, NOT_CONFIGURED)
    challenge = verify_challenge(dict(request.query_params), token.get_secret_value())
    if challenge is None:
        return _detail(403, "verification refused: wrong verify token or not a subscription")
    return PlainTextResponse(challenge)


async def _raw_body(request: Request, limit: int) -> bytes | None:
    """The body as sent, or ``None`` when it is larger than ``limit``."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


@router.post(
    PATH,
    summary="WhatsApp notifications (signed by Meta)",
    responses={
        401: {"description": "Bad or missing X-Hub-Signature-256: nothing stored."},
        404: {"description": "WhatsApp is off."},
        413: {"description": "Body larger than 1 MiB."},
        422: {"description": "Not a notification."},
        503: {"description": "Not configured, or try again (Meta resends)."},
    },
)
async def notification(request: Request, settings: SettingsDep) -> Response:
    """Messages become reports (text, location, photos, audio, video; several within the
    window join one report) and each person gets a reply in Spanish with the folio."""
    inbox: WhatsAppInbox | None = getattr(request.app.state, "whatsapp", None)
    secret = settings.whatsapp_app_secret
    if inbox is None or secret is None or not secret.get_secret_value():
        if not _configured(settings):
            return _detail(404, NOT_CONFIGURED)
        return _detail(
            503,
            "WhatsApp is not fully configured: notifications need SIGUEME_WHATSAPP_APP_SECRET "
            "and SIGUEME_WHATSAPP_ACCESS_TOKEN",
        )
    raw = await _raw_body(request, MAX_NOTIFICATION_BYTES)
    if raw is None:
        return _detail(413, f"notification larger than {MAX_NOTIFICATION_BYTES} bytes")
    if not verify_signature(secret.get_secret_value(), raw, request.headers.get(SIGNATURE_HEADER)):
        return _detail(401, f"bad or missing {SIGNATURE_HEADER}")
    messages = parse_notification(raw, now=time.time())  # NotificationError: 422
    result = InboxResult()
    try:
        await inbox.take(messages, now=utcnow(), result=result)
    except GraphError as exc:
        log.warning("whatsapp: notification not taken, Meta will resend it: %s", exc)
        return _detail(503, "media could not be fetched: send again", {"Retry-After": "30"})
    except EvidenceStoreError as exc:
        log.warning("whatsapp: notification not taken, Meta will resend it: %s", exc)
        return _detail(503, "evidence could not be stored: send again", {"Retry-After": "30"})
    finally:
        # What was committed before a failure goes to the police at once all the same.
        wake_relay(request.app.state, result.changes)
    body: dict[str, Any] = {
        "taken": result.taken,
        "duplicates": result.duplicates,
        "refused": result.refused,
    }
    return JSONResponse(body)
