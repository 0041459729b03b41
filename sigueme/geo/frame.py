"""The local metric frame of a route.

Every route gets its own tangent plane, centred on the point halfway along it: the
ellipsoidal orthographic projection (``+proj=ortho`` on WGS 84), whose x and y are
the East and North components of PROJ's topocentric conversion. Within 250 km of
the centre its scale is off by at most 1 - cos(250 km / R) = 0.077 %, which is why
routes are limited to 500 km (see :mod:`sigueme.geo.route`): every point of such a
route lies within 250 km of its middle.

The plane is a linear function of earth-centred (ECEF) coordinates, so the batched
path projects fixes of many routes at once: one vectorised pyproj call to ECEF for
the whole batch, then each row's 3x3 rotation (:meth:`LocalFrame.enu_rows`). Both
paths give the same metres to well under a millimetre.
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
    _fwd: Transformer = field(init=False, repr=False)
    _inv: Transformer = field(init=False, repr=False)
    origin_ecef: FloatArray = field(init=False, repr=False)
    rotation: FloatArray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        crs = (
            f"+proj=ortho +lat_0={self.lat0!r} +lon_0={self.lon0!r} +ellps=WGS84 +units=m +no_defs"
        )
        object.__setattr__(self, "_fwd", Transformer.from_crs("EPSG:4326", crs, always_xy=True))
        object.__setattr__(self, "_inv", Transformer.from_crs(crs, "EPSG:4326", always_xy=True))
        lam, phi = math.radians(self.lon0), math.radians(self.lat0)
        sl, cl, sp, cp = math.sin(lam), math.cos(lam), math.sin(phi), math.cos(phi)
        # Rows: the East and North unit vectors of the tangent plane, in ECEF.
        rot = np.array([[-sl, cl, 0.0], [-sp * cl, -sp * sl, cp]])
        origin = to_ecef(np.array([self.lon0]), np.array([self.lat0]))[0]
        object.__setattr__(self, "rotation", rot)
        object.__setattr__(self, "origin_ecef", origin)

    def forward(self, lon: float, lat: float) -> tuple[float, float]:
        """Metres (x, y) of one point."""
        x, y = self._fwd.transform(lon, lat)
        return float(x), float(y)

    def forward_many(self, lon: FloatArray, lat: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Metres (x, y) of many points."""
        x, y = self._fwd.transform(lon, lat)
        return np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)

    def inverse_many(self, x: FloatArray, y: FloatArray) -> tuple[FloatArray, FloatArray]:
        """(lon, lat) in degrees of points given in this frame's metres."""
        lon, lat = self._inv.transform(x, y)
        return np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64)


def enu_rows(ecef: FloatArray, origins: FloatArray, rotations: FloatArray) -> FloatArray:
    """Tangent-plane metres of row i of ``ecef`` in frame i: shape (n, 2).

    ``origins`` is (n, 3) and ``rotations`` (n, 2, 3), one frame per row (rows of the
    same trip repeat its frame). This is the batched twin of :meth:`LocalFrame.forward`.
    """
    rel = ecef - origins
    enu: FloatArray = np.einsum("nij,nj->ni", rotations, rel)
    return enu
