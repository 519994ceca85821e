"""tasks/health/network.py: the network probe group on recorded host outputs (through a
strict stand-in of the executor), the reply-source probe and the IPv6 vantage against
real sockets on loopback, the host-side probe through the real local executor."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest

from tasks.commands import network as cmd
from tasks.errors import ConfigError
from tasks.facts import network as nf
from tasks.health import network as hn
from tasks.health import network_findings as nfind
from tasks.health import probes as p
from tasks.runner.executor import Result, local
from tests.standins.bep15 import Responder

RECORDED = Path(__file__).parents[1] / "facts" / "recorded" / "network"
EXPECT = nfind.NetworkExpectations(udp_ports=(6969,), ipv6=True, conntrack_max=262144)


class RecordedHost:
    """STAND-IN for an Executor connected to a host: answers the network-facts command
    with a recorded output. Strict: any other command, or other stdin, fails the test."""

    where = "recorded-host"

    def __init__(self, text: str):
        self.text, self.calls = text, 0

    def run(self, argv, *, timeout=None, check=True, **kw):
        assert list(argv) == cmd.facts("") and not kw, argv
        self.calls += 1
        return Result(tuple(argv), 0, self.text, "", 0.01)


def run_group(recording: str) -> tuple[RecordedHost, dict[str, p.ProbeResult]]:
    host = RecordedHost((RECORDED / f"{recording}.txt").read_text())
    results = p.run(hn.network_probes(host, EXPECT))
    return host, {r.name: r for r in results}


def test_network_group_reads_the_host_once_and_names_the_cause():
    host, results = run_group("missing-rules")
    assert host.calls == 1  # ten probes in parallel, one round trip
    assert list(results) == list(nfind.CHECK_NAMES)
    assert all(r.target == "recorded-host" and r.family is None for r in results.values())
    docker = results["docker ipv6 rules"]
    assert not docker.ok and docker.required
    assert docker.detail.startswith('Docker\'s ip6tables is off: daemon.json lacks "ip6tables": true')
    assert ". Means: IPv6 queries to a published UDP port" in docker.detail
    assert docker.detail.endswith("Fix: " + nfind.docker_ipv6(nf.parse(host.text), EXPECT).fix)
    hooks = results["re-apply hooks"]
    assert hooks.ok and hooks.detail.startswith("WARNING: torrust-harden never ran on this host")
    assert results["conntrack fill"].ok and results["conntrack fill"].detail == "2 of 262,144 entries (0%)"


def test_network_group_on_a_healthy_host_passes():
    _, results = run_group("healthy")
    assert all(r.ok for r in results.values()), [r for r in results.values() if not r.ok]
    assert {r.name for r in results.values() if r.detail.startswith("WARNING")} == set()


def test_the_deploy_gate_fails_only_on_the_release_s_network_path():
    host = RecordedHost((RECORDED / "missing-rules.txt").read_text())
    some = frozenset({"docker ipv6 rules", "published udp ports", "firewall"})
    results = p.run(hn.network_probes(host, EXPECT, required=some))
    assert sorted(r.name for r in results if not r.ok and r.required) == [
        "docker ipv6 rules",
        "firewall",
        "published udp ports",
    ]
    assert {r.name for r in results if not r.required} == set(nfind.CHECK_NAMES) - some


def test_a_later_round_reads_the_host_again():
    host = RecordedHost((RECORDED / "missing-rules.txt").read_text())
    probes = {pr.name: pr for pr in hn.network_probes(host, EXPECT, fresh_after=0.0)}
    assert not p.run([probes["firewall"]])[0].ok
    host.text = (RECORDED / "healthy.txt").read_text()  # the firewall was fixed meanwhile
    (again,) = p.run([probes["firewall"]])
    assert again.ok and again.detail == "ufw allows udp 6969 in IPv4 and IPv6"
    assert host.calls == 2


def test_unreadable_host_fails_every_probe_with_the_reason():
    host = RecordedHost("bash: sh: command not found\n")
    results = p.run(hn.network_probes(host, EXPECT))
    assert host.calls == 1
    assert {r.detail for r in results} == {
        "cannot read the host's network facts: network facts: expected the header "
        "'@@torrust-network-facts 1 TOKEN', got 'bash: sh: command not found'"
    }
    assert not any(r.ok for r in results)


# ---------------------------------------------------------------------- reply source
class Misreplier:
    """STAND-IN for a host that answers from another address than the one asked (what
    docker-proxy on a wildcard socket does on a host with several addresses)."""

    def __init__(self):
        self.inbox = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.inbox.bind(("127.0.0.1", 0))
        self.inbox.settimeout(0.2)
        self.outbox = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.outbox.bind(("127.0.0.2", 0))
        self.port = self.inbox.getsockname()[1]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)

    def serve(self):
        while not self.stop.is_set():
            try:
                data, addr = self.inbox.recvfrom(2048)
            except TimeoutError:
                continue
            if not data:  # the wake-up from __exit__
                continue
            self.outbox.sendto(data[8:16][:4] + data[12:16] + b"\0" * 8, addr)  # connect reply

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as wake:  # ends the wait in recvfrom now
            wake.sendto(b"", self.inbox.getsockname())
        self.thread.join(2)
        self.inbox.close()
        self.outbox.close()


def test_reply_source_passes_when_the_reply_comes_from_the_address_asked():
    with Responder() as r:
        detail = hn.reply_source("127.0.0.1", r.port, 2.0)
    assert detail == "connect, announce interval=120, stopped; reply from 127.0.0.1"
    assert (r.seen.connects, r.seen.announces) == (1, 2)


def test_reply_from_another_address_fails():
    with Misreplier() as m, pytest.raises(p.ProbeFailed) as exc:
        hn.reply_source("127.0.0.1", m.port, 2.0)
    assert str(exc.value) == "reply came from 127.0.0.2, not 127.0.0.1: clients drop it"


def test_no_reply_is_a_timeout():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as quiet:
        quiet.bind(("127.0.0.1", 0))
        port = quiet.getsockname()[1]
        with pytest.raises(p.ProbeFailed) as exc:
            hn.reply_source("127.0.0.1", port, 0.1)
    assert str(exc.value) == f"no reply from 127.0.0.1 port {port} (timed out)"


def test_reply_source_probes_one_per_address_and_port():
    with Responder() as a, Responder("::1") as b:
        probes = hn.reply_source_probes(["127.0.0.1", "::1"], [a.port, b.port], 0.5, attempts=1)
        results = p.run(probes)
    assert [(r.name, r.target, r.family) for r in results] == [
        ("udp reply source", f"127.0.0.1 port {a.port}", 4),
        ("udp reply source", f"127.0.0.1 port {b.port}", 4),
        ("udp reply source", f"::1 port {a.port}", 6),
        ("udp reply source", f"::1 port {b.port}", 6),
    ]
    assert [r.ok for r in results] == [True, False, False, True]  # each responder answers one family
    assert all(pr.group == "network" and pr.required for pr in probes)


# ----------------------------------------------------------------------- IPv6 vantage
def test_route_to_loopback_and_configured_vantages():
    assert hn.has_route("::1") == (True, "route to ::1 from ::1")
    assert hn.ipv6_vantage("::1") == hn.Vantage("here", "route to ::1 from ::1")
    assert hn.ipv6_vantage("2001:db8::1", "host") == hn.Vantage("host", "TORRUST_PROBE_IPV6_FROM=host")
    with pytest.raises(ConfigError) as exc:
        hn.ipv6_vantage("::1", "laptop")
    assert exc.value.message == "IPv6 vantage 'laptop': allowed auto, here, host"


def test_host_side_probe_runs_the_shipped_script_through_the_executor():
    ex = local()
    with Responder("::1") as r:
        detail = hn.host_udp_probe(ex, "::1", r.port, 2.0)
    assert detail == "connect, announce interval=120, stopped; reply from ::1 (probed from the host)"
    assert ex.history[-1].argv == tuple(cmd.udp_probe("::1", r.port, 2.0))
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as quiet:
        quiet.bind(("::1", 0))
        port = quiet.getsockname()[1]
        with pytest.raises(p.ProbeFailed) as exc:
            hn.host_udp_probe(ex, "::1", port, 0.1)
    assert str(exc.value) == f"no reply from ::1 port {port} (timed out) (probed from the host)"


def test_ipv6_udp_probes_from_the_host_say_so():
    with Responder("::1") as r:
        v, probes = hn.ipv6_udp_probes(local(), "::1", [r.port], 2.0, 1, prefer="host", label="tracker.example")
        results = p.run([*probes, hn.vantage_probe(v, "::1")])
    assert v.where == "host"
    assert results[0].ok and results[0].target == f"udp://tracker.example:{r.port} via ::1 (from the host)"
    assert results[0].detail.endswith("(probed from the host)") and results[0].family == 6
    assert results[1].detail == (
        "IPv6 probed from host: TORRUST_PROBE_IPV6_FROM=host (UDP only: HTTP, API and TLS over IPv6 not probed)"
    )


def test_ipv6_udp_probes_from_here_use_the_public_probe():
    with Responder("::1") as r:
        v, probes = hn.ipv6_udp_probes(local(), "::1", [r.port], 2.0, 1)
        (result,) = p.run(probes)
    assert v.where == "here" and result.ok, result
    assert result.target.endswith("(from here)") and result.detail.startswith("connect, announce interval=120")


def test_host_wide_counters_fail_health_check_only_on_a_server():
    from types import SimpleNamespace

    local = hn.required_on(SimpleNamespace(target="local"))
    assert local == frozenset(nfind.CHECK_NAMES) - {"conntrack fill", "udp errors", "softirq spread"}
    assert "published udp ports" in local and "docker ipv6 rules" in local
    assert hn.required_on(SimpleNamespace(target="ssh")) is None
