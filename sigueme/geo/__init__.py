"""The geo core: pure, synchronous computation on routes and fixes (no I/O).

Import what you need from here::

    from sigueme.geo import Route, TripPlan, TripMonitor, Fix
"""

from sigueme.geo.errors import FixError, GeoError, RouteError, ThresholdError
from sigueme.geo.fixes import Fix, Verdict
from sigueme.geo.monitor import Evaluation, Event, EventKind, MonitorState, Status, TripMonitor
from sigueme.geo.plan import Thresholds, TripPlan
from sigueme.geo.route import PlannedStop, Route

__all__ = [
    "Evaluation",
    "Event",
    "EventKind",
    "Fix",
    "FixError",
    "GeoError",
    "MonitorState",
    "PlannedStop",
    "Route",
    "RouteError",
    "Status",
    "ThresholdError",
    "Thresholds",
    "TripMonitor",
    "TripPlan",
    "Verdict",
]
