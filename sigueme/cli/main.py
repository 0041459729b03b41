"""The ``sigueme`` command.

Each command is a plain function registered on :data:`app`; a family of related
commands (``users add``, ``users list``) can join as a sub-app with
``app.add_typer(users_app, name="users")``. The first line of a command's docstring
is its description in ``sigueme --help``.

User errors (unreadable files, bad formats, out-of-range options) print one
``Error:`` line on stderr and exit with status 2, like a usage error; a traceback
means a bug.
"""

from __future__ import annotations

import enum
import os
import sys
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from pathlib import Path
from typing import Annotated, NoReturn
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import typer

from sigueme import __version__
from sigueme.geo import Fix, GeoError, Route, Thresholds, TripPlan
from sigueme.replay import (
    FormatError,
    ReplayError,
    jsonl_lines,
    parse_route,
    parse_time,
    parse_trace,
    run,
    table_lines,
    trace_to_csv,
    trace_to_geojson,
    trace_to_gpx,
)
from sigueme.replay.formats import MAX_INPUT_BYTES
from sigueme.simulate import Drive, Move, Noise, Offset, Stop, simulate

USAGE_ERROR = 2
DEFAULT_TZ = "America/Mexico_City"
DEFAULT_SPEED_KMH = 30.0
"""The schedule ``replay`` assumes when no arrival is given."""

app = typer.Typer(
    name="sigueme",
    help="Sígueme: real-time route monitoring for people at risk in Morelos.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    # Locals can hold a traveller's positions: never print them in a traceback.
    pretty_exceptions_show_locals=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"sigueme {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    """Sígueme: real-time route monitoring for people at risk in Morelos."""


# -- shared helpers --------------------------------------------------------------------------


def fail(message: str) -> NoReturn:
    """Print a user error on stderr and exit with status 2."""
    typer.echo(f"Error: {message}", err=True)
    raise typer.Exit(USAGE_ERROR)


class RouteFormatChoice(enum.StrEnum):
    auto = "auto"
    geojson = "geojson"
    gpx = "gpx"
    polyline = "polyline"


PolylinePrecision = Annotated[
    int,
    typer.Option(
        min=5, max=6, metavar="5|6", help="Precision of an encoded polyline route (5 or 6)."
    ),
]
RouteFormatOption = Annotated[
    RouteFormatChoice,
    typer.Option(help="Route format (auto: detected from the content)."),
]


class TraceFormatChoice(enum.StrEnum):
    auto = "auto"
    csv = "csv"
    gpx = "gpx"
    geojson = "geojson"


def read_input(path: str, what: str) -> bytes:
    """The bytes of ``path`` (``-``: standard input), or a clean error."""
    if path == "-":
        data = sys.stdin.buffer.read(MAX_INPUT_BYTES + 1)
    else:
        p = Path(path)
        try:
            if p.stat().st_size > MAX_INPUT_BYTES:
                fail(f"{what} file {path}: larger than {MAX_INPUT_BYTES // 2**20} MiB")
            data = p.read_bytes()
        except FileNotFoundError:
            fail(f"{what} file {path}: no such file")
        except IsADirectoryError:
            fail(f"{what} file {path}: is a directory")
        except OSError as exc:
            fail(f"{what} file {path}: cannot be read ({exc.strerror or exc})")
    if len(data) > MAX_INPUT_BYTES:
        fail(f"{what} from standard input: larger than {MAX_INPUT_BYTES // 2**20} MiB")
    return data


def zone(name: str) -> tzinfo:
    """An IANA time zone by name, or a clean error."""
    if name.upper() == "UTC":
        return UTC
    try:
        return ZoneInfo(name)
    except ZoneInfoNotFoundError:
        if name == DEFAULT_TZ:
            # Without tz data (a bare container) Morelos's zone is still known: UTC−6
            # all year since Mexico dropped daylight saving time in October 2022.
            typer.echo(
                "Warning: no time zone data installed; showing UTC−06:00 "
                "(install the tzdata package for older dates)",
                err=True,
            )
            return timezone(timedelta(hours=-6), "CST")
        fail(f"--tz {name}: unknown time zone (use an IANA name such as {DEFAULT_TZ}, or UTC)")
    except ValueError:
        fail(f"--tz {name!r}: not a time zone name (use one such as {DEFAULT_TZ}, or UTC)")


def option_time(value: str, option: str, tz: tzinfo) -> float:
    """Epoch seconds of an ISO 8601 option value; without an offset it is read in ``tz``."""
    try:
        return parse_time(value, tz)
    except ValueError as exc:
        fail(f"{option}: {exc}")


def load_route(path: str, fmt: RouteFormatChoice, precision: int) -> Route:
    data = read_input(path, "route")
    try:
        return parse_route(data, fmt=fmt.value, precision=precision)
    except FormatError as exc:
        fail(f"{path}: {exc}")


def write_lines(lines: Iterable[str]) -> None:
    """Write lines to stdout, stopping quietly if the reader goes away (``| head``)."""
    out = sys.stdout
    try:
        for line in lines:
            out.write(line)
            out.write("\n")
        out.flush()
    except BrokenPipeError:
        # Point stdout at /dev/null so the interpreter's final flush does not complain.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        raise typer.Exit(1) from None


# -- replay -------------------------------------------------------------------------------------


_PLAN_OPTIONS = {
    "corridor_m": "--corridor",
    "destination_radius_m": "--destination-radius",
    "departure": "--departure",
    "arrival": "--arrival/--duration",
}


def parse_thresholds(items: list[str]) -> Thresholds:
    """``Thresholds`` from ``name=value`` items (also comma-separated), or a clean error."""
    overrides: dict[str, float] = {}
    for item in items:
        for part in item.split(","):
            if not part.strip():
                continue
            name, sep, value = part.partition("=")
            name = name.strip()
            if not sep or not name:
                fail(f"--threshold {part!r}: write it as name=value, e.g. off_route_fixes=3")
            try:
                overrides[name] = float(value)
            except ValueError:
                fail(f"--threshold {name}: {value.strip()!r} is not a number")
    try:
        return Thresholds(**overrides)
    except GeoError as exc:
        known = ", ".join(name for name, _, _ in Thresholds.describe())
        hint = f" (thresholds: {known})" if exc.reason == "is not a threshold" else ""
        fail(f"--threshold {exc.field}: {exc.reason}{hint}")


@app.command("replay", short_help="Replay a recorded trace against a planned route.")
def replay_command(
    route: Annotated[
        str,
        typer.Argument(
            metavar="ROUTE", help="Planned route: GeoJSON, GPX or encoded polyline file, or -."
        ),
    ],
    trace: Annotated[
        str,
        typer.Argument(
            metavar="TRACE", help="Recorded fixes: CSV, GPX or GeoJSON file, or - for stdin."
        ),
    ],
    departure: Annotated[
        str | None,
        typer.Option(
            metavar="ISO",
            help="Planned departure, ISO 8601 (without an offset: in --tz). "
            "Default: the earliest fix's time.",
        ),
    ] = None,
    arrival: Annotated[
        str | None,
        typer.Option(
            metavar="ISO",
            help="Planned arrival, ISO 8601. Default: departure + the route's length "
            f"at {DEFAULT_SPEED_KMH:g} km/h.",
        ),
    ] = None,
    duration: Annotated[
        float | None,
        typer.Option(
            metavar="MIN", help="Planned trip duration in minutes (instead of --arrival)."
        ),
    ] = None,
    corridor: Annotated[
        float,
        typer.Option(metavar="M", help="Corridor half-width in metres: farther is off the route."),
    ] = 150.0,
    destination_radius: Annotated[
        float, typer.Option(metavar="M", help="Radius of the destination zone in metres.")
    ] = 100.0,
    threshold: Annotated[
        list[str] | None,
        typer.Option(
            "--threshold",
            "-t",
            metavar="NAME=VALUE",
            help="Override a monitoring threshold, name=value (repeatable), "
            "e.g. -t off_route_fixes=3 -t stop_seconds=120.",
        ),
    ] = None,
    json_lines: Annotated[
        bool,
        typer.Option("--json", help="JSON lines (UTC times) instead of a table; summary last."),
    ] = False,
    every_fix: Annotated[
        bool,
        typer.Option("--all", help="Show every fix, not only events and status changes."),
    ] = False,
    tz: Annotated[
        str,
        typer.Option(
            "--tz", metavar="ZONE", help="Time zone for the table and for times without offset."
        ),
    ] = DEFAULT_TZ,
    trace_tz: Annotated[
        str | None,
        typer.Option(
            metavar="ZONE",
            help="Time zone of trace times written without an offset (refused otherwise).",
        ),
    ] = None,
    polyline_precision: PolylinePrecision = 5,
    route_format: RouteFormatOption = RouteFormatChoice.auto,
    trace_format: Annotated[
        TraceFormatChoice, typer.Option(help="Trace format (auto: detected from the content).")
    ] = TraceFormatChoice.auto,
) -> None:
    """Replay recorded fixes against a planned route and print what the monitor saw.

    Prints a timeline of every event (off_route, back_on_route, stopped, late,
    arrived, ...) and every status change, then a summary.
    """
    if route == "-" and trace == "-":
        fail("only one of ROUTE and TRACE can be read from standard input (-)")
    if arrival is not None and duration is not None:
        fail("give --arrival or --duration, not both")
    display_tz = zone(tz)
    naive_tz = zone(trace_tz) if trace_tz is not None else None
    thresholds = parse_thresholds(threshold or [])
    planned_route = load_route(route, route_format, polyline_precision)
    trace_data = read_input(trace, "trace")
    try:
        fixes = parse_trace(trace_data, fmt=trace_format.value, tz=naive_tz)
    except FormatError as exc:
        hint = ""
        if exc.field and exc.field.endswith("time") and "no UTC offset" in str(exc):
            hint = f"\n(if the file is in local time, pass --trace-tz {DEFAULT_TZ})"
        fail(f"{trace}: {exc}{hint}")
    start = (
        option_time(departure, "--departure", display_tz)
        if departure is not None
        else min(f.t for f in fixes)
    )
    if arrival is not None:
        end = option_time(arrival, "--arrival", display_tz)
    elif duration is not None:
        end = start + duration * 60.0
    else:
        end = start + planned_route.length_m / (DEFAULT_SPEED_KMH / 3.6)
    try:
        plan = TripPlan(
            route=planned_route,
            departure=start,
            arrival=end,
            corridor_m=corridor,
            destination_radius_m=destination_radius,
            thresholds=thresholds,
        )
    except GeoError as exc:
        fail(f"{_PLAN_OPTIONS.get(exc.field, exc.field)}: {exc.reason}")
    try:
        timeline = run(plan, fixes, every_fix=every_fix)
    except ReplayError as exc:
        fail(f"{trace}: {exc}")
    write_lines(jsonl_lines(timeline) if json_lines else table_lines(timeline, display_tz))


# -- simulate -------------------------------------------------------------------------------------


class Scenario(enum.StrEnum):
    normal = "normal"
    detour = "detour"
    stop = "stop"
    backtrack = "backtrack"
    late = "late"


class OutputFormat(enum.StrEnum):
    csv = "csv"
    gpx = "gpx"
    geojson = "geojson"


DETOUR_OFFSET_M = 600.0
STOP_SECONDS = 900.0
LATE_SPEED_MPS = 4.0


def scenario_moves(scenario: Scenario, length_m: float) -> list[Move]:
    """The scripted journey of a scenario on a route ``length_m`` long (default
    driving speed 12 m/s, about 43 km/h)."""
    if scenario is Scenario.detour:
        # Leave at 30 %, run parallel 600 m away (four corridors) to 55 %, come back.
        return [
            Drive(0.30 * length_m),
            Offset(DETOUR_OFFSET_M),
            Drive(0.55 * length_m),
            Offset(0.0),
            Drive(length_m),
        ]
    if scenario is Scenario.stop:
        return [Drive(0.40 * length_m), Stop(STOP_SECONDS), Drive(length_m)]
    if scenario is Scenario.backtrack:
        turn = 0.60 * length_m
        return [Drive(turn), Drive(max(turn - max(0.15 * length_m, 500.0), 0.0)), Drive(length_m)]
    if scenario is Scenario.late:
        return [Drive(length_m, speed_mps=LATE_SPEED_MPS)]
    return [Drive(length_m)]


def simulate_command(
    route: Annotated[
        str,
        typer.Argument(
            metavar="ROUTE", help="Planned route: GeoJSON, GPX or encoded polyline file, or -."
        ),
    ],
    scenario: Annotated[
        Scenario,
        typer.Option(
            help="normal: drive the route at 43 km/h; detour: run 600 m off it from 30 % "
            "to 55 %; stop: stand still 15 min at 40 %; backtrack: turn back at 60 %; "
            "late: crawl at 14 km/h."
        ),
    ] = Scenario.normal,
    seed: Annotated[
        int, typer.Option(metavar="N", help="Random seed: the same seed gives the same trace.")
    ] = 0,
    interval: Annotated[
        float, typer.Option(min=0.5, max=3600, metavar="S", help="Seconds between fixes.")
    ] = 5.0,
    noise: Annotated[
        float,
        typer.Option(
            min=0, max=1000, metavar="M", help="GPS noise in metres (standard deviation)."
        ),
    ] = 8.0,
    start: Annotated[
        str | None,
        typer.Option(
            metavar="ISO",
            help="Time of the first fix, ISO 8601 (without an offset: in --tz). Default: now.",
        ),
    ] = None,
    tz: Annotated[
        str, typer.Option("--tz", metavar="ZONE", help="Time zone for a --start without an offset.")
    ] = DEFAULT_TZ,
    output_format: Annotated[
        OutputFormat, typer.Option("--format", help="Output format.")
    ] = OutputFormat.csv,
    output: Annotated[
        str,
        typer.Option(
            "--output", "-o", metavar="FILE", help="Output file (default: standard output)."
        ),
    ] = "-",
    polyline_precision: PolylinePrecision = 5,
    route_format: RouteFormatOption = RouteFormatChoice.auto,
) -> None:
    """Simulate a phone's fixes along a route, as a trace that replay reads.

    GPS noise and occasional multipath outliers are included; the CSV has the
    columns time, lat, lon, accuracy, speed, heading, battery.
    """
    planned_route = load_route(route, route_format, polyline_precision)
    t0 = (
        option_time(start, "--start", zone(tz))
        if start is not None
        else float(int(datetime.now(UTC).timestamp()))
    )
    try:
        fixes: list[Fix] = simulate(
            planned_route,
            scenario_moves(scenario, planned_route.length_m),
            start_t=t0,
            interval_s=interval,
            noise=Noise(noise_m=noise),
            seed=seed,
        )
    except GeoError as exc:
        # A --start outside 2000-2100 makes fixes the geo core refuses.
        fail(f"--start: {exc.reason}" if exc.field == "t" else str(exc))
    writers = {
        OutputFormat.csv: trace_to_csv,
        OutputFormat.gpx: trace_to_gpx,
        OutputFormat.geojson: trace_to_geojson,
    }
    text = writers[output_format](fixes)
    if output == "-":
        write_lines([text.rstrip("\n")])
        return
    try:
        Path(output).write_text(text, encoding="utf-8")
    except OSError as exc:
        fail(f"cannot write {output}: {exc.strerror or exc}")
    typer.echo(f"Wrote {len(fixes)} fixes ({scenario.value}, seed {seed}) to {output}", err=True)


bench_app = typer.Typer(
    help="Benchmarks: print fixes per second, with the machine they ran on.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(bench_app, name="bench", short_help="Benchmarks that print numbers.")


@bench_app.command("geo", short_help="Fixes/s through the geo core, beside PostGIS per fix.")
def bench_geo_command(
    trips: Annotated[int, typer.Option(min=1, max=100_000, help="Routes (trips).")] = 1_000,
    vertices: Annotated[int, typer.Option(min=2, max=20_000, help="Vertices per route.")] = 200,
    length_km: Annotated[
        float, typer.Option(min=0.1, max=500.0, help="About this long, each route.")
    ] = 15.0,
    fixes_per_trip: Annotated[int, typer.Option(min=1, max=10_000, help="Fixes per trip.")] = 60,
    batch: Annotated[
        int, typer.Option(min=1, max=1_000_000, help="Fixes per batch (batched path).")
    ] = 1_000,
    postgres_dsn: Annotated[
        str | None,
        typer.Option(
            envvar="SIGUEME_BENCH_POSTGRES_DSN",
            help="PostgreSQL+PostGIS for the one-query-per-fix comparison "
            "(scripts/bench.sh starts a throw-away one).",
        ),
    ] = None,
    postgis_fixes: Annotated[
        int, typer.Option(min=100, max=1_000_000, help="Fixes sent to PostGIS (it is slow).")
    ] = 5_000,
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
) -> None:
    """Fixes per second on one core: per-fix and batched paths, Shapely and PostGIS.

    Builds TRIPS routes in Morelos of VERTICES vertices and about LENGTH_KM, simulates
    each phone's noisy fixes, and feeds them in time order to every path.
    """
    from sigueme.bench.geo import render, run_geo_bench, to_json

    typer.echo(f"building {trips} routes and {trips * fixes_per_trip} fixes ...", err=True)
    try:
        report = run_geo_bench(
            trips=trips,
            vertices=vertices,
            length_km=length_km,
            fixes_per_trip=fixes_per_trip,
            batch=batch,
            postgres_dsn=postgres_dsn,
            postgis_fixes=postgis_fixes,
        )
    except (OSError, ConnectionError) as exc:
        fail(f"cannot reach PostgreSQL at --postgres-dsn: {exc}")
    typer.echo(to_json(report) if as_json else render(report))


from sigueme.cli import service  # noqa: E402  (registers on the app defined above)

service.register(app)

from sigueme.cli import maintenance  # noqa: E402

maintenance.register(app, bench_app)

from sigueme.cli import live  # noqa: E402

live.register(app, bench_app, simulate_trace=simulate_command)
