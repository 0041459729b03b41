"""`sigueme bench alerts` end to end with tiny settings (a real worker on a throw-away
PostGIS database and Redis, a few phones, a short silence timeout), and its detection
quality part in process."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess

import pytest

from sigueme.bench.alerts import detection_quality
from sigueme.bench.live import sigueme_command
from sigueme.simulate import URBAN_NOISE, Multipath, Noise

TINY = [
    "--phones", "3", "--rate", "20", "--probes", "2", "--silent", "1",
    "--silence-timeout", "3", "--quality-trips", "3",
]  # fmt: skip


def _bench(postgres_dsn: str, redis_url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGUEME_")}
    return subprocess.run(
        sigueme_command(
            "bench", "alerts", "--postgres-dsn", postgres_dsn, "--redis-url", redis_url,
            *TINY, *extra,
        ),
        env=env, capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip


@pytest.mark.postgis
@pytest.mark.redis
def test_bench_alerts_json(postgres_dsn: str, redis_url: str) -> None:
    done = _bench(postgres_dsn, redis_url, "--json")
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    report = json.loads(done.stdout)
    assert report["command"].startswith("sigueme bench alerts --phones 3 --rate 20 --probes 2")
    assert postgres_dsn not in done.stdout
    assert report["machine"]["cores"] == os.cpu_count()
    assert report["workload"]["silence_timeout_s"] == 3

    background = report["background"]
    assert background["rate"] == 20
    assert background["acked"] > 0
    assert background["errors"] == 0

    off = report["off_route"]
    assert off["probes"] == off["detected"] == off["seen_on_stream"] == off["seen_on_feed"] == 2
    for name in ("fix_to_ack_ms", "fix_to_stream_ms", "fix_to_feed_ms"):
        stats = off[name]
        assert stats["n"] == 2
        assert 0 < stats["p50"] <= stats["p99"] <= stats["max"]
    assert off["fixes_to_detect"]["p50"] >= 4  # the hysteresis: several fixes out

    lost = report["signal_lost"]
    assert lost["phones"] == lost["seen"] == 1
    for name in ("raised_after_timeout_s", "stream_after_timeout_s", "feed_after_timeout_s"):
        assert lost[name]["n"] == 1
        # Not before the timeout ran out (a little clock rounding aside).
        assert lost[name]["max"] >= -0.01
    assert lost["raised_after_timeout_s"]["max"] <= lost["stream_after_timeout_s"]["max"]

    quality = report["quality"]
    assert quality["on_route"]["trips"] == quality["departures"]["trips"] == 3
    departures = quality["departures"]
    assert departures["caught"] + departures["missed"] == 3


@pytest.mark.postgis
@pytest.mark.redis
def test_bench_alerts_prints_the_figures(postgres_dsn: str, redis_url: str) -> None:
    done = _bench(postgres_dsn, redis_url)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("machine:  ")
    assert "PostgreSQL" in lines[1]
    assert lines[2].startswith("command:  sigueme bench alerts --phones 3")
    text = "\n".join(lines)
    for needle in (
        "background load: target 20 fixes/s",
        "off_route alert, from the fix that completed it (2 probes: detected 2, seen on the "
        "police stream 2, on the dispatcher's feed 2)",
        "fix -> police stream",
        "fix -> dispatcher's feed",
        "5,000 fixes/s is not reached",
        "signal_lost alert after the silence timeout (silent phones: 1, timeout 3 s",
        "the bench set 3 s in its throw-away database",
        "on route:   3 trips",
        "departures: 3 trips",
    ):
        assert needle in text, text


def test_bench_alerts_needs_redis(postgres_dsn: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGUEME_")}
    done = subprocess.run(
        sigueme_command("bench", "alerts", "--postgres-dsn", postgres_dsn),
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "--redis-url" in done.stderr


def test_detection_quality_counts() -> None:
    # Realistic urban noise: no false alarm on these trips, every departure caught about
    # 30-60 s after leaving the corridor (the hysteresis: 4 fixes over 30 s).
    report = detection_quality(4, seed=2)
    on, dep = report["on_route"], report["departures"]
    assert on["trips"] == dep["trips"] == 4
    assert on["fixes"] > 4 * 100
    assert on["false_off_route_trips"] == 0
    assert on["false_rate"] == 0
    assert dep["caught"] == 4
    assert dep["missed"] == 0
    assert dep["caught_rate"] == 1
    assert 15 <= dep["delay_s"]["p50"] <= dep["delay_s"]["max"] <= 90

    # A phone that is pulled 400-500 m aside for a minute at a time: false alarms, counted.
    awful = dataclasses.replace(
        URBAN_NOISE,
        multipath=Multipath(start_rate=0.05, fixes=(12, 14), offset_m=(400.0, 500.0),
                            accuracy_share=(0.0, 0.0)),
    )  # fmt: skip
    noisy = detection_quality(4, seed=2, noise=awful)["on_route"]
    assert noisy["false_off_route_trips"] >= 1
    assert noisy["false_off_route_events"] >= noisy["false_off_route_trips"]
    assert noisy["false_rate"] == noisy["false_off_route_trips"] / 4

    # Without noise: every departure caught, nothing false.
    clean = detection_quality(2, seed=5, noise=Noise(0.0, 0.0))
    assert clean["departures"]["caught"] == 2
    assert clean["on_route"]["false_off_route_trips"] == 0
