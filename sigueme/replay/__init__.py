"""Replaying recorded trips: read routes and traces from files' text, run them through
the geo core's monitor, and render the timeline (``sigueme replay``/``simulate``).

Pure like :mod:`sigueme.geo`: functions take text and return values; the CLI does
the reading and writing.
"""

from sigueme.replay.formats import (
    CSV_COLUMNS,
    MAX_FIXES,
    FormatError,
    RouteFormat,
    TraceFormat,
    detect_route_format,
    detect_trace_format,
    iso_utc,
    parse_route,
    parse_time,
    parse_trace,
    trace_to_csv,
    trace_to_geojson,
    trace_to_gpx,
)
from sigueme.replay.timeline import (
    ReplayError,
    Row,
    Summary,
    Timeline,
    format_duration,
    jsonl_lines,
    replay,
    run,
    table_lines,
)

__all__ = [
    "CSV_COLUMNS",
    "MAX_FIXES",
    "FormatError",
    "ReplayError",
    "RouteFormat",
    "Row",
    "Summary",
    "Timeline",
    "TraceFormat",
    "detect_route_format",
    "detect_trace_format",
    "format_duration",
    "iso_utc",
    "jsonl_lines",
    "parse_route",
    "parse_time",
    "parse_trace",
    "replay",
    "run",
    "table_lines",
    "trace_to_csv",
    "trace_to_geojson",
    "trace_to_gpx",
]
