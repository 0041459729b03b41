"""The phone's websocket protocol under hypothesis: whatever a phone sends, the parser
answers a frame or a :class:`FrameError` with a short reason (never another exception,
never the input echoed back), what it accepts is a position at a time, and through a
real socket a batch of refused frames gets one error frame each, keeps the connection
open and stores nothing."""

from __future__ import annotations

import math
import time
from collections import Counter
from typing import Any

import pytest
from asgi_websocket import Closed, connect
from fuzz_world import Fuzzed, changed, examples, fingerprint
from hypothesis import given
from hypothesis import strategies as st
from junk import BAD_NUMBERS, DECADES_AWAY, JSON, UNICODE, WEIRD_TEXT, dumps, poisoned

from sigueme.api.live import PhoneLimits
from sigueme.api.phone_protocol import (
    MAX_FIXES_PER_FRAME,
    MAX_FRAME_BYTES,
    Auth,
    Cancel,
    Fixes,
    FrameError,
    Ping,
    Sos,
    parse_frame,
)
from sigueme.geo.fixes import EARLIEST_FIX_TIME, LATEST_FIX_TIME
from sigueme.services.ingest import MAX_SEQ

NOW = time.time()
GOOD_FIX: dict[str, Any] = {
    "type": "fix",
    "seq": 7,
    "t": NOW,
    "lat": 18.9186,
    "lon": -99.2342,
    "accuracy": 8.5,
    "speed": 4.2,
    "heading": 135,
    "battery": 81,
}
BAD_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "type": st.one_of(WEIRD_TEXT, st.sampled_from(["FIX", "fixes", "sos", "cancel", "auth"])),
    "seq": st.one_of(st.integers(max_value=-1), st.integers(min_value=MAX_SEQ + 1), BAD_NUMBERS),
    "t": DECADES_AWAY,
    "lat": BAD_NUMBERS,
    "lon": BAD_NUMBERS,
    "accuracy": st.one_of(BAD_NUMBERS, st.floats(max_value=-0.001)),
    "speed": st.one_of(BAD_NUMBERS, st.floats(min_value=1000.001)),
    "heading": st.one_of(BAD_NUMBERS, st.floats(min_value=360.001)),
    "battery": st.one_of(BAD_NUMBERS, st.floats(min_value=100.001)),
}
FIX = poisoned(GOOD_FIX, BAD_FIELDS)
FIX_IN_BATCH = FIX.map(lambda f: {k: v for k, v in f.items() if k != "type"})
FRAMES = st.one_of(
    # anything at all
    st.text(max_size=200),
    JSON.map(dumps),
    # the frames of the protocol, each with something wrong
    FIX.map(dumps),
    st.lists(FIX_IN_BATCH, max_size=4).map(lambda fs: dumps({"type": "fixes", "fixes": fs})),
    st.fixed_dictionaries(
        {"type": st.just("sos")}, optional={"fix": FIX_IN_BATCH, "note": JSON}
    ).map(dumps),
    st.fixed_dictionaries({"type": st.just("cancel"), "pin": JSON}).map(dumps),
    st.fixed_dictionaries({"type": st.just("auth"), "token": JSON}).map(dumps),
    st.fixed_dictionaries(
        {"type": st.sampled_from(["fix", "fixes", "sos", "cancel", "auth", "ping", "pong"])},
        optional=dict.fromkeys(("seq", "t", "lat", "lon", "fixes", "fix", "pin", "token"), JSON),
    ).map(dumps),
    # sizes: a long note, a long PIN, unicode everywhere
    st.builds(lambda n: dumps({"type": "sos", "note": "🆘" * n}), st.integers(400, 3000)),
    UNICODE.map(lambda u: dumps({**GOOD_FIX, "note": u, u: u})),
)


def _parse(text: str) -> object:
    """The frame in ``text``, or the :class:`FrameError` that refused it."""
    try:
        return parse_frame(text)
    except FrameError as exc:
        return exc


def _refused(text: str) -> bool:
    return isinstance(_parse(text), FrameError)


def _check_accepted(frame: object) -> None:
    """What the parser lets through is what the protocol promises."""
    if isinstance(frame, Fixes):
        assert 1 <= len(frame.fixes) <= MAX_FIXES_PER_FRAME
        for fix in frame.fixes:
            assert 0 <= fix.seq <= MAX_SEQ
            assert EARLIEST_FIX_TIME <= fix.t <= LATEST_FIX_TIME
            assert -90 <= fix.lat <= 90
            assert -180 <= fix.lon <= 180
            for value in (fix.lat, fix.lon, fix.accuracy, fix.speed, fix.heading, fix.battery):
                assert value is None or math.isfinite(value)
    elif isinstance(frame, Sos):
        assert frame.note is None or len(frame.note) <= 500
        if frame.fix is not None:
            _check_accepted(Fixes((frame.fix,), batch=False))
    elif isinstance(frame, Cancel):
        assert 1 <= len(frame.pin) <= 8
    elif isinstance(frame, Auth):
        assert 1 <= len(frame.token) <= 200
    else:
        assert isinstance(frame, Ping)


def test_the_parser_answers_a_frame_or_a_frame_error() -> None:
    seen: Counter[str] = Counter()

    @examples(600)
    @given(text=FRAMES)
    def run(text: str) -> None:
        frame = _parse(text)
        if isinstance(frame, FrameError):
            seen["refused"] += 1
            assert frame.reason, text
            assert len(frame.reason) <= 200, frame.reason
            assert frame.field is None or isinstance(frame.field, str)
            if len(text) > 60:
                assert text not in frame.reason  # the input is never echoed back
            return
        seen["accepted"] += 1
        _check_accepted(frame)

    run()
    print(f"\n[fuzz] phone frames (parser): {sum(seen.values())} cases, {dict(seen)}")
    assert seen["refused"] > seen["accepted"] > 0


def test_pathological_frames_are_refused() -> None:
    for text in [
        "[" * 100_000,
        '{"a":' * 50_000 + "1" + "}" * 50_000,
        dumps({**GOOD_FIX, "lat": 10**400}),
        '{"type": "fix", "seq": 1, "t": 1e400, "lat": 18.9, "lon": -99.2}',
        '{"type": "fix", "seq": 1, "t": 1780000000, "lat": NaN, "lon": -99.2}',
        '{"type": "fix", "seq": 1, "t": 1780000000, "lat": 18.9, "lon": -Infinity}',
        dumps({"type": "fixes", "fixes": [GOOD_FIX] * (MAX_FIXES_PER_FRAME + 1)}),
        dumps({"type": "fixes", "fixes": []}),
        dumps({"type": "cancel", "pin": "123456789"}),
        dumps({"type": "auth", "token": "sgm_" + "x" * 300}),
        "\ud800",
        "",
    ]:
        with pytest.raises(FrameError) as refused:
            parse_frame(text)
        assert refused.value.reason


async def test_a_batch_of_refused_frames_gets_error_frames_and_stores_nothing(
    fuzzed: Fuzzed,
) -> None:
    frames: list[str] = []

    @examples(150)
    @given(text=FRAMES.filter(_refused))
    def collect(text: str) -> None:
        frames.append(text)

    collect()
    # Frames far past the burst: the limit under test is the malformed-frame one.
    fuzzed.app.state.phone_limits = PhoneLimits(frames_per_s=1e6, frame_burst=1e6)
    before = await fingerprint(fuzzed.engine)
    ana = fuzzed.people["ana"]
    path = f"/v1/trips/{fuzzed.trip_id}/phone"
    async with connect(fuzzed.app, path, ana.headers) as ws:
        assert (await ws.receive_json())["type"] == "ready"
        for i, text in enumerate(frames):
            await ws.send_text(text)
            reply = await ws.receive_json()
            assert reply["type"] == "error", (text, reply)
            refusal = _parse(text)
            assert isinstance(refusal, FrameError)
            assert reply["reason"] == refusal.reason
            if i % 10 == 9:  # a good frame between runs of bad ones keeps the socket open
                await ws.send_json({"type": "ping"})
                assert await ws.receive_json() == {"type": "pong"}
        # Refused after parsing: a position at 0,0 is no position.
        await ws.send_json({**GOOD_FIX, "lat": 0, "lon": 0})
        reply = await ws.receive_json()
        assert (reply["type"], reply["field"]) == ("error", "lat")
        # One bad fix spoils its whole batch: nothing of it is stored.
        batch = [{**GOOD_FIX, "seq": i} for i in range(MAX_FIXES_PER_FRAME)]
        batch[-1]["lat"] = 91
        await ws.send_json({"type": "fixes", "fixes": batch})
        reply = await ws.receive_json()
        assert (reply["type"], reply["field"]) == ("error", f"fixes[{MAX_FIXES_PER_FRAME - 1}].lat")
        # A binary frame, then one too big: the latter closes the connection (1009).
        await ws.send_bytes(b"\x00\xff" * 10)
        assert (await ws.receive_json())["type"] == "error"
        await ws.send_text(" " * (MAX_FRAME_BYTES + 1))
        with pytest.raises(Closed) as closed:
            await ws.receive_json()
        assert closed.value.code == 1009
    after = await fingerprint(fuzzed.engine)
    assert not changed(before, after)
    print(f"\n[fuzz] phone frames (socket): {len(frames) + 4} refused frames, nothing stored")
    assert len(frames) >= 100
