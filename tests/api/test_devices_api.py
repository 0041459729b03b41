"""The device API: registering a tracker app (the secret and the app's settings, once),
listing, rotating and revoking, and who may do each."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from tracker_world import Api, tracker_api
from trip_world import PUBLIC_URL

from sigueme.store.models import Device


@pytest_asyncio.fixture(loop_scope="session")
async def api(database_url: str) -> AsyncIterator[Api]:
    async with tracker_api(database_url) as api:
        yield api


async def test_register_a_traccar_client_for_a_trip(api: Api) -> None:
    ana = await api.user("ana")
    trip_id = await api.file_trip(ana)

    response = await api.client.post(
        "/v1/devices",
        json={"protocol": "osmand", "device_id": "48241179", "trip_id": trip_id},
        headers=ana,
    )

    assert response.status_code == 201, response.text
    body = response.json()
    assert response.headers["Location"] == f"/v1/devices/{body['id']}"
    secret = body["secret"]
    assert secret.startswith("sgd_")
    assert body["app"] == {
        "app": "Traccar Client",
        "settings": {
            "Device identifier": "48241179",
            "Server URL": f"{PUBLIC_URL}/osmand/{secret}",
        },
        "notes": body["app"]["notes"],
    }
    assert (body["protocol"], body["device_id"], body["trip_id"], body["user"]) == (
        "osmand",
        "48241179",
        trip_id,
        None,
    )
    assert body["active"] is True
    assert body["revoked_at"] is None
    async with api.app.state.sessions() as session:
        stored = await session.get(Device, body["id"])
        assert stored is not None
        assert secret not in stored.secret_hash


async def test_register_owntracks_for_me(api: Api) -> None:
    ana = await api.user("ana")

    body = await api.register(ana, protocol="owntracks", device_id="ana/pixel", for_me=True)

    assert (body["trip_id"], body["user"]) == (None, "ana")
    assert body["app"]["app"] == "OwnTracks"
    assert body["app"]["settings"] == {
        "Mode": "HTTP",
        "URL": f"{PUBLIC_URL}/owntracks",
        "Authentication": "on",
        "Username": "ana",
        "Password": body["secret"],
        "Device ID": "pixel",
    }


async def test_an_admin_binds_a_device_to_a_traveller(api: Api) -> None:
    await api.user("ana")
    root = await api.user("root", "admin")
    body = await api.register(root, protocol="osmand", device_id="777", user="ana")
    assert body["user"] == "ana"


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"protocol": "osmand", "device_id": "1"}, ["body", "trip_id"]),
        (
            {"protocol": "osmand", "device_id": "1", "for_me": True, "trip_id": "x"},
            ["body", "trip_id"],
        ),
        ({"protocol": "osmand", "device_id": "1", "user": "ana"}, ["body", "user"]),
        ({"protocol": "osmand", "device_id": "1", "trip_id": "nope"}, ["body", "trip_id"]),
        ({"protocol": "osmand", "device_id": " 1", "for_me": True}, ["body", "device_id"]),
        ({"protocol": "owntracks", "device_id": "ana/", "for_me": True}, ["body", "device_id"]),
        ({"protocol": "gt06", "device_id": "1", "for_me": True}, ["body", "protocol"]),
        ({"protocol": "osmand", "device_id": "", "for_me": True}, ["body", "device_id"]),
        ({"protocol": "osmand", "device_id": "1", "for_me": True, "x": 1}, ["body", "x"]),
    ],
)
async def test_bad_registrations_name_the_field(
    api: Api, body: dict[str, Any], loc: list[str]
) -> None:
    ana = await api.user("ana")
    response = await api.client.post("/v1/devices", json=body, headers=ana)
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == loc


async def test_a_taken_identifier_is_a_conflict(api: Api) -> None:
    ana = await api.user("ana")
    beto = await api.user("beto")
    await api.register(ana, protocol="osmand", device_id="1", for_me=True)
    response = await api.client.post(
        "/v1/devices", json={"protocol": "osmand", "device_id": "1", "for_me": True}, headers=beto
    )
    assert response.status_code == 409
    assert "already registered" in response.json()["detail"]


async def test_who_may_register_for_a_trip(api: Api) -> None:
    ana = await api.user("ana")
    beto = await api.user("beto")
    marta = await api.user("marta", "monitor")
    root = await api.user("root", "admin")
    trip_id = await api.file_trip(ana)
    share = await api.client.post(
        f"/v1/trips/{trip_id}/shares", json={"user": "marta", "hours": 2}, headers=ana
    )
    assert share.status_code == 201
    link = await api.client.post(f"/v1/trips/{trip_id}/links", json={"hours": 2}, headers=ana)
    link_auth = {"Authorization": f"Bearer {link.json()['token']}"}

    async def attempt(headers: dict[str, str], device_id: str) -> int:
        response = await api.client.post(
            "/v1/devices",
            json={"protocol": "osmand", "device_id": device_id, "trip_id": trip_id},
            headers=headers,
        )
        return response.status_code

    assert await attempt(beto, "b") == 422  # he does not see it: no such trip
    assert await attempt(marta, "m") == 403  # she sees it, it is not hers
    assert await attempt(link_auth, "l") == 403
    assert await attempt({}, "n") == 401
    assert await attempt(root, "r") == 201
    assert await attempt(ana, "a") == 201
    finished = await api.client.post(f"/v1/trips/{trip_id}/finish", headers=ana)
    assert finished.status_code == 200
    assert await attempt(ana, "a2") == 409


async def test_a_monitor_cannot_bind_devices_to_themselves(api: Api) -> None:
    marta = await api.user("marta", "monitor")
    response = await api.client.post(
        "/v1/devices", json={"protocol": "osmand", "device_id": "m", "for_me": True}, headers=marta
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "user"]


async def test_listing_rotating_and_revoking(api: Api) -> None:
    ana = await api.user("ana")
    beto = await api.user("beto")
    root = await api.user("root", "admin")
    trip_id = await api.file_trip(ana)
    first = await api.register(ana, protocol="osmand", device_id="a1", trip_id=trip_id)
    second = await api.register(ana, protocol="owntracks", device_id="ana", for_me=True)
    betos = await api.register(beto, protocol="osmand", device_id="b1", for_me=True)

    async def listed(headers: dict[str, str]) -> set[int]:
        response = await api.client.get("/v1/devices", headers=headers)
        assert response.status_code == 200
        devices = response.json()["devices"]
        assert all("secret" not in d for d in devices)
        return {d["id"] for d in devices}

    assert await listed(ana) == {first["id"], second["id"]}
    assert await listed(beto) == {betos["id"]}
    assert await listed(root) == {first["id"], second["id"], betos["id"]}

    # Beto may not touch Ana's devices: they do not exist for him.
    rotate = f"/v1/devices/{first['id']}/rotate"
    assert (await api.client.post(rotate, headers=beto)).status_code == 404
    assert (await api.client.delete(f"/v1/devices/{first['id']}", headers=beto)).status_code == 404
    assert (await api.client.delete("/v1/devices/999999", headers=ana)).status_code == 404

    rotated = await api.client.post(f"/v1/devices/{first['id']}/rotate", headers=ana)
    assert rotated.status_code == 200
    new = rotated.json()
    assert new["secret"] != first["secret"]
    assert new["rotated_at"] is not None
    assert new["app"]["settings"]["Server URL"] == f"{PUBLIC_URL}/osmand/{new['secret']}"
    by_admin = await api.client.post(f"/v1/devices/{second['id']}/rotate", headers=root)
    assert by_admin.status_code == 200

    revoked = await api.client.delete(f"/v1/devices/{first['id']}", headers=ana)
    assert revoked.status_code == 200
    assert revoked.json()["active"] is False
    again = await api.client.delete(f"/v1/devices/{first['id']}", headers=ana)
    assert again.json()["revoked_at"] == revoked.json()["revoked_at"]
    assert (
        await api.client.post(f"/v1/devices/{first['id']}/rotate", headers=ana)
    ).status_code == 409
    assert first["id"] in await listed(ana)  # revoked devices are still listed
    assert (await api.client.delete(f"/v1/devices/{betos['id']}", headers=root)).status_code == 200


async def test_the_openapi_schema_documents_devices_and_tracker_apps(api: Api) -> None:
    response = await api.client.get("/openapi.json")
    assert response.status_code == 200
    schema = response.json()
    assert {"/v1/devices", "/v1/devices/{id}", "/v1/devices/{id}/rotate"} <= set(schema["paths"])
    assert set(schema["paths"]["/osmand/{secret}"]) == {"get", "post"}
    assert "/owntracks" in schema["paths"]
    assert schema["components"]["securitySchemes"]["HTTPBasic"]["scheme"] == "basic"
