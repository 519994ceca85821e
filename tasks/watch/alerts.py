"""Alerts on state changes, not on every failure; webhook and SMTP channels.

A probe (one address of one family seen from one vantage) goes **down** after K
consecutive failed rounds and **recovered** at its first success after that. A TLS
certificate that expires within N days raises **cert_expiring** once (again only after a
renewal). A vantage that recorded no round for `silent_after` raises **watch_silent**:
the watch's own gap is noticed when it runs again (cron stopped, host asleep); another
vantage's (an imported store) while this one runs. Prometheus' last-round gauge lets
Alertmanager page on a silent watch as it happens (docs/guides/watch.md).

The state lives in the store (table alert_state), so `--once` runs from cron keep it.
Events of one round are grouped per kind: one "down" alert names every probe that went
down in that round. Each alert is recorded with one delivery per channel; a delivery that
fails is retried with exponential back-off (`retry_base` doubling up to `retry_max`) until
it succeeds or `retry_give_up` has passed, logged each time; a channel never stops the
watch. Webhook body: JSON with a `text` field (what Slack and Matrix hookshot show) plus
the structured alert.
"""

from __future__ import annotations

import http.client
import json
import logging
import smtplib
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Protocol

from tasks.config.secrets import MASK
from tasks.watch.config import WatchConfig
from tasks.watch.records import SeriesKey
from tasks.watch.store import Store

log = logging.getLogger("torrust.watch")

State = tuple[str, int, int | None, str | None]  # (state, consecutive failures, since ms, detail)
UP, DOWN, WARNED, OK, SILENT = "up", "down", "warned", "ok", "silent"


@dataclass(frozen=True)
class Observation:
    key: SeriesKey
    ok: bool
    latency_ms: int
    detail: str
    error: str | None = None
    value: float | None = None


@dataclass(frozen=True)
class Event:
    kind: str  # down, recovered, cert_expiring, watch_silent
    subject: str  # the probe's label, or the vantage
    since: int | None  # ms
    detail: str


# ---------------------------------------------------------------------- state machine
def step(prev: State | None, ok: bool, t: int, detail: str, k: int) -> tuple[State, str | None]:
    """One probe's next state after a round, and "down"/"recovered" when it changes."""
    state, fails, since, _ = prev or (UP, 0, None, None)
    if ok:
        return (UP, 0, None, None), ("recovered" if state == DOWN else None)
    fails, since = fails + 1, since if fails else t
    if state == UP and fails >= k:
        return (DOWN, fails, since, detail), "down"
    return (state, fails, since, detail), None


def cert_step(prev: State | None, not_after: float, t: int, days: int) -> tuple[State, bool]:
    """A certificate's state; True when it just entered the last `days` days."""
    state = prev[0] if prev else OK
    left = not_after - t / 1000
    if left < days * 86400:
        return (WARNED, 0, t, None), state != WARNED
    return (OK, 0, None, None), False


def evaluate(
    states: dict[str, State],
    observations: Iterable[Observation],
    cfg: WatchConfig,
    t: int,
    last_rounds: dict[str, int],
) -> tuple[dict[str, State], list[Event]]:
    """The state changes and events of one round of `cfg.vantage` at time `t` (ms)."""
    updates: dict[str, State] = {}
    events: list[Event] = []
    gap_ms = cfg.silent_after * 1000
    for vantage, last in sorted(last_rounds.items()):
        key = f"silent:{vantage}"
        if vantage == cfg.vantage:
            if t - last > gap_ms:
                events.append(
                    Event("watch_silent", vantage, last, f"no round for {_span((t - last) / 1000)}, resumed now")
                )
            continue
        silent = t - last > gap_ms
        was = (states.get(key) or (OK,))[0] == SILENT
        if silent and not was:
            events.append(Event("watch_silent", vantage, last, f"no round for {_span((t - last) / 1000)}"))
        if silent != was:
            updates[key] = (SILENT if silent else OK, 0, last if silent else None, None)
    for obs in observations:
        key = f"down:{obs.key.vantage}|{obs.key.label}"
        new, change = step(states.get(key), obs.ok, t, obs.detail, cfg.down_after)
        if new != states.get(key) and not (states.get(key) is None and new == (UP, 0, None, None)):
            updates[key] = new
        if change == "down":
            events.append(Event("down", obs.key.label, new[2], obs.detail))
        elif change == "recovered":
            prev_since = states[key][2]
            events.append(Event("recovered", obs.key.label, prev_since, f"down for {_span((t - prev_since) / 1000)}"))
        if obs.key.kind == "tls" and obs.value is not None:
            ckey = f"cert:{obs.key.vantage}|{obs.key.label}"
            cnew, entered = cert_step(states.get(ckey), obs.value, t, cfg.cert_days)
            if cnew[0] != (states.get(ckey) or (OK,))[0]:
                updates[ckey] = cnew
            if entered:
                left = (obs.value - t / 1000) / 86400
                when = datetime.fromtimestamp(obs.value, UTC).strftime("%Y-%m-%d %H:%M UTC")
                events.append(Event("cert_expiring", obs.key.label, None, f"expires in {left:.1f} days ({when})"))
    return updates, events


def _span(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


# ---------------------------------------------------------------------- alert texts
TITLES = {
    "down": "DOWN",
    "recovered": "RECOVERED",
    "cert_expiring": "CERTIFICATE EXPIRING",
    "watch_silent": "WATCH SILENT",
}


@dataclass(frozen=True)
class Alert:
    kind: str
    subject: str
    text: str
    body: dict


def _when(ms: int | None) -> str:
    return "" if ms is None else datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def compose(events: list[Event], vantage: str, env: str, t: int, k: int) -> list[Alert]:
    """One alert per kind of event in the round."""
    out = []
    for kind in TITLES:
        group = [e for e in events if e.kind == kind]
        if not group:
            continue
        first = group[0].subject + (f" (+{len(group) - 1} more)" if len(group) > 1 else "")
        subject = f"[torrust {env} watch {vantage}] {TITLES[kind]}: {first}"
        intro = {
            "down": f"{len(group)} probe(s) failed {k} rounds in a row, seen from {vantage}:",
            "recovered": f"{len(group)} probe(s) answer again, seen from {vantage}:",
            "cert_expiring": f"{len(group)} certificate(s) expire soon, seen from {vantage}:",
            "watch_silent": "the watch recorded no rounds:",
        }[kind]
        lines = [
            f"- {e.subject}: {e.detail}" + (f" (since {_when(e.since)})" if e.since and kind != "recovered" else "")
            for e in group
        ]
        text = f"{TITLES[kind]} [{env}] {intro}\n" + "\n".join(lines)
        body = {
            "kind": kind,
            "env": env,
            "vantage": vantage,
            "time": _when(t),
            "events": [{"subject": e.subject, "since": _when(e.since) or None, "detail": e.detail} for e in group],
        }
        out.append(Alert(kind, subject, text, body))
    return out


# ---------------------------------------------------------------------- channels
class ChannelError(Exception):
    """A delivery failed; the message is safe to log (no secret)."""


class Channel(Protocol):
    name: str

    def describe(self) -> str: ...

    def send(self, subject: str, text: str, body: dict) -> None: ...


def _scrub(text: str, secrets: Iterable[str]) -> str:
    for s in sorted({x for x in secrets if x}, key=len, reverse=True):
        text = text.replace(s, MASK)
    return text


class WebhookChannel:
    name = "webhook"

    def __init__(self, cfg: WatchConfig):
        self._url = cfg.webhook_url
        self._timeout = cfg.webhook_timeout
        parts = urllib.parse.urlsplit(cfg.webhook_url.reveal())
        self._where = f"{parts.scheme}://{parts.netloc}/{MASK}"  # the path holds the token

    def describe(self) -> str:
        return f"webhook {self._where}"

    def send(self, subject: str, text: str, body: dict) -> None:
        url = self._url.reveal()
        data = json.dumps({"text": text, "subject": subject, **body}).encode()
        request = urllib.request.Request(  # noqa: S310 - the scheme is checked (http/https) by config
            url,
            data=data,
            method="POST",
            headers={"Content-Type": "application/json", "User-Agent": "torrust-deploy-watch/0.1"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as reply:  # noqa: S310
                reply.read(65536)
        except urllib.error.HTTPError as exc:
            raise ChannelError(f"{self.describe()}: HTTP {exc.code} {exc.reason}") from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", exc)
            raise ChannelError(_scrub(f"{self.describe()}: {reason}", [url])) from None


class SmtpChannel:
    name = "smtp"

    def __init__(self, cfg: WatchConfig):
        self._cfg = cfg

    def describe(self) -> str:
        c = self._cfg
        return f"smtp {c.smtp_user + '@' if c.smtp_user else ''}{c.smtp_host}:{c.smtp_port}"

    def message(self, subject: str, text: str) -> EmailMessage:
        c = self._cfg
        msg = EmailMessage()
        msg["Subject"] = subject
        msg["From"] = c.smtp_from
        msg["To"] = ", ".join(c.smtp_to)
        msg["Date"] = format_datetime(datetime.now(UTC))
        msg["Message-ID"] = make_msgid(domain=c.smtp_from.rsplit("@", 1)[-1])
        msg.set_content(text + "\n\n-- \ntorrust-deploy health.watch\n")
        return msg

    def send(self, subject: str, text: str, body: dict) -> None:
        c = self._cfg
        password = c.smtp_password.reveal()
        try:
            with smtplib.SMTP(c.smtp_host, c.smtp_port, timeout=c.smtp_timeout) as smtp:
                smtp.ehlo()
                if c.smtp_starttls:
                    smtp.starttls(context=ssl.create_default_context(cafile=c.smtp_cafile or None))
                    smtp.ehlo()
                if c.smtp_user:
                    smtp.login(c.smtp_user, password)
                smtp.send_message(self.message(subject, text))
        except smtplib.SMTPAuthenticationError as exc:
            raise ChannelError(f"{self.describe()}: authentication refused ({exc.smtp_code})") from None
        except smtplib.SMTPNotSupportedError as exc:
            raise ChannelError(f"{self.describe()}: {_scrub(str(exc), [password])}") from None
        except (smtplib.SMTPException, OSError, ssl.SSLError) as exc:
            detail = str(exc) or type(exc).__name__
            raise ChannelError(_scrub(f"{self.describe()}: {detail}", [password])) from None


def channels_from(cfg: WatchConfig) -> dict[str, Channel]:
    out: dict[str, Channel] = {}
    if cfg.webhook_url:
        out["webhook"] = WebhookChannel(cfg)
    if cfg.smtp_host:
        out["smtp"] = SmtpChannel(cfg)
    return out


# ---------------------------------------------------------------------- delivery
def backoff(attempt: int, base: float, cap: float) -> float:
    """Seconds before try `attempt + 1`: base, 2 base, 4 base, ... at most cap."""
    return min(cap, base * 2 ** max(0, attempt - 1))


def deliver_due(store: Store, channels: dict[str, Channel], cfg: WatchConfig, now: int) -> dict[str, int]:
    """Try every delivery that is due once. Failures are logged and rescheduled; nothing raises
    for a channel's fault."""
    counts = {"sent": 0, "failed": 0, "gave_up": 0}
    for alert, name, attempts, t, kind, subject, text, body in store.due_deliveries(now):
        channel = channels.get(name)
        try:
            if channel is None:
                raise ChannelError(f"{name}: channel no longer configured")
            channel.send(subject, text, json.loads(body))
        except ChannelError as exc:
            tries = attempts + 1
            give_up = channel is None or now - t >= cfg.retry_give_up * 1000
            wait = backoff(tries, cfg.retry_base, cfg.retry_max)
            store.delivery_failed(alert, name, now, None if give_up else now + int(wait * 1000), str(exc))
            if give_up:
                counts["gave_up"] += 1
                log.error("alert %d (%s) via %s: gave up after %d tries: %s", alert, kind, name, tries, exc)
            else:
                counts["failed"] += 1
                log.warning(
                    "alert %d (%s) via %s: try %d failed: %s; next in %.0fs", alert, kind, name, tries, exc, wait
                )
            continue
        store.delivery_done(alert, name, now)
        counts["sent"] += 1
        log.info("alert %d (%s) sent via %s", alert, kind, channel.describe())
    return counts
