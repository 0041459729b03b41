"""`sigueme purge` and `sigueme bench store` as an operator runs them, on both backends."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner, Result

from sigueme.bench.store import seed_trips
from sigueme.cli.main import app
from sigueme.store.fixes import FixRow, append_fixes, mark_evidence, track


async def sigueme(*args: str) -> Result:
    # The commands run their own event loop: run them off this test's loop.
    return await asyncio.to_thread(CliRunner().invoke, app, list(args))


@pytest.fixture
def service_env(monkeypatch: pytest.MonkeyPatch, database_url: str) -> str:
    monkeypatch.setenv("SIGUEME_DATABASE_URL", database_url)
    monkeypatch.delenv("SIGUEME_RETENTION_DAYS", raising=False)
    return database_url


async def history(engine: AsyncEngine) -> str:
    """One trip with fixes received 90, 60, 45 (kept as evidence) and 1 day ago."""
    [trip] = await seed_trips(engine, 1)
    now = datetime.now(UTC)
    rows = [
        FixRow(trip, seq, now - timedelta(days=days), now - timedelta(days=days), -99.2, 18.9)
        for seq, days in enumerate([90, 60, 45, 1])
    ]
    await append_fixes(engine, rows)
    await mark_evidence(engine, trip, rows[2].t, rows[2].t)
    return trip


async def test_purge_dry_run_counts_and_deletes_nothing(
    service_env: str, engine: AsyncEngine
) -> None:
    trip = await history(engine)

    result = await sigueme("purge", "--dry-run")

    assert result.exit_code == 0, result.output
    assert "Would purge 2 fixes received before " in result.stdout
    assert "(30 days ago); 1 older fixes kept as alert evidence" in result.stdout
    assert "Nothing deleted" in result.stdout
    assert len(await track(engine, trip)) == 4


async def test_purge_deletes_past_retention_and_keeps_evidence(
    service_env: str, engine: AsyncEngine
) -> None:
    trip = await history(engine)

    result = await sigueme("purge")

    assert result.exit_code == 0, result.output
    assert "Purged 2 fixes received before " in result.stdout
    assert [r.seq for r in await track(engine, trip)] == [2, 3]

    shorter = await sigueme("purge", "--older-than-days", "0.5")
    assert "Purged 1 fixes" in shorter.stdout  # the day-old one; evidence stays
    assert [r.seq for r in await track(engine, trip)] == [2]


async def test_purge_refuses_a_database_that_is_not_migrated(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SIGUEME_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path}/empty.db")

    result = await sigueme("purge")

    assert result.exit_code == 2
    assert "run `sigueme migrate`" in result.stderr
    assert "Traceback" not in result.output


TABLE_ROW = re.compile(r"^(PostGIS|SQLite)\s+(\d+)\s+(\d+)\s+([\d,]+)\s+([\d.]+)\s+([\d,]+)$")


def table_rows(output: str) -> dict[str, list[str]]:
    return {m[1]: list(m.groups()[1:]) for ln in output.splitlines() if (m := TABLE_ROW.match(ln))}


async def test_bench_store_prints_fixes_per_second_for_both_backends(postgres_dsn: str) -> None:
    before = await bench_databases(postgres_dsn)

    result = await sigueme(
        "bench", "store", "--fixes", "600", "--trips", "7", "--batch", "50", "--writers", "3",
        "--postgres-dsn", postgres_dsn,
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    rows = table_rows(result.stdout)
    assert set(rows) == {"PostGIS", "SQLite"}
    for batch, writers, fixes, _seconds, per_second in rows.values():
        assert (batch, writers, fixes) == ("50", "3", "600")
        assert int(per_second.replace(",", "")) > 0
    assert "machine:" in result.stdout
    assert "PostGIS 3" in result.stdout
    assert await bench_databases(postgres_dsn) == before  # its database was dropped


async def test_bench_store_json_on_sqlite_alone() -> None:
    result = await sigueme(
        "bench", "store", "--backend", "sqlite", "--fixes", "200", "--trips", "3",
        "--batch", "64", "--writers", "2", "--json",
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    [row] = report["results"]
    assert (row["backend"], row["fixes"], row["batch"], row["writers"]) == ("SQLite", 200, 64, 2)
    assert row["fixes_per_second"] > 0
    assert report["machine"]["cores"] >= 1


async def test_bench_store_postgis_needs_a_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SIGUEME_BENCH_POSTGRES_DSN", raising=False)
    result = await sigueme("bench", "store", "--backend", "postgis", "--fixes", "10")

    assert result.exit_code == 2
    assert "--postgres-dsn" in result.stderr


async def bench_databases(dsn: str) -> set[str]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT datname FROM pg_database WHERE datname LIKE 'sigueme_bench_%'"
        )
    finally:
        await conn.close()
    return {r["datname"] for r in rows}


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://sigueme@localhost:notaport/sigueme",  # a port that is not a number
        "postgresql://sigueme@localhost/sigueme",  # no async driver named
        "mysql+aiomysql://sigueme@localhost/sigueme",
    ],
)
def test_purge_with_an_unusable_database_url_says_what_to_set(
    monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    monkeypatch.setenv("SIGUEME_DATABASE_URL", url)
    result = CliRunner().invoke(app, ["purge", "--dry-run"])
    assert result.exit_code == 2
    assert "Error: SIGUEME_DATABASE_URL: expected sqlite+aiosqlite:///FILE" in result.stderr
    assert "Traceback" not in result.output
