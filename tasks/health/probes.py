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

from tasks.config import trackers
from tasks.config.trackers import TrackerRelease
from tasks.health import bencode
from tasks.health import http as h
from tasks.health.api import AdminSetup, Api, mask
from tasks.health.reach import ProbeFailed, ProbeSkipped, Reach, credential_refusal, tls_context
from tasks.health.udp import UDPTrackerClient, UDPTrackerError

__all__ = ["ProbeFailed", "ProbeSkipped", "Reach", "credential_refusal", "tls_context"]  # re-exported

if TYPE_CHECKING:  # the watch's vantage bundle runs these probes without the settings layer
    from tasks.config.settings import Settings

CANARY_INFO_HASH = hashlib.sha1(b"torrust-deploy health canary").digest()  # noqa: S324 - an identifier
TLS_MIN_DAYS = 14


@dataclass(frozen=True)
class ProbeResult:
    name: str
    target: str
    family: int | None
    ok: bool
    latency: float
    detail: str
    required: bool = True
    skipped: bool = False  # did not run (or only partly), with the reason in detail: not a failure

    @property
    def status(self) -> str:
        return "skipped" if self.skipped else ("ok" if self.ok else "failed")

    def as_dict(self) -> dict:
        d = asdict(self)
        d["latency"] = round(self.latency, 4)
        d["status"] = self.status
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
        except ProbeSkipped as exc:
            elapsed = time.monotonic() - started
            return ProbeResult(p.name, p.target, p.family, True, elapsed, f"skipped: {exc}", p.required, True)
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
def _get(reach: Reach, family: int, name: str, path: str, timeout: float) -> h.Response:
    return h.get(
        reach.addresses[family], reach.port, name, path, tls=reach.tls, context=reach.context_for(name), timeout=timeout
    )


def api_health(reach: Reach, family: int, name: str, timeout: float) -> str:
    r = _get(reach, family, name, "/api/health_check", timeout)
    if r.status != 200:
        raise ProbeFailed(f"HTTP {r.status}: {r.body[:120].decode('utf-8', 'replace')}")
    body = json.loads(r.body)
    if body != {"status": "Ok"}:
        raise ProbeFailed(f"unexpected reply {body!r:.120}")
    return "status Ok"


STATS_FIELDS = ("torrents", "seeders", "completed", "leechers", "udp4_announces_handled", "tcp4_announces_handled")


def api_stats(
    reach: Reach, family: int, name: str, token: str, timeout: float, *, release: TrackerRelease = trackers.BASELINE
) -> str:
    """The stats route with the admin token (header or query, as the release accepts)."""
    api = Api(reach, family, name, token, release, timeout)
    body = api.ok_status(api.call("GET", release.stats_route), "stats")
    missing = [f for f in STATS_FIELDS if f not in body]
    if missing:
        raise ProbeFailed(f"stats lack {', '.join(missing)}")
    how = "Bearer header" if release.header_token else "query token"
    return f"torrents={body['torrents']} seeders={body['seeders']} leechers={body['leechers']} ({how})"


_mask = mask  # kept for callers of the old name


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


@dataclass(frozen=True)
class Mode:
    """What the tracker probes must expect: the release and its private/listed modes, and
    the admin actions (whitelist, keys) they may use; None: none possible."""

    release: TrackerRelease = trackers.BASELINE
    private: bool = False
    listed: bool = False
    setup: AdminSetup | None = None


PUBLIC = Mode()


def _announce_cycle(reach: Reach, family: int, name: str, timeout: float, key: str = "") -> str:
    """started, stopped, scrape of the canary; `key`: the private tracker's /announce/{key}."""
    suffix = f"/{key}" if key else ""
    pid = peer_id()

    def get(path: str) -> h.Response:
        return _get(reach, family, name, path, timeout)

    reply = _tracker_reply(get(f"/announce{suffix}?" + _announce_query(pid, "started")), "announce")
    if b"interval" not in reply:
        raise ProbeFailed("announce: reply has no interval")
    peers = reply.get(b"peers", b"")
    if not isinstance(peers, bytes | list):
        raise ProbeFailed("announce: peers is neither compact nor a list")
    _tracker_reply(get(f"/announce{suffix}?" + _announce_query(pid, "stopped")), "stopped")
    query = urllib.parse.urlencode({"info_hash": CANARY_INFO_HASH}, quote_via=urllib.parse.quote)
    scrape = _tracker_reply(get(f"/scrape{suffix}?{query}"), "scrape")
    if b"files" not in scrape:
        raise ProbeFailed("scrape: reply has no files")
    return f"announce interval={reply[b'interval']}, stopped, scrape ok"


def _expect_refusal(r: h.Response, expected: str, what: str) -> None:
    """The tracker must refuse exactly as the release does (its message, then a location)."""
    reply = bencode.decode(r.body) if r.status == 200 else None
    said = reply.get(b"failure reason", b"").decode("utf-8", "replace") if isinstance(reply, dict) else ""
    if not said.startswith(expected):
        got = said or f"HTTP {r.status}: {r.body[:80].decode('utf-8', 'replace')}"
        raise ProbeFailed(f"{what}: expected the refusal {expected!r}, got {got!r}")


def http_tracker(reach: Reach, family: int, name: str, timeout: float, *, mode: Mode = PUBLIC) -> str:
    """announce (started), stopped, scrape of the canary info-hash; in private mode with a
    key made through the API, in listed mode after whitelisting the canary. When the admin
    action cannot be done, the release's exact refusal is checked and the probe skipped."""
    release, setup = mode.release, mode.setup
    prefix = ("private, " if mode.private else "") + ("listed, " if mode.listed else "")
    if mode.listed:
        why = setup.whitelist(family) if setup else "no admin access"
        if why:
            query = _announce_query(peer_id(), "started")
            refused = release.listed_refusal.format(info_hash=CANARY_INFO_HASH.hex())
            _expect_refusal(_get(reach, family, name, "/announce?" + query, timeout), refused, "announce")
            raise ProbeSkipped(f"{why}; the canary was refused as {release.key} refuses a torrent not whitelisted")
    if not mode.private:
        return prefix + _announce_cycle(reach, family, name, timeout)
    key, why = setup.new_key(family) if setup else (None, "no admin access")
    if key is None:
        query = _announce_query(peer_id(), "started")
        _expect_refusal(_get(reach, family, name, "/announce?" + query, timeout), release.private_refusal, "announce")
        raise ProbeSkipped(f"{why}; an announce without a key was refused as {release.key} refuses it")
    try:
        return prefix + "with a key: " + _announce_cycle(reach, family, name, timeout, key)
    finally:
        setup.delete_key(family, key)


def udp_tracker(address: str, port: int, timeout: float, *, mode: Mode = PUBLIC, family: int | None = None) -> str:
    """BEP 15 connect, announce, scrape, stopped of the canary. Private mode: the release
    starts no UDP tracker (skipped). Listed mode: the canary is whitelisted first, or the
    release's exact refusal is expected."""
    release = mode.release
    if mode.private and not release.udp_in_private_mode:
        raise ProbeSkipped(f"release {release.key} does not start UDP trackers in private mode")
    why = ""
    if mode.listed:
        fam = family or (6 if ":" in address else 4)
        why = mode.setup.whitelist(fam) if mode.setup else "no admin access"
    with UDPTrackerClient(address, port, timeout=timeout, attempts=1) as udp:
        udp.connect()
        pid = peer_id()
        try:
            ann = udp.announce(CANARY_INFO_HASH, pid, 6881, event="started", left=0, numwant=10)
        except UDPTrackerError as exc:
            refused = "tracker error: " + release.udp_listed_refusal.format(info_hash=CANARY_INFO_HASH.hex())
            if why and str(exc).startswith(refused):
                raise ProbeSkipped(f"{why}; the canary was refused as {release.key} refuses it") from None
            raise
        ((seeders, _completed, _leechers),) = udp.scrape([CANARY_INFO_HASH])
        udp.announce(CANARY_INFO_HASH, pid, 6881, event="stopped", left=0, numwant=0)
    return ("listed, " if mode.listed else "") + (
        f"connect, announce interval={ann.interval}, scrape seeders={seeders}, stopped"
    )


def certificate(reach: Reach, family: int, name: str, timeout: float) -> str:
    """A verified handshake (chain to the trust that applies, the name), then time left
    (`certificate_verdict`), with the issuer and the renewal window."""
    from tasks.health import trust  # cryptography: not needed by the watch's vantage bundle

    context = reach.context_for(name) or tls_context()
    facts = trust.parse(h.peer_certificate(reach.addresses[family], reach.port, name, context, timeout))
    return certificate_verdict(
        facts.not_before, facts.not_after, datetime.now(UTC), issuer=facts.issuer, renewal_from=facts.renewal_from
    )


def certificate_verdict(
    not_before: datetime, not_after: datetime, now: datetime, *, issuer: str = "", renewal_from: datetime | None = None
) -> str:
    """Fails when less than min(14 days, a third of the certificate's lifetime) remains:
    renewals (ACME clients, Caddy's internal CA with 12-hour leaves) happen at a third, so
    less than that means renewal is failing. (health.check and health.watch share it.)"""
    remaining = not_after - now
    threshold = min(timedelta(days=TLS_MIN_DAYS), (not_after - not_before) / 3)
    left = f"{remaining.days} days" if remaining.days >= 1 else f"{int(remaining.total_seconds() // 3600)} hours"
    when = f"{not_after:%Y-%m-%d %H:%M} UTC"
    if remaining < threshold:
        source = f" from {issuer}" if issuer else ""
        raise ProbeFailed(f"certificate{source} expires in {left} ({when}); renewal should have happened by now")
    if not issuer:
        return f"valid, expires in {left} ({when})"
    renewal = f", renewal from {renewal_from:%Y-%m-%d %H:%M} UTC" if renewal_from else ""
    return f"valid, issued by {issuer}, expires in {left} ({when}){renewal}"


def udp_served(s: Settings) -> bool:
    """Whether the tracker serves its UDP trackers (a release may start none in private mode)."""
    return not s.private or trackers.release_of(s).release.udp_in_private_mode


def mode_of(s: Settings, reach: Reach, timeout: float) -> Mode:
    """The tracker probes' expectations for an environment (its release and modes)."""
    release = trackers.release_of(s).release
    token = s.admin_token.reveal()
    setup = AdminSetup(lambda fam: Api(reach, fam, s.api_domain, token, release, timeout), CANARY_INFO_HASH.hex())
    return Mode(release, s.private, s.listed, setup if (s.private or s.listed) else None)


def public_probes(s: Settings, reach: Reach, families: list[int], timeout: float, attempts: int) -> list[Probe]:
    probes: list[Probe] = []
    token = s.admin_token.reveal()
    mode = mode_of(s, reach, timeout)

    def probe(name: str, target: str, fam: int, check: Callable[[], str]) -> Probe:
        return Probe(name, target, fam, check, timeout, attempts)

    for fam in families:
        addr = reach.addresses[fam]
        for b in s.udp_trackers:
            check = lambda a=addr, p=b.port, f=fam: udp_tracker(a, p, timeout, mode=mode, family=f)  # noqa: E731
            probes.append(probe("udp tracker", f"udp://{s.domain}:{b.port} via {addr}", fam, check))
        for name in s.http_tracker_domains:
            check = lambda f=fam, n=name: http_tracker(reach, f, n, timeout, mode=mode)  # noqa: E731
            probes.append(probe("http tracker", f"{name} via {addr}", fam, check))
        api = f"{s.api_domain} via {addr}"
        probes.append(probe("api health", api, fam, lambda f=fam: api_health(reach, f, s.api_domain, timeout)))
        stats = lambda f=fam: api_stats(reach, f, s.api_domain, token, timeout, release=mode.release)  # noqa: E731
        probes.append(probe("api stats", api, fam, stats))
        if s.tls:
            for name in s.public_names:
                check = lambda f=fam, n=name: certificate(reach, f, n, timeout)  # noqa: E731
                probes.append(probe("tls certificate", f"{name} via {addr}", fam, check))
    return probes


# ------------------------------------------------------------------- host expectations
def prometheus_targets(active: list[dict], release: TrackerRelease) -> tuple[list[dict], str]:
    """The tracker targets Prometheus must have for this release, checked against what
    it has: (targets to judge, "" ) or ([], a verdict when the release has none)."""
    expected = {j.name for j in release.scrape_jobs}
    have = {t["labels"].get("job", "") for t in active}
    if not expected:
        if have:
            raise ProbeFailed(
                f"tracker scrape jobs {', '.join(sorted(have))} configured, but release {release.key} "
                "has no Prometheus endpoint"
            )
        return [], f"no tracker scrape job: release {release.key} has no Prometheus endpoint"
    missing = expected - have
    if missing:
        raise ProbeFailed(f"tracker scrape jobs missing: {', '.join(sorted(missing))}")
    return active, ""
