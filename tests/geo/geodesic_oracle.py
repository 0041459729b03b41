"""The geodesic oracle shared by the property tests: the point of a route (geodesics
between its vertices) nearest to a fix, found on the ellipsoid with pyproj's
``Geod.fwd``/``Geod.inv`` alone (sampling, then a golden-section search). Its own
accuracy (centimetres and better) is checked in test_geodesic_oracle.py.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from pyproj import Geod

GEOD = Geod(ellps="WGS84")
INV_PHI = (math.sqrt(5.0) - 1.0) / 2.0
Array = npt.NDArray[np.float64]


def tolerance(metres: float) -> float:
    """What sigueme promises: max(0.5 m, 0.1 %)."""
    return max(0.5, 1e-3 * abs(metres))


# -- the oracle ---------------------------------------------------------------------


@dataclass(frozen=True)
class Nearest:
    """The route point nearest to a fix, on the ellipsoid."""

    distance_m: float
    progress_m: float
    ambiguous: bool
    """Another, separate part of the route comes about as close (a near tie)."""


def segment_minima(
    vertices: Array, lon: float, lat: float, samples: int = 32, iterations: int = 64
) -> tuple[Array, Array, Array]:
    """For each geodesic segment: least distance to (lon, lat), the distance along the
    segment where it is reached, and the segment's length."""
    lon1, lat1, lon2, lat2 = vertices[:-1, 0], vertices[:-1, 1], vertices[1:, 0], vertices[1:, 1]
    az, _, seg_len = GEOD.inv(lon1, lat1, lon2, lat2)
    az, seg = np.asarray(az), np.asarray(seg_len)
    n = seg.size

    def dist(along: Array) -> Array:
        k = along.shape[1]
        plon, plat, _ = GEOD.fwd(
            np.repeat(lon1, k), np.repeat(lat1, k), np.repeat(az, k), along.ravel()
        )
        _, _, d = GEOD.inv(np.full(n * k, lon), np.full(n * k, lat), plon, plat)
        return np.asarray(d).reshape(n, k)

    # Distance from a point to the points of a geodesic (at these scales, far below a
    # quarter of the Earth) has one minimum: sample, then shrink the bracket around the
    # best sample by the golden ratio until it is far below a millimetre wide.
    frac = np.linspace(0.0, 1.0, samples + 1)
    j = dist(seg[:, None] * frac[None, :]).argmin(axis=1)
    a = seg * frac[np.maximum(j - 1, 0)]
    b = seg * frac[np.minimum(j + 1, samples)]
    for _ in range(iterations):
        c = b - INV_PHI * (b - a)
        e = a + INV_PHI * (b - a)
        f = dist(np.column_stack((c, e)))
        left = f[:, 0] <= f[:, 1]
        a, b = np.where(left, a, c), np.where(left, e, b)
    along = (a + b) / 2.0
    return dist(along[:, None])[:, 0], along, seg


def geodesic_nearest(vertices: Sequence[Sequence[float]], lon: float, lat: float) -> Nearest:
    """The nearest point of the route (geodesics between ``vertices``) to (lon, lat).

    ``ambiguous`` is set when the distance along the route has another local minimum
    (a separate part of the route) within max(1 m, 2 x tolerance) of the least: sigueme's
    planar distances are good to the tolerance, so such near ties may go either way.
    """
    v = np.asarray(vertices, dtype=float)
    d, along, seg = segment_minima(v, lon, lat)
    cum = np.concatenate(([0.0], np.cumsum(seg)))
    best = int(np.argmin(d))
    # Local minima of distance as a function of progress: a segment's interior
    # minimum, or a vertex where the segments on both sides are nearest.
    eps = 1e-6
    at_start = along <= eps
    at_end = along >= seg - eps
    minima = [(float(d[i]), float(cum[i] + along[i])) for i in np.flatnonzero(~at_start & ~at_end)]
    for k in range(len(v)):
        left_ok = k == 0 or at_end[k - 1]
        right_ok = k == len(v) - 1 or at_start[k]
        if left_ok and right_ok:
            minima.append((float(d[k - 1] if k > 0 else d[0]), float(cum[k])))
    dist_m, progress_m = float(d[best]), float(cum[best] + along[best])
    margin = max(1.0, 2.0 * tolerance(dist_m))
    rivals = [p for dd, p in minima if dd <= dist_m + margin and abs(p - progress_m) > 0.01]
    return Nearest(dist_m, progress_m, ambiguous=bool(rivals))
