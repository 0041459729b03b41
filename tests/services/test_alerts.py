"""Alerts in the database, on both backends: raised by the fixes that warrant them and
committed with them, one live alert per trip and kind (the database says so too),
repeats counted, the dispatcher's steps and the traveller's PINs recorded, escalation,
and the watchdog's silence and overdue alerts raised exactly once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources

import pytest
import pytest_asyncio
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from sigueme.alerts.lifecycle import Action, Outcome
from sigueme.errors import Conflict, NotFound
from sigueme.geo import Route, TripPlan
from sigueme.replay import parse_route, parse_trace
from sigueme.services.alerts import act, escalate_due, snapshot
from sigueme.services.ingest import IncomingFix, ingest
from sigueme.services.risk_zones import RiskZoneIndex
from sigueme.services.traveller import NoPin, WrongPin, cancel_with_pin, raise_sos
from sigueme.services.watchdog import watch_once
from sigueme.store import trips as store
from sigueme.store.db import sessionmaker
from sigueme.store.models import Alert, AlertHistory, AlertOutbox, Role, Trip, User, utcnow
from sigueme.store.models import Fix as FixModel
from sigueme.store.pins import set_pins
from sigueme.store.risk_zones import add_zone, zone_polygon
from sigueme.store.users import add_user

ROUTE = [[-99.2340, 18.9210], [-99.2280, 18.9150], [-99.2200, 18.9100], [-99.2100, 18.9050]]
T0 = datetime(2026, 5, 28, 14, tzinfo=UTC)


@dataclass
class World:
    sessions: async_sessionmaker[AsyncSession]
    engine: AsyncEngine
    owner_id: int
    dispatcher_id: int

    async def file(
        self, plan: TripPlan | None = None, *, silence_s: float = 300, grace_s: float = 900
    ) -> str:
        if plan is None:
            start = T0.timestamp()
            plan = TripPlan(route=Route(ROUTE), departure=start, arrival=start + 1800)
        async with self.sessions() as session:
            trip = await store.create_trip(
                session,
                owner_id=self.owner_id,
                plan=plan,
                overrides={},
                label="Mitin en Jiutepec",
                silence_timeout_s=silence_s,
                overdue_grace_s=grace_s,
            )
            await session.commit()
            return trip.id

    async def alerts(self, trip_id: str) -> list[Alert]:
        async with self.sessions() as session:
            rows = await session.scalars(
                select(Alert).where(Alert.trip_id == trip_id).order_by(Alert.opened_at)
            )
            return list(rows.all())

    async def history(self, alert_id: str) -> list[tuple[str, int | None, str | None]]:
        async with self.sessions() as session:
            rows = await session.scalars(
                select(AlertHistory)
                .where(AlertHistory.alert_id == alert_id)
                .order_by(AlertHistory.id)
            )
            return [(h.action, h.actor_id, h.note) for h in rows.all()]

    async def outbox(self, alert_id: str) -> list[str]:
        async with self.sessions() as session:
            rows = await session.scalars(
                select(AlertOutbox.event)
                .where(AlertOutbox.alert_id == alert_id)
                .order_by(AlertOutbox.id)
            )
            return list(rows.all())


@pytest_asyncio.fixture(loop_scope="session")
async def world(engine: AsyncEngine) -> AsyncIterator[World]:
    sessions = sessionmaker(engine)
    async with sessions() as session:
        ana, _ = await add_user(
            session, "ana", Role.TRAVELLER, display_name="Ana Díaz", contact="+52 777 123 4567"
        )
        police, _ = await add_user(session, "despacho", Role.DISPATCHER)
        await session.commit()
    yield World(sessions, engine, ana.id, police.id)


def _detour() -> tuple[TripPlan, list[IncomingFix]]:
    samples = resources.files("sigueme.replay").joinpath("samples")
    route = parse_route(samples.joinpath("cuernavaca_route.geojson").read_text("utf-8"))
    trace = parse_trace(samples.joinpath("cuernavaca_detour.csv").read_text("utf-8"))
    start = trace[0].t
    plan = TripPlan(route=route, departure=start, arrival=start + 25 * 60)
    fixes = [
        IncomingFix(i, f.t, f.lat, f.lon, f.accuracy, f.speed, f.heading, f.battery)
        for i, f in enumerate(trace)
    ]
    return plan, fixes


async def _stream(world: World, trip_id: str, fixes: list[IncomingFix]) -> list[str]:
    """Send ``fixes`` one per call as a phone would; the alert actions raised."""
    actions = []
    for fix in fixes:
        result = await ingest(
            world.sessions, trip_id, [fix], received_at=datetime.fromtimestamp(fix.t + 1, UTC)
        )
        actions += [f"{c.kind}:{c.action}" for c in result.alerts]
    return actions


async def test_a_detour_raises_one_off_route_alert_committed_with_its_fix(world: World) -> None:
    plan, fixes = _detour()
    trip_id = await world.file(plan)

    actions = await _stream(world, trip_id, fixes)

    assert actions == ["off_route:raised", "off_route:condition_ended"]
    [alert] = await world.alerts(trip_id)
    assert (alert.kind, alert.severity, alert.status, alert.count) == ("off_route", 3, "open", 1)
    assert alert.position_at == datetime(2024, 5, 28, 14, 6, 15, tzinfo=UTC)
    assert alert.distance_m is not None
    assert alert.distance_m > 150
    assert alert.details["off_route_since"] == "2024-05-28T14:06:15+00:00"
    assert alert.details["condition"] == "regresó a la ruta"
    assert await world.outbox(alert.id) == ["raised", "condition_ended"]
    assert [h[0] for h in await world.history(alert.id)] == ["raised", "condition_ended"]
    # The stretch before the alert is kept as evidence; the rest is not.
    async with world.sessions() as session:
        kept = await session.scalars(
            select(FixModel.t).where(FixModel.trip_id == trip_id, FixModel.evidence.is_(True))
        )
        times = sorted(kept.all())
    assert times[-1] == alert.position_at
    assert times[0] >= alert.position_at - timedelta(minutes=15)
    assert len(times) < len(fixes)


async def test_the_alert_reads_as_a_dispatcher_needs_it(world: World) -> None:
    plan, fixes = _detour()
    trip_id = await world.file(plan)
    await _stream(world, trip_id, fixes)
    [alert] = await world.alerts(trip_id)
    async with world.sessions() as session:
        snap = await snapshot(session, alert, public_url="https://sigueme.example.mx")
    assert snap.traveller.name == "Ana Díaz"
    assert snap.traveller.contact == "+52 777 123 4567"
    assert snap.map_url == f"https://sigueme.example.mx/map/trips/{trip_id}"
    assert snap.track
    assert snap.track[-1].t == alert.position_at
    assert all(a.t <= b.t for a, b in zip(snap.track, snap.track[1:], strict=False))
    text = snap.description_es(now=alert.position_at + timedelta(minutes=3))
    assert text.startswith("Fuera de la ruta planeada: Ana Díaz.")
    assert "Fuera de ruta desde hace 3 minutos." in text
    assert "Contacto: +52 777 123 4567." in text


async def test_one_live_alert_per_trip_and_kind_and_repeats_are_counted(world: World) -> None:
    trip_id = await world.file()
    first = await raise_sos(world.sessions, trip_id, source="api", now=T0)
    again = await raise_sos(world.sessions, trip_id, source="phone", now=T0 + timedelta(seconds=5))
    assert again.alert_id == first.alert_id
    assert again.change.action == "repeated"
    [alert] = await world.alerts(trip_id)
    assert alert.count == 2
    # The database itself refuses a second live alert of the kind.
    with pytest.raises(IntegrityError):
        async with world.sessions() as session, session.begin():
            session.add(Alert(trip_id=trip_id, kind="sos", severity=4, status="acknowledged"))
    # Once resolved, a new SOS is a new alert.
    await act(
        world.sessions,
        alert.id,
        Action.RESOLVED,
        actor_id=world.dispatcher_id,
        now=T0 + timedelta(minutes=1),
        outcome=Outcome.ASSISTED,
    )
    third = await raise_sos(world.sessions, trip_id, source="api", now=T0 + timedelta(minutes=2))
    assert third.alert_id != first.alert_id


async def test_the_dispatcher_works_an_alert_through_its_lifecycle(world: World) -> None:
    trip_id = await world.file()
    sos = await raise_sos(world.sessions, trip_id, source="api", now=T0)
    steps = [
        (Action.ACKNOWLEDGED, {"note": "Llamando a la persona"}),
        (Action.DISPATCHED, {"unit": "MOR-114", "note": "Patrulla en camino"}),
        (Action.RESOLVED, {"outcome": Outcome.ASSISTED, "note": "Persona a salvo"}),
    ]
    for i, (action, kw) in enumerate(steps, start=1):
        await act(
            world.sessions,
            sos.alert_id,
            action,
            actor_id=world.dispatcher_id,
            now=T0 + timedelta(minutes=i),
            **kw,  # type: ignore[arg-type]
        )
    [alert] = await world.alerts(trip_id)
    assert (alert.status, alert.unit, alert.outcome) == ("resolved", "MOR-114", "assisted")
    assert alert.closed_at == T0 + timedelta(minutes=3)
    assert await world.history(alert.id) == [
        ("raised", None, None),
        ("acknowledged", world.dispatcher_id, "Llamando a la persona"),
        ("dispatched", world.dispatcher_id, "MOR-114: Patrulla en camino"),
        ("resolved", world.dispatcher_id, "Persona a salvo"),
    ]
    assert await world.outbox(alert.id) == ["raised", "acknowledged", "dispatched", "resolved"]
    with pytest.raises(Conflict, match="resolved cannot be acknowledged"):
        await act(
            world.sessions, alert.id, Action.ACKNOWLEDGED, actor_id=world.dispatcher_id, now=T0
        )
    with pytest.raises(NotFound):
        await act(world.sessions, "nope", Action.ACKNOWLEDGED, actor_id=world.dispatcher_id, now=T0)


async def test_an_alert_nobody_acknowledges_escalates_until_it_is(world: World) -> None:
    trip_id = await world.file()
    plan, fixes = _detour()
    other = await world.file(plan)
    await _stream(world, other, fixes)  # an off_route alert (severe)
    sos = await raise_sos(world.sessions, trip_id, source="api", now=T0)  # extreme already
    [off] = await world.alerts(other)
    after = timedelta(minutes=2)

    early = await escalate_due(
        world.sessions, after=after, now=off.opened_at + timedelta(seconds=60)
    )
    assert [c.alert_id for c in early if c.alert_id == off.id] == []

    changes = await escalate_due(world.sessions, after=after, now=off.opened_at + after)
    assert off.id in {c.alert_id for c in changes}
    [off] = await world.alerts(other)
    assert (off.severity, off.escalations) == (4, 1)
    # Not again until another period has gone by; then re-delivered at extreme.
    again = await escalate_due(
        world.sessions, after=after, now=off.opened_at + after + timedelta(seconds=30)
    )
    assert off.id not in {c.alert_id for c in again}
    later = await escalate_due(world.sessions, after=after, now=off.opened_at + 2 * after)
    assert off.id in {c.alert_id for c in later}
    [off] = await world.alerts(other)
    assert (off.severity, off.escalations) == (4, 2)
    assert (await world.outbox(off.id)).count("escalated") == 2
    # An acknowledged alert no longer escalates.
    await act(
        world.sessions, sos.alert_id, Action.ACKNOWLEDGED, actor_id=world.dispatcher_id, now=T0
    )
    much_later = await escalate_due(world.sessions, after=after, now=T0 + timedelta(hours=5))
    assert sos.alert_id not in {c.alert_id for c in much_later}


async def _silent_trip(world: World, *, silence_s: float = 120) -> str:
    trip_id = await world.file(silence_s=silence_s)
    fix = IncomingFix(0, T0.timestamp(), ROUTE[0][1], ROUTE[0][0], 12.0, 1.0, None, 41.0)
    await ingest(world.sessions, trip_id, [fix], received_at=T0)
    return trip_id


async def test_a_silent_trip_raises_signal_lost_once_per_silence(world: World) -> None:
    trip_id = await _silent_trip(world)
    assert await watch_once(world.sessions, now=T0 + timedelta(seconds=119)) == []

    changes = await watch_once(world.sessions, now=T0 + timedelta(seconds=120))
    assert [(c.trip_id, c.kind, c.action) for c in changes] == [(trip_id, "signal_lost", "raised")]
    [alert] = await world.alerts(trip_id)
    assert (alert.lon, alert.lat) == (ROUTE[0][0], ROUTE[0][1])
    assert (alert.battery, alert.accuracy, alert.position_at) == (41.0, 12.0, T0)
    # Still silent: nothing more.
    assert await watch_once(world.sessions, now=T0 + timedelta(seconds=400)) == []
    # Heard from again: the condition ends (the alert stays for the dispatcher)...
    fix = IncomingFix(1, T0.timestamp() + 410, ROUTE[0][1], ROUTE[0][0], 12.0, 1.0, None, 40.0)
    result = await ingest(world.sessions, trip_id, [fix], received_at=T0 + timedelta(seconds=410))
    assert [(c.kind, c.action) for c in result.alerts] == [("signal_lost", "condition_ended")]
    # ...and a new silence repeats the live alert.
    changes = await watch_once(world.sessions, now=T0 + timedelta(seconds=530))
    assert [(c.kind, c.action) for c in changes] == [("signal_lost", "repeated")]
    [alert] = await world.alerts(trip_id)
    assert alert.count == 2


async def test_watchdogs_of_several_workers_raise_each_alert_once(world: World) -> None:
    trips = [await _silent_trip(world) for _ in range(6)]
    # Five workers' passes at the same moment.
    results = await asyncio.gather(
        *(watch_once(world.sessions, now=T0 + timedelta(seconds=121)) for _ in range(5))
    )
    raised = sorted(c.trip_id for changes in results for c in changes)
    assert raised == sorted(trips)
    for trip_id in trips:
        assert [(a.kind, a.count) for a in await world.alerts(trip_id)] == [("signal_lost", 1)]


async def test_a_trip_not_arrived_after_its_grace_is_overdue_once(world: World) -> None:
    trip_id = await world.file(grace_s=600, silence_s=3600)
    arrival = T0 + timedelta(minutes=30)
    assert await watch_once(world.sessions, now=arrival + timedelta(seconds=599)) == []
    changes = await watch_once(world.sessions, now=arrival + timedelta(seconds=600))
    assert [(c.kind, c.action) for c in changes] == [("overdue", "raised")]
    for later in (timedelta(hours=2), timedelta(hours=3)):
        again = await watch_once(world.sessions, now=arrival + later)
        assert all(c.kind != "overdue" for c in again)
    assert [a.kind for a in await world.alerts(trip_id) if a.kind == "overdue"] == ["overdue"]


async def test_a_trip_before_departure_is_never_silent(world: World) -> None:
    trip_id = await world.file(silence_s=60)
    assert await watch_once(world.sessions, now=T0 - timedelta(hours=3)) == []
    assert await world.alerts(trip_id) == []


async def _with_pins(world: World) -> None:
    async with world.sessions() as session:
        user = await session.get(User, world.owner_id)
        assert user is not None
        set_pins(user, "2468", "1357")
        await session.commit()


async def test_the_pin_cancels_the_trips_live_alerts(world: World) -> None:
    trip_id = await world.file()
    with pytest.raises(NoPin):
        await cancel_with_pin(world.sessions, trip_id, user_id=world.owner_id, pin="2468")
    await _with_pins(world)
    sos = await raise_sos(world.sessions, trip_id, source="api", now=T0)
    with pytest.raises(WrongPin):
        await cancel_with_pin(world.sessions, trip_id, user_id=world.owner_id, pin="0000")
    [alert] = await world.alerts(trip_id)
    assert alert.status == "open"

    result = await cancel_with_pin(world.sessions, trip_id, user_id=world.owner_id, pin="2468")

    assert result.cancelled == 1
    [alert] = await world.alerts(trip_id)
    assert (alert.id, alert.status) == (sos.alert_id, "cancelled")
    assert (await world.history(alert.id))[-1] == ("cancelled", world.owner_id, "PIN correcto")
    # Someone else's trip: not found, as if it did not exist.
    with pytest.raises(NotFound):
        await cancel_with_pin(world.sessions, trip_id, user_id=world.dispatcher_id, pin="2468")


async def test_the_duress_pin_answers_like_a_cancel_and_alerts_the_police(world: World) -> None:
    await _with_pins(world)
    plan, fixes = _detour()
    trip_id = await world.file(plan)
    await _stream(world, trip_id, fixes)  # off_route, severe
    result = await cancel_with_pin(world.sessions, trip_id, user_id=world.owner_id, pin="1357")
    assert result.cancelled == 1  # what a real cancel would have said
    [alert] = await world.alerts(trip_id)
    assert (alert.status, alert.severity, alert.details["duress"]) == ("open", 4, True)
    async with world.sessions() as session:
        police = await snapshot(session, alert, public_url="https://x")
        public = await snapshot(session, alert, public_url="https://x", police=False)
    assert police.history[-1].action == "duress"
    assert "coacción" in police.description_es()
    assert all(h.action != "duress" for h in public.history)
    assert "duress" not in public.details

    # With no live alert, the duress PIN raises an SOS nobody on the phone's side sees.
    quiet = await world.file()
    result = await cancel_with_pin(world.sessions, quiet, user_id=world.owner_id, pin="1357")
    assert result.cancelled == 0
    [alert] = await world.alerts(quiet)
    assert (alert.kind, alert.severity, alert.details["duress"]) == ("sos", 4, True)


async def test_sos_on_a_trip_without_fixes_has_no_position_but_is_raised(world: World) -> None:
    trip_id = await world.file()
    result = await raise_sos(world.sessions, trip_id, source="api", now=T0)
    [alert] = await world.alerts(trip_id)
    assert alert.id == result.alert_id
    assert (alert.kind, alert.severity, alert.lon, alert.lat) == ("sos", 4, None, None)
    with pytest.raises(NotFound):
        await raise_sos(world.sessions, "no-such-trip", source="api", now=T0)


async def test_a_late_fix_raises_no_stale_alert(world: World) -> None:
    trip_id = await world.file()
    on = [
        IncomingFix(i, T0.timestamp() + 10 * i, ROUTE[0][1], ROUTE[0][0], 8.0, 0.0, None, 90.0)
        for i in range(10, 14)
    ]
    for fix in on:
        await ingest(world.sessions, trip_id, [fix], received_at=T0 + timedelta(seconds=150))
    far = [
        IncomingFix(
            i, T0.timestamp() + 10 * i, ROUTE[0][1] + 0.02, ROUTE[0][0], 8.0, 1.0, None, 90.0
        )
        for i in range(0, 8)
    ]
    result = await ingest(world.sessions, trip_id, far, received_at=T0 + timedelta(seconds=160))
    assert result.alerts == ()
    assert await world.alerts(trip_id) == []
    async with world.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(AlertOutbox)) == 0
        trip = await session.get(Trip, trip_id)
        assert trip is not None
        assert trip.route_status != "off_route"


async def test_a_trip_filed_after_it_left_has_its_whole_timeout_to_be_heard(
    world: World,
) -> None:
    # Filed now, having left at T0 (months ago): not silent at once, only a timeout later.
    trip_id = await world.file(silence_s=60)
    now = utcnow()
    early = await watch_once(world.sessions, now=now + timedelta(seconds=50))
    assert [c.kind for c in early if c.kind == "signal_lost"] == []
    changes = await watch_once(world.sessions, now=now + timedelta(seconds=70))
    assert [(c.trip_id, c.kind) for c in changes if c.kind == "signal_lost"] == [
        (trip_id, "signal_lost")
    ]


async def test_entering_a_risk_zone_raises_one_alert_on_entry(world: World) -> None:
    # A zone around the route's second vertex, drawn by the operator.
    lon, lat = ROUTE[1]
    ring = [
        [lon - 0.002, lat - 0.002],
        [lon + 0.002, lat - 0.002],
        [lon + 0.002, lat + 0.002],
        [lon - 0.002, lat + 0.002],
        [lon - 0.002, lat - 0.002],
    ]
    async with world.sessions() as session:
        await add_zone(
            session, name="Colonia X", area=zone_polygon([ring]), created_by=world.dispatcher_id
        )
        await session.commit()
    zones = RiskZoneIndex()
    await zones.refresh(world.sessions, now=0.0)
    trip_id = await world.file()

    def at(i: int, where: list[float]) -> IncomingFix:
        # Two minutes apart: some 900 m at a car's pace, no jump for the filter.
        return IncomingFix(i, T0.timestamp() + 120 * i, where[1], where[0], 8.0, 8.0, None, 70.0)

    actions = []
    for i, where in enumerate([ROUTE[0], ROUTE[1], ROUTE[1], ROUTE[2]]):
        received = T0 + timedelta(seconds=120 * i + 1)
        result = await ingest(
            world.sessions, trip_id, [at(i, where)], received_at=received, zones=zones
        )
        actions += [(c.kind, c.action) for c in result.alerts if c.kind == "risk_zone"]
    assert actions == [("risk_zone", "raised")]  # once, on entry; staying raises nothing
    [alert] = [a for a in await world.alerts(trip_id) if a.kind == "risk_zone"]
    assert alert.details["risk_zone_name"] == "Colonia X"
    assert (alert.lon, alert.lat) == (ROUTE[1][0], ROUTE[1][1])
