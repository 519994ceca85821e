"""The `network` probe group (issue #13): the host's network path as health probes, the
reply-source probes for hosts with several public addresses, and IPv6 probing when this
machine has no IPv6 route.

- `network_probes(ex, expectations)`: one probe per finding of `tasks.facts.network`
  (Docker's IPv6 rules, published ports, firewall, conntrack, UDP errors, softirqs,
  RPS/RFS, re-apply hooks, public addresses). The facts are read once, in one round
  trip, whichever probe asks first. A warning passes with its detail and fix; a failure
  fails with what it means and the fix.
- `reply_source_probes(...)`: a BEP 15 exchange with each public address, checking the
  reply comes from the address asked (floating IPs).
- `has_route()`, `ipv6_vantage()`, `ipv6_udp_probes()`: the deploy gate probes IPv6 from
  here when this machine has a route, otherwise from the host itself, and says which.
"""

from __future__ import annotations

import errno
import importlib.util
import ipaddress
import json
import math
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from tasks.commands import network as cmd
from tasks.errors import ConfigError, ToolError
from tasks.facts import network as nf
from tasks.health import network_findings as nfind
from tasks.health import probes as p
from tasks.runner.executor import Executor

GROUP = "network"
VANTAGES = ("auto", "here", "host")
NO_ROUTE = {errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT}

# The one BEP 15 probe with a source check (the same file runs on the host, fed to python3).
_spec = importlib.util.spec_from_file_location("torrust_udp_probe", cmd.UDP_PROBE_SCRIPT)
udp_probe = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(udp_probe)


# ------------------------------------------------------------------------ host findings
class _Facts:
    """Reads the host's network facts for whichever probe asks first; the probes of one
    round (run in parallel) share the read, a later round (the deploy gate retries after
    a pause) reads again."""

    def __init__(self, ex: Executor, expect: nfind.NetworkExpectations, state_file: str, max_age: float = 1.0):
        self.ex, self.expect, self.state_file, self.max_age = ex, expect, state_file, max_age
        self._lock = threading.Lock()
        self._read_at = -math.inf
        self._findings: dict[str, nfind.Finding] = {}
        self._error: str | None = None

    def finding(self, name: str) -> nfind.Finding:
        with self._lock:
            if time.monotonic() - self._read_at > self.max_age:
                self._error = None
                try:
                    facts = nf.read(self.ex, self.state_file)
                    self._findings = {f.name: f for f in nfind.evaluate(facts, self.expect)}
                except ToolError as exc:
                    self._error = f"cannot read the host's network facts: {exc.message}"
                self._read_at = time.monotonic()
        if self._error:
            raise p.ProbeFailed(self._error)
        return self._findings[name]


def verdict(f: nfind.Finding) -> str:
    """A probe's detail for a finding; raises ProbeFailed for a failure."""
    if f.status == "fail":
        raise p.ProbeFailed(f"{f.detail}. Means: {f.meaning}. Fix: {f.fix}")
    if f.status == "warn":
        return f"WARNING: {f.detail}" + (f". Means: {f.meaning}. Fix: {f.fix}" if f.fix else "")
    return f.detail


# What a deploy gate may fail on: the release's own network path. A full conntrack table
# or a missing RPS setting is the host's state, not the new release's: rolling back would
# not help, so the gate shows those without failing (required=False).


# The host-wide counters of a local target are the laptop's or the CI machine's (every
# other process's UDP and connections): shown there, failing only on a server.
HOST_WIDE = frozenset({"conntrack fill", "udp errors", "softirq spread"})


def required_on(s) -> frozenset[str] | None:
    """The findings whose failure fails health.check on this target (None: all)."""
    return frozenset(nfind.CHECK_NAMES) - HOST_WIDE if s.target == "local" else None


def network_probes(
    ex: Executor,
    expect: nfind.NetworkExpectations,
    timeout: float = 10.0,
    state_file: str = "",
    required: frozenset[str] | None = None,
    fresh_after: float = 1.0,
) -> list[p.Probe]:
    """One probe per network finding, read on the host through `ex` (one round trip per
    round: a read older than `fresh_after` seconds is repeated). `required`: the findings
    whose failure fails the run (default all; the deploy gate passes none: it reports them)."""
    facts = _Facts(ex, expect, state_file, fresh_after)
    return [
        p.Probe(
            name,
            ex.where,
            None,
            lambda n=name: verdict(facts.finding(n)),
            timeout,
            1,
            required is None or name in required,
            GROUP,
        )
        for name in nfind.CHECK_NAMES
    ]


def findings(ex: Executor, expect: nfind.NetworkExpectations, state_file: str = "") -> list[nfind.Finding]:
    """Every finding at once (the drift check after app.deploy / app.restart)."""
    return nfind.evaluate(nf.read(ex, state_file), expect)


# --------------------------------------------------------------------- reply source
def reply_source(address: str, port: int, timeout: float) -> str:
    doc = udp_probe.probe(address, port, timeout)
    if not doc["ok"]:
        raise p.ProbeFailed(doc["detail"])
    return doc["detail"]


def reply_source_probes(addresses: list[str], ports: list[int], timeout: float, attempts: int = 2) -> list[p.Probe]:
    """For each public address (the main ones and the floating IPs) and UDP port: the reply
    must come from the address asked. An address this machine has no route to is named
    as not probed (a non-required failure), never passed silently."""
    out = []
    for addr in addresses:
        fam = ipaddress.ip_address(addr).version
        routed, why = has_route(addr)
        for port in ports:
            if routed:
                check: Callable[[], str] = lambda a=addr, pt=port: reply_source(a, pt, timeout)  # noqa: E731
            else:
                check = lambda w=why: _not_probed(w)  # noqa: E731
            out.append(p.Probe("udp reply source", f"{addr} port {port}", fam, check, timeout, attempts, routed, GROUP))
    return out


def _not_probed(why: str) -> str:
    raise p.ProbeFailed(f"not probed: {why}")


# ------------------------------------------------------------------ IPv6 from where?
def has_route(address: str) -> tuple[bool, str]:
    """Whether this machine can send to `address` (a UDP connect: no packet is sent)."""
    ip = ipaddress.ip_address(address)
    with socket.socket(socket.AF_INET6 if ip.version == 6 else socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect((address, 9))
        except OSError as exc:
            if exc.errno in NO_ROUTE:
                return False, f"no route to {address} ({exc.strerror})"
            return False, f"cannot reach {address} ({exc.strerror or exc})"
        return True, f"route to {address} from {s.getsockname()[0]}"


@dataclass(frozen=True)
class Vantage:
    where: str  # "here" (this machine) or "host" (the deploy target itself)
    reason: str


def ipv6_vantage(address: str, prefer: str = "auto") -> Vantage:
    """Where to probe the IPv6 address from: `prefer` is auto, here or host (the
    IPv6-vantage setting, see NOTES-network.md); auto picks here when this machine has a route."""
    if prefer not in VANTAGES:
        raise ConfigError(f"IPv6 vantage {prefer!r}: allowed {', '.join(VANTAGES)}")
    if prefer != "auto":
        return Vantage(prefer, f"TORRUST_PROBE_IPV6_FROM={prefer}")
    routed, why = has_route(address)
    if routed:
        return Vantage("here", why)
    return Vantage("host", f"this machine has {why}: probed from the host itself")


def host_udp_probe(ex: Executor, address: str, port: int, timeout: float) -> str:
    """The BEP 15 probe run on the deploy target against `address` (its own public
    address): the packets take the host's firewall and Docker NAT path (OUTPUT, not the
    provider's network)."""
    try:
        r = ex.run(cmd.udp_probe(address, port, timeout), timeout=int(timeout) + 15)
        doc = json.loads(r.stdout.strip().splitlines()[-1])
    except ToolError as exc:
        raise p.ProbeFailed(f"the probe could not run on {ex.where}: {exc.message.splitlines()[0]}") from None
    except (ValueError, IndexError):
        raise p.ProbeFailed(f"the probe on {ex.where} printed no result") from None
    if not doc.get("ok"):
        raise p.ProbeFailed(f"{doc.get('detail')} (probed from the host)")
    return f"{doc['detail']} (probed from the host)"


def ipv6_udp_probes(
    ex: Executor,
    address: str,
    ports: list[int],
    timeout: float,
    attempts: int,
    prefer: str = "auto",
    label: str = "",
) -> tuple[Vantage, list[p.Probe]]:
    """The UDP tracker probes of the IPv6 address, from the vantage `ipv6_vantage` picks;
    each probe's target names it."""
    v = ipv6_vantage(address, prefer)
    probes = []
    for port in ports:
        target = f"udp://{label or address}:{port} via {address}"
        if v.where == "here":
            check: Callable[[], str] = lambda pt=port: p.udp_tracker(address, pt, timeout)  # noqa: E731
            target += " (from here)"
        else:
            check = lambda pt=port: host_udp_probe(ex, address, pt, timeout)  # noqa: E731
            target += " (from the host)"
        probes.append(p.Probe("udp tracker", target, 6, check, timeout, attempts))
    return v, probes


def vantage_probe(v: Vantage, address: str) -> p.Probe:
    """One line in the report saying where IPv6 was probed from and why (from the host:
    UDP only, the rest of IPv6 was not probed, and the line says so)."""
    detail = f"IPv6 probed from {v.where}: {v.reason}"
    if v.where == "host":
        detail += " (UDP only: HTTP, API and TLS over IPv6 not probed)"
    return p.Probe("ipv6 vantage", address, 6, lambda: detail, group=GROUP)


# --------------------------------------------------------------------- from the settings
def expectations(s) -> nfind.NetworkExpectations:
    """What the settings promise about the host's network path. The hardening
    (torrust-harden) runs on provisioned and bootstrapped hosts, so an SSH target is held
    to its limits; the local target only to what any host must have."""
    udp = sorted({b.port for b in s.udp_trackers} | ({s.https_port} if s.tls else set()))
    hardened = s.target == "ssh"
    return nfind.NetworkExpectations(
        udp_ports=tuple(udp),
        ipv6=s.ipv6,
        conntrack_max=s.infra.conntrack_max,
        public_addresses=s.public_addresses,
        firewall=hardened,
        hardened=hardened,
    )


def public_probes_with_vantage(ex: Executor | None, s, r: p.Reach, vantage: Vantage | None) -> list[p.Probe]:
    """The public probes, with a line saying where IPv6 was probed from. From here: the
    usual probes of every family. From the host (this machine has no IPv6 route): IPv6 UDP
    runs on the host itself against its public IPv6 address, and HTTP, API and TLS over
    IPv6 are not probed (the line says so). Without an executor: all from here."""
    fams = sorted(r.addresses)
    if 6 not in r.addresses or vantage is None or ex is None:
        return p.public_probes(s, r, fams, s.probe_timeout, s.probe_attempts)
    line = vantage_probe(vantage, r.addresses[6])
    if vantage.where == "here":
        return [*p.public_probes(s, r, fams, s.probe_timeout, s.probe_attempts), line]
    probes = p.public_probes(s, r, [f for f in fams if f != 6], s.probe_timeout, s.probe_attempts)
    if p.udp_served(s):
        ports = [b.port for b in s.udp_trackers]
        probes += ipv6_udp_probes(ex, r.addresses[6], ports, s.probe_timeout, s.probe_attempts, "host", s.domain)[1]
    return [*probes, line]


def drift(ex: Executor, s) -> list[dict]:
    """The network settings checked after a change that can undo them (a deploy that
    switched, a restart): the findings that are not ok, as dicts. Never raises for a
    finding; a host that cannot be read says so as one finding."""
    try:
        found = findings(ex, expectations(s))
    except ToolError as exc:
        return [{"name": "network facts", "status": "warn", "detail": exc.message.splitlines()[0]}]
    return [f.as_dict() for f in found if f.status != "ok"]
