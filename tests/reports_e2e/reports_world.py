"""A running app for the reports' tests, and what they do with it: accounts, signed
WhatsApp notifications, counts of what the database holds, the evidence on disk.

Imported by the tests of this folder (``from reports_world import ...``)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from graph_standin import GraphStandin, notification, signed
from pydantic import SecretStr
from sqlalchemy import func, select

from sigueme.api.app import create_app
from sigueme.geo import Route, TripPlan
from sigueme.settings import Settings
from sigueme.store.models import (
    Alert,
    AlertHistory,
    AlertOutbox,
    AuditLog,
    PoliceQueueEntry,
    Report,
    ReportMedia,
    ReportMessage,
    Role,
)
from sigueme.store.trips import create_trip
from sigueme.store.users import add_user

APP_SECRET = "secreto-de-la-app-de-prueba"
VERIFY_TOKEN = "ficha-de-verificacion"
PUBLIC_URL = "https://sigueme.example.mx"
WEBHOOK = "/webhooks/whatsapp"
# About 3.1 km through Cuernavaca, Morelos, [lon, lat].
ROUTE = [[-99.2340, 18.9210], [-99.2280, 18.9150], [-99.2200, 18.9100], [-99.2100, 18.9050]]


@dataclass(frozen=True)
class Account:
    id: int
    name: str
    role: Role
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class Desk:
    app: FastAPI
    client: httpx.AsyncClient
    evidence_dir: Path
    graph: GraphStandin

    async def account(self, name: str, role: Role = Role.TRAVELLER, **fields: str) -> Account:
        async with self.app.state.sessions() as session:
            user, token = await add_user(session, name, role, **fields)
            await session.commit()
        return Account(user.id, user.name, role, token)

    # -- WhatsApp --------------------------------------------------------------------------

    async def webhook(self, *messages: dict[str, Any], **kw: Any) -> httpx.Response:
        """A notification holding ``messages``, signed as Meta signs it, posted."""
        body, headers = signed(APP_SECRET, notification(*messages, **kw))
        return await self.client.post(WEBHOOK, content=body, headers=headers)

    async def raw_webhook(self, body: bytes, headers: dict[str, str]) -> httpx.Response:
        return await self.client.post(WEBHOOK, content=body, headers=headers)

    def replies(self) -> list[str]:
        """The text replies the stand-in received, in order."""
        return [m["text"]["body"] for m in self.graph.sent]

    # -- what is stored ----------------------------------------------------------------------

    async def count(self, model: Any, *where: Any) -> int:
        async with self.app.state.sessions() as session:
            value = await session.scalar(select(func.count()).select_from(model).where(*where))
        return int(value or 0)

    async def totals(self) -> dict[str, int]:
        """How many rows of each kind a report leaves behind."""
        return {
            "reports": await self.count(Report),
            "messages": await self.count(ReportMessage),
            "media": await self.count(ReportMedia),
            "alerts": await self.count(Alert),
            "history": await self.count(AlertHistory),
            "outbox": await self.count(AlertOutbox),
        }

    async def reports(self) -> list[Report]:
        async with self.app.state.sessions() as session:
            return list((await session.scalars(select(Report).order_by(Report.id))).all())

    async def media(self, report_id: int) -> list[ReportMedia]:
        async with self.app.state.sessions() as session:
            rows = await session.scalars(
                select(ReportMedia)
                .where(ReportMedia.report_id == report_id)
                .order_by(ReportMedia.id)
            )
            return list(rows.all())

    async def alert_of(self, report_id: int) -> Alert:
        async with self.app.state.sessions() as session:
            alert = await session.scalar(select(Alert).where(Alert.report_id == report_id))
            assert alert is not None
            return alert

    async def history(self, alert_id: str) -> list[tuple[str, bool]]:
        """(action, police_only) of an alert's history, in order."""
        async with self.app.state.sessions() as session:
            rows = await session.execute(
                select(AlertHistory.action, AlertHistory.police_only)
                .where(AlertHistory.alert_id == alert_id)
                .order_by(AlertHistory.at, AlertHistory.id)
            )
            return [(a, p) for a, p in rows.all()]

    async def audit(self, report_id: int) -> list[tuple[int | None, str]]:
        async with self.app.state.sessions() as session:
            rows = await session.execute(
                select(AuditLog.user_id, AuditLog.action)
                .where(AuditLog.trip_id == f"report:{report_id}")
                .order_by(AuditLog.id)
            )
            return [(u, a) for u, a in rows.all()]

    async def queued(self, alert_id: str, *, timeout_s: float = 10.0) -> dict[str, Any]:
        """The first police queue entry of ``alert_id``, once the relay has put it there."""
        deadline = time.monotonic() + timeout_s
        while True:
            async with self.app.state.sessions() as session:
                rows = await session.scalars(select(PoliceQueueEntry).order_by(PoliceQueueEntry.id))
                for row in rows.all():
                    if row.fields.get("alert_id") == alert_id:
                        return dict(row.fields)
            assert time.monotonic() < deadline, "not on the police queue"
            await asyncio.sleep(0.05)

    def evidence_files(self) -> list[Path]:
        if not self.evidence_dir.exists():
            return []
        return sorted(p for p in self.evidence_dir.rglob("*") if p.is_file())

    # -- the API -------------------------------------------------------------------------------

    async def channel(self, admin: Account, name: str, *members: Account) -> int:
        r = await self.client.post(
            "/v1/channels",
            json={"name": name, "kind": "municipality", "description": f"Canal {name}"},
            headers=admin.headers,
        )
        assert r.status_code == 201, r.text
        channel_id: int = r.json()["id"]
        for member in members:
            r = await self.client.put(
                f"/v1/channels/{channel_id}/members/{member.name}", headers=admin.headers
            )
            assert r.status_code == 204, r.text
        return channel_id

    async def file_report(
        self,
        who: Account,
        fields: dict[str, Any],
        files: list[tuple[str, bytes, str]] | None = None,
    ) -> httpx.Response:
        """``POST /v1/reports`` as multipart: ``files`` as (filename, bytes, type)."""
        data = {k: v if isinstance(v, str) else json.dumps(v) for k, v in fields.items()}
        upload = [("media", f) for f in files or []]
        return await self.client.post(
            "/v1/reports", data=data, files=upload or None, headers=who.headers
        )

    async def alerts(self, who: Account) -> httpx.Response:
        return await self.client.get("/v1/alerts", headers=who.headers)

    async def trip(self, owner: Account, *, last: tuple[float, float] | None = None) -> str:
        """A trip of ``owner`` in progress (from now, 30 minutes), with its last position
        (lon, lat) when given."""
        now = time.time()
        plan = TripPlan(route=Route(ROUTE), departure=now, arrival=now + 1800)
        async with self.app.state.sessions() as session:
            trip = await create_trip(
                session, owner_id=owner.id, plan=plan, overrides={}, label="Mitin"
            )
            if last is not None:
                trip.last_lon, trip.last_lat = last
                trip.last_fix_at = datetime.now(UTC)
            await session.commit()
            return trip.id


@asynccontextmanager
async def running_desk(
    database_url: str,
    evidence_dir: Path,
    graph: GraphStandin,
    **settings: Any,
) -> AsyncIterator[Desk]:
    """The app on ``database_url``, started, with WhatsApp pointed at ``graph`` (unless
    ``settings`` say otherwise), and a client for it."""
    values: dict[str, Any] = {
        "database_url": SecretStr(database_url),
        "public_url": PUBLIC_URL,
        "evidence_dir": str(evidence_dir),
        "whatsapp_verify_token": SecretStr(VERIFY_TOKEN),
        "whatsapp_app_secret": SecretStr(APP_SECRET),
        "whatsapp_access_token": SecretStr(graph.access_token),
        "whatsapp_graph_url": graph.base_url,
        "whatsapp_api_version": graph.api_version,
    }
    values.update(settings)
    app = create_app(Settings(**values))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://sigueme.test") as c:
            yield Desk(app, c, evidence_dir, graph)
