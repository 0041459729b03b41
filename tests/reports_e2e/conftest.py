"""Fixtures for the reports' end-to-end tests: the app on each backend with WhatsApp
pointed at the Graph API stand-in, evidence on a temporary disk, and accounts.

The stand-in and the sample files live in ``tests/reports``; that folder is put on
``sys.path`` so they are shared, not copied."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "reports"))

from graph_standin import GraphStandin
from reports_world import Desk, running_desk


@pytest.fixture(scope="session")
def graph_server() -> Iterator[GraphStandin]:
    with GraphStandin() as standin:
        yield standin


@pytest.fixture
def graph(graph_server: GraphStandin) -> GraphStandin:
    """The stand-in, with no media and no messages sent yet."""
    graph_server.media.clear()
    graph_server.sent.clear()
    graph_server.requests.clear()
    return graph_server


@pytest_asyncio.fixture(loop_scope="session")
async def desk(database_url: str, tmp_path: Path, graph: GraphStandin) -> AsyncIterator[Desk]:
    async with running_desk(database_url, tmp_path / "evidence", graph) as desk:
        yield desk
