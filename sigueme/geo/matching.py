"""Where on its route is a fix? Distance and progress with continuity.

Routes often pass the same place twice (out and back on one road, a tour through
several towns, a loop). The nearest point of the whole route is then ambiguous, and
jumping to the other leg would make progress leap forward or back. So a fix is
matched only against a *window* of the route around where the trip was last seen,
``[anchor - reach, anchor + reach]`` with ``reach`` growing with the time since
(a traveller cannot have moved farther than that).

Inside the window, every leg that passes near the fix shows up as a local minimum
of the distance along the route; those within ``tolerance`` of the nearest are the
candidates. The trip is assumed to go on the way it went: the candidate just ahead
of the anchor wins, and one behind it pays :data:`BACK_WEIGHT` times its distance
back. That keeps an out-and-back trip on the outbound leg up to the turn and on the
return leg after it, and a phone that was silent while parked where the route comes
back later stays where it parked.

Two implementations with the same rules: :func:`match_point` (pure Python over a
handful of segments, the per-fix path) and :func:`match_many` (numpy over ragged
windows of many fixes of many routes, the batched path).
"""

from __future__ import annotations

import math
from array import array
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import numpy.typing as npt

from sigueme.geo.frame import FloatArray

if TYPE_CHECKING:
    from sigueme.geo.route import Route

SEGMENT_FIELDS = 9
"""Per segment in ``Route._segments`` (one flat array of doubles): the start (ax, ay),
the direction (dx, dy), u = d / |d|^2 and k = a . u (the nearest point of the segment
to p is at t = p . u - k along it), the progress at its start, its geodesic length."""

IntArray = npt.NDArray[np.int64]

NUMPY_WINDOW = 48
"""Windows with more segments than this are scanned with numpy even on the per-fix path."""
BACK_WEIGHT = 10.0
"""A candidate behind the anchor costs this many times its distance back; ahead, 1x."""


class Match(NamedTuple):
    distance_m: float
    progress_m: float
    segment: int


def _nearest_in_window(
    segs: array[float], i: int, px: float, py: float, lo: float, hi: float
) -> tuple[float, float, bool]:
    """Squared distance, position along (0..1) and whether it lies strictly inside, of
    the point of segment ``i`` nearest to (px, py) with progress within ``[lo, hi]``."""
    j = SEGMENT_FIELDS * i
    ax, ay, dx, dy, ux, uy, k0, c0, seg = segs[j : j + SEGMENT_FIELDS]
    t = px * ux + py * uy - k0
    tlo = (lo - c0) / seg if lo > c0 else 0.0
    thi = (hi - c0) / seg if hi < c0 + seg else 1.0
    inner = tlo < t < thi
    if t < tlo:
        t = tlo
    if t > thi:
        t = thi
    ex = px - ax - t * dx
    ey = py - ay - t * dy
    return ex * ex + ey * ey, t, inner


def match_point(
    route: Route, px: float, py: float, lo: float, hi: float, anchor: float, tolerance: float
) -> Match:
    """Match one point (frame metres) to the route within progress ``[lo, hi]``, where
    the trip was last matched at progress ``anchor``.

    Returns the distance to the chosen leg and the progress of its nearest point.
    """
    lo = max(lo, 0.0)
    hi = min(hi, route.length_m)
    if hi < lo:
        lo = hi = min(max(anchor, 0.0), route.length_m)
    i0, i1 = route.segment_span(lo, hi)
    if i1 - i0 > NUMPY_WINDOW:
        d_arr, s_arr, seg_arr = _match_rows(
            route,
            np.array([px]),
            np.array([py]),
            np.array([lo]),
            np.array([hi]),
            np.array([anchor]),
            np.array([tolerance]),
            np.array([i0]),
            np.array([i1]),
        )
        return Match(float(d_arr[0]), float(s_arr[0]), int(seg_arr[0]))
    # One pass over the window's segments, keeping only the candidates: the nearest
    # point of a segment when it lies inside the segment, or a vertex that is a local
    # minimum of the distance (the first of a plateau). A segment's verdict waits for
    # the next segment's distance. Only the window's first and last segments can reach
    # past [lo, hi]; the arithmetic is that of match_many, operation for operation, so
    # both paths agree to the last bit.
    segs = route._segments
    last = i1 - 1
    cands: list[tuple[float, float, int]] = []  # (d2, t, segment)
    p_d2, p_t, p_inner = _nearest_in_window(segs, i0, px, py, lo, hi)
    best = p_d2
    p_below = True
    for i in range(i0 + 1, last + 1):
        if i < last:
            j = SEGMENT_FIELDS * i
            ax, ay, dx, dy, ux, uy, k0 = segs[j : j + 7]
            t = px * ux + py * uy - k0
            if t <= 0.0:
                t, inner = 0.0, False
            elif t >= 1.0:
                t, inner = 1.0, False
            else:
                inner = True
            ex = px - ax - t * dx
            ey = py - ay - t * dy
            d2 = ex * ex + ey * ey
        else:
            d2, t, inner = _nearest_in_window(segs, i, px, py, lo, hi)
        if d2 < best:
            best = d2
        if p_inner or (p_below and p_d2 <= d2):
            cands.append((p_d2, p_t, i - 1))
        p_below = d2 < p_d2
        p_d2, p_t, p_inner = d2, t, inner
    if p_inner or p_below:
        cands.append((p_d2, p_t, last))
    limit = max(best, (math.sqrt(best) + tolerance) ** 2)
    merge = 2.0 * tolerance
    # Candidates closer than ``merge`` along the route are one place seen from both
    # sides of a bend: the nearest of them stands for it. Of the places, the one just
    # ahead of the anchor wins; behind it costs BACK_WEIGHT x the way back.
    choice_d2 = choice_s = 0.0
    choice_i = -1
    choice_cost = math.inf
    rep_d2 = rep_s = last_s = 0.0
    rep_i = -1
    for d2, t, i in cands:
        if d2 > limit:
            continue
        j = SEGMENT_FIELDS * i
        c0, seg = segs[j + 7], segs[j + 8]
        s = c0 + t * seg
        if rep_i >= 0 and s - last_s <= merge:
            if d2 < rep_d2:
                rep_d2, rep_s, rep_i = d2, s, i
            last_s = s
            continue
        if rep_i >= 0:
            cost = rep_s - anchor if rep_s >= anchor else BACK_WEIGHT * (anchor - rep_s)
            if cost < choice_cost:
                choice_d2, choice_s, choice_i, choice_cost = rep_d2, rep_s, rep_i, cost
        rep_d2, rep_s, rep_i, last_s = d2, s, i, s
    cost = rep_s - anchor if rep_s >= anchor else BACK_WEIGHT * (anchor - rep_s)
    if cost < choice_cost:
        choice_d2, choice_s, choice_i = rep_d2, rep_s, rep_i
    return Match(math.sqrt(choice_d2), choice_s, choice_i)


def _match_rows(
    route: Route,
    px: FloatArray,
    py: FloatArray,
    lo: FloatArray,
    hi: FloatArray,
    anchor: FloatArray,
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
        anchor,
        tolerance,
        i0,
        i1,
        route.seg_ax,
        route.seg_ay,
        route.seg_dx,
        route.seg_dy,
        route.seg_ux,
        route.seg_uy,
        route.seg_k0,
        route.cum_m[:-1],
        route.seg_m,
    )


def match_many(
    px: FloatArray,
    py: FloatArray,
    lo: FloatArray,
    hi: FloatArray,
    anchor: FloatArray,
    tolerance: FloatArray,
    i0: IntArray,
    i1: IntArray,
    ax: FloatArray,
    ay: FloatArray,
    dx: FloatArray,
    dy: FloatArray,
    ux: FloatArray,
    uy: FloatArray,
    k0: FloatArray,
    cum0: FloatArray,
    seg: FloatArray,
) -> tuple[FloatArray, FloatArray, IntArray]:
    """Vectorised :func:`match_point` for many rows.

    Row r searches segments ``i0[r] <= i < i1[r]`` of the segment tables (which may
    hold many routes end to end: the windows never cross a route's bounds) with
    progress bounds ``[lo[r], hi[r]]`` and anchor ``anchor[r]``. Returns distance,
    progress and segment index.
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
    t = pxr * ux[idx] + pyr * uy[idx] - k0[idx]
    tlo = np.where(lo[row] > c0, (lo[row] - c0) / sl, 0.0)
    thi = np.where(hi[row] < c0 + sl, (hi[row] - c0) / sl, 1.0)
    inner = (t > tlo) & (t < thi)
    t = np.minimum(np.maximum(t, tlo), thi)
    ex = pxr - sax - t * sdx
    ey = pyr - say - t * sdy
    d2 = ex * ex + ey * ey
    s = c0 + t * sl
    best = np.minimum.reduceat(d2, row_start)
    limit = np.maximum(best, (np.sqrt(best) + tolerance) ** 2)
    # Candidates as in match_point; a row's first and last segments count as having no
    # neighbour outside the row.
    first = np.zeros(total, dtype=bool)
    first[row_start] = True
    last = np.zeros(total, dtype=bool)
    last[row_start + counts - 1] = True
    below_prev = np.ones(total, dtype=bool)
    below_prev[1:] = d2[1:] < d2[:-1]
    upto_next = np.ones(total, dtype=bool)
    upto_next[:-1] = d2[:-1] <= d2[1:]
    vertex_min = (first | below_prev) & (last | upto_next)
    cand = np.flatnonzero((d2 <= limit[row]) & (inner | vertex_min))
    cand_row = row[cand]
    cs = s[cand]
    # Merge candidates closer than 2 x tolerance along the route (chained, per row) and
    # keep the nearest of each group, the first on ties.
    new_group = np.ones(cand.size, dtype=bool)
    new_group[1:] = (cand_row[1:] != cand_row[:-1]) | (
        cs[1:] - cs[:-1] > 2.0 * tolerance[cand_row[1:]]
    )
    group = np.cumsum(new_group) - 1
    order = np.lexsort((cand, d2[cand], group))
    keep = np.ones(order.size, dtype=bool)
    keep[1:] = group[order][1:] != group[order][:-1]
    reps = cand[order][keep]
    rep_row = row[reps]
    ref = anchor[rep_row]
    rs = s[reps]
    cost = np.where(rs >= ref, rs - ref, BACK_WEIGHT * (ref - rs))
    # Per row, the cheapest place; ties go to the earlier one, as in match_point.
    order = np.lexsort((reps, cost, rep_row))
    keep = np.ones(order.size, dtype=bool)
    keep[1:] = rep_row[order][1:] != rep_row[order][:-1]
    chosen = reps[order][keep]
    return np.sqrt(d2[chosen]), s[chosen], idx[chosen]
