"""Health probes against broken servers: every fault is a failed probe with a specific one-line detail.

Fault servers run on 127.0.0.1 in threads (tests/integration/faults.py). Each probe runs
through `probes._attempt`, the path `run()` takes, so the contract "a probe never raises,
it returns a failed result with a one-line detail" is what is checked. The last test puts
the tracker stand-in behind a forwarding proxy that drops X-Forwarded-For.
"""

from __future__ import annotations

import datetime as dt
import json
import socket
import ssl
import struct
import time
import urllib.parse
import uuid

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from cryptography.x509.oid import NameOID

from tasks.config import trackers
from tasks.health import bencode, probes
from tasks.health.probes import Probe, Reach
from tasks.health.udp import ANNOUNCE, CONNECT, ERROR
from tests.integration.conftest import ADMIN_TOKEN, docker, free_port
from tests.integration.faults import ForwardingProxy, HTTPServer, UDPResponder

pytestmark = pytest.mark.integration

NAME = "tracker.torrust.test"
CA_NAME = "torrust-test fault CA"
TOKEN = "Zx8-Qp3Lm7Vb2Nc9Kd4Rt6Wy1Hs5Jf0A"  # sent to the fault API; must never appear in a detail


def attempt(check, *, timeout: float = 2.0, attempts: int = 2) -> probes.ProbeResult:
    result = probes._attempt(Probe("fault", "127.0.0.1", 4, check, timeout, attempts))
    assert "\n" not in result.detail and "Traceback" not in result.detail, result.detail
    return result


def failed(check, *, timeout: float = 2.0, attempts: int = 2) -> str:
    result = attempt(check, timeout=timeout, attempts=attempts)
    assert result.ok is False, result
    return result.detail


@pytest.fixture
def serve(request):
    """Start a fault server; it is closed when the test ends, whatever happens."""

    def start(server):
        request.addfinalizer(server.close)
        return server

    return start


# ------------------------------------------------------------------------------ UDP
def _header(packet: bytes) -> tuple[int, int]:
    """(action, transaction id) of a BEP 15 request."""
    return struct.unpack("!iI", packet[8:16])


def _connect_reply(tid: int) -> bytes:
    return struct.pack("!iIq", CONNECT, tid, 0x1234_5678_9ABC)


def _wrong_tid(packet: bytes) -> bytes:
    _action, tid = _header(packet)
    return _connect_reply((tid + 1) % 2**32)


def _tracker_error(packet: bytes) -> bytes:
    _action, tid = _header(packet)
    return struct.pack("!iI", ERROR, tid) + b"info-hash not authorized here"


def _six_bytes(packet: bytes) -> bytes:
    return b"\x00\x00\x00\x00\x00\x01"


def _truncated_announce(packet: bytes) -> bytes:
    action, tid = _header(packet)
    if action == CONNECT:
        return _connect_reply(tid)
    return struct.pack("!iIi", ANNOUNCE, tid, 120)  # 12 bytes: no leechers, seeders


def test_udp_no_reply_fails_within_the_attempt_budget(serve):
    server = serve(UDPResponder(lambda packet: None))
    timeout, attempts = 0.5, 2
    started = time.monotonic()
    result = attempt(lambda: probes.udp_tracker("127.0.0.1", server.port, timeout), timeout=timeout, attempts=attempts)
    elapsed = time.monotonic() - started
    assert result.ok is False
    assert "no reply" in result.detail or "timed out" in result.detail, result.detail
    assert len(server.received) == attempts  # one connect per attempt, each unanswered
    assert timeout * attempts <= elapsed, elapsed  # each attempt waited its timeout (benchmarks measure speed)


@pytest.mark.parametrize(
    ("respond", "expected"),
    [
        (_wrong_tid, ["transaction id mismatch"]),
        (_tracker_error, ["tracker error", "info-hash not authorized here"]),
        (_six_bytes, ["truncated"]),
        (_truncated_announce, ["truncated", "expected at least 20"]),
    ],
    ids=["wrong-transaction-id", "error-action", "6-byte-packet", "truncated-announce"],
)
def test_udp_fault_is_named(serve, respond, expected):
    server = serve(UDPResponder(respond))
    detail = failed(lambda: probes.udp_tracker("127.0.0.1", server.port, 1.0))
    for text in expected:
        assert text in detail, detail


def test_udp_truncated_announce_comes_after_a_good_connect(serve):
    server = serve(UDPResponder(_truncated_announce))
    failed(lambda: probes.udp_tracker("127.0.0.1", server.port, 1.0), attempts=1)
    assert [_header(p)[0] for p in server.received] == [CONNECT, ANNOUNCE]


# ----------------------------------------------------------------------------- HTTP
def _plain(reach_port: int) -> Reach:
    return Reach(addresses={4: "127.0.0.1"}, tls=False, port=reach_port)


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (200, b"d8:intervali120e5:peers0:", ["malformed bencoded reply"]),
        (200, b"d14:failure reason20:info_hash is blockede", ["tracker said:", "info_hash is blocked"]),
        (500, b"upstream exploded", ["HTTP 500", "upstream exploded"]),
        (200, b"d8:completei0e5:peers0:e", ["no interval"]),
    ],
    ids=["malformed-bencode", "failure-reason", "http-500", "no-interval"],
)
def test_http_tracker_fault_is_named(serve, status, body, expected):
    server = serve(HTTPServer(lambda path, headers: (status, body, "text/plain")))
    detail = failed(lambda: probes.http_tracker(_plain(server.port), 4, NAME, 2.0))
    for text in expected:
        assert text in detail, detail
    path, headers = server.requests[0]
    assert path.startswith("/announce?") and headers["host"] == f"{NAME}:{server.port}"


# ------------------------------------------------------------------------------ API
def test_api_health_error_status_fails(serve):
    server = serve(HTTPServer(lambda path, headers: (200, b'{"status":"Error"}', "application/json")))
    detail = failed(lambda: probes.api_health(_plain(server.port), 4, "api." + NAME, 2.0))
    assert "Error" in detail and "unexpected reply" in detail, detail


def test_api_stats_rejected_token_is_named_and_not_shown(serve):
    body = b'Unhandled rejection: Err { reason: "token not valid" }'
    server = serve(HTTPServer(lambda path, headers: (500, body, "text/plain; charset=utf-8")))
    detail = failed(lambda: probes.api_stats(_plain(server.port), 4, "api." + NAME, TOKEN, 2.0))
    assert "HTTP 500" in detail and "admin token" in detail and "token not valid" in detail, detail
    assert TOKEN not in detail
    path, _headers = server.requests[0]
    assert urllib.parse.parse_qs(urllib.parse.urlsplit(path).query)["token"] == [TOKEN]  # it was sent


def test_api_stats_hides_a_token_the_server_echoes(serve):
    def echo(path, headers):
        token = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query)["token"][0]
        return 403, f"token {token} is not allowed here".encode(), "text/plain"

    server = serve(HTTPServer(echo))
    detail = failed(lambda: probes.api_stats(_plain(server.port), 4, "api." + NAME, TOKEN, 2.0))
    assert "HTTP 403" in detail and "********" in detail and "admin token" in detail, detail
    assert TOKEN not in detail


# ------------------------------------------------------------------------------ TLS
def _key():
    return ec.generate_private_key(ec.SECP256R1())


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(Encoding.PEM)


def _key_pem(key) -> bytes:
    return key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())


def _cert(subject_cn: str, key, issuer_cn: str, issuer_key, not_before, not_after, *, ca: bool):
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject_cn)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_cn)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
    else:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(subject_cn)]), critical=False)
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False
        )
    return builder.sign(issuer_key, hashes.SHA256())


@pytest.fixture(scope="module")
def ca():
    key = _key()
    now = dt.datetime.now(dt.UTC)
    cert = _cert(CA_NAME, key, CA_NAME, key, now - dt.timedelta(days=1),
                 now + dt.timedelta(days=365), ca=True)  # fmt: skip
    return key, cert


def _leaf(ca, *, start_days: float, end_days: float, self_signed: bool = False) -> tuple[bytes, bytes]:
    ca_key, _ca_cert = ca
    key = _key()
    now = dt.datetime.now(dt.UTC)
    issuer_key, issuer_cn = (key, NAME) if self_signed else (ca_key, CA_NAME)
    cert = _cert(NAME, key, issuer_cn, issuer_key, now + dt.timedelta(days=start_days),
                 now + dt.timedelta(days=end_days), ca=False)  # fmt: skip
    chain = _pem(cert)
    return chain, _key_pem(key)


def _tls_server(serve, tmp_path, chain: bytes, key: bytes) -> HTTPServer:
    (tmp_path / "leaf.pem").write_bytes(chain)
    (tmp_path / "leaf.key").write_bytes(key)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tmp_path / "leaf.pem", tmp_path / "leaf.key")
    return serve(HTTPServer(lambda path, headers: (200, b'{"status":"Ok"}', "application/json"), tls=ctx))


def _tls_reach(port: int, ca_cert=None) -> Reach:
    ca_pem = _pem(ca_cert).decode() if ca_cert is not None else None
    return Reach(addresses={4: "127.0.0.1"}, tls=True, port=port, context=probes.tls_context(ca_pem))


def test_tls_expired_certificate_is_not_trusted(serve, tmp_path, ca):
    server = _tls_server(serve, tmp_path, *_leaf(ca, start_days=-30, end_days=-1))
    reach = _tls_reach(server.port, ca[1])
    detail = failed(lambda: probes.certificate(reach, 4, NAME, 2.0))
    assert "certificate not trusted" in detail and "expired" in detail, detail
    # every other probe through that proxy fails the same way
    detail = failed(lambda: probes.api_health(reach, 4, NAME, 2.0))
    assert "certificate not trusted" in detail and "expired" in detail, detail


def test_tls_self_signed_certificate_is_not_trusted(serve, tmp_path, ca):
    server = _tls_server(serve, tmp_path, *_leaf(ca, start_days=-1, end_days=90, self_signed=True))
    detail = failed(lambda: probes.certificate(_tls_reach(server.port, ca[1]), 4, NAME, 2.0))
    assert "certificate not trusted" in detail and "self" in detail, detail


def test_tls_certificate_for_another_name_is_not_trusted(serve, tmp_path, ca):
    server = _tls_server(serve, tmp_path, *_leaf(ca, start_days=-1, end_days=90))
    detail = failed(lambda: probes.certificate(_tls_reach(server.port, ca[1]), 4, "api." + NAME, 2.0))
    assert "certificate not trusted" in detail and "mismatch" in detail, detail


def test_tls_certificate_expiring_soon_fails(serve, tmp_path, ca):
    server = _tls_server(serve, tmp_path, *_leaf(ca, start_days=-85, end_days=5))  # a 90-day cert, renewal failing
    result = attempt(lambda: probes.certificate(_tls_reach(server.port, ca[1]), 4, NAME, 2.0))
    assert result.ok is False
    assert result.detail.startswith("certificate from torrust-test fault CA expires in 4 days"), result.detail
    assert len(server.requests) == 0  # a handshake only, no HTTP request


def test_tls_certificate_valid_for_90_days_passes(serve, tmp_path, ca):
    server = _tls_server(serve, tmp_path, *_leaf(ca, start_days=-1, end_days=90))
    reach = _tls_reach(server.port, ca[1])
    result = attempt(lambda: probes.certificate(reach, 4, NAME, 2.0))
    assert result.ok is True, result
    assert "expires in 89 days" in result.detail or "expires in 90 days" in result.detail, result.detail
    assert attempt(lambda: probes.api_health(reach, 4, NAME, 2.0)).ok is True


@pytest.mark.parametrize(("start_h", "end_h", "ok"), [(-2, 10, True), (-10, 2, False)], ids=["10h-left", "2h-left"])
def test_short_lived_certificate_judged_by_its_lifetime(serve, tmp_path, ca, start_h, end_h, ok):
    """Caddy's internal CA issues 12-hour leaves renewed at a third of their life: 10 hours
    left is healthy, 2 hours left means renewal is failing."""
    server = _tls_server(serve, tmp_path, *_leaf(ca, start_days=start_h / 24, end_days=end_h / 24))
    result = attempt(lambda: probes.certificate(_tls_reach(server.port, ca[1]), 4, NAME, 2.0))
    assert result.ok is ok, result
    assert " hours " in result.detail, result.detail


# ------------------------------------------------ the stand-in behind a proxy without X-Forwarded-For
STANDIN_TOML = """
[metadata]
app = "torrust-tracker"
purpose = "configuration"
schema_version = "2.0.0"

[logging]
threshold = "info"

[core]
listed = false
private = false
tracker_usage_statistics = true

[core.announce_policy]
interval = 120
interval_min = 120

[core.database]
driver = "sqlite3"
path = "/var/lib/torrust/tracker/database/sqlite3.db"

[core.net]
on_reverse_proxy = true

[[udp_trackers]]
bind_address = "0.0.0.0:6969"

[[http_trackers]]
bind_address = "0.0.0.0:7070"

[http_api]
bind_address = "0.0.0.0:1212"

[health_check_api]
bind_address = "127.0.0.1:1313"
"""


@pytest.fixture(scope="module")
def standin(images):
    name = "t" + uuid.uuid4().hex[:10] + "-faults-standin"
    port = free_port()
    docker(
        "run", "-d", "--name", name,
        "-p", f"127.0.0.1:{port}:7070",
        "--tmpfs", "/var/lib/torrust/tracker",
        "-e", "TORRUST_TRACKER_CONFIG_TOML=" + STANDIN_TOML,
        "-e", "TORRUST_TRACKER_CONFIG_OVERRIDE_HTTP_API__ACCESS_TOKENS__ADMIN=" + ADMIN_TOKEN,
        "-e", "TORRUST_TRACKER_CONFIG_OVERRIDE_CORE__DATABASE__DRIVER=sqlite3",
        images["tracker-standin"],
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120  # a hang guard only
        while True:
            try:
                if requests.get(f"http://127.0.0.1:{port}/health_check", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                logs = docker("logs", name, check=False)
                pytest.fail(f"tracker stand-in did not start: {logs.stdout}{logs.stderr}")
            time.sleep(0.2)
        yield port
    finally:
        docker("rm", "-f", name, check=False)


@pytest.mark.parametrize(
    ("proxy_headers", "ok"),
    [({}, False), ({"X-Forwarded-For": "127.0.0.1"}, True)],
    ids=["drops-x-forwarded-for", "sets-x-forwarded-for"],
)
def test_http_tracker_behind_a_proxy(serve, standin, proxy_headers, ok):
    proxy = serve(ForwardingProxy(standin, set_headers=proxy_headers, drop=("X-Forwarded-For",)))
    result = attempt(lambda: probes.http_tracker(_plain(proxy.port), 4, NAME, 5.0))
    assert result.ok is ok, result
    if ok:
        assert result.detail == "announce interval=120, stopped, scrape ok"
    else:
        assert result.detail.startswith("announce: tracker said: ") and "X-Forwarded-For" in result.detail
    assert proxy.forwarded and all(("x-forwarded-for" in h) == ok for h in proxy.forwarded)


def test_the_stand_in_itself_answers_with_a_bencoded_failure(standin):
    # what the proxy relays: a 200 with a bencoded failure reason, not an HTTP error
    # (a well-formed announce: like Torrust, the peer's address is resolved after the
    # request's parameters are parsed, so a malformed one gets the parameter error first)
    query = urllib.parse.urlencode(
        {"info_hash": b"\x01" * 20, "peer_id": b"-TT0001-" + b"x" * 12, "port": 6881}, quote_via=urllib.parse.quote
    )
    reply = requests.get(f"http://127.0.0.1:{standin}/announce?{query}", timeout=5)
    assert reply.status_code == 200
    assert b"X-Forwarded-For" in bencode.decode(reply.content)[b"failure reason"]
    malformed = requests.get(f"http://127.0.0.1:{standin}/announce?info_hash=x", timeout=5)
    assert bencode.decode(malformed.content)[b"failure reason"].startswith(b"Bad request. Cannot parse query params")


def test_udp_port_without_a_listener_fails():
    # nothing bound there: "connection refused" where the kernel reports ICMP port unreachable, else no reply
    port = free_port(socket.SOCK_DGRAM)
    detail = failed(lambda: probes.udp_tracker("127.0.0.1", port, 0.5))
    assert "refused" in detail or "no reply" in detail, detail


def test_echoed_token_is_masked_in_every_form_before_the_detail_is_cut():
    """A server echoing the token past the 160-character cut or URL-encoded never shows it."""
    from tasks.health import probes as pr

    token = "Ab3+Cd4/Ef5=Gh6%Ij7&Kl8-Mn9Op0Qr"
    body = "x" * 150 + token + " " + urllib.parse.quote(token, safe="")
    assert token[:6] not in pr._mask(body, token)[:160]
    assert urllib.parse.quote(token, safe="") not in pr._mask(body, token)


# ----------------------------------------------- the admin token, and the tracker's modes
STATS = b'{"torrents":1,"seeders":1,"completed":0,"leechers":0,"udp4_announces_handled":0,"tcp4_announces_handled":0}'


def _stats_server(serve, tls=None) -> HTTPServer:
    return serve(HTTPServer(lambda path, headers: (200, STATS, "application/json"), tls=tls))


def test_api_stats_token_in_a_bearer_header_where_the_release_accepts_one(serve):
    server = _stats_server(serve)
    result = attempt(lambda: probes.api_stats(_plain(server.port), 4, NAME, TOKEN, 2.0, release=trackers.DEVELOP))
    assert result.ok and not result.skipped and result.detail.endswith("(Bearer header)"), result
    method, path, headers, _body = server.calls[0]
    assert (method, path) == ("GET", "/api/v1/stats") and headers["authorization"] == f"Bearer {TOKEN}"
    # v3.0.0 reads only the query token
    attempt(lambda: probes.api_stats(_plain(server.port), 4, NAME, TOKEN, 2.0, release=trackers.V3_0_0))
    _method, path, headers, _body = server.calls[1]
    assert "authorization" not in headers and urllib.parse.parse_qs(path.split("?")[1])["token"] == [TOKEN]


def test_api_stats_over_plain_http_to_another_machine_is_skipped_unsent():
    reach = Reach(addresses={4: "192.0.2.10"}, tls=False, port=80)  # TEST-NET-1: not this machine
    result = attempt(lambda: probes.api_stats(reach, 4, NAME, TOKEN, 2.0, release=trackers.DEVELOP))
    assert (result.ok, result.skipped, result.status) == (True, True, "skipped")
    assert result.detail == (
        "skipped: plain HTTP to 192.0.2.10 would carry the admin token unencrypted across the network "
        "(turn TLS on, or probe from the host itself); the admin token was not sent"
    )
    assert result.as_dict()["status"] == "skipped"


def test_api_stats_over_tls_that_is_not_verified_is_skipped_unsent(serve, tmp_path, ca):
    server = _tls_server(serve, tmp_path, *_leaf(ca, start_days=-1, end_days=90))
    lax = ssl.create_default_context()
    lax.check_hostname, lax.verify_mode = False, ssl.CERT_NONE
    reach = Reach(addresses={4: "127.0.0.1"}, tls=True, port=server.port, context=lax)
    result = attempt(lambda: probes.api_stats(reach, 4, NAME, TOKEN, 2.0))
    assert result.skipped and "cannot be verified" in result.detail and "not sent" in result.detail, result
    assert server.calls == []
    # the same lax context still serves the requests that carry no credential
    assert attempt(lambda: probes.api_health(reach, 4, NAME, 2.0)).ok


def test_api_stats_to_an_untrusted_certificate_stops_at_the_handshake(serve, tmp_path, ca):
    server = _tls_server(serve, tmp_path, *_leaf(ca, start_days=-1, end_days=90, self_signed=True))
    result = attempt(lambda: probes.api_stats(_tls_reach(server.port, ca[1]), 4, NAME, TOKEN, 2.0))
    assert result.skipped and "is not trusted" in result.detail and "not sent" in result.detail, result
    assert server.calls == []  # the handshake failed: no request, no token


def test_api_stats_over_verified_tls_sends_the_token(serve, tmp_path, ca):
    chain, key = _leaf(ca, start_days=-1, end_days=90)
    (tmp_path / "leaf.pem").write_bytes(chain)
    (tmp_path / "leaf.key").write_bytes(key)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tmp_path / "leaf.pem", tmp_path / "leaf.key")
    server = _stats_server(serve, tls=ctx)
    reach = _tls_reach(server.port, ca[1])
    result = attempt(lambda: probes.api_stats(reach, 4, NAME, TOKEN, 2.0, release=trackers.DEVELOP))
    assert result.ok and not result.skipped, result
    assert server.calls[0][2]["authorization"] == f"Bearer {TOKEN}"


KEY = "Kq3Zr8Wm1Xv6Lp0Yt5Nb2Hc7Jd4Fs9Ga"


def _failure(reason: str) -> bytes:
    """A tracker's bencoded failure reason."""
    data = reason.encode()
    return b"d14:failure reason%d:%se" % (len(data), data)


OK_ANNOUNCE = b"d8:intervali120e5:peers0:e"
OK_SCRAPE = b"d5:filesdee"


def _mode(server_port: int, release=trackers.V3_0_0, *, private=False, listed=False) -> probes.Mode:
    reach = _plain(server_port)
    setup = probes.AdminSetup(
        lambda fam: probes.Api(reach, fam, NAME, TOKEN, release, 2.0), probes.CANARY_INFO_HASH.hex()
    )
    return probes.Mode(release, private, listed, setup)


def _tracker_and_api(key_status=200, whitelist_status=200, announce=OK_ANNOUNCE):
    def reply(path: str, headers: dict) -> tuple[int, bytes, str]:
        if path.startswith("/api/v1/keys"):
            body = json.dumps({"key": KEY, "valid_until": 1, "expiry_time": "x"}).encode()
            return key_status, body if key_status == 200 else b"nope", "application/json"
        if path.startswith("/api/v1/whitelist/"):
            return whitelist_status, b'{"status":"ok"}', "application/json"
        if path.startswith("/api/v1/key/"):
            return 200, b'{"status":"ok"}', "application/json"
        if path.startswith("/announce"):
            return 200, announce, "text/plain"
        return 200, OK_SCRAPE, "text/plain"

    return reply


def test_private_http_probe_announces_with_a_key_made_through_the_api_and_deletes_it(serve):
    server = serve(HTTPServer(_tracker_and_api()))
    mode = _mode(server.port, private=True)
    result = attempt(lambda: probes.http_tracker(_plain(server.port), 4, NAME, 2.0, mode=mode))
    assert result.ok and result.detail == "private, with a key: announce interval=120, stopped, scrape ok", result
    calls = [(m, p.split("?")[0]) for m, p, _h, _b in server.calls]
    assert calls == [
        ("POST", "/api/v1/keys"),
        ("GET", f"/announce/{KEY}"),
        ("GET", f"/announce/{KEY}"),
        ("GET", f"/scrape/{KEY}"),
        ("DELETE", f"/api/v1/key/{KEY}"),
    ]
    _m, _p, headers, body = server.calls[0]
    assert json.loads(body) == {"key": None, "seconds_valid": 300} and headers["content-type"] == "application/json"


def test_private_http_probe_without_a_key_checks_the_release_refusal(serve):
    refusal = "Authentication error: Missing authentication key param for private tracker. Error in src/x.rs:1:1"
    refused = _failure(refusal)
    server = serve(HTTPServer(_tracker_and_api(key_status=500, announce=refused)))
    result = attempt(
        lambda: probes.http_tracker(_plain(server.port), 4, NAME, 2.0, mode=_mode(server.port, private=True))
    )
    assert result.skipped and "no key: key: HTTP 500" in result.detail, result
    assert "an announce without a key was refused as v3.0.0 refuses it" in result.detail
    # a private tracker that serves an announce without a key is a failure
    lax = serve(HTTPServer(_tracker_and_api(key_status=500)))
    result = attempt(lambda: probes.http_tracker(_plain(lax.port), 4, NAME, 2.0, mode=_mode(lax.port, private=True)))
    assert result.ok is False and "expected the refusal" in result.detail, result


def test_listed_http_probe_whitelists_the_canary_first(serve):
    server = serve(HTTPServer(_tracker_and_api()))
    result = attempt(
        lambda: probes.http_tracker(_plain(server.port), 4, NAME, 2.0, mode=_mode(server.port, listed=True))
    )
    assert result.ok and result.detail.startswith("listed, announce interval=120"), result
    assert [(m, p) for m, p, _h, _b in server.calls[:1]] == [
        ("POST", f"/api/v1/whitelist/{probes.CANARY_INFO_HASH.hex()}?token={TOKEN}")
    ]


def test_listed_http_probe_without_whitelisting_expects_the_exact_refusal(serve):
    hexhash = probes.CANARY_INFO_HASH.hex()
    refused = _failure(f"Tracker error: The torrent: {hexhash}, is not whitelisted, src/core/mod.rs:1106:23")
    server = serve(HTTPServer(_tracker_and_api(whitelist_status=500, announce=refused)))
    result = attempt(
        lambda: probes.http_tracker(_plain(server.port), 4, NAME, 2.0, mode=_mode(server.port, listed=True))
    )
    assert result.skipped and "whitelisting the canary failed" in result.detail, result
    other = _failure("Tracker error: The torrent: 00, is not whitelisted")
    wrong = serve(HTTPServer(_tracker_and_api(whitelist_status=500, announce=other)))
    result = attempt(lambda: probes.http_tracker(_plain(wrong.port), 4, NAME, 2.0, mode=_mode(wrong.port, listed=True)))
    assert result.ok is False and "expected the refusal" in result.detail, result


def test_udp_probe_in_private_mode_is_skipped_without_a_packet(serve):
    server = serve(UDPResponder(lambda packet: None))
    mode = probes.Mode(trackers.V3_0_0, private=True)
    result = attempt(lambda: probes.udp_tracker("127.0.0.1", server.port, 1.0, mode=mode))
    assert result.skipped and result.detail == "skipped: release v3.0.0 does not start UDP trackers in private mode"
    assert server.received == []


def _udp_refusing(message: bytes):
    def respond(packet: bytes) -> bytes:
        action, tid = _header(packet)
        if action == CONNECT:
            return _connect_reply(tid)
        return struct.pack("!iI", ERROR, tid) + message

    return respond


def test_udp_probe_in_listed_mode_expects_the_exact_refusal_when_it_cannot_whitelist(serve):
    hexhash = probes.CANARY_INFO_HASH.hex()
    exact = f"tracker server error: The torrent: {hexhash}, is not whitelisted, src/core/mod.rs:1106:23".encode()
    mode = probes.Mode(trackers.V3_0_0, listed=True)  # no admin access
    server = serve(UDPResponder(_udp_refusing(exact)))
    result = attempt(lambda: probes.udp_tracker("127.0.0.1", server.port, 1.0, mode=mode))
    assert result.skipped and "refused as v3.0.0 refuses it" in result.detail, result
    other = serve(UDPResponder(_udp_refusing(b"info-hash not authorized here")))
    result = attempt(lambda: probes.udp_tracker("127.0.0.1", other.port, 1.0, mode=mode))
    assert result.ok is False and "info-hash not authorized here" in result.detail, result
