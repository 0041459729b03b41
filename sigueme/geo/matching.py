"""Where on its route is a fix? Distance and progress with continuity.

Routes often pass the same place twice (out and back on one road, a tour through
several towns, a loop). The nearest point of the whole route is then ambiguous, and
jumping to the other leg would make progress leap forward or back. So a fix is
matched only against a *window* of the route around where the trip was last seen,
``[anchor - reach, anchor + reach]`` with ``reach`` growing with the time since
(a traveller cannot have moved farther than that). Inside the window, the stretches
of route that come within ``tolerance`` of the nearest distance are the candidate
legs; the leg whose nearest point is closest to the *expected* progress wins.

Two implementations with the same rules: :func:`match_point` (pure Python over a
handful of segments, the per-fix path) and :func:`match_many` (numpy over ragged
windows of many fixes of many routes, the batched path).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import numpy.typing as npt

from sigueme.geo.frame import FloatArray

if TYPE_CHECKING:
    from sigueme.geo.route import Route

IntArray = npt.NDArray[np.int64]

NUMPY_WINDOW = 48
"""Windows with more segments than this are scanned with numpy even on the per-fix path."""


class Match(NamedTuple):
    distance_m: float
    progress_m: float
    segment: int


def match_point(
    route: Route, px: float, py: float, lo: float, hi: float, expected: float, tolerance: float
) -> Match:
    """Match one point (frame metres) to the route within progress ``[lo, hi]``.

    Returns the distance to the chosen leg and the progress of its nearest point.
    """
    lo = max(lo, 0.0)
    hi = min(hi, route.length_m)
    if hi < lo:
        lo = hi = min(max(expected, 0.0), route.length_m)
    i0, i1 = route.segment_span(lo, hi)
    if i1 - i0 > NUMPY_WINDOW:
        d_arr, s_arr, seg_arr = _match_rows(
            route,
            np.array([px]),
            np.array([py]),
            np.array([lo]),
            np.array([hi]),
            np.array([expected]),
            np.array([tolerance]),
            np.array([i0]),
            np.array([i1]),
        )
        return Match(float(d_arr[0]), float(s_arr[0]), int(seg_arr[0]))
    # Nearest point of each segment. Only the first and last segments of the window
    # can reach past [lo, hi]: the others clamp to the segment itself, and the two ends
    # are redone below with the window's bounds (the arithmetic is that of match_many,
    # operation for operation, so both paths agree to the last bit).
    d2s: list[float] = []
    ss: list[float] = []
    for ax, ay, dx, dy, inv_len2, c0, seg in route._segments[i0:i1]:
        t = ((px - ax) * dx + (py - ay) * dy) * inv_len2
        if t < 0.0:
            t = 0.0
        elif t > 1.0:
            t = 1.0
        ex = px - ax - t * dx
        ey = py - ay - t * dy
        d2s.append(ex * ex + ey * ey)
        ss.append(c0 + t * seg)
    for k in (0, i1 - i0 - 1):
        ax, ay, dx, dy, inv_len2, c0, seg = route._segments[i0 + k]
        t = ((px - ax) * dx + (py - ay) * dy) * inv_len2
        tlo = (lo - c0) / seg if lo > c0 else 0.0
        thi = (hi - c0) / seg if hi < c0 + seg else 1.0
        if t < tlo:
            t = tlo
        if t > thi:
            t = thi
        ex = px - ax - t * dx
        ey = py - ay - t * dy
        d2s[k] = ex * ex + ey * ey
        ss[k] = c0 + t * seg
    best = min(d2s)
    limit = (math.sqrt(best) + tolerance) ** 2
    # Candidate legs: maximal runs of consecutive segments within the limit; each run
    # is represented by its nearest point. Pick the run closest to the expected progress.
    near = [k for k, d2 in enumerate(d2s) if d2 <= limit]
    if near[-1] - near[0] == len(near) - 1:  # one run: the usual case
        k = d2s.index(best)
        return Match(math.sqrt(best), ss[k], i0 + k)
    choice_d2 = math.inf
    choice_s = 0.0
    choice_i = i0
    choice_gap = math.inf
    run_d2 = math.inf
    run_s = 0.0
    run_i = -1
    n = len(d2s)
    for k in range(n + 1):
        if k < n and d2s[k] <= limit:
            if d2s[k] < run_d2:
                run_d2, run_s, run_i = d2s[k], ss[k], i0 + k
            continue
        if run_i >= 0:
            gap = abs(run_s - expected)
            if gap < choice_gap:
                choice_gap, choice_d2, choice_s, choice_i = gap, run_d2, run_s, run_i
            run_d2, run_i = math.inf, -1
    return Match(math.sqrt(choice_d2), choice_s, choice_i)


def _match_rows(
    route: Route,
    px: FloatArray,
    py: FloatArray,
    lo: FloatArray,
    hi: FloatArray,
    expected: FloatArray,
    tolerance: FloatArray,
    i0: IntArray,
    i1: IntArray,
) -> tuple[FloatArray, FloatArray, IntArray]:
    """:func:`match_many` for rows that all belong to one route."""
    return match_many(
        px,
        py,
        lo,
        hi,
        expected,
        tolerance,
        i0,
        i1,
        route.seg_ax,
        route.seg_ay,
        route.seg_dx,
        route.seg_dy,
        route.seg_inv_len2,
        route.cum_m[:-1],
        route.seg_m,
    )


def match_many(
    px: FloatArray,
    py: FloatArray,
    lo: FloatArray,
    hi: FloatArray,
    expected: FloatArray,
    tolerance: FloatArray,
    i0: IntArray,
    i1: IntArray,
    ax: FloatArray,
    ay: FloatArray,
    dx: FloatArray,
    dy: FloatArray,
    inv_len2: FloatArray,
    cum0: FloatArray,
    seg: FloatArray,
) -> tuple[FloatArray, FloatArray, IntArray]:
    """Vectorised :func:`match_point` for many rows.

    Row r searches segments ``i0[r] <= i < i1[r]`` of the segment tables (which may
    hold many routes end to end: the windows never cross a route's bounds) with
    progress bounds ``[lo[r], hi[r]]``. Returns distance, progress and segment index.
    """
    counts = i1 - i0
    n_rows = counts.size
    row_start = np.zeros(n_rows, dtype=np.int64)
    np.cumsum(counts[:-1], out=row_start[1:])
    total = int(counts.sum())
    row = np.repeat(np.arange(n_rows), counts)
    idx = np.arange(total) - np.repeat(row_start - i0, counts)
    pxr, pyr = px[row], py[row]
    sax, say, sdx, sdy = ax[idx], ay[idx], dx[idx], dy[idx]
    c0, sl = cum0[idx], seg[idx]
    t = ((pxr - sax) * sdx + (pyr - say) * sdy) * inv_len2[idx]
    tlo = np.where(lo[row] > c0, (lo[row] - c0) / sl, 0.0)
    thi = np.where(hi[row] < c0 + sl, (hi[row] - c0) / sl, 1.0)
    t = np.minimum(np.maximum(t, tlo), thi)
    ex = pxr - sax - t * sdx
    ey = pyr - say - t * sdy
    d2 = ex * ex + ey * ey
    s = c0 + t * sl
    best = np.minimum.reduceat(d2, row_start)
    limit = (np.sqrt(best) + tolerance) ** 2
    inside = d2 <= limit[row]
    # Runs of consecutive inside segments, numbered across the whole batch.
    starts = inside.copy()
    starts[1:] &= ~inside[:-1]
    starts[row_start] = inside[row_start]
    run_id = np.cumsum(starts) - 1
    cand = np.flatnonzero(inside)
    cand_run = run_id[cand]
    # Nearest point of each run: order candidates by (run, d2), keep each run's first.
    order = np.lexsort((d2[cand], cand_run))
    cand_sorted = cand[order]
    first = np.ones(cand_sorted.size, dtype=bool)
    first[1:] = cand_run[order][1:] != cand_run[order][:-1]
    reps = cand_sorted[first]
    rep_row = row[reps]
    gap = np.abs(s[reps] - expected[rep_row])
    # Per row, the run whose representative is closest to the expected progress; ties
    # go to the earlier run, as in match_point.
    order2 = np.lexsort((reps, gap, rep_row))
    chosen_sorted = reps[order2]
    first2 = np.ones(chosen_sorted.size, dtype=bool)
    first2[1:] = rep_row[order2][1:] != rep_row[order2][:-1]
    chosen = chosen_sorted[first2]
    return np.sqrt(d2[chosen]), s[chosen], idx[chosen]
