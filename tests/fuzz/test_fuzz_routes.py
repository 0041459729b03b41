"""Routes and labels through ``POST /v1/trips``, on both databases: routes past every
limit (20,001 vertices, zero length, under 10 m, over 500 km, coordinates that are not
numbers or not on Earth) are answered 422 naming the field, with a reason, and file
nothing; routes that are odd but real (crossing themselves, out and back, 20,000
vertices) are filed; labels in any script come back exactly as sent (trimmed)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from fuzz_world import ROUTE, Fuzzed, counts, examples
from hypothesis import given
from hypothesis import strategies as st
from junk import UNICODE, dumps

from sigueme.api.schemas import MAX_LABEL
from sigueme.geo.route import MAX_VERTICES

CUERNAVACA = (-99.2340, 18.9210)


def body(coordinates: Any = None, **changes: Any) -> dict[str, Any]:
    departure = datetime.now(UTC) + timedelta(minutes=10)
    trip: dict[str, Any] = {
        "route": {
            "type": "LineString",
            "coordinates": ROUTE if coordinates is None else coordinates,
        },
        "departure": departure.isoformat(),
        "duration_min": 600,
        "label": "Gira por Morelos",
    }
    trip.update(changes)
    return trip


def zigzag(n: int, step_deg: float = 0.0001) -> list[list[float]]:
    """``n`` vertices going east along a saw-tooth, ``step_deg`` apart (about 11 m)."""
    lon, lat = CUERNAVACA
    return [[lon + i * step_deg, lat + (step_deg if i % 2 else 0.0)] for i in range(n)]


async def _post(fuzzed: Fuzzed, trip: Any, *, raw: str | None = None) -> httpx.Response:
    headers = fuzzed.people["ana"].headers | {"content-type": "application/json"}
    content = raw if raw is not None else dumps(trip)
    return await fuzzed.client.post("/v1/trips", content=content, headers=headers)


def _reason(r: httpx.Response) -> tuple[list[Any], str]:
    assert r.status_code == 422, (r.status_code, r.text[:500])
    [first, *_] = r.json()["detail"]
    assert first["msg"], r.text
    return first["loc"], first["msg"]


async def test_routes_past_the_limits_are_refused_with_a_reason(fuzzed: Fuzzed) -> None:
    before = await counts(fuzzed.engine)
    lon, lat = CUERNAVACA
    refused = {
        "20,001 vertices": (zigzag(MAX_VERTICES + 1), "route"),
        "one point twice": ([[lon, lat], [lon, lat]], "route"),
        "one point, many times": ([[lon, lat]] * 50, "route"),
        "5 m long": ([[lon, lat], [lon + 0.00005, lat]], "route"),
        "Cuernavaca to Chihuahua, 1,260 km": ([[lon, lat], [-106.0889, 28.6353]], "route"),
        "over 500 km in small steps": (zigzag(6000, step_deg=0.0008), "route"),
        "latitude 91": ([[lon, lat], [lon, 91.0]], "route"),
        "longitude 181": ([[lon, lat], [181.0, lat]], "route"),
        "a string": ([[lon, lat], ["-99.2", "18.9"]], "route"),
        "one number": ([[lon, lat], [lon]], "route"),
        "four numbers": ([[lon, lat], [lon, lat + 0.01, 0, 0]], "route"),
        "no positions": ([], "route"),
    }
    seen: Counter[str] = Counter()
    for name, (coordinates, field) in refused.items():
        r = await _post(fuzzed, body(coordinates))
        assert r.status_code == 422, (name, r.status_code)
        loc, msg = _reason(r)
        assert field in loc, (name, loc, msg)
        seen["refused"] += 1
    # Numbers JSON does not have, as some clients write them: refused, never stored.
    for literal in ("NaN", "Infinity", "-Infinity", "1e400"):
        text = dumps(body()).replace("-99.234", literal, 1)
        loc, _ = _reason(await _post(fuzzed, None, raw=text))
        assert "route" in loc
        seen["refused"] += 1
    for polyline in ("", "~~~~~~~~", "?" * 10, "@@@@", "\x7f\x7f", "a" * 1_000_001):
        r = await _post(fuzzed, body(None, route={"polyline": polyline}))
        assert r.status_code in (413, 422), (polyline[:20], r.status_code, r.text[:200])
        seen["refused"] += 1
    assert await counts(fuzzed.engine) == before
    print(f"\n[fuzz] routes: {dict(seen)} (nothing filed)")


async def test_odd_but_real_routes_are_filed(fuzzed: Fuzzed) -> None:
    lon, lat = CUERNAVACA
    d = 0.01
    figure_eight = [
        [lon, lat],
        [lon + d, lat + d],
        [lon + d, lat],
        [lon, lat + d],
        [lon, lat],
    ]
    out_and_back = [[lon, lat], [lon + d, lat], [lon, lat]]
    for name, coordinates in {
        "crossing itself": figure_eight,
        "out and back": out_and_back,
        "20,000 vertices": zigzag(MAX_VERTICES),
    }.items():
        r = await _post(fuzzed, body(coordinates))
        assert r.status_code == 201, (name, r.text[:300])
        trip = r.json()
        assert trip["corridor"]["type"] == "Polygon"
        assert trip["plan"]["route_length_m"] > 10


async def test_labels_in_any_script_come_back_as_sent(fuzzed: Fuzzed) -> None:
    labels: list[str] = []

    @examples(25)
    @given(label=st.one_of(UNICODE, st.text(min_size=150, max_size=MAX_LABEL)))
    def collect(label: str) -> None:
        labels.append(label)

    collect()
    labels += ["🚨" * MAX_LABEL, "\u202eروت\u202c", "Mitin en Tlaltizapán de Zapata", "  "]
    ana = fuzzed.people["ana"]
    statuses: Counter[int] = Counter()
    for label in labels:
        r = await _post(fuzzed, body(label=label))
        statuses[r.status_code] += 1
        if "\x00" in label:
            assert r.status_code == 400, r.text  # no field holds a NUL character
            continue
        assert r.status_code == 201, (label, r.text[:300])
        got = await fuzzed.client.get(f"/v1/trips/{r.json()['id']}", headers=ana.headers)
        assert got.json()["label"] == (label.strip() or None)
    for too_long in ("x" * (MAX_LABEL + 1), "🚨" * (MAX_LABEL + 1)):
        loc, _ = _reason(await _post(fuzzed, body(label=too_long)))
        assert loc == ["body", "label"]
        statuses[422] += 1
    print(f"\n[fuzz] labels: {sum(statuses.values())} cases, {dict(statuses)}")


async def test_a_body_over_the_limit_is_refused_before_it_is_read(fuzzed: Fuzzed) -> None:
    before = await counts(fuzzed.engine)
    huge = [[round(CUERNAVACA[0] + i * 1e-7, 7), CUERNAVACA[1]] for i in range(120_000)]
    text = dumps(body(huge))
    assert len(text) > 2 * 2**20
    r = await _post(fuzzed, None, raw=text)
    assert r.status_code == 413
    assert "2097152 bytes" in r.json()["detail"]
    assert await counts(fuzzed.engine) == before
