"""Routes and recorded traces from text: GeoJSON, GPX, encoded polylines and CSV.

Everything here is a pure function of the text it is given (``str`` or ``bytes``):
no file I/O, so the CLI, the API and the tests share one parser. Bad input raises
:class:`FormatError`, whose message names the line (CSV, GPX) or the JSON path
(GeoJSON) and the field that is wrong, in words a person can act on.

A trace keeps the order of its file: the monitor must see late and out-of-order
fixes as the phone sent them, so nothing here sorts.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, tzinfo
from typing import Any, Literal

import gpxpy
import gpxpy.gpx

from sigueme.geo import Fix, FixError, GeoError, Route

RouteFormat = Literal["auto", "geojson", "gpx", "polyline"]
TraceFormat = Literal["auto", "csv", "gpx", "geojson"]

MAX_FIXES = 1_000_000
"""Most fixes one trace may hold (a fix every second for eleven days)."""
MAX_INPUT_BYTES = 256 * 1024 * 1024
"""Largest route or trace text accepted: a million CSV rows fit in well under this."""
MAX_REPORTED_PROBLEMS = 10
"""Bad rows listed in one error; the rest are counted."""

CSV_COLUMNS = ("time", "lat", "lon", "accuracy", "speed", "heading", "battery")
"""The columns :func:`trace_to_csv` writes, in order (the ones :func:`parse_trace` reads)."""

# Header names other tools use for our columns (Traccar/OsmAnd, OwnTracks, spreadsheets).
_CSV_ALIASES = {
    "time": "time",
    "timestamp": "time",
    "tst": "time",
    "lat": "lat",
    "latitude": "lat",
    "lon": "lon",
    "lng": "lon",
    "long": "lon",
    "longitude": "lon",
    "accuracy": "accuracy",
    "acc": "accuracy",
    "speed": "speed",
    "heading": "heading",
    "bearing": "heading",
    "course": "heading",
    "battery": "battery",
    "batt": "battery",
}
_OPTIONAL_FIELDS = ("accuracy", "speed", "heading", "battery")
_EPOCH_NUMBER = re.compile(r"[+-]?\d+(?:\.\d*)?")
# Epoch milliseconds for any date after 1973 exceed this; epoch seconds stay below it
# until the year 5138, so one threshold tells the two apart for every valid fix.
_EPOCH_MS_THRESHOLD = 1e11
_TRKPT_TAG = re.compile(r"<(?:[A-Za-z_][\w.-]*:)?trkpt[\s/>]")
_GARMIN_TPX = "http://www.garmin.com/xmlschemas/TrackPointExtension/v2"


class FormatError(ValueError):
    """A route or trace that cannot be read. ``line`` and ``field`` locate the first
    problem when known; ``problems`` lists every one reported (at most
    :data:`MAX_REPORTED_PROBLEMS`), each already located in words."""

    def __init__(
        self,
        message: str,
        *,
        line: int | None = None,
        field: str | None = None,
        problems: Sequence[str] = (),
    ) -> None:
        super().__init__(message)
        self.line = line
        self.field = field
        self.problems = tuple(problems) or (message,)


class _FieldError(Exception):
    """One bad value inside a record, before the record's location is known."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def _locate(line: int | None, field: str | None, reason: str) -> str:
    where = []
    if line is not None:
        where.append(f"line {line}")
    if field:
        where.append(field)
    return f"{', '.join(where)}: {reason}" if where else reason


class _FieldErrors:
    """Collects bad records so one error can name several (a user fixes them at once)."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.listed: list[str] = []
        self.count = 0
        self.first: tuple[int | None, str | None] | None = None

    def add(self, line: int | None, field: str | None, reason: str) -> None:
        self.count += 1
        if self.first is None:
            self.first = (line, field)
        if len(self.listed) < MAX_REPORTED_PROBLEMS:
            self.listed.append(_locate(line, field, reason))

    def raise_if_any(self) -> None:
        if not self.count:
            return
        assert self.first is not None
        if self.count == 1:
            message = f"{self.what}: {self.listed[0]}"
        else:
            more = self.count - len(self.listed)
            lines = "\n".join(f"  {p}" for p in self.listed)
            tail = f"\n  ... and {more} more" if more else ""
            message = f"{self.what}: {self.count} bad records\n{lines}{tail}"
        raise FormatError(message, line=self.first[0], field=self.first[1], problems=self.listed)


# -- text ---------------------------------------------------------------------------------


def _as_text(data: str | bytes, what: str) -> str:
    """The input as text without a byte-order mark, refusing oversized or non-UTF-8 input."""
    if len(data) > MAX_INPUT_BYTES:
        raise FormatError(f"{what}: larger than {MAX_INPUT_BYTES // (1024 * 1024)} MiB")
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            line = data.count(b"\n", 0, exc.start) + 1
            raise FormatError(
                f"{what}: line {line}: not UTF-8 text (byte {exc.start})", line=line
            ) from None
    else:
        text = data.removeprefix("\ufeff")
    return text


def _is_polyline(text: str) -> bool:
    # Encoded polylines use only the characters 63..126, which never include the
    # quotes and colons of a JSON object nor the '<' of XML.
    return bool(text) and all(63 <= ord(c) <= 126 for c in text)


def detect_route_format(text: str) -> Literal["geojson", "gpx", "polyline"]:
    """Which route format ``text`` is in, judged by its first character.

    ``{`` is GeoJSON and ``<`` is GPX, except that ``{`` can also start an encoded
    polyline, so text made only of polyline characters is a polyline.
    """
    body = text.strip()
    if _is_polyline(body):
        return "polyline"
    if body.startswith("{"):
        return "geojson"
    if body.startswith("<"):
        return "gpx"
    return "polyline"


def detect_trace_format(text: str) -> Literal["csv", "gpx", "geojson"]:
    """Which trace format ``text`` is in: ``{`` GeoJSON, ``<`` GPX, anything else CSV."""
    body = text.lstrip()
    if body.startswith("{"):
        return "geojson"
    if body.startswith("<"):
        return "gpx"
    return "csv"


# -- times and numbers -------------------------------------------------------------------------


def parse_time(value: object, tz: tzinfo | None = None) -> float:
    """UTC epoch seconds of a fix time.

    Accepts ISO 8601 with an offset or ``Z``, epoch seconds, or epoch milliseconds
    (as numbers or digit strings). An ISO time without an offset is refused unless
    ``tz`` says which zone it was written in: a phone's local clock is otherwise
    ambiguous by hours. Raises ``ValueError`` with the reason.
    """
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a time")
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        s = value.strip()
        if not s:
            raise ValueError("is empty")
        if _EPOCH_NUMBER.fullmatch(s):
            number = float(s)
        else:
            try:
                dt = datetime.fromisoformat(s)
            except ValueError:
                raise ValueError(
                    f"{s!r} is not an ISO 8601 time, epoch seconds or epoch milliseconds"
                ) from None
            if dt.tzinfo is None or dt.utcoffset() is None:
                if tz is None:
                    raise ValueError(
                        f"{s!r} has no UTC offset; write it with Z or an offset such as "
                        "-06:00, or say which time zone the file uses"
                    ) from None
                dt = dt.replace(tzinfo=tz)
            return dt.timestamp()
    else:
        raise ValueError(f"expected a time, got {type(value).__name__}")
    if not math.isfinite(number):
        raise ValueError(f"{value!r} is not a time")
    return number / 1000.0 if abs(number) >= _EPOCH_MS_THRESHOLD else number


def iso_utc(t: float) -> str:
    """ISO 8601 in UTC with ``Z``: whole seconds, or milliseconds when the time has them."""
    dt = datetime.fromtimestamp(t, UTC)
    spec = "seconds" if dt.microsecond == 0 else "milliseconds"
    return dt.isoformat(timespec=spec).replace("+00:00", "Z")


def _csv_number(value: str, field: str) -> float | None:
    s = value.strip()
    if not s:
        return None
    try:
        number = float(s)
    except ValueError:
        raise _FieldError(field, f"{s!r} is not a number") from None
    if not math.isfinite(number):
        raise _FieldError(field, f"{s!r} is not a finite number")
    return number


def _json_number(value: object, field: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _FieldError(field, f"must be a number, got {json.dumps(value)[:40]}")
    return float(value)


def _fix(
    field_prefix: str,
    t: float,
    lat: float,
    lon: float,
    accuracy: float | None = None,
    speed: float | None = None,
    heading: float | None = None,
    battery: float | None = None,
) -> Fix:
    try:
        return Fix(t, lat, lon, accuracy, speed, heading, battery)
    except FixError as exc:
        name = "time" if exc.field == "t" else exc.field
        raise _FieldError(f"{field_prefix}{name}", exc.reason) from None


# -- routes -------------------------------------------------------------------------------


def parse_route(data: str | bytes, *, fmt: RouteFormat = "auto", precision: int = 5) -> Route:
    """A :class:`~sigueme.geo.Route` from GeoJSON, GPX or an encoded polyline.

    GeoJSON may be a LineString geometry, a Feature holding one, or a
    FeatureCollection with exactly one LineString feature. GPX gives its first
    ``<rte>`` if it has one, else its first ``<trk>`` with all segments joined.
    ``precision`` (5 or 6) applies to polylines. ``fmt="auto"`` detects the format
    (:func:`detect_route_format`). Raises :class:`FormatError`, also for a route
    the geo core refuses (too short, too long, bad coordinates).
    """
    text = _as_text(data, "route")
    if fmt == "auto":
        fmt = detect_route_format(text)
        if fmt == "polyline" and not _is_polyline(text.strip()):
            start = text.strip()[:40].splitlines()[0] if text.strip() else ""
            raise FormatError(
                "route: not GeoJSON (which starts with '{'), GPX ('<') or an encoded "
                f"polyline; it starts with {start!r}"
            )
    try:
        if fmt == "geojson":
            return _route_from_geojson(text)
        if fmt == "gpx":
            return _route_from_gpx(text)
        if fmt == "polyline":
            return Route.from_polyline(text.strip(), precision)
    except GeoError as exc:
        message = str(exc) if exc.field.startswith("route") else f"route: {exc}"
        raise FormatError(message, field=exc.field) from None
    raise FormatError(f"route: unknown format {fmt!r}; use geojson, gpx or polyline")


def _load_json(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise FormatError(
            f"{what}: line {exc.lineno}, column {exc.colno}: not valid JSON ({exc.msg})",
            line=exc.lineno,
        ) from None
    except RecursionError:
        raise FormatError(f"{what}: JSON nested too deeply") from None


def _route_from_geojson(text: str) -> Route:
    obj = _load_json(text, "route")
    if isinstance(obj, dict) and obj.get("type") == "FeatureCollection":
        features = obj.get("features")
        if not isinstance(features, list):
            raise FormatError("route: features: a FeatureCollection needs a features list")
        lines = [
            i
            for i, f in enumerate(features)
            if isinstance(f, dict)
            and isinstance(f.get("geometry"), dict)
            and f["geometry"].get("type") == "LineString"
        ]
        if len(lines) != 1:
            raise FormatError(
                "route: features: a FeatureCollection route must hold exactly one LineString "
                f"feature; this one has {len(lines)}",
                field="features",
            )
        try:
            return Route.from_geojson(features[lines[0]])
        except GeoError as exc:
            field = f"features[{lines[0]}].{exc.field}"
            raise FormatError(f"route: {field}: {exc.reason}", field=field) from None
    if not isinstance(obj, dict):
        raise FormatError("route: a GeoJSON object is expected")
    return Route.from_geojson(obj)


def _refuse_doctype(text: str, what: str) -> None:
    # GPX never needs a DTD; refusing one rules out entity-expansion attacks whatever
    # the XML parser underneath gpxpy does with them.
    if "<!DOCTYPE" in text or "<!ENTITY" in text:
        raise FormatError(f"{what}: XML with a DOCTYPE or ENTITY declaration is refused")


def _load_gpx(text: str, what: str) -> Any:
    _refuse_doctype(text, what)
    try:
        return gpxpy.parse(text)
    except gpxpy.gpx.GPXXMLSyntaxException as exc:
        raise FormatError(f"{what}: not well-formed XML ({_gpx_reason(exc)})") from None
    except (gpxpy.gpx.GPXException, ValueError, TypeError) as exc:
        raise FormatError(f"{what}: not valid GPX ({_gpx_reason(exc)})") from None


def _gpx_reason(exc: Exception) -> str:
    reason = str(exc).removeprefix("Error parsing XML: ")
    return reason.replace("<None>", "a coordinate") or type(exc).__name__


def _route_from_gpx(text: str) -> Route:
    gpx = _load_gpx(text, "route")
    for i, rte in enumerate(gpx.routes):
        if rte.points:
            positions = [(p.longitude, p.latitude) for p in rte.points]
            return Route(positions, field=f"rte[{i}]")
    for i, trk in enumerate(gpx.tracks):
        positions = [(p.longitude, p.latitude) for seg in trk.segments for p in seg.points]
        if positions:
            return Route(positions, field=f"trk[{i}]")
    raise FormatError("route: the GPX file has no <rte> or <trk> with points")


# -- traces -------------------------------------------------------------------------------


def parse_trace(
    data: str | bytes, *, fmt: TraceFormat = "auto", tz: tzinfo | None = None
) -> list[Fix]:
    """The fixes of a recorded trace, in the order the file lists them.

    * CSV: a header with at least ``time``, ``lat``, ``lon`` (common aliases such
      as ``timestamp``, ``latitude``, ``lng`` accepted) and optionally
      ``accuracy``, ``speed`` (m/s), ``heading``, ``battery``; other columns are
      ignored. Comma, semicolon or tab separated.
    * GPX: every ``<trkpt>`` of every track, which must have a ``<time>``; speed
      and course from GPX 1.0 elements or an extension (e.g. Garmin's
      TrackPointExtension). GPX has no accuracy, so it stays unknown.
    * GeoJSON: a FeatureCollection of Points with a ``time`` or ``timestamp``
      property (plus optional ``accuracy``, ``speed``, ``heading``, ``battery``),
      or LineStrings with ``properties.coordTimes`` as togeojson writes them.

    Times follow :func:`parse_time`; ``tz`` is the zone for times written without
    an offset, which are refused otherwise. At most :data:`MAX_FIXES` fixes. Raises
    :class:`FormatError` naming the line (or JSON path) and field of each bad record.
    """
    text = _as_text(data, "trace")
    if fmt == "auto":
        fmt = detect_trace_format(text)
    if fmt == "csv":
        fixes = _trace_from_csv(text, tz)
    elif fmt == "gpx":
        fixes = _trace_from_gpx(text, tz)
    elif fmt == "geojson":
        fixes = _trace_from_geojson(text, tz)
    else:
        raise FormatError(f"trace: unknown format {fmt!r}; use csv, gpx or geojson")
    if not fixes:
        raise FormatError("trace: no fixes in it")
    return fixes


def _too_many() -> FormatError:
    return FormatError(f"trace: more than {MAX_FIXES:,} fixes; split it into shorter traces")


def _sniff_delimiter(header: str) -> str:
    counts = {d: header.count(d) for d in (",", ";", "\t")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def _trace_from_csv(text: str, tz: tzinfo | None) -> list[Fix]:
    first = next((ln for ln in io.StringIO(text) if ln.strip()), "")
    reader = csv.reader(io.StringIO(text), delimiter=_sniff_delimiter(first))
    columns: dict[str, int] = {}
    width = 0
    problems = _FieldErrors("trace")
    fixes: list[Fix] = []
    try:
        for row in reader:
            line = reader.line_num
            if not row or all(not cell.strip() for cell in row):
                continue
            if not columns:
                columns, width = _csv_header(row, line)
                continue
            if len(row) != width:
                problems.add(
                    line, None, f"expected {width} fields as in the header, found {len(row)}"
                )
                continue
            try:
                fix = _csv_fix(row, columns, tz)
            except _FieldError as p:
                problems.add(line, p.field, p.reason)
                continue
            if len(fixes) >= MAX_FIXES:
                raise _too_many()
            fixes.append(fix)
    except csv.Error as exc:
        raise FormatError(
            f"trace: line {reader.line_num}: not valid CSV ({exc})", line=reader.line_num
        ) from None
    if not columns:
        raise FormatError("trace: empty; a CSV trace starts with a header such as time,lat,lon")
    problems.raise_if_any()
    return fixes


def _csv_header(row: list[str], line: int) -> tuple[dict[str, int], int]:
    columns: dict[str, int] = {}
    for i, name in enumerate(row):
        key = _CSV_ALIASES.get(name.strip().lower())
        if key is None:
            continue  # altitude, device id and the like: not needed here
        if key in columns:
            raise FormatError(
                f"trace: line {line}: header names {key!r} twice ({row[columns[key]]!r} "
                f"and {name!r})",
                line=line,
                field=key,
            )
        columns[key] = i
    missing = [c for c in ("time", "lat", "lon") if c not in columns]
    if missing:
        raise FormatError(
            f"trace: line {line}: the header needs columns time, lat and lon; missing "
            f"{', '.join(missing)} (header: {', '.join(row)[:200]})",
            line=line,
            field=missing[0],
        )
    return columns, len(row)


def _csv_fix(row: list[str], columns: Mapping[str, int], tz: tzinfo | None) -> Fix:
    try:
        t = parse_time(row[columns["time"]], tz)
    except ValueError as exc:
        raise _FieldError("time", str(exc)) from None
    values: dict[str, float | None] = {}
    for name in ("lat", "lon", *_OPTIONAL_FIELDS):
        values[name] = _csv_number(row[columns[name]], name) if name in columns else None
    lat, lon = values.pop("lat"), values.pop("lon")
    if lat is None:
        raise _FieldError("lat", "is empty")
    if lon is None:
        raise _FieldError("lon", "is empty")
    return _fix("", t, lat, lon, **values)


def _extension_values(point: Any) -> tuple[float | None, float | None]:
    """Speed and heading from a track point's extensions (any namespace)."""
    speed = heading = None
    for ext in point.extensions or ():
        for el in ext.iter():
            name = str(el.tag).rsplit("}", 1)[-1].lower()
            text = (el.text or "").strip()
            if not text:
                continue
            if name == "speed" and speed is None:
                speed = _csv_number(text, "speed")
            elif name in ("course", "heading", "bearing") and heading is None:
                heading = _csv_number(text, "heading")
    return speed, heading


def _trace_from_gpx(text: str, tz: tzinfo | None) -> list[Fix]:
    gpx = _load_gpx(text, "trace")
    points = [
        (ti, si, pi, p)
        for ti, trk in enumerate(gpx.tracks)
        for si, seg in enumerate(trk.segments)
        for pi, p in enumerate(seg.points)
    ]
    if not points:
        raise FormatError("trace: the GPX file has no track points (<trkpt>)")
    if len(points) > MAX_FIXES:
        raise _too_many()
    # gpxpy does not keep line numbers; the n-th <trkpt> tag is the n-th point unless
    # a comment or CDATA hides one, so use the tags only when the counts agree.
    tag_lines: list[int] | None = None
    starts = [m.start() for m in _TRKPT_TAG.finditer(text)]
    if len(starts) == len(points):
        tag_lines = _line_numbers(text, starts)
    problems = _FieldErrors("trace")
    fixes: list[Fix] = []
    for n, (ti, si, pi, p) in enumerate(points):
        line = tag_lines[n] if tag_lines else None
        where = f"trk[{ti}].trkseg[{si}].trkpt[{pi}]"
        try:
            fixes.append(_gpx_fix(p, tz))
        except _FieldError as prob:
            problems.add(line, f"{where}.{prob.field}", prob.reason)
    problems.raise_if_any()
    return fixes


def _gpx_fix(p: Any, tz: tzinfo | None) -> Fix:
    if p.time is None:
        raise _FieldError("time", "missing or unreadable <time>; every fix needs one")
    dt: datetime = p.time
    if dt.utcoffset() is None:
        if tz is None:
            raise _FieldError(
                "time",
                f"{dt.isoformat()!r} has no UTC offset; write it with Z or an offset such as "
                "-06:00, or say which time zone the file uses",
            )
        dt = dt.replace(tzinfo=tz)
    speed, heading = _extension_values(p)
    if speed is None and p.speed is not None:
        speed = float(p.speed)
    if heading is None and p.course is not None:
        heading = float(p.course)
    return _fix("", dt.timestamp(), p.latitude, p.longitude, None, speed, heading)


def _line_numbers(text: str, offsets: Iterable[int]) -> list[int]:
    out: list[int] = []
    line, pos = 1, 0
    for off in offsets:
        line += text.count("\n", pos, off)
        pos = off
        out.append(line)
    return out


def _trace_from_geojson(text: str, tz: tzinfo | None) -> list[Fix]:
    obj = _load_json(text, "trace")
    if not isinstance(obj, dict):
        raise FormatError("trace: a GeoJSON FeatureCollection or Feature is expected")
    if obj.get("type") == "FeatureCollection":
        features = obj.get("features")
        if not isinstance(features, list):
            raise FormatError("trace: features: a FeatureCollection needs a features list")
        items = [(f"features[{i}]", f) for i, f in enumerate(features)]
    elif obj.get("type") == "Feature":
        items = [("", obj)]
    else:
        raise FormatError(
            f"trace: type: a FeatureCollection or Feature is expected, got {obj.get('type')!r}",
            field="type",
        )
    problems = _FieldErrors("trace")
    fixes: list[Fix] = []
    for where, feature in items:
        for fix in _feature_fixes(where, feature, tz, problems):
            if len(fixes) >= MAX_FIXES:
                raise _too_many()
            fixes.append(fix)
    problems.raise_if_any()
    return fixes


def _dot(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def _feature_fixes(
    where: str, feature: object, tz: tzinfo | None, problems: _FieldErrors
) -> Iterator[Fix]:
    if not isinstance(feature, dict) or feature.get("type") != "Feature":
        problems.add(None, where or "type", "a Feature is expected")
        return
    geometry = feature.get("geometry")
    props = feature.get("properties") or {}
    if not isinstance(geometry, dict):
        problems.add(None, _dot(where, "geometry"), "the Feature has no geometry")
        return
    if not isinstance(props, dict):
        problems.add(None, _dot(where, "properties"), "must be an object")
        return
    kind = geometry.get("type")
    try:
        if kind == "Point":
            yield _point_fix(where, geometry, props, tz)
        elif kind in ("LineString", "MultiLineString"):
            yield from _line_fixes(where, geometry, props, tz, problems)
        else:
            problems.add(None, _dot(where, "geometry.type"), f"{kind!r} is not a fix or a track")
    except _FieldError as p:
        problems.add(None, p.field, p.reason)


def _position(coords: object, field: str) -> tuple[float, float]:
    if (
        not isinstance(coords, list)
        or not 2 <= len(coords) <= 4
        or any(isinstance(c, bool) or not isinstance(c, (int, float)) for c in coords)
    ):
        raise _FieldError(field, "a position is [lon, lat] (numbers)")
    return float(coords[0]), float(coords[1])


def _point_fix(
    where: str, geometry: dict[str, Any], props: dict[str, Any], tz: tzinfo | None
) -> Fix:
    lon, lat = _position(geometry.get("coordinates"), _dot(where, "geometry.coordinates"))
    key = "time" if "time" in props else "timestamp"
    if props.get(key) is None:
        raise _FieldError(_dot(where, "properties.time"), "every fix needs a time (or timestamp)")
    try:
        t = parse_time(props[key], tz)
    except ValueError as exc:
        raise _FieldError(_dot(where, f"properties.{key}"), str(exc)) from None
    optional = {
        name: _json_number(props.get(name), _dot(where, f"properties.{name}"))
        for name in _OPTIONAL_FIELDS
    }
    return _fix(_dot(where, "properties."), t, lat, lon, **optional)


def _line_fixes(
    where: str,
    geometry: dict[str, Any],
    props: dict[str, Any],
    tz: tzinfo | None,
    problems: _FieldErrors,
) -> Iterator[Fix]:
    coords = geometry.get("coordinates")
    times = props.get("coordTimes")
    times_field = _dot(where, "properties.coordTimes")
    if times is None:
        raise _FieldError(times_field, "a LineString trace needs coordTimes, one time per position")
    if geometry["type"] == "LineString":
        coords, times = [coords], [times]
    if not isinstance(coords, list) or not isinstance(times, list) or len(coords) != len(times):
        raise _FieldError(times_field, "must hold one list of times per line of positions")
    for k, (line_coords, line_times) in enumerate(zip(coords, times, strict=True)):
        suffix = f"[{k}]" if geometry["type"] == "MultiLineString" else ""
        if not isinstance(line_coords, list) or not isinstance(line_times, list):
            raise _FieldError(times_field + suffix, "must be a list")
        if len(line_coords) != len(line_times):
            raise _FieldError(
                times_field + suffix,
                f"{len(line_times)} times for {len(line_coords)} positions",
            )
        for i, (pos, when) in enumerate(zip(line_coords, line_times, strict=True)):
            pos_field = _dot(where, f"geometry.coordinates{suffix}[{i}]")
            try:
                lon, lat = _position(pos, pos_field)
                try:
                    t = parse_time(when, tz)
                except ValueError as exc:
                    raise _FieldError(f"{times_field}{suffix}[{i}]", str(exc)) from None
                yield _fix(pos_field + ".", t, lat, lon)
            except _FieldError as p:
                problems.add(None, p.field, p.reason)


# -- writing traces ------------------------------------------------------------------------


def _num(v: float | None) -> str:
    return "" if v is None else repr(round(v, 3))


def trace_to_csv(fixes: Iterable[Fix]) -> str:
    """CSV with the header :data:`CSV_COLUMNS` and ISO 8601 UTC times, which
    :func:`parse_trace` reads back to the same fixes (coordinates to 1e-7 degree)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for f in fixes:
        writer.writerow(
            (
                iso_utc(f.t),
                f"{f.lat:.7f}",
                f"{f.lon:.7f}",
                _num(f.accuracy),
                _num(f.speed),
                _num(f.heading),
                _num(f.battery),
            )
        )
    return out.getvalue()


def trace_to_gpx(fixes: Iterable[Fix], *, name: str = "Sígueme trace") -> str:
    """GPX 1.1, one track of one segment; speed and heading in Garmin's
    TrackPointExtension (GPX has nowhere for accuracy or battery, so they are lost)."""
    gpx = gpxpy.gpx.GPX()
    gpx.creator = "sigueme"
    gpx.nsmap["gpxtpx"] = _GARMIN_TPX
    track = gpxpy.gpx.GPXTrack(name=name)
    segment = gpxpy.gpx.GPXTrackSegment()
    track.segments.append(segment)
    gpx.tracks.append(track)
    for f in fixes:
        time = datetime.fromtimestamp(round(f.t, 3), UTC)
        point = gpxpy.gpx.GPXTrackPoint(round(f.lat, 7), round(f.lon, 7), time=time)
        if f.speed is not None or f.heading is not None:
            ext = ET.Element(f"{{{_GARMIN_TPX}}}TrackPointExtension")
            if f.speed is not None:
                ET.SubElement(ext, f"{{{_GARMIN_TPX}}}speed").text = _num(f.speed)
            if f.heading is not None:
                ET.SubElement(ext, f"{{{_GARMIN_TPX}}}course").text = _num(f.heading)
            point.extensions.append(ext)
        segment.points.append(point)
    xml: str = gpx.to_xml(version="1.1")
    return xml


def trace_to_geojson(fixes: Iterable[Fix]) -> str:
    """A FeatureCollection of Points with ``time`` (ISO 8601 UTC) and the optional
    values as properties, one feature per line for diffable files."""
    features = []
    for f in fixes:
        props: dict[str, Any] = {"time": iso_utc(f.t)}
        for name in _OPTIONAL_FIELDS:
            value = getattr(f, name)
            if value is not None:
                props[name] = round(value, 3)
        geometry = {"type": "Point", "coordinates": [round(f.lon, 7), round(f.lat, 7)]}
        features.append(json.dumps({"type": "Feature", "geometry": geometry, "properties": props}))
    body = ",\n".join(features)
    return f'{{"type": "FeatureCollection", "features": [\n{body}\n]}}\n'
