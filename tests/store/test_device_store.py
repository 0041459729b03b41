"""Tracker-app devices in the store, on both backends: registering (and who may),
secrets kept as hashes, rotation, revocation, and which trip a device feeds."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
import pytest_asyncio
from alembic import command
from sqlalchemy import inspect, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from sigueme.access import Principal
from sigueme.errors import Conflict, Forbidden, Invalid, NotFound, Unauthorized
from sigueme.geo import Route, TripPlan
from sigueme.store import devices
from sigueme.store import trips as trip_store
from sigueme.store.db import alembic_config, make_engine, sessionmaker, upgrade_async
from sigueme.store.devices import Protocol
from sigueme.store.models import Device, Role, Trip, User
from sigueme.store.users import add_user, disable_user

ROUTE = [[-99.2340, 18.9210], [-99.2280, 18.9150], [-99.2200, 18.9100]]
NOW = datetime(2026, 5, 28, 13, 0, tzinfo=UTC)
OSMAND = Protocol.OSMAND
OWNTRACKS = Protocol.OWNTRACKS


@dataclass
class World:
    session: AsyncSession
    ana: Principal
    beto: Principal
    marta: Principal
    root: Principal
    trip: Trip

    async def file_trip(self, owner: Principal) -> Trip:
        assert owner.user_id is not None
        departure = datetime(2026, 5, 28, 14, tzinfo=UTC).timestamp()
        plan = TripPlan(route=Route(ROUTE), departure=departure, arrival=departure + 1800)
        return await trip_store.create_trip(
            self.session, owner_id=owner.user_id, plan=plan, overrides={}, label=None
        )


async def _principal(session: AsyncSession, name: str, role: Role) -> Principal:
    user, _ = await add_user(session, name, role)
    return Principal(user_id=user.id, role=role, name=name)


@pytest_asyncio.fixture(loop_scope="session")
async def world(engine: AsyncEngine) -> AsyncIterator[World]:
    async with sessionmaker(engine)() as session:
        ana = await _principal(session, "ana", Role.TRAVELLER)
        w = World(
            session=session,
            ana=ana,
            beto=await _principal(session, "beto", Role.TRAVELLER),
            marta=await _principal(session, "marta", Role.MONITOR),
            root=await _principal(session, "root", Role.ADMIN),
            trip=None,  # type: ignore[arg-type]
        )
        w.trip = await w.file_trip(ana)
        await session.commit()
        yield w


async def test_a_device_bound_to_a_trip_feeds_it(world: World) -> None:
    device, secret = await devices.register(
        world.session,
        world.ana,
        protocol=OSMAND,
        device_id="48241179",
        now=NOW,
        trip_id=world.trip.id,
    )
    await world.session.commit()

    assert secret.startswith("sgd_")
    assert len(secret) >= 30
    assert (device.trip_id, device.user_id, device.created_by) == (
        world.trip.id,
        None,
        world.ana.user_id,
    )
    resolved = await devices.resolve(world.session, OSMAND, "48241179", secret)
    assert resolved == devices.Resolved(device_pk=device.id, trip_id=world.trip.id)


async def test_only_the_secrets_hash_is_stored(world: World) -> None:
    device, secret = await devices.register(
        world.session, world.ana, protocol=OSMAND, device_id="x1", now=NOW, trip_id=world.trip.id
    )
    await world.session.commit()
    row = (
        await world.session.execute(select(Device.__table__).where(Device.id == device.id))
    ).one()
    assert row.secret_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in [str(v) for v in row]


@pytest.mark.parametrize(
    ("protocol", "device_id", "secret"),
    [
        (OSMAND, "x1", "sgd_wrong"),
        (OSMAND, "unknown", None),
        (OWNTRACKS, "x1", None),  # the same identifier under the other protocol
        (OSMAND, "x1", ""),
        (OSMAND, "x1", "s" * 500),
    ],
)
async def test_bad_credentials_are_refused_alike(
    world: World, protocol: Protocol, device_id: str, secret: str | None
) -> None:
    _, real = await devices.register(
        world.session, world.ana, protocol=OSMAND, device_id="x1", now=NOW, trip_id=world.trip.id
    )
    await world.session.commit()
    with pytest.raises(Unauthorized, match=r"^unknown device or wrong secret$"):
        await devices.resolve(
            world.session, protocol, device_id, real if secret is None else secret
        )


async def test_rotation_replaces_the_secret_at_once(world: World) -> None:
    device, old = await devices.register(
        world.session, world.ana, protocol=OSMAND, device_id="x1", now=NOW, trip_id=world.trip.id
    )
    later = NOW + timedelta(hours=1)
    new = await devices.rotate(world.session, device, later)
    await world.session.commit()

    assert new != old
    assert device.rotated_at == later
    with pytest.raises(Unauthorized):
        await devices.resolve(world.session, OSMAND, "x1", old)
    assert (await devices.resolve(world.session, OSMAND, "x1", new)).trip_id == world.trip.id


async def test_a_revoked_device_is_refused_and_its_identifier_may_be_registered_again(
    world: World,
) -> None:
    device, secret = await devices.register(
        world.session, world.ana, protocol=OSMAND, device_id="x1", now=NOW, trip_id=world.trip.id
    )
    await devices.revoke(world.session, device, NOW)
    await devices.revoke(world.session, device, NOW + timedelta(hours=1))  # no change
    await world.session.commit()
    assert device.revoked_at == NOW
    with pytest.raises(Unauthorized):
        await devices.resolve(world.session, OSMAND, "x1", secret)
    with pytest.raises(Conflict, match="revoked"):
        await devices.rotate(world.session, device, NOW)

    again, _new = await devices.register(
        world.session,
        world.beto,
        protocol=OSMAND,
        device_id="x1",
        now=NOW,
        trip_id=None,
        user_name="beto",
    )
    await world.session.commit()
    assert again.user_id == world.beto.user_id
    assert len((await world.session.scalars(select(Device))).all()) == 1


async def test_a_live_identifier_cannot_be_taken(world: World) -> None:
    await devices.register(
        world.session, world.ana, protocol=OSMAND, device_id="x1", now=NOW, trip_id=world.trip.id
    )
    with pytest.raises(Conflict, match="already registered"):
        await devices.register(
            world.session, world.beto, protocol=OSMAND, device_id="x1", now=NOW, user_name="beto"
        )
    # The same identifier under the other protocol is another device.
    await devices.register(
        world.session, world.ana, protocol=OWNTRACKS, device_id="x1", now=NOW, user_name="ana"
    )


async def test_the_database_keeps_identifiers_unique_per_protocol(world: World) -> None:
    for _ in range(2):
        world.session.add(
            Device(
                protocol="osmand",
                device_id="dup",
                secret_hash="0" * 64,
                user_id=world.ana.user_id,
                created_by=world.ana.user_id,
            )
        )
    with pytest.raises(IntegrityError):
        await world.session.flush()


# -- a traveller's device feeds their active trip ---------------------------------------------


async def test_a_travellers_device_feeds_their_one_active_trip(world: World) -> None:
    device, secret = await devices.register(
        world.session,
        world.ana,
        protocol=OWNTRACKS,
        device_id="ana/pixel",
        now=NOW,
        user_name="ana",
    )
    await world.session.commit()
    assert (device.user_id, device.trip_id) == (world.ana.user_id, None)
    assert (
        await devices.resolve(world.session, OWNTRACKS, "ana/pixel", secret)
    ).trip_id == world.trip.id

    second = await world.file_trip(world.ana)
    await world.session.commit()
    with pytest.raises(Conflict, match="several active trips"):
        await devices.resolve(world.session, OWNTRACKS, "ana/pixel", secret)

    await trip_store.end_trip(world.session, world.trip, trip_store.Ending.FINISH, NOW)
    await world.session.commit()
    assert (
        await devices.resolve(world.session, OWNTRACKS, "ana/pixel", secret)
    ).trip_id == second.id

    await trip_store.end_trip(world.session, second, trip_store.Ending.CANCEL, NOW)
    await world.session.commit()
    with pytest.raises(Conflict, match="no active trip"):
        await devices.resolve(world.session, OWNTRACKS, "ana/pixel", secret)
    # Authentication alone still succeeds (OwnTracks' other messages are acknowledged).
    assert (
        await devices.authenticate(world.session, OWNTRACKS, "ana/pixel", secret)
    ).id == device.id


async def test_a_device_of_an_ended_trip_feeds_nothing(world: World) -> None:
    _, secret = await devices.register(
        world.session, world.ana, protocol=OSMAND, device_id="x1", now=NOW, trip_id=world.trip.id
    )
    await trip_store.end_trip(world.session, world.trip, trip_store.Ending.FINISH, NOW)
    await world.session.commit()
    with pytest.raises(Conflict, match="trip has ended"):
        await devices.resolve(world.session, OSMAND, "x1", secret)
    with pytest.raises(Conflict, match="ended"):
        await devices.register(
            world.session,
            world.ana,
            protocol=OSMAND,
            device_id="x2",
            now=NOW,
            trip_id=world.trip.id,
        )


async def test_a_disabled_travellers_devices_are_refused(world: World) -> None:
    _, on_trip = await devices.register(
        world.session, world.ana, protocol=OSMAND, device_id="x1", now=NOW, trip_id=world.trip.id
    )
    _, for_her = await devices.register(
        world.session, world.ana, protocol=OWNTRACKS, device_id="ana", now=NOW, user_name="ana"
    )
    await disable_user(world.session, "ana")
    await world.session.commit()
    with pytest.raises(Unauthorized):
        await devices.resolve(world.session, OSMAND, "x1", on_trip)
    with pytest.raises(Unauthorized):
        await devices.resolve(world.session, OWNTRACKS, "ana", for_her)


# -- who may ---------------------------------------------------------------------------------------


async def test_only_the_trips_traveller_or_an_admin_binds_to_it(world: World) -> None:
    trip_id = world.trip.id
    with pytest.raises(NotFound):  # Beto does not see Ana's trip
        await devices.register(
            world.session, world.beto, protocol=OSMAND, device_id="b", now=NOW, trip_id=trip_id
        )
    now = datetime.now(UTC)
    await trip_store.share_with_user(
        world.session,
        world.trip,
        by=world.ana.user_id or 0,
        grantee_name="marta",
        expires_at=now + timedelta(days=1),
        now=now,
    )
    with pytest.raises(Forbidden):  # Marta sees it, but it is not hers
        await devices.register(
            world.session, world.marta, protocol=OSMAND, device_id="m", now=now, trip_id=trip_id
        )
    device, _ = await devices.register(
        world.session, world.root, protocol=OSMAND, device_id="r", now=NOW, trip_id=trip_id
    )
    assert device.created_by == world.root.user_id


async def test_only_the_traveller_or_an_admin_binds_to_a_traveller(world: World) -> None:
    with pytest.raises(Forbidden):
        await devices.register(
            world.session, world.beto, protocol=OSMAND, device_id="b", now=NOW, user_name="ana"
        )
    with pytest.raises(Forbidden):  # not even to find out whether the name exists
        await devices.register(
            world.session, world.beto, protocol=OSMAND, device_id="b", now=NOW, user_name="nadie"
        )
    device, _ = await devices.register(
        world.session, world.root, protocol=OSMAND, device_id="r", now=NOW, user_name="ana"
    )
    assert device.user_id == world.ana.user_id


@pytest.mark.parametrize(
    ("name", "reason"), [("marta", "only travellers"), ("nadie", "no active user")]
)
async def test_devices_are_bound_to_travellers_only(world: World, name: str, reason: str) -> None:
    with pytest.raises(Invalid, match=reason) as info:
        await devices.register(
            world.session, world.root, protocol=OSMAND, device_id="r", now=NOW, user_name=name
        )
    assert info.value.field == "user"


async def test_a_share_link_registers_nothing(world: World) -> None:
    link = Principal(
        user_id=None, role=None, name="enlace", share_id=1, share_trip_id=world.trip.id
    )
    with pytest.raises(Forbidden):
        await devices.register(
            world.session, link, protocol=OSMAND, device_id="l", now=NOW, trip_id=world.trip.id
        )


@pytest.mark.parametrize(
    ("protocol", "device_id"),
    [
        (OSMAND, " x"),
        (OSMAND, "x" * 101),
        (OSMAND, "a\tb"),
        (OWNTRACKS, "/pixel"),
        (OWNTRACKS, "ana/"),
    ],
)
async def test_bad_identifiers_are_refused(
    world: World, protocol: Protocol, device_id: str
) -> None:
    with pytest.raises(Invalid) as info:
        await devices.register(
            world.session,
            world.ana,
            protocol=protocol,
            device_id=device_id,
            now=NOW,
            user_name="ana",
        )
    assert info.value.field == "device_id"


async def test_who_manages_and_lists_a_device(world: World) -> None:
    on_trip, _ = await devices.register(
        world.session, world.ana, protocol=OSMAND, device_id="a1", now=NOW, trip_id=world.trip.id
    )
    for_ana, _ = await devices.register(
        world.session,
        world.ana,
        protocol=OWNTRACKS,
        device_id="ana/p",
        now=NOW + timedelta(seconds=1),
        user_name="ana",
    )
    betos, _ = await devices.register(
        world.session, world.beto, protocol=OSMAND, device_id="b1", now=NOW, user_name="beto"
    )
    await world.session.commit()

    assert [d.id for d in await devices.list_devices(world.session, world.ana)] == [
        for_ana.id,
        on_trip.id,
    ]
    assert [d.id for d in await devices.list_devices(world.session, world.beto)] == [betos.id]
    assert await devices.list_devices(world.session, world.marta) == []
    assert {d.id for d in await devices.list_devices(world.session, world.root)} == {
        on_trip.id,
        for_ana.id,
        betos.id,
    }
    for device in (on_trip, for_ana):
        assert await devices.manageable_device(world.session, world.ana, device.id) is device
        assert await devices.manageable_device(world.session, world.root, device.id) is device
        with pytest.raises(NotFound):
            await devices.manageable_device(world.session, world.beto, device.id)
    with pytest.raises(NotFound):
        await devices.manageable_device(world.session, world.ana, 999_999)


async def test_deleting_a_trip_removes_its_devices(world: World) -> None:
    await devices.register(
        world.session, world.ana, protocol=OSMAND, device_id="a1", now=NOW, trip_id=world.trip.id
    )
    await devices.register(
        world.session, world.beto, protocol=OSMAND, device_id="b1", now=NOW, user_name="beto"
    )
    await world.session.commit()
    await world.session.delete(world.trip)
    await world.session.commit()
    remaining = (await world.session.scalars(select(Device.device_id))).all()
    assert remaining == ["b1"]
    assert await world.session.get(User, world.beto.user_id) is not None


async def test_the_devices_migration_goes_down_and_up_again(database_url: str) -> None:
    """0002 on both backends: down to 0001 drops the table (nothing else), up restores it."""

    def tables() -> set[str]:
        async def read() -> set[str]:
            eng = make_engine(database_url)
            try:
                async with eng.connect() as conn:
                    return set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
            finally:
                await eng.dispose()

        return asyncio.run(read())

    def downgrade() -> None:
        command.downgrade(alembic_config(database_url), "0001")

    await asyncio.to_thread(downgrade)
    after_down = await asyncio.to_thread(tables)
    assert "devices" not in after_down
    assert {"users", "trips", "fixes"} <= after_down
    await upgrade_async(database_url)
    assert "devices" in await asyncio.to_thread(tables)
