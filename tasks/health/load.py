"""health.load: a bounded load generator for sizing a server before it goes public.

UDP: each transaction is what a BitTorrent client does (BEP 15): a fresh socket (a new
source port, so a new conntrack entry on the server, as real clients make), a connect,
then an announce with one of many peer ids and info-hashes; the latency is from the
connect to the announce reply. HTTP: announces on keep-alive connections through the
proxy. Both send on a fixed schedule (the offered rate), so a slow server shows as loss
and latency, not as a slower generator; if this machine cannot keep the schedule the
report says so (`generator_limited`).

Bounded: rates above CAP_RATE or runs longer than CAP_DURATION are refused without
`yes` (ConfirmationRequired, exit 5), and HARD_RATE / HARD_DURATION are never passed.
Fake peers stay in the tracker until its peer timeout: use it on a server that is not
public yet (docs/guides/network.md#sizing-a-server-with-the-load-generator).
"""

from __future__ import annotations

import ipaddress
import math
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass

from tasks.errors import ConfigError, ConfirmationRequired
from tasks.facts import network as nf
from tasks.health.loadgen import WORKERS, WorkerResult

CAP_RATE = 5000  # announces per second without --yes
CAP_DURATION = 60  # seconds without --yes
HARD_RATE = 200_000
HARD_DURATION = 3600
PROTOCOLS = ("udp", "http")
LIMITED = 0.97  # sent below this share of the offered rate: the generator was the limit
LATE_SHARE = 0.03  # more late sends than this share: the generator was the limit


@dataclass(frozen=True)
class LoadParams:
    protocol: str  # udp or http
    address: str  # the IP address to load (IPv4 or IPv6)
    port: int
    rate: int  # offered announces per second
    duration: float  # seconds of sending
    yes: bool = False  # allow rate/duration past the caps
    torrents: int = 1000  # distinct info-hashes
    peers: int = 10000  # distinct peer ids
    timeout: float = 2.0  # a reply later than this is lost
    workers: int = 1  # processes (each sends rate/workers)
    host: str = ""  # HTTP: the Host header (public name); empty: the address
    tls: bool = False  # HTTP: HTTPS (verified against `ca_pem` or the system store)
    ca_pem: str | None = None
    connections: int = 32  # HTTP keep-alive connections per worker


def validate(p: LoadParams) -> None:
    """Every bad parameter is named with what is allowed; caps need `yes`."""
    problems = []
    if p.protocol not in PROTOCOLS:
        problems.append(f"--protocol {p.protocol!r}: allowed {', '.join(PROTOCOLS)}")
    try:
        ipaddress.ip_address(p.address)
    except ValueError:
        problems.append(f"address {p.address!r} is not an IP address")
    checks = (
        ("--rate", p.rate, 1, HARD_RATE),
        ("--duration", p.duration, 0.1, HARD_DURATION),
        ("port", p.port, 1, 65535),
        ("torrents", p.torrents, 1, 1_000_000),
        ("peers", p.peers, 1, 10_000_000),
        ("timeout", p.timeout, 0.05, 60),
        ("workers", p.workers, 1, 64),
        ("connections", p.connections, 1, 1024),
    )
    for name, value, lo, hi in checks:
        if not isinstance(value, int | float) or isinstance(value, bool) or not lo <= value <= hi:
            problems.append(f"{name} {value!r}: allowed {lo:g} to {hi:,}")
    if problems:
        raise ConfigError("health.load: " + "; ".join(problems), hint="nothing was sent")
    over = [f"--rate {p.rate:,}/s is past the cap of {CAP_RATE:,}/s"] * (p.rate > CAP_RATE) + [
        f"--duration {p.duration:g} s is past the cap of {CAP_DURATION} s"
    ] * (p.duration > CAP_DURATION)
    if over and not p.yes:
        raise ConfirmationRequired(
            "health.load: " + " and ".join(over),
            hint="the load reaches a real server: pass --yes to go past the caps (nothing was sent)",
        )


# ----------------------------------------------------------------------------- results
@dataclass(frozen=True)
class HostLoad:
    """The host before or after a run: conntrack fill and the UDP counters."""

    conntrack_count: int | None
    conntrack_max: int | None
    udp_datagrams: int | None
    udp_errors: int | None
    rcvbuf_errors: int | None

    @classmethod
    def of(cls, f: nf.NetworkFacts) -> HostLoad:
        udp = list(f.current.udp.values()) if f.current else []
        if not udp:
            return cls(f.conntrack.count, f.conntrack.max, None, None, None)
        return cls(
            f.conntrack.count,
            f.conntrack.max,
            sum(u.in_datagrams for u in udp),
            sum(u.in_errors + u.sndbuf_errors for u in udp),
            sum(u.rcvbuf_errors for u in udp),
        )

    @property
    def fill(self) -> float | None:
        return (
            self.conntrack_count / self.conntrack_max
            if self.conntrack_count is not None and self.conntrack_max
            else None
        )


@dataclass(frozen=True)
class LoadReport:
    protocol: str
    target: str
    offered_rate: int
    duration: float
    sent: int
    replies: int
    errors: int
    lost: int
    not_sent: int
    late: int
    sent_rate: float
    achieved_rate: float
    loss_pct: float
    p50_ms: float | None
    p99_ms: float | None
    generator_limited: bool
    error_samples: tuple[str, ...] = ()
    host_before: HostLoad | None = None
    host_after: HostLoad | None = None

    def as_dict(self) -> dict:
        d = asdict(self)
        for k in ("sent_rate", "achieved_rate", "loss_pct", "p50_ms", "p99_ms"):
            d[k] = None if d[k] is None else round(d[k], 3)
        return d


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of an already sorted list."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def report(p: LoadParams, r: WorkerResult, before: HostLoad | None = None, after: HostLoad | None = None) -> LoadReport:
    window = max(r.send_seconds, 1e-9)
    lat = sorted(r.latencies)
    lost = max(0, r.sent - r.replies - r.errors)
    return LoadReport(
        protocol=p.protocol,
        target=f"{p.protocol}://{p.host or p.address}:{p.port}" + (f" via {p.address}" if p.host else ""),
        offered_rate=p.rate,
        duration=p.duration,
        sent=r.sent,
        replies=r.replies,
        errors=r.errors,
        lost=lost,
        not_sent=r.not_sent,
        late=r.late,
        sent_rate=r.sent / window,
        achieved_rate=r.replies / window,
        loss_pct=100.0 * (r.sent - r.replies) / r.sent if r.sent else 100.0,
        p50_ms=None if not lat else 1000 * percentile(lat, 50),
        p99_ms=None if not lat else 1000 * percentile(lat, 99),
        generator_limited=r.sent < LIMITED * p.rate * p.duration or r.late > LATE_SHARE * max(1, r.sent),
        error_samples=tuple(r.error_samples),
        host_before=before,
        host_after=after,
    )


# ------------------------------------------------------------------------------- run


def run(p: LoadParams, host: Callable[[], nf.NetworkFacts] | None = None) -> LoadReport:
    """Validate, read the host (conntrack, UDP counters), send, read the host again."""
    validate(p)
    before = HostLoad.of(host()) if host else None
    seed = os.urandom(8)
    share = p.rate / p.workers
    fn = WORKERS[p.protocol]
    if p.workers == 1:
        result = fn(p, share, 0, seed)
    else:
        result = WorkerResult()
        with ProcessPoolExecutor(max_workers=p.workers) as pool:
            for r in pool.map(fn, [p] * p.workers, [share] * p.workers, range(p.workers), [seed] * p.workers):
                result.merge(r)
    after = HostLoad.of(host()) if host else None
    return report(p, result, before, after)


LOAD_COUNTERS = "~/.cache/torrust-deploy/load-counters"  # not health.check's "since the last check"


def params_for(s, *, protocol: str, family: str, rate: int, duration: float, workers: int, yes: bool) -> LoadParams:
    """The load against an environment's public address of `family`: the first UDP tracker,
    or the HTTP tracker through the proxy (its public name as Host, TLS as configured)."""
    from tasks.health.check import addresses

    if family not in ("4", "6"):
        raise ConfigError(f"--family {family!r}: allowed 4 or 6")
    found = addresses(s, family)
    if int(family) not in found:
        raise ConfigError(
            f"no IPv{family} address to load for '{s.env}'",
            hint=f"set {'TORRUST_PROBE_IPV4' if family == '4' else 'TORRUST_PROBE_IPV6'} or the DNS of "
            f"{s.http_tracker_domains[0]}",
        )
    http = protocol == "http"
    port = (s.https_port if s.tls else s.http_port) if http else s.udp_trackers[0].port
    return LoadParams(
        protocol,
        found[int(family)],
        port,
        int(rate),
        float(duration),
        yes=yes,
        workers=int(workers),
        host=s.http_tracker_domains[0] if http else "",
        tls=s.tls and http,
    )


def run_against(s, params: LoadParams) -> LoadReport:
    """Run the load, reading the host's conntrack fill and UDP counters before and after
    through one connection to the target."""
    from tasks.runner.target import open_target

    validate(params)  # refused (exit 2 or 5) before the target is touched or anything sent
    with open_target(s) as ex:
        return run(params, host=lambda: nf.read(ex, LOAD_COUNTERS))
