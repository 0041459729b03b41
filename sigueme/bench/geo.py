"""``sigueme bench geo``: fixes per second through the geo core, beside the usual
alternatives, in one run on one machine.

Paths measured, all on the same workload (``--trips`` routes of ``--vertices``
vertices and about ``--length-km``, each with its phone's noisy fixes, received in
time order across trips as a worker receives them):

* per-fix: one :class:`~sigueme.geo.TripMonitor` per trip, ``update(fix)`` for each
  fix (projection, filter, matching, state machine, evaluation);
* batched: one :class:`~sigueme.geo.batch.MonitorBank`, ``update`` on
  ``--batch`` fixes at a time (the same answers, as arrays);
* Shapely per fix: ``distance`` and ``project`` on the route's line in its frame (no
  filter, no state machine: the floor of the naive approach);
* PostGIS per fix: one query per fix through asyncpg (``ST_Distance`` and
  ``ST_DWithin`` on geography, ``ST_LineLocatePoint``), awaited one after the other
  as a naive service would; on a sample of ``--postgis-fixes`` fixes.

All run in this one process, on one core, each path :data:`REPEATS` times on fresh
state, the fastest run reported. The figures depend on the machine: they are printed
with what they ran on.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

import numpy as np

from sigueme.bench.workload import Workload, make_workload
from sigueme.geo import TripMonitor
from sigueme.geo.batch import MonitorBank


@dataclass(frozen=True)
class Result:
    path: str
    fixes: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.fixes / self.seconds


def machine() -> dict[str, Any]:
    """What the figures ran on."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": version("numpy"),
        "shapely": version("shapely"),
        "pyproj": version("pyproj"),
    }


REPEATS = 3
"""Each path runs this many times on fresh state; the fastest run is reported (the
others measure the machine's neighbours as much as the code)."""


def _timed(path: str, fixes: int, run: Callable[[], object], setup: Callable[[], object]) -> Result:
    best = float("inf")
    for _ in range(REPEATS):
        setup()
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return Result(path, fixes, best)


def bench_per_fix(w: Workload) -> Result:
    monitors: list[TripMonitor] = []

    def setup() -> None:
        monitors[:] = [TripMonitor(p) for p in w.plans]

    def run() -> None:
        for k, fix in w.fixes:
            monitors[k].update(fix)

    return _timed("per-fix (TripMonitor.update)", len(w.fixes), run, setup)


def bench_batched(w: Workload, batch: int) -> Result:
    bank = MonitorBank()
    n = len(w.fixes)
    rows = np.array([k for k, _ in w.fixes], dtype=np.int64)
    cols = {
        name: np.array([getattr(f, name) for _, f in w.fixes], dtype=np.float64)
        for name in ("t", "lat", "lon", "accuracy", "speed", "battery")
    }

    def setup() -> None:
        nonlocal bank
        bank = MonitorBank()
        for plan in w.plans:
            bank.add(plan)
        bank.update(rows[:0], cols["t"][:0], cols["lat"][:0], cols["lon"][:0])  # build tables

    def run() -> None:
        for s in range(0, n, batch):
            e = s + batch
            bank.update(
                rows[s:e],
                cols["t"][s:e],
                cols["lat"][s:e],
                cols["lon"][s:e],
                accuracy=cols["accuracy"][s:e],
                speed=cols["speed"][s:e],
                battery=cols["battery"][s:e],
            )

    return _timed(f"batched (MonitorBank, {batch} per batch)", n, run, setup)


def bench_shapely(w: Workload) -> Result:
    import shapely

    lines = [p.route.line for p in w.plans]
    forwards = [p.route.frame.forward for p in w.plans]

    def run() -> None:
        for k, fix in w.fixes:
            pt = shapely.Point(forwards[k](fix.lon, fix.lat))
            lines[k].distance(pt)
            lines[k].project(pt)

    return _timed("Shapely per fix (distance + project)", len(w.fixes), run, lambda: None)


POSTGIS_QUERY = """
SELECT ST_Distance(r.geog, p.g), ST_DWithin(r.geog, p.g, $4),
       ST_LineLocatePoint(r.geom, p.g::geometry)
FROM bench_routes r, (SELECT ST_SetSRID(ST_MakePoint($2, $3), 4326)::geography AS g) p
WHERE r.id = $1
"""


async def _postgis(w: Workload, dsn: str, sample: int) -> tuple[Result, str]:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        postgis = await conn.fetchval("SELECT postgis_lib_version()")
        await conn.execute(
            "CREATE TEMP TABLE bench_routes (id int PRIMARY KEY, geom geometry(LineString, 4326),"
            " geog geography(LineString, 4326))"
        )
        await conn.executemany(
            "INSERT INTO bench_routes VALUES ($1, ST_GeomFromText($2, 4326),"
            " ST_GeomFromText($2, 4326)::geography)",
            [
                (
                    k,
                    "LINESTRING("
                    + ",".join(f"{x!r} {y!r}" for x, y in p.route.lonlat.tolist())
                    + ")",
                )
                for k, p in enumerate(w.plans)
            ],
        )
        stmt = await conn.prepare(POSTGIS_QUERY)
        fixes = w.fixes[:sample]
        for k, fix in fixes[:100]:  # warm the plan and the caches
            await stmt.fetchrow(k, fix.lon, fix.lat, w.plans[k].corridor_m)
        seconds = float("inf")
        for _ in range(REPEATS):
            start = time.perf_counter()
            for k, fix in fixes:
                await stmt.fetchrow(k, fix.lon, fix.lat, w.plans[k].corridor_m)
            seconds = min(seconds, time.perf_counter() - start)
    finally:
        await conn.close()
    return Result("PostGIS per fix (asyncpg, one query each)", len(fixes), seconds), str(postgis)


def run_geo_bench(
    *,
    trips: int,
    vertices: int,
    length_km: float,
    fixes_per_trip: int,
    batch: int,
    postgres_dsn: str | None,
    postgis_fixes: int,
    shapely_baseline: bool = True,
) -> dict[str, Any]:
    """Build the workload, run every path, return figures (see :func:`render`)."""
    t0 = time.perf_counter()
    w = make_workload(trips, vertices, length_km * 1000.0, fixes_per_trip)
    setup_s = time.perf_counter() - t0
    lengths = [p.route.length_m for p in w.plans]
    results = [bench_per_fix(w), bench_batched(w, batch)]
    if shapely_baseline:
        results.append(bench_shapely(w))
    info = machine()
    if postgres_dsn:
        pg, postgis = asyncio.run(_postgis(w, postgres_dsn, postgis_fixes))
        results.append(pg)
        info["postgis"] = postgis
    return {
        "workload": {
            "trips": trips,
            "vertices_per_route": vertices,
            "mean_route_km": round(float(np.mean(lengths)) / 1000, 2),
            "fixes": len(w.fixes),
            "setup_seconds": round(setup_s, 1),
        },
        "machine": info,
        "results": [
            {
                "path": r.path,
                "fixes": r.fixes,
                "seconds": round(r.seconds, 4),
                "fixes_per_second": round(r.per_second),
            }
            for r in results
        ],
    }


def render(report: dict[str, Any]) -> str:
    """A table a person reads: fixes/s per path and the ratio to PostGIS per fix."""
    results = report["results"]
    pg = next((r for r in results if r["path"].startswith("PostGIS")), None)
    wl, m = report["workload"], report["machine"]
    lines = [
        f"workload: {wl['trips']} trips, {wl['vertices_per_route']} vertices and "
        f"{wl['mean_route_km']} km per route on average, {wl['fixes']} fixes",
        f"machine:  {m['cpu']}, {m['cores']} cores (one used); Python {m['python']}, "
        f"numpy {m['numpy']}, shapely {m['shapely']}, pyproj {m['pyproj']}"
        + (f", PostGIS {m['postgis']}" if "postgis" in m else ""),
        "",
        f"{'path':<46} {'fixes':>8} {'seconds':>9} {'fixes/s':>11} {'vs PostGIS':>11}",
    ]
    for r in results:
        ratio = f"{r['fixes_per_second'] / pg['fixes_per_second']:.0f}x" if pg else "-"
        lines.append(
            f"{r['path']:<46} {r['fixes']:>8} {r['seconds']:>9.3f} "
            f"{r['fixes_per_second']:>11,} {ratio:>11}"
        )
    if pg is None:
        lines.append("(PostGIS not measured: pass --postgres-dsn, or run scripts/bench.sh)")
    return "\n".join(lines)


def to_json(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2)
