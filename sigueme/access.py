"""Who is asking, and what they may see and do.

A :class:`Principal` is either a user (authenticated by an API token) or the holder
of a share link (which opens one trip, read-only, until it expires or is revoked).
The access rules (ARCHITECTURE.md, promise 6) live here as plain functions, so every
route asks the same questions the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

from sigueme.store.models import Role


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller of a request."""

    user_id: int | None
    """The user; ``None`` for a share-link holder."""
    role: Role | None
    """The user's role; ``None`` for a share-link holder."""
    name: str
    share_id: int | None = None
    """The share link used, if any."""
    share_trip_id: str | None = None
    """The one trip a share link opens."""

    @property
    def is_link(self) -> bool:
        return self.user_id is None
