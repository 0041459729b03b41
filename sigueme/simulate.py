"""Simulated trips: a scripted journey along (or away from) a route, with phone GPS noise.

Used by the tests, the benchmarks and ``sigueme simulate``. The journey is a list of
moves; the phone samples the true position every ``interval_s`` seconds and reports
it with Gaussian noise (``noise_m`` per axis) and occasional multipath outliers
(``outlier_rate`` of fixes thrown ``outlier_m`` metres), as city phones do.

Example: leave the route at 3 km, drive 800 m off it for 2 km, come back::

    moves = [Drive(3000), Offset(800), Drive(5000), Offset(0), Drive(route.length_m)]
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from sigueme.geo.fixes import Fix
from sigueme.geo.route import Route


@dataclass(frozen=True, slots=True)
class Drive:
    """Travel along the route (keeping the current lateral offset) to ``to_m`` of progress;
    a smaller ``to_m`` than the current progress drives back."""

    to_m: float
    speed_mps: float = 12.0


@dataclass(frozen=True, slots=True)
class Offset:
    """Move at right angles to the route until ``lateral_m`` from it (0: back on it)."""

    lateral_m: float
    speed_mps: float = 8.0


@dataclass(frozen=True, slots=True)
class Stop:
    """Stand still."""

    seconds: float


Move = Drive | Offset | Stop


@dataclass(frozen=True, slots=True)
class Multipath:
    """Urban multipath: now and then (``start_rate`` per fix) the reported position is
    pulled ``offset_m`` to one side for ``fixes`` fixes in a row (a street canyon, a
    glass front), and the phone's reported accuracy grows by ``accuracy_share`` of that
    offset: it knows something is off, never by how much."""

    start_rate: float = 0.01
    fixes: tuple[int, int] = (2, 8)
    offset_m: tuple[float, float] = (20.0, 150.0)
    accuracy_share: tuple[float, float] = (0.2, 0.6)


@dataclass(frozen=True, slots=True)
class Noise:
    noise_m: float = 8.0
    outlier_rate: float = 0.02
    outlier_m: tuple[float, float] = (50.0, 150.0)
    multipath: Multipath | None = None
    """Episodes of a biased position (none by default)."""


URBAN_NOISE = Noise(noise_m=6.0, outlier_rate=0.03, outlier_m=(30.0, 200.0), multipath=Multipath())
"""A phone in a Mexican city (REFERENCE.md): 5-15 m of error, reported accuracy about a
68 % radius, single-fix multipath outliers of tens to a couple of hundred metres, and
episodes of several fixes pulled to one side."""


def _pose(route: Route, s: float, lateral: float) -> tuple[float, float]:
    i = min(max(bisect_right(route._cum, s) - 1, 0), len(route.seg_m) - 1)
    ax, ay, dx, dy = route.seg_ax[i], route.seg_ay[i], route.seg_dx[i], route.seg_dy[i]
    c0, seg = route.cum_m[i], route.seg_m[i]
    frac = (s - c0) / seg
    norm = math.hypot(dx, dy)
    x = ax + frac * dx - lateral * dy / norm
    y = ay + frac * dy + lateral * dx / norm
    return x, y


def truth(
    route: Route, moves: Sequence[Move], *, start_t: float, interval_s: float = 5.0
) -> list[tuple[float, float, float, float]]:
    """True (t, x, y, speed) every ``interval_s`` seconds, in the route's frame."""
    out: list[tuple[float, float, float, float]] = []
    t = start_t
    s, lateral = 0.0, 0.0
    for move in moves:
        if isinstance(move, Stop):
            end = t + move.seconds
            while t < end:
                x, y = _pose(route, s, lateral)
                out.append((t, x, y, 0.0))
                t += interval_s
            continue
        if isinstance(move, Drive):
            target = min(max(move.to_m, 0.0), route.length_m)
            step = math.copysign(move.speed_mps * interval_s, target - s)
            while (target - s) * step > 0:
                x, y = _pose(route, s, lateral)
                out.append((t, x, y, move.speed_mps))
                s = target if abs(target - s) <= abs(step) else s + step
                t += interval_s
        else:
            step = math.copysign(move.speed_mps * interval_s, move.lateral_m - lateral)
            while (move.lateral_m - lateral) * step > 0:
                x, y = _pose(route, s, lateral)
                out.append((t, x, y, move.speed_mps))
                if abs(move.lateral_m - lateral) <= abs(step):
                    lateral = move.lateral_m
                else:
                    lateral += step
                t += interval_s
    x, y = _pose(route, s, lateral)
    out.append((t, x, y, 0.0))
    return out


def simulate(
    route: Route,
    moves: Sequence[Move],
    *,
    start_t: float,
    interval_s: float = 5.0,
    noise: Noise | None = None,
    seed: int = 0,
    battery_start: float = 80.0,
    battery_drain_per_hour: float = 10.0,
) -> list[Fix]:
    """The fixes a phone would send on this journey."""
    noise = noise or Noise()
    rng = np.random.default_rng(seed)
    rows = truth(route, moves, start_t=start_t, interval_s=interval_s)
    n = len(rows)
    t = np.array([r[0] for r in rows])
    x = np.array([r[1] for r in rows]) + rng.normal(0.0, noise.noise_m, n)
    y = np.array([r[2] for r in rows]) + rng.normal(0.0, noise.noise_m, n)
    outlier = rng.random(n) < noise.outlier_rate
    k = int(outlier.sum())
    if k:
        r = rng.uniform(*noise.outlier_m, k)
        a = rng.uniform(0.0, 2 * math.pi, k)
        x[outlier] += r * np.cos(a)
        y[outlier] += r * np.sin(a)
    extra_accuracy = np.zeros(n)
    if noise.multipath is not None:
        # Its own random stream, so traces without multipath stay as they always were.
        extra_accuracy = _multipath(x, y, noise.multipath, np.random.default_rng([seed, 1]))
    lon, lat = route.frame.inverse_many(x, y)
    accuracy = np.round(noise.noise_m * rng.uniform(1.0, 2.0, n) + extra_accuracy, 1)
    fixes = []
    for i, row in enumerate(rows):
        hours = (row[0] - start_t) / 3600
        battery = max(battery_start - battery_drain_per_hour * hours, 0.0)
        fixes.append(
            Fix(
                t=float(t[i]),
                lat=float(lat[i]),
                lon=float(lon[i]),
                accuracy=float(accuracy[i]),
                speed=float(row[3]),
                battery=round(battery, 1),
            )
        )
    return fixes


def _multipath(
    x: NDArray[np.float64], y: NDArray[np.float64], multipath: Multipath, rng: np.random.Generator
) -> NDArray[np.float64]:
    """Pull episodes of fixes to one side, in place; the accuracy each fix adds."""
    n = len(x)
    extra = np.zeros(n)
    i = 0
    while i < n:
        if rng.random() >= multipath.start_rate:
            i += 1
            continue
        length = int(rng.integers(multipath.fixes[0], multipath.fixes[1] + 1))
        offset = rng.uniform(*multipath.offset_m)
        angle = rng.uniform(0.0, 2 * math.pi)
        end = min(n, i + length)
        x[i:end] += offset * math.cos(angle)
        y[i:end] += offset * math.sin(angle)
        extra[i:end] = offset * rng.uniform(*multipath.accuracy_share)
        i = end
    return extra
