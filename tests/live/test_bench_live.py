"""`sigueme bench live` end to end with tiny settings: a real worker on a throw-away
PostGIS database and Redis, three phones, one rate, and the printed table."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from sigueme.bench.live import HEADER, sigueme_command

pytestmark = [pytest.mark.postgis, pytest.mark.redis]


def _bench(postgres_dsn: str, redis_url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGUEME_")}
    return subprocess.run(
        sigueme_command(
            "bench", "live", "--postgres-dsn", postgres_dsn, "--redis-url", redis_url,
            "--phones", "3", "--rates", "50", "--seconds", "2", *extra,
        ),
        env=env, capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip


def test_bench_live_prints_the_table(postgres_dsn: str, redis_url: str) -> None:
    done = _bench(postgres_dsn, redis_url)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("machine:  ")
    assert "PostgreSQL" in lines[1]
    assert "3 phones" in lines[2]
    assert "1 worker" in lines[2]
    header = lines.index(HEADER)
    row = lines[header + 1].split()
    target, sent, acked_per_s, p50, p99, max_ms, errors = row[:7]
    assert target == "50"
    assert sent == "100"
    assert 40 <= float(acked_per_s.replace(",", "")) <= 50
    assert 0 < float(p50) <= float(p99) <= float(max_ms)
    assert errors == "0"
    assert "Traceback" not in done.stderr


def test_bench_live_json(postgres_dsn: str, redis_url: str) -> None:
    done = _bench(postgres_dsn, redis_url, "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["workload"]["phones"] == 3
    assert report["machine"]["cores"] == os.cpu_count()
    (result,) = report["results"]
    assert result["rate"] == 50
    assert result["sent"] == result["acked"] == 100
    assert result["errors"] == 0
    assert result["ack_p50_ms"] <= result["ack_p99_ms"]


def test_bench_live_refuses_more_than_a_phone_may_send(postgres_dsn: str) -> None:
    done = subprocess.run(
        sigueme_command(
            "bench", "live", "--postgres-dsn", postgres_dsn, "--phones", "2",
            "--rates", "1000", "--seconds", "10",
        ),
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "use --phones" in done.stderr
