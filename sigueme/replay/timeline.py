"""Replay a recorded trace through a trip's monitor and tell what happened, when.

:func:`run` feeds the fixes, in the order given, to a fresh
:class:`~sigueme.geo.TripMonitor` and keeps the moments that matter: every event
and every change of status (or every fix, on request), plus a :class:`Summary`.
:func:`table_lines` renders that for a person, in local time;
:func:`jsonl_lines` for a program, in UTC.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any

from sigueme.geo import EventKind, Fix, Status, TripMonitor, TripPlan, Verdict
from sigueme.replay.formats import iso_utc


class ReplayError(ValueError):
    """Fixes that cannot be replayed (none at all, or one the route's frame cannot place)."""


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


@dataclass(frozen=True, slots=True)
class Row:
    """One line of the timeline: a fix the monitor evaluated, and the event it raised
    (one row per event when a fix raised several; ``None`` for a bare status change)."""

    t: float
    verdict: Verdict
    status: Status
    event: EventKind | None
    lon: float
    lat: float
    distance_m: float
    """Metres from the route."""
    progress_m: float
    progress_pct: float
    remaining_m: float
    speed_mps: float | None
    predicted_arrival: float
    delay_s: float
    """Predicted minus planned arrival (negative: early)."""

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready object: times ISO 8601 UTC, metres to 0.1, degrees to 1e-7."""
        return {
            "type": "row",
            "time": iso_utc(self.t),
            "verdict": self.verdict.value,
            "status": self.status.value,
            "event": self.event.value if self.event else None,
            "lon": round(self.lon, 7),
            "lat": round(self.lat, 7),
            "distance_m": round(self.distance_m, 1),
            "progress_m": round(self.progress_m, 1),
            "progress_pct": round(self.progress_pct, 2),
            "remaining_m": round(self.remaining_m, 1),
            "speed_mps": _round(self.speed_mps, 2),
            "predicted_arrival": iso_utc(round(self.predicted_arrival)),
            "delay_s": round(self.delay_s, 1),
        }


@dataclass(frozen=True, slots=True)
class Summary:
    """The whole replay in numbers."""

    fixes: int
    by_verdict: dict[str, int]
    """Fixes per filter verdict, every verdict present (zero when none)."""
    events: dict[str, int]
    """Events raised, by kind (only kinds that occurred)."""
    final_status: Status
    max_distance_m: float | None
    """Furthest an accepted fix was from the route (``None``: no fix accepted)."""
    off_route_s: float
    """Time between entering ``off_route`` and leaving it, summed over the trip
    (measured between accepted fixes)."""
    first_t: float
    last_t: float
    route_length_m: float
    departure: float
    arrival: float
    corridor_m: float

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready object: times ISO 8601 UTC."""
        return {
            "type": "summary",
            "fixes": self.fixes,
            "by_verdict": self.by_verdict,
            "events": self.events,
            "final_status": self.final_status.value,
            "max_distance_m": _round(self.max_distance_m, 1),
            "off_route_s": round(self.off_route_s, 1),
            "first_fix": iso_utc(self.first_t),
            "last_fix": iso_utc(self.last_t),
            "route_length_m": round(self.route_length_m, 1),
            "departure": iso_utc(self.departure),
            "arrival": iso_utc(self.arrival),
            "corridor_m": self.corridor_m,
        }


@dataclass(frozen=True, slots=True)
class Timeline:
    """What a replay shows: the rows, in the order the fixes came, and the summary."""

    rows: list[Row]
    summary: Summary
    every_fix: bool = False
    """Whether ``rows`` holds every fix rather than only events and status changes."""


def run(plan: TripPlan, fixes: Iterable[Fix], *, every_fix: bool = False) -> Timeline:
    """Evaluate ``fixes`` in the order given with a fresh monitor for ``plan``.

    Rows are kept for every event and every status change (for every fix when
    ``every_fix``). Fixes are judged on their own clocks: there is no server time in
    a replay, so none is ever ``future``. Raises :class:`ReplayError` for no fixes.
    """
    monitor = TripMonitor(plan)
    rows: list[Row] = []
    verdicts: Counter[Verdict] = Counter()
    events: Counter[EventKind] = Counter()
    status = Status.PENDING
    first_t = last_t = math.nan
    max_distance: float | None = None
    off_route_s = 0.0
    off_since: float | None = None
    for fix in fixes:
        ev = monitor.update(fix)
        verdicts[ev.verdict] += 1
        if math.isnan(first_t):
            first_t = fix.t
        last_t = fix.t
        if ev.verdict is Verdict.ACCEPTED:
            max_distance = max(ev.distance_m, max_distance or 0.0)
            # Off-route time runs from the fix that went off to the fix that came back.
            if off_since is not None:
                off_route_s += ev.t - off_since
                off_since = None
            if ev.status is Status.OFF_ROUTE:
                off_since = ev.t
        events.update(e.kind for e in ev.events)
        changed = ev.status is not status
        status = ev.status
        if not (every_fix or changed or ev.events):
            continue
        kinds: list[EventKind | None] = [e.kind for e in ev.events] or [None]
        for kind in kinds:
            rows.append(
                Row(
                    t=ev.t,
                    verdict=ev.verdict,
                    status=ev.status,
                    event=kind,
                    lon=ev.lon,
                    lat=ev.lat,
                    distance_m=ev.distance_m,
                    progress_m=ev.progress_m,
                    progress_pct=100.0 * ev.progress_fraction,
                    remaining_m=ev.remaining_m,
                    speed_mps=ev.speed_mps,
                    predicted_arrival=ev.predicted_arrival,
                    delay_s=ev.delay_s,
                )
            )
    total = sum(verdicts.values())
    if not total:
        raise ReplayError("no fixes to replay")
    summary = Summary(
        fixes=total,
        by_verdict={v.value: verdicts[v] for v in Verdict},
        events={k.value: events[k] for k in EventKind if events[k]},
        final_status=status,
        max_distance_m=max_distance,
        off_route_s=off_route_s,
        first_t=first_t,
        last_t=last_t,
        route_length_m=plan.route.length_m,
        departure=plan.departure,
        arrival=plan.arrival,
        corridor_m=plan.corridor_m,
    )
    return Timeline(rows=rows, summary=summary, every_fix=every_fix)


def replay(plan: TripPlan, fixes: Iterable[Fix], *, every_fix: bool = False) -> list[Row]:
    """The rows of :func:`run`: every event and status change (or every fix)."""
    return run(plan, fixes, every_fix=every_fix).rows


# -- rendering ----------------------------------------------------------------------------------


def format_duration(seconds: float, *, signed: bool = False) -> str:
    """``1h02m``, ``4m05s``, ``12s``; with ``signed``, a leading ``+`` or ``-``
    (``+0s`` for anything that rounds to zero)."""
    s = round(abs(seconds))
    negative = seconds < 0 and s > 0
    sign = "-" if negative else ("+" if signed else "")
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    if h:
        return f"{sign}{h}h{m:02d}m"
    if m:
        return f"{sign}{m}m{sec:02d}s"
    return f"{sign}{sec}s"


def _zone_label(tz: tzinfo, when: datetime) -> str:
    key = getattr(tz, "key", None) or tz.tzname(when) or "local"
    offset = when.utcoffset()
    if offset is None:
        return str(key)
    minutes = int(offset.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "−"
    return f"{key}, UTC{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items() if v) or "none"


_HEADER = ("time", "status", "event", "off (m)", "done (km)", "done", "left (km)", "ETA", "delay")
_WIDTHS = (8, 10, 13, 8, 9, 5, 9, 8, 8)


def _cells(cells: Iterable[str], widths: Iterable[int], text_columns: int) -> str:
    # The leading text columns are left-aligned, the numbers after them right-aligned.
    out = []
    for i, (cell, w) in enumerate(zip(cells, widths, strict=True)):
        out.append(cell.ljust(w) if i < text_columns else cell.rjust(w))
    return "  ".join(out).rstrip()


def table_lines(timeline: Timeline, tz: tzinfo) -> Iterator[str]:
    """A fixed-width table for a terminal, times in ``tz``: a heading with the plan,
    a line with the date whenever it changes, one line per row, then the summary."""
    s = timeline.summary
    dep = datetime.fromtimestamp(s.departure, tz)
    arr = datetime.fromtimestamp(s.arrival, tz)
    arr_fmt = "%H:%M" if arr.date() == dep.date() else "%Y-%m-%d %H:%M"
    yield (
        f"Route {s.route_length_m / 1000:.2f} km, corridor {s.corridor_m:g} m; "
        f"planned {dep:%Y-%m-%d %H:%M} → {arr:{arr_fmt}}  (times in {_zone_label(tz, dep)})"
    )
    header, widths = list(_HEADER), list(_WIDTHS)
    text_columns = 3
    if timeline.every_fix:
        header.insert(1, "fix")
        widths.insert(1, 12)
        text_columns += 1
    yield ""
    yield _cells(header, widths, text_columns)
    shown_date = None
    for row in timeline.rows:
        when = datetime.fromtimestamp(row.t, tz)
        if when.date() != shown_date:
            shown_date = when.date()
            yield f"-- {when:%Y-%m-%d %a} --"
        eta = datetime.fromtimestamp(row.predicted_arrival, tz)
        days = (eta.date() - when.date()).days
        eta_text = f"{eta:%H:%M}" + (f"{days:+d}d" if days else "")
        cells = [
            f"{when:%H:%M:%S}",
            row.status.value,
            row.event.value if row.event else "",
            f"{row.distance_m:.0f}",
            f"{row.progress_m / 1000:.2f}",
            f"{row.progress_pct:.0f}%",
            f"{row.remaining_m / 1000:.2f}",
            eta_text,
            format_duration(row.delay_s, signed=True),
        ]
        if timeline.every_fix:
            cells.insert(1, row.verdict.value)
        yield _cells(cells, widths, text_columns)
    if not timeline.rows:
        yield "(no events and no status changes)"
    yield ""
    yield f"Fixes:          {s.fixes} ({_counts(s.by_verdict)})"
    yield f"Events:         {_counts(s.events)}"
    yield f"Final status:   {s.final_status.value}"
    furthest = "-" if s.max_distance_m is None else f"{s.max_distance_m:.0f} m"
    yield f"Furthest off:   {furthest}"
    yield f"Time off route: {format_duration(s.off_route_s)}"


def jsonl_lines(timeline: Timeline) -> Iterator[str]:
    """JSON lines: one object per row (``"type": "row"``), then the summary
    (``"type": "summary"``); times are ISO 8601 UTC."""
    for row in timeline.rows:
        yield json.dumps(row.to_json(), ensure_ascii=False)
    yield json.dumps(timeline.summary.to_json(), ensure_ascii=False)
