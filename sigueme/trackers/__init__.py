"""Tracker apps a traveller may already have: their wire formats, read into fixes.

- :mod:`sigueme.trackers.osmand`: the OsmAnd HTTP protocol (Traccar Client: query
  string, form POST, JSON).
- :mod:`sigueme.trackers.owntracks`: OwnTracks in HTTP mode.

Pure parsers (no I/O, no web framework), like :mod:`sigueme.geo`: the API binds a
device to a trip and feeds what they read to the path of a fix.
"""

from sigueme.trackers.fields import TrackerError, TrackerFix

__all__ = ["TrackerError", "TrackerFix"]
