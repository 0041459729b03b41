"""``sigueme bench live``: fixes/s one worker acknowledges over real websockets, and the
acknowledgement latency, at several rates (see :mod:`sigueme.bench.live`)."""

from __future__ import annotations

from typing import Annotated, NoReturn

import typer

USAGE_ERROR = 2


def _fail(message: str) -> NoReturn:
    typer.echo(f"Error: {message}", err=True)
    raise typer.Exit(USAGE_ERROR)


def bench_live_command(
    postgres_dsn: Annotated[
        str | None,
        typer.Option(
            envvar="SIGUEME_BENCH_POSTGRES_DSN",
            help="PostgreSQL+PostGIS server: a throw-away database is created on it and "
            "dropped after (scripts/bench.sh live starts a throw-away server).",
        ),
    ] = None,
    redis_url: Annotated[
        str | None,
        typer.Option(
            envvar="SIGUEME_BENCH_REDIS_URL", help="Redis for the worker (SIGUEME_REDIS_URL)."
        ),
    ] = None,
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
        BenchError,
        check_phones,
        parse_rates,
        render,
        run_live_bench,
        to_json,
    )

    if not postgres_dsn:
        _fail("--postgres-dsn (or SIGUEME_BENCH_POSTGRES_DSN) is required")
    try:
        targets = parse_rates(rates)
        check_phones(phones, targets, seconds)
    except ValueError as exc:
        _fail(f"--rates: {exc}")

    def progress(message: str) -> None:
        typer.echo(message, err=True)

    try:
        report = run_live_bench(
            postgres_dsn=postgres_dsn,
            redis_url=redis_url,
            phones=phones,
            rates=targets,
            seconds=seconds,
            progress=progress,
        )
    except BenchError as exc:
        _fail(str(exc))
    except (OSError, ConnectionError) as exc:
        _fail(f"cannot reach PostgreSQL at --postgres-dsn: {exc}")
    typer.echo(to_json(report) if as_json else render(report))


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    """Add ``live`` to ``bench_app`` (``app`` gets the live simulator later)."""
    del app
    bench_app.command("live", short_help="Fixes/s and ack latency of one worker, over websockets.")(
        bench_live_command
    )
