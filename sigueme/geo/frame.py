"""The local metric frame of a route.

Every route gets its own tangent plane, centred on the point halfway along it: x and
y are the East and North components of PROJ's topocentric conversion of a point on
the WGS 84 ellipsoid, which is the ellipsoidal orthographic projection
(``+proj=ortho``). Within 250 km of the centre its scale is off by at most
1 - cos(250 km / R) = 0.077 %, which is why routes are limited to 500 km (see
:mod:`sigueme.geo.route`): every point of such a route lies within 250 km of its
middle.

The plane is a linear function of earth-centred (ECEF) coordinates, and both paths
compute it that way: pyproj takes (lon, lat) to ECEF, then a 3x3 rotation gives
(x, y). The per-fix path does it in plain floats, the batched path for many rows
and many frames at once with numpy (:func:`enu_rows`), the same operations in the
same order, so both give the same metres to the last bit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from pyproj import Transformer

FloatArray = npt.NDArray[np.float64]

_WGS84_TO_ECEF = Transformer.from_crs("EPSG:4326", "EPSG:4978", always_xy=True)


def to_ecef(lon: FloatArray, lat: FloatArray) -> FloatArray:
    """Earth-centred coordinates (metres, shape (n, 3)) of points on the WGS 84 ellipsoid."""
    x, y, z = _WGS84_TO_ECEF.transform(lon, lat, np.zeros_like(lon))
    return np.column_stack((x, y, z))


@dataclass(frozen=True, eq=False)
class LocalFrame:
    """Tangent-plane metres (x east, y north) around ``(lon0, lat0)``."""

    lon0: float
    lat0: float
    _inv: Transformer | None = field(init=False, repr=False, default=None)
    origin_ecef: FloatArray = field(init=False, repr=False)
    rotation: FloatArray = field(init=False, repr=False)
    _coeffs: tuple[float, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        lam, phi = math.radians(self.lon0), math.radians(self.lat0)
        sl, cl, sp, cp = math.sin(lam), math.cos(lam), math.sin(phi), math.cos(phi)
        # Rows: the East and North unit vectors of the tangent plane, in ECEF.
        rot = np.array([[-sl, cl, 0.0], [-sp * cl, -sp * sl, cp]])
        origin = to_ecef(np.array([self.lon0]), np.array([self.lat0]))[0]
        object.__setattr__(self, "rotation", rot)
        object.__setattr__(self, "origin_ecef", origin)
        object.__setattr__(self, "_coeffs", (*rot.ravel().tolist(), *origin.tolist()))

    def forward(self, lon: float, lat: float) -> tuple[float, float]:
        """Metres (x, y) of one point."""
        e0, e1, e2, n0, n1, n2, ox, oy, oz = self._coeffs
        cx, cy, cz = _WGS84_TO_ECEF.transform(lon, lat, 0.0)
        rx, ry, rz = cx - ox, cy - oy, cz - oz
        return e0 * rx + e1 * ry + e2 * rz, n0 * rx + n1 * ry + n2 * rz

    def forward_many(self, lon: FloatArray, lat: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Metres (x, y) of many points."""
        n = len(lon)
        enu = enu_rows(
            to_ecef(lon, lat),
            np.broadcast_to(self.origin_ecef, (n, 3)),
            np.broadcast_to(self.rotation, (n, 2, 3)),
        )
        return enu[:, 0].copy(), enu[:, 1].copy()

    def inverse_many(self, x: FloatArray, y: FloatArray) -> tuple[FloatArray, FloatArray]:
        """(lon, lat) in degrees of points given in this frame's metres."""
        if self._inv is None:
            # Made on first use: building a PROJ transformer costs ~10 ms, and only
            # corridors and simulations go back from metres to degrees.
            crs = f"+proj=ortho +lat_0={self.lat0!r} +lon_0={self.lon0!r} +ellps=WGS84 +units=m"
            inv = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
            object.__setattr__(self, "_inv", inv)
        else:
            inv = self._inv
        lon, lat = inv.transform(x, y)
        return np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64)


def enu_rows(ecef: FloatArray, origins: FloatArray, rotations: FloatArray) -> FloatArray:
    """Tangent-plane metres of row i of ``ecef`` in frame i: shape (n, 2).

    ``origins`` is (n, 3) and ``rotations`` (n, 2, 3), one frame per row (rows of the
    same trip repeat its frame). Written term by term, in the order
    :meth:`LocalFrame.forward` uses, so both round alike.
    """
    rx = ecef[:, 0] - origins[:, 0]
    ry = ecef[:, 1] - origins[:, 1]
    rz = ecef[:, 2] - origins[:, 2]
    e = rotations[:, 0, 0] * rx + rotations[:, 0, 1] * ry + rotations[:, 0, 2] * rz
    n = rotations[:, 1, 0] * rx + rotations[:, 1, 1] * ry + rotations[:, 1, 2] * rz
    return np.column_stack((e, n))
