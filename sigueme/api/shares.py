"""Shares over HTTP: share a trip with a user, make a share link, list and revoke.

Only a trip's traveller shares it; its traveller and admins list and revoke its
shares. A trip the caller may not see answers 404 here too; one they see but whose
shares are not theirs to manage answers 403.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Path

from sigueme.access import require_change, require_manage_shares
from sigueme.api.deps import PrincipalDep, SessionDep, SettingsDep
from sigueme.api.schemas import (
    LinkCreate,
    LinkCreated,
    ShareList,
    ShareOut,
    UserShareCreate,
)
from sigueme.api.trips import (
    FORBIDDEN_CHANGE,
    INVALID,
    NOT_FOUND,
    UNAUTHORIZED,
    Responses,
    TripId,
    _err,
    refuse,
)
from sigueme.errors import Invalid, NotFound
from sigueme.store import trips as store
from sigueme.store.models import Share, User, utcnow

router = APIRouter(prefix="/v1", tags=["shares"])

CONFLICT_SHARE: Responses = {
    409: _err("The trip has ended, or is already shared with that user (revoke that first).")
}
FORBIDDEN_MANAGE: Responses = {
    403: _err("You see the trip but its shares are not yours to manage.")
}

ShareId = Annotated[int, Path(ge=1, le=2**31 - 1, description="The share's id.")]


def _expiry(body: UserShareCreate | LinkCreate, now: datetime) -> tuple[datetime, str]:
    """When the share ends, and the request field that said so."""
    if body.expires_at is not None and body.hours is not None:
        raise refuse(("body", "hours"), "give expires_at or hours, not both")
    if body.expires_at is not None:
        return body.expires_at, "expires_at"
    if body.hours is not None:
        return now + timedelta(hours=body.hours), "hours"
    raise refuse(("body", "expires_at"), "give expires_at or hours: a share must end")


def share_out(share: Share, user: str | None, now: datetime) -> ShareOut:
    return ShareOut(
        id=share.id,
        trip_id=share.trip_id,
        kind="link" if share.grantee_id is None else "user",
        user=user,
        label=share.label,
        created_at=share.created_at,
        expires_at=share.expires_at,
        revoked_at=share.revoked_at,
        live=share.revoked_at is None and now < share.expires_at,
        url=f"/v1/shares/{share.id}",
    )


@router.post(
    "/trips/{trip_id}/shares",
    status_code=201,
    response_model=ShareOut,
    summary="Share a trip with a user",
    responses={**UNAUTHORIZED, **FORBIDDEN_CHANGE, **NOT_FOUND, **CONFLICT_SHARE, **INVALID},
)
async def share_trip(
    trip_id: TripId, body: UserShareCreate, principal: PrincipalDep, session: SessionDep
) -> ShareOut:
    """Let the user called ``user`` watch the trip until ``expires_at`` (or for
    ``hours``), at most 30 days. They see it while the share lasts."""
    now = utcnow()
    trip, facts = await store.visible_trip(session, principal, trip_id, now)
    require_change(principal, facts, now)
    assert principal.user_id is not None  # the owner is a user
    expires_at, field = _expiry(body, now)
    try:
        share, grantee = await store.share_with_user(
            session,
            trip,
            by=principal.user_id,
            grantee_name=body.user,
            expires_at=expires_at,
            now=now,
            expiry_field=field,
        )
    except Invalid as exc:
        raise refuse(("body", exc.field), exc.reason) from None
    await session.commit()
    return share_out(share, grantee.name, now)


@router.post(
    "/trips/{trip_id}/links",
    status_code=201,
    response_model=LinkCreated,
    summary="Make a share link for a trip",
    responses={**UNAUTHORIZED, **FORBIDDEN_CHANGE, **NOT_FOUND, **CONFLICT_SHARE, **INVALID},
)
async def create_link(
    trip_id: TripId,
    body: LinkCreate,
    principal: PrincipalDep,
    session: SessionDep,
    settings: SettingsDep,
) -> LinkCreated:
    """A link whoever holds can watch the trip with, read-only, until ``expires_at`` (or
    for ``hours``), at most 30 days. The token is in this answer only."""
    now = utcnow()
    trip, facts = await store.visible_trip(session, principal, trip_id, now)
    require_change(principal, facts, now)
    assert principal.user_id is not None
    expires_at, field = _expiry(body, now)
    label = body.label.strip() if body.label is not None else None
    try:
        share, token = await store.create_link(
            session,
            trip,
            by=principal.user_id,
            expires_at=expires_at,
            label=label or None,
            now=now,
            expiry_field=field,
        )
    except Invalid as exc:
        raise refuse(("body", exc.field), exc.reason) from None
    await session.commit()
    out = share_out(share, None, now)
    return LinkCreated(
        **out.model_dump(),
        token=token,
        link=f"{settings.public_url.rstrip('/')}/s/{token}",
    )


@router.get(
    "/trips/{trip_id}/shares",
    response_model=ShareList,
    summary="List a trip's shares and links",
    responses={**UNAUTHORIZED, **FORBIDDEN_MANAGE, **NOT_FOUND},
)
async def list_shares(trip_id: TripId, principal: PrincipalDep, session: SessionDep) -> ShareList:
    """Every share of the trip, live or not, oldest first (tokens are never shown)."""
    now = utcnow()
    trip, facts = await store.visible_trip(session, principal, trip_id, now)
    require_manage_shares(principal, facts, now)
    rows = await store.list_shares(session, trip.id)
    return ShareList(shares=[share_out(share, name, now) for share, name in rows])


@router.delete(
    "/shares/{share_id}",
    response_model=ShareOut,
    summary="Revoke a share or a link",
    responses={
        **UNAUTHORIZED,
        **FORBIDDEN_MANAGE,
        404: _err("No such share, or not one of a trip you were given."),
        **INVALID,
    },
)
async def revoke_share(share_id: ShareId, principal: PrincipalDep, session: SessionDep) -> ShareOut:
    """End a share now: its user or link holder no longer sees the trip. Revoking a
    revoked share changes nothing and answers the same."""
    now = utcnow()
    share = await store.get_share(session, share_id)
    if share is None:
        raise NotFound("no such share")
    try:
        _, facts = await store.visible_trip(session, principal, share.trip_id, now)
    except NotFound:
        raise NotFound("no such share") from None
    require_manage_shares(principal, facts, now)
    await store.revoke_share(session, share, now)
    await session.commit()
    grantee = await session.get(User, share.grantee_id) if share.grantee_id else None
    return share_out(share, grantee.name if grantee else None, now)
