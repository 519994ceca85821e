"""The host's network path as facts (issue #13): Docker's IPv6 rules, the firewall,
conntrack, UDP errors, softirq spread, RPS/RFS, the public addresses.

A pair, the pyinfra way: `tasks.commands.network.facts()` is the command (one shell
script, one round trip) and `parse()` turns its output into a typed `NetworkFacts`. A
pure `evaluate()` compares the facts with what the settings expect and gives findings:
a name, ok/warn/fail, what was seen, what it means and the fix (an anchor of
docs/guides/network.md). `read()` runs the pair through an executor.

Parsing is tolerant per section (one unreadable section is a named problem, the rest
still counts) and strict about the frame: output without the script's header is not
this command's and raises MalformedFact.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass

from tasks.commands import network as cmd
from tasks.errors import MalformedFact

GUIDE = "docs/guides/network.md"
HEADER = re.compile(r"@@torrust-network-facts 1 ([0-9A-Za-z]{8,64})")
CONNTRACK_WARN = 0.70  # fill of the connection-tracking table
CONNTRACK_FAIL = 0.90
UDP_ERROR_RATIO = 0.001  # receive errors per datagram that make the check fail (0.1 %)
SOFTIRQ_SHARE = 0.90  # one CPU handling this share of NET_RX softirqs ...
SOFTIRQ_MIN_RATE = 1000  # ... at this many per second or more: concentrated
UFW_INPUT = {4: "ufw-user-input", 6: "ufw6-user-input"}
HOOK_FILES = (
    "/usr/local/sbin/torrust-harden",
    "/etc/torrust/harden.env",
    "/etc/systemd/system/torrust-network.service",
    "/etc/systemd/system/docker.service.d/torrust-network.conf",
    "/etc/systemd/system/ufw.service.d/torrust-network.conf",
)


# --------------------------------------------------------------------------- typed facts
@dataclass(frozen=True)
class Section:
    status: int
    text: str


@dataclass(frozen=True)
class DockerDaemon:
    config: dict | None  # /etc/docker/daemon.json, None when the file does not exist
    error: str | None  # why daemon.json could not be used (not JSON, not an object)
    version: str | None  # the running engine's version

    @property
    def major(self) -> int | None:
        m = re.match(r"(\d+)\.", self.version or "")
        return int(m.group(1)) if m else None

    @property
    def ip6tables(self) -> bool:
        """daemon.json turns Docker's IPv6 rules on (experimental too before Engine 27)."""
        cfg = self.config or {}
        needs_experimental = self.major is not None and self.major < 27
        return cfg.get("ip6tables") is True and (cfg.get("experimental") is True or not needs_experimental)


PortRanges = tuple[tuple[int, int], ...]


def allows(ranges: PortRanges, port: int) -> bool:
    return any(lo <= port <= hi for lo, hi in ranges)


@dataclass(frozen=True)
class Ruleset:
    """One family's iptables-save, reduced to what the checks need."""

    docker_nat: bool  # Docker's DOCKER chain exists in the nat table
    dnat_udp: frozenset[int]  # nat DOCKER: UDP ports DNATed to a container
    forward_udp: frozenset[int]  # filter DOCKER: UDP ports accepted towards a container
    ufw_udp: PortRanges  # UDP ports ufw's user input chain accepts
    connmarks: frozenset[str]  # mangle: destination addresses whose connections get a mark
    dnat_to: tuple[tuple[int, int], ...] = ()  # (host port, container port) of the UDP DNAT rules

    def forwarded(self, port: int) -> bool:
        """The host port's DNAT leads to a container port the filter accepts (they differ when
        the container listens elsewhere, e.g. the proxy's 443/udp behind another host port)."""
        targets = {to for host, to in self.dnat_to if host == port} or {port}
        return bool(targets & self.forward_udp)


@dataclass(frozen=True)
class Nftables:
    input_drop: frozenset[int]  # families (4, 6) whose input hook drops by default
    udp_accept: dict[int, PortRanges]  # family -> UDP ports accepted in an input-hook chain


@dataclass(frozen=True)
class Conntrack:
    count: int | None = None
    max: int | None = None
    buckets: int | None = None
    udp_timeout: int | None = None
    udp_timeout_stream: int | None = None
    loaded: bool = False
    preload: tuple[str, ...] = ()  # files that load nf_conntrack at boot


@dataclass(frozen=True)
class UdpCounters:
    in_datagrams: int
    in_errors: int  # includes the receive-buffer errors
    rcvbuf_errors: int
    sndbuf_errors: int


@dataclass(frozen=True)
class Snapshot:
    """Counters at one moment: kept on the host so the next check sees the change."""

    udp: dict[int, UdpCounters]
    net_rx: tuple[int, ...]  # NET_RX softirqs per CPU
    now: int
    boot: str


@dataclass(frozen=True)
class RxQueue:
    dev: str
    queue: str
    rps_cpus: int | None  # CPU mask, None when unreadable
    flow_cnt: int | None


@dataclass(frozen=True)
class NetworkFacts:
    ncpu: int
    docker: DockerDaemon
    rules: dict[int, Ruleset | None]  # None: unreadable (the reason is in problems)
    nft: Nftables | None
    ufw_active: bool | None  # None: ufw missing or unreadable
    conntrack: Conntrack
    rps_sock_flow_entries: int | None  # None: not visible (a network namespace)
    current: Snapshot | None
    previous: Snapshot | None
    rx_queues: tuple[RxQueue, ...]
    addresses: tuple[tuple[str, str], ...]  # (interface, address)
    fwmark_tables: tuple[tuple[int, str], ...]  # (mark, table) of `ip rule ... fwmark M lookup T`
    table_routes: tuple[str, ...]  # "table T <route>" of those tables
    hooks: tuple[str, ...]  # re-apply hook files present
    problems: tuple[str, ...] = ()


# ------------------------------------------------------------------------------ parsing
def sections(text: str) -> dict[str, Section]:
    lines = text.splitlines()
    head = next((i for i, line in enumerate(lines) if line.strip()), None)
    m = HEADER.fullmatch(lines[head].strip()) if head is not None else None
    if not m:
        first = lines[head][:80] if head is not None else "(no output)"
        raise MalformedFact(f"network facts: expected the header '@@torrust-network-facts 1 TOKEN', got {first!r}")
    opener = f"@@{m.group(1)} "
    found: dict[str, Section] = {}
    name, status, body = None, 0, []
    for line in [*lines[head + 1 :], opener + "@end 0"]:
        if not line.startswith(opener):
            body.append(line)
            continue
        if name is not None:
            found[name] = Section(status, "\n".join(body))
        parts = line[len(opener) :].split()
        name, status, body = parts[0], int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else -1, []
    return found


def _keyvalues(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def _int(value: str | None) -> int | None:
    return int(value) if value is not None and value.strip().isdigit() else None


def _docker(secs: dict[str, Section], problems: list[str]) -> DockerDaemon:
    daemon = secs.get("daemon_json", Section(1, ""))
    version = secs.get("docker_version", Section(1, ""))
    ver = version.text.strip().splitlines()[0][:40] if version.status == 0 and version.text.strip() else None
    if daemon.status != 0:
        return DockerDaemon(None, None, ver)  # no daemon.json: Docker's defaults
    try:
        config = json.loads(daemon.text)
    except json.JSONDecodeError as exc:
        problems.append(f"/etc/docker/daemon.json is not JSON ({exc.msg}, line {exc.lineno})")
        return DockerDaemon(None, f"not JSON ({exc.msg}, line {exc.lineno})", ver)
    if not isinstance(config, dict):
        return DockerDaemon(None, "not a JSON object", ver)
    return DockerDaemon(config, None, ver)


def _port_ranges(spec: str) -> PortRanges:
    """'6969', '6000:7000', '80,443,6969' (multiport) -> ((6969, 6969), ...); junk -> ()."""
    out = []
    for part in spec.split(","):
        lo, sep, hi = part.partition(":")
        if lo.isdigit() and (not sep or hi.isdigit()):
            out.append((int(lo), int(hi or lo)))
    return tuple(out)


def _rule_opt(words: list[str], *names: str) -> str | None:
    for i, w in enumerate(words[:-1]):
        if w in names:
            return words[i + 1]
    return None


def parse_iptables_save(text: str, family: int) -> Ruleset:
    table, docker_nat = "", False
    dnat, forward, ufw, marks, dnat_to = set(), set(), [], set(), set()
    for line in text.splitlines():
        if line.startswith("*"):
            table = line[1:].strip()
        elif line.startswith(":DOCKER ") and table == "nat":
            docker_nat = True
        elif line.startswith("-A "):
            try:
                words = shlex.split(line)
            except ValueError:
                continue  # unbalanced quotes (a hostile comment): not a rule we look for
            if len(words) < 2:
                continue
            chain, target, proto = words[1], _rule_opt(words, "-j"), _rule_opt(words, "-p")
            dport = _rule_opt(words, "--dport", "--dports", "--destination-port")
            ports = _port_ranges(dport) if dport else ()
            key = (table, chain, target)
            if key == ("nat", "DOCKER", "DNAT") and proto == "udp":
                dnat.update(lo for lo, _ in ports)
                to = (_rule_opt(words, "--to-destination") or "").rpartition(":")[2]
                if to.isdigit() and len(ports) == 1:
                    dnat_to.add((ports[0][0], int(to)))
            elif key == ("filter", "DOCKER", "ACCEPT") and proto == "udp":
                forward.update(lo for lo, _ in ports)
            elif key == ("filter", UFW_INPUT[family], "ACCEPT") and proto in ("udp", None) and ports:
                ufw.extend(ports)
            elif table == "mangle" and target == "CONNMARK" and _rule_opt(words, "-d"):
                marks.add(_rule_opt(words, "-d").split("/")[0])
    return Ruleset(
        docker_nat, frozenset(dnat), frozenset(forward), tuple(ufw), frozenset(marks), tuple(sorted(dnat_to))
    )


NFT_FAMILIES = {"ip": (4,), "ip6": (6,), "inet": (4, 6)}
NFT_PORTS = re.compile(r"\budp dport (\{[^}]*\}|\S+)")


def parse_nft(text: str) -> Nftables:
    """`nft list ruleset`: input-hook chains with policy drop, and their `udp dport ... accept`."""
    families: tuple[int, ...] = ()
    in_input, drop, accept = False, set(), {4: [], 6: []}
    for raw in text.splitlines():
        line = raw.strip()
        words = line.split()
        if line.startswith("table ") and len(words) >= 2:
            families, in_input = NFT_FAMILIES.get(words[1], ()), False
        elif line.startswith("chain "):
            in_input = False
        elif line.startswith("type filter hook input"):
            in_input = True
            if "policy drop;" in line:
                drop.update(families)
        elif in_input and line.endswith("accept") and (m := NFT_PORTS.search(line)):
            spec = m.group(1).strip("{} ").replace(" ", "").replace("-", ":")
            for fam in families:
                accept[fam].extend(_port_ranges(spec))
    return Nftables(frozenset(drop), {f: tuple(v) for f, v in accept.items()})


def _ruleset(sec: Section | None, family: int, problems: list[str]) -> Ruleset | None:
    tool = "iptables-save" if family == 4 else "ip6tables-save"
    if sec is None or sec.status != 0:
        reason = (sec.text.strip().splitlines() or ["not run"])[-1][:160] if sec else "not run"
        problems.append(f"{tool}: {reason}")
        return None
    return parse_iptables_save(sec.text, family)


def parse_snapshot(text: str) -> Snapshot | None:
    """The counters block (also the remembered one); None when it is not complete."""
    udp4_header, values, udp6, net_rx, now, boot = None, None, {}, None, None, ""
    for line in text.splitlines():
        words = line.split()
        if not words:
            continue
        if words[0] == "Udp:" and udp4_header is None:
            udp4_header = words[1:]
        elif words[0] == "Udp:":
            values = dict(zip(udp4_header, words[1:], strict=False))
        elif words[0].startswith("Udp6") and len(words) == 2:
            udp6[words[0][4:]] = words[1]
        elif words[0] == "NET_RX:":
            net_rx = tuple(_int(w) or 0 for w in words[1:])
        elif words[0] == "now" and len(words) == 2:
            now = _int(words[1])
        elif words[0] == "boot" and len(words) == 2:
            boot = words[1]
    udp = {fam: _counters(v) for fam, v in ((4, values), (6, udp6)) if v}
    if not udp or None in udp.values() or now is None:
        return None
    return Snapshot(udp, net_rx or (), now, boot)


def _counters(v: dict[str, str]) -> UdpCounters | None:
    nums = [_int(v.get(k)) for k in ("InDatagrams", "InErrors", "RcvbufErrors", "SndbufErrors")]
    return None if None in nums else UdpCounters(*nums)


def _conntrack(sysctl: dict[str, str], modules: str) -> Conntrack:
    return Conntrack(
        count=_int(sysctl.get("nf_conntrack_count")),
        max=_int(sysctl.get("nf_conntrack_max")),
        buckets=_int(sysctl.get("nf_conntrack_buckets")),
        udp_timeout=_int(sysctl.get("nf_conntrack_udp_timeout")),
        udp_timeout_stream=_int(sysctl.get("nf_conntrack_udp_timeout_stream")),
        loaded="loaded nf_conntrack" in modules.splitlines(),
        preload=tuple(line.split(" ", 1)[1] for line in modules.splitlines() if line.startswith("preload ")),
    )


def _rx_queues(text: str) -> tuple[RxQueue, ...]:
    out = []
    for line in text.splitlines():
        words = line.split()
        if len(words) == 4 and words[1].startswith("rx-"):
            mask = words[2].replace(",", "")
            cpus = int(mask, 16) if re.fullmatch(r"[0-9a-fA-F]+", mask) else None
            out.append(RxQueue(words[0], words[1], cpus, _int(words[3])))
    return tuple(out)


def _addresses(text: str) -> tuple[tuple[str, str], ...]:
    """`ip -o addr show scope global` -> ((dev, address), ...)."""
    out = []
    for line in text.splitlines():
        words = line.split()
        if len(words) >= 4 and words[2] in ("inet", "inet6"):
            try:
                out.append((words[1], str(ipaddress.ip_interface(words[3]).ip)))
            except ValueError:
                continue
    return tuple(out)


def _policy_routing(text: str) -> tuple[tuple[tuple[int, str], ...], tuple[str, ...]]:
    marks, routes = [], []
    for line in text.splitlines():
        m = re.search(r"fwmark (0x[0-9a-fA-F]+|\d+)(?:/\S+)? lookup (\S+)", line)
        if m:
            marks.append((int(m.group(1), 0), m.group(2)))
        elif line.startswith("table "):
            routes.append(line.strip())
    return tuple(sorted(set(marks))), tuple(routes)


def parse(text: str) -> NetworkFacts:
    secs = sections(text)
    problems: list[str] = []
    meta = _keyvalues(secs.get("meta", Section(1, "")).text)
    sysctl = _keyvalues(secs.get("sysctl", Section(1, "")).text)
    nft = secs.get("nft")
    ufw = secs.get("ufw")
    marks, routes = _policy_routing(secs.get("policy_routing", Section(1, "")).text)
    return NetworkFacts(
        ncpu=_int(meta.get("ncpu")) or 1,
        docker=_docker(secs, problems),
        rules={
            4: _ruleset(secs.get("iptables-save"), 4, problems),
            6: _ruleset(secs.get("ip6tables-save"), 6, problems),
        },
        nft=parse_nft(nft.text) if nft and nft.status == 0 else None,
        ufw_active=(ufw.text.strip().startswith("Status: active")) if ufw and ufw.status == 0 else None,
        conntrack=_conntrack(sysctl, secs.get("modules", Section(1, "")).text),
        rps_sock_flow_entries=_int(sysctl.get("rps_sock_flow_entries")),
        current=parse_snapshot(secs.get("counters", Section(1, "")).text),
        previous=parse_snapshot(secs.get("previous", Section(1, "")).text),
        rx_queues=_rx_queues(secs.get("rps", Section(1, "")).text),
        addresses=_addresses(secs.get("addresses", Section(1, "")).text),
        fwmark_tables=marks,
        table_routes=routes,
        hooks=tuple(line.strip() for line in secs.get("hooks", Section(1, "")).text.splitlines() if line.strip()),
        problems=tuple(problems),
    )


def read(ex, state_file: str = "") -> NetworkFacts:
    """Run the facts script on the executor's host (one round trip) and parse it."""
    return parse(ex.run(cmd.facts(state_file), timeout=60).stdout)


# ----------------------------------------------------------------------------- findings
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
