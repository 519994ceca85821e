"""What a round probes: every address of every family, configured addresses winning,
loopback for the local target, a dns probe per name; the TLS probe records the expiry."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tasks.health import probes as p
from tasks.watch.targets import TargetSpec, getaddrinfo_resolver, resolve, round_probes
from tests.watchservers import make_ca_and_leaf


class StandInResolver:
    """A STAND-IN for DNS (this machine's resolver cannot be given records): a fixed table,
    strict: a name it was not given is an error in the test."""

    def __init__(self, table: dict[tuple[str, int], list[str]]):
        self.table = table
        self.asked: list[tuple[str, int]] = []

    def __call__(self, name: str, family: int) -> list[str]:
        self.asked.append((name, family))
        if not any(n == name for n, _f in self.table):
            raise AssertionError(f"unexpected lookup of {name}")
        return self.table.get((name, family), [])


def spec(**kw) -> TargetSpec:
    base = {
        "env": "prod",
        "domain": "tracker.example.org",
        "udp_ports": (6969, 6868),
        "http_names": ("tracker.example.org",),
        "api_name": "api.example.org",
        "tls": False,
        "port": 80,
        "public_names": ("tracker.example.org", "api.example.org"),
    }
    return TargetSpec(**{**base, **kw})


def shape(probes) -> list[tuple[str, str, int, str]]:
    return sorted((w.kind, w.target, w.family, w.address) for w in probes)


def test_the_local_target_probes_loopback_on_both_families_without_secrets_or_dns():
    found = shape(round_probes(spec(local=True), 1, 1, resolver=StandInResolver({})))
    assert found == sorted(
        [
            ("udp", f"udp://tracker.example.org:{port}", f, a)
            for port in (6969, 6868)
            for f, a in ((4, "127.0.0.1"), (6, "::1"))
        ]
        + [("http", "tracker.example.org", f, a) for f, a in ((4, "127.0.0.1"), (6, "::1"))]
        + [("api", "api.example.org", f, a) for f, a in ((4, "127.0.0.1"), (6, "::1"))]
    )


def test_every_resolved_address_is_probed_per_name():
    table = {
        ("tracker.example.org", 4): ["203.0.113.10", "203.0.113.11"],
        ("tracker.example.org", 6): ["2001:db8::10"],
        ("api.example.org", 4): ["203.0.113.20"],
        ("api.example.org", 6): [],
    }
    resolver = StandInResolver(table)
    probes = round_probes(spec(), 1, 1, resolver=resolver)
    found = shape(probes)
    udp = [x for x in found if x[0] == "udp"]
    assert len(udp) == 6  # 2 ports x 3 addresses
    assert [x for x in found if x[0] == "http"] == [
        ("http", "tracker.example.org", 4, "203.0.113.10"),
        ("http", "tracker.example.org", 4, "203.0.113.11"),
        ("http", "tracker.example.org", 6, "2001:db8::10"),
    ]
    assert [x for x in found if x[0] == "api"] == [("api", "api.example.org", 4, "203.0.113.20")]
    assert [x for x in found if x[0] == "dns"] == [
        ("dns", "api.example.org", 0, ""),
        ("dns", "tracker.example.org", 0, ""),
    ]
    assert sorted(set(resolver.asked)) == sorted(table)  # each name and family once
    dns = {w.target: w.probe.check() for w in probes if w.kind == "dns"}
    assert dns["tracker.example.org"] == "A 203.0.113.10, 203.0.113.11; AAAA 2001:db8::10"


def test_configured_addresses_win_and_none_drops_a_family():
    found = shape(round_probes(spec(probe_ipv4="198.51.100.7", probe_ipv6="none"), 1, 1, StandInResolver({})))
    assert {x[2:] for x in found} == {(4, "198.51.100.7")}
    assert not [x for x in found if x[0] == "dns"]


def test_a_name_that_does_not_resolve_fails_its_dns_probe_and_falls_back_to_the_ssh_host():
    resolver = StandInResolver({("tracker.example.org", 4): [], ("api.example.org", 4): ["203.0.113.20"]})
    probes = round_probes(spec(ssh_host="198.51.100.9"), 1, 1, resolver=resolver)
    http = [(w.family, w.address) for w in probes if w.kind == "http"]
    assert http == [(4, "198.51.100.9")]
    dns = next(w for w in probes if w.kind == "dns" and w.target == "tracker.example.org")
    with pytest.raises(p.ProbeFailed, match=r"tracker.example.org does not resolve \(no A or AAAA record\)"):
        dns.probe.check()


def test_a_hung_resolver_is_bounded():
    released = threading.Event()

    def hung(name, family):
        released.wait(5)  # hangs until the test is done (its threads would hold up the interpreter's exit)
        return ["203.0.113.1"]

    started = time.monotonic()
    try:
        found = resolve(spec(), ["tracker.example.org"], hung, timeout=0.1)
        assert time.monotonic() - started < 5
    finally:
        released.set()
    assert found == {"tracker.example.org": {4: [], 6: []}}


def test_the_real_resolver_reads_this_machines_hosts_file():
    assert getaddrinfo_resolver("localhost", 4) == ["127.0.0.1"]
    assert getaddrinfo_resolver("no-such-name.invalid", 4) == []


def test_the_spec_round_trips_through_json():
    import json

    s = spec(probe_ipv4="none", extra_ca_pem="-----BEGIN CERTIFICATE-----")
    assert TargetSpec.from_dict(json.loads(json.dumps(s.as_dict()))) == s


@pytest.fixture
def tls_server(tmp_path: Path):
    """A real TLS server on loopback presenting a certificate that expires in 5 days."""
    ca, leaf, key = make_ca_and_leaf(tmp_path / "pki", names=("tracker.example.org",), days=5)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(leaf), str(key))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    stop = threading.Event()

    def serve():
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except TimeoutError:
                continue
            try:
                with ctx.wrap_socket(conn, server_side=True):
                    pass
            except (ssl.SSLError, OSError):
                pass

    th = threading.Thread(target=serve, daemon=True)
    th.start()
    yield sock.getsockname()[1], ca.read_text(), leaf
    stop.set()
    socket.create_connection(sock.getsockname()).close()  # ends the wait in accept now
    th.join()
    sock.close()


def test_the_tls_probe_records_the_expiry_and_fails_when_renewal_is_overdue(tls_server):
    from cryptography import x509

    port, ca_pem, leaf = tls_server
    s = spec(
        tls=True,
        port=port,
        probe_ipv4="127.0.0.1",
        probe_ipv6="none",
        public_names=("tracker.example.org",),
        extra_ca_pem=ca_pem,
    )
    (tls,) = [w for w in round_probes(s, 2, 1, StandInResolver({})) if w.kind == "tls"]
    with pytest.raises(p.ProbeFailed, match="renewal should have happened by now"):
        tls.probe.check()
    expected = x509.load_pem_x509_certificate(leaf.read_bytes()).not_valid_after_utc
    assert datetime.fromtimestamp(tls.cell["value"], UTC) == expected
