"""Planned routes: parsing, validation, the local metric frame and the corridor.

A route arrives as a GeoJSON LineString (``[lon, lat]`` positions, RFC 7946) or a
Google encoded polyline (precision 5 or 6). It is validated, its long segments are
densified along the geodesic, and it is projected once into its own tangent plane
(:mod:`sigueme.geo.frame`). Lengths and progress along the route are geodesic
(pyproj's ``Geod`` on WGS 84); distances from a fix to the route are planar in the
route's frame, good to 0.1 % within the length bound.
"""

from __future__ import annotations

import json
import math
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import polyline as polyline_codec
import shapely
from pyproj import Geod
from shapely.geometry import LineString, MultiPolygon, Polygon

from sigueme.geo.errors import RouteError
from sigueme.geo.frame import FloatArray, LocalFrame
from sigueme.geo.matching import SEGMENT_FIELDS

GEOD = Geod(ellps="WGS84")

MAX_VERTICES = 20_000
"""Most vertices a route may have as given (before densification)."""
MAX_LENGTH_M = 500_000.0
"""Longest route: every point then lies within 250 km of the frame's centre (0.077 % scale)."""
MIN_LENGTH_M = 10.0
"""Shortest route: below this there is nothing to follow."""
DENSIFY_M = 1_000.0
"""Segments longer than this are split along the geodesic, so straight lines in the
frame follow the geodesic to millimetres."""
MAX_POLYLINE_CHARS = 1_000_000
CORRIDOR_PIECE = 64
"""Segments per piece when buffering the corridor."""


@dataclass(frozen=True, slots=True)
class PlannedStop:
    """A place on the way where the traveller means to stop (no ``stopped`` alarm there)."""

    lon: float
    lat: float
    radius_m: float = 150.0
    label: str = ""
    dwell_s: float = 0.0
    """How long the traveller means to stay (a rally, a meal): the schedule allows for it."""


def _check_position(i: int, pos: Any, field: str) -> tuple[float, float]:
    if isinstance(pos, (str, bytes)) or not isinstance(pos, Sequence) or not 2 <= len(pos) <= 3:
        raise RouteError(f"{field}[{i}]", "a position is [lon, lat] (or [lon, lat, altitude])")
    lon, lat = pos[0], pos[1]
    for name, v in (("longitude", lon), ("latitude", lat)):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise RouteError(f"{field}[{i}]", f"{name} must be a number, got {type(v).__name__}")
        try:
            finite = math.isfinite(v)
        except OverflowError:  # an integer too large for a float
            finite = False
        if not finite:
            raise RouteError(f"{field}[{i}]", f"{name} must be finite, got {v}")
    if not -180.0 <= lon <= 180.0:
        raise RouteError(f"{field}[{i}]", f"longitude {lon} is outside [-180, 180]")
    if not -90.0 <= lat <= 90.0:
        raise RouteError(f"{field}[{i}]", f"latitude {lat} is outside [-90, 90]")
    return float(lon), float(lat)


def _densify(lonlat: FloatArray, seg_m: FloatArray) -> FloatArray:
    """Insert geodesic points into segments longer than :data:`DENSIFY_M`."""
    long_segments = np.flatnonzero(seg_m > DENSIFY_M)
    if long_segments.size == 0:
        return lonlat
    parts: list[FloatArray] = []
    start = 0
    for i in long_segments.tolist():
        parts.append(lonlat[start : i + 1])
        n_inner = math.ceil(seg_m[i] / DENSIFY_M) - 1
        inner = GEOD.npts(lonlat[i, 0], lonlat[i, 1], lonlat[i + 1, 0], lonlat[i + 1, 1], n_inner)
        parts.append(np.asarray(inner, dtype=np.float64).reshape(-1, 2))
        start = i + 1
    parts.append(lonlat[start:])
    return np.concatenate(parts)


class Route:
    """A validated planned route in its own metric frame.

    Attributes are read-only arrays: ``lonlat`` (n, 2) degrees, ``x``/``y`` metres in
    :attr:`frame`, ``cum_m`` geodesic metres from the start at each vertex,
    ``length_m`` the whole length.
    """

    def __init__(
        self,
        positions: Sequence[Any],
        *,
        field: str = "route",
        max_vertices: int | None = MAX_VERTICES,
    ) -> None:
        """``max_vertices`` bounds what a person sends; ``None`` rebuilds a route that was
        already accepted (stored densified, it may have more)."""
        if isinstance(positions, (str, bytes)) or not isinstance(positions, Sequence):
            raise RouteError(field, "coordinates must be a list of [lon, lat] positions")
        if max_vertices is not None and len(positions) > max_vertices:
            raise RouteError(field, f"{len(positions)} vertices; at most {max_vertices} allowed")
        pts = [_check_position(i, p, field) for i, p in enumerate(positions)]
        # Repeated consecutive points carry no direction: drop them.
        dedup = [p for i, p in enumerate(pts) if i == 0 or p != pts[i - 1]]
        if len(dedup) < 2:
            raise RouteError(field, "a route needs at least two distinct points")
        lonlat = np.asarray(dedup, dtype=np.float64)
        _, _, seg = GEOD.inv(lonlat[:-1, 0], lonlat[:-1, 1], lonlat[1:, 0], lonlat[1:, 1])
        seg_m = np.asarray(seg, dtype=np.float64)
        length = float(seg_m.sum())
        if length < MIN_LENGTH_M:
            raise RouteError(
                field, f"the route is {length:.1f} m long; at least {MIN_LENGTH_M:g} m"
            )
        if length > MAX_LENGTH_M:
            raise RouteError(
                field,
                f"the route is {length / 1000:.1f} km long; at most {MAX_LENGTH_M / 1000:g} km "
                "(split a longer journey into several trips)",
            )
        lonlat = _densify(lonlat, seg_m)
        _, _, seg = GEOD.inv(lonlat[:-1, 0], lonlat[:-1, 1], lonlat[1:, 0], lonlat[1:, 1])
        seg_m = np.asarray(seg, dtype=np.float64)
        # Points a few millimetres apart survive the exact-duplicate check but would
        # give degenerate segments: merge them.
        keep = np.concatenate(([True], seg_m > 1e-3))
        if not keep.all():
            lonlat = lonlat[keep]
            _, _, seg = GEOD.inv(lonlat[:-1, 0], lonlat[:-1, 1], lonlat[1:, 0], lonlat[1:, 1])
            seg_m = np.asarray(seg, dtype=np.float64)
        cum = np.concatenate(([0.0], np.cumsum(seg_m)))
        self.lonlat: FloatArray = lonlat
        self._corridors: dict[float, Polygon] = {}
        self.cum_m: FloatArray = cum
        self.seg_m: FloatArray = seg_m
        self.length_m = float(cum[-1])
        mid_lon, mid_lat = self._point_at_geodesic(self.length_m / 2)
        self.frame = LocalFrame(mid_lon, mid_lat)
        self.x, self.y = self.frame.forward_many(lonlat[:, 0], lonlat[:, 1])
        self.x.flags.writeable = False
        self.y.flags.writeable = False
        self.lonlat.flags.writeable = False
        self.cum_m.flags.writeable = False
        # Segment tables for the matcher, as arrays (batched path) and tuples (per fix).
        # The nearest point of segment i to p is at t = p . u_i - k_i along it, with
        # u = d / |d|^2 and k = a . u (zero for a degenerate segment).
        ax, ay = self.x[:-1], self.y[:-1]
        dx, dy = np.diff(self.x), np.diff(self.y)
        len2 = dx * dx + dy * dy
        inv_len2 = np.divide(1.0, len2, out=np.zeros_like(len2), where=len2 > 0)
        ux, uy = dx * inv_len2, dy * inv_len2
        k0 = ax * ux + ay * uy
        self.seg_ax, self.seg_ay, self.seg_dx, self.seg_dy = ax, ay, dx, dy
        self.seg_ux, self.seg_uy, self.seg_k0 = ux, uy, k0
        self._cum: list[float] = cum.tolist()
        # One flat array of doubles, SEGMENT_FIELDS per segment: thousands of trips'
        # routes stay compact in memory, which the per-fix loop feels (cache misses).
        table = np.column_stack((ax, ay, dx, dy, ux, uy, k0, cum[:-1], seg_m))
        assert table.shape[1] == SEGMENT_FIELDS
        self._segments = array("d", table.ravel().tobytes())

    # -- constructors -----------------------------------------------------------------

    @classmethod
    def from_geojson(cls, obj: Mapping[str, Any] | str) -> Route:
        """A route from a GeoJSON LineString geometry, or a Feature holding one."""
        if isinstance(obj, str):
            try:
                obj = json.loads(obj)
            except json.JSONDecodeError as exc:
                raise RouteError("route", f"not valid JSON: {exc.msg}") from None
        if not isinstance(obj, Mapping):
            raise RouteError("route", "a GeoJSON object is expected")
        if obj.get("type") == "Feature":
            geometry = obj.get("geometry")
            if not isinstance(geometry, Mapping):
                raise RouteError("route.geometry", "the Feature has no geometry")
            obj = geometry
        if obj.get("type") != "LineString":
            got = repr(obj.get("type"))[:40]  # what was sent, cut short: it is echoed back
            raise RouteError("route.type", f"a LineString is expected, got {got}")
        return cls(obj.get("coordinates"), field="route.coordinates")  # type: ignore[arg-type]

    @classmethod
    def from_polyline(cls, encoded: str, precision: int = 5) -> Route:
        """A route from a Google encoded polyline (precision 5, or 6 as OSRM/Valhalla use)."""
        if precision not in (5, 6):
            raise RouteError("precision", "an encoded polyline has precision 5 or 6")
        if not isinstance(encoded, str) or not encoded:
            raise RouteError("polyline", "an encoded polyline is a non-empty string")
        if len(encoded) > MAX_POLYLINE_CHARS:
            raise RouteError("polyline", f"longer than {MAX_POLYLINE_CHARS} characters")
        if any(not 63 <= ord(c) <= 126 for c in encoded):
            raise RouteError("polyline", "contains characters an encoded polyline never has")
        try:
            latlon = polyline_codec.decode(encoded, precision)
        except (IndexError, ValueError, TypeError):
            raise RouteError("polyline", "cannot be decoded (truncated or corrupt)") from None
        return cls([(lon, lat) for lat, lon in latlon], field="polyline")

    # -- geometry ---------------------------------------------------------------------

    def _point_at_geodesic(self, progress_m: float) -> tuple[float, float]:
        i = min(max(bisect_right(self.cum_m.tolist(), progress_m) - 1, 0), len(self.seg_m) - 1)
        lon1, lat1 = self.lonlat[i]
        lon2, lat2 = self.lonlat[i + 1]
        az, _, _ = GEOD.inv(lon1, lat1, lon2, lat2)
        lon, lat, _ = GEOD.fwd(lon1, lat1, az, progress_m - self.cum_m[i])
        return float(lon), float(lat)

    def point_at(self, progress_m: float) -> tuple[float, float]:
        """(lon, lat) of the point ``progress_m`` metres along the route (clamped)."""
        return self._point_at_geodesic(min(max(progress_m, 0.0), self.length_m))

    @property
    def start(self) -> tuple[float, float]:
        lon, lat = self.lonlat[0]
        return float(lon), float(lat)

    @property
    def end(self) -> tuple[float, float]:
        lon, lat = self.lonlat[-1]
        return float(lon), float(lat)

    @cached_property
    def line(self) -> LineString:
        """The route as a Shapely line in its frame's metres."""
        return LineString(np.column_stack((self.x, self.y)))

    def corridor(self, width_m: float) -> Polygon:
        """The corridor: every point within ``width_m`` of the route, in frame metres.

        Buffered piece by piece and merged: one buffer of a long route that crosses
        itself many times costs minutes, the pieces' union well under a second. Slivers
        that rounding can leave beside the corridor (an out-and-back route) are
        dropped: the buffer of a connected line is one polygon.
        """
        if not (math.isfinite(width_m) and width_m > 0):
            raise RouteError("corridor_m", "the corridor width must be a positive number of metres")
        cached = self._corridors.get(width_m)
        if cached is not None:
            return cached
        xy = np.column_stack((self.x, self.y))
        pieces = [
            LineString(xy[i : i + CORRIDOR_PIECE + 1]).buffer(width_m, quad_segs=8)
            for i in range(0, len(xy) - 1, CORRIDOR_PIECE)
        ]
        merged = shapely.union_all(pieces) if len(pieces) > 1 else pieces[0]
        if isinstance(merged, MultiPolygon):
            merged = max(merged.geoms, key=lambda part: part.area)
        assert isinstance(merged, Polygon)
        self._corridors[width_m] = merged
        return merged

    def to_lonlat(self, geom: Any) -> Any:
        """A Shapely geometry in this route's frame, back in WGS 84 (lon, lat)."""

        def inverse(xy: FloatArray) -> FloatArray:
            lon, lat = self.frame.inverse_many(xy[:, 0], xy[:, 1])
            return np.column_stack((lon, lat))

        return shapely.transform(geom, inverse)

    def corridor_geojson(self, width_m: float) -> dict[str, Any]:
        """The corridor as a GeoJSON Polygon in WGS 84."""
        mapping: dict[str, Any] = shapely.geometry.mapping(self.to_lonlat(self.corridor(width_m)))
        return mapping

    def geojson(self) -> dict[str, Any]:
        """The (densified) route as a GeoJSON LineString."""
        return {"type": "LineString", "coordinates": self.lonlat.tolist()}

    # -- matching ---------------------------------------------------------------------

    def segment_span(self, lo_m: float, hi_m: float) -> tuple[int, int]:
        """Indices ``[i0, i1)`` of the segments that overlap ``[lo_m, hi_m]`` of progress."""
        cum = self._cum
        i0 = min(max(bisect_right(cum, lo_m) - 1, 0), len(cum) - 2)
        i1 = min(bisect_left(cum, hi_m), len(cum) - 1)
        return i0, max(i1, i0 + 1)

    def far_distance_m(self, lon: float, lat: float) -> float:
        """Geodesic distance from a point far from the route (beyond its frame's reach) to
        the route, good to about a kilometre: the nearest of at most 512 vertices."""
        step = max(1, len(self.lonlat) // 512)
        pts = self.lonlat[::step]
        n = len(pts)
        _, _, d = GEOD.inv(np.full(n, lon), np.full(n, lat), pts[:, 0], pts[:, 1])
        return float(np.min(d))

    def nearest(self, x: float, y: float) -> tuple[float, float]:
        """Distance (m) and progress (m) of the route point nearest to ``(x, y)``, anywhere."""
        from sigueme.geo.matching import match_point

        m = match_point(self, x, y, 0.0, self.length_m, 0.0, 0.0)
        return m.distance_m, m.progress_m
