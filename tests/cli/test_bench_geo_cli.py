"""`sigueme bench geo` as an operator runs it: a table of fixes/s per path, PostGIS too."""

from __future__ import annotations

import json
import re

from typer.testing import CliRunner

from sigueme.cli.main import app

SMALL = ["--trips", "4", "--vertices", "30", "--fixes-per-trip", "8", "--postgis-fixes", "100"]


def test_bench_geo_prints_every_path_with_its_ratio_to_postgis(postgres_dsn: str) -> None:
    result = CliRunner().invoke(app, ["bench", "geo", *SMALL, "--postgres-dsn", postgres_dsn])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "workload: 4 trips, 30 vertices" in out
    assert "PostGIS 3." in out  # the machine line names what it ran against
    rows = {
        m.group(1).strip(): (int(m.group(2)), int(m.group(3).replace(",", "")))
        for m in re.finditer(r"^(\S.*?)\s+(\d+)\s+[\d.]+\s+([\d,]+)\s+\d+x$", out, re.M)
    }
    assert rows["per-fix (TripMonitor.update)"][0] == 32
    assert rows["batched (MonitorBank, 1000 per batch)"][0] == 32
    assert rows["PostGIS per fix (asyncpg, one query each)"][0] == 32  # fewer than asked
    assert all(per_second > 0 for _, per_second in rows.values())


def test_bench_geo_without_postgis_says_how_to_include_it() -> None:
    result = CliRunner().invoke(app, ["bench", "geo", *SMALL, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert [r["path"] for r in report["results"]] == [
        "per-fix (TripMonitor.update)",
        "batched (MonitorBank, 1000 per batch)",
        "Shapely per fix (distance + project)",
    ]
    assert report["workload"]["fixes"] == 32


def test_bench_geo_with_an_unreachable_postgres_is_a_clean_error() -> None:
    result = CliRunner().invoke(
        app, ["bench", "geo", *SMALL, "--postgres-dsn", "postgresql://nobody@127.0.0.1:1/x"]
    )
    assert result.exit_code == 2
    assert "Error: cannot reach PostgreSQL" in result.stderr
