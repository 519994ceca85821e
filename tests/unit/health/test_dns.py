"""tasks/health/dns.py: the DNS preflight's judgments, on recorded answers."""

from __future__ import annotations

import pytest

from tasks.config.settings import load
from tasks.health import dns
from tests.unit.facts.recorded import recorded


def lookup_from(name: str) -> dns.Lookup:
    """A lookup answering from a recorded file (see recorded/dns/README)."""
    table: dict[tuple[str, str], dns.Answer] = {}
    for line in recorded(f"dns/{name}").splitlines():
        owner, rdtype, *rest = line.split(None, 2)
        if rdtype == "NXDOMAIN":
            for t in ("A", "AAAA", "CAA", "TXT"):
                table[(owner, t)] = dns.Answer(missing="nxdomain")
        elif rdtype == "ERROR":
            table[(owner, "AAAA")] = dns.Answer(missing=f"error: {rest[0]}")
        else:
            old = table.get((owner, rdtype), dns.Answer())
            table[(owner, rdtype)] = dns.Answer((*old.records, rest[0]))
    return lambda n, t: table.get((n, t), dns.Answer())


def settings(workdir, env="local", **extra):
    base = {"TORRUST_TLS": "true", "TORRUST_DOMAIN": "acme.example", "TORRUST_ACME_CAA": "pebble.acme.example"}
    return load(env, root=workdir, environ={**base, **extra})


def refused(host, port, challenge, timeout):
    return dns.Finding(f"port {port}/tcp ({challenge})", host, dns.WARN, "refused")


def test_every_record_points_here_and_caa_allows_the_ca(workdir):
    found = dns.preflight(settings(workdir), lookup_from("normal.txt"), connect=refused)
    by = {(f.check, f.name): f for f in found}
    assert by[("A", "tracker.acme.example")].status == dns.OK
    assert by[("AAAA", "api.acme.example")].detail == "::1"
    assert by[("CAA", "tracker.acme.example")].detail == "CAA at tracker.acme.example allows pebble.acme.example"
    assert by[("CAA", "api.acme.example")].detail == "no CAA records: any CA may issue"
    assert [f.check for f in found if f.check.startswith("port")] == ["port 80/tcp (http-01)"] * 2 + [
        "port 443/tcp (tls-alpn-01)"
    ] * 2
    assert dns.problems(found, ("http-01", "tls-alpn-01")) == []


def test_stale_aaaa_missing_aaaa_and_a_caa_for_another_ca(workdir):
    s = load(
        "prod",
        root=workdir,
        environ={
            "TORRUST_DOMAIN": "torrust-demo.net",
            "TORRUST_ACME_EMAIL": "ops@torrust-demo.net",
            "TORRUST_DEPLOY_TARGET": "ssh",
            "TORRUST_PROVIDER": "existing",
            "TORRUST_SSH_HOST": "203.0.113.10",
            "TORRUST_PROBE_IPV6": "2001:db8::10",
            "TORRUST_DNS_BEP34": "true",
            "TORRUST_TRACKER_ADMIN_TOKEN": "Zx8-Qm3Rt6Vp1Ln9Kc4Hw7Jb2Fd5Gs0Y",
            "TORRUST_MYSQL_PASSWORD": "Mv6-Ts1Qa8Zk3Wp5Xr2Yb9Nc4Hd7Fj0L",
            "TORRUST_MYSQL_ROOT_PASSWORD": "Rr3-Jy8Pn5Vb2Kc9Wz6Xq1Lm4Gt7Hs0D",
            "TORRUST_TLS": "true",
        },
    )
    found = dns.preflight(s, lookup_from("stale-aaaa-and-caa-above.txt"), connect=refused)
    by = {(f.check, f.name): f for f in found}
    stale = by[("AAAA", "tracker.torrust-demo.net")]
    assert stale.status == dns.FAIL and stale.detail.startswith("points at 2001:db8::99, but this host is 2001:db8::10")
    assert by[("AAAA", "api.torrust-demo.net")].status == dns.WARN  # no AAAA: IPv6 clients cannot connect
    caa = by[("CAA", "api.torrust-demo.net")]
    assert caa.status == dns.FAIL and caa.detail.startswith(
        "CAA at torrust-demo.net allows sectigo.com, not letsencrypt.org"
    )
    assert by[("BEP 34", "torrust-demo.net")].detail.startswith("the record says DENY")
    assert len(dns.problems(found, s.acme_challenges)) == 4  # stale AAAA, CAA for both names, BEP 34


def test_hostile_and_broken_answers_are_named(workdir):
    s = settings(workdir, TORRUST_DOMAIN="torrust-demo.net", TORRUST_DNS_BEP34="true")
    found = dns.preflight(s, lookup_from("hostile.txt"), connect=refused)
    by = {(f.check, f.name): f for f in found}
    assert by[("A", "tracker.torrust-demo.net")].detail.startswith("points at 203.0.113.10, but this host is 127.0.0.1")
    assert by[("A", "api.torrust-demo.net")].detail.startswith("the name does not exist (NXDOMAIN)")
    assert by[("CAA", "tracker.torrust-demo.net")].detail.startswith(
        "CAA at tracker.torrust-demo.net allows no CA at all"
    )
    assert by[("BEP 34", "torrust-demo.net")].detail.startswith('"BITTORRENT UDP:6969" lacks TCP:443')


@pytest.mark.parametrize(
    ("blocked", "failures"),
    [((), 0), (("http-01",), 0), (("http-01", "tls-alpn-01"), 2)],
)
def test_a_challenge_port_fails_the_preflight_only_when_every_challenge_is_blocked(workdir, blocked, failures):
    def connect(host, port, challenge, timeout):
        status = dns.FAIL if challenge in blocked else dns.WARN
        return dns.Finding(f"port {port}/tcp ({challenge})", host, status, "no answer")

    found = dns.preflight(settings(workdir, TORRUST_PROBE_IPV6="none"), lookup_from("normal.txt"), connect=connect)
    found = [f for f in found if f.check != "AAAA"]
    assert len(dns.problems(found, ("http-01", "tls-alpn-01"))) == failures


def test_nothing_to_check_without_tls_or_with_internal_names_only(workdir):
    assert dns.preflight(load("local", root=workdir, environ={}), lookup_from("normal.txt")) == []
    tls_local = load("local", root=workdir, environ={"TORRUST_TLS": "true"})  # torrust.local: internal CA
    assert dns.preflight(tls_local, lookup_from("normal.txt")) == []


def test_port_finding_tells_refused_from_dropped():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: refused
        assert dns.port_finding("127.0.0.1", port, "http-01", 1.0).status == dns.WARN
