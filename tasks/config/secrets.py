"""Secret values: typed so they never print, generated strong, checked for weakness."""

from __future__ import annotations

import functools
import secrets
import string

MASK = "********"

# Characters a secret may hold: printable ASCII without whitespace, quotes, backslash,
# '$' or backtick, so that it survives every file format it is written to unquoted.
SECRET_ALPHABET = frozenset(set(string.printable) - set(string.whitespace) - set("'\"\\$`"))

# Fixed development values used for empty secrets in the 'local' environment only.
LOCAL_DEV_SECRETS = {
    "admin_token": "local-dev-admin-token-not-for-production",
    "mysql_password": "local-dev-mysql-password",
    "mysql_root_password": "local-dev-mysql-root-password",
    "grafana_admin_password": "local-dev-grafana-password",
}

KNOWN_WEAK = frozenset(
    s.lower()
    for s in (
        "MyAccessToken",
        "admin",
        "administrator",
        "password",
        "passw0rd",
        "secret",
        "root",
        "torrust",
        "changeme",
        "change_me",
        "letmein",
        "123456",
        "12345678",
        "qwerty",
        "root_secret_local",
        "tracker_secret_local",
        "admin_secret_local",
        "root_password",
        "mysql",
        "grafana",
        "prometheus",
        "token",
        "default",
        *LOCAL_DEV_SECRETS.values(),
    )
)

PLACEHOLDER_MARKERS = ("REPLACE_ME", "REPLACE_WITH", "CHANGE_ME", "CHANGEME", "<", ">")

MIN_LENGTH = 16
# zxcvbn's estimate of the guesses an attacker needs, as a power of ten. 10^14 guesses is
# out of reach of online guessing by a wide margin and costly offline; a 256-bit generated
# secret scores far above it. zxcvbn reads at most 72 characters; longer values are judged
# by their first 72 (their length only helps).
MIN_GUESSES_LOG10 = 14
ZXCVBN_MAX = 72
ALLOWED = f"at least {MIN_LENGTH} characters, printable ASCII without spaces, quotes, backslash, '$' or backtick"


class Secret:
    """A string that prints as a mask. `reveal()` is the only way to the value."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and secrets.compare_digest(self._value, other._value)

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __repr__(self) -> str:
        return f"Secret({MASK})"

    __str__ = __repr__


def generate(nbytes: int = 32) -> str:
    """A strong random secret: 256 bits from the OS CSPRNG, URL-safe alphabet."""
    return secrets.token_urlsafe(nbytes)


def looks_like_placeholder(value: str) -> bool:
    upper = value.upper()
    return any(m in upper for m in PLACEHOLDER_MARKERS)


def bad_characters(value: str) -> str:
    return "".join(sorted({c for c in value if c not in SECRET_ALPHABET}))


@functools.lru_cache(maxsize=64)
def weakness(value: str) -> str | None:
    """Why a secret is too weak for a non-local environment, or None. The strength estimate
    is zxcvbn's (dictionary words, keyboard patterns, sequences, repeats, dates, l33t).
    Remembered for this process only (7-25 ms a value: a fleet's hosts often share secrets,
    and a fleet task loads every host's settings)."""
    from zxcvbn import zxcvbn  # imported when a secret is judged: start-up stays lean

    if value.lower() in KNOWN_WEAK:
        return "a well-known default value"
    if len(value) < MIN_LENGTH:
        return f"too short ({len(value)} characters; at least {MIN_LENGTH})"
    estimate = zxcvbn(value[:ZXCVBN_MAX])
    if estimate["guesses_log10"] < MIN_GUESSES_LOG10:
        advice = (estimate["feedback"].get("warning") or "").rstrip(".")
        return (
            f"too easy to guess (about 10^{estimate['guesses_log10']:.0f} guesses; at least 10^{MIN_GUESSES_LOG10})"
            + (f": {advice}" if advice else "")
            + "; `app.config` generates strong ones"
        )
    return None
