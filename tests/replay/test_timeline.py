"""Replaying traces: which rows a user sees, what they say, and how they are shown."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from importlib import resources
from zoneinfo import ZoneInfo

import pytest

from sigueme.geo import EventKind, Fix, Route, Status, TripPlan, Verdict
from sigueme.replay import (
    ReplayError,
    Timeline,
    format_duration,
    jsonl_lines,
    parse_route,
    parse_trace,
    replay,
    run,
    table_lines,
    trace_to_csv,
    trace_to_gpx,
)
from sigueme.simulate import Drive, Noise, simulate

MX = ZoneInfo("America/Mexico_City")


def sample(name: str) -> str:
    return resources.files("sigueme.replay").joinpath("samples", name).read_text("utf-8")


@pytest.fixture(scope="module")
def route() -> Route:
    return parse_route(sample("cuernavaca_route.geojson"))


@pytest.fixture(scope="module")
def detour_fixes() -> list[Fix]:
    return parse_trace(sample("cuernavaca_detour.csv"))


def clock(t: float, utc_offset_hours: int) -> str:
    return (datetime.fromtimestamp(t, UTC) + timedelta(hours=utc_offset_hours)).strftime("%H:%M:%S")


def plan_for(route: Route, fixes: list[Fix], corridor_m: float = 150.0) -> TripPlan:
    start = min(f.t for f in fixes)
    return TripPlan(route, start, start + route.length_m / (30 / 3.6), corridor_m=corridor_m)


@pytest.fixture(scope="module")
def detour(route: Route, detour_fixes: list[Fix]) -> Timeline:
    return run(plan_for(route, detour_fixes), detour_fixes)


def test_detour_sample_goes_off_route_and_comes_back(
    detour: Timeline, detour_fixes: list[Fix]
) -> None:
    kinds = [r.event for r in detour.rows if r.event]
    assert kinds == [EventKind.OFF_ROUTE, EventKind.BACK_ON_ROUTE, EventKind.ARRIVED]
    off = next(r for r in detour.rows if r.event is EventKind.OFF_ROUTE)
    back = next(r for r in detour.rows if r.event is EventKind.BACK_ON_ROUTE)
    # The detour runs 600 m from the route from 30 % to 55 % of it.
    assert 150 < off.distance_m < 700
    assert off.status is Status.OFF_ROUTE
    assert back.distance_m <= 0.8 * 150
    assert back.status is Status.ON_ROUTE
    assert 25 < off.progress_pct < 35
    assert 50 < back.progress_pct < 60
    s = detour.summary
    assert s.final_status is Status.ARRIVED
    assert s.max_distance_m is not None
    assert 550 < s.max_distance_m < 700
    assert s.off_route_s == pytest.approx(back.t - off.t)
    assert s.fixes == len(detour_fixes)
    assert s.by_verdict["accepted"] + s.by_verdict["jump"] == len(detour_fixes)
    assert s.events == {"off_route": 1, "back_on_route": 1, "arrived": 1}


def test_rows_are_events_and_status_changes_only(detour: Timeline) -> None:
    previous = Status.PENDING
    for row in detour.rows:
        assert row.event is not None or row.status is not previous
        previous = row.status
    assert len(detour.rows) < detour.summary.fixes / 10


def test_every_fix_mode_has_a_row_per_fix(route: Route, detour_fixes: list[Fix]) -> None:
    rows = replay(plan_for(route, detour_fixes), detour_fixes, every_fix=True)
    # One row per fix (the sample's times are all distinct), plus one per extra event
    # when a fix raised several; rows come in the trace's order.
    assert len({r.t for r in rows}) == len(detour_fixes)
    assert [r.t for r in rows] == sorted(r.t for r in rows)
    assert [r.event for r in rows if r.event] == [
        EventKind.OFF_ROUTE,
        EventKind.BACK_ON_ROUTE,
        EventKind.ARRIVED,
    ]


def test_late_and_repeated_fixes_keep_their_place_and_raise_nothing(
    route: Route, detour_fixes: list[Fix]
) -> None:
    fixes = list(detour_fixes[:40])
    fixes.insert(20, dataclasses.replace(fixes[5]))  # a resend, late
    fixes.insert(31, fixes[30])  # a duplicate
    timeline = run(plan_for(route, fixes), fixes, every_fix=True)
    verdicts = [r.verdict for r in timeline.rows]
    assert verdicts[20] is Verdict.OUT_OF_ORDER
    assert verdicts[31] is Verdict.DUPLICATE
    assert timeline.summary.by_verdict["out_of_order"] == 1
    assert timeline.summary.by_verdict["duplicate"] == 1
    assert timeline.summary.by_verdict["accepted"] == 40


def test_gpx_and_csv_of_the_same_fixes_give_the_same_timeline(
    route: Route, detour_fixes: list[Fix]
) -> None:
    # GPX has no accuracy or battery; compare fixes without them.
    fixes = [dataclasses.replace(f, accuracy=None, battery=None) for f in detour_fixes]
    from_csv = parse_trace(trace_to_csv(fixes))
    from_gpx = parse_trace(trace_to_gpx(fixes))
    plan = plan_for(route, fixes)
    a, b = run(plan, from_csv), run(plan, from_gpx)
    assert a.rows == b.rows
    assert a.summary == b.summary
    assert any(r.event is EventKind.OFF_ROUTE for r in a.rows)


def test_table_shows_local_times_and_the_summary(detour: Timeline) -> None:
    lines = list(table_lines(detour, MX))
    text = "\n".join(lines)
    assert lines[0].startswith("Route 12.72 km, corridor 150 m; planned 2024-05-28 08:00")
    assert "America/Mexico_City, UTC−06:00" in lines[0]
    assert "-- 2024-05-28 Tue --" in lines
    off_row = next(r for r in detour.rows if r.event is EventKind.OFF_ROUTE)
    off = next(ln for ln in lines if "off_route   off_route" in ln)
    # Cuernavaca is UTC−6; the detour starts about six minutes after 08:00.
    assert off.startswith(clock(off_row.t, -6))
    assert "08:05:00" < clock(off_row.t, -6) < "08:08:00"
    back = next(ln for ln in lines if "back_on_route" in ln)
    assert back.split()[1:3] == ["on_route", "back_on_route"]
    assert "Final status:   arrived" in text
    assert "Events:         off_route 1, back_on_route 1, arrived 1" in text
    minutes, seconds = divmod(round(detour.summary.off_route_s), 60)
    assert 3 <= minutes <= 10
    assert f"Time off route: {minutes}m{seconds:02d}s" in text
    utc_lines = list(table_lines(detour, UTC))
    utc_off = next(ln for ln in utc_lines if "off_route   off_route" in ln)
    assert utc_off.startswith(clock(off_row.t, 0))


def test_table_marks_each_new_date(route: Route) -> None:
    # 23:55 in Cuernavaca: the trip crosses midnight.
    start = datetime(2024, 5, 28, 23, 55, tzinfo=MX).timestamp()
    fixes = simulate(route, [Drive(route.length_m)], start_t=start, noise=Noise(outlier_rate=0))
    timeline = run(plan_for(route, fixes), fixes, every_fix=True)
    dates = [ln for ln in table_lines(timeline, MX) if ln.startswith("-- ")]
    assert dates == ["-- 2024-05-28 Tue --", "-- 2024-05-29 Wed --"]
    lines = list(table_lines(timeline, MX))
    header = next(ln for ln in lines if ln.startswith("time"))
    assert header.split()[:3] == ["time", "fix", "status"]
    first = next(ln for ln in lines if ln.startswith("23:55:00"))
    # Columns line up under their headings.
    assert first.index("accepted") == header.index("fix")
    assert first.index("on_route") == header.index("status")
    assert first.index("12.72") + len("12.72") == header.index("left (km)") + len("left (km)")


def test_json_lines_parse_and_carry_iso_utc_times(detour: Timeline) -> None:
    objects = [json.loads(line) for line in jsonl_lines(detour)]
    rows, summary = objects[:-1], objects[-1]
    assert [o["type"] for o in rows] == ["row"] * len(detour.rows)
    assert summary["type"] == "summary"
    off = next(o for o in rows if o["event"] == "off_route")
    off_row = next(r for r in detour.rows if r.event is EventKind.OFF_ROUTE)
    assert off["time"] == f"2024-05-28T{clock(off_row.t, 0)}Z"
    assert datetime.fromisoformat(off["predicted_arrival"]).tzinfo is not None
    assert off["status"] == "off_route"
    assert off["distance_m"] > 150
    assert summary["final_status"] == "arrived"
    assert summary["by_verdict"]["accepted"] == summary["fixes"]
    assert summary["departure"] == "2024-05-28T14:00:00Z"
    assert summary["off_route_s"] == round(detour.summary.off_route_s, 1) > 0


def test_fix_on_the_far_side_of_the_earth_is_counted_as_far(route: Route) -> None:
    t0 = datetime(2024, 5, 28, 14, tzinfo=UTC).timestamp()
    fixes = [Fix(t0, 18.9655, -99.2185), Fix(t0 + 5, 18.9655, 99.2185)]  # sign lost
    result = run(plan_for(route, fixes), fixes, every_fix=True)
    assert [r.verdict for r in result.rows] == [Verdict.ACCEPTED, Verdict.FAR]
    # Its distance is still told, in kilometres of the real Earth (half way round).
    assert result.rows[-1].distance_m > 15_000_000
    assert result.summary.by_verdict["far"] == 1
    assert result.summary.final_status is Status.ON_ROUTE


def test_no_fixes_is_an_error(route: Route) -> None:
    t0 = datetime(2024, 5, 28, 14, tzinfo=UTC).timestamp()
    with pytest.raises(ReplayError, match="no fixes"):
        run(TripPlan(route, t0, t0 + 3600), [])


@pytest.mark.parametrize(
    ("seconds", "signed", "text"),
    [
        (0.3, True, "+0s"),
        (-0.3, True, "+0s"),
        (-65, True, "-1m05s"),
        (3725, False, "1h02m"),
        (12, False, "12s"),
    ],
)
def test_format_duration(seconds: float, signed: bool, text: str) -> None:
    assert format_duration(seconds, signed=signed) == text
