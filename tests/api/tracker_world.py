"""A running app with the device and tracker-app routes, and helpers to register devices.

Imported by the device and tracker tests (``from tracker_world import ...``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import FastAPI
from pydantic import SecretStr
from trip_world import PUBLIC_URL, auth, trip_body

from sigueme.api.app import create_app
from sigueme.settings import Settings
from sigueme.store.users import add_user


@dataclass
class Api:
    client: httpx.AsyncClient
    app: FastAPI

    async def user(self, name: str, role: str = "traveller") -> dict[str, str]:
        async with self.app.state.sessions() as session:
            _, token = await add_user(session, name, role)
            await session.commit()
        return auth(token)

    async def file_trip(self, headers: dict[str, str], **changes: Any) -> str:
        response = await self.client.post("/v1/trips", json=trip_body(**changes), headers=headers)
        assert response.status_code == 201, response.text
        trip_id: str = response.json()["id"]
        return trip_id

    async def register(self, headers: dict[str, str], **body: Any) -> dict[str, Any]:
        response = await self.client.post("/v1/devices", json=body, headers=headers)
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        return created

    async def track(self, headers: dict[str, str], trip_id: str) -> list[dict[str, Any]]:
        """The fixes of the trip's track, as GET /v1/trips/{id}/track gives them."""
        response = await self.client.get(f"/v1/trips/{trip_id}/track", headers=headers)
        assert response.status_code == 200, response.text
        return [f for f in response.json()["features"] if f["properties"]["kind"] == "fix"]


@asynccontextmanager
async def tracker_api(database_url: str) -> AsyncIterator[Api]:
    app = create_app(Settings(database_url=SecretStr(database_url), public_url=PUBLIC_URL))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield Api(client, app)
