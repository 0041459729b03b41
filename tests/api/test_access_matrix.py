"""The access matrix: every kind of caller against every trip and share route.

Promise 6: nobody sees a trip they were not given. A trip the caller may not see
answers 404 exactly as a trip that does not exist; 403 only for a trip they see but
may not change. Each cell is its own test on a fresh database, on both backends.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from trip_world import (
    ADMIN,
    ANONYMOUS,
    CALLERS,
    DISABLED,
    DISPATCHER,
    DISPATCHER_ALERT,
    LINK,
    LINK_EXPIRED,
    LINK_OTHER,
    LINK_REVOKED,
    MONITOR_EXPIRED,
    MONITOR_LIVE,
    MONITOR_NONE,
    MONITOR_REVOKED,
    OTHER_TRAVELLER,
    OWNER,
    World,
    auth,
    build_world,
    running_app,
    trip_body,
)

Request = tuple[str, str, dict[str, Any] | None]

ROUTES: dict[str, Callable[[World], Request]] = {
    "create": lambda w: ("POST", "/v1/trips", trip_body()),
    "list": lambda w: ("GET", "/v1/trips", None),
    "list_active": lambda w: ("GET", "/v1/trips?scope=active", None),
    "read": lambda w: ("GET", f"/v1/trips/{w.trip_id}", None),
    "track": lambda w: ("GET", f"/v1/trips/{w.trip_id}/track", None),
    "finish": lambda w: ("POST", f"/v1/trips/{w.trip_id}/finish", None),
    "cancel": lambda w: ("POST", f"/v1/trips/{w.trip_id}/cancel", None),
    "share": lambda w: ("POST", f"/v1/trips/{w.trip_id}/shares", {"user": "sofia", "hours": 1}),
    "link": lambda w: ("POST", f"/v1/trips/{w.trip_id}/links", {"hours": 2, "label": "tío"}),
    "shares": lambda w: ("GET", f"/v1/trips/{w.trip_id}/shares", None),
    "revoke": lambda w: ("DELETE", f"/v1/shares/{w.live_share_id}", None),
}

COLUMNS = tuple(ROUTES)
_401 = (401,) * len(COLUMNS)

# fmt: off
MATRIX: dict[str, tuple[int, ...]] = {
    #                   create list active read track finish cancel share link shares revoke
    OWNER:             (201,   200, 403,   200, 200,  200,   200,   201,  201, 200,   200),
    OTHER_TRAVELLER:   (201,   200, 403,   404, 404,  404,   404,   404,  404, 404,   404),
    MONITOR_LIVE:      (403,   200, 403,   200, 200,  403,   403,   403,  403, 403,   403),
    MONITOR_EXPIRED:   (403,   200, 403,   404, 404,  404,   404,   404,  404, 404,   404),
    MONITOR_REVOKED:   (403,   200, 403,   404, 404,  404,   404,   404,  404, 404,   404),
    MONITOR_NONE:      (403,   200, 403,   404, 404,  404,   404,   404,  404, 404,   404),
    DISPATCHER:        (403,   200, 200,   404, 404,  404,   404,   404,  404, 404,   404),
    DISPATCHER_ALERT:  (403,   200, 200,   200, 200,  403,   403,   403,  403, 403,   403),
    ADMIN:             (201,   200, 200,   200, 200,  403,   403,   403,  403, 200,   200),
    LINK:              (403,   403, 403,   200, 200,  403,   403,   403,  403, 403,   403),
    LINK_EXPIRED:      _401,
    LINK_REVOKED:      _401,
    LINK_OTHER:        (403,   403, 403,   404, 404,  404,   404,   404,  404, 404,   404),
    DISABLED:          _401,
    ANONYMOUS:         _401,
}
# fmt: on


def test_the_matrix_covers_every_caller_and_route() -> None:
    assert set(MATRIX) == set(CALLERS)
    assert all(len(row) == len(COLUMNS) for row in MATRIX.values())


@pytest.mark.parametrize(
    ("caller", "route"),
    [(caller, route) for caller in CALLERS for route in COLUMNS],
    ids=[f"{caller}-{route}" for caller in CALLERS for route in COLUMNS],
)
async def test_access(database_url: str, caller: str, route: str) -> None:
    async with running_app(database_url) as (client, app):
        async with app.state.sessions() as session:
            world = await build_world(session, alert=caller == DISPATCHER_ALERT)
        method, path, body = ROUTES[route](world)
        headers = auth(world.tokens[caller])

        response = await client.request(method, path, json=body, headers=headers)

        expected = MATRIX[caller][COLUMNS.index(route)]
        assert response.status_code == expected, response.text
        if expected == 404:
            # The same answer as for something that does not exist: nothing is learnt.
            missing = path.replace(world.trip_id, "00000000-0000-0000-0000-000000000000")
            missing = missing.replace(f"/v1/shares/{world.live_share_id}", "/v1/shares/999999")
            absent = await client.request(method, missing, json=body, headers=headers)
            assert (absent.status_code, absent.json()) == (404, response.json())
        if expected == 401:
            assert response.headers["WWW-Authenticate"] == "Bearer"


# What each user finds in the listing their role gets by default, and in ``shared``.
# Beto's trip always has an open alert; Ana's has one only for DISPATCHER_ALERT.
LISTINGS = {
    OWNER: ({"Mitin en Jiutepec"}, set()),
    OTHER_TRAVELLER: ({"Visita"}, set()),
    MONITOR_LIVE: ({"Mitin en Jiutepec"}, {"Mitin en Jiutepec"}),
    MONITOR_EXPIRED: (set(), set()),
    MONITOR_REVOKED: (set(), set()),
    MONITOR_NONE: (set(), set()),
    DISPATCHER: ({"Visita"}, set()),
    DISPATCHER_ALERT: ({"Visita", "Mitin en Jiutepec"}, set()),
    ADMIN: ({"Visita", "Mitin en Jiutepec"}, set()),
}


@pytest.mark.parametrize("caller", list(LISTINGS))
async def test_listings_hold_only_trips_the_caller_may_see(database_url: str, caller: str) -> None:
    async with running_app(database_url) as (client, app):
        async with app.state.sessions() as session:
            world = await build_world(session, alert=caller == DISPATCHER_ALERT)
        headers = auth(world.tokens[caller])
        default, shared = LISTINGS[caller]

        listed = await client.get("/v1/trips", headers=headers)
        listed_shared = await client.get("/v1/trips?scope=shared", headers=headers)

        assert listed.status_code == 200, listed.text
        assert {t["label"] for t in listed.json()["trips"]} == default
        assert {t["label"] for t in listed_shared.json()["trips"]} == shared
        # Listings carry no positions.
        for trip in listed.json()["trips"]:
            assert not {"last_fix", "progress", "route", "corridor"} & set(trip)
