"""What the fuzz tests share: how many examples to try, the app they run against (with
nothing that talks to the network), the accounts and the small world of things the
fuzzers aim at, and a fingerprint of what the database holds, to show that refused
input changed nothing.

Imported by the tests of this folder (``from fuzz_world import ...``).

Run longer with ``SIGUEME_FUZZ_SCALE=N``: every test tries N times as many examples
(the default, 1, keeps the whole folder within a few minutes on two cores).
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import httpx
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, settings
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from sigueme.api import background as alert_background
from sigueme.api import webhooks
from sigueme.api.app import create_app
from sigueme.settings import Settings
from sigueme.store.db import make_engine, sessionmaker
from sigueme.store.models import Role
from sigueme.store.users import add_user

SCALE: Final = max(1, int(os.environ.get("SIGUEME_FUZZ_SCALE", "1") or "1"))
"""Multiplies every example budget of this folder (``SIGUEME_FUZZ_SCALE=20`` for a long
run)."""
SHRINK: Final = os.environ.get("SIGUEME_FUZZ_SHRINK", "") == "1"
"""Shrink a failing example to a minimal one (slow against a database: off by default;
the failure is reported with the request as it was sent)."""

PUBLIC_URL: Final = "https://sigueme.example.mx"
APP_SECRET: Final = "secreto-de-la-app-de-prueba"
VERIFY_TOKEN: Final = "ficha-de-verificacion"
# About 3.1 km through Cuernavaca, Morelos, [lon, lat].
ROUTE: Final = [
    [-99.2340, 18.9210],
    [-99.2280, 18.9150],
    [-99.2200, 18.9100],
    [-99.2100, 18.9050],
]


def examples(n: int) -> settings:
    """Hypothesis settings for ``n`` examples (times :data:`SCALE`): no deadline (the
    machine is shared), no example database (runs are reproducible from the seed), no
    shrinking unless :data:`SHRINK`, and
    function-scoped fixtures shared by every example on purpose (one app, one
    database, whose rows are counted before and after)."""
    phases = [Phase.explicit, Phase.reuse, Phase.generate, Phase.target]
    return settings(
        max_examples=n * SCALE,
        deadline=None,
        database=None,
        phases=[*phases, Phase.shrink] if SHRINK else phases,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
        ],
    )


def fuzz_settings(database_url: str, evidence_dir: Path, **changes: Any) -> Settings:
    """Settings of an app under fuzzing: WhatsApp configured (so its webhook checks
    signatures rather than answering 404; the Graph API is never reached without a valid
    signature), evidence on a temporary disk, and background timers that do not fire
    during a run (so every change to the database is one a request made)."""
    values: dict[str, Any] = {
        "database_url": SecretStr(database_url),
        "public_url": PUBLIC_URL,
        "evidence_dir": str(evidence_dir),
        "whatsapp_verify_token": SecretStr(VERIFY_TOKEN),
        "whatsapp_app_secret": SecretStr(APP_SECRET),
        "whatsapp_access_token": SecretStr("graph-token-never-used"),
        # Nothing listens there: a request that reached it would fail, not leave the machine.
        "whatsapp_graph_url": "http://127.0.0.1:9",
        "escalate_after_s": 86_400.0,
        "purge_interval_s": 86_400.0,
    }
    values.update(changes)
    return Settings(**values)


def fuzz_app(settings: Settings, *, background: bool = False) -> FastAPI:
    """The app, without webhook deliveries: a fuzzer registers webhooks with any URL it
    makes up, and nothing may be sent there (the deliveries are still queued in the
    database, as a real app would). Without ``background``, also without the alert
    services (watchdog, relay, escalation): they change trips and alerts on their own
    clock, and the fuzz tests check that each refused request changed nothing."""
    app = create_app(settings)
    app.state.lifespan_hooks.remove(webhooks.webhook_task)
    if not background:
        app.state.lifespan_hooks.remove(alert_background.alert_services)
    return app


@dataclass(frozen=True)
class Account:
    id: int
    name: str
    role: Role
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


PEOPLE: Final[Mapping[str, tuple[Role, str, str]]] = {
    # name: role, display name, contact (the personal data the privacy tests look for)
    "ana": (Role.TRAVELLER, "Ana Pérez Ocampo", "+52 777 123 4567"),
    "diego": (Role.DISPATCHER, "Diego Salgado Ruiz", "+52 777 765 4321"),
    "root": (Role.ADMIN, "Rocío Administradora", "+52 777 000 1111"),
    "marta": (Role.MONITOR, "Marta Bahena Flores", "+52 777 222 3333"),
    "victima": (Role.MONITOR, "Víctor Desechable", "+52 777 999 8888"),
}
"""``victima`` exists to be disabled and to have tokens issued by the fuzzer."""


async def add_people(engine: AsyncEngine) -> dict[str, Account]:
    """The accounts of :data:`PEOPLE`, made as ``sigueme users add`` makes them."""
    accounts = {}
    async with sessionmaker(engine)() as session:
        for name, (role, display, contact) in PEOPLE.items():
            user, token = await add_user(session, name, role, display_name=display, contact=contact)
            accounts[name] = Account(user.id, name, role, token)
        await session.commit()
    return accounts


# -- what the database holds ---------------------------------------------------------------

TABLES: Final = (
    "users",
    "tokens",
    "trips",
    "fixes",
    "shares",
    "alerts",
    "alert_history",
    "risk_zones",
    "webhooks",
    "devices",
    "report_channels",
    "report_channel_members",
    "reports",
    "report_messages",
    "report_media",
    "audit_log",
)
"""Tables a request writes itself. Left out: the outbox, the police queue and webhook
deliveries, which the background relay fills after a request that was accepted."""


async def fingerprint(engine: AsyncEngine) -> dict[str, str]:
    """Per table, a digest of every row: equal fingerprints mean nothing was added,
    removed or changed."""
    out = {}
    async with engine.connect() as conn:
        for table in TABLES:
            rows = (await conn.execute(text(f"SELECT * FROM {table}"))).all()
            lines = sorted(repr(tuple(row)) for row in rows)
            out[table] = f"{len(rows)}:" + hashlib.sha256("\n".join(lines).encode()).hexdigest()
    return out


def changed(before: Mapping[str, str], after: Mapping[str, str]) -> list[str]:
    return [t for t in before if before[t] != after.get(t)]


async def counts(engine: AsyncEngine) -> dict[str, int]:
    async with engine.connect() as conn:
        return {
            t: int((await conn.execute(text(f"SELECT count(*) FROM {t}"))).scalar_one())
            for t in TABLES
        }


def fuzz_engine(database_url: str) -> AsyncEngine:
    """An engine of the test's own on the app's database (the app keeps its own)."""
    return make_engine(database_url)


@dataclass
class Fuzzed:
    """A started app, a client to it, its database, and who is in it."""

    app: FastAPI
    client: httpx.AsyncClient
    engine: AsyncEngine
    people: dict[str, Account]
    trip_id: str
    """Ana's trip, in progress (it left a minute ago, for an hour)."""


@dataclass
class Tally:
    """Cases per operation (or protocol), and what they were answered."""

    cases: dict[str, int] = field(default_factory=dict)
    statuses: dict[str, dict[int, int]] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)

    def add(self, what: str, status: int) -> None:
        self.cases[what] = self.cases.get(what, 0) + 1
        by = self.statuses.setdefault(what, {})
        by[status] = by.get(status, 0) + 1

    @property
    def total(self) -> int:
        return sum(self.cases.values())

    def report(self, name: str) -> str:
        """One line per operation: cases and answers (``pytest -s`` shows them)."""
        lines = [f"[fuzz] {name}: {self.total} cases in {time.monotonic() - self.started:.1f} s"]
        for what in sorted(self.cases):
            answers = ", ".join(f"{s}×{n}" for s, n in sorted(self.statuses[what].items()))
            lines.append(f"  {what}: {self.cases[what]} ({answers})")
        return "\n".join(lines)
