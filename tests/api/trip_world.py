"""A running app on a test database, and a small world of users, trips and shares.

Imported by the trip, share and access tests (``from trip_world import ...``).
Everything is made with the store's own functions, the way the service makes it;
only states the API refuses to create (a share already expired) are written with the
models directly.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession

from sigueme.api.app import create_app
from sigueme.geo import Route, TripPlan
from sigueme.settings import Settings
from sigueme.store import trips as store
from sigueme.store.models import Alert, Fix, Share, Trip
from sigueme.store.users import add_user, disable_user

PUBLIC_URL = "https://sigueme.example.mx"

# About 3.1 km through Cuernavaca, Morelos, [lon, lat].
ROUTE = [[-99.2340, 18.9210], [-99.2280, 18.9150], [-99.2200, 18.9100], [-99.2100, 18.9050]]
# The same route as an encoded polyline (precision 5; Google encodes lat first).
ROUTE_POLYLINE = "gonrBnst|Qnd@od@f^_q@f^o}@"
ROUTE_POLYLINE6 = "oazac@~kwg|D~uJ_vJnwH_sNnwH_pR"
DEPARTURE = "2026-05-28T08:00:00-06:00"


def trip_body(**changes: Any) -> dict[str, Any]:
    """A valid body for POST /v1/trips, with ``changes`` applied (``None`` drops a key)."""
    body: dict[str, Any] = {
        "route": {"type": "LineString", "coordinates": ROUTE},
        "corridor_m": 150,
        "departure": DEPARTURE,
        "duration_min": 30,
        "label": "Mitin en Jiutepec 🎤",
    }
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


@asynccontextmanager
async def running_app(database_url: str) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    """The app on ``database_url``, started (lifespan entered), and a client for it."""
    app = create_app(Settings(database_url=SecretStr(database_url), public_url=PUBLIC_URL))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client, app


def auth(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


async def file_trip(session: AsyncSession, owner_id: int, label: str = "viaje") -> Trip:
    """A trip on :data:`ROUTE` filed by ``owner_id``, as the API files it."""
    departure = datetime(2026, 5, 28, 14, tzinfo=UTC).timestamp()
    plan = TripPlan(route=Route(ROUTE), departure=departure, arrival=departure + 1800)
    return await store.create_trip(
        session, owner_id=owner_id, plan=plan, overrides={"stop_seconds": 120}, label=label
    )


async def add_fixes(session: AsyncSession, trip: Trip, n: int = 3) -> list[Fix]:
    """``n`` fixes along the route, one a minute from departure, stored out of order
    (the last first) so reads must sort them; the trip's last-fix fields follow."""
    rows = []
    for i in reversed(range(n)):
        lon, lat = ROUTE[i]
        t = trip.departure + timedelta(minutes=i)
        rows.append(
            Fix(
                trip_id=trip.id,
                seq=i,
                t=t,
                received_at=t + timedelta(seconds=2),
                lon=lon,
                lat=lat,
                accuracy=8.0,
                speed=5.0,
                battery=80.0 - i,
                verdict="accepted",
            )
        )
    session.add_all(rows)
    last = max(rows, key=lambda f: f.t)
    trip.last_fix_at, trip.last_lon, trip.last_lat = last.t, last.lon, last.lat
    trip.last_accuracy, trip.last_battery = last.accuracy, last.battery
    trip.distance_m, trip.progress_m = 4.0, 1600.0
    trip.route_status = "on_route"
    trip.predicted_arrival = trip.arrival + timedelta(minutes=3)
    await session.flush()
    return rows


@dataclass
class World:
    """Who holds which token, and what they were given."""

    trip_id: str
    """The trip every caller is tried against: Ana's."""
    other_trip_id: str
    """Beto's trip."""
    tokens: dict[str, str | None] = field(default_factory=dict)
    user_ids: dict[str, int] = field(default_factory=dict)
    live_share_id: int = 0
    """Marta's share of the trip."""


# Callers of the access matrix, by the role they play.
OWNER = "owner"
OTHER_TRAVELLER = "other_traveller"
MONITOR_LIVE = "monitor_live_share"
MONITOR_EXPIRED = "monitor_expired_share"
MONITOR_REVOKED = "monitor_revoked_share"
MONITOR_NONE = "monitor_no_share"
DISPATCHER = "dispatcher_no_alert"
DISPATCHER_ALERT = "dispatcher_with_alert"
ADMIN = "admin"
LINK = "link_valid"
LINK_EXPIRED = "link_expired"
LINK_REVOKED = "link_revoked"
LINK_OTHER = "link_other_trip"
DISABLED = "disabled_user"
ANONYMOUS = "no_token"

CALLERS = (
    OWNER,
    OTHER_TRAVELLER,
    MONITOR_LIVE,
    MONITOR_EXPIRED,
    MONITOR_REVOKED,
    MONITOR_NONE,
    DISPATCHER,
    DISPATCHER_ALERT,
    ADMIN,
    LINK,
    LINK_EXPIRED,
    LINK_REVOKED,
    LINK_OTHER,
    DISABLED,
    ANONYMOUS,
)


async def build_world(session: AsyncSession, *, alert: bool) -> World:
    """Ana's trip (with fixes), shared live with Marta, expired for Lucía, revoked for
    Raúl, not at all with Sofía; links to it valid, expired and revoked; Beto's trip
    with a link of its own; a dispatcher, an admin, and Pablo, disabled while his
    share of Ana's trip was live. With ``alert``, Ana's trip has an open alert."""
    now = datetime.now(UTC)
    tokens: dict[str, str | None] = {ANONYMOUS: None}
    ids: dict[str, int] = {}
    for caller, name, role in (
        (OWNER, "ana", "traveller"),
        (OTHER_TRAVELLER, "beto", "traveller"),
        (MONITOR_LIVE, "marta", "monitor"),
        (MONITOR_EXPIRED, "lucía", "monitor"),
        (MONITOR_REVOKED, "raul", "monitor"),
        (MONITOR_NONE, "sofia", "monitor"),
        (DISPATCHER, "diego", "dispatcher"),
        (ADMIN, "root", "admin"),
        (DISABLED, "pablo", "monitor"),
    ):
        user, token = await add_user(session, name, role)
        tokens[caller], ids[caller] = token, user.id
    tokens[DISPATCHER_ALERT], ids[DISPATCHER_ALERT] = tokens[DISPATCHER], ids[DISPATCHER]

    trip = await file_trip(session, ids[OWNER], "Mitin en Jiutepec")
    other = await file_trip(session, ids[OTHER_TRAVELLER], "Visita")
    await add_fixes(session, trip)
    await add_fixes(session, other)
    owner = ids[OWNER]
    live, _ = await store.share_with_user(
        session, trip, by=owner, grantee_name="marta", expires_at=now + timedelta(days=1), now=now
    )
    revoked, _ = await store.share_with_user(
        session, trip, by=owner, grantee_name="raul", expires_at=now + timedelta(days=1), now=now
    )
    await store.revoke_share(session, revoked, now)
    await store.share_with_user(
        session, trip, by=owner, grantee_name="pablo", expires_at=now + timedelta(days=1), now=now
    )
    # The API never makes a share that has already ended: write it as time would.
    session.add(
        Share(
            trip_id=trip.id,
            grantee_id=ids[MONITOR_EXPIRED],
            created_by=owner,
            created_at=now - timedelta(days=2),
            expires_at=now - timedelta(minutes=1),
        )
    )
    _, tokens[LINK] = await store.create_link(
        session, trip, by=owner, expires_at=now + timedelta(hours=2), label="mamá", now=now
    )
    expired_link, tokens[LINK_EXPIRED] = await store.create_link(
        session, trip, by=owner, expires_at=now + timedelta(hours=2), label=None, now=now
    )
    expired_link.expires_at = now - timedelta(seconds=1)
    revoked_link, tokens[LINK_REVOKED] = await store.create_link(
        session, trip, by=owner, expires_at=now + timedelta(hours=2), label=None, now=now
    )
    await store.revoke_share(session, revoked_link, now)
    _, tokens[LINK_OTHER] = await store.create_link(
        session,
        other,
        by=ids[OTHER_TRAVELLER],
        expires_at=now + timedelta(hours=2),
        label=None,
        now=now,
    )
    await disable_user(session, "pablo")
    # Beto's trip always has an alert: a dispatcher seeing it must not open Ana's.
    session.add(Alert(trip_id=other.id, kind="off_route", severity=2, status="open"))
    if alert:
        session.add(Alert(trip_id=trip.id, kind="sos", severity=1, status="acknowledged"))
    await session.commit()
    return World(
        trip_id=trip.id,
        other_trip_id=other.id,
        tokens=tokens,
        user_ids=ids,
        live_share_id=live.id,
    )
