"""The HTTP API fuzzed from its own OpenAPI schema (schemathesis), in process.

For each role (traveller, dispatcher, admin) every operation of ``/openapi.json`` gets
generated requests, valid ones and invalid ones (negative mode: wrong types, missing
fields, values out of range), with the path's ids either made up or those of a world
that exists (a trip, its share and link, a device, an SOS alert, a risk zone, a
webhook, a report and a channel), so that requests reach past the 404s.

Every answer is checked by schemathesis: never a 5xx (``not_a_server_error``), a status
the operation documents (``status_code_conformance``), and a body and content type as it
declares them for that status (``response_schema_conformance``,
``content_type_conformance``). And every request answered 4xx must have changed
nothing: the database's fingerprint (every row of every table a request writes) is the
same before and after it. Every operation is fuzzed even when another failed; the test
then fails listing each failure with a ``curl`` line to reproduce it.

The app runs on schemathesis's ASGI transport (its own event loop, in a thread); the
test's loop only reads the database with an engine of its own. Operations that end
things (finish, cancel, revoke, disable, delete) run last, so they do not close the
world early. ``pytest -s`` prints the cases per operation and role, by status.
"""

from __future__ import annotations

import asyncio
import copy
import traceback
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import schemathesis
from fastapi import FastAPI
from fuzz_world import (
    ROUTE,
    Account,
    Tally,
    add_people,
    changed,
    examples,
    fingerprint,
    fuzz_app,
    fuzz_engine,
    fuzz_settings,
)
from hypothesis import given
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    response_schema_conformance,
    content_type_conformance,
]
EXAMPLES_PER_OPERATION = 6
"""Per operation and role (times SIGUEME_FUZZ_SCALE): 61 operations x 3 roles."""

LAST = ("/finish", "/cancel", "/disable", "/rotate")
"""Operations that end things: fuzzed after the others."""


def _ends(operation: Any) -> bool:
    return bool(operation.method.upper() == "DELETE" or operation.path.endswith(LAST))


class World:
    """Things that exist, by path parameter, made through the API as the people would."""

    def __init__(self, client: asgi.ASGIClient, people: dict[str, Account]) -> None:
        self.client = client
        self.people = people
        self.ids: dict[str, Any] = {}

    def _post(self, who: str, path: str, body: Any, status: int = 201) -> Any:
        r = self.client.post(path, json=body, headers=self.people[who].headers)
        assert r.status_code == status, (path, r.status_code, r.text)
        return r.json() if r.content else None

    def build(self) -> None:
        trip = self._post("ana", "/v1/trips", _trip_body())
        trip_id = trip["id"]
        share = self._post("ana", f"/v1/trips/{trip_id}/shares", {"user": "marta", "hours": 48})
        self._post("ana", f"/v1/trips/{trip_id}/links", {"hours": 48, "label": "mamá"})
        device = self._post(
            "ana",
            "/v1/devices",
            {"protocol": "osmand", "device_id": "48241179", "trip_id": trip_id},
        )
        r = self.client.put(
            "/v1/me/pins",
            json={"pin": "1234", "duress_pin": "9876"},
            headers=self.people["ana"].headers,
        )
        assert r.status_code == 204, r.text
        sos = self._post("ana", f"/v1/trips/{trip_id}/sos", {"lat": 18.92, "lon": -99.23})
        zone = self._post("root", "/v1/risk-zones", {"name": "Colonia de prueba", "area": ZONE})
        hook = self._post(
            "root", "/v1/webhooks", {"url": "https://127.0.0.1:9/hook", "label": "prueba"}
        )
        channel = self._post("root", "/v1/channels", {"name": "Jiutepec", "kind": "municipality"})
        report = self._post(
            "ana", "/v1/reports", {"text": "Nos siguen desde el mitin", "lat": 18.92, "lon": -99.23}
        )
        self.ids = {
            "trip_id": trip_id,
            "share_id": share["id"],
            "alert_id": sos["alert_id"],
            "zone_id": zone["id"],
            "report_id": report["id"],
            "media_id": 1,
            "channel_id": channel["id"],
            "user": "marta",
            "name": "victima",
            "secret": device["secret"],
        }
        self.device_id = device["id"]
        self.webhook_id = hook["id"]

    def path_parameters(self, operation: Any) -> dict[str, Any] | None:
        """Real values for every path parameter of ``operation`` (``None``: it has none)."""
        names = [p.name for p in operation.path_parameters]
        if not names:
            return None
        values = dict(self.ids)
        values["id"] = self.webhook_id if "/webhooks/" in operation.path else self.device_id
        return {n: values[n] for n in names if n in values} or None


def _trip_body() -> dict[str, Any]:
    departure = datetime.now(UTC) + timedelta(minutes=5)
    return {
        "route": {"type": "LineString", "coordinates": ROUTE},
        "departure": departure.isoformat(),
        "duration_min": 120,
        "silence_timeout_s": 3600,
        "label": "Recorrido 🚗 por Jiutepec",
    }


ZONE = {
    "type": "Polygon",
    "coordinates": [
        [[-99.25, 18.90], [-99.24, 18.90], [-99.24, 18.91], [-99.25, 18.91], [-99.25, 18.90]]
    ],
}
GOOD_BODIES: dict[str, Callable[[World], Any]] = {
    "POST /v1/trips": lambda w: _trip_body(),
    "POST /v1/trips/{trip_id}/shares": lambda w: {"user": "marta", "hours": 2},
    "POST /v1/trips/{trip_id}/links": lambda w: {"hours": 2, "label": "tía"},
    "POST /v1/trips/{trip_id}/sos": lambda w: {"lat": 18.915, "lon": -99.228, "note": "auxilio"},
    "POST /v1/trips/{trip_id}/cancel-alerts": lambda w: {"pin": "0000"},
    "PUT /v1/me/pins": lambda w: {"pin": "1234", "duress_pin": "9876"},
    "POST /v1/devices": lambda w: {
        "protocol": "owntracks",
        "device_id": "ana/pixel",
        "for_me": True,
    },
    "POST /v1/reports": lambda w: {"text": "Amenazas afuera del mitin", "place": "Jiutepec"},
    "POST /v1/risk-zones": lambda w: {"name": "Otra colonia", "area": ZONE},
    "POST /v1/webhooks": lambda w: {"url": "https://127.0.0.1:9/otro"},
    "POST /v1/channels": lambda w: {"name": "Yautepec", "kind": "municipality"},
    "POST /v1/alerts/{alert_id}/dispatch": lambda w: {"unit": "MOR-117", "note": "en camino"},
    "POST /v1/alerts/{alert_id}/resolve": lambda w: {"outcome": "assisted", "note": "a salvo"},
    "POST /v1/reports/{report_id}/reveal": lambda w: {"reason": "Carpeta de investigación"},
}
"""Bodies that pass validation, for operations whose generated bodies (almost) never do:
with these, requests get past the 422 into the operation itself."""


def _strategy(operation: Any, world: World) -> st.SearchStrategy[Any]:
    """Generated requests, valid and invalid, with made-up and with real path values,
    and (where there is one) with a body known to be valid."""
    real = world.path_parameters(operation)
    options = []
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        options.append(operation.as_strategy(generation_mode=mode))
        if real is not None:
            options.append(operation.as_strategy(generation_mode=mode, path_parameters=real))
    good = GOOD_BODIES.get(operation.label)
    if good is not None:
        options.append(
            operation.as_strategy(
                generation_mode=GenerationMode.POSITIVE,
                path_parameters=real,
                body=good(world),
                media_type="application/json",
            )
        )
    return st.one_of(options)


def _operations(schema: Any, *, ending: bool) -> list[Any]:
    ops = [result.ok() for result in schema.get_all_operations()]
    return sorted((op for op in ops if _ends(op) == ending), key=lambda op: op.label)


def _fuzz(
    operation: Any,
    world: World,
    caller: Account,
    tally: Tally,
    state: Callable[[], dict[str, str]],
) -> str | None:
    """Fuzz ``operation`` as ``caller``; its failure (with a curl to reproduce), if any."""
    headers = caller.headers

    @examples(EXAMPLES_PER_OPERATION)
    @given(case=_strategy(operation, world))
    def run(case: Any) -> None:
        before = state()
        response = case.call(headers=headers)
        tally.add(f"{operation.label} as {caller.role.value}", response.status_code)
        case.validate_response(response, checks=CHECKS, headers=headers)
        if 400 <= response.status_code < 500:
            touched = changed(before, state())
            assert not touched, f"{response.status_code} changed {touched}: {response.text[:300]}"

    try:
        run()
    except (Exception, BaseExceptionGroup) as exc:  # every operation's failure, not the first
        trace = "".join(traceback.format_exception(exc))
        return f"{operation.label} as {caller.name}: {exc}\n{trace[-4000:]}"
    return None


async def test_every_operation_as_every_role_never_fails(database_url: str, tmp_path: Path) -> None:
    await _fuzz_backend(database_url, tmp_path, roles=("ana", "diego", "root"))


async def _fuzz_backend(database_url: str, tmp_path: Path, roles: tuple[str, ...]) -> None:
    engine = fuzz_engine(database_url)
    try:
        people = await add_people(engine)
        app = fuzz_app(fuzz_settings(database_url, tmp_path / "evidence"))
        loop = asyncio.get_running_loop()

        def state() -> dict[str, str]:
            return asyncio.run_coroutine_threadsafe(fingerprint(engine), loop).result(60)

        tally = Tally()
        operations, failures = await asyncio.to_thread(_run_all, app, people, roles, tally, state)
    finally:
        await engine.dispose()
    print("\n" + tally.report(f"openapi on {database_url.split(':')[0]}"))
    assert len(tally.cases) == operations * len(roles)  # every operation, as every role
    assert not failures, "\n\n".join(failures)


def _fuzzed_schema(app: FastAPI) -> dict[str, Any]:
    """The app's own schema, with one change: the police queue's long poll
    (``block_ms``, up to 30 s) waits at most 200 ms, or a few generated reads would take
    the whole budget waiting on an empty queue."""
    document = copy.deepcopy(app.openapi())
    read = document["components"]["schemas"]["ReadRequest"]["properties"]["block_ms"]
    assert read["maximum"] == 30_000
    read["maximum"] = 200
    return document


def _run_all(
    app: FastAPI,
    people: dict[str, Account],
    roles: tuple[str, ...],
    tally: Tally,
    state: Callable[[], dict[str, str]],
) -> tuple[int, list[str]]:
    """How many operations the schema has, and the failures of fuzzing them."""
    try:
        schema = schemathesis.openapi.from_dict(_fuzzed_schema(app))
        schema.app = app
        schema.location = "/openapi.json"
        with asgi.get_client(app) as client:
            world = World(client, people)
            world.build()
        failures: list[str] = []
        for ending in (False, True):
            for role in roles:
                for operation in _operations(schema, ending=ending):
                    failure = _fuzz(operation, world, people[role], tally, state)
                    if failure is not None:
                        failures.append(failure)
        return len(_operations(schema, ending=False) + _operations(schema, ending=True)), failures
    finally:
        asgi.shutdown_lifespans()
