"""The watchers' feed (``/v1/live``) under hypothesis: the parser answers a frame or a
:class:`~sigueme.api.watch.FrameError` with a short reason, what it accepts is within
the protocol's bounds, and through a real socket refused frames get error frames, the
connection stays open, and nothing is subscribed or audited."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from asgi_websocket import Closed, connect
from fuzz_world import Fuzzed, changed, examples, fingerprint
from hypothesis import given
from hypothesis import strategies as st
from junk import BAD_NUMBERS, JSON, WEIRD_TEXT, dumps, poisoned

from sigueme.api.watch import (
    MAX_FRAME_BYTES,
    AuthIn,
    FrameError,
    PingIn,
    SubscribeIn,
    UnsubscribeIn,
    WatchLimits,
    parse_frame,
)
from sigueme.store.trips import MAX_LIST

BBOX = {"type": "subscribe", "bbox": [-99.3, 18.8, -99.1, 19.0]}
TRIPS = {"type": "subscribe", "trips": ["d5b1c3a0-0000-4000-8000-000000000001"]}
FRAMES = st.one_of(
    st.text(max_size=200),
    JSON.map(dumps),
    poisoned(BBOX, {"type": WEIRD_TEXT, "bbox": st.lists(BAD_NUMBERS, max_size=6)}).map(dumps),
    poisoned(
        TRIPS,
        {
            "type": st.sampled_from(["subscribe", "unsubscribe", "Subscribe"]),
            "trips": st.one_of(
                st.lists(st.one_of(WEIRD_TEXT, st.integers()), max_size=4),
                st.builds(lambda n: ["x"] * n, st.integers(MAX_LIST + 1, MAX_LIST + 50)),
                st.just([]),
                st.just(["y" * 65]),
            ),
            "bbox": JSON,
        },
    ).map(dumps),
    st.fixed_dictionaries(
        {"type": st.sampled_from(["subscribe", "unsubscribe", "auth", "ping", "snapshot"])},
        optional=dict.fromkeys(("trips", "bbox", "token", "extra"), JSON),
    ).map(dumps),
)


def _parse(text: str) -> Any:
    try:
        return parse_frame(text)
    except FrameError as exc:
        return exc


def _check_accepted(frame: object) -> None:
    if isinstance(frame, SubscribeIn):
        assert (frame.trips is None) != (frame.bbox is None)
        if frame.trips is not None:
            assert 1 <= len(frame.trips) <= MAX_LIST
            assert all(1 <= len(t) <= 64 for t in frame.trips)
        if frame.bbox is not None:
            w, s, e, n = frame.bbox
            assert -180 <= w <= e <= 180
            assert -90 <= s <= n <= 90
    elif isinstance(frame, UnsubscribeIn):
        assert frame.trips is None or len(frame.trips) <= MAX_LIST
    else:
        assert isinstance(frame, AuthIn | PingIn)


def test_the_watch_parser_answers_a_frame_or_a_frame_error() -> None:
    seen: Counter[str] = Counter()

    @examples(400)
    @given(text=FRAMES)
    def run(text: str) -> None:
        frame = _parse(text)
        if isinstance(frame, FrameError):
            seen["refused"] += 1
            assert frame.reason
            assert len(frame.reason) <= 200
            if len(text) > 60:
                assert text not in frame.reason
            return
        seen["accepted"] += 1
        _check_accepted(frame)

    run()
    print(f"\n[fuzz] watch frames (parser): {sum(seen.values())} cases, {dict(seen)}")
    assert seen["refused"] > seen["accepted"] > 0


async def test_refused_watch_frames_get_error_frames_and_change_nothing(fuzzed: Fuzzed) -> None:
    frames: list[str] = []

    @examples(100)
    @given(text=FRAMES.filter(lambda t: isinstance(_parse(t), FrameError)))
    def collect(text: str) -> None:
        frames.append(text)

    collect()
    fuzzed.app.state.watch_limits = WatchLimits(frames_per_s=1e6, frame_burst=1e6)
    before = await fingerprint(fuzzed.engine)
    marta = fuzzed.people["marta"]
    async with connect(fuzzed.app, "/v1/live", marta.headers) as ws:
        assert (await ws.receive_json())["type"] == "ready"
        for i, text in enumerate(frames):
            await ws.send_text(text)
            reply = await ws.receive_json()
            assert reply["type"] == "error", (text, reply)
            assert reply["reason"] == _parse(text).reason
            if i % 10 == 9:
                await ws.send_json({"type": "ping"})
                assert await ws.receive_json() == {"type": "pong"}
        # Well-formed but not allowed: a monitor's area, and a trip not shared with her.
        await ws.send_json(BBOX)
        assert (await ws.receive_json())["type"] == "error"
        await ws.send_json({"type": "subscribe", "trips": [fuzzed.trip_id]})
        replies = [await ws.receive_json(), await ws.receive_json()]
        snapshot, error = sorted(replies, key=lambda r: r["type"] == "error")
        assert (snapshot["type"], snapshot["trips"], snapshot["features"]) == (
            "FeatureCollection",
            [],
            [],
        )
        assert (error["type"], error["trips"]) == ("error", [fuzzed.trip_id])
        await ws.send_text("x" * (MAX_FRAME_BYTES + 1))
        with pytest.raises(Closed) as closed:
            await ws.receive_json()
        assert closed.value.code == 1009
    after = await fingerprint(fuzzed.engine)
    assert not changed(before, after)  # no subscription, so nothing audited either
    print(f"\n[fuzz] watch frames (socket): {len(frames) + 3} refused frames, nothing changed")
    assert len(frames) >= 70
