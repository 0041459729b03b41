"""Hypothesis strategies for input that should be refused: JSON of every shape, numbers
that are not positions (NaN, infinities, huge, out of range), times decades away, text
of every script, and frames that are almost right but for one field.

Imported by the fuzz tests (``from junk import ...``)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any, Final

from hypothesis import strategies as st

BAD_NUMBERS: Final = st.sampled_from(
    [
        math.nan,
        math.inf,
        -math.inf,
        1e308,
        -1e308,
        10**30,
        -(10**30),
        2**63,
        2**64,
        -1,
        90.0000001,
        -90.0000001,
        180.0000001,
        -180.0000001,
        1e-320,
        0,
    ]
)
"""Numbers a position, a speed or a battery level cannot be (0 only as 0,0)."""

UNICODE: Final = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=0, max_size=40
)
WEIRD_TEXT: Final = st.one_of(
    UNICODE,
    st.sampled_from(
        [
            "",
            " ",
            "\u202e\u2066ملاحظة\u2069",  # right-to-left override and isolate
            "e\u0301\u0301\u0301\u0301",  # a stack of combining accents
            "\u200b\u200d\ufeff",  # zero-width characters
            "🚨🆘👩🏽‍🦱",
            "NaN",
            "Infinity",
            "1e400",
            "0x1F",
            "null",
            "'; DROP TABLE fixes; --",
            "\\u0000",
        ]
    ),
)

JSON_SCALARS: Final = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    BAD_NUMBERS,
    WEIRD_TEXT,
)
JSON: Final = st.recursive(
    JSON_SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(
            st.one_of(WEIRD_TEXT, st.sampled_from(["type", "seq", "t"])), children, max_size=5
        ),
    ),
    max_leaves=20,
)
"""Any JSON value (with NaN and Infinity, which Python writes as bare literals)."""

# Device times: before 2000 and after 2100, as epoch seconds, milliseconds and ISO text.
DECADES_AWAY: Final = st.one_of(
    st.sampled_from(
        [
            0,
            -1,
            946_684_799,  # 1999-12-31T23:59:59Z
            4_102_444_801,  # 2100-01-01T00:00:01Z
            4_102_444_801_000,
            99_999_999_999_999,
            "1999-12-31T23:59:59Z",
            "2100-01-01T00:00:01Z",
            "9999-12-31T23:59:59+14:00",
            "0001-01-01T00:00:00Z",
            "2026-05-28T14:00:00",  # no zone
            "2026-13-40T25:61:61Z",
            "mañana",
        ]
    ),
    st.integers(min_value=4_102_444_801, max_value=99_999_999_999),
    st.integers(min_value=-(10**12), max_value=946_684_799),
)


def dumps(value: Any) -> str:
    """``value`` as JSON text, NaN and infinities as the bare literals some clients send."""
    return json.dumps(value, allow_nan=True, ensure_ascii=False)


def poisoned(good: Mapping[str, Any], bad: Mapping[str, st.SearchStrategy[Any]]) -> Any:
    """``good`` with one of the fields named in ``bad`` dropped, or replaced by a value
    from its strategy there, or by any JSON at all. (Not always invalid: dropping an
    optional field is fine.)"""

    @st.composite
    def build(draw: st.DrawFn) -> dict[str, Any]:
        frame = dict(good)
        field = draw(st.sampled_from(sorted(bad)))
        how = draw(st.sampled_from(["drop", "bad", "bad", "junk"]))
        if how == "drop":
            frame.pop(field, None)
        else:
            frame[field] = draw(bad[field] if how == "bad" else JSON)
        return frame

    return build()
