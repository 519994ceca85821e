"""tasks/facts/network.py: the parser on recorded outputs of network-facts.sh (see
recorded/network/README.md for how each was made) and the findings it leads to."""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tasks.commands import network as cmd
from tasks.errors import ExitCode, MalformedFact
from tasks.facts import network as nf
from tasks.health import network_findings as nfind

RECORDED = Path(__file__).parent / "recorded" / "network"
EXPECT = nfind.NetworkExpectations(
    udp_ports=(6969,), ipv6=True, conntrack_max=262144, public_addresses=("fd42:7e57:77::11", "172.31.77.11")
)


def facts(name: str) -> nf.NetworkFacts:
    return nf.parse((RECORDED / f"{name}.txt").read_text())


def by_name(f: nf.NetworkFacts, expect: nfind.NetworkExpectations = EXPECT) -> dict[str, nfind.Finding]:
    return {x.name: x for x in nfind.evaluate(f, expect)}


# ------------------------------------------------------------------------------ parsing
def test_healthy_host_every_section():
    f = facts("healthy")
    assert f.ncpu == 2
    assert f.docker.version == "20.10.24+dfsg1" and f.docker.major == 20
    assert f.docker.config["ip6tables"] is True and f.docker.ip6tables
    for fam, floating in ((4, "172.31.77.11"), (6, "fd42:7e57:77::11")):
        rs = f.rules[fam]
        assert rs.docker_nat and rs.dnat_udp == {6969} and rs.forward_udp == {6969}
        assert rs.ufw_udp == ((6969, 6969),)
        assert rs.connmarks == {floating}
    assert f.ufw_active is True
    assert f.nft.input_drop == {4, 6}  # ufw's default deny, seen through iptables-nft's tables
    c = f.conntrack
    assert (c.max, c.udp_timeout, c.udp_timeout_stream, c.loaded) == (262144, 10, 15, True)
    assert c.preload == ("/etc/modules-load.d/torrust-conntrack.conf",)
    assert f.rx_queues == (nf.RxQueue("eth0", "rx-0", 3, 32768),)
    assert f.rps_sock_flow_entries is None  # a network namespace does not show it
    assert ("eth0", "fd42:7e57:77::11") in f.addresses and ("eth0", "172.31.77.11") in f.addresses
    assert f.fwmark_tables == ((7470, "7470"), (7471, "7471"))
    assert f.table_routes == (
        "table 7470 default via fd42:7e57:77::1 dev eth0 metric 1024 pref medium",
        "table 7471 default via 172.31.77.1 dev eth0",
    )
    assert set(nf.HOOK_FILES) <= set(f.hooks)
    assert f.current.boot == f.previous.boot and f.current.now > f.previous.now
    assert set(f.current.udp) == {4, 6} and len(f.current.net_rx) == 2
    assert f.problems == ()


def test_healthy_host_every_finding_ok():
    found = by_name(facts("healthy"))
    assert list(found) == list(nfind.CHECK_NAMES)
    assert {n: x.status for n, x in found.items()} == dict.fromkeys(nfind.CHECK_NAMES, "ok")
    assert found["published udp ports"].detail == "udp 6969: DNAT and forward rules in IPv4 and IPv6"
    assert found["firewall"].detail == "ufw allows udp 6969 in IPv4 and IPv6"
    assert found["conntrack fill"].detail.endswith("of 262,144 entries (0%)")
    assert found["rps/rfs"].detail == "RPS on (eth0=3); RFS not visible in this network namespace"
    assert found["public addresses"].detail == "2 held, each marked for reply routing (2 rules)"


def test_the_ipv6_post_mortem_is_named_with_its_cause_and_fix():
    found = by_name(facts("missing-rules"))
    docker = found["docker ipv6 rules"]
    assert docker.status == "fail"
    assert docker.detail == (
        'Docker\'s ip6tables is off: daemon.json lacks "ip6tables": true '
        '(Engine 20.10.24+dfsg1 also needs "experimental": true)'
    )
    assert "post-mortem 2026-03-09" in docker.meaning
    assert docker.fix.endswith("docs/guides/network.md#docker-and-ipv6")
    assert found["published udp ports"].status == "fail"
    assert found["published udp ports"].detail == "Docker has no kernel path for udp 6969 on IPv6 (no DNAT)"
    assert found["firewall"].status == "fail"
    assert found["firewall"].detail == "ufw does not allow udp 6969 on IPv6"
    # this host never ran torrust-harden: its limits are not held to the hardening's, and the
    # hooks finding says to run infra.bootstrap (the demo's host, before the fix)
    assert found["conntrack settings"].detail.startswith("host not hardened by torrust-harden")
    assert found["rps/rfs"].detail == "host not hardened by torrust-harden: not checked"
    hooks = found["re-apply hooks"]
    assert hooks.status == "warn" and hooks.detail.startswith("torrust-harden never ran on this host")
    assert hooks.fix.startswith("run infra.bootstrap")
    # held to the hardening once it ran (the hooks' files present), the same host warns about its limits
    hardened = dataclasses.replace(facts("missing-rules"), hooks=nfind.HARDENING_FILES)
    again = by_name(hardened)
    assert again["conntrack settings"].status == "warn"
    assert again["conntrack settings"].detail.startswith(
        "nf_conntrack_udp_timeout is 30 s, configured 10 s; nf_conntrack_udp_timeout_stream is 120 s, configured 15 s"
    )
    assert again["rps/rfs"].detail == "RPS off on eth0 rx-0"
    assert found["public addresses"].status == "fail"
    assert found["public addresses"].detail == (
        "not on any interface: fd42:7e57:77::11, 172.31.77.11; no fwmark routing rule"
    )


def test_with_ipv6_off_the_same_host_passes_the_ipv4_checks():
    expect = dataclasses.replace(EXPECT, ipv6=False, public_addresses=())
    found = by_name(facts("missing-rules"), expect)
    assert found["docker ipv6 rules"].status == "ok"
    assert found["published udp ports"].detail == "udp 6969: DNAT and forward rules in IPv4"
    assert found["firewall"].detail == "ufw allows udp 6969 in IPv4"


def test_a_host_not_hardened_is_not_held_to_the_hardening_s_settings():
    found = by_name(facts("missing-rules"), dataclasses.replace(EXPECT, hardened=False, firewall=False))
    for name in ("conntrack settings", "rps/rfs", "re-apply hooks", "firewall"):
        assert found[name].status == "ok" and "not" in found[name].detail, found[name]
    assert found["docker ipv6 rules"].status == "fail"  # IPv6 is still wanted


def test_conntrack_fill_warns_at_70_and_fails_at_90_percent():
    near = by_name(facts("near-full"))["conntrack fill"]
    assert (near.status, near.detail) == ("warn", "190,000 of 262,144 entries (72%) (warn at 70%, fail at 90%)")
    full = by_name(facts("full"))["conntrack fill"]
    assert (full.status, full.detail) == ("fail", "250,000 of 262,144 entries (95%) (warn at 70%, fail at 90%)")
    assert full.fix.endswith("#conntrack") and "health.load" in full.fix


def test_udp_receive_errors_since_the_last_check_fail():
    found = by_name(facts("udp-errors"))["udp errors"]
    assert found.status == "fail"
    assert re.fullmatch(
        r"since the last check \d+ s ago: 4,998 UDP errors \(4,998 receive-buffer\) in 4,998 datagrams \(100.00%\)",
        found.detail,
    ), found.detail
    assert found.fix.endswith("#udp-errors")


def test_first_check_counts_since_boot_and_never_fails_on_history():
    f = facts("first-check")
    assert f.previous is None
    found = by_name(f)["udp errors"]
    assert found.detail.startswith("since boot (no earlier check): ")
    old = dataclasses.replace(f.current, udp={4: nf.UdpCounters(1000, 500, 500, 0)})
    found = by_name(dataclasses.replace(f, current=old))["udp errors"]
    assert found.status == "warn"  # errors since boot: history, not a verdict on now
    assert "500 UDP errors (500 receive-buffer) in 1,500 datagrams" in found.detail


def test_counters_of_another_boot_are_not_compared():
    f = facts("udp-errors")
    other = dataclasses.replace(f.previous, boot="another-boot")
    assert by_name(dataclasses.replace(f, previous=other))["udp errors"].detail.startswith("since boot")


def test_nftables_host_without_ufw():
    f = facts("nftables")
    assert f.ufw_active is False
    assert f.nft.input_drop == {4, 6}
    assert f.nft.udp_accept == {4: ((6868, 6868), (6969, 6969)), 6: ((6868, 6868), (6969, 6969))}
    assert by_name(f)["firewall"].detail == "nftables allows udp 6969 in IPv4 and IPv6"
    found = by_name(f, dataclasses.replace(EXPECT, udp_ports=(6969, 7000)))["firewall"]
    assert (found.status, found.detail) == ("fail", "nftables does not allow udp 7000 on IPv4, udp 7000 on IPv6")


def test_no_firewall_at_all_warns():
    f = dataclasses.replace(facts("nftables"), nft=nf.Nftables(frozenset(), {}))
    found = by_name(f)["firewall"]
    assert found.status == "warn" and found.detail.startswith("no host firewall filters incoming traffic (ufw inactive")
    assert by_name(f, dataclasses.replace(EXPECT, firewall=False))["firewall"].status == "ok"


def test_conntrack_max_below_the_configured_value_fails():
    found = by_name(facts("healthy"), dataclasses.replace(EXPECT, conntrack_max=1048576))["conntrack settings"]
    assert (found.status, found.detail) == ("fail", "nf_conntrack_max is 262,144, configured 1,048,576")


def test_a_declared_address_the_host_does_not_hold_fails():
    expect = dataclasses.replace(EXPECT, public_addresses=("fd42:7e57:77::11", "203.0.113.7"))
    found = by_name(facts("healthy"), expect)["public addresses"]
    assert (found.status, found.detail) == ("fail", "not on any interface: 203.0.113.7")
    assert found.fix.endswith("#several-public-addresses-floating-ips")


def test_softirqs_on_one_cpu_at_a_high_rate_warn():
    f = facts("healthy")
    prev = dataclasses.replace(f.previous, net_rx=(1000, 1000), now=1000, boot="b")
    cur = dataclasses.replace(f.current, net_rx=(96000, 2000), now=1010, boot="b")
    found = by_name(dataclasses.replace(f, previous=prev, current=cur))["softirq spread"]
    assert found.status == "warn"
    assert found.detail == (
        "since the last check 10 s ago: CPU0 handled 99% of 96,000 network receive softirqs (9,600/s)"
    )
    slow = dataclasses.replace(cur, now=1200)  # the same share at 505/s: not a problem yet
    assert by_name(dataclasses.replace(f, previous=prev, current=slow))["softirq spread"].status == "ok"


def test_docker_ip6tables_needs_experimental_before_engine_27():
    assert nf.DockerDaemon({"ip6tables": True}, None, "27.3.1").ip6tables
    assert not nf.DockerDaemon({"ip6tables": True}, None, "26.1.4").ip6tables
    assert nf.DockerDaemon({"ip6tables": True, "experimental": True}, None, "20.10.24").ip6tables
    assert not nf.DockerDaemon({"ip6tables": "true"}, None, "27.0.0").ip6tables  # a string is not true
    assert not nf.DockerDaemon(None, None, None).ip6tables


def test_hostile_output_is_parsed_without_trusting_it():
    f = facts("hostile")
    assert f.ncpu == 1  # "lots" is not a number
    assert f.docker.error == "not JSON (Expecting ',' delimiter, line 2)" and f.docker.version == "27.3.1"
    rs = f.rules[4]
    assert rs.dnat_udp == {6969}  # the tcp rule is not a UDP port; the forged section is not a section
    assert rs.ufw_udp == ((6000, 7000), (80, 80))  # 'notaport' skipped, multiport ranges read
    assert rs.connmarks == frozenset()  # the rule with an unbalanced quote is skipped
    assert f.rules[6] is None
    assert "ip6tables-save: sudo: a password is required" in f.problems
    assert f.conntrack.count is None and f.conntrack.udp_timeout is None and f.conntrack.max == 262144
    assert f.current is None and f.previous is None
    assert f.rx_queues[0] == nf.RxQueue("eth0", "rx-0", None, None)
    assert f.addresses == (("eth0", "2001:db8::5"),)  # 999.1.1.1 is not an address
    assert f.fwmark_tables == ((7471, "7471"),)
    found = by_name(f)
    assert found["docker ipv6 rules"].detail == "/etc/docker/daemon.json is not JSON (Expecting ',' delimiter, line 2)"
    assert found["firewall"].status == "warn"
    assert found["firewall"].detail == (
        "the ufw rules of IPv6 could not be read: ip6tables-save: sudo: a password is required"
    )
    assert found["udp errors"].detail == "UDP counters not readable (/proc/net/snmp)"


@pytest.mark.parametrize(
    "text", ["", "\n\n", "sudo: a password is required\n", "@@torrust-network-facts 2 abcdef0123\n"]
)
def test_output_that_is_not_the_script_s_is_a_named_error(text):
    with pytest.raises(MalformedFact) as exc:
        nf.parse(text)
    assert "expected the header '@@torrust-network-facts 1 TOKEN'" in exc.value.message
    assert exc.value.code == ExitCode.UNTRUSTED


def test_empty_recording_is_malformed():
    with pytest.raises(MalformedFact):
        facts("empty")


def test_port_ranges_and_nft_sets():
    assert nf._port_ranges("6969") == ((6969, 6969),)
    assert nf._port_ranges("6000:7000,80,x,9:") == ((6000, 7000), (80, 80))
    nft = nf.parse_nft(
        "table ip6 f {\n chain in {\n  type filter hook input priority 0; policy drop;\n"
        "  udp dport 6000-6999 accept\n  udp dport 7000 drop\n }\n chain out {\n  udp dport 1 accept\n }\n}\n"
    )
    assert nft.input_drop == {6} and nft.udp_accept == {4: (), 6: ((6000, 6999),)}


def test_finding_as_dict():
    f = nfind.Finding("x", "warn", "d", "m", "fix")
    assert f.as_dict() == {"name": "x", "status": "warn", "detail": "d", "meaning": "m", "fix": "fix"}
    assert f.ok and not nfind.Finding("x", "fail", "d").ok


def test_every_fix_points_at_a_heading_of_the_guide():
    guide = (Path(__file__).parents[3] / nfind.GUIDE).read_text()
    slugs = {
        re.sub(r"[^a-z0-9 -]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in guide.splitlines()
        if line.startswith("#")
    }
    cited = set()
    for name in ("missing-rules", "hostile", "full", "near-full"):
        for expect in (EXPECT, dataclasses.replace(EXPECT, conntrack_max=10**7)):
            cited |= {x.fix.rsplit("#", 1)[1] for x in nfind.evaluate(facts(name), expect) if "#" in x.fix}
    harden = (cmd.SCRIPTS.parents[2] / "infrastructure/cloud-init/harden.sh").read_text()
    cited |= set(re.findall(r"network\.md#([a-z0-9-]+)", harden))
    assert cited >= {"docker-and-ipv6", "conntrack", "udp-errors", "several-public-addresses-floating-ips"}
    assert cited <= slugs, cited - slugs


# ----------------------------------------------------------------------- the commands
def test_commands():
    script = (cmd.SCRIPTS / "network-facts.sh").read_text()
    assert cmd.facts() == ["sh", "-c", script, "network-facts", ""]
    assert cmd.facts("~/x")[-2:] == ["network-facts", "~/x"]
    probe = cmd.udp_probe("2001:db8::1", 6969, 5)
    assert probe[:2] == ["python3", "-c"] and probe[3:] == ["2001:db8::1", "6969", "5"]
    assert probe[2] == cmd.UDP_PROBE_SCRIPT.read_text() and probe[2].startswith("#!/usr/bin/env python3\n")
    assert cmd.reapply() == ["sudo", "-n", "/usr/local/sbin/torrust-harden", "/etc/torrust/harden.env", "reapply"]


def test_the_facts_script_runs_here_and_parses():
    """The real script on this machine (no Docker needed): whatever this host has, the
    frame and the counters parse, and a second run sees the first one's counters."""
    import tempfile

    from tasks.runner.executor import local

    with tempfile.TemporaryDirectory() as d:
        first = nf.read(local(), f"{d}/counters")
        second = nf.read(local(), f"{d}/counters")
    assert first.current is not None and first.previous is None
    assert second.previous is not None and second.previous.boot == second.current.boot
    assert second.ncpu >= 1


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed")
def test_scripts_pass_shellcheck():
    scripts = sorted(str(p) for p in cmd.SCRIPTS.glob("*.sh"))
    assert scripts
    res = subprocess.run(["shellcheck", *scripts], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout


def test_a_port_published_to_another_container_port_is_followed_through_its_dnat():
    """The proxy's HTTP/3 port: host 59393/udp DNATed to the container's 443/udp, whose
    filter rule names 443 (not 59393). Its kernel path is complete."""
    text = (RECORDED / "healthy.txt").read_text()
    dnat = "-A DOCKER ! -i br-b85c32f2505c -p udp -m udp --dport 59393 -j DNAT --to-destination 172.18.0.3:443\n"
    accept = "-A DOCKER -d 172.18.0.3/32 ! -i br-b85c32f2505c -o br-b85c32f2505c -p udp -m udp --dport 443 -j ACCEPT\n"
    first_dnat = text.index("-A DOCKER ! -i br-b85c32f2505c -p udp -m udp --dport 6969 -j DNAT")
    text = text[:first_dnat] + dnat + text[first_dnat:]
    first_accept = text.index("-A DOCKER -d 172.18.0.2/32 ! -i br-b85c32f2505c -o br-b85c32f2505c -p udp")
    with_accept = text[:first_accept] + accept + text[first_accept:]
    four = dataclasses.replace(EXPECT, udp_ports=(6969, 59393), ipv6=False)
    assert by_name(nf.parse(with_accept), four)["published udp ports"].status == "ok"
    found = by_name(nf.parse(text), four)["published udp ports"]  # the container port's accept is missing
    assert found.status == "fail" and "udp 59393 on IPv4 (no forward accept)" in found.detail
