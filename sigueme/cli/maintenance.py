"""Maintenance commands: ``sigueme purge`` (retention, once) and ``sigueme bench store``.

Registered on the main app by :func:`register`, called from :mod:`sigueme.cli.main`.
"""

from __future__ import annotations

import asyncio
import enum
from datetime import UTC, datetime, timedelta
from typing import Annotated, NoReturn

import asyncpg
import typer
from sqlalchemy.exc import SQLAlchemyError

from sigueme.errors import SchemaOutOfDate
from sigueme.store.retention import PurgeResult


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    """Add ``purge`` to ``app`` and ``store`` to ``bench_app``."""
    app.command("purge", short_help="Delete location history past its retention period.")(
        purge_command
    )
    bench_app.command("store", short_help="Fixes/s written into PostGIS and SQLite.")(
        bench_store_command
    )


def _fail(message: str) -> NoReturn:
    # Imported here: sigueme.cli.main imports this module while it is being built.
    from sigueme.cli.main import fail

    fail(message)


def _describe(exc: BaseException) -> str:
    """A database error in one line, without the SQL and its parameters."""
    orig = getattr(exc, "orig", None) or exc
    first = str(orig).strip().splitlines()[0] if str(orig).strip() else ""
    return f"{type(orig).__name__}: {first}" if first else type(orig).__name__


# -- purge ---------------------------------------------------------------------------------------


async def _purge(url: str, cutoff: datetime, dry_run: bool) -> PurgeResult:
    from sigueme.store.db import check_schema, make_engine
    from sigueme.store.retention import purge

    engine = make_engine(url)
    try:
        await check_schema(engine)
        return await purge(engine, cutoff, dry_run=dry_run)
    finally:
        await engine.dispose()


def purge_command(
    older_than_days: Annotated[
        float | None,
        typer.Option(
            min=0,
            max=3650,
            metavar="N",
            help="Purge fixes received more than N days ago "
            "(default: SIGUEME_RETENTION_DAYS, 30 unless set).",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would be purged; delete nothing.")
    ] = False,
) -> None:
    """Delete location history older than the retention period, except alert evidence.

    Works on the database of SIGUEME_DATABASE_URL, in chunks of short transactions, so
    it can run while the service does. The service also purges by itself every
    SIGUEME_PURGE_INTERVAL_S seconds.
    """
    from sigueme.cli.service import database_url, load_settings

    settings = load_settings()
    url = database_url(settings)  # the same checks and messages as the other commands
    days = settings.retention_days if older_than_days is None else older_than_days
    cutoff = datetime.now(UTC) - timedelta(days=days)
    try:
        result = asyncio.run(_purge(url, cutoff, dry_run))
    except SchemaOutOfDate as exc:
        _fail(str(exc))
    except (SQLAlchemyError, OSError) as exc:
        _fail(f"cannot purge the database of SIGUEME_DATABASE_URL: {_describe(exc)}")
    when = f"{result.cutoff:%Y-%m-%d %H:%M} UTC ({days:g} days ago)"
    kept = f"{result.evidence_kept:,} older fixes kept as alert evidence"
    if dry_run:
        typer.echo(
            f"Would purge {result.purged:,} fixes received before {when}; {kept}. "
            "Nothing deleted (--dry-run)."
        )
    else:
        typer.echo(
            f"Purged {result.purged:,} fixes received before {when}; {kept}; "
            f"forgot the last position of {result.positions_cleared:,} ended trips."
        )


# -- bench store ---------------------------------------------------------------------------------


class BackendChoice(enum.StrEnum):
    all = "all"
    postgis = "postgis"
    sqlite = "sqlite"


def bench_store_command(
    trips: Annotated[
        int, typer.Option(min=1, max=100_000, help="Trips the fixes belong to.")
    ] = 1_000,
    batch: Annotated[
        int, typer.Option(min=1, max=10_000, help="Fixes per append (one transaction each).")
    ] = 1_000,
    writers: Annotated[int, typer.Option(min=1, max=64, help="Concurrent writers.")] = 4,
    seconds: Annotated[
        float | None,
        typer.Option(min=0.1, max=3600, metavar="S", help="Write for S seconds (default 10)."),
    ] = None,
    fixes: Annotated[
        int | None,
        typer.Option(
            min=1, max=100_000_000, metavar="N", help="Write N fixes (with --seconds: first)."
        ),
    ] = None,
    backend: Annotated[
        BackendChoice, typer.Option(help="Which database(s) to measure.")
    ] = BackendChoice.all,
    postgres_dsn: Annotated[
        str | None,
        typer.Option(
            envvar="SIGUEME_BENCH_POSTGRES_DSN",
            help="A PostgreSQL+PostGIS server where a throw-away database is created and "
            "dropped (scripts/bench.sh store starts a throw-away server).",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
) -> None:
    """Sustained fixes per second written into PostGIS and SQLite.

    Migrates a fresh database on each backend, creates TRIPS trips, and has WRITERS
    concurrent writers append fixes BATCH at a time, for S seconds or N fixes.
    """
    from sigueme.bench.store import BACKENDS, render, run_store_bench, to_json

    if seconds is None and fixes is None:
        seconds = 10.0
    backends = BACKENDS if backend is BackendChoice.all else (backend.value,)
    if backend is BackendChoice.postgis and not postgres_dsn:
        _fail("--backend postgis needs --postgres-dsn (or SIGUEME_BENCH_POSTGRES_DSN)")
    try:
        report = run_store_bench(
            postgres_dsn=postgres_dsn,
            backends=backends,
            trips=trips,
            batch=batch,
            writers=writers,
            seconds=seconds,
            fixes=fixes,
        )
    except OSError as exc:
        _fail(f"cannot reach PostgreSQL at --postgres-dsn: {exc}")
    except (asyncpg.PostgresError, SQLAlchemyError) as exc:
        _fail(f"PostgreSQL at --postgres-dsn: {_describe(exc)}")
    typer.echo(to_json(report) if as_json else render(report))
