"""A reproducible workload: many ~15 km routes around Morelos and their phones' fixes."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from sigueme.geo import Fix, Route, TripPlan
from sigueme.geo.route import GEOD
from sigueme.simulate import Drive, Noise, simulate

START_T = 1_780_000_000.0  # 2026-05-28T20:26:40Z, election season
CUERNAVACA = (-99.23, 18.92)
"""(lon, lat) of Cuernavaca's centre."""


@dataclass(frozen=True)
class Workload:
    plans: list[TripPlan]
    fixes: list[tuple[int, Fix]]
    """(trip index, fix), in time order across trips, as a worker receives them."""


def wiggly_route(
    rng: np.random.Generator,
    vertices: int,
    length_m: float,
    start: tuple[float, float] | None = None,
) -> Route:
    """A route of ``vertices`` points and about ``length_m``, starting somewhere in Morelos
    (or at ``start``, (lon, lat))."""
    if start is None:
        lon, lat = rng.uniform(-99.4, -98.7), rng.uniform(18.4, 19.1)
    else:
        lon, lat = start
    heading = rng.uniform(0.0, 360.0)
    step = length_m / (vertices - 1)
    bend, phase = rng.uniform(15, 45), rng.uniform(0, 2 * math.pi)
    pts = [(lon, lat)]
    for i in range(vertices - 1):
        az = heading + bend * math.sin(phase + i / 12)
        lon, lat, _ = GEOD.fwd(lon, lat, az, step * rng.uniform(0.5, 1.5))
        pts.append((float(lon), float(lat)))
    return Route(pts)


def route_near(
    rng: np.random.Generator,
    centre: tuple[float, float] = CUERNAVACA,
    *,
    within_m: float = 4_000.0,
    length_m: float = 6_000.0,
    vertices: int = 80,
) -> Route:
    """A route of about ``length_m`` starting within ``within_m`` of ``centre`` (lon, lat)."""
    az = rng.uniform(0.0, 360.0)
    dist = within_m * math.sqrt(rng.uniform(0.0, 1.0))
    lon, lat, _ = GEOD.fwd(centre[0], centre[1], az, dist)
    return wiggly_route(rng, vertices, length_m, start=(float(lon), float(lat)))


def make_workload(
    trips: int = 1_000,
    vertices: int = 200,
    length_m: float = 15_000.0,
    fixes_per_trip: int = 60,
    interval_s: float = 5.0,
    seed: int = 7,
) -> Workload:
    """``trips`` trips driving their routes with phone noise, ``fixes_per_trip`` fixes each."""
    rng = np.random.default_rng(seed)
    plans: list[TripPlan] = []
    rows: list[tuple[float, int, Fix]] = []
    for k in range(trips):
        route = wiggly_route(rng, vertices, length_m)
        speed = float(rng.uniform(8.0, 16.0))
        start = START_T + float(rng.uniform(0.0, interval_s))
        plans.append(TripPlan(route, departure=start, arrival=start + route.length_m / speed * 1.2))
        fixes = simulate(
            route,
            [Drive(route.length_m, speed)],
            start_t=start,
            interval_s=interval_s,
            noise=Noise(10.0, 0.03),
            seed=seed * 100_003 + k,
        )[:fixes_per_trip]
        rows.extend((f.t, k, f) for f in fixes)
    rows.sort(key=lambda r: (r[0], r[1]))
    return Workload(plans, [(k, f) for _, k, f in rows])
