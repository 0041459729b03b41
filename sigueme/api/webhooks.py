"""Webhooks over HTTP, for admins: register an endpoint told of alert changes (its
signing secret is shown once), list them, disable one, read its delivery log.

The service POSTs to the registered URL from inside its own network, which is why only
admins register webhooks. What a receiver gets, how to check the signature and the
retry schedule are in :mod:`sigueme.services.webhooks`. :func:`webhook_task` runs the
deliveries in the background for the app's lifetime.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated

import httpx
from fastapi import APIRouter, FastAPI, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from sigueme.api.deps import AdminDep, SessionDep
from sigueme.api.trips import INVALID, UNAUTHORIZED, Responses, _err, refuse
from sigueme.errors import Invalid
from sigueme.services import webhooks as service
from sigueme.store.models import Webhook, WebhookAttempt, WebhookDelivery, utcnow

router = APIRouter(prefix="/v1", tags=["webhooks"])

WebhookId = Annotated[int, Path(ge=1, le=2**31 - 1, description="The webhook's id.")]
FORBIDDEN_ADMIN: Responses = {403: _err("Only admins manage webhooks.")}
NOT_FOUND_WEBHOOK: Responses = {404: _err("No such webhook.")}


class WebhookCreate(BaseModel):
    """An endpoint to tell of alert changes: of the trips ``user`` may see, or of every
    alert when no user is given."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(
        min_length=1,
        max_length=service.MAX_URL,
        description="Where to POST: an http or https URL.",
        examples=["https://c5.morelos.gob.mx/hooks/sigueme"],
    )
    user: str | None = Field(
        None,
        min_length=1,
        max_length=100,
        description="The user whose visible trips it follows (a monitor: the trips shared "
        "with them, while shared); none: every alert.",
    )
    label: str | None = Field(None, max_length=200, description="A note for operators.")
    secret: str | None = Field(
        None,
        min_length=service.MIN_SECRET,
        max_length=service.MAX_SECRET,
        pattern=r"^[!-~]+$",
        description="The HMAC-SHA256 signing key (printable ASCII, no spaces); generated "
        "when not given.",
    )


class WebhookOut(BaseModel):
    """A registered webhook (its secret is never shown again)."""

    id: int
    url: str
    user: str | None = Field(description="The user whose visible trips it follows; none: all.")
    label: str | None
    created_by: str | None
    created_at: datetime
    disabled_at: datetime | None
    active: bool = Field(description="Not disabled.")
    deliveries: str = Field(description="Its delivery log.")


class WebhookWithSecret(WebhookOut):
    """A webhook with its signing secret, shown this once."""

    secret: str = Field(
        description="Receivers check X-Sigueme-Signature: sha256=HMAC-SHA256(secret, "
        "X-Sigueme-Timestamp + '.' + body), and refuse old timestamps."
    )


class WebhookList(BaseModel):
    webhooks: list[WebhookOut]


class AttemptOut(BaseModel):
    at: datetime
    status_code: int | None = Field(description="The endpoint's HTTP status, if it answered.")
    error: str | None = Field(description="Why there was no answer (timeout, refused...).")
    duration_ms: float


class DeliveryOut(BaseModel):
    id: int = Field(description="Sent as X-Sigueme-Delivery, the same on every retry.")
    outbox_id: int
    alert_id: str
    event: str
    status: str = Field(description="pending, delivered, failed (gave up) or cancelled.")
    attempt_count: int
    next_attempt_at: datetime | None = Field(description="When pending: the next try.")
    delivered_at: datetime | None
    created_at: datetime
    attempts: list[AttemptOut] = Field(description="Every attempt, oldest first.")


class DeliveryList(BaseModel):
    deliveries: list[DeliveryOut] = Field(description="Newest first.")


def webhook_out(webhook: Webhook, names: dict[int, str]) -> WebhookOut:
    return WebhookOut(
        id=webhook.id,
        url=webhook.url,
        user=names.get(webhook.user_id) if webhook.user_id is not None else None,
        label=webhook.label,
        created_by=names.get(webhook.created_by),
        created_at=webhook.created_at,
        disabled_at=webhook.disabled_at,
        active=webhook.disabled_at is None,
        deliveries=f"/v1/webhooks/{webhook.id}/deliveries",
    )


def delivery_out(delivery: WebhookDelivery, attempts: list[WebhookAttempt]) -> DeliveryOut:
    return DeliveryOut(
        id=delivery.id,
        outbox_id=delivery.outbox_id,
        alert_id=delivery.alert_id,
        event=delivery.event,
        status=delivery.status,
        attempt_count=delivery.attempts,
        next_attempt_at=delivery.next_attempt_at if delivery.status == service.PENDING else None,
        delivered_at=delivery.delivered_at,
        created_at=delivery.created_at,
        attempts=[
            AttemptOut(at=a.at, status_code=a.status_code, error=a.error, duration_ms=a.duration_ms)
            for a in attempts
        ],
    )


def _ids(*webhooks: Webhook) -> set[int]:
    ids = {w.created_by for w in webhooks}
    return ids | {w.user_id for w in webhooks if w.user_id is not None}


@router.post(
    "/webhooks",
    status_code=201,
    response_model=WebhookWithSecret,
    summary="Register a webhook (admin; its secret is shown once)",
    responses={**UNAUTHORIZED, **FORBIDDEN_ADMIN, **INVALID},
)
async def register_webhook(
    body: WebhookCreate, admin: AdminDep, session: SessionDep, response: Response
) -> WebhookWithSecret:
    """Tell ``url`` of alert changes from now on: those of the trips ``user`` may see,
    or all. The answer holds the signing secret, this once."""
    assert admin.user_id is not None  # AdminDep: a user, never a share link
    try:
        webhook, _ = await service.create_webhook(
            session,
            url=body.url,
            by=admin.user_id,
            user_name=body.user,
            label=body.label,
            secret=body.secret,
        )
    except Invalid as exc:
        raise refuse(("body", exc.field), exc.reason) from None
    await session.commit()
    names = await service.user_names(session, _ids(webhook))
    response.headers["Location"] = f"/v1/webhooks/{webhook.id}"
    return WebhookWithSecret(**webhook_out(webhook, names).model_dump(), secret=webhook.secret)


@router.get(
    "/webhooks",
    response_model=WebhookList,
    summary="List webhooks (admin)",
    responses={**UNAUTHORIZED, **FORBIDDEN_ADMIN},
)
async def list_webhooks(_admin: AdminDep, session: SessionDep) -> WebhookList:
    """Every webhook, disabled ones too, newest first; no secrets."""
    webhooks = await service.list_webhooks(session)
    names = await service.user_names(session, _ids(*webhooks))
    return WebhookList(webhooks=[webhook_out(w, names) for w in webhooks])


@router.get(
    "/webhooks/{id}",
    response_model=WebhookOut,
    summary="A webhook (admin)",
    responses={**UNAUTHORIZED, **FORBIDDEN_ADMIN, **NOT_FOUND_WEBHOOK},
)
async def get_webhook(id: WebhookId, _admin: AdminDep, session: SessionDep) -> WebhookOut:
    """The webhook, without its secret."""
    webhook = await service.get_webhook(session, id)
    return webhook_out(webhook, await service.user_names(session, _ids(webhook)))


@router.delete(
    "/webhooks/{id}",
    response_model=WebhookOut,
    summary="Disable a webhook (admin)",
    responses={**UNAUTHORIZED, **FORBIDDEN_ADMIN, **NOT_FOUND_WEBHOOK},
)
async def disable_webhook(id: WebhookId, _admin: AdminDep, session: SessionDep) -> WebhookOut:
    """Tell the webhook of nothing more; its pending deliveries are cancelled, its log
    kept. Disabling a disabled webhook changes nothing and answers the same."""
    webhook = await service.get_webhook(session, id)
    await service.disable_webhook(session, webhook, utcnow())
    await session.commit()
    return webhook_out(webhook, await service.user_names(session, _ids(webhook)))


@router.get(
    "/webhooks/{id}/deliveries",
    response_model=DeliveryList,
    summary="A webhook's delivery log (admin)",
    responses={**UNAUTHORIZED, **FORBIDDEN_ADMIN, **NOT_FOUND_WEBHOOK, **INVALID},
)
async def list_deliveries(
    id: WebhookId,
    _admin: AdminDep,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=service.MAX_DELIVERIES_LISTED)] = 50,
) -> DeliveryList:
    """The latest deliveries, newest first, each with every attempt: when, the HTTP
    status or the error, how long it took."""
    webhook = await service.get_webhook(session, id)
    rows = await service.list_deliveries(session, webhook.id, limit=limit)
    return DeliveryList(deliveries=[delivery_out(d, attempts) for d, attempts in rows])


@asynccontextmanager
async def webhook_task(app: FastAPI) -> AsyncIterator[None]:
    """Deliver webhooks in the background for the app's lifetime, with one HTTP client.
    ``app.state.webhook_wake`` is the event that sends what is due at once (the outbox
    relay sets it after enqueueing deliveries)."""
    stop = asyncio.Event()
    wake = asyncio.Event()
    async with httpx.AsyncClient(
        timeout=service.TIMEOUT_S,
        follow_redirects=False,
        headers={"User-Agent": service.USER_AGENT},
    ) as client:
        task = asyncio.create_task(
            service.webhook_loop(app.state.sessions, client, stop, wake=wake),
            name="webhook-deliveries",
        )
        app.state.webhook_wake = wake
        try:
            yield
        finally:
            app.state.webhook_wake = None
            stop.set()
            await task
