"""The traveller's two PINs: one cancels their alerts, the other (duress) looks like a
cancel on the phone and raises the alert for the police.

PINs are short, so a plain hash would fall to a dictionary of all 10^8 of them: they
are kept as salted PBKDF2-HMAC-SHA256 with many iterations
(``pbkdf2_sha256$ITERATIONS$SALT$HASH``), compared in constant time, and wrong
attempts are rate-limited where they are entered.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from enum import Enum
from typing import Final

from sigueme.errors import Invalid
from sigueme.store.models import User

ITERATIONS: Final = 200_000
PIN_PATTERN: Final = re.compile(r"[0-9]{4,8}")


class PinMatch(Enum):
    NONE = "none"
    CANCEL = "cancel"
    DURESS = "duress"


def check_pin(field: str, pin: str) -> str:
    if not isinstance(pin, str) or not PIN_PATTERN.fullmatch(pin):
        raise Invalid(field, "must be 4 to 8 digits")
    return pin


def hash_pin(pin: str, *, iterations: int = ITERATIONS) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", pin.encode(), salt, iterations)
    return "$".join(
        (
            "pbkdf2_sha256",
            str(iterations),
            base64.b64encode(salt).decode(),
            base64.b64encode(digest).decode(),
        )
    )


def pin_matches(stored: str | None, pin: str) -> bool:
    """Whether ``pin`` is the one ``stored`` was made from (constant time)."""
    if not stored:
        return False
    try:
        scheme, iterations, salt, digest = stored.split("$")
        if scheme != "pbkdf2_sha256":
            return False
        expected = base64.b64decode(digest)
        got = hashlib.pbkdf2_hmac("sha256", pin.encode(), base64.b64decode(salt), int(iterations))
    except ValueError:
        return False
    return hmac.compare_digest(expected, got)


def set_pins(user: User, pin: str, duress_pin: str) -> None:
    """Give ``user`` a cancel PIN and a duress PIN (they must differ)."""
    check_pin("pin", pin)
    check_pin("duress_pin", duress_pin)
    if pin == duress_pin:
        raise Invalid("duress_pin", "must differ from the PIN")
    user.pin_hash = hash_pin(pin)
    user.duress_pin_hash = hash_pin(duress_pin)


def match_pin(user: User, pin: str) -> PinMatch:
    """Which of ``user``'s PINs ``pin`` is. Both are always checked, so the time taken
    does not tell which one matched."""
    cancel = pin_matches(user.pin_hash, pin)
    duress = pin_matches(user.duress_pin_hash, pin)
    if duress:
        return PinMatch.DURESS
    if cancel:
        return PinMatch.CANCEL
    return PinMatch.NONE
