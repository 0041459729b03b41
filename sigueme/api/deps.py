"""What a route handler can ask for, as ``Annotated[..., Depends(...)]`` aliases.

- :data:`SettingsDep`: the app's :class:`~sigueme.settings.Settings`.
- :data:`SessionDep`: an :class:`AsyncSession` for this request (the handler commits).
- :data:`PrincipalDep`: who is calling, from ``Authorization: Bearer <token>`` (a user
  API token ``sgm_...`` or a share-link token ``sgl_...``); 401 otherwise.
- :data:`UserDep`: a caller that is a user, not a share link; 403 for a link.
- :func:`require_role`: a caller with one of the given roles; 403 otherwise.

Everything comes from ``app.state`` (set up by :func:`sigueme.api.app.create_app`'s
lifespan), never from module globals, so each app (and each test) has its own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.requests import HTTPConnection

from sigueme.access import Principal
from sigueme.errors import Forbidden, Unauthorized
from sigueme.settings import Settings
from sigueme.store.models import Role
from sigueme.store.users import authenticate


def get_settings(conn: HTTPConnection) -> Settings:
    """The settings the app was built with."""
    settings: Settings = conn.app.state.settings
    return settings


async def get_session(conn: HTTPConnection) -> AsyncIterator[AsyncSession]:
    """A session from the app's factory, closed (and rolled back unless committed)
    when the request is done."""
    sessions: async_sessionmaker[AsyncSession] = conn.app.state.sessions
    async with sessions() as session:
        yield session


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[AsyncSession, Depends(get_session)]

# auto_error=False: a missing header gets our 401 (with WWW-Authenticate), not
# FastAPI's 403; the scheme still documents "Authorize" in the OpenAPI schema.
_bearer = HTTPBearer(
    auto_error=False,
    description="A user API token (sgm_...) or a share-link token (sgl_...).",
)


async def get_principal(
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The caller, or :class:`Unauthorized` (401) when the bearer token is missing,
    unknown, revoked, expired, or belongs to a disabled user."""
    if credentials is None:
        raise Unauthorized("missing bearer token: send the header Authorization: Bearer <token>")
    principal = await authenticate(session, credentials.credentials)
    if principal is None:
        # One answer for every failure, so a caller learns nothing about other tokens.
        raise Unauthorized("invalid, revoked or expired token")
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]


async def get_user(principal: PrincipalDep) -> Principal:
    """The caller if they are a user; :class:`Forbidden` (403) for a share link."""
    if principal.user_id is None:
        raise Forbidden("a share link can only watch its trip; this needs a user token")
    return principal


UserDep = Annotated[Principal, Depends(get_user)]


def require_role(*roles: Role) -> Callable[..., Awaitable[Principal]]:
    """A dependency giving the caller when they are a user with one of ``roles``;
    :class:`Forbidden` (403) otherwise. Use it as
    ``Annotated[Principal, Depends(require_role(Role.ADMIN))]`` or in a route's
    ``dependencies=[...]``."""
    if not roles:
        raise ValueError("require_role needs at least one role")
    allowed = frozenset(roles)
    needed = " or ".join(r.value for r in roles)

    async def _require_role(principal: UserDep) -> Principal:
        if principal.role not in allowed:
            raise Forbidden(f"this needs the role {needed}")
        return principal

    return _require_role


AdminDep = Annotated[Principal, Depends(require_role(Role.ADMIN))]

__all__ = [
    "AdminDep",
    "PrincipalDep",
    "SessionDep",
    "SettingsDep",
    "UserDep",
    "get_principal",
    "get_session",
    "get_settings",
    "get_user",
    "require_role",
]
