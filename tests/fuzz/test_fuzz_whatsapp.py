"""The WhatsApp Cloud API webhook under hypothesis: without a valid
``X-Hub-Signature-256`` every notification is answered 401 and nothing is stored (no
report, no message, no alert); signed junk is answered 422 (or 200 taking nothing); the
verification handshake answers 403 to anything but Meta's exact subscription."""

from __future__ import annotations

from collections import Counter

from fuzz_world import APP_SECRET, VERIFY_TOKEN, Fuzzed, changed, examples, fingerprint
from hypothesis import given
from hypothesis import strategies as st
from junk import JSON, WEIRD_TEXT, dumps

from sigueme.reports.whatsapp import SIGNATURE_HEADER, sign

WEBHOOK = "/webhooks/whatsapp"
NOTIFICATION = {
    "object": "whatsapp_business_account",
    "entry": [
        {
            "id": "1",
            "changes": [
                {
                    "field": "messages",
                    "value": {
                        "messaging_product": "whatsapp",
                        "metadata": {"phone_number_id": "123"},
                        "contacts": [{"profile": {"name": "Ana"}, "wa_id": "5217771234567"}],
                        "messages": [
                            {
                                "from": "5217771234567",
                                "id": "wamid.fuzz",
                                "timestamp": "1780000000",
                                "type": "text",
                                "text": {"body": "Nos amenazaron"},
                            }
                        ],
                    },
                }
            ],
        }
    ],
}
BODIES = st.one_of(
    st.binary(max_size=300),
    JSON.map(lambda d: dumps(d).encode()),
    st.just(dumps(NOTIFICATION).encode()),
)
SIGNATURES = st.one_of(
    st.none(),
    WEIRD_TEXT,
    st.text("0123456789abcdef", min_size=64, max_size=64).map(lambda h: f"sha256={h}"),
    st.sampled_from(["sha256=", "sha1=abc", "sha256=" + "0" * 64, "SHA256=" + "f" * 64]),
)


async def test_unsigned_and_badly_signed_notifications_store_nothing(fuzzed: Fuzzed) -> None:
    cases: list[tuple[bytes, str | None, str]] = []

    @examples(80)
    @given(
        body=BODIES, signature=SIGNATURES, how=st.sampled_from(["junk", "other body", "other key"])
    )
    def collect(body: bytes, signature: str | None, how: str) -> None:
        if how == "other body":
            signature = sign(APP_SECRET, body + b" ")
        elif how == "other key":
            signature = sign(APP_SECRET + "x", body)
        cases.append((body, signature, how))

    @examples(40)
    @given(body=BODIES.filter(lambda b: b != dumps(NOTIFICATION).encode()))
    def collect_signed(body: bytes) -> None:
        cases.append((body, sign(APP_SECRET, body), "signed junk"))

    collect()
    collect_signed()
    before = await fingerprint(fuzzed.engine)
    statuses: Counter[str] = Counter()
    for body, signature, how in cases:
        headers = {"content-type": b"application/json"}
        if signature is not None:  # as the bytes on the wire (headers are not always ASCII)
            headers[SIGNATURE_HEADER] = signature.encode("utf-8")
        r = await fuzzed.client.post(WEBHOOK, content=body, headers=headers)
        statuses[f"{how} {r.status_code}"] += 1
        if b"\x00" in body or b"\\u0000" in body.lower():
            assert r.status_code == 400, r.text  # refused before anything reads it
        elif how == "signed junk":
            assert r.status_code in (200, 422), (body, r.status_code, r.text)
            if r.status_code == 200:
                assert r.json()["taken"] == 0
        else:
            assert r.status_code == 401, (body, signature, r.status_code, r.text)
        assert r.json()["detail" if r.status_code != 200 else "taken"] is not None
    # Larger than a notification may be: 413 before the signature is even checked.
    r = await fuzzed.client.post(WEBHOOK, content=b"{" * (2**20 + 1))
    statuses[f"huge {r.status_code}"] += 1
    assert r.status_code == 413
    assert not changed(before, await fingerprint(fuzzed.engine))
    print(f"\n[fuzz] whatsapp webhook: {sum(statuses.values())} cases, {dict(statuses)}")
    assert len(cases) >= 100


async def test_the_handshake_refuses_all_but_the_subscription(fuzzed: Fuzzed) -> None:
    params: list[dict[str, str]] = []

    @examples(40)
    @given(
        mode=st.one_of(st.just("subscribe"), WEIRD_TEXT),
        token=st.one_of(WEIRD_TEXT, st.just(VERIFY_TOKEN + " "), st.just(VERIFY_TOKEN.upper())),
        challenge=WEIRD_TEXT,
    )
    def collect(mode: str, token: str, challenge: str) -> None:
        params.append({"hub.mode": mode, "hub.verify_token": token, "hub.challenge": challenge})

    collect()
    for query in params:
        if "\x00" in "".join(query.values()):
            continue  # refused before the handshake (400): the NUL test is elsewhere
        r = await fuzzed.client.get(WEBHOOK, params=query)
        assert r.status_code == 403, (query, r.status_code, r.text)
    ok = {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1158201444"}
    r = await fuzzed.client.get(WEBHOOK, params=ok)
    assert (r.status_code, r.text) == (200, "1158201444")
    print(f"\n[fuzz] whatsapp handshake: {len(params) + 1} cases")
