"""Bearer tokens: how they are made and how they are kept.

A user's API token starts with ``sgm_``, a share link's with ``sgl_``; the rest is
``secrets.token_urlsafe(32)`` (256 random bits). Only the SHA-256 of the whole token
is stored (``Token.token_hash``, ``Share.token_hash``), so a copy of the database
opens nothing, and tokens are looked up by that hash, never compared in plain text.
"""

from __future__ import annotations

import hashlib
import secrets

USER_TOKEN_PREFIX = "sgm_"
LINK_TOKEN_PREFIX = "sgl_"
MAX_TOKEN_CHARS = 200
"""Longer bearer strings are refused unhashed: ours are 47 characters."""


def hash_token(token: str) -> str:
    """The hex SHA-256 of ``token``: what the database keeps."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def mint_token(prefix: str) -> tuple[str, str]:
    """A new token with ``prefix`` and its hash: ``(plaintext, token_hash)``.

    The plaintext is shown to its holder once and kept nowhere."""
    token = prefix + secrets.token_urlsafe(32)
    return token, hash_token(token)


def new_user_token() -> tuple[str, str]:
    """A new user API token (``sgm_...``) and its hash."""
    return mint_token(USER_TOKEN_PREFIX)


def new_link_token() -> tuple[str, str]:
    """A new share-link token (``sgl_...``) and its hash."""
    return mint_token(LINK_TOKEN_PREFIX)
