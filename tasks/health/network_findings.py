"""The network findings (issue #13): a pure `evaluate()` compares the host's network facts
(tasks/facts/network.py) with what the settings expect and gives one finding per check:
a name, ok/warn/fail, what was seen, what it means and the fix (an anchor of
docs/guides/network.md). The thresholds are here, beside the checks that use them.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass

from tasks.facts.network import HOOK_FILES, NetworkFacts, Snapshot, UdpCounters, allows

GUIDE = "docs/guides/network.md"
CONNTRACK_WARN = 0.70  # fill of the connection-tracking table
CONNTRACK_FAIL = 0.90
UDP_ERROR_RATIO = 0.001  # receive errors per datagram that make the check fail (0.1 %)
SOFTIRQ_SHARE = 0.90  # one CPU handling this share of NET_RX softirqs ...
SOFTIRQ_MIN_RATE = 1000  # ... at this many per second or more: concentrated


@dataclass(frozen=True)
class NetworkExpectations:
    """What the settings promise about the host (explicit, not the Settings object)."""

    udp_ports: tuple[int, ...]
    ipv6: bool
    conntrack_max: int
    udp_timeout: int = 10
    udp_timeout_stream: int = 15
    public_addresses: tuple[str, ...] = ()  # extra public addresses (floating IPs)
    firewall: bool = True  # the hardening's firewall step applies to this host
    hardened: bool = True  # torrust-harden ran: its conntrack limits, RPS/RFS and hooks are expected


@dataclass(frozen=True)
class Finding:
    name: str
    status: str  # ok, warn, fail
    detail: str
    meaning: str = ""
    fix: str = ""

    @property
    def ok(self) -> bool:
        return self.status != "fail"

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "status": self.status,
            "detail": self.detail,
            "meaning": self.meaning,
            "fix": self.fix,
        }


def _anchor(name: str) -> str:
    return f"{GUIDE}#{name}"


def _tools(f: NetworkFacts) -> str:
    """Why iptables-save / ip6tables-save gave nothing."""
    return "; ".join(x for x in f.problems if "tables-save" in x) or "unknown reason"


def _ok(name: str, detail: str) -> Finding:
    return Finding(name, "ok", detail)


def docker_ipv6(f: NetworkFacts, e: NetworkExpectations) -> Finding:
    name = "docker ipv6 rules"
    if not e.ipv6:
        return _ok(name, "IPv6 is off for this environment (TORRUST_IPV6=false): not needed")
    meaning = (
        "IPv6 queries to a published UDP port do not reach the tracker through the kernel: a default-deny "
        "firewall drops them, or docker-proxy relays them from an IPv4 address, so the tracker sees the proxy "
        "and replies can leave from the wrong address (post-mortem 2026-03-09)"
    )
    fix = (
        'set "ip6tables": true (plus "experimental": true before Engine 27) in /etc/docker/daemon.json '
        f"(infra.bootstrap writes it), then restart docker; {_anchor('docker-and-ipv6')}"
    )
    rules6 = f.rules.get(6)
    if f.docker.error:
        return Finding(name, "fail", f"/etc/docker/daemon.json is {f.docker.error}", meaning, fix)
    if not f.docker.ip6tables:
        engine = f' (Engine {f.docker.version} also needs "experimental": true)' if (f.docker.major or 99) < 27 else ""
        return Finding(
            name, "fail", f'Docker\'s ip6tables is off: daemon.json lacks "ip6tables": true{engine}', meaning, fix
        )
    if rules6 is None:
        return Finding(
            name, "warn", "daemon.json turns ip6tables on, but the IPv6 rules could not be read", meaning, fix
        )
    if not rules6.docker_nat:
        return Finding(
            name, "fail", "daemon.json turns ip6tables on but the running dockerd wrote no IPv6 nat rules", meaning, fix
        )
    return _ok(name, f"ip6tables on (Engine {f.docker.version or '?'}), Docker's IPv6 nat chain present")


def published_udp(f: NetworkFacts, e: NetworkExpectations) -> Finding:
    name = "published udp ports"
    if not e.udp_ports:
        return _ok(name, "no UDP tracker ports")
    families = (4, 6) if e.ipv6 else (4,)
    missing, unknown = [], []
    for fam in families:
        rs = f.rules.get(fam)
        if rs is None:
            unknown.append(f"IPv{fam}")
            continue
        missing += [
            f"udp {p} on IPv{fam} ({'no DNAT' if p not in rs.dnat_udp else 'no forward accept'})"
            for p in e.udp_ports
            if p not in rs.dnat_udp or not rs.forwarded(p)
        ]
    ports = ", ".join(map(str, e.udp_ports))
    fams = " and ".join(f"IPv{x}" for x in families)
    if missing:
        return Finding(
            name,
            "fail",
            "Docker has no kernel path for " + "; ".join(missing),
            "announces to that port and family never reach the tracker through Docker's NAT (dropped, or "
            "relayed by docker-proxy from another address); the replies' source is not the address asked",
            f"is the tracker running (app.status)? for IPv6 see {_anchor('docker-and-ipv6')}; "
            + _anchor("published-ports"),
        )
    if unknown:
        return Finding(name, "warn", f"the rules of {', '.join(unknown)} could not be read: {_tools(f)}")
    return _ok(name, f"udp {ports}: DNAT and forward rules in {fams}")


def firewall(f: NetworkFacts, e: NetworkExpectations) -> Finding:
    name = "firewall"
    if not e.firewall:
        return _ok(name, "the hardening's firewall step is skipped for this host: not checked")
    families = (4, 6) if e.ipv6 else (4,)
    fix = f"infra.bootstrap runs `ufw allow PORT/udp` (IPV6=yes: both families); {_anchor('firewall')}"
    if f.ufw_active:
        allowed = {fam: (f.rules.get(fam).ufw_udp if f.rules.get(fam) else None) for fam in families}
        source = "ufw"
    elif f.nft and f.nft.input_drop:
        allowed = {
            fam: (f.nft.udp_accept.get(fam, ()) if fam in f.nft.input_drop else ((1, 65535),)) for fam in families
        }
        source = "nftables"
    else:
        state = "not readable" if f.ufw_active is None else "inactive"
        return Finding(
            name,
            "warn",
            f"no host firewall filters incoming traffic (ufw {state}, no nftables input chain with policy drop)",
            "every port a process opens on the host is reachable from the internet",
            fix,
        )
    unknown = [f"IPv{fam}" for fam in families if allowed[fam] is None]
    if unknown:
        return Finding(name, "warn", f"the {source} rules of {', '.join(unknown)} could not be read: {_tools(f)}")
    missing = [f"udp {p} on IPv{fam}" for fam in families for p in e.udp_ports if not allows(allowed[fam], p)]
    if missing:
        return Finding(
            name,
            "fail",
            f"{source} does not allow " + ", ".join(missing),
            "queries that reach the host itself (docker-proxy, a host-network tracker) are dropped for that family: "
            "the IPv6 half of post-mortem 2026-03-09",
            fix,
        )
    return _ok(
        name,
        f"{source} allows udp {', '.join(map(str, e.udp_ports)) or '-'} in "
        + " and ".join(f"IPv{x}" for x in families),
    )


def conntrack_fill(f: NetworkFacts, e: NetworkExpectations) -> Finding:
    name = "conntrack fill"
    c = f.conntrack
    if c.count is None or not c.max:
        return Finding(name, "warn", "the connection-tracking table is not readable (nf_conntrack not loaded?)")
    fill = c.count / c.max
    detail = f"{c.count:,} of {c.max:,} entries ({fill:.0%})"
    if fill < CONNTRACK_WARN:
        return _ok(name, detail)
    return Finding(
        name,
        "fail" if fill >= CONNTRACK_FAIL else "warn",
        detail + f" (warn at {CONNTRACK_WARN:.0%}, fail at {CONNTRACK_FAIL:.0%})",
        "when the table is full the kernel drops new flows: UDP announces time out for a share of peers "
        "(the live demo fell to 92% UDP uptime)",
        f"raise TORRUST_CONNTRACK_MAX and run infra.bootstrap, or shorten the UDP timeouts; size the host with "
        f"health.load; {_anchor('conntrack')}",
    )


def conntrack_settings(f: NetworkFacts, e: NetworkExpectations) -> Finding:
    name = "conntrack settings"
    c = f.conntrack
    if not e.hardened:
        return _ok(name, "host not hardened by torrust-harden: its limits are not checked (the fill is)")
    fails, warns = [], []
    if c.max is not None and c.max < e.conntrack_max:
        fails.append(f"nf_conntrack_max is {c.max:,}, configured {e.conntrack_max:,}")
    for label, have, want in (
        ("nf_conntrack_udp_timeout", c.udp_timeout, e.udp_timeout),
        ("nf_conntrack_udp_timeout_stream", c.udp_timeout_stream, e.udp_timeout_stream),
    ):
        if have is not None and have != want:
            warns.append(f"{label} is {have} s, configured {want} s")
    if e.hardened and not c.preload:
        warns.append("nf_conntrack is not loaded at boot (modules-load.d), so sysctl.d cannot set its limits")
    if c.max is None:
        warns.append("nf_conntrack_max is not readable")
    if not fails and not warns:
        return _ok(name, f"max {c.max:,}, UDP timeouts {c.udp_timeout} s / {c.udp_timeout_stream} s, module preloaded")
    return Finding(
        name,
        "fail" if fails else "warn",
        "; ".join(fails + warns),
        "the host does not hold the connection-tracking settings the deploy was sized for (drift: a reboot "
        "before the module loaded, or a hand edit)",
        f"run infra.bootstrap (re-applies /etc/sysctl.d/90-torrust.conf); {_anchor('conntrack')}",
    )


def _window(f: NetworkFacts) -> tuple[Snapshot | None, str]:
    """The snapshot to compare with: the previous check's (same boot), else none (since boot)."""
    cur, prev = f.current, f.previous
    if cur and prev and prev.boot == cur.boot and prev.now <= cur.now:
        return prev, f"since the last check {cur.now - prev.now} s ago"
    return None, "since boot (no earlier check)"


def udp_errors(f: NetworkFacts, e: NetworkExpectations) -> Finding:
    name = "udp errors"
    cur = f.current
    if cur is None:
        return Finding(name, "warn", "UDP counters not readable (/proc/net/snmp)")
    base, window = _window(f)
    received = errors = rcvbuf = 0
    for fam, c in cur.udp.items():
        b = base.udp.get(fam, UdpCounters(0, 0, 0, 0)) if base else UdpCounters(0, 0, 0, 0)
        received += max(0, c.in_datagrams - b.in_datagrams)
        errors += max(0, (c.in_errors - b.in_errors) + (c.sndbuf_errors - b.sndbuf_errors))
        rcvbuf += max(0, c.rcvbuf_errors - b.rcvbuf_errors)
    ratio = errors / max(1, received + errors)
    detail = (
        f"{window}: {errors:,} UDP errors ({rcvbuf:,} receive-buffer) in {received + errors:,} datagrams ({ratio:.2%})"
    )
    if errors == 0:
        return _ok(name, detail)
    status = "fail" if ratio >= UDP_ERROR_RATIO and base is not None else "warn"
    return Finding(
        name,
        status,
        detail,
        "the kernel dropped datagrams because a socket's receive buffer was full (the tracker did not read fast "
        "enough) or memory ran short: those announces got no reply",
        f"check the tracker's CPU and the net.core.rmem_* sysctls infra.bootstrap sets; size with health.load; "
        f"{_anchor('udp-errors')}",
    )


def softirq_spread(f: NetworkFacts, e: NetworkExpectations) -> Finding:
    name = "softirq spread"
    cur = f.current
    if f.ncpu <= 1 or cur is None or not cur.net_rx:
        return _ok(name, "one CPU: nothing to spread" if f.ncpu <= 1 else "NET_RX softirqs not readable")
    base, window = _window(f)
    deltas = [c - (base.net_rx[i] if base and i < len(base.net_rx) else 0) for i, c in enumerate(cur.net_rx)]
    total = sum(max(0, d) for d in deltas)
    if total == 0:
        return _ok(name, f"{window}: no network receive softirqs")
    top = max(range(len(deltas)), key=lambda i: deltas[i])
    share = deltas[top] / total
    detail = f"{window}: CPU{top} handled {share:.0%} of {total:,} network receive softirqs"
    rate = total / max(1, cur.now - base.now) if base else 0
    if base is None or share < SOFTIRQ_SHARE or rate < SOFTIRQ_MIN_RATE:
        return _ok(name, detail)
    return Finding(
        name,
        "warn",
        detail + f" ({rate:,.0f}/s)",
        "one core does all packet receive work: it saturates (100% softirq) long before the others, and UDP drops",
        f"turn on RPS/RFS (infra.bootstrap does); {_anchor('softirq-rps-and-rfs')}",
    )


def rps_rfs(f: NetworkFacts, e: NetworkExpectations) -> Finding:
    name = "rps/rfs"
    if not e.hardened:
        return _ok(name, "host not hardened by torrust-harden: not checked")
    if f.ncpu <= 1:
        return _ok(name, "one CPU: RPS/RFS not needed")
    if not f.rx_queues:
        return Finding(name, "warn", "no receive queue found for the default-route interfaces")
    off = [f"{q.dev} {q.queue}" for q in f.rx_queues if not q.rps_cpus]
    no_flows = [f"{q.dev} {q.queue}" for q in f.rx_queues if q.rps_cpus and not q.flow_cnt]
    issues = [f"RPS off on {', '.join(off)}"] * bool(off)
    if f.rps_sock_flow_entries == 0:
        issues.append("RFS off (net.core.rps_sock_flow_entries is 0)")
    if no_flows:
        issues.append(f"RFS off (rps_flow_cnt 0 on {', '.join(no_flows)})")
    if not issues:
        flows = f.rps_sock_flow_entries
        rfs = "not visible in this network namespace" if flows is None else f"{flows} flow entries"
        masks = ", ".join(sorted({f"{q.dev}={q.rps_cpus:x}" for q in f.rx_queues}))
        return _ok(name, f"RPS on ({masks}); RFS {rfs}")
    return Finding(
        name,
        "warn",
        "; ".join(issues),
        "without RPS/RFS one CPU takes every packet of a single-queue NIC (the demo's 100% softirq core)",
        f"infra.bootstrap sets them (re-applied at boot); {_anchor('softirq-rps-and-rfs')}",
    )


def reapply_hooks(f: NetworkFacts, e: NetworkExpectations) -> Finding:
    name = "re-apply hooks"
    if not e.hardened:
        return _ok(name, "host not hardened by torrust-harden: not checked")
    missing = [h for h in HOOK_FILES if h not in f.hooks]
    if not missing:
        return _ok(name, "re-applied at boot and after docker and firewall restarts")
    return Finding(
        name,
        "warn",
        "missing " + ", ".join(missing),
        "a restart of Docker or the firewall (the demo's nightly backup restarted Docker) can remove network "
        "settings and nothing puts them back",
        f"run infra.bootstrap; {_anchor('drift-boot-and-restarts')}",
    )


def public_addresses(f: NetworkFacts, e: NetworkExpectations) -> Finding:
    name = "public addresses"
    if not e.public_addresses:
        return _ok(name, "no extra public addresses declared")
    held = {addr for _dev, addr in f.addresses}
    absent = [a for a in e.public_addresses if str(ipaddress.ip_address(a)) not in held]
    marked = {addr for rs in f.rules.values() if rs for addr in rs.connmarks}
    unrouted = [a for a in e.public_addresses if a not in absent and str(ipaddress.ip_address(a)) not in marked]
    if not absent and not unrouted and f.fwmark_tables:
        return _ok(
            name, f"{len(e.public_addresses)} held, each marked for reply routing ({len(f.fwmark_tables)} rules)"
        )
    detail = "; ".join(
        [f"not on any interface: {', '.join(absent)}"] * bool(absent)
        + [f"no reply routing (connmark) for {', '.join(unrouted)}"] * bool(unrouted)
        + ["no fwmark routing rule"] * (not f.fwmark_tables)
    )
    return Finding(
        name,
        "fail" if absent else "warn",
        detail,
        "queries to that address are not answered, or answers leave from another address and clients drop them",
        "declare every public address in TORRUST_PUBLIC_ADDRESSES and run infra.bootstrap; "
        + _anchor("several-public-addresses-floating-ips"),
    )


CHECKS: tuple[Callable[[NetworkFacts, NetworkExpectations], Finding], ...] = (
    docker_ipv6,
    published_udp,
    firewall,
    conntrack_fill,
    conntrack_settings,
    udp_errors,
    softirq_spread,
    rps_rfs,
    reapply_hooks,
    public_addresses,
)
CHECK_NAMES = (
    "docker ipv6 rules",
    "published udp ports",
    "firewall",
    "conntrack fill",
    "conntrack settings",
    "udp errors",
    "softirq spread",
    "rps/rfs",
    "re-apply hooks",
    "public addresses",
)


HARDENING_FILES = ("/usr/local/sbin/torrust-harden", "/etc/torrust/harden.env")


def evaluate(f: NetworkFacts, e: NetworkExpectations) -> list[Finding]:
    """Every finding. A host expected to be hardened that never ran torrust-harden (a
    server registered but not bootstrapped, a test host) is held to what any host must
    have, and the re-apply hooks finding says to run infra.bootstrap."""
    if e.hardened and not any(h in f.hooks for h in HARDENING_FILES):
        found = [check(f, dataclasses.replace(e, hardened=False)) for check in CHECKS]
        return [_not_hardened(x) if x.name == "re-apply hooks" else x for x in found]
    return [check(f, e) for check in CHECKS]


def _not_hardened(x: Finding) -> Finding:
    return Finding(
        x.name,
        "warn",
        "torrust-harden never ran on this host: its conntrack limits, firewall rules, RPS/RFS and hooks are "
        "not checked",
        "the network settings of the live demo's post-mortems are not applied",
        f"run infra.bootstrap; {_anchor('drift-boot-and-restarts')}",
    )
