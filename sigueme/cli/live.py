"""The commands that drive a running service over its websockets: ``sigueme bench
live`` (fixes/s one worker acknowledges, and the acknowledgement latency: see
:mod:`sigueme.bench.live`), ``sigueme bench alerts`` (how soon alerts reach the police
and the dispatchers: :mod:`sigueme.bench.alerts`) and ``sigueme simulate phones``
(many simulated phones on a server: :mod:`sigueme.simulate_live`)."""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Callable, Mapping
from typing import Annotated, Any, NoReturn

import typer
from typer.core import TyperGroup

USAGE_ERROR = 2
INTERRUPTED = 130


def _fail(message: str) -> NoReturn:
    typer.echo(f"Error: {message}", err=True)
    raise typer.Exit(USAGE_ERROR)


def _progress(message: str) -> None:
    typer.echo(message, err=True)


def _required(value: str | None, option: str, envvar: str, why: str = "") -> str:
    if not value:
        _fail(f"{option} (or {envvar}) is required{why}")
    return value


def _report(
    run: Callable[[], Mapping[str, Any]], show: Callable[[Mapping[str, Any]], str], servers: str
) -> None:
    """Run a benchmark and print its report; its failures as user errors."""
    from sigueme.bench.live import BenchError

    try:
        report = run()
    except (ValueError, BenchError) as exc:
        _fail(str(exc))
    except (OSError, ConnectionError) as exc:
        _fail(f"cannot reach {servers}: {exc}")
    typer.echo(show(report))


PostgresDsn = Annotated[
    str | None,
    typer.Option(
        envvar="SIGUEME_BENCH_POSTGRES_DSN",
        help="PostgreSQL+PostGIS server: a throw-away database is created on it and dropped "
        "after (scripts/bench.sh starts a throw-away server).",
    ),
]
RedisUrl = Annotated[
    str | None,
    typer.Option(
        envvar="SIGUEME_BENCH_REDIS_URL",
        help="Redis for the worker (SIGUEME_REDIS_URL): its live bus and police queue.",
    ),
]


def bench_live_command(
    postgres_dsn: PostgresDsn = None,
    redis_url: RedisUrl = None,
    phones: Annotated[
        int,
        typer.Option(
            min=1,
            max=10_000,
            help="Simulated phones, each on its own trip and websocket (the service takes "
            "at most 10 frames/s from one phone).",
        ),
    ] = 1_250,
    rates: Annotated[
        str,
        typer.Option(metavar="LIST", help="Target total rates in fixes/s, comma-separated."),
    ] = "1000,2500,5000,10000",
    seconds: Annotated[
        float, typer.Option(min=0.5, max=3_600, help="Seconds of load per rate.")
    ] = 10.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
) -> None:
    """Fixes/s one `sigueme serve` worker acknowledges, and ack latency, per rate.

    Starts one worker on a throw-away PostGIS database (and Redis when given), enrols
    PHONES travellers and files their trips through the API, then sends fixes over
    their phones' websockets (one fix per frame) at each rate for SECONDS, and prints
    the fixes acknowledged per second, the latency from send to ack (p50, p99) and the
    errors, with the CPU used by the worker, the driver and the machine.
    """
    from sigueme.bench.live import (
        check_phones,
        parse_rates,
        render,
        run_live_bench,
        to_json,
    )

    dsn = _required(postgres_dsn, "--postgres-dsn", "SIGUEME_BENCH_POSTGRES_DSN")
    try:
        targets = parse_rates(rates)
        check_phones(phones, targets, seconds)
    except ValueError as exc:
        _fail(f"--rates: {exc}")
    _report(
        functools.partial(
            run_live_bench,
            postgres_dsn=dsn,
            redis_url=redis_url,
            phones=phones,
            rates=targets,
            seconds=seconds,
            progress=_progress,
        ),
        render if not as_json else to_json,
        "PostgreSQL at --postgres-dsn",
    )


def bench_alerts_command(
    postgres_dsn: PostgresDsn = None,
    redis_url: RedisUrl = None,
    phones: Annotated[
        int, typer.Option(min=1, max=10_000, help="Background phones, each on its own trip.")
    ] = 250,
    rate: Annotated[
        float,
        typer.Option(
            min=1, max=100_000, help="Background fixes/s in all (one worker sustains ~300)."
        ),
    ] = 200.0,
    probes: Annotated[
        int, typer.Option(min=1, max=1_000, help="Phones that leave their route, measured.")
    ] = 30,
    silent: Annotated[
        int, typer.Option(min=0, max=1_000, help="Phones that go silent, measured.")
    ] = 5,
    silence_timeout: Annotated[
        float,
        typer.Option(
            min=1,
            max=3_600,
            metavar="S",
            help="The silent phones' trips' silence timeout (below the API's 60 s the bench "
            "sets it in its throw-away database).",
        ),
    ] = 60.0,
    watchdog_interval: Annotated[
        float,
        typer.Option(min=0.05, max=60, metavar="S", help="The worker's watchdog interval."),
    ] = 1.0,
    quality_trips: Annotated[
        int,
        typer.Option(
            min=1,
            max=100_000,
            help="Simulated trips of each kind (on route, departing) for the detection quality.",
        ),
    ] = 200,
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
) -> None:
    """How soon alerts reach the police stream and a dispatcher's feed under load.

    Starts one worker on a throw-away PostGIS database and Redis; PHONES phones stream
    RATE fixes/s on route in the background while PROBES phones leave their route
    (latency from the fix that raised off_route to its ack, to the entry on the police
    stream and to the alert on a dispatcher's /v1/live feed) and SILENT phones go
    silent (how long after their timeout signal_lost is raised and delivered). Also,
    in this process, the monitor's false off_route on noisy on-route trips and the
    departures it catches. Prints the figures with the machine and the command.
    """
    from sigueme.bench.alerts import render, run_alerts_bench, to_json

    dsn = _required(postgres_dsn, "--postgres-dsn", "SIGUEME_BENCH_POSTGRES_DSN")
    redis = _required(
        redis_url, "--redis-url", "SIGUEME_BENCH_REDIS_URL", ": the police stream is Redis"
    )
    command = (
        f"sigueme bench alerts --phones {phones} --rate {rate:g} --probes {probes} "
        f"--silent {silent} --silence-timeout {silence_timeout:g} --watchdog-interval "
        f"{watchdog_interval:g} --quality-trips {quality_trips}"
    )
    _report(
        functools.partial(
            run_alerts_bench,
            postgres_dsn=dsn,
            redis_url=redis,
            phones=phones,
            rate=rate,
            probes=probes,
            silent=silent,
            silence_timeout_s=silence_timeout,
            watchdog_interval_s=watchdog_interval,
            quality_trips=quality_trips,
            command=command,
            progress=_progress,
        ),
        render if not as_json else to_json,
        "PostgreSQL or Redis",
    )


# -- sigueme simulate phones -----------------------------------------------------------------------


def simulate_phones_command(
    admin_token: Annotated[
        str,
        typer.Option(
            envvar="SIGUEME_ADMIN_TOKEN",
            metavar="TOKEN",
            help="An admin's API token (sigueme users add NAME --role admin): it enrols the "
            "simulated travellers.",
        ),
    ],
    server: Annotated[
        str, typer.Option(metavar="URL", help="The running service (http:// or https://).")
    ] = "http://127.0.0.1:8000",
    phones: Annotated[int, typer.Option(min=1, max=10_000, help="Simulated phones.")] = 20,
    deviate: Annotated[
        float,
        typer.Option(
            min=0.0, max=1.0, metavar="SHARE", help="Share that leave their route for a while."
        ),
    ] = 0.1,
    stop: Annotated[
        float,
        typer.Option(
            min=0.0, max=1.0, metavar="SHARE", help="Share that stop 7 minutes on the way."
        ),
    ] = 0.1,
    silent: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=1.0,
            metavar="SHARE",
            help="Share that go silent part way (their trips stay active: signal_lost).",
        ),
    ] = 0.05,
    sos: Annotated[
        float,
        typer.Option(min=0.0, max=1.0, metavar="SHARE", help="Share that press SOS part way."),
    ] = 0.05,
    speed_up: Annotated[
        float,
        typer.Option(
            min=1.0, max=1_000.0, metavar="X", help="Journeys run this many times faster."
        ),
    ] = 1.0,
    interval: Annotated[
        float,
        typer.Option(min=1.0, max=60.0, metavar="S", help="A fix every S s of the journey."),
    ] = 5.0,
    route: Annotated[
        list[str] | None,
        typer.Option(
            metavar="FILE",
            help="A planned route (GeoJSON, GPX or encoded polyline), repeatable: the "
            "phones take them in turn. Default: routes generated around Cuernavaca.",
        ),
    ] = None,
    route_km: Annotated[
        float,
        typer.Option(min=0.5, max=100.0, metavar="KM", help="Length of generated routes."),
    ] = 6.0,
    noise: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            max=100.0,
            metavar="M",
            help="GPS noise per axis in metres (default 6, with urban outliers and multipath).",
        ),
    ] = None,
    silence_timeout: Annotated[
        float,
        typer.Option(
            min=60.0,
            max=3_600.0,
            metavar="S",
            help="The trips' silence timeout (longer when a sped-up trip departs in the past).",
        ),
    ] = 120.0,
    seed: Annotated[int, typer.Option(metavar="N", help="The same seed, the same phones.")] = 0,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the summary as JSON (one per trip too).")
    ] = False,
) -> None:
    """Many simulated phones streaming to a running server over its websockets.

    Enrols PHONES travellers with the admin's token, files a trip for each and streams
    their phones' fixes (a fix every INTERVAL s of the journey, with urban GPS noise),
    in real time or SPEED-UP times faster; some deviate, stop, go silent or press SOS.
    Prints progress on stderr and a summary at the end (or on Ctrl-C: the phones stop
    and their trips are finished; silent phones' trips stay active).
    """
    from sigueme import simulate_live as sim
    from sigueme.cli.main import RouteFormatChoice, load_route
    from sigueme.simulate import URBAN_NOISE

    try:
        sim.ws_base(server)
        mix = sim.Mix(deviate=deviate, stop=stop, silent=silent, sos=sos)
        sim.check_rate(interval, speed_up)
    except ValueError as exc:
        _fail(str(exc))
    routes = [load_route(path, RouteFormatChoice.auto, 5) for path in route or ()]
    gps = URBAN_NOISE if noise is None else dataclasses.replace(URBAN_NOISE, noise_m=noise)
    plans = sim.plan_phones(
        phones, mix, routes=routes, route_km=route_km, interval_s=interval, noise=gps, seed=seed
    )
    try:
        for plan in plans:
            sim.silence_timeout(plan, speed_up, silence_timeout)
    except ValueError as exc:
        _fail(str(exc))
    try:
        summary = sim.run_simulation(
            server,
            admin_token,
            plans,
            speed_up=speed_up,
            silence_timeout_s=silence_timeout,
            progress=_progress,
        )
    except sim.ServiceError as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        raise typer.Exit(INTERRUPTED) from None
    typer.echo(json.dumps(summary, indent=2) if as_json else sim.render_summary(summary))


class TraceByDefault(TyperGroup):
    """``sigueme simulate ROUTE ...`` is ``sigueme simulate trace ROUTE ...``: the one
    command ``simulate`` was before it had sub-commands."""

    default = "trace"

    # ``ctx`` is typer's own (vendored) click Context, which it does not export.
    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = [self.default, *args]
        return super().parse_args(ctx, args)


def register(
    app: typer.Typer, bench_app: typer.Typer, *, simulate_trace: Callable[..., None]
) -> None:
    """Add ``live`` and ``alerts`` to ``bench_app``, and ``simulate`` (``trace``, the
    default, and ``phones``) to ``app``."""
    bench_app.command("live", short_help="Fixes/s and ack latency of one worker, over websockets.")(
        bench_live_command
    )
    bench_app.command(
        "alerts", short_help="Alert latency to the police and dispatchers, silence, detection."
    )(bench_alerts_command)
    simulate_app = typer.Typer(
        cls=TraceByDefault,
        help="Simulate phones: one phone's trace along a route (trace, the default: "
        "sigueme simulate ROUTE ...), or many live phones streaming to a running server "
        "(phones).",
        no_args_is_help=True,
        rich_markup_mode=None,
    )
    simulate_app.command(
        "trace", short_help="Simulate a phone's trace along a route (the default)."
    )(simulate_trace)
    simulate_app.command(
        "phones", short_help="Many simulated phones streaming to a running server."
    )(simulate_phones_command)
    app.add_typer(
        simulate_app,
        name="simulate",
        short_help="Simulate a phone's trace along a route. Or live phones: simulate phones.",
    )
