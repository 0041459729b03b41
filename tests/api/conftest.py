"""API fixtures: a started app on each backend, an HTTP client to it, and accounts.

The app runs its real lifespan (engine, schema check, session factory) on the
``database_url`` of the test, and the client talks to it in process (httpx's
ASGITransport), on the test's own event loop.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI
from pydantic import SecretStr

from sigueme.api.app import create_app
from sigueme.settings import Settings
from sigueme.store.models import Role
from sigueme.store.users import add_user


@pytest_asyncio.fixture(loop_scope="session")
async def app(database_url: str) -> AsyncIterator[FastAPI]:
    """The Sígueme app, started (lifespan entered) on the test's database."""
    application = create_app(Settings(database_url=SecretStr(database_url)))
    async with application.router.lifespan_context(application):
        yield application


@pytest_asyncio.fixture(loop_scope="session")
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://sigueme.test") as c:
        yield c


@dataclass(frozen=True)
class Account:
    """A user made for a test, with a working API token."""

    id: int
    name: str
    role: Role
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


AddAccount = Callable[..., Awaitable[Account]]


@pytest.fixture
def add_account(app: FastAPI) -> AddAccount:
    """``await add_account("ana", Role.TRAVELLER)``: a user in the app's database."""

    async def _add(name: str, role: Role = Role.TRAVELLER, **fields: str) -> Account:
        async with app.state.sessions() as session:
            user, token = await add_user(session, name, role, **fields)
            await session.commit()
        return Account(id=user.id, name=user.name, role=role, token=token)

    return _add
