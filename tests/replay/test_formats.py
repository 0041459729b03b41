"""Reading routes and traces from text: what a user's file turns into, and what a
user is told when their file is wrong."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from importlib import resources
from zoneinfo import ZoneInfo

import polyline
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sigueme.geo import Fix, Route
from sigueme.replay import (
    FormatError,
    detect_route_format,
    detect_trace_format,
    parse_route,
    parse_time,
    parse_trace,
    trace_to_csv,
    trace_to_geojson,
    trace_to_gpx,
)
from sigueme.replay import formats as formats_module

MX = ZoneInfo("America/Mexico_City")
T0 = datetime(2024, 5, 28, 14, 0, tzinfo=UTC).timestamp()  # 08:00 in Cuernavaca
LINE = [[-99.2300, 18.9200], [-99.2310, 18.9150], [-99.2330, 18.9100]]


def sample_text(name: str) -> str:
    return resources.files("sigueme.replay").joinpath("samples", name).read_text("utf-8")


def route_length(positions: list[list[float]]) -> float:
    return Route(positions).length_m


# -- routes ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "obj",
    [
        {"type": "LineString", "coordinates": LINE},
        {
            "type": "Feature",
            "properties": {},
            "geometry": {"type": "LineString", "coordinates": LINE},
        },
        {
            "type": "FeatureCollection",
            "features": [
                {
                    "type": "Feature",
                    "properties": {},
                    "geometry": {"type": "Point", "coordinates": LINE[0]},
                },
                {
                    "type": "Feature",
                    "properties": {},
                    "geometry": {"type": "LineString", "coordinates": LINE},
                },
            ],
        },
    ],
    ids=["geometry", "feature", "collection"],
)
def test_geojson_route_shapes_give_the_same_route(obj: dict[str, object]) -> None:
    route = parse_route(json.dumps(obj))
    assert route.start == pytest.approx(tuple(LINE[0]))
    assert route.end == pytest.approx(tuple(LINE[-1]))
    assert route.length_m == pytest.approx(route_length(LINE))


def test_feature_collection_with_two_lines_is_refused() -> None:
    feature = {
        "type": "Feature",
        "properties": {},
        "geometry": {"type": "LineString", "coordinates": LINE},
    }
    text = json.dumps({"type": "FeatureCollection", "features": [feature, feature]})
    with pytest.raises(FormatError, match="exactly one LineString feature; this one has 2"):
        parse_route(text)


def test_invalid_json_route_names_line_and_column() -> None:
    with pytest.raises(FormatError, match=r"line 3, column \d+: not valid JSON") as info:
        parse_route('{"type": "LineString",\n "coordinates": [[1, 2],\n [3, 4]]]}')
    assert info.value.line == 3


def test_route_the_geo_core_refuses_becomes_a_format_error_naming_the_position() -> None:
    text = json.dumps({"type": "LineString", "coordinates": [[-99.23, 18.92], [-99.23, 95.0]]})
    with pytest.raises(FormatError, match=r"coordinates\[1\]: latitude 95.0 is outside") as info:
        parse_route(text)
    assert info.value.field == "route.coordinates[1]"


def test_sample_route_is_a_plausible_cuernavaca_route() -> None:
    route = parse_route(sample_text("cuernavaca_route.geojson"))
    assert 10_000 <= route.length_m <= 15_000
    for lon, lat in route.lonlat:
        assert 18.8 <= lat <= 19.0
        assert -99.3 <= lon <= -99.15


@pytest.mark.parametrize("precision", [5, 6])
def test_polyline_route_with_its_precision(precision: int) -> None:
    encoded = polyline.encode([(lat, lon) for lon, lat in LINE], precision)
    route = parse_route(encoded + "\n", precision=precision)
    assert route.length_m == pytest.approx(route_length(LINE), rel=1e-4)


def test_polyline_read_with_the_wrong_precision_lands_elsewhere() -> None:
    encoded = polyline.encode([(lat, lon) for lon, lat in LINE], 6)
    with pytest.raises(FormatError, match=r"polyline\[0\]: longitude -992.3 is outside"):
        parse_route(encoded, precision=5)  # ten times the coordinates


def test_polyline_starting_with_a_brace_is_not_taken_for_geojson() -> None:
    encoded = polyline.encode([(18.92014, -99.23), (18.93, -99.24)], 5)
    assert encoded.startswith("{")
    assert detect_route_format(encoded) == "polyline"
    assert parse_route(encoded).length_m > 1000


def test_text_that_is_no_route_format_says_what_it_starts_with() -> None:
    with pytest.raises(FormatError, match=r"not GeoJSON .* it starts with 'time,lat,lon'"):
        parse_route("time,lat,lon\n2024-05-28T14:00:00Z,18.9,-99.2\n")
    with pytest.raises(FormatError, match=r"not GeoJSON .* it starts with ''"):
        parse_route("  \n")


def test_corrupt_polyline_is_refused() -> None:
    with pytest.raises(FormatError, match="polyline: cannot be decoded"):
        parse_route("_inrBnzs|Qo}@n")


def _gpx(body: str) -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<gpx version="1.1" creator="test" xmlns="http://www.topografix.com/GPX/1/1">\n'
        f"{body}\n</gpx>\n"
    )


def _pts(tag: str, positions: list[list[float]]) -> str:
    return "\n".join(f'<{tag} lat="{lat}" lon="{lon}"/>' for lon, lat in positions)


def test_gpx_route_from_rte() -> None:
    route = parse_route(_gpx(f"<rte>{_pts('rtept', LINE)}</rte>"))
    assert route.length_m == pytest.approx(route_length(LINE))


def test_gpx_route_from_first_track_with_segments_joined() -> None:
    other = [[-99.1, 18.8], [-99.1, 18.81]]
    body = (
        f"<trk><trkseg>{_pts('trkpt', LINE[:2])}</trkseg>"
        f"<trkseg>{_pts('trkpt', LINE[2:])}</trkseg></trk>"
        f"<trk><trkseg>{_pts('trkpt', other)}</trkseg></trk>"
    )
    route = parse_route(_gpx(body))
    assert route.length_m == pytest.approx(route_length(LINE))


def test_gpx_without_route_or_track_is_refused() -> None:
    with pytest.raises(FormatError, match="no <rte> or <trk>"):
        parse_route(_gpx('<wpt lat="18.9" lon="-99.2"/>'))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('  {"type": "LineString"}', "geojson"),
        ("\n<?xml version='1.0'?><gpx/>", "gpx"),
        ("_inrBnzs|Qo}@n}@", "polyline"),
    ],
)
def test_route_format_detection(text: str, expected: str) -> None:
    assert detect_route_format(text) == expected


def test_explicit_route_format_overrides_detection() -> None:
    text = json.dumps({"type": "LineString", "coordinates": LINE})
    with pytest.raises(FormatError, match="polyline"):
        parse_route(text, fmt="polyline")


# -- times --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "2024-05-28T14:00:00Z",
        "2024-05-28T08:00:00-06:00",
        "2024-05-28 08:00:00-0600",
        str(int(T0)),
        str(int(T0 * 1000)),
        T0,
        int(T0 * 1000),
    ],
)
def test_time_forms_agree(value: object) -> None:
    assert parse_time(value) == T0


def test_naive_time_is_refused_without_a_zone_and_read_in_it_with_one() -> None:
    with pytest.raises(ValueError, match="no UTC offset"):
        parse_time("2024-05-28T08:00:00")
    assert parse_time("2024-05-28T08:00:00", MX) == T0


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("yesterday", "'yesterday' is not an ISO 8601 time"),
        ("", "is empty"),
        ("2024-13-01T00:00:00Z", "is not an ISO 8601 time"),
        (True, "True is not a time"),
        (float("nan"), "is not a time"),
    ],
)
def test_garbage_time_is_refused(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_time(value)


# -- CSV traces -------------------------------------------------------------------------------


def test_csv_trace_keeps_file_order_and_optional_values() -> None:
    text = (
        "time,lat,lon,accuracy,speed,heading,battery\n"
        "2024-05-28T14:00:10Z,18.92,-99.23,8.5,12.0,180,80\n"
        "2024-05-28T14:00:00Z,18.921,-99.231,,,,\n"
    )
    fixes = parse_trace(text)
    assert [f.t for f in fixes] == [T0 + 10, T0]  # out of order, as sent
    assert fixes[0] == Fix(T0 + 10, 18.92, -99.23, 8.5, 12.0, 180.0, 80.0)
    assert fixes[1] == Fix(T0, 18.921, -99.231)


def test_csv_aliases_semicolons_extra_columns_and_bom() -> None:
    text = "\ufeffTimestamp;Latitude;Longitude;Altitude;Batt\n1716904800;18.92;-99.23;1500;55\n"
    fixes = parse_trace(text.encode("utf-8"))
    assert fixes == [Fix(T0, 18.92, -99.23, battery=55.0)]


def test_csv_naive_time_is_refused_naming_the_line() -> None:
    text = "time,lat,lon\n2024-05-28T14:00:00Z,18.92,-99.23\n2024-05-28 08:00:05,18.92,-99.23\n"
    with pytest.raises(FormatError) as info:
        parse_trace(text)
    message = str(info.value)
    assert "line 3, time:" in message
    assert "'2024-05-28 08:00:05' has no UTC offset" in message
    assert info.value.line == 3
    assert info.value.field == "time"
    assert parse_trace(text, tz=MX)[1].t == T0 + 5


def test_csv_bad_rows_are_all_listed_with_their_lines() -> None:
    text = (
        "time,lat,lon\n"
        "2024-05-28T14:00:00Z,18.92,-99.23\n"
        "2024-05-28T14:00:05Z,ninety,-99.23\n"
        "\n"
        "2024-05-28T14:00:10Z,18.92,-199.23\n"
        "2024-05-28T14:00:15Z,18.92\n"
        "2024-05-28T14:00:20Z,0,0\n"
    )
    with pytest.raises(FormatError) as info:
        parse_trace(text)
    assert info.value.problems == (
        "line 3, lat: 'ninety' is not a number",
        "line 5, lon: longitude -199.23 is outside [-180, 180]",
        "line 6: expected 3 fields as in the header, found 2",
        "line 7, lat: 0,0 is what a phone sends without a position",
    )
    assert str(info.value).startswith("trace: 4 bad records")


def test_csv_many_bad_rows_are_counted_not_all_listed() -> None:
    rows = "".join(f"2024-05-28T14:00:{i:02d}Z,x,-99.23\n" for i in range(30))
    with pytest.raises(FormatError, match=r"30 bad records[\s\S]*and 20 more"):
        parse_trace("time,lat,lon\n" + rows)


def test_csv_header_without_required_columns_is_refused() -> None:
    with pytest.raises(FormatError, match="needs columns time, lat and lon; missing lon"):
        parse_trace("time,lat,altitude\n2024-05-28T14:00:00Z,18.9,1500\n")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("time,lat,lon\n", "no fixes"),
        (b"time,lat,lon\n2024-05-28T14:00:00Z,18.9,-99.2\n\xff\xfe\n", "line 3: not UTF-8"),
    ],
)
def test_empty_or_undecodable_trace(text: str | bytes, message: str) -> None:
    with pytest.raises(FormatError, match=message):
        parse_trace(text)


def test_trace_size_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(formats_module, "MAX_FIXES", 3)
    rows = "".join(f"{int(T0) + i},18.92,-99.23\n" for i in range(4))
    with pytest.raises(FormatError, match="more than 3 fixes"):
        parse_trace("time,lat,lon\n" + rows)


# -- GPX traces ---------------------------------------------------------------------------------


def test_gpx_trace_reads_times_and_speed_from_extensions() -> None:
    body = """<trk><trkseg>
<trkpt lat="18.92" lon="-99.23"><time>2024-05-28T14:00:00Z</time>
  <extensions><gpxtpx:TrackPointExtension xmlns:gpxtpx="http://www.garmin.com/xmlschemas/TrackPointExtension/v2">
    <gpxtpx:speed>11.5</gpxtpx:speed><gpxtpx:course>190</gpxtpx:course>
  </gpxtpx:TrackPointExtension></extensions></trkpt>
<trkpt lat="18.919" lon="-99.23"><time>2024-05-28T08:00:05-06:00</time></trkpt>
</trkseg></trk>"""
    fixes = parse_trace(_gpx(body))
    assert fixes == [
        Fix(T0, 18.92, -99.23, None, 11.5, 190.0, None),
        Fix(T0 + 5, 18.919, -99.23),
    ]


def test_gpx_1_0_speed_and_course_elements() -> None:
    text = (
        '<gpx version="1.0"><trk><trkseg><trkpt lat="18.92" lon="-99.23">'
        "<time>2024-05-28T14:00:00Z</time><course>90</course><speed>3.5</speed>"
        "</trkpt></trkseg></trk></gpx>"
    )
    assert parse_trace(text) == [Fix(T0, 18.92, -99.23, speed=3.5, heading=90.0)]


def test_gpx_point_without_time_is_refused_naming_its_line() -> None:
    body = (
        '<trk><trkseg>\n<trkpt lat="18.92" lon="-99.23"><time>2024-05-28T14:00:00Z</time></trkpt>\n'
        '<trkpt lat="18.92" lon="-99.23"></trkpt>\n</trkseg></trk>'
    )
    with pytest.raises(FormatError) as info:
        parse_trace(_gpx(body))
    assert info.value.line == 5
    assert "line 5, trk[0].trkseg[0].trkpt[1].time: missing" in str(info.value)


def test_gpx_naive_time_needs_a_zone() -> None:
    body = (
        '<trk><trkseg><trkpt lat="18.92" lon="-99.23">'
        "<time>2024-05-28T08:00:00</time></trkpt></trkseg></trk>"
    )
    with pytest.raises(FormatError, match="has no UTC offset"):
        parse_trace(_gpx(body))
    assert parse_trace(_gpx(body), tz=MX)[0].t == T0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('<gpx version="1.1"><trk><trkseg><trkpt lat="18.9"', "not well-formed XML"),
        (
            '<gpx version="1.1"><trk><trkseg><trkpt lat="x" lon="1"/></trkseg></trk></gpx>',
            "not valid GPX",
        ),
        ("<html><body>hello</body></html>", "no track points"),
        ('<!DOCTYPE gpx [<!ENTITY a "aaaa">]><gpx version="1.1">&a;</gpx>', "DOCTYPE"),
    ],
)
def test_malformed_gpx_gives_a_clean_error(text: str, message: str) -> None:
    with pytest.raises(FormatError, match=message):
        parse_trace(text)


# -- GeoJSON traces ----------------------------------------------------------------------------


def _point(lon: float, lat: float, **props: object) -> dict[str, object]:
    return {
        "type": "Feature",
        "geometry": {"type": "Point", "coordinates": [lon, lat]},
        "properties": props,
    }


def test_geojson_points_with_time_or_timestamp() -> None:
    fc = {
        "type": "FeatureCollection",
        "features": [
            _point(-99.23, 18.92, time="2024-05-28T14:00:00Z", accuracy=6, battery=50),
            _point(-99.23, 18.919, timestamp=int(T0 + 5)),
        ],
    }
    assert parse_trace(json.dumps(fc)) == [
        Fix(T0, 18.92, -99.23, accuracy=6.0, battery=50.0),
        Fix(T0 + 5, 18.919, -99.23),
    ]


def test_geojson_linestring_with_coord_times_as_togeojson_writes() -> None:
    feature = {
        "type": "Feature",
        "properties": {"coordTimes": ["2024-05-28T14:00:00Z", "2024-05-28T14:00:05Z"]},
        "geometry": {
            "type": "LineString",
            "coordinates": [[-99.23, 18.92, 1500], [-99.23, 18.919, 1501]],
        },
    }
    multi = {
        "type": "Feature",
        "properties": {"coordTimes": [["2024-05-28T14:00:00Z"], ["2024-05-28T14:00:05Z"]]},
        "geometry": {
            "type": "MultiLineString",
            "coordinates": [[[-99.23, 18.92]], [[-99.23, 18.919]]],
        },
    }
    expected = [Fix(T0, 18.92, -99.23), Fix(T0 + 5, 18.919, -99.23)]
    assert parse_trace(json.dumps(feature)) == expected
    assert parse_trace(json.dumps({"type": "FeatureCollection", "features": [multi]})) == expected


@pytest.mark.parametrize(
    ("feature", "message"),
    [
        (_point(-99.23, 18.92), r"features\[0\]\.properties\.time: every fix needs a time"),
        (_point(-99.23, 18.92, time="08:00"), r"features\[0\]\.properties\.time: '08:00' is not"),
        (
            _point(-99.23, 18.92, time="2024-05-28T14:00:00Z", speed="fast"),
            r"features\[0\]\.properties\.speed: must be a number",
        ),
        (
            _point(-99.23, 18.92, time="2024-05-28T14:00:00Z", battery=150),
            r"features\[0\]\.properties\.battery: must be a percentage",
        ),
        (
            {
                "type": "Feature",
                "properties": {"coordTimes": ["2024-05-28T14:00:00Z"]},
                "geometry": {
                    "type": "LineString",
                    "coordinates": [[-99.23, 18.92], [-99.23, 18.91]],
                },
            },
            r"features\[0\]\.properties\.coordTimes: 1 times for 2 positions",
        ),
        (
            {
                "type": "Feature",
                "properties": {},
                "geometry": {"type": "Polygon", "coordinates": []},
            },
            r"features\[0\]\.geometry\.type: 'Polygon' is not a fix",
        ),
    ],
)
def test_bad_geojson_features_are_named_by_path(feature: dict[str, object], message: str) -> None:
    with pytest.raises(FormatError, match=message):
        parse_trace(json.dumps({"type": "FeatureCollection", "features": [feature]}))


@pytest.mark.parametrize(
    ("text", "expected"),
    [("time,lat,lon\n", "csv"), ("  <gpx/>", "gpx"), ('{"type": "FeatureCollection"}', "geojson")],
)
def test_trace_format_detection(text: str, expected: str) -> None:
    assert detect_trace_format(text) == expected


# -- writing and reading back -------------------------------------------------------------------

fix_strategy = st.builds(
    Fix,
    t=st.floats(T0, T0 + 86_400 * 30).map(lambda t: round(t, 3)),
    lat=st.floats(18.3, 19.2),
    lon=st.floats(-99.5, -98.6),
    accuracy=st.none() | st.floats(0, 500).map(lambda v: round(v, 3)),
    speed=st.none() | st.floats(0, 60).map(lambda v: round(v, 3)),
    heading=st.none() | st.floats(0, 359).map(lambda v: round(v, 3)),
    battery=st.none() | st.floats(0, 100).map(lambda v: round(v, 3)),
)


def _close(a: Fix, b: Fix, *, lossy: bool = False) -> None:
    assert a.t == pytest.approx(b.t, abs=1e-3)
    assert a.lat == pytest.approx(b.lat, abs=1e-7)
    assert a.lon == pytest.approx(b.lon, abs=1e-7)
    assert (a.speed, a.heading) == (b.speed, b.heading)
    if not lossy:
        assert (a.accuracy, a.battery) == (b.accuracy, b.battery)


@settings(max_examples=50, deadline=None)
@given(st.lists(fix_strategy, min_size=1, max_size=20))
def test_csv_and_geojson_writers_read_back(fixes: list[Fix]) -> None:
    for text in (trace_to_csv(fixes), trace_to_geojson(fixes)):
        back = parse_trace(text)
        assert len(back) == len(fixes)
        for a, b in zip(back, fixes, strict=True):
            _close(a, b)


@settings(max_examples=25, deadline=None)
@given(st.lists(fix_strategy, min_size=1, max_size=10))
def test_gpx_writer_reads_back_without_accuracy_and_battery(fixes: list[Fix]) -> None:
    back = parse_trace(trace_to_gpx(fixes))
    assert len(back) == len(fixes)
    for a, b in zip(back, fixes, strict=True):
        _close(a, b, lossy=True)
        assert a.accuracy is None
        assert a.battery is None
