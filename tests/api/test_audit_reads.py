"""Every read of a trip's locations over HTTP leaves an audit row (who, which trip,
when, what) before the answer; listings, which carry no positions, and refused
requests leave none."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from fastapi import FastAPI
from sqlalchemy import select
from trip_world import (
    DISPATCHER_ALERT,
    LINK,
    MONITOR_LIVE,
    MONITOR_NONE,
    OWNER,
    auth,
    build_world,
    running_app,
)

from sigueme.store.models import AuditLog


async def _audit(app: FastAPI) -> list[tuple[int | None, int | None, str, str, datetime]]:
    async with app.state.sessions() as session:
        rows = await session.scalars(select(AuditLog).order_by(AuditLog.id))
        return [(r.user_id, r.share_id, r.trip_id, r.action, r.at) for r in rows]


@pytest.mark.parametrize("caller", [OWNER, MONITOR_LIVE, DISPATCHER_ALERT])
@pytest.mark.parametrize(("path", "action"), [("", "trip.read"), ("/track", "trip.track")])
async def test_a_users_read_is_audited(
    database_url: str, caller: str, path: str, action: str
) -> None:
    async with running_app(database_url) as (client, app):
        async with app.state.sessions() as session:
            world = await build_world(session, alert=True)
        before = datetime.now(UTC)

        response = await client.get(
            f"/v1/trips/{world.trip_id}{path}", headers=auth(world.tokens[caller])
        )

        assert response.status_code == 200, response.text
        rows = await _audit(app)
        assert [r[:4] for r in rows] == [(world.user_ids[caller], None, world.trip_id, action)]
        assert before <= rows[0][4] <= datetime.now(UTC)


async def test_a_share_link_read_is_audited_as_the_link(database_url: str) -> None:
    async with running_app(database_url) as (client, app):
        async with app.state.sessions() as session:
            world = await build_world(session, alert=False)
        holder = auth(world.tokens[LINK])

        await client.get(f"/v1/trips/{world.trip_id}", headers=holder)
        await client.get(f"/v1/trips/{world.trip_id}/track", headers=holder)

        rows = await _audit(app)
        assert [(r[0], r[2], r[3]) for r in rows] == [
            (None, world.trip_id, "trip.read"),
            (None, world.trip_id, "trip.track"),
        ]
        share_ids = {r[1] for r in rows}
        assert len(share_ids) == 1
        assert None not in share_ids


async def test_listings_and_refused_reads_leave_no_row(database_url: str) -> None:
    async with running_app(database_url) as (client, app):
        async with app.state.sessions() as session:
            world = await build_world(session, alert=False)
        owner, stranger = auth(world.tokens[OWNER]), auth(world.tokens[MONITOR_NONE])

        answers = [
            await client.get("/v1/trips", headers=owner),
            await client.get("/v1/trips?scope=shared", headers=owner),
            await client.get(f"/v1/trips/{world.trip_id}", headers=stranger),
            await client.get(f"/v1/trips/{world.trip_id}/track", headers=stranger),
            await client.get(f"/v1/trips/{world.trip_id}"),
            await client.get(f"/v1/trips/{world.trip_id}/track?limit=0", headers=owner),
        ]

        assert [a.status_code for a in answers] == [200, 200, 404, 404, 401, 422]
        assert await _audit(app) == []
