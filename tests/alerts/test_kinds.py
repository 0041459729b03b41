from sigueme.alerts import AlertKind, Severity, alert_kind_for, cleared_by
from sigueme.geo import EventKind


def test_every_warning_event_raises_its_alert_and_its_end_clears_it() -> None:
    assert alert_kind_for(EventKind.OFF_ROUTE) is AlertKind.OFF_ROUTE
    assert cleared_by(EventKind.BACK_ON_ROUTE) is AlertKind.OFF_ROUTE
    assert alert_kind_for(EventKind.STOPPED) is AlertKind.STOPPED
    assert cleared_by(EventKind.MOVING) is AlertKind.STOPPED
    assert alert_kind_for(EventKind.LATE) is AlertKind.LATE
    assert cleared_by(EventKind.ON_SCHEDULE) is AlertKind.LATE
    assert alert_kind_for(EventKind.BACKTRACKING) is AlertKind.BACKTRACKING


def test_informative_events_raise_nothing() -> None:
    for event in (EventKind.ARRIVED, EventKind.LOW_BATTERY, EventKind.BACK_ON_ROUTE):
        assert alert_kind_for(event) is None


def test_every_event_is_either_a_warning_an_end_or_information() -> None:
    informative = {EventKind.ARRIVED, EventKind.LOW_BATTERY}
    for event in EventKind:
        roles = [alert_kind_for(event) is not None, cleared_by(event) is not None]
        assert sum(roles) == (0 if event in informative else 1), event


def test_sos_outranks_everything_and_severities_map_to_cap() -> None:
    assert AlertKind.SOS.severity is Severity.EXTREME
    assert all(k.severity < Severity.EXTREME for k in AlertKind if k is not AlertKind.SOS)
    assert [s.cap for s in Severity] == ["Minor", "Moderate", "Severe", "Extreme"]


def test_dispatchers_read_spanish() -> None:
    assert AlertKind.OFF_ROUTE.title_es == "Fuera de la ruta planeada"
    assert AlertKind.SOS.title_es.startswith("Botón de pánico")
    assert Severity.EXTREME.label_es == "máxima"
    assert all(k.title_es for k in AlertKind)
