"""Every parameter of the watch in one frozen dataclass, and its validation.

The settings layer maps the watch's variables (NOTES-watch.md) and the task's flags onto
`WatchConfig`; `problems()` checks it with one table of rules and names each bad value by
the variable (or flag) the operator set (a mapping the settings layer passes), with what
is allowed. Secrets
(the webhook URL, which carries its token in the path, and the SMTP password) are
`Secret`s: they print as a mask.
"""

from __future__ import annotations

import ipaddress
import re
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

from tasks.config.secrets import MASK, Secret
from tasks.errors import ConfigError, SettingsError

VANTAGE_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
EMAIL_RE = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*")
HOST_RE = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*")
DURATION_RE = re.compile(r"([1-9][0-9]{0,6})(s|m|h|d)")
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class WatchConfig:
    store_path: Path
    vantage: str = "local"
    interval: float = 60.0  # seconds between round starts
    jitter: float = 5.0  # each round starts up to this many seconds late (spreads vantages)
    probe_timeout: float = 5.0  # seconds per probe attempt
    probe_attempts: int = 2
    down_after: int = 3  # K: consecutive failed rounds of a probe before "down"
    cert_days: int = 14  # N: alert when a certificate expires within N days
    silent_after: float = 600.0  # alert when a vantage recorded no round for this long
    retention_raw_days: int = 7  # raw rows; older hours are kept as per-hour aggregates
    retention_hourly_days: int = 400
    webhook_url: Secret = field(default_factory=lambda: Secret(""))
    webhook_timeout: float = 10.0
    smtp_host: str = ""
    smtp_port: int = 587
    smtp_user: str = ""
    smtp_password: Secret = field(default_factory=lambda: Secret(""))
    smtp_from: str = ""
    smtp_to: tuple[str, ...] = ()
    smtp_starttls: bool = True
    smtp_cafile: str = ""  # extra CA (PEM) to trust for a private relay; empty: the system's
    smtp_timeout: float = 15.0
    retry_base: float = 5.0  # first retry of a failed delivery after this many seconds, then doubling
    retry_max: float = 900.0  # at most this long between two tries
    retry_give_up: float = 86400.0  # a delivery still failing this long after its alert is abandoned (logged)
    metrics_port: int = 0  # 0: no Prometheus endpoint
    metrics_bind: str = "127.0.0.1"

    @property
    def round_deadline(self) -> float:
        """No round runs longer: every probe's attempts plus their pauses, plus a margin."""
        return self.probe_timeout * self.probe_attempts + 0.2 * self.probe_attempts + 2.0

    @property
    def channels(self) -> tuple[str, ...]:
        return (("webhook",) if self.webhook_url else ()) + (("smtp",) if self.smtp_host else ())

    def redacted(self) -> dict:
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Secret):
                value = MASK if value else ""
            out[f.name] = str(value) if isinstance(value, Path) else value
        return out


# How problems name a field: by default the field itself; the settings layer passes the
# variable each field is set by (NOTES-watch.md lists them), a task its flags.
FIELD_NAMES: dict[str, str] = {f.name: f.name for f in fields(WatchConfig)}


def _number(lo: float, hi: float, whole: bool = False) -> Callable[[object], str | None]:
    def check(v: object) -> str | None:
        if isinstance(v, bool) or not isinstance(v, int | float) or (whole and not isinstance(v, int)):
            return "not a whole number" if whole else "not a number"
        return None if lo <= v <= hi else "out of range"

    return check


def _vantage(v: object) -> str | None:
    return None if isinstance(v, str) and VANTAGE_RE.fullmatch(v) else "not a valid vantage name"


def _webhook(v: object) -> str | None:
    url = v.reveal() if isinstance(v, Secret) else ""
    if not url:
        return None
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "not an http(s) URL with a host"
    if parts.username or parts.password:
        return "must not hold a user or password (put the token in the path, as Slack and Matrix do)"
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        return "has an invalid port"
    return None


def _host(v: object) -> str | None:
    if v == "":
        return None
    try:
        ipaddress.ip_address(v)
        return None
    except ValueError:
        return None if isinstance(v, str) and HOST_RE.fullmatch(v) else "not a host name or IP address"


def _email(v: object) -> str | None:
    return None if v == "" or (isinstance(v, str) and EMAIL_RE.fullmatch(v)) else "not an email address"


def _emails(v: object) -> str | None:
    bad = [a for a in v if not EMAIL_RE.fullmatch(a)] if isinstance(v, tuple) else ["?"]
    return f"not an email address: {bad[0]!r}" if bad else None


def _bind(v: object) -> str | None:
    try:
        ipaddress.ip_address(v)
        return None
    except ValueError:
        return "not an IP address"


def _cafile(v: object) -> str | None:
    return None if v == "" or Path(str(v)).is_file() else "file not found"


def _store(v: object) -> str | None:
    return None if isinstance(v, Path) and str(v) not in ("", ".") else "not a file path"


# field -> (check, allowed values as the operator reads them)
RULES: dict[str, tuple[Callable[[object], str | None], str]] = {
    "store_path": (_store, "a file path (default: the environment's state directory)"),
    "vantage": (_vantage, "lowercase letters, digits, '.', '_', '-', at most 63 characters"),
    "interval": (_number(1, 86400), "seconds from 1 to 86400"),
    "jitter": (_number(0, 43200), "seconds from 0 to half the interval"),
    "probe_timeout": (_number(0.2, 120), "seconds from 0.2 to 120"),
    "probe_attempts": (_number(1, 10, whole=True), "a whole number from 1 to 10"),
    "down_after": (_number(1, 100, whole=True), "a whole number of rounds from 1 to 100"),
    "cert_days": (_number(1, 365, whole=True), "a whole number of days from 1 to 365"),
    "silent_after": (_number(2, 31 * 86400), "seconds, at least twice the interval"),
    "retention_raw_days": (_number(1, 3650, whole=True), "a whole number of days from 1 to 3650"),
    "retention_hourly_days": (_number(1, 3650, whole=True), "a whole number of days, at least the raw retention"),
    "webhook_url": (_webhook, "empty, or an http(s) URL"),
    "webhook_timeout": (_number(1, 120), "seconds from 1 to 120"),
    "smtp_host": (_host, "empty, or a host name or IP address"),
    "smtp_port": (_number(1, 65535, whole=True), "a whole number from 1 to 65535"),
    "smtp_from": (_email, "an email address"),
    "smtp_to": (_emails, "email addresses, comma-separated"),
    "smtp_cafile": (_cafile, "empty, or a PEM file"),
    "smtp_timeout": (_number(1, 300), "seconds from 1 to 300"),
    "retry_base": (_number(0.1, 3600), "seconds from 0.1 to 3600"),
    "retry_max": (_number(1, 86400), "seconds from 1 to 86400, at least the first retry"),
    "retry_give_up": (_number(60, 30 * 86400), "seconds from 60 to 30 days"),
    "metrics_port": (_number(0, 65535, whole=True), "0 (off) or a port from 1 to 65535"),
    "metrics_bind": (_bind, "an IP address such as 127.0.0.1 or 0.0.0.0"),
}


def _cross(cfg: WatchConfig, bad: set[str]) -> list[tuple[str, str]]:
    """Rules between fields: (field, message); a rule whose fields already failed on their
    own is not checked (one problem per mistake)."""
    out: list[tuple[str, str]] = []

    def rule(names: tuple[str, ...], failed: bool, name: str, message: str) -> None:
        if not bad.intersection(names) and failed:
            out.append((name, message))

    c = cfg
    if not bad.intersection(("jitter", "interval", "silent_after", "retry_base", "retry_max")):
        rule((), c.jitter > c.interval / 2, "jitter", f"more than half the interval ({c.interval:g} s)")
        rule(
            (), c.silent_after < 2 * c.interval, "silent_after", f"less than twice the interval ({2 * c.interval:g} s)"
        )
        rule((), c.retry_max < c.retry_base, "retry_max", f"less than the first retry ({c.retry_base:g} s)")
    rule(
        ("retention_raw_days", "retention_hourly_days"),
        not bad.intersection(("retention_raw_days", "retention_hourly_days"))
        and c.retention_hourly_days < c.retention_raw_days,
        "retention_hourly_days",
        f"less than the raw retention ({c.retention_raw_days} days)",
    )
    if c.smtp_host:
        rule(("smtp_from",), not c.smtp_from, "smtp_from", "required when an SMTP host is set")
        rule(("smtp_to",), not c.smtp_to, "smtp_to", "required when an SMTP host is set")
        if bool(c.smtp_user) != bool(c.smtp_password):
            out.append(("smtp_password" if c.smtp_user else "smtp_user", "user and password go together"))
        rule(
            ("smtp_host",),
            bool(c.smtp_password) and not c.smtp_starttls and not _loopback(c.smtp_host),
            "smtp_starttls",
            "off, but a password would then cross the network in clear text",
        )
    elif any((c.smtp_user, c.smtp_password, c.smtp_from, c.smtp_to)):
        out.append(("smtp_host", "empty, but other SMTP settings are set"))
    return out


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def problems(cfg: WatchConfig, names: Mapping[str, str] = FIELD_NAMES) -> list[str]:
    """Every problem of `cfg`, each naming the variable (or flag), the value (secrets
    masked) and what is allowed. Empty when the configuration is usable."""
    found: list[tuple[str, str]] = []
    for name, (check, _allowed) in RULES.items():
        message = check(getattr(cfg, name))
        if message:
            found.append((name, message))
    found += _cross(cfg, {f for f, _ in found})
    out = []
    for name, message in found:
        value = getattr(cfg, name)
        shown = (MASK if value else "") if isinstance(value, Secret) else value
        if isinstance(shown, tuple):
            shown = ",".join(shown)
        allowed = RULES.get(name, (None, ""))[1]
        out.append(
            f"{names.get(name, name)} = {str(shown)!r}: {message}" + (f" (allowed: {allowed})" if allowed else "")
        )
    return out


def validate(cfg: WatchConfig, env: str = "local", names: Mapping[str, str] = FIELD_NAMES) -> WatchConfig:
    """`cfg` unchanged, or a SettingsError (exit 2) listing every problem."""
    found = problems(cfg, names)
    if found:
        raise SettingsError(env, found)
    return cfg


def parse_duration(text: str, what: str = "--for") -> float:
    """'90s', '10m', '2h', '7d' in seconds; a ConfigError naming `what` otherwise."""
    m = DURATION_RE.fullmatch((text or "").strip())
    if not m:
        raise ConfigError(
            f"{what} {text!r}: not a duration (allowed: a whole number and a unit s, m, h or d: 90s, 10m, 24h, 7d)"
        )
    return int(m.group(1)) * UNIT_SECONDS[m.group(2)]


def default_vantage(hostname: str) -> str:
    """A vantage name from a host name: lowercase, the first label, other characters as '-'."""
    name = re.sub(r"[^a-z0-9._-]", "-", hostname.split(".")[0].lower()).strip("-._")[:63]
    return name if VANTAGE_RE.fullmatch(name or "") else "local"
