"""The UDP path in production (issue #13, issue #19 item 4), on a test host with its own
network namespace, dockerd and ufw (tests/integration/nethost.py): the IPv6 post-mortem
reproduced and fixed by the tool's settings, surviving Docker restarts; the network
checks for real; reply sources per public address; the IPv6 probe from the host;
health.load against the deployed stack and against a server with a tiny socket buffer.

The tests share one host and run in order (each phase builds on the previous one).
What this sandbox does not allow is listed in docs/guides/network.md#what-the-tests-cover.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
import time

import pytest

from tasks.config.settings import load
from tasks.facts import network as nf
from tasks.health import load as hl
from tasks.health import network as hn
from tasks.health import network_findings as nfind
from tasks.health import probes as p
from tasks.health.udp import UDPTrackerClient
from tasks.infra import cloudinit
from tasks.runner.target import open_target
from tests.conftest import ROOT
from tests.integration.nethost import NetHost, unique_prefix

pytestmark = pytest.mark.skipif(shutil.which("nsenter") is None, reason="nsenter (util-linux) is needed")
SKIP = ("packages", "user", "sshd", "upgrades", "storage")  # what a fresh test host need not repeat
INNER_GATEWAY6 = "fd00:7472:6b72::1"  # the stack's public network (TORRUST_IPV6_SUBNET's default) gateway


class Net:
    def __init__(self, host: NetHost, cwd, env):
        self.host, self.cwd, self.env = host, cwd, env
        self.settings = load("net", root=cwd, environ=env)

    def expect(self, **kw) -> nfind.NetworkExpectations:
        base = nfind.NetworkExpectations(
            udp_ports=(6969,),
            ipv6=True,
            conntrack_max=262144,
            public_addresses=(self.host.v6_extra, self.host.v4_extra),
        )
        return dataclasses.replace(base, **kw)

    def findings(self, expect: nfind.NetworkExpectations) -> dict[str, nfind.Finding]:
        with open_target(self.settings) as ex:
            return {f.name: f for f in hn.findings(ex, expect)}

    def harden_env(self) -> str:
        return cloudinit.harden_env(
            self.settings, "existing", SKIP, public_addresses=(self.host.v6_extra, self.host.v4_extra)
        )

    def udp6_probe(self, address: str = "", timeout: float = 2.0) -> str:
        return p.udp_tracker(address or self.host.v6, 6969, timeout)


@pytest.fixture(scope="module")
def net(images, tmp_path_factory):
    work = tmp_path_factory.mktemp("nethost")
    (work / "cwd").mkdir()
    host = NetHost(unique_prefix(), work)
    try:
        host.start()
        host.load_images()
        host.ufw_like_the_post_mortem()
        n = Net(host, work / "cwd", host.settings_env(work / "cwd"))
        res = host.cli(n.cwd, n.env, "app.preflight", "--accept-new-host-key")
        assert res.returncode == 0, res.stdout + res.stderr
        res = host.cli(n.cwd, n.env, "app.deploy", "--json")
        assert res.returncode == 0, res.stdout + res.stderr
        yield n
    finally:
        host.remove()


# ------------------------------------------------------- the post-mortem of 2026-03-09
def test_with_docker_ip6tables_off_ipv6_udp_fails_and_the_check_names_the_cause(net):
    before = net.host.stats()
    with pytest.raises(p.NETWORK_ERRORS) as exc:
        net.udp6_probe(timeout=1.0)
    assert "no reply" in str(exc.value)
    assert net.host.stats()["udp6_announces_handled"] == before["udp6_announces_handled"]
    found = net.findings(net.expect(hardened=False, public_addresses=()))
    assert found["docker ipv6 rules"].status == "fail"
    assert found["docker ipv6 rules"].detail.startswith("Docker's ip6tables is off")
    assert found["published udp ports"].detail == "Docker has no kernel path for udp 6969 on IPv6 (no DNAT)"
    assert (found["firewall"].status, found["firewall"].detail) == ("fail", "ufw does not allow udp 6969 on IPv6")
    assert found["published udp ports"].status == "fail"
    # IPv4 is fine on the same host: the probe works, the check does not blame it
    assert p.udp_tracker(net.host.v4, 6969, 2.0).startswith("connect, announce")


def test_a_hand_fix_of_the_firewall_goes_through_docker_proxy_not_the_kernel(net):
    """Allowing IPv6 in ufw by hand makes the probe pass, but through docker-proxy: the
    tracker sees the proxy's address instead of the peer's (so it hands out a useless
    peer address), and a second address of the host is answered from the first."""
    net.host.sh(f"ufw allow 6969/udp >/dev/null && ip -6 addr add {net.host.v6_extra}/128 dev eth0 nodad")
    assert net.udp6_probe().startswith("connect, announce")
    assert peer_address_seen(net.host.v6) == {INNER_GATEWAY6}  # docker-proxy, not this machine
    # docker-proxy answers from a wildcard socket: the kernel picks one source address for
    # both, so one of the two addresses is answered from the other
    h = net.host
    results = p.run(hn.reply_source_probes([h.v6, h.v6_extra], [6969], 2.0, attempts=1))
    wrong = [r.detail for r in results if not r.ok]
    assert wrong in (
        [f"reply came from {h.v6_extra}, not {h.v6}: clients drop it"],
        [f"reply came from {h.v6}, not {h.v6_extra}: clients drop it"],
    ), results
    found = net.findings(net.expect(hardened=False, public_addresses=()))
    assert found["docker ipv6 rules"].status == "fail" and found["firewall"].status == "ok"
    net.host.sh(f"ufw delete allow 6969/udp >/dev/null; ip -6 addr del {net.host.v6_extra}/128 dev eth0")
    net.host.sh("ufw allow proto udp from 0.0.0.0/0 to any port 6969 >/dev/null")


def test_the_tool_s_settings_fix_it(net):
    out = net.host.harden(net.harden_env())
    steps = {line.split()[1]: line.split()[2] for line in out.splitlines() if line.startswith("STEP ")}
    assert {k: steps[k] for k in ("docker", "firewall", "sysctl", "network")} == dict.fromkeys(
        ("docker", "firewall", "sysctl", "network"), "changed"
    ), out
    net.host.restart_dockerd()  # no systemd here: this is what `systemctl restart docker` does
    wait_for_tracker(net)
    before = net.host.stats()
    assert net.udp6_probe().startswith("connect, announce")
    after = net.host.stats()
    assert after["udp6_announces_handled"] == before["udp6_announces_handled"] + 2  # IPv6 seen by the tracker
    assert peer_address_seen(net.host.v6) == {net.host.gateway6}  # ... from this machine's own address
    found = net.findings(net.expect())
    assert [f"{n}: {f.detail}" for n, f in found.items() if f.status == "fail"] == []
    assert found["docker ipv6 rules"].status == "ok" and found["published udp ports"].status == "ok"
    assert found["firewall"].detail == "ufw allows udp 6969 in IPv4 and IPv6"
    assert found["conntrack settings"].status == "ok", found["conntrack settings"]
    assert found["rps/rfs"].detail == "RPS on (eth0=3); RFS not visible in this network namespace"
    assert found["public addresses"].status == "ok" and found["re-apply hooks"].status == "ok"
    with open_target(net.settings) as ex:  # the probe group as health.check runs it
        started = time.monotonic()
        results = p.run(hn.network_probes(ex, net.expect()))
        print(f"network probe group over SSH: {time.monotonic() - started:.2f} s")
    assert [r.name for r in results if not r.ok] == [] and len(results) == len(nfind.CHECK_NAMES)
    again = net.host.harden(net.harden_env())  # idempotent: nothing changes the second time
    assert [ln for ln in again.splitlines() if ln.startswith("STEP ") and ln.split()[2] == "changed"] == [], again


def test_it_still_works_after_docker_restarts_and_a_flushed_firewall(net):
    # a firewall restart that flushes (nftables.service with `flush ruleset`) removes
    # the routing rules for the public addresses; the next docker start re-applies them
    net.host.sh(
        "ip6tables -t mangle -F TORRUST-FLOATING && iptables -t mangle -F TORRUST-FLOATING "
        "&& ip -6 rule del fwmark 0x1d2e && ip -4 rule del fwmark 0x1d2f"
    )
    assert net.findings(net.expect())["public addresses"].status == "warn"
    net.host.restart_dockerd()
    wait_for_tracker(net)
    log = net.host.sh("cat /var/log/docker-exec-start-post.log").stdout
    assert "/usr/local/sbin/torrust-harden /etc/torrust/harden.env reapply" in log
    before = net.host.stats()
    assert net.udp6_probe().startswith("connect, announce")
    assert net.host.stats()["udp6_announces_handled"] == before["udp6_announces_handled"] + 2
    found = net.findings(net.expect())
    assert found["public addresses"].status == "ok", found["public addresses"]
    assert [n for n, f in found.items() if f.status == "fail"] == []


def test_every_public_address_answers_from_itself(net):
    h = net.host
    addresses = [h.v4, h.v4_extra, h.v6, h.v6_extra]
    results = p.run(hn.reply_source_probes(addresses, [6969], 2.0))
    assert [(r.target, r.ok) for r in results] == [(f"{a} port 6969", True) for a in addresses], results
    assert [r.detail.rsplit(" ", 1)[-1] for r in results] == addresses  # "...; reply from ADDRESS"


def test_ipv6_probed_from_the_host_itself(net):
    with open_target(net.settings) as ex:
        v, probes = hn.ipv6_udp_probes(ex, net.host.v6, [6969], 3.0, 1, prefer="host", label="torrust.local")
        (result,) = p.run(probes)
    assert v.where == "host"
    assert result.ok and result.detail.endswith(f"reply from {net.host.v6} (probed from the host)"), result


def test_a_machine_without_ipv6_route_is_told_so(net):
    """In a network namespace with only loopback (a laptop without IPv6), there is no route
    to the host's IPv6 address: the vantage says the host will probe (never a silent pass)."""
    code = (
        "from tasks.health import network as hn; import sys; "
        f"v = hn.ipv6_vantage({net.host.v6!r}); print(v.where); print(v.reason)"
    )
    res = subprocess.run(
        ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$0" -c "$1"', sys.executable, code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    where, reason = res.stdout.splitlines()
    assert where == "host"
    assert reason == (
        f"this machine has no route to {net.host.v6} (Network is unreachable): probed from the host itself"
    )
    assert hn.ipv6_vantage(net.host.v6).where == "here"  # this machine reaches the bridge


# ---------------------------------------------------------------------- health.load
def test_health_load_against_the_deployed_stack(net):
    before = net.host.stats()
    with open_target(net.settings) as ex:
        rep = hl.run(
            hl.LoadParams("udp", net.host.v4, 6969, rate=300, duration=2.0, timeout=2.0),
            host=lambda: nf.read(ex, "~/.cache/torrust-deploy/load-counters"),
        )
    after = net.host.stats()
    assert rep.sent == 600
    assert rep.loss_pct <= 5.0, rep  # a busy shared machine may drop a few; the counters below are exact
    assert after["udp4_announces_handled"] - before["udp4_announces_handled"] == rep.replies
    assert after["udp4_connections_handled"] - before["udp4_connections_handled"] >= rep.replies
    # each transaction is a fresh socket: a conntrack entry each on the host (UDP timeout 10 s)
    assert rep.host_after.conntrack_count - rep.host_before.conntrack_count >= 0.8 * rep.replies, rep
    assert rep.host_after.udp_errors == rep.host_before.udp_errors
    # over IPv6 (ip6tables DNAT): the tracker counts every answered announce as IPv6
    before = net.host.stats()
    rep = hl.run(hl.LoadParams("udp", net.host.v6, 6969, rate=150, duration=2.0, timeout=2.0))
    assert rep.sent == 300 and rep.loss_pct <= 5.0, rep
    assert net.host.stats()["udp6_announces_handled"] - before["udp6_announces_handled"] == rep.replies
    # HTTP announces through the proxy
    rep = hl.run(hl.LoadParams("http", net.host.v4, 80, rate=100, duration=2.0, host="tracker.torrust.local"))
    assert (rep.sent, rep.errors) == (200, 0) and rep.replies == 200, rep


def test_a_tiny_socket_buffer_shows_loss_and_the_check_turns_red(net):
    """A server on the test host whose socket has a 2 KB receive buffer and takes 2 ms
    per datagram (the BEP 15 stand-in): health.load sees the loss and the host's UDP
    receive-buffer errors turn the network check red."""
    h = net.host
    subprocess.run(["docker", "cp", str(ROOT / "tests/standins/bep15.py"), f"{h.name}:/tmp/bep15.py"], check=True)
    h.sh("ufw allow 7777/udp >/dev/null")
    serve = (
        "import sys; sys.path.insert(0, '/tmp'); from bep15 import Responder; "
        "Responder('0.0.0.0', 7777, record=False, rcvbuf=2048, delay=0.002).serve()"
    )
    subprocess.run(["docker", "exec", "-d", h.name, "python3", "-c", serve], check=True)
    try:
        expect = net.expect()
        wait_udp(h.v4, 7777)
        net.findings(expect)  # the baseline of "since the last check"
        rep = hl.run(hl.LoadParams("udp", h.v4, 7777, rate=2000, duration=1.0, timeout=1.0))
        assert rep.sent == 2000 and rep.loss_pct > 10, rep
        found = net.findings(expect)["udp errors"]
        assert found.status == "fail", found
        assert "receive-buffer" in found.detail and found.fix.endswith("#udp-errors")
    finally:
        h.sh("pkill -f 'from bep1[5] import' ; ufw delete allow 7777/udp >/dev/null", check=False)


# --------------------------------------------------------------------------- helpers
def peer_address_seen(address: str) -> set[str]:
    """The address the tracker recorded for a peer announcing to `address`: a second peer
    on the same torrent gets it in its peer list."""
    info_hash = os.urandom(20)
    with UDPTrackerClient(address, 6969, timeout=3.0) as first:
        first.announce(info_hash, b"-TD0100-" + os.urandom(6).hex().encode(), 6881, left=10)
    with UDPTrackerClient(address, 6969, timeout=3.0) as second:
        reply = second.announce(info_hash, b"-TD0100-" + os.urandom(6).hex().encode(), 6882, left=10)
    return {ip for ip, port in reply.peers if port == 6881}


def wait_for_tracker(net: Net, seconds: float = 60) -> None:
    """After a dockerd restart: until the tracker answers over IPv4 (polling, no sleep)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            p.udp_tracker(net.host.v4, 6969, 1.0)
            net.host.stats()
            return
        except (*p.NETWORK_ERRORS, AssertionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)  # the poll's interval


def wait_udp(address: str, port: int, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            hn.reply_source(address, port, 0.5)
            return
        except p.ProbeFailed:
            if time.monotonic() > deadline:
                raise
