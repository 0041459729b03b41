"""`sigueme replay` and `sigueme simulate` as a user runs them: what they print, and
how they refuse bad input (exit status 2, one clear line, never a traceback)."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from importlib import resources
from pathlib import Path

import polyline
import pytest
from typer.testing import CliRunner, Result

from sigueme.cli.main import app

SAMPLES = Path(str(resources.files("sigueme.replay").joinpath("samples")))
ROUTE = str(SAMPLES / "cuernavaca_route.geojson")
DETOUR = str(SAMPLES / "cuernavaca_detour.csv")
START = "2024-05-28T08:00:00-06:00"
SAMPLE_COMMAND = [
    "simulate", ROUTE, "--scenario", "detour", "--seed", "7", "--start", START,
]  # fmt: skip


def sigueme(*args: str, input: str | bytes | None = None) -> Result:
    return CliRunner().invoke(app, list(args), input=input)


def assert_user_error(result: Result, *needles: str) -> None:
    """Exit status 2, an ``Error:`` line naming the problem, and no traceback."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Error:" in result.stderr
    for needle in needles:
        assert needle in result.stderr


def table_row(output: str, event: str) -> list[str]:
    return next(ln.split() for ln in output.splitlines() if f" {event} " in f" {ln} ")


# -- help --------------------------------------------------------------------------------------


def test_help_lists_commands_with_descriptions() -> None:
    result = sigueme("--help")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    replay = next(ln for ln in lines if ln.strip().startswith("replay "))
    simulate = next(ln for ln in lines if ln.strip().startswith("simulate "))
    assert "Replay a recorded trace against a planned route." in replay
    assert "Simulate a phone's trace along a route." in simulate


def test_replay_help_states_the_default_schedule() -> None:
    result = sigueme("replay", "--help")
    assert result.exit_code == 0
    assert "at 30 km/h" in " ".join(result.stdout.split())


def test_installed_entry_point_runs() -> None:
    exe = Path(sys.executable).with_name("sigueme")
    done = subprocess.run(
        [str(exe), "replay", ROUTE, DETOUR, "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1])["final_status"] == "arrived"


# -- replay -------------------------------------------------------------------------------------


def test_replay_detour_sample_prints_off_and_back_on_route() -> None:
    result = sigueme("replay", ROUTE, DETOUR)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "-- 2024-05-28 Tue --" in out
    off = table_row(out, "off_route")
    back = table_row(out, "back_on_route")
    # time, status, event, metres off, km done, % done, km left, ETA, delay
    assert off[1:3] == ["off_route", "off_route"]
    assert "08:05:00" < off[0] < "08:08:00"  # leaves the route about 3.8 km in
    assert 150 < int(off[3]) < 700
    assert back[1:3] == ["on_route", "back_on_route"]
    assert int(back[3]) <= 120
    assert float(off[4]) < float(back[4])
    assert "Final status:   arrived" in out
    furthest = next(ln for ln in out.splitlines() if ln.startswith("Furthest off:"))
    assert 550 <= int(furthest.split()[2]) <= 700  # the detour runs 600 m away


def test_replay_json_lines_parse_with_iso_times() -> None:
    result = sigueme("replay", ROUTE, DETOUR, "--json")
    assert result.exit_code == 0, result.output
    objects = [json.loads(line) for line in result.stdout.splitlines()]
    assert objects[-1]["type"] == "summary"
    assert {o["type"] for o in objects[:-1]} == {"row"}
    events = [o["event"] for o in objects if o.get("event")]
    assert events == ["off_route", "back_on_route", "arrived"]
    for o in objects[:-1]:
        assert o["time"].endswith("Z")
        assert datetime.fromisoformat(o["time"]).utcoffset() is not None


def test_replay_all_shows_every_fix_and_tz_changes_the_clock() -> None:
    every = sigueme("replay", ROUTE, DETOUR, "--all", "--tz", "UTC")
    assert every.exit_code == 0, every.output
    fixes = len(Path(DETOUR).read_text().splitlines()) - 1
    rows = [ln for ln in every.stdout.splitlines() if ln[:2].isdigit() and ln[2] == ":"]
    assert len(rows) >= fixes
    off = table_row(every.stdout, "off_route")
    assert off[1] == "accepted"
    assert "14:05:00" < off[0] < "14:08:00"


def test_replay_reads_a_polyline_route_from_stdin() -> None:
    geo = json.loads(Path(ROUTE).read_text())
    coords = geo["features"][0]["geometry"]["coordinates"]
    encoded = polyline.encode([(lat, lon) for lon, lat in coords], 6)
    result = sigueme("replay", "-", DETOUR, "--polyline-precision", "6", input=encoded)
    assert result.exit_code == 0, result.output
    plain = sigueme("replay", ROUTE, DETOUR)
    assert table_row(result.stdout, "off_route") == table_row(plain.stdout, "off_route")


def test_replay_schedule_options() -> None:
    # Planned to leave an hour later: every fix comes before the departure.
    later = sigueme("replay", ROUTE, DETOUR, "--departure", "2024-05-28T09:00", "--duration", "30")
    assert later.exit_code == 0, later.output
    assert "planned 2024-05-28 09:00 → 09:30" in later.stdout
    # A tight schedule makes the detour late.
    tight = sigueme("replay", ROUTE, DETOUR, "--arrival", "2024-05-28T14:10:00Z")
    assert tight.exit_code == 0, tight.output
    assert table_row(tight.stdout, "late")


def test_replay_thresholds_change_what_is_seen() -> None:
    plain = sigueme("replay", ROUTE, DETOUR, "--json")
    strict = sigueme(
        "replay", ROUTE, DETOUR, "--json", "-t", "off_route_fixes=20,off_route_seconds=600"
    )
    assert plain.exit_code == strict.exit_code == 0
    assert '"off_route"' in plain.stdout
    assert '"event": "off_route"' not in strict.stdout


def test_naive_trace_time_is_refused_naming_the_line(tmp_path: Path) -> None:
    trace = tmp_path / "naive.csv"
    lines = Path(DETOUR).read_text().splitlines()
    lines[3] = lines[3].replace("2024-05-28T14:00:10Z", "2024-05-28 08:00:10")
    assert "08:00:10" in lines[3]
    trace.write_text("\n".join(lines) + "\n")
    result = sigueme("replay", ROUTE, str(trace))
    assert_user_error(
        result, "line 4, time:", "has no UTC offset", "--trace-tz America/Mexico_City"
    )
    ok = sigueme("replay", ROUTE, str(trace), "--trace-tz", "America/Mexico_City")
    assert ok.exit_code == 0, ok.output


@pytest.mark.parametrize(
    ("option", "needles"),
    [
        ("off_route_fixess=3", ["off_route_fixess", "is not a threshold", "off_route_fixes,"]),
        ("stop_seconds=5", ["stop_seconds", "between 30 and 86400"]),
        ("off_route_fixes=2.5", ["off_route_fixes", "whole number"]),
        ("stop_seconds=soon", ["stop_seconds", "'soon' is not a number"]),
        ("stop_seconds", ["name=value"]),
    ],
)
def test_bad_threshold_exits_2_naming_it(option: str, needles: list[str]) -> None:
    assert_user_error(sigueme("replay", ROUTE, DETOUR, "--threshold", option), *needles)


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--corridor", "5"], ["--corridor", "between 20 and 5000"]),
        (["--duration", "-5"], ["--arrival/--duration", "after the departure"]),
        (["--arrival", "2024-05-28T15:00:00Z", "--duration", "30"], ["not both"]),
        (["--departure", "tomorrow"], ["--departure", "'tomorrow' is not an ISO 8601 time"]),
        (["--tz", "Mars/Olympus_Mons"], ["--tz Mars/Olympus_Mons", "unknown time zone"]),
    ],
)
def test_bad_plan_options_exit_2(args: list[str], needles: list[str]) -> None:
    assert_user_error(sigueme("replay", ROUTE, DETOUR, *args), *needles)


@pytest.mark.parametrize(
    ("name", "content", "needles"),
    [
        ("route.geojson", '{"type": "LineString", "coordinates": [[1, 2]', ["not valid JSON"]),
        ("route.geojson", '{"type": "Point", "coordinates": [1, 2]}', ["LineString is expected"]),
        ("route.gpx", "<gpx><rte><rtept lat=", ["not well-formed XML"]),
        ("route.txt", "hello world", ["polyline"]),
        ("route.bin", b"\x00\xff\xfe garbage", ["not UTF-8"]),
    ],
)
def test_malformed_route_is_a_clean_error(
    tmp_path: Path, name: str, content: str | bytes, needles: list[str]
) -> None:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    assert_user_error(sigueme("replay", str(path), DETOUR), str(path), *needles)


@pytest.mark.parametrize(
    ("content", "needles"),
    [
        ("lat,lon\n18.9,-99.2\n", ["missing time"]),
        ("time,lat,lon\n2024-05-28T14:00:00Z,18.9\n", ["line 2", "expected 3 fields"]),
        ("<gpx><trk><trkseg><trkpt", ["not well-formed XML"]),
        ('{"type": "FeatureCollection", "features": [', ["not valid JSON"]),
        ("time,lat,lon\n", ["no fixes"]),
    ],
)
def test_malformed_trace_is_a_clean_error(tmp_path: Path, content: str, needles: list[str]) -> None:
    path = tmp_path / "trace"
    path.write_text(content)
    assert_user_error(sigueme("replay", ROUTE, str(path)), *needles)


def test_unreadable_inputs(tmp_path: Path) -> None:
    assert_user_error(sigueme("replay", str(tmp_path / "nope.geojson"), DETOUR), "no such file")
    assert_user_error(sigueme("replay", ROUTE, str(tmp_path)), "is a directory")
    assert_user_error(sigueme("replay", "-", "-", input="x"), "only one of ROUTE and TRACE")


# -- simulate -----------------------------------------------------------------------------------


def test_shipped_sample_is_what_the_documented_command_makes() -> None:
    result = sigueme(*SAMPLE_COMMAND)
    assert result.exit_code == 0, result.output
    assert result.stdout == Path(DETOUR).read_text(), (
        "the sample trace no longer matches `sigueme simulate`; regenerate it with: sigueme "
        + " ".join(
            [
                "simulate",
                "sigueme/replay/samples/cuernavaca_route.geojson",
                *SAMPLE_COMMAND[2:],
                "-o",
                "sigueme/replay/samples/cuernavaca_detour.csv",
            ]
        )
    )


def test_simulate_is_reproducible_and_writes_the_columns_replay_reads(tmp_path: Path) -> None:
    out = tmp_path / "trace.csv"
    result = sigueme("simulate", ROUTE, "--seed", "3", "--start", START, "-o", str(out))
    assert result.exit_code == 0, result.output
    assert f"to {out}" in result.stderr
    text = out.read_text()
    assert text.splitlines()[0] == "time,lat,lon,accuracy,speed,heading,battery"
    assert text.splitlines()[1].startswith("2024-05-28T14:00:00Z,")
    again = sigueme("simulate", ROUTE, "--seed", "3", "--start", START)
    assert again.stdout == text
    other = sigueme("simulate", ROUTE, "--seed", "4", "--start", START)
    assert other.stdout != text


@pytest.mark.parametrize(
    ("scenario", "expected", "absent"),
    [
        ("normal", "arrived", "off_route"),
        ("detour", "off_route", "late"),
        ("stop", "stopped", "off_route"),
        ("backtrack", "backtracking", "off_route"),
        ("late", "late", "off_route"),
    ],
)
@pytest.mark.parametrize("fmt", ["csv", "gpx", "geojson"])
def test_simulated_scenarios_replay_as_described(
    scenario: str, expected: str, absent: str, fmt: str
) -> None:
    made = sigueme(
        "simulate", ROUTE, "--scenario", scenario, "--seed", "1", "--start", START, "--format", fmt
    )
    assert made.exit_code == 0, made.output
    result = sigueme("replay", ROUTE, "-", "--json", input=made.stdout)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.splitlines()[-1])
    assert summary["events"].get(expected, 0) >= 1, summary
    assert absent not in summary["events"], summary


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--start", "1999-01-01T00:00:00Z"], ["--start", "between 2000 and 2100"]),
        (["--start", "noon"], ["--start", "'noon' is not an ISO 8601 time"]),
        (["-o", "/nonexistent/dir/trace.csv"], ["cannot write /nonexistent/dir/trace.csv"]),
    ],
)
def test_simulate_bad_options_exit_2(args: list[str], needles: list[str]) -> None:
    assert_user_error(sigueme("simulate", ROUTE, *args), *needles)


def test_simulate_bad_choice_is_a_usage_error() -> None:
    result = sigueme("simulate", ROUTE, "--scenario", "teleport")
    assert result.exit_code == 2
    assert "teleport" in result.output
    assert "Traceback" not in result.output
