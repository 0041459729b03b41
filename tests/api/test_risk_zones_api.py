"""The risk-zone API on both backends: admins add and deactivate zones, admins and
dispatchers read them, refused outlines answer 422 naming the field and change nothing,
and the worker's index sees every change at once."""

from __future__ import annotations

import json
import math
import time
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from fastapi import FastAPI

from sigueme.services.risk_zones import RiskZoneIndex
from sigueme.store.models import Role

if TYPE_CHECKING:  # the fixtures' types, for readers and editors
    from tests.api.conftest import Account, AddAccount

# About 1 km by 1 km in Cuernavaca, Morelos, clockwise, and a hole in it.
SQUARE = [[-99.24, 18.91], [-99.24, 18.92], [-99.23, 18.92], [-99.23, 18.91], [-99.24, 18.91]]
HOLE = [
    [-99.237, 18.913],
    [-99.233, 18.913],
    [-99.233, 18.917],
    [-99.237, 18.917],
    [-99.237, 18.913],
]
INSIDE = (-99.239, 18.919)


def zone_body(name: str = "Antonio Barona", **area: Any) -> dict[str, Any]:
    return {"name": name, "area": {"type": "Polygon", "coordinates": [SQUARE], **area}}


def circle(n: int, radius_deg: float = 0.01) -> list[list[float]]:
    ring = [
        [
            -99.2 + radius_deg * math.cos(2 * math.pi * i / (n - 1)),
            18.9 + radius_deg * math.sin(2 * math.pi * i / (n - 1)),
        ]
        for i in range(n - 1)
    ]
    return [*ring, ring[0]]


async def _listed(client: httpx.AsyncClient, who: Account) -> list[dict[str, Any]]:
    response = await client.get("/v1/risk-zones?include_inactive=true", headers=who.headers)
    assert response.status_code == 200, response.text
    features: list[dict[str, Any]] = response.json()["features"]
    return features


async def test_an_admin_adds_a_zone(client: httpx.AsyncClient, add_account: AddAccount) -> None:
    root = await add_account("root", Role.ADMIN)

    response = await client.post(
        "/v1/risk-zones", json=zone_body(coordinates=[SQUARE, HOLE]), headers=root.headers
    )

    assert response.status_code == 201, response.text
    assert response.headers["content-type"] == "application/geo+json"
    feature = response.json()
    zone_id = feature["id"]
    assert response.headers["Location"] == f"/v1/risk-zones/{zone_id}"
    assert feature["type"] == "Feature"
    assert feature["bbox"] == pytest.approx([-99.24, 18.91, -99.23, 18.92])
    assert feature["properties"] == {
        "name": "Antonio Barona",
        "active": True,
        "created_by": "root",
        "created_at": feature["properties"]["created_at"],
        "url": f"/v1/risk-zones/{zone_id}",
    }
    geometry = feature["geometry"]
    assert geometry["type"] == "Polygon"
    # The outline comes back counter-clockwise, the hole clockwise (RFC 7946).
    assert [tuple(p) for p in geometry["coordinates"][0]] == [tuple(p) for p in reversed(SQUARE)]
    assert [tuple(p) for p in geometry["coordinates"][1]] == [tuple(p) for p in reversed(HOLE)]

    again = await client.get(f"/v1/risk-zones/{zone_id}", headers=root.headers)
    assert again.status_code == 200
    assert again.json() == feature


async def test_the_workers_index_sees_changes_at_once(
    app: FastAPI, client: httpx.AsyncClient, add_account: AddAccount
) -> None:
    root = await add_account("root", Role.ADMIN)
    index: RiskZoneIndex = app.state.risk_zones
    now = time.monotonic()
    await index.refresh(app.state.sessions, now=now)
    assert index.zones_at(*INSIDE) == []

    created = await client.post("/v1/risk-zones", json=zone_body(), headers=root.headers)
    assert created.status_code == 201
    zone_id = created.json()["id"]
    # The same instant: well within the time to live, yet the new zone is there.
    assert await index.refresh(app.state.sessions, now=now)
    assert [(h.id, h.name) for h in index.zones_at(*INSIDE)] == [(zone_id, "Antonio Barona")]

    deleted = await client.delete(f"/v1/risk-zones/{zone_id}", headers=root.headers)
    assert deleted.status_code == 200
    assert deleted.json()["properties"]["active"] is False
    assert await index.refresh(app.state.sessions, now=now)
    assert index.zones_at(*INSIDE) == []


async def test_deactivated_zones_are_listed_only_when_asked(
    client: httpx.AsyncClient, add_account: AddAccount
) -> None:
    root = await add_account("root", Role.ADMIN)
    ids = []
    for name in ("uno", "dos"):
        created = await client.post("/v1/risk-zones", json=zone_body(name), headers=root.headers)
        ids.append(created.json()["id"])
    first = await client.delete(f"/v1/risk-zones/{ids[0]}", headers=root.headers)
    second = await client.delete(f"/v1/risk-zones/{ids[0]}", headers=root.headers)
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json()

    active = await client.get("/v1/risk-zones", headers=root.headers)
    assert active.status_code == 200
    assert active.headers["content-type"] == "application/geo+json"
    assert active.json()["type"] == "FeatureCollection"
    assert [f["id"] for f in active.json()["features"]] == [ids[1]]
    assert [(f["id"], f["properties"]["active"]) for f in await _listed(client, root)] == [
        (ids[0], False),
        (ids[1], True),
    ]
    stored = await client.get(f"/v1/risk-zones/{ids[0]}", headers=root.headers)
    assert stored.json()["properties"]["active"] is False


async def test_an_unknown_zone_is_not_found(
    client: httpx.AsyncClient, add_account: AddAccount
) -> None:
    root = await add_account("root", Role.ADMIN)
    for method in ("GET", "DELETE"):
        response = await client.request(method, "/v1/risk-zones/999", headers=root.headers)
        assert response.status_code == 404, method
        assert response.json() == {"detail": "no such risk zone"}
    response = await client.get("/v1/risk-zones/0", headers=root.headers)
    assert response.status_code == 422


# -- refused outlines --------------------------------------------------------------------

BOWTIE = [[-99.24, 18.91], [-99.23, 18.92], [-99.23, 18.91], [-99.24, 18.92], [-99.24, 18.91]]


def _replace(i: int, position: Any) -> list[Any]:
    ring: list[Any] = [list(p) for p in SQUARE]
    ring[i] = position
    return ring


@pytest.mark.parametrize(
    ("body", "loc", "reason"),
    [
        pytest.param(
            zone_body(coordinates=[BOWTIE]),
            ["body", "area", "coordinates"],
            "self-intersects near [-99.235, 18.915]",
            id="bowtie",
        ),
        pytest.param(
            zone_body(coordinates=[circle(5_001)]),
            ["body", "area", "coordinates", 0],
            "at most 5000",
            id="too-many-vertices-in-a-ring",
        ),
        pytest.param(
            zone_body(coordinates=[circle(4_000), circle(1_001, 0.001)]),
            ["body", "area", "coordinates"],
            "5001 positions; at most 5000",
            id="too-many-vertices-in-all",
        ),
        pytest.param(
            zone_body(coordinates=[_replace(2, [1e300, 18.92])]),
            ["body", "area", "coordinates", 0, 2],
            "longitude 1e+300 is outside [-180, 180]",
            id="huge-number",
        ),
        pytest.param(
            zone_body(coordinates=[_replace(2, [-99.23, 91])]),
            ["body", "area", "coordinates", 0, 2],
            "latitude 91 is outside [-90, 90]",
            id="latitude-over-90",
        ),
        pytest.param(
            zone_body(coordinates=[_replace(2, ["-99.23", 18.92])]),
            ["body", "area", "coordinates", 0, 2, 0],
            "valid number",
            id="string-coordinate",
        ),
        pytest.param(
            zone_body(coordinates=[_replace(2, [-99.23])]),
            ["body", "area", "coordinates", 0, 2],
            "at least 2",
            id="short-position",
        ),
        pytest.param(
            zone_body(coordinates=[[*SQUARE[:-1], [-99.24, 18.9101]]]),
            ["body", "area", "coordinates", 0],
            "not closed",
            id="unclosed-ring",
        ),
        pytest.param(
            zone_body(coordinates=[SQUARE[:3]]),
            ["body", "area", "coordinates", 0],
            "at least 4",
            id="three-positions",
        ),
        pytest.param(
            zone_body(
                coordinates=[
                    [
                        [-99.2, 18.9],
                        [-99.2, 18.90005],
                        [-99.19995, 18.90005],
                        [-99.19995, 18.9],
                        [-99.2, 18.9],
                    ]
                ]
            ),
            ["body", "area", "coordinates"],
            "at least 100 m²",
            id="too-small",
        ),
        pytest.param(
            zone_body(
                coordinates=[
                    [[-99.5, 18.5], [-99.5, 19.5], [-98.5, 19.5], [-98.5, 18.5], [-99.5, 18.5]]
                ]
            ),
            ["body", "area", "coordinates"],
            "at most 2,000 km²",
            id="too-large",
        ),
        pytest.param(
            {"name": "x", "area": {"type": "LineString", "coordinates": SQUARE}},
            ["body", "area"],
            "a GeoJSON Polygon is expected, got 'LineString'",
            id="linestring",
        ),
        pytest.param(
            {"name": "x", "area": {"type": "MultiPolygon", "coordinates": [[SQUARE]]}},
            ["body", "area"],
            "add each polygon as a zone of its own",
            id="multipolygon",
        ),
        pytest.param(
            {"name": "x", "area": {"type": "Feature", "geometry": None}},
            ["body", "area"],
            "got 'Feature'",
            id="feature",
        ),
        pytest.param({"name": "x"}, ["body", "area"], "required", id="no-area"),
        pytest.param(zone_body(name="   "), ["body", "name"], "printable", id="blank-name"),
        pytest.param(zone_body(name="x" * 201), ["body", "name"], "at most 200", id="long-name"),
        pytest.param(
            {**zone_body(), "colour": "red"}, ["body", "colour"], "not permitted", id="extra"
        ),
    ],
)
async def test_refused_outlines_name_the_field_and_store_nothing(
    client: httpx.AsyncClient,
    add_account: AddAccount,
    body: dict[str, Any],
    loc: list[str | int],
    reason: str,
) -> None:
    root = await add_account("root", Role.ADMIN)

    response = await client.post("/v1/risk-zones", json=body, headers=root.headers)

    assert response.status_code == 422, response.text
    [error] = response.json()["detail"]
    assert error["loc"] == loc
    assert reason in error["msg"]
    assert await _listed(client, root) == []


@pytest.mark.parametrize(
    ("number", "status", "reason"),
    [
        ("1e400", 422, "finite number"),
        ("NaN", 422, "finite number"),
        ("-Infinity", 422, "finite number"),
        ("1" * 400, 422, "valid number"),
        ("1" * 5000, 400, "error parsing the body"),
    ],
)
async def test_numbers_json_cannot_carry_are_refused(
    client: httpx.AsyncClient, add_account: AddAccount, number: str, status: int, reason: str
) -> None:
    """Python's JSON parser reads 1e400 as infinity and takes NaN; an integer of more
    than 4,300 digits it refuses to read at all (FastAPI's 400)."""
    root = await add_account("root", Role.ADMIN)
    text = json.dumps(zone_body()).replace("-99.23,", f"{number},", 1)

    response = await client.post(
        "/v1/risk-zones",
        content=text,
        headers={**root.headers, "Content-Type": "application/json"},
    )

    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert reason in (detail if isinstance(detail, str) else detail[0]["msg"])
    assert await _listed(client, root) == []


# -- who may -----------------------------------------------------------------------------


async def test_only_admins_change_zones(client: httpx.AsyncClient, add_account: AddAccount) -> None:
    root = await add_account("root", Role.ADMIN)
    created = await client.post("/v1/risk-zones", json=zone_body(), headers=root.headers)
    zone_id = created.json()["id"]

    for name, role in (("ana", Role.TRAVELLER), ("marta", Role.MONITOR), ("poli", Role.DISPATCHER)):
        who = await add_account(name, role)
        post = await client.post("/v1/risk-zones", json=zone_body(), headers=who.headers)
        assert post.status_code == 403, role
        assert post.json() == {"detail": "this needs the role admin"}
        delete = await client.delete(f"/v1/risk-zones/{zone_id}", headers=who.headers)
        assert delete.status_code == 403, role

    assert [(f["id"], f["properties"]["active"]) for f in await _listed(client, root)] == [
        (zone_id, True)
    ]


async def test_admins_and_dispatchers_read_zones(
    client: httpx.AsyncClient, add_account: AddAccount
) -> None:
    root = await add_account("root", Role.ADMIN)
    zone_id = (await client.post("/v1/risk-zones", json=zone_body(), headers=root.headers)).json()[
        "id"
    ]
    poli = await add_account("poli", Role.DISPATCHER)

    listed = await client.get("/v1/risk-zones", headers=poli.headers)
    assert listed.status_code == 200
    assert [f["id"] for f in listed.json()["features"]] == [zone_id]
    assert (await client.get(f"/v1/risk-zones/{zone_id}", headers=poli.headers)).status_code == 200

    for name, role in (("ana", Role.TRAVELLER), ("marta", Role.MONITOR)):
        who = await add_account(name, role)
        assert (await client.get("/v1/risk-zones", headers=who.headers)).status_code == 403
        one = await client.get(f"/v1/risk-zones/{zone_id}", headers=who.headers)
        assert one.status_code == 403


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/risk-zones"),
        ("GET", "/v1/risk-zones"),
        ("GET", "/v1/risk-zones/1"),
        ("DELETE", "/v1/risk-zones/1"),
    ],
)
@pytest.mark.parametrize("token", [None, "sgm_not-a-token"])
async def test_no_valid_token_is_401(
    client: httpx.AsyncClient, method: str, path: str, token: str | None
) -> None:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body = zone_body() if method == "POST" else None
    response = await client.request(method, path, json=body, headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
