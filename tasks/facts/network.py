"""The host's network path as facts (issue #13): Docker's IPv6 rules, the firewall,
conntrack, UDP errors, softirq spread, RPS/RFS, the public addresses.

A pair, the pyinfra way: `tasks.commands.network.facts()` is the command (one shell
script, one round trip) and `parse()` turns its output into a typed `NetworkFacts`. `read()`
runs the pair through an executor; tasks/health/network_findings.py judges the facts.

Parsing is tolerant per section (one unreadable section is a named problem, the rest
still counts) and strict about the frame: output without the script's header is not
this command's and raises MalformedFact.
"""

from __future__ import annotations

import ipaddress
import json
import re
import shlex
from dataclasses import dataclass

from tasks.commands import network as cmd
from tasks.errors import MalformedFact

HEADER = re.compile(r"@@torrust-network-facts 1 ([0-9A-Za-z]{8,64})")
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
