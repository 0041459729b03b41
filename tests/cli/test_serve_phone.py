"""A phone on a real `sigueme serve` (uvicorn): the websocket is served, authenticated by
header, acknowledges fixes, and uvicorn's own frame limit closes an oversized frame with
1009 before the app reads it. Needs the ``websockets`` package, which uvicorn serves
websockets with."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from sigueme.api.phone_protocol import MAX_FRAME_BYTES

SIGUEME = Path(sys.executable).with_name("sigueme")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A running `sigueme serve` on SQLite, and a traveller's token: (base URL, token)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGUEME_")}
    added = subprocess.run(
        [str(SIGUEME), "users", "add", "ana", "--role", "traveller"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    port = _free_port()
    server = subprocess.Popen(
        [str(SIGUEME), "serve", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, server.communicate()
            try:
                if httpx.get(f"http://{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not answer /healthz in 60 s"
            time.sleep(0.2)
        yield base, added.stdout.strip()
    finally:
        server.terminate()
        _, err = server.communicate(timeout=30)
    assert "Traceback" not in err


def test_a_phone_streams_to_the_served_app(served: tuple[str, str]) -> None:
    base, token = served
    headers = {"Authorization": f"Bearer {token}"}
    now = time.time()
    trip = httpx.post(
        f"http://{base}/v1/trips",
        headers=headers,
        json={
            "route": {
                "type": "LineString",
                "coordinates": [[-99.2345, 18.9211], [-99.2212, 18.905]],
            },
            "departure": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 60)),
            "duration_min": 25,
        },
        timeout=10,
    )
    assert trip.status_code == 201, trip.text
    url = f"ws://{base}/v1/trips/{trip.json()['id']}/phone"

    with connect(url, additional_headers=headers) as ws:
        assert json.loads(ws.recv(timeout=10))["type"] == "ready"
        ws.send(json.dumps({"type": "fix", "seq": 1, "t": now, "lat": 18.9211, "lon": -99.2345}))
        ack = json.loads(ws.recv(timeout=10))
        assert ack["type"] == "ack"
        assert ack["seqs"] == [1]
        ws.send("x" * (MAX_FRAME_BYTES + 1))
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1009

    bad = {"Authorization": "Bearer sgm_nope"}
    with connect(url, additional_headers=bad) as ws, pytest.raises(ConnectionClosed) as refused:
        ws.recv(timeout=10)
    assert refused.value.rcvd is not None
    assert refused.value.rcvd.code == 4401

    track = httpx.get(f"http://{base}/v1/trips/{trip.json()['id']}/track", headers=headers)
    assert [f["properties"]["kind"] for f in track.json()["features"]] == ["route", "fix"]
