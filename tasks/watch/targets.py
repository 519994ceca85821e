"""What one round probes: the public probes of health.check, for every address.

health.check probes one address per family; a client uses whatever DNS gives it, so the
watch resolves every public name (getaddrinfo, each family) in every round and probes
each address it finds: a tracker behind two floating IPs is two targets per family. The
configured TORRUST_PROBE_IPV4/6 still win ('none' drops the family), and the `local`
target probes 127.0.0.1 and ::1. When a name does not resolve in a family and the SSH host
is an address of that family, the probes use it (the `dns` probe reports the name).

Probes: UDP tracker (BEP 15 connect, announce, scrape, stopped), HTTP tracker through the
proxy (announce, stopped, scrape), API health through the proxy, the TLS certificate of
each public name (its expiry is recorded), and one `dns` probe per resolved name. The
admin-token `api stats` probe is left out: a vantage needs no secret of the tracker.

`TargetSpec` is a plain, JSON-able description derived from the settings, so a vantage
host runs the same probes without the settings layer.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from tasks.health import http as h
from tasks.health import probes as p

if TYPE_CHECKING:
    from tasks.config.settings import Settings

LOOPBACK = {4: "127.0.0.1", 6: "::1"}
# kind -> the probe's name in health.check's terms
PROBE_NAMES = {
    "udp": "udp tracker",
    "http": "http tracker",
    "api": "api health",
    "tls": "tls certificate",
    "dns": "dns",
}
Resolver = Callable[[str, int], list[str]]


@dataclass(frozen=True)
class TargetSpec:
    env: str
    domain: str
    udp_ports: tuple[int, ...]
    http_names: tuple[str, ...]
    api_name: str
    tls: bool
    port: int  # the proxy's HTTP or HTTPS port
    public_names: tuple[str, ...]  # certificates (with TLS on)
    probe_ipv4: str = ""  # "", "none" or an address
    probe_ipv6: str = ""
    local: bool = False  # the local target: probe loopback
    ssh_host: str = ""
    extra_ca_pem: str = ""  # a CA to trust besides the system's (public, not a secret)

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TargetSpec:
        tuples = ("udp_ports", "http_names", "public_names")
        return cls(**{k: tuple(v) if k in tuples else v for k, v in d.items()})


def spec_from_settings(s: Settings, extra_ca_pem: str = "") -> TargetSpec:
    return TargetSpec(
        env=s.env,
        domain=s.domain,
        udp_ports=tuple(b.port for b in s.udp_trackers),
        http_names=tuple(s.http_tracker_domains),
        api_name=s.api_domain,
        tls=s.tls,
        port=s.https_port if s.tls else s.http_port,
        public_names=tuple(s.public_names),
        probe_ipv4=s.probe_ipv4,
        probe_ipv6=s.probe_ipv6,
        local=s.target == "local",
        ssh_host=s.ssh.host if s.target == "ssh" else "",
        extra_ca_pem=extra_ca_pem,
    )


@dataclass
class WatchProbe:
    kind: str
    target: str
    family: int
    address: str
    probe: p.Probe
    cell: dict = field(default_factory=dict)  # what a check records besides its detail (tls: not_after)


def getaddrinfo_resolver(name: str, family: int) -> list[str]:
    fam = socket.AF_INET if family == 4 else socket.AF_INET6
    try:
        infos = socket.getaddrinfo(name, None, fam, socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return []
    return sorted({info[4][0] for info in infos})


def _ip_of_family(host: str, family: int) -> bool:
    try:
        return ipaddress.ip_address(host).version == family
    except ValueError:
        return False


def _resolves_by_dns(spec: TargetSpec, family: int) -> bool:
    configured = spec.probe_ipv4 if family == 4 else spec.probe_ipv6
    return not configured and not spec.local


def resolve(spec: TargetSpec, names: list[str], resolver: Resolver, timeout: float) -> dict[str, dict[int, list[str]]]:
    """{name: {family: [addresses]}} by DNS, in parallel, each lookup bounded by `timeout`
    (a hung resolver counts as no answer)."""
    jobs = [(n, f) for n in dict.fromkeys(names) for f in (4, 6) if _resolves_by_dns(spec, f)]
    out: dict[str, dict[int, list[str]]] = {n: {} for n in names}
    if not jobs:
        return out
    pool = ThreadPoolExecutor(max_workers=len(jobs))
    futures = {job: pool.submit(resolver, *job) for job in jobs}
    for (name, fam), fut in futures.items():
        try:
            out[name][fam] = fut.result(timeout=timeout)
        except FutureTimeout:
            out[name][fam] = []
    pool.shutdown(wait=False, cancel_futures=True)
    return out


def addresses_for(spec: TargetSpec, resolved: dict[int, list[str]]) -> dict[int, list[str]]:
    """The addresses a name is probed at, per family."""
    out: dict[int, list[str]] = {}
    for fam, configured in ((4, spec.probe_ipv4), (6, spec.probe_ipv6)):
        if configured == "none":
            continue
        if configured:
            out[fam] = [configured]
        elif spec.local:
            out[fam] = [LOOPBACK[fam]]
        elif resolved.get(fam):
            out[fam] = list(resolved[fam])
        elif _ip_of_family(spec.ssh_host, fam):
            out[fam] = [spec.ssh_host]
    return out


def _dns_check(name: str, found: dict[int, list[str]]) -> Callable[[], str]:
    def check() -> str:
        shown = "; ".join(f"{'A' if f == 4 else 'AAAA'} {', '.join(a)}" for f, a in sorted(found.items()) if a)
        if not shown:
            raise p.ProbeFailed(f"{name} does not resolve (no A or AAAA record)")
        return shown

    return check


def _tls_check(reach: p.Reach, fam: int, name: str, timeout: float, cell: dict) -> Callable[[], str]:
    def check() -> str:
        ctx = reach.context or p.tls_context()
        not_before, not_after = h.peer_certificate_dates(reach.addresses[fam], reach.port, name, ctx, timeout)
        cell["value"] = not_after
        return p.certificate_verdict(
            datetime.fromtimestamp(not_before, UTC), datetime.fromtimestamp(not_after, UTC), datetime.now(UTC)
        )

    return check


def round_probes(
    spec: TargetSpec, timeout: float, attempts: int, resolver: Resolver = getaddrinfo_resolver
) -> list[WatchProbe]:
    """Every probe of one round, addresses resolved now."""
    names = [spec.domain, *spec.http_names, spec.api_name, *(spec.public_names if spec.tls else ())]
    resolved = resolve(spec, names, resolver, timeout)
    context = p.tls_context(spec.extra_ca_pem or None) if spec.tls else None
    out: list[WatchProbe] = []

    def add(kind: str, target: str, fam: int, addr: str, check: Callable[[], str], cell: dict | None = None) -> None:
        via = f" via {addr}" if addr else ""
        probe = p.Probe(PROBE_NAMES[kind], f"{target}{via}", fam or None, check, timeout, attempts)
        out.append(WatchProbe(kind, target, fam, addr, probe, cell if cell is not None else {}))

    if any(_resolves_by_dns(spec, f) for f in (4, 6)):
        for name in dict.fromkeys(names):
            add("dns", name, 0, "", _dns_check(name, resolved[name]))
    for fam, addrs in addresses_for(spec, resolved[spec.domain]).items():
        for addr in addrs:
            for port in spec.udp_ports:
                add(
                    "udp",
                    f"udp://{spec.domain}:{port}",
                    fam,
                    addr,
                    lambda a=addr, po=port: p.udp_tracker(a, po, timeout),
                )
    for name in spec.http_names:
        for fam, addrs in addresses_for(spec, resolved[name]).items():
            for addr in addrs:
                reach = p.Reach({fam: addr}, spec.tls, spec.port, context)
                add("http", name, fam, addr, lambda r=reach, f=fam, n=name: p.http_tracker(r, f, n, timeout))
    for fam, addrs in addresses_for(spec, resolved[spec.api_name]).items():
        for addr in addrs:
            reach = p.Reach({fam: addr}, spec.tls, spec.port, context)
            add("api", spec.api_name, fam, addr, lambda r=reach, f=fam: p.api_health(r, f, spec.api_name, timeout))
    if spec.tls:
        for name in spec.public_names:
            for fam, addrs in addresses_for(spec, resolved[name]).items():
                for addr in addrs:
                    cell: dict = {}
                    reach = p.Reach({fam: addr}, True, spec.port, context)
                    add("tls", name, fam, addr, _tls_check(reach, fam, name, timeout, cell), cell)
    return out
