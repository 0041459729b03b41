"""Service settings, from ``SIGUEME_*`` environment variables (pydantic-settings).

Built in :func:`sigueme.api.app.create_app` or the CLI, never at import time, so tests
pass explicit settings.
"""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./sigueme.db"


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
    public_url: str = Field(
        default="http://127.0.0.1:8000", description="Where people reach this service."
    )

    @property
    def database_dialect(self) -> str:
        return self.database_url.get_secret_value().split(":", 1)[0].split("+", 1)[0]
