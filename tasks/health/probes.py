"""Health probes: prove from outside that the deployed tracker works, protocol by protocol.

Public probes connect to the target's address of one family (IPv4 or IPv6) and speak to
the public name (Host header, TLS SNI): the REST API, every HTTP tracker through the proxy
(announce with a canary info-hash, `stopped`, scrape), every UDP tracker (BEP 15 connect,
announce, scrape, `stopped`), and every public name's certificate. Host probes run through
the deploy connection: the health-check API inside the tracker container, Compose health,
Prometheus and its targets, Grafana, the database.

All probes run in parallel, each with its own timeout and a bounded number of attempts.
A probe never raises: it returns a result with a one-line detail.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import ssl
import string
import time
import urllib.parse
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from tasks.health import bencode
from tasks.health import http as h
from tasks.health.udp import UDPTrackerClient, UDPTrackerError

if TYPE_CHECKING:  # the watch's vantage bundle runs these probes without the settings layer
    from tasks.config.settings import Settings

CANARY_INFO_HASH = hashlib.sha1(b"torrust-deploy health canary").digest()  # noqa: S324 - an identifier
TLS_MIN_DAYS = 14


class ProbeFailed(Exception):
    """A probe's verdict (not a crash): the message is the probe's detail."""


@dataclass(frozen=True)
class ProbeResult:
    name: str
    target: str
    family: int | None
    ok: bool
    latency: float
    detail: str
    required: bool = True

    def as_dict(self) -> dict:
        d = asdict(self)
        d["latency"] = round(self.latency, 4)
        return d


@dataclass
class Probe:
    name: str
    target: str
    family: int | None
    check: Callable[[], str]
    timeout: float = 5.0
    attempts: int = 2
    required: bool = True
    group: str = field(default="public")


def peer_id() -> bytes:
    alphabet = (string.ascii_letters + string.digits).encode()
    return b"-TD0100-" + bytes(alphabet[b % len(alphabet)] for b in os.urandom(12))


NETWORK_ERRORS = (
    OSError,
    TimeoutError,
    ssl.SSLError,
    http.client.HTTPException,
    ValueError,
    bencode.BencodeError,
    UDPTrackerError,
    json.JSONDecodeError,
)


def _attempt(p: Probe) -> ProbeResult:
    started = time.monotonic()
    detail = "not run"
    for attempt in range(max(1, p.attempts)):
        try:
            detail = p.check()
            return ProbeResult(p.name, p.target, p.family, True, time.monotonic() - started, detail, p.required)
        except ProbeFailed as exc:
            detail = str(exc)
            break  # a verdict, not a transient error: no retry
        except NETWORK_ERRORS as exc:
            detail = _describe(exc)
            if attempt + 1 < p.attempts:
                time.sleep(0.2)
        except Exception as exc:
            detail = f"probe error: {type(exc).__name__}: {exc}"
            break
    return ProbeResult(p.name, p.target, p.family, False, time.monotonic() - started, detail, p.required)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate not trusted: {exc.verify_message}"
    if isinstance(exc, TimeoutError | ssl.SSLError) and "timed out" in str(exc):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, bencode.BencodeError):
        return f"malformed bencoded reply: {exc}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def run(probes: list[Probe]) -> list[ProbeResult]:
    """Run every probe at once; results in the order given."""
    if not probes:
        return []
    with ThreadPoolExecutor(max_workers=len(probes)) as pool:
        return list(pool.map(_attempt, probes))


# ------------------------------------------------------------------------ public probes
@dataclass(frozen=True)
class Reach:
    """Where public probes connect: one address per family, the ports, TLS trust."""

    addresses: dict[int, str]  # {4: "203.0.113.10", 6: "2001:db8::10"}
    tls: bool
    port: int  # the proxy's HTTP or HTTPS port
    context: ssl.SSLContext | None = None  # verification context when TLS is on


def tls_context(extra_ca_pem: str | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    if extra_ca_pem:
        ctx.load_verify_locations(cadata=extra_ca_pem)
    return ctx


def _get(reach: Reach, family: int, name: str, path: str, timeout: float) -> h.Response:
    return h.get(reach.addresses[family], reach.port, name, path, tls=reach.tls, context=reach.context, timeout=timeout)


def api_health(reach: Reach, family: int, name: str, timeout: float) -> str:
    r = _get(reach, family, name, "/api/health_check", timeout)
    if r.status != 200:
        raise ProbeFailed(f"HTTP {r.status}: {r.body[:120].decode('utf-8', 'replace')}")
    body = json.loads(r.body)
    if body != {"status": "Ok"}:
        raise ProbeFailed(f"unexpected reply {body!r:.120}")
    return "status Ok"


STATS_FIELDS = ("torrents", "seeders", "completed", "leechers", "udp4_announces_handled", "tcp4_announces_handled")


def api_stats(reach: Reach, family: int, name: str, token: str, timeout: float) -> str:
    r = _get(reach, family, name, "/api/v1/stats?" + urllib.parse.urlencode({"token": token}), timeout)
    if r.status != 200:
        text = _mask(r.body.decode("utf-8", "replace"), token)[:160]  # mask first, then cut
        raise ProbeFailed(
            f"HTTP {r.status}: {text}" + (" (is the admin token right?)" if r.status in (401, 403, 500) else "")
        )
    body = json.loads(r.body)
    missing = [f for f in STATS_FIELDS if f not in body]
    if missing:
        raise ProbeFailed(f"stats lack {', '.join(missing)}")
    return f"torrents={body['torrents']} seeders={body['seeders']} leechers={body['leechers']}"


def _mask(text: str, secret: str) -> str:
    """Hide a secret in any form a server might echo it: raw or URL-encoded."""
    for form in {secret, urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret)}:
        text = text.replace(form, "********")
    return text


def _announce_query(pid: bytes, event: str | None) -> str:
    params = {
        "info_hash": CANARY_INFO_HASH,
        "peer_id": pid,
        "port": 6881,
        "uploaded": 0,
        "downloaded": 0,
        "left": 0,
        "compact": 1,
        "numwant": 10,
    }
    if event:
        params["event"] = event
    return urllib.parse.urlencode(params, quote_via=urllib.parse.quote)


def _tracker_reply(r: h.Response, what: str) -> dict:
    if r.status != 200:
        raise ProbeFailed(f"{what}: HTTP {r.status}: {r.body[:120].decode('utf-8', 'replace')}")
    reply = bencode.decode(r.body)
    if not isinstance(reply, dict):
        raise ProbeFailed(f"{what}: reply is not a bencoded dictionary")
    if b"failure reason" in reply:
        raise ProbeFailed(f"{what}: tracker said: {reply[b'failure reason'].decode('utf-8', 'replace')}")
    return reply


def http_tracker(reach: Reach, family: int, name: str, timeout: float) -> str:
    pid = peer_id()
    reply = _tracker_reply(
        _get(reach, family, name, "/announce?" + _announce_query(pid, "started"), timeout), "announce"
    )
    if b"interval" not in reply:
        raise ProbeFailed("announce: reply has no interval")
    peers = reply.get(b"peers", b"")
    if not isinstance(peers, bytes | list):
        raise ProbeFailed("announce: peers is neither compact nor a list")
    _tracker_reply(_get(reach, family, name, "/announce?" + _announce_query(pid, "stopped"), timeout), "stopped")
    scrape = _tracker_reply(
        _get(
            reach,
            family,
            name,
            "/scrape?" + urllib.parse.urlencode({"info_hash": CANARY_INFO_HASH}, quote_via=urllib.parse.quote),
            timeout,
        ),
        "scrape",
    )
    if b"files" not in scrape:
        raise ProbeFailed("scrape: reply has no files")
    return f"announce interval={reply[b'interval']}, stopped, scrape ok"


def udp_tracker(address: str, port: int, timeout: float) -> str:
    with UDPTrackerClient(address, port, timeout=timeout, attempts=1) as udp:
        udp.connect()
        pid = peer_id()
        ann = udp.announce(CANARY_INFO_HASH, pid, 6881, event="started", left=0, numwant=10)
        ((seeders, _completed, _leechers),) = udp.scrape([CANARY_INFO_HASH])
        udp.announce(CANARY_INFO_HASH, pid, 6881, event="stopped", left=0, numwant=0)
    return f"connect, announce interval={ann.interval}, scrape seeders={seeders}, stopped"


def certificate(reach: Reach, family: int, name: str, timeout: float) -> str:
    """A verified handshake, then time left (see `certificate_verdict`)."""
    from cryptography import x509

    der = h.peer_certificate(reach.addresses[family], reach.port, name, reach.context or tls_context(), timeout)
    cert = x509.load_der_x509_certificate(der)
    return certificate_verdict(cert.not_valid_before_utc, cert.not_valid_after_utc, datetime.now(UTC))


def certificate_verdict(not_before: datetime, not_after: datetime, now: datetime) -> str:
    """Fails when less than min(14 days, a third of the certificate's lifetime) remains:
    renewals (ACME clients, Caddy's internal CA with 12-hour leaves) happen at a third, so
    less than that means renewal is failing. (health.check and health.watch share it.)"""
    remaining = not_after - now
    threshold = min(timedelta(days=TLS_MIN_DAYS), (not_after - not_before) / 3)
    left = f"{remaining.days} days" if remaining.days >= 1 else f"{int(remaining.total_seconds() // 3600)} hours"
    when = f"{not_after:%Y-%m-%d %H:%M} UTC"
    if remaining < threshold:
        raise ProbeFailed(f"certificate expires in {left} ({when}); renewal should have happened by now")
    return f"valid, expires in {left} ({when})"


def public_probes(s: Settings, reach: Reach, families: list[int], timeout: float, attempts: int) -> list[Probe]:
    probes: list[Probe] = []
    token = s.admin_token.reveal()
    for fam in families:
        addr = reach.addresses[fam]
        for b in s.udp_trackers:
            probes.append(
                Probe(
                    "udp tracker",
                    f"udp://{s.domain}:{b.port} via {addr}",
                    fam,
                    lambda a=addr, p=b.port: udp_tracker(a, p, timeout),
                    timeout,
                    attempts,
                )
            )
        for name in s.http_tracker_domains:
            probes.append(
                Probe(
                    "http tracker",
                    f"{name} via {addr}",
                    fam,
                    lambda f=fam, n=name: http_tracker(reach, f, n, timeout),
                    timeout,
                    attempts,
                )
            )
        probes.append(
            Probe(
                "api health",
                f"{s.api_domain} via {addr}",
                fam,
                lambda f=fam: api_health(reach, f, s.api_domain, timeout),
                timeout,
                attempts,
            )
        )
        probes.append(
            Probe(
                "api stats",
                f"{s.api_domain} via {addr}",
                fam,
                lambda f=fam: api_stats(reach, f, s.api_domain, token, timeout),
                timeout,
                attempts,
            )
        )
        if s.tls:
            for name in s.public_names:
                probes.append(
                    Probe(
                        "tls certificate",
                        f"{name} via {addr}",
                        fam,
                        lambda f=fam, n=name: certificate(reach, f, n, timeout),
                        timeout,
                        attempts,
                    )
                )
    return probes
