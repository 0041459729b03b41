"""Service settings, from ``SIGUEME_*`` environment variables (pydantic-settings).

Built in :func:`sigueme.api.app.create_app` or the CLI, never at import time, so tests
pass explicit settings.
"""

from __future__ import annotations

import re

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./sigueme.db"
DEFAULT_TILE_URL = "https://tile.openstreetmap.org/{z}/{x}/{y}.png"
DEFAULT_TILE_ATTRIBUTION = "© colaboradores de OpenStreetMap"
_TILE_CHARS = r"[A-Za-z0-9._~{}/@&=+%!$,-]"
TILE_URL = re.compile(
    rf"https?://[A-Za-z0-9.{{}}-]+(:[0-9]{{1,5}})?/{_TILE_CHARS}*(\?{_TILE_CHARS}*)?"
)
"""What a tile template may look like: nothing that would break out of the header or
the page it is written into (no spaces, quotes, semicolons or angle brackets)."""


class Settings(BaseSettings):
    """Everything the service reads from its environment."""

    model_config = SettingsConfigDict(env_prefix="SIGUEME_", extra="ignore")

    database_url: SecretStr = Field(
        default=SecretStr(DEFAULT_DATABASE_URL),
        description="SQLAlchemy async URL: sqlite+aiosqlite:///FILE (embedded default) or "
        "postgresql+asyncpg://USER:PASSWORD@HOST:PORT/DB (PostGIS).",
    )
    redis_url: SecretStr | None = Field(
        default=None,
        description="redis://HOST:PORT/DB for the live bus and the police queue; unset: "
        "in-process. The service starts and stays up while Redis is down (it reports "
        "it in /readyz): nothing waits on Redis to be stored.",
    )
    retention_days: float = Field(
        default=30.0, gt=0, le=3650, description="Location history older than this is purged."
    )
    purge_interval_s: float = Field(
        default=3600.0, gt=0, description="How often the background purge runs."
    )
    escalate_after_s: float = Field(
        default=120.0,
        gt=0,
        le=86400,
        description="An alert still open (not acknowledged) this long escalates: severity "
        "one step up and delivered again; and again after as long.",
    )
    watchdog_interval_s: float = Field(
        default=1.0,
        gt=0,
        le=60,
        description="How often each worker looks for silent and overdue trips and alerts "
        "to escalate.",
    )
    police_stream: str = Field(
        default="sigueme:police", description="The Redis Stream of the police queue."
    )
    police_group: str = Field(
        default="policia-morelos", description="The police queue's consumer group."
    )
    cap_sender: str = Field(
        default="sigueme@ces.morelos.gob.mx",
        description="The CAP 1.2 sender of exported alerts (no spaces, commas or < &).",
    )
    public_url: str = Field(
        default="http://127.0.0.1:8000", description="Where people reach this service."
    )
    tile_url: str = Field(
        default=DEFAULT_TILE_URL,
        max_length=500,
        description="The web map's base-map tiles, an XYZ template with {z}, {x} and {y} "
        "(and optionally {s}, served from a, b, c): the browser fetches them directly, and "
        "the pages' Content-Security-Policy allows that host for images. Empty: no base "
        "map (routes, corridors and positions draw on a plain background).",
    )
    tile_attribution: str = Field(
        default=DEFAULT_TILE_ATTRIBUTION,
        max_length=300,
        description="Plain text shown on the map for the tiles (their licence asks for it).",
    )
    # -- reports (SeguriChat): evidence files and WhatsApp --------------------------------
    evidence_dir: str = Field(
        default="./evidence",
        description="Where evidence files (reports' photos, audio, video) are kept on local "
        "disk, when no S3 bucket is configured.",
    )
    s3_endpoint: str | None = Field(
        default=None,
        description="URL of an S3-compatible object store (MinIO, Ceph...); unset with a "
        "bucket: AWS S3.",
    )
    s3_bucket: str | None = Field(
        default=None,
        description="Keep evidence in this S3-compatible bucket instead of evidence_dir.",
    )
    s3_access_key: SecretStr | None = Field(default=None, description="The bucket's access key.")
    s3_secret_key: SecretStr | None = Field(default=None, description="The bucket's secret key.")
    s3_region: str = Field(default="us-east-1", description="The bucket's region.")
    whatsapp_verify_token: SecretStr | None = Field(
        default=None,
        description="The verify token entered in Meta's App Dashboard for the webhook "
        "(/webhooks/whatsapp). Unset: the webhook answers 404 (WhatsApp off).",
    )
    whatsapp_app_secret: SecretStr | None = Field(
        default=None,
        description="The Meta app's secret: notifications are signed with it "
        "(X-Hub-Signature-256). Unset: notifications are refused (503).",
    )
    whatsapp_access_token: SecretStr | None = Field(
        default=None,
        description="A permanent (system user) access token with whatsapp_business_messaging: "
        "media downloads and replies. Unset: notifications are refused (503).",
    )
    whatsapp_graph_url: str = Field(
        default="https://graph.facebook.com", description="Base URL of Meta's Graph API."
    )
    whatsapp_api_version: str = Field(
        default="v23.0", pattern=r"^v?\d{1,3}(\.\d{1,3})?$", description="Graph API version."
    )
    report_window_s: float = Field(
        default=300.0,
        gt=0,
        le=3600,
        description="WhatsApp messages from one person less than this many seconds after "
        "their previous one join the same report.",
    )

    @field_validator("tile_url")
    @classmethod
    def _tile_template(cls, value: str) -> str:
        value = value.strip()
        if not value:
            return value
        if not TILE_URL.fullmatch(value):
            raise ValueError(
                "an http(s) URL template with {z}, {x} and {y}, without spaces or quotes"
            )
        if not all(part in value for part in ("{z}", "{x}", "{y}")):
            raise ValueError("the template needs {z}, {x} and {y}")
        return value

    @property
    def database_dialect(self) -> str:
        return self.database_url.get_secret_value().split(":", 1)[0].split("+", 1)[0]
