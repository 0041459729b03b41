"""``sigueme bench store``: sustained fixes per second written into PostGIS and SQLite.

Each backend gets a fresh database that the benchmark migrates itself (SQLite: a
file in a temporary directory; PostGIS: a database with a random name created on the
server of ``--postgres-dsn`` and dropped afterwards), one user and ``--trips`` trips.
``--writers`` concurrent writers then append fixes with
:func:`sigueme.store.fixes.append_fixes`, ``--batch`` fixes per call and per
transaction, each writer owning its share of the trips (one trip's fixes go through
one worker, as the service does) and spreading each batch across them as a worker
receives them. Timing covers building the rows and writing them, until the last
commit; the stored rows are counted afterwards, so a figure is never for fixes that
were not there.

The figures depend on the machine and on the server's durability settings: both are
printed with them.
"""

from __future__ import annotations

import asyncio
import json
import math
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import asyncpg
import shapely
from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from sigueme.bench.geo import machine
from sigueme.store.db import make_engine, sessionmaker, upgrade_async
from sigueme.store.fixes import FixRow, append_fixes
from sigueme.store.models import Fix, Role, Trip, User

BACKENDS: Final = ("postgis", "sqlite")
LABELS: Final = {"postgis": "PostGIS", "sqlite": "SQLite"}
FIX_INTERVAL = timedelta(seconds=5)
# Cuernavaca: where the benchmark's trips are.
ORIGIN_LON, ORIGIN_LAT = -99.234, 18.921


@dataclass(frozen=True)
class StoreResult:
    backend: str
    batch: int
    writers: int
    fixes: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.fixes / self.seconds if self.seconds > 0 else math.inf


async def seed_trips(engine: AsyncEngine, count: int, *, owner: str = "bench") -> list[str]:
    """Create a traveller named ``owner`` and ``count`` active trips it owns (short
    routes in Cuernavaca with their corridors); return the trip ids."""
    now = datetime.now(UTC)
    sessions = sessionmaker(engine)
    async with sessions() as session:
        user = User(name=owner, role=Role.TRAVELLER.value)
        session.add(user)
        await session.flush()
        trips = []
        for k in range(count):
            lon = ORIGIN_LON + (k % 100) * 1e-3
            lat = ORIGIN_LAT + (k // 100 % 100) * 1e-3
            route = shapely.LineString([(lon, lat), (lon + 0.01, lat + 0.005)])
            corridor = route.buffer(0.0015)
            min_lon, min_lat, max_lon, max_lat = corridor.bounds
            trips.append(
                Trip(
                    owner_id=user.id,
                    label=f"bench {k}",
                    route=route,
                    corridor=corridor,
                    route_length_m=1170.0,
                    corridor_m=150.0,
                    destination_radius_m=100.0,
                    departure=now,
                    arrival=now + timedelta(minutes=10),
                    min_lon=min_lon,
                    min_lat=min_lat,
                    max_lon=max_lon,
                    max_lat=max_lat,
                )
            )
        session.add_all(trips)
        await session.commit()
        return [t.id for t in trips]


class _Budget:
    """Shared stop condition: a deadline and/or a number of fixes left to hand out."""

    def __init__(self, seconds: float | None, fixes: int | None) -> None:
        self.deadline = None if seconds is None else time.perf_counter() + seconds
        self.left = fixes

    def take(self, batch: int) -> int:
        if self.deadline is not None and time.perf_counter() >= self.deadline:
            return 0
        if self.left is None:
            return batch
        n = min(batch, self.left)
        self.left -= n
        return n


async def _writer(
    engine: AsyncEngine, trips: Sequence[str], batch: int, budget: _Budget, t0: datetime
) -> int:
    stored = 0
    sent = 0
    n_trips = len(trips)
    while n := budget.take(batch):
        received = datetime.now(UTC)
        rows = []
        for i in range(sent, sent + n):
            k, seq = i % n_trips, i // n_trips
            rows.append(
                FixRow(
                    trips[k],
                    seq,
                    t0 + seq * FIX_INTERVAL,
                    received,
                    ORIGIN_LON + k * 1e-4 + seq * 1e-5,
                    ORIGIN_LAT + seq * 5e-6,
                    accuracy=8.0,
                    speed=11.5,
                    heading=63.0,
                    battery=80.0,
                    verdict="accepted",
                    distance_m=4.2,
                    progress_m=seq * 57.5,
                )
            )
        sent += n
        result = await append_fixes(engine, rows, batch_max=batch)
        stored += result.stored
    return stored


async def _run_writers(
    engine: AsyncEngine,
    backend: str,
    trip_ids: Sequence[str],
    *,
    batch: int,
    writers: int,
    seconds: float | None,
    fixes: int | None,
) -> StoreResult:
    shares = [trip_ids[w::writers] for w in range(writers)]
    t0 = datetime.now(UTC).replace(microsecond=0)
    start = time.perf_counter()
    budget = _Budget(seconds, fixes)
    stored = await asyncio.gather(
        *(_writer(engine, share, batch, budget, t0) for share in shares if share)
    )
    elapsed = time.perf_counter() - start
    async with engine.connect() as conn:
        counted = (await conn.execute(select(func.count()).select_from(Fix))).scalar_one()
    if counted != sum(stored):
        raise RuntimeError(f"{backend}: writers reported {sum(stored)} fixes, table has {counted}")
    return StoreResult(LABELS[backend], batch, writers, counted, elapsed)


async def _bench_sqlite(**kw: Any) -> tuple[StoreResult, dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="sigueme-bench-") as tmp:
        url = f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
        await upgrade_async(url)
        engine = make_engine(url)
        try:
            trip_ids = await seed_trips(engine, kw.pop("trips"))
            result = await _run_writers(engine, "sqlite", trip_ids, **kw)
        finally:
            await engine.dispose()
    return result, {"sqlite": sqlite3.sqlite_version}


async def _bench_postgis(dsn: str, **kw: Any) -> tuple[StoreResult, dict[str, Any]]:
    name = f"sigueme_bench_{uuid.uuid4().hex[:12]}"
    url = make_url(dsn).set(drivername="postgresql+asyncpg", database=name)
    admin = await asyncpg.connect(dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            url_text = url.render_as_string(hide_password=False)
            await upgrade_async(url_text)
            engine = make_engine(url_text, pool_size=kw["writers"] + 1)
            try:
                async with engine.connect() as conn:
                    info = await _postgres_info(conn)
                trip_ids = await seed_trips(engine, kw.pop("trips"))
                result = await _run_writers(engine, "postgis", trip_ids, **kw)
            finally:
                await engine.dispose()
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()
    return result, info


async def _postgres_info(conn: AsyncConnection) -> dict[str, Any]:
    """The server's version and the settings that decide what a commit costs."""
    row = (
        await conn.execute(
            text(
                "SELECT current_setting('server_version'), postgis_lib_version(), "
                "current_setting('fsync'), current_setting('synchronous_commit')"
            )
        )
    ).one()
    return {
        "postgresql": row[0],
        "postgis": row[1],
        "fsync": row[2],
        "synchronous_commit": row[3],
    }


def run_store_bench(
    *,
    postgres_dsn: str | None,
    backends: Sequence[str] = BACKENDS,
    trips: int = 1_000,
    batch: int = 1_000,
    writers: int = 4,
    seconds: float | None = 10.0,
    fixes: int | None = None,
) -> dict[str, Any]:
    """Run the benchmark on each of ``backends`` (PostGIS only with a DSN) and return
    the figures (see :func:`render`). Stops after ``seconds`` or ``fixes``, whichever
    comes first; at least one of them must be given."""
    if seconds is None and fixes is None:
        raise ValueError("give seconds or fixes")
    kw: dict[str, Any] = {
        "batch": batch,
        "writers": writers,
        "seconds": seconds,
        "fixes": fixes,
    }
    info = machine()
    results: list[StoreResult] = []
    skipped: list[str] = []
    for backend in backends:
        if backend == "postgis":
            if not postgres_dsn:
                skipped.append(LABELS[backend])
                continue
            result, extra = asyncio.run(_bench_postgis(postgres_dsn, trips=trips, **kw))
        else:
            result, extra = asyncio.run(_bench_sqlite(trips=trips, **kw))
        results.append(result)
        info.update(extra)
    return {
        "workload": {
            "trips": trips,
            "batch": batch,
            "writers": writers,
            "seconds_limit": seconds,
            "fixes_limit": fixes,
        },
        "machine": info,
        "results": [
            {
                "backend": r.backend,
                "batch": r.batch,
                "writers": r.writers,
                "fixes": r.fixes,
                "seconds": round(r.seconds, 3),
                "fixes_per_second": round(r.per_second),
            }
            for r in results
        ],
        "skipped": skipped,
    }


def render(report: dict[str, Any]) -> str:
    """A table a person reads: fixes/s per backend, with the machine and settings."""
    m, wl = report["machine"], report["workload"]
    lines = [f"machine:  {m['cpu']}, {m['cores']} cores; Python {m['python']}"]
    if "sqlite" in m:
        lines.append(f"          SQLite {m['sqlite']} (WAL, synchronous=FULL)")
    if "postgresql" in m:
        lines.append(
            f"          PostgreSQL {m['postgresql']}, PostGIS {m['postgis']} "
            f"(fsync {m['fsync']}, synchronous_commit {m['synchronous_commit']})"
        )
    limits = [f"{wl['seconds_limit']:g} s"] if wl["seconds_limit"] is not None else []
    if wl["fixes_limit"] is not None:
        limits.append(f"{wl['fixes_limit']:,} fixes")
    lines += [
        f"workload: {wl['trips']:,} trips, one transaction per batch, for {' or '.join(limits)}",
        "",
        f"{'backend':<9} {'batch':>6} {'writers':>8} {'fixes':>11} {'seconds':>9} {'fixes/s':>10}",
    ]
    for r in report["results"]:
        lines.append(
            f"{r['backend']:<9} {r['batch']:>6} {r['writers']:>8} {r['fixes']:>11,} "
            f"{r['seconds']:>9.2f} {r['fixes_per_second']:>10,}"
        )
    if m.get("fsync") == "off":
        lines.append(
            "(this PostgreSQL runs with fsync off, like the throw-away test server: "
            "commits on a durable one cost a disk flush)"
        )
    for label in report["skipped"]:
        lines.append(f"({label} not measured: pass --postgres-dsn, or run scripts/bench.sh store)")
    return "\n".join(lines)


def to_json(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2)
