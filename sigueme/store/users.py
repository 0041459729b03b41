"""Accounts: users, their API tokens, and who a bearer token belongs to.

Every function works inside the caller's :class:`AsyncSession` and only flushes: the
caller commits (one transaction per request or command).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from sigueme.access import Principal
from sigueme.errors import Conflict, Invalid, NotFound
from sigueme.store.models import Role, Share, Token, User, utcnow
from sigueme.store.tokens import (
    LINK_TOKEN_PREFIX,
    MAX_TOKEN_CHARS,
    USER_TOKEN_PREFIX,
    hash_token,
    new_user_token,
)

LINK_DEFAULT_NAME = "enlace"
"""What a share-link holder is called when the link has no label."""

# A login handle typed on the command line: letters (accents too), digits and . _ - @.
_NAME = re.compile(r"^[\w.@-]{1,100}$")
_LIMITS = {"display_name": 200, "contact": 200, "profile": 50, "label": 100}


def parse_role(role: str | Role) -> Role:
    """``role`` as a :class:`Role`, or :class:`Invalid` naming the ones there are."""
    try:
        return Role(role)
    except ValueError:
        known = ", ".join(r.value for r in Role)
        raise Invalid("role", f"{role!r} is not a role (one of: {known})") from None


def _check_name(name: str) -> str:
    if not _NAME.match(name):
        raise Invalid("name", "1 to 100 letters, digits or . _ - @ (no spaces), e.g. ana.lopez")
    return name


def _check_text(field: str, value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if len(value) > _LIMITS[field]:
        raise Invalid(field, f"at most {_LIMITS[field]} characters")
    return value


async def add_user(
    session: AsyncSession,
    name: str,
    role: str | Role,
    display_name: str | None = None,
    contact: str | None = None,
    profile: str | None = None,
    token_label: str | None = None,
) -> tuple[User, str]:
    """Create a user with a first API token: ``(user, plaintext token)``.

    The token is returned only here; the database keeps its hash. Raises
    :class:`Conflict` when the name is taken, :class:`Invalid` for a bad name, role or
    an over-long field."""
    user = User(
        name=_check_name(name),
        role=parse_role(role).value,
        display_name=_check_text("display_name", display_name),
        contact=_check_text("contact", contact),
        profile=_check_text("profile", profile),
        disabled=False,
    )
    if await _find(session, name) is not None:
        raise Conflict(f"a user named {name!r} already exists")
    session.add(user)
    try:
        await session.flush()
    except IntegrityError:
        # Someone took the name between the check and the insert.
        raise Conflict(f"a user named {name!r} already exists") from None
    token = await issue_token(session, user, token_label)
    return user, token


async def _find(session: AsyncSession, name: str) -> User | None:
    return (await session.execute(select(User).where(User.name == name))).scalar_one_or_none()


async def get_user(session: AsyncSession, name: str) -> User:
    """The user called ``name``, or :class:`NotFound`."""
    user = await _find(session, name)
    if user is None:
        raise NotFound(f"no user named {name!r}")
    return user


async def list_users(session: AsyncSession) -> Sequence[User]:
    """Every user, disabled ones too, by name."""
    return (await session.execute(select(User).order_by(User.name))).scalars().all()


async def active_token_counts(session: AsyncSession) -> dict[int, int]:
    """Unrevoked tokens per user id (users without any are absent)."""
    rows = await session.execute(
        select(Token.user_id, func.count())
        .where(Token.revoked_at.is_(None))
        .group_by(Token.user_id)
    )
    return {int(user_id): int(count) for user_id, count in rows}


async def disable_user(session: AsyncSession, name: str) -> tuple[User, int]:
    """Disable the user called ``name`` and revoke their tokens: ``(user, tokens
    revoked)``. From now on none of their tokens authenticates. Disabling a disabled
    user changes nothing."""
    user = await get_user(session, name)
    user.disabled = True
    revoked = await revoke_tokens(session, user)
    await session.flush()
    return user, revoked


async def issue_token(session: AsyncSession, user: User, label: str | None = None) -> str:
    """A new API token for ``user``; returns the plaintext, stores only its hash.

    Raises :class:`Conflict` for a disabled user."""
    if user.disabled:
        raise Conflict(f"user {user.name!r} is disabled")
    token, token_hash = new_user_token()
    session.add(Token(user_id=user.id, token_hash=token_hash, label=_check_text("label", label)))
    await session.flush()
    return token


async def revoke_tokens(session: AsyncSession, user: User) -> int:
    """Revoke every unrevoked token of ``user``; returns how many there were."""
    result = await session.execute(
        update(Token)
        .where(Token.user_id == user.id, Token.revoked_at.is_(None))
        .values(revoked_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def revoke_token(session: AsyncSession, token: str) -> bool:
    """Revoke the API token ``token`` (plaintext); False when there is no such
    unrevoked token."""
    result = await session.execute(
        update(Token)
        .where(Token.token_hash == hash_token(token), Token.revoked_at.is_(None))
        .values(revoked_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0))


async def authenticate(session: AsyncSession, token: str) -> Principal | None:
    """Who holds ``token``, or ``None`` when it opens nothing.

    A user API token (``sgm_``) is valid while it is not revoked and its user is not
    disabled. A share-link token (``sgl_``) is valid while the share is neither
    revoked nor expired; its holder is a principal without user or role that may
    watch the one trip of the share."""
    if len(token) > MAX_TOKEN_CHARS:
        return None
    if token.startswith(USER_TOKEN_PREFIX):
        row = (
            await session.execute(
                select(User)
                .join(Token, Token.user_id == User.id)
                .where(
                    Token.token_hash == hash_token(token),
                    Token.revoked_at.is_(None),
                    User.disabled.is_(False),
                )
            )
        ).scalar_one_or_none()
        if row is None:
            return None
        return Principal(user_id=row.id, role=Role(row.role), name=row.name)
    if token.startswith(LINK_TOKEN_PREFIX):
        share = (
            await session.execute(
                select(Share).where(
                    Share.token_hash == hash_token(token),
                    Share.revoked_at.is_(None),
                    Share.expires_at > utcnow(),
                )
            )
        ).scalar_one_or_none()
        if share is None:
            return None
        return Principal(
            user_id=None,
            role=None,
            name=share.label or LINK_DEFAULT_NAME,
            share_id=share.id,
            share_trip_id=share.trip_id,
        )
    return None
