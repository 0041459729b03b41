"""Secrets at rest and how they are compared (issue 7, "Security and privacy"), on both
databases.

- Every bearer token and device secret the API hands out (``sgm_`` user tokens,
  ``sgl_`` share links, ``sgd_`` tracker devices) is in no column of any table: the
  database keeps its SHA-256, and holds nothing that opens anything.
- Tokens are looked up by that hash: the plaintext never even reaches the database (no
  statement parameter holds it), so no comparison of plaintexts happens anywhere.
- Device secrets, PINs (salted PBKDF2) and WhatsApp signatures and verify tokens are
  compared with :func:`hmac.compare_digest`, on right and wrong input alike, and both
  PINs are always checked, so the time taken does not tell which one matched.
- Webhook signing secrets (``sgw_``) are the one exception, by necessity: the service
  signs with them, so it must keep them. They are shown once and never read back.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

import pytest
from fuzz_world import APP_SECRET, VERIFY_TOKEN, Fuzzed
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine

from sigueme.errors import Unauthorized
from sigueme.reports import whatsapp
from sigueme.store import pins
from sigueme.store.devices import Protocol
from sigueme.store.devices import authenticate as authenticate_device
from sigueme.store.models import Base, User
from sigueme.store.users import authenticate


async def _everything(engine: AsyncEngine) -> str:
    """Every value of every row of every table, as one text."""
    parts = []
    async with engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            for row in (await conn.execute(text(f'SELECT * FROM "{table.name}"'))).all():
                parts.append(repr(tuple(row)))
    return "\n".join(parts)


async def _hand_out(fuzzed: Fuzzed) -> dict[str, str]:
    """Tokens and secrets of every kind, through the API."""
    c, ana, root = fuzzed.client, fuzzed.people["ana"].headers, fuzzed.people["root"].headers
    trip = fuzzed.trip_id
    out = {}
    r = await c.post("/v1/users", json={"name": "nuevo", "role": "monitor"}, headers=root)
    out["new user's token"] = r.json()["token"]
    r = await c.post("/v1/users/marta/tokens", json={"label": "tableta"}, headers=root)
    out["second token"] = r.json()["token"]
    r = await c.post(f"/v1/trips/{trip}/links", json={"hours": 1}, headers=ana)
    out["share link"] = r.json()["token"]
    r = await c.post(
        "/v1/devices", json={"protocol": "osmand", "device_id": "77", "trip_id": trip}, headers=ana
    )
    out["device secret"], device_id = r.json()["secret"], r.json()["id"]
    r = await c.post(f"/v1/devices/{device_id}/rotate", headers=ana)
    out["rotated device secret"] = r.json()["secret"]
    r = await c.put("/v1/me/pins", json={"pin": "24681357", "duress_pin": "97531864"}, headers=ana)
    assert r.status_code == 204
    for name, account in fuzzed.people.items():
        out[f"{name}'s token"] = account.token
    return out


async def test_no_token_or_device_secret_is_stored_in_plain(fuzzed: Fuzzed) -> None:
    secrets = await _hand_out(fuzzed)
    stored = await _everything(fuzzed.engine)
    for what, secret in secrets.items():
        assert secret[:4] in ("sgm_", "sgl_", "sgd_"), what
        assert secret not in stored, f"{what} is stored in plain"
        assert secret[4:] not in stored, f"{what} (without its prefix) is stored"
        digest = hashlib.sha256(secret.encode()).hexdigest()
        if what == "device secret":  # rotated since: its hash is gone too
            assert digest not in stored
        else:
            assert digest in stored, f"{what}: no hash"
    for pin in ("24681357", "97531864"):
        assert pin not in stored
    async with fuzzed.app.state.sessions() as session:
        ana = await session.get(User, fuzzed.people["ana"].id)
        assert ana is not None
        for kept in (ana.pin_hash, ana.duress_pin_hash):
            scheme, rounds, _salt, _digest = (kept or "").split("$")
            assert (scheme, int(rounds) >= 200_000) == ("pbkdf2_sha256", True)
        assert ana.pin_hash != ana.duress_pin_hash


async def test_webhook_secrets_are_shown_once_and_never_read_back(fuzzed: Fuzzed) -> None:
    root = fuzzed.people["root"].headers
    r = await fuzzed.client.post(
        "/v1/webhooks", json={"url": "https://127.0.0.1:9/hook"}, headers=root
    )
    secret, hook = r.json()["secret"], r.json()["id"]
    assert secret.startswith("sgw_")
    for path in ("/v1/webhooks", f"/v1/webhooks/{hook}", f"/v1/webhooks/{hook}/deliveries"):
        answer = await fuzzed.client.get(path, headers=root)
        assert answer.status_code == 200
        assert secret not in answer.text
    # Kept, to sign with (HMAC needs the key itself): in that one column only.
    stored = await _everything(fuzzed.engine)
    assert stored.count(secret) == 1


@contextmanager
def _statements(engine: AsyncEngine) -> Iterator[list[str]]:
    """The SQL and parameters of every statement ``engine`` runs meanwhile."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        seen.append(f"{statement} {parameters!r}")

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)


async def test_tokens_are_looked_up_by_their_hash_never_in_plain(fuzzed: Fuzzed) -> None:
    secrets = await _hand_out(fuzzed)
    engine: AsyncEngine = fuzzed.app.state.engine
    async with fuzzed.app.state.sessions() as session:
        for what, secret in secrets.items():
            wrong = secret[:-3] + "xyz"
            with _statements(engine) as seen:
                if secret.startswith("sgd_"):
                    for offered in (secret, wrong):
                        with suppress(Unauthorized):
                            await authenticate_device(session, Protocol.OSMAND, "77", offered)
                else:
                    assert await authenticate(session, wrong) is None
                    assert await authenticate(session, secret) is not None
            sent = "\n".join(seen)
            assert sent, what
            assert secret not in sent, f"{what} reached the database in plain"
            assert wrong not in sent
            if not secret.startswith("sgd_"):
                assert hashlib.sha256(secret.encode()).hexdigest() in sent, what
        # Longer than any token: refused before it is hashed or looked up.
        with _statements(engine) as seen:
            assert await authenticate(session, "sgm_" + "x" * 300) is None
        assert seen == []


@contextmanager
def _compare_digest_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[Any, Any]]]:
    calls: list[tuple[Any, Any]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    yield calls


async def test_device_secrets_are_compared_in_constant_time(
    fuzzed: Fuzzed, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = (await _hand_out(fuzzed))["rotated device secret"]
    async with fuzzed.app.state.sessions() as session:
        with _compare_digest_calls(monkeypatch) as calls:
            assert await authenticate_device(session, Protocol.OSMAND, "77", secret)
            for device_id, offered in (("77", "sgd_wrong"), ("unknown", secret)):
                with pytest.raises(Unauthorized):
                    await authenticate_device(session, Protocol.OSMAND, device_id, offered)
    # One comparison each, a known device or not, of hashes (never of secrets).
    assert len(calls) == 3
    for a, b in calls:
        assert len(a) == len(b) == 64
        assert secret not in (a, b)


def test_pins_are_compared_in_constant_time_both_every_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    user = User(name="ana", role="traveller")
    pins.set_pins(user, "2468", "1357")
    with _compare_digest_calls(monkeypatch) as calls:
        answers = [pins.match_pin(user, pin) for pin in ("2468", "1357", "0000")]
    assert answers == [pins.PinMatch.CANCEL, pins.PinMatch.DURESS, pins.PinMatch.NONE]
    assert len(calls) == 6  # both stored PINs, for every attempt
    assert all(isinstance(a, bytes) and len(a) == len(b) == 32 for a, b in calls)


def test_whatsapp_signatures_and_verify_tokens_are_compared_in_constant_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    body = b'{"object": "whatsapp_business_account"}'
    good = whatsapp.sign(APP_SECRET, body)
    with _compare_digest_calls(monkeypatch) as calls:
        assert whatsapp.verify_signature(APP_SECRET, body, good)
        assert not whatsapp.verify_signature(APP_SECRET, body, "sha256=" + "0" * 64)
        assert not whatsapp.verify_signature(APP_SECRET, body + b" ", good)
        handshake = {"hub.mode": "subscribe", "hub.challenge": "42"}
        assert whatsapp.verify_challenge(
            {**handshake, "hub.verify_token": VERIFY_TOKEN}, VERIFY_TOKEN
        )
        assert not whatsapp.verify_challenge({**handshake, "hub.verify_token": "x"}, VERIFY_TOKEN)
    assert len(calls) == 5
