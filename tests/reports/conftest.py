"""Stand-in servers for the reports' tests: Meta's Graph API (uvicorn in a thread) and an
S3-compatible object store (moto's server in a thread), each on a free loopback port."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from graph_standin import GraphStandin


@pytest.fixture(scope="module")
def graph() -> Iterator[GraphStandin]:
    with GraphStandin() as standin:
        yield standin


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """The URL of a local S3-compatible server (moto), for the module's tests."""
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()
