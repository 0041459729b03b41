"""Bearer tokens and accounts as a caller sees them: who gets in, who is told 401 or
403, and the admin routes. Both backends."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import httpx
import pytest
import shapely
from fastapi import FastAPI
from sqlalchemy import select, update

from sigueme.store.models import Role, Share, Token, Trip, User
from sigueme.store.tokens import new_link_token
from sigueme.store.users import revoke_token

if TYPE_CHECKING:  # the fixture's type, for readers and editors
    from tests.api.conftest import AddAccount

NON_ADMINS = [Role.TRAVELLER, Role.MONITOR, Role.DISPATCHER]


def assert_401(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == "Bearer"
    assert isinstance(response.json()["detail"], str)


# -- user tokens ---------------------------------------------------------------------------


async def test_missing_token_is_401_with_www_authenticate(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/me")
    assert_401(response)
    assert "Authorization: Bearer" in response.json()["detail"]


@pytest.mark.parametrize(
    "header",
    [
        "Bearer sgm_" + "x" * 43,  # well formed, never issued
        "Bearer sgl_" + "x" * 43,  # a link token never issued
        "Bearer not-a-sigueme-token",
        "Bearer " + "sgm_" + "a" * 5000,  # absurdly long
        "Basic YW5hOnNlY3JldA==",  # another scheme
        "Bearer",
    ],
)
async def test_wrong_token_is_401(
    client: httpx.AsyncClient, add_account: AddAccount, header: str
) -> None:
    await add_account("ana", Role.ADMIN)
    assert_401(await client.get("/v1/me", headers={"Authorization": header}))


async def test_a_valid_token_says_who_i_am(
    client: httpx.AsyncClient, add_account: AddAccount
) -> None:
    ana = await add_account("ana", Role.TRAVELLER, display_name="Ana López")
    response = await client.get("/v1/me", headers=ana.headers)
    assert response.status_code == 200
    assert response.json() == {
        "kind": "user",
        "name": "ana",
        "role": "traveller",
        "user_id": ana.id,
        "display_name": "Ana López",
        "trip_id": None,
        "expires_at": None,
    }


async def test_only_the_tokens_hash_is_stored(app: FastAPI, add_account: AddAccount) -> None:
    ana = await add_account("ana")
    assert ana.token.startswith("sgm_")
    async with app.state.sessions() as session:
        hashes = (await session.execute(select(Token.token_hash))).scalars().all()
    assert hashes == [hashlib.sha256(ana.token.encode()).hexdigest()]
    assert ana.token not in hashes


async def test_a_revoked_token_is_401(
    app: FastAPI, client: httpx.AsyncClient, add_account: AddAccount
) -> None:
    ana = await add_account("ana")
    assert (await client.get("/v1/me", headers=ana.headers)).status_code == 200
    async with app.state.sessions() as session:
        assert await revoke_token(session, ana.token)
        await session.commit()
    assert_401(await client.get("/v1/me", headers=ana.headers))


async def test_a_disabled_users_tokens_are_401(
    app: FastAPI, client: httpx.AsyncClient, add_account: AddAccount
) -> None:
    admin = await add_account("root", Role.ADMIN)
    beto = await add_account("beto", Role.MONITOR)
    response = await client.post("/v1/users/beto/disable", headers=admin.headers)
    assert response.status_code == 200
    assert response.json()["user"]["disabled"] is True
    assert response.json()["tokens_revoked"] == 1
    assert_401(await client.get("/v1/me", headers=beto.headers))
    # Even a token that escaped revocation opens nothing while the user is disabled.
    async with app.state.sessions() as session:
        await session.execute(update(Token).values(revoked_at=None))
        await session.commit()
    assert_401(await client.get("/v1/me", headers=beto.headers))
    assert (await client.get("/v1/me", headers=admin.headers)).status_code == 200


# -- share links ---------------------------------------------------------------------------


def _trip(owner_id: int, label: str) -> Trip:
    route = shapely.LineString([(-99.23, 18.92), (-99.22, 18.91), (-99.20, 18.90)])
    return Trip(
        owner_id=owner_id,
        label=label,
        route=route,
        corridor=route.buffer(0.001),
        route_length_m=3000.0,
        corridor_m=150.0,
        destination_radius_m=100.0,
        departure=datetime(2026, 5, 28, 14, tzinfo=UTC),
        arrival=datetime(2026, 5, 28, 15, tzinfo=UTC),
        min_lon=-99.24,
        min_lat=18.89,
        max_lon=-99.19,
        max_lat=18.93,
    )


async def _share_link(app: FastAPI, label: str | None) -> tuple[str, int, str, str]:
    """A traveller with two trips and a link to the first: (token, share id, the
    shared trip's id, the other trip's id)."""
    token, token_hash = new_link_token()
    async with app.state.sessions() as session:
        owner = User(name="viajera", role=Role.TRAVELLER.value)
        session.add(owner)
        await session.flush()
        shared, other = _trip(owner.id, "ida"), _trip(owner.id, "vuelta")
        session.add_all([shared, other])
        await session.flush()
        share = Share(
            trip_id=shared.id,
            token_hash=token_hash,
            label=label,
            created_by=owner.id,
            expires_at=datetime.now(UTC) + timedelta(hours=1),
        )
        session.add(share)
        await session.commit()
        return token, share.id, shared.id, other.id


async def _set_share(app: FastAPI, share_id: int, **values: object) -> None:
    async with app.state.sessions() as session:
        await session.execute(update(Share).where(Share.id == share_id).values(**values))
        await session.commit()


@pytest.mark.parametrize(("label", "name"), [("Familia", "Familia"), (None, "enlace")])
async def test_a_share_link_opens_its_trip_only(
    app: FastAPI, client: httpx.AsyncClient, label: str | None, name: str
) -> None:
    token, _, shared_id, other_id = await _share_link(app, label)
    assert token.startswith("sgl_")
    headers = {"Authorization": f"Bearer {token}"}
    response = await client.get("/v1/me", headers=headers)
    assert response.status_code == 200
    me = response.json()
    expires_at = me.pop("expires_at")
    assert me == {
        "kind": "link",
        "name": name,
        "role": None,
        "user_id": None,
        "display_name": None,
        "trip_id": shared_id,
    }
    # The page can say until when the link works.
    assert datetime.fromisoformat(expires_at) > datetime.now(UTC)
    assert me["trip_id"] != other_id
    # A link is no user: routes for users answer 403, not the data.
    response = await client.get("/v1/users", headers=headers)
    assert response.status_code == 403
    assert "share link" in response.json()["detail"]


async def test_a_share_link_stops_at_expiry(app: FastAPI, client: httpx.AsyncClient) -> None:
    token, share_id, _, _ = await _share_link(app, "Familia")
    headers = {"Authorization": f"Bearer {token}"}
    assert (await client.get("/v1/me", headers=headers)).status_code == 200
    await _set_share(app, share_id, expires_at=datetime.now(UTC) - timedelta(seconds=1))
    assert_401(await client.get("/v1/me", headers=headers))


async def test_a_share_link_stops_when_revoked(app: FastAPI, client: httpx.AsyncClient) -> None:
    token, share_id, _, _ = await _share_link(app, "Familia")
    headers = {"Authorization": f"Bearer {token}"}
    assert (await client.get("/v1/me", headers=headers)).status_code == 200
    await _set_share(app, share_id, revoked_at=datetime.now(UTC))
    assert_401(await client.get("/v1/me", headers=headers))


async def test_a_user_token_is_not_a_link_and_vice_versa(
    app: FastAPI, client: httpx.AsyncClient, add_account: AddAccount
) -> None:
    """The prefix selects the table: a link's hash in the tokens table opens nothing."""
    ana = await add_account("ana")
    link = "sgl_" + ana.token.removeprefix("sgm_")
    assert_401(await client.get("/v1/me", headers={"Authorization": f"Bearer {link}"}))


# -- admin routes --------------------------------------------------------------------------

ADMIN_ROUTES = [
    ("GET", "/v1/users", None),
    ("POST", "/v1/users", {"name": "nuevo", "role": "traveller"}),
    ("POST", "/v1/users/ana/disable", None),
    ("POST", "/v1/users/ana/tokens", {"label": "phone"}),
]


@pytest.mark.parametrize("role", NON_ADMINS)
@pytest.mark.parametrize(("method", "path", "body"), ADMIN_ROUTES)
async def test_admin_routes_are_403_for_other_roles(
    app: FastAPI,
    client: httpx.AsyncClient,
    add_account: AddAccount,
    role: Role,
    method: str,
    path: str,
    body: dict[str, str] | None,
) -> None:
    await add_account("ana")
    caller = await add_account("caller", role)
    response = await client.request(method, path, headers=caller.headers, json=body)
    assert response.status_code == 403
    assert "admin" in response.json()["detail"]
    # ... and changed nothing.
    async with app.state.sessions() as session:
        users = (await session.execute(select(User).order_by(User.name))).scalars().all()
        tokens = (await session.execute(select(Token))).scalars().all()
    assert [(u.name, u.disabled) for u in users] == [("ana", False), ("caller", False)]
    assert len(tokens) == 2


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_ROUTES)
async def test_admin_routes_are_401_without_a_token(
    client: httpx.AsyncClient, method: str, path: str, body: dict[str, str] | None
) -> None:
    assert_401(await client.request(method, path, json=body))


async def test_an_admin_enrols_a_user_whose_token_works(
    client: httpx.AsyncClient, add_account: AddAccount
) -> None:
    admin = await add_account("root", Role.ADMIN)
    response = await client.post(
        "/v1/users",
        headers=admin.headers,
        json={
            "name": "carla",
            "role": "dispatcher",
            "display_name": "Carla Ruiz",
            "contact": "+52 777 000 0000",
            "profile": "official",
        },
    )
    assert response.status_code == 201
    created = response.json()
    assert created["user"]["name"] == "carla"
    assert created["user"]["role"] == "dispatcher"
    assert created["user"]["disabled"] is False
    carla = {"Authorization": f"Bearer {created['token']}"}
    me = (await client.get("/v1/me", headers=carla)).json()
    assert (me["name"], me["role"], me["display_name"]) == ("carla", "dispatcher", "Carla Ruiz")

    listed = (await client.get("/v1/users", headers=admin.headers)).json()
    assert [u["name"] for u in listed] == ["carla", "root"]
    assert "token" not in listed[0]

    # A second token works beside the first.
    response = await client.post(
        "/v1/users/carla/tokens", headers=admin.headers, json={"label": "tablet"}
    )
    assert response.status_code == 201
    second = {"Authorization": f"Bearer {response.json()['token']}"}
    assert response.json()["token"] != created["token"]
    for headers in (carla, second):
        assert (await client.get("/v1/me", headers=headers)).status_code == 200


async def test_admin_user_errors(client: httpx.AsyncClient, add_account: AddAccount) -> None:
    admin = await add_account("root", Role.ADMIN)
    await add_account("ana")
    h = admin.headers

    response = await client.post("/v1/users", headers=h, json={"name": "ana", "role": "monitor"})
    assert response.status_code == 409
    assert "already exists" in response.json()["detail"]

    response = await client.post("/v1/users", headers=h, json={"name": "a b", "role": "monitor"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "name"]

    response = await client.post("/v1/users", headers=h, json={"name": "x", "role": "boss"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "role"]

    response = await client.post("/v1/users/nadie/disable", headers=h)
    assert response.status_code == 404
    response = await client.post("/v1/users/nadie/tokens", headers=h)
    assert response.status_code == 404

    response = await client.post("/v1/users/root/disable", headers=h)
    assert response.status_code == 409
    assert (await client.get("/v1/me", headers=h)).status_code == 200

    assert (await client.post("/v1/users/ana/disable", headers=h)).status_code == 200
    response = await client.post("/v1/users/ana/tokens", headers=h)
    assert response.status_code == 409
    assert "disabled" in response.json()["detail"]
