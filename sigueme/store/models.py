"""The tables. One model for both backends (PostGIS and SQLite).

Times are UTC, timezone-aware in Python (:class:`UTCDateTime`). Geometries are
EPSG:4326 (:class:`~sigueme.store.geometry.GeometryColumn`); fixes keep plain
``lon``/``lat`` columns (fast to COPY) and, on PostGIS, a generated point column with
a GiST index (added by the migration).
"""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar

import shapely
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from sigueme.store.geometry import GeometryColumn

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: Sígueme stores UTC-aware times only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return str(uuid.uuid4())


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
    }


class Role(enum.StrEnum):
    TRAVELLER = "traveller"
    MONITOR = "monitor"
    DISPATCHER = "dispatcher"
    ADMIN = "admin"


class TripStatus(enum.StrEnum):
    ACTIVE = "active"
    FINISHED = "finished"
    CANCELLED = "cancelled"


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    role: Mapped[str] = mapped_column(String(20))
    display_name: Mapped[str | None] = mapped_column(String(200))
    contact: Mapped[str | None] = mapped_column(String(200))
    """Phone or other contact, shown to dispatchers with an alert."""
    profile: Mapped[str | None] = mapped_column(String(50))
    """Who they are for the police: candidate, campaign, citizen, official, ..."""
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    pin_hash: Mapped[str | None] = mapped_column(String(200))
    """The traveller's PIN that cancels their alerts (salted, slow hash)."""
    duress_pin_hash: Mapped[str | None] = mapped_column(String(200))
    """The duress PIN: looks like a cancel on the phone, raises the alert for the police."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Token(Base):
    """An API token; only its SHA-256 is stored."""

    __tablename__ = "tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    label: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]


class Trip(Base):
    __tablename__ = "trips"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    label: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20), default=TripStatus.ACTIVE.value)
    route: Mapped[shapely.LineString] = mapped_column(GeometryColumn("LINESTRING"))
    corridor: Mapped[shapely.Polygon] = mapped_column(GeometryColumn("POLYGON"))
    route_length_m: Mapped[float] = mapped_column(Float)
    corridor_m: Mapped[float] = mapped_column(Float)
    destination_radius_m: Mapped[float] = mapped_column(Float)
    departure: Mapped[datetime]
    arrival: Mapped[datetime]
    stops: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    thresholds: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    """Overrides only; the rest are the defaults of the code that evaluates."""
    monitor_state: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    route_status: Mapped[str] = mapped_column(String(20), default="pending")
    """The monitor's status: pending, on_route, drifting, off_route, ..."""
    last_fix_at: Mapped[datetime | None]
    last_lon: Mapped[float | None] = mapped_column(Float)
    last_lat: Mapped[float | None] = mapped_column(Float)
    last_accuracy: Mapped[float | None] = mapped_column(Float)
    last_battery: Mapped[float | None] = mapped_column(Float)
    distance_m: Mapped[float | None] = mapped_column(Float)
    progress_m: Mapped[float | None] = mapped_column(Float)
    predicted_arrival: Mapped[datetime | None]
    last_heard_at: Mapped[datetime | None]
    """Server time the phone was last heard from (any fix, accepted or not)."""
    silence_timeout_s: Mapped[float] = mapped_column(Float, default=300.0)
    """A trip in progress not heard from for this long raises ``signal_lost``."""
    overdue_grace_s: Mapped[float] = mapped_column(Float, default=900.0)
    """A trip not arrived this long after its planned arrival raises ``overdue``."""
    silence_deadline: Mapped[datetime | None]
    """When the trip counts as silent if nothing more is heard: departure, then the
    last fix received, plus ``silence_timeout_s``."""
    silence_alerted_at: Mapped[datetime | None]
    """When the watchdog last raised ``signal_lost`` (once per silence: again only
    after a fix moved ``silence_deadline`` past it)."""
    overdue_at: Mapped[datetime | None]
    """Planned arrival plus ``overdue_grace_s``."""
    overdue_alerted_at: Mapped[datetime | None]
    """When the watchdog raised ``overdue`` (once per trip)."""
    risk_zones_inside: Mapped[list[int]] = mapped_column(JSON, default=list)
    """Risk zones the trip's last accepted fix was in (an alert is raised on entry)."""
    # Bounding box of the corridor, for area filters that work on both backends.
    min_lon: Mapped[float] = mapped_column(Float)
    min_lat: Mapped[float] = mapped_column(Float)
    max_lon: Mapped[float] = mapped_column(Float)
    max_lat: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    ended_at: Mapped[datetime | None]

    __table_args__ = (
        Index("ix_trips_status_bbox", "status", "min_lon", "max_lon", "min_lat", "max_lat"),
        Index("ix_trips_status_silence_deadline", "status", "silence_deadline"),
        Index("ix_trips_status_overdue_at", "status", "overdue_at"),
    )


class Fix(Base):
    __tablename__ = "fixes"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    trip_id: Mapped[str] = mapped_column(ForeignKey("trips.id", ondelete="CASCADE"))
    seq: Mapped[int | None] = mapped_column(BigInteger)
    """The phone's sequence number: a resend carries the same one."""
    t: Mapped[datetime]
    """Device time."""
    received_at: Mapped[datetime]
    lon: Mapped[float] = mapped_column(Float)
    lat: Mapped[float] = mapped_column(Float)
    accuracy: Mapped[float | None] = mapped_column(Float)
    speed: Mapped[float | None] = mapped_column(Float)
    heading: Mapped[float | None] = mapped_column(Float)
    battery: Mapped[float | None] = mapped_column(Float)
    verdict: Mapped[str | None] = mapped_column(String(20))
    distance_m: Mapped[float | None] = mapped_column(Float)
    progress_m: Mapped[float | None] = mapped_column(Float)
    evidence: Mapped[bool] = mapped_column(Boolean, default=False)
    """Kept by an alert: retention never purges it."""

    __table_args__ = (
        Index("ix_fixes_trip_t", "trip_id", "t"),
        Index("ix_fixes_received_at", "received_at"),
        Index(
            "uq_fixes_trip_seq",
            "trip_id",
            "seq",
            unique=True,
            postgresql_where=text("seq IS NOT NULL"),
            sqlite_where=text("seq IS NOT NULL"),
        ),
    )


class Share(Base):
    """Who may watch a trip: a user, or whoever holds a link (only its hash is kept)."""

    __tablename__ = "shares"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    trip_id: Mapped[str] = mapped_column(ForeignKey("trips.id", ondelete="CASCADE"), index=True)
    grantee_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    token_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    label: Mapped[str | None] = mapped_column(String(200))
    created_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class Alert(Base):
    __tablename__ = "alerts"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    trip_id: Mapped[str | None] = mapped_column(
        ForeignKey("trips.id", ondelete="CASCADE"), index=True
    )
    """The trip it is about; ``None`` for a citizen's report not linked to a trip."""
    report_id: Mapped[int | None] = mapped_column(
        ForeignKey("reports.id", ondelete="CASCADE"), index=True
    )
    """The SeguriChat report it carries into the queue (kind ``report``)."""
    kind: Mapped[str] = mapped_column(String(30))
    severity: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20), default="open")
    count: Mapped[int] = mapped_column(Integer, default=1)
    lon: Mapped[float | None] = mapped_column(Float)
    lat: Mapped[float | None] = mapped_column(Float)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    """What the alert says beyond its columns (trip facts at raise time, condition
    ended, risk zone, duress...)."""
    position_at: Mapped[datetime | None]
    """Device time of the position that raised (or last repeated) it."""
    accuracy: Mapped[float | None] = mapped_column(Float)
    battery: Mapped[float | None] = mapped_column(Float)
    distance_m: Mapped[float | None] = mapped_column(Float)
    escalations: Mapped[int] = mapped_column(Integer, default=0)
    escalated_at: Mapped[datetime | None]
    unit: Mapped[str | None] = mapped_column(String(100))
    """The police unit dispatched."""
    outcome: Mapped[str | None] = mapped_column(String(30))
    """How it was resolved (assisted, false_alarm, ...)."""
    opened_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    closed_at: Mapped[datetime | None]

    __table_args__ = (
        # At most one open alert per trip and kind, enforced by the database (reports
        # excepted: each report is its own alert, several may concern one trip).
        Index(
            "uq_alerts_open_trip_kind",
            "trip_id",
            "kind",
            unique=True,
            postgresql_where=text(
                "status IN ('open', 'acknowledged', 'dispatched') AND kind <> 'report'"
            ),
            sqlite_where=text(
                "status IN ('open', 'acknowledged', 'dispatched') AND kind <> 'report'"
            ),
        ),
        Index("ix_alerts_status_severity", "status", "severity"),
    )


class AlertHistory(Base):
    __tablename__ = "alert_history"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    alert_id: Mapped[str] = mapped_column(ForeignKey("alerts.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    action: Mapped[str] = mapped_column(String(30))
    note: Mapped[str | None] = mapped_column(Text)
    police_only: Mapped[bool] = mapped_column(Boolean, default=False)
    """Never shown to the traveller or monitors (the duress PIN's entry)."""


class AlertOutbox(Base):
    """Alert changes still to put on the police queue (and the watchers' feed, and
    webhooks): written in the transaction that changes the alert, relayed at least
    once afterwards (:mod:`sigueme.services.relay`)."""

    __tablename__ = "alert_outbox"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    alert_id: Mapped[str] = mapped_column(ForeignKey("alerts.id", ondelete="CASCADE"), index=True)
    event: Mapped[str] = mapped_column(String(30))
    """raised, repeated, escalated, acknowledged, dispatched, resolved, cancelled, ..."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    published_at: Mapped[datetime | None]
    lease_until: Mapped[datetime | None]
    """A relay took it until then (another relay leaves it alone meanwhile)."""
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(String(500))

    __table_args__ = (
        Index(
            "ix_alert_outbox_unpublished",
            "id",
            postgresql_where=text("published_at IS NULL"),
            sqlite_where=text("published_at IS NULL"),
        ),
    )


class PoliceQueueEntry(Base):
    """The police queue in the embedded default: a Redis Stream with one consumer group,
    on the database (:class:`sigueme.bus.queue.DatabaseQueue`)."""

    __tablename__ = "police_queue"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    fields: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    consumer: Mapped[str | None] = mapped_column(String(100))
    """Who holds it (read and not acknowledged yet); ``None``: never read."""
    delivered_at: Mapped[datetime | None]
    deliveries: Mapped[int] = mapped_column(Integer, default=0)
    acked_at: Mapped[datetime | None]

    __table_args__ = (Index("ix_police_queue_acked_consumer", "acked_at", "consumer"),)


class Webhook(Base):
    """An operator's endpoint told of alerts: of the trips a user may see
    (``user_id``), or all of them."""

    __tablename__ = "webhooks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    url: Mapped[str] = mapped_column(String(2000))
    secret: Mapped[str] = mapped_column(String(200))
    """The HMAC-SHA256 key signing each delivery (needed in clear to sign)."""
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    label: Mapped[str | None] = mapped_column(String(200))
    created_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    disabled_at: Mapped[datetime | None]


class WebhookDelivery(Base):
    """One alert change to deliver to one webhook, retried with backoff; every attempt
    is logged in :class:`WebhookAttempt`."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    webhook_id: Mapped[int] = mapped_column(
        ForeignKey("webhooks.id", ondelete="CASCADE"), index=True
    )
    outbox_id: Mapped[int] = mapped_column(BigInteger)
    alert_id: Mapped[str] = mapped_column(String(36))
    event: Mapped[str] = mapped_column(String(30))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(20), default="pending")
    """pending, delivered, failed (gave up), cancelled (its webhook was disabled)."""
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        Index("uq_webhook_deliveries_webhook_outbox", "webhook_id", "outbox_id", unique=True),
        Index("ix_webhook_deliveries_status_next", "status", "next_attempt_at"),
    )


class WebhookAttempt(Base):
    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    delivery_id: Mapped[int] = mapped_column(
        ForeignKey("webhook_deliveries.id", ondelete="CASCADE"), index=True
    )
    at: Mapped[datetime] = mapped_column(default=utcnow)
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(String(500))
    duration_ms: Mapped[float] = mapped_column(Float)


class RiskZone(Base):
    __tablename__ = "risk_zones"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    area: Mapped[shapely.Polygon] = mapped_column(GeometryColumn("POLYGON"))
    min_lon: Mapped[float] = mapped_column(Float)
    min_lat: Mapped[float] = mapped_column(Float)
    max_lon: Mapped[float] = mapped_column(Float)
    max_lat: Mapped[float] = mapped_column(Float)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AuditLog(Base):
    """Every read of a trip's locations: who, which trip, when."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    share_id: Mapped[int | None] = mapped_column(ForeignKey("shares.id", ondelete="SET NULL"))
    trip_id: Mapped[str] = mapped_column(String(36), index=True)
    action: Mapped[str] = mapped_column(String(40))


class Device(Base):
    """A tracker app on a phone (OsmAnd/Traccar Client, OwnTracks), bound to one trip or
    to a traveller (whose one active trip it then feeds). Only the SHA-256 of its secret
    is stored. Exactly one of ``trip_id`` and ``user_id`` is set (the store keeps it so)."""

    __tablename__ = "devices"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    protocol: Mapped[str] = mapped_column(String(20))
    """``osmand`` or ``owntracks``."""
    device_id: Mapped[str] = mapped_column(String(100))
    """What the app sends: OsmAnd ``id``/``deviceid``; OwnTracks ``user/device``."""
    secret_hash: Mapped[str] = mapped_column(String(64))
    trip_id: Mapped[str | None] = mapped_column(
        ForeignKey("trips.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    created_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    rotated_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]

    __table_args__ = (Index("uq_devices_protocol_device_id", "protocol", "device_id", unique=True),)


class ReportChannel(Base):
    """Who sees which reports: the successors of SeguriChat's WhatsApp groups (by
    municipality, by party or campaign, one for INE/FEDE/IMPEPAC officials)."""

    __tablename__ = "report_channels"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    kind: Mapped[str] = mapped_column(String(20))
    """municipality, party, officials, other."""
    description: Mapped[str | None] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ReportChannelMember(Base):
    __tablename__ = "report_channel_members"

    channel_id: Mapped[int] = mapped_column(
        ForeignKey("report_channels.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    added_at: Mapped[datetime] = mapped_column(default=utcnow)


class Report(Base):
    """A citizen's report (SeguriChat): what happened, where, when, its media, and who
    reported it (kept apart: shown only through an audited reveal)."""

    __tablename__ = "reports"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    folio: Mapped[str | None] = mapped_column(String(20), unique=True)
    """``SC-2026-000123``: what the reporter is told (set once the id is known)."""
    status: Mapped[str] = mapped_column(String(20), default="draft")
    """draft (WhatsApp messages still joining it), submitted (in the police queue)."""
    category: Mapped[str] = mapped_column(String(40))
    text: Mapped[str] = mapped_column(Text, default="")
    lon: Mapped[float | None] = mapped_column(Float)
    lat: Mapped[float | None] = mapped_column(Float)
    place: Mapped[str | None] = mapped_column(String(300))
    """A place named in words (no coordinates known)."""
    position_source: Mapped[str | None] = mapped_column(String(20))
    """phone, map, whatsapp, photo, text."""
    occurred_at: Mapped[datetime | None]
    channel_id: Mapped[int | None] = mapped_column(
        ForeignKey("report_channels.id", ondelete="SET NULL"), index=True
    )
    trip_id: Mapped[str | None] = mapped_column(
        ForeignKey("trips.id", ondelete="SET NULL"), index=True
    )
    source: Mapped[str] = mapped_column(String(20))
    """api, whatsapp, phone."""
    anonymous: Mapped[bool] = mapped_column(Boolean, default=False)
    reporter_user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    reporter_name: Mapped[str | None] = mapped_column(String(200))
    reporter_contact: Mapped[str | None] = mapped_column(String(100))
    wa_phone_number_id: Mapped[str | None] = mapped_column(String(50))
    wa_sender: Mapped[str | None] = mapped_column(String(100))
    """The WhatsApp sender key (wa_id, or the business-scoped user id)."""
    wa_reply_to: Mapped[str | None] = mapped_column(String(100))
    first_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_message_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    __table_args__ = (
        Index("ix_reports_wa_sender_status", "wa_phone_number_id", "wa_sender", "status"),
    )


class ReportMessage(Base):
    """A WhatsApp message taken into a report (a replayed webhook call finds it here)."""

    __tablename__ = "report_messages"

    wamid: Mapped[str] = mapped_column(String(200), primary_key=True)
    report_id: Mapped[int] = mapped_column(ForeignKey("reports.id", ondelete="CASCADE"), index=True)
    type: Mapped[str] = mapped_column(String(20))
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class ReportMedia(Base):
    """A file kept as evidence: the original (with its metadata) and, for what monitors
    see, a copy without location metadata."""

    __tablename__ = "report_media"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    report_id: Mapped[int] = mapped_column(ForeignKey("reports.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(10))
    """image, audio, video."""
    content_type: Mapped[str] = mapped_column(String(60))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    """Of the original, recorded at arrival."""
    storage_key: Mapped[str] = mapped_column(String(200))
    redacted_key: Mapped[str | None] = mapped_column(String(200))
    """The copy without location metadata; ``None``: none could be made (monitors see
    nothing of the file)."""
    redacted_sha256: Mapped[str | None] = mapped_column(String(64))
    lon: Mapped[float | None] = mapped_column(Float)
    lat: Mapped[float | None] = mapped_column(Float)
    """Where the photo says it was taken (EXIF), if it says."""
    source_id: Mapped[str | None] = mapped_column(String(200))
    """The WhatsApp media id it was fetched with."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
