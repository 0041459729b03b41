"""Engines, sessions, migrations and the schema check.

``sigueme migrate`` runs Alembic's ``upgrade head`` on the configured database. The
service refuses to start on a database whose schema is not at head, and says what to
run (:func:`check_schema`).
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

from sigueme.errors import SchemaOutOfDate

MIGRATIONS = Path(__file__).with_name("migrations")


def make_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """An async engine; on SQLite with foreign keys on, WAL journal, full sync (a commit
    survives a power cut: an acknowledged fix is stored) and a busy timeout.

    Statement parameters are hidden from error messages: they hold people's positions.
    """
    kwargs.setdefault("hide_parameters", True)
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": 30}, **kwargs)

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.close()

        return engine
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 10)
    kwargs.setdefault("pool_pre_ping", True)
    return create_async_engine(url, **kwargs)


def sessionmaker(engine: AsyncEngine) -> async_sessionmaker[Any]:
    return async_sessionmaker(engine, expire_on_commit=False)


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert head is not None
    return head


def _current(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        return await conn.run_sync(_current)


async def check_schema(engine: AsyncEngine) -> None:
    """Raise :class:`SchemaOutOfDate` unless the database is at the code's schema."""
    current = await current_revision(engine)
    head = head_revision()
    if current != head:
        have = f"at revision {current}" if current else "empty (no Sígueme tables)"
        raise SchemaOutOfDate(
            f"the database is {have}, this version of Sígueme needs revision {head}: "
            "run `sigueme migrate` (same SIGUEME_DATABASE_URL) and start again"
        )


def upgrade(url: str, revision: str = "head") -> None:
    """Run the migrations up to ``revision``. Blocking; it runs Alembic in a thread of
    its own (the migration environment has its own event loop), so it may be called
    from anywhere, even from inside a running loop."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="migrate") as pool:
        pool.submit(command.upgrade, alembic_config(url), revision).result()


async def upgrade_async(url: str, revision: str = "head") -> None:
    await asyncio.to_thread(upgrade, url, revision)
