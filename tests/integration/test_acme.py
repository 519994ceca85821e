"""Public certificates, proven against a real ACME server (issue 14).

Pebble (Let's Encrypt's RFC 8555 test server) and dnsmasq, shared by the module
(tests/integration/acme.py); each test deploys its own stack with the tool (local
target, TLS on, public names under acme.example that the DNS server resolves to
127.0.0.1) and takes it down. Every stack publishes the proxy on the same two ports,
the ones Pebble validates on (HTTP-01 and TLS-ALPN-01), so the stacks of this module run
one after the other.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path

import pytest

from tasks.health import bencode
from tests.conftest import ROOT, clean_environ
from tests.integration.acme import ZONE, DNSServer, Pebble, Records
from tests.integration.conftest import docker, free_port, local_env

TOKEN = "Rt6-Hq3Wz9Lm2Xp7Vb4Nc8Kd1Fs5Gy0J"
TRACKER, API, TRACKER2 = f"tracker.{ZONE}", f"api.{ZONE}", f"tracker2.{ZONE}"
MISSING = f"missing.{ZONE}"  # no record at all
ELSEWHERE = f"elsewhere.{ZONE}"  # resolves to an address the host does not have
DENIED = f"denied.{ZONE}"  # CAA allows another CA only
INFO_HASH = bytes.fromhex("acce55ed" * 5)


class Rig:
    """The module's Pebble + DNS pair and the ports every stack publishes."""

    def __init__(self, images: dict, work: Path, tag: str):
        self.work, self.tag = work, tag
        self.http_port, self.https_port = free_port(), free_port()
        self.bep34 = f"BITTORRENT UDP:16969 TCP:{self.https_port}"
        records = Records(
            hosts={n: ["127.0.0.1", "::1"] for n in (TRACKER, API, TRACKER2, DENIED)} | {ELSEWHERE: ["127.0.0.2"]},
            caa={DENIED: [(0, "issue", "ca.other.example")], TRACKER: [(0, "issue", "pebble.acme.example")]},
            txt={ZONE: [self.bep34]},
        )
        self.dns = DNSServer(f"{tag}-dns", images["dns"], work, records)
        self.pebble = Pebble(f"{tag}-pebble", images["pebble"], work, self.http_port, self.https_port, self.dns.port)

    def env(self, root: Path, project: str, **extra: str) -> dict[str, str]:
        """A stack's settings: TLS with certificates from Pebble, trusted through a bundle
        of Pebble's HTTPS CA and its current issuance root."""
        bundle = self.pebble.trust_bundle(self.work / f"{project}-ca.pem")
        settings = dict(
            TORRUST_TLS="true",
            TORRUST_DOMAIN=ZONE,
            TORRUST_HTTP_PORT=str(self.http_port),
            TORRUST_HTTPS_PORT=str(self.https_port),
            TORRUST_ACME_CA=self.pebble.directory,
            TORRUST_ACME_CA_ROOT=str(bundle),
            TORRUST_ACME_EMAIL="ops@tracker-ops.net",
            TORRUST_ACME_CAA="pebble.acme.example",
            TORRUST_DNS_RESOLVER=f"127.0.0.1:{self.dns.port}",
            TORRUST_TRACKER_ADMIN_TOKEN=TOKEN,
            TORRUST_ISSUANCE_TIMEOUT="60",
        )
        return local_env(root, project, **{**settings, **extra})


@pytest.fixture(scope="module")
def rig(images, tmp_path_factory):
    tag = "acme" + os.urandom(3).hex()
    r = Rig(images, tmp_path_factory.mktemp("acme"), tag)
    try:
        r.dns.start()
        r.pebble.start()
        yield r
    finally:
        r.pebble.stop()
        r.dns.stop()


class Stack:
    def __init__(self, rig: Rig, tmp_path: Path, **extra: str):
        self.rig, self.cwd = rig, tmp_path / "cwd"
        self.cwd.mkdir(parents=True, exist_ok=True)
        self.project = "ac" + os.urandom(3).hex()
        self.root = tmp_path / "root"
        self.env = rig.env(self.root, self.project, **extra)

    def cli(self, *args: str, timeout: int = 400, **extra: str) -> subprocess.CompletedProcess:
        res = subprocess.run(
            [sys.executable, str(ROOT / "tasks.py"), *args],
            cwd=self.cwd,
            env=clean_environ(**{**self.env, **extra}),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        assert "Traceback" not in res.stderr, res.stderr
        return res

    def check(self, *flags: str, **extra: str) -> dict:
        res = self.cli("health.check", "--json", *flags, **extra)
        return {**json.loads(res.stdout), "_code": res.returncode}

    def proxy_log(self) -> str:
        cid = docker("ps", "-q", "--filter", f"label=com.docker.compose.project={self.project}",
                     "--filter", "label=com.docker.compose.service=proxy").stdout.strip()  # fmt: skip
        r = docker("logs", cid, check=False)
        return r.stdout + r.stderr

    def challenges_used(self) -> set[str]:
        used = set()
        for line in self.proxy_log().splitlines():
            if '"trying to solve challenge"' in line:
                used.add(json.loads(line)["challenge_type"])
        return used

    def down(self) -> None:
        self.cli("app.down")

    def account_registrations(self) -> list[Path]:
        """The proxy's stored ACME registrations (certmagic: acme/<CA>/users/<email>/<user>.json,
        the key beside it as <user>.key)."""
        return sorted((self.root / "storage/proxy/data/caddy/acme").glob("*/users/*/*.json"))

    def settle_account(self) -> list[str]:
        """Point the proxy's stored ACME registration at the account Pebble holds for the
        stored key; returns what was repaired. The proxy stand-in is Debian's Caddy 2.6
        (certmagic 0.17): it registers one account per name it obtains at once and can
        store one account's registration with another's key (caddyserver/certmagic#293,
        one first deploy in 36 here), and every later order then fails with 'JWS
        verification error'. The pinned caddy:2.10.2 registers under a lock, and the tool
        refuses older official Caddy tags with ACME (tasks/config/rules.py), so a test whose
        stack orders again after its first deploy settles the account first, and says so."""
        repaired = []
        regs = self.account_registrations()
        assert regs, "the proxy stored no ACME account"
        for reg in regs:
            doc = json.loads(reg.read_text())
            actual = self.rig.pebble.account_for_key(reg.with_suffix(".key").read_bytes())
            assert actual, f"{reg}: Pebble holds no account for the stored key"
            if doc.get("location") != actual:
                repaired.append(f"{reg.name}: {doc.get('location')} -> {actual}")
                doc["location"] = actual
                reg.write_text(json.dumps(doc, indent="\t"))
        if repaired:
            print("proxy stand-in stored a mismatched ACME account (certmagic#293), settled:", *repaired, sep="\n  ")
        return repaired


@pytest.fixture
def stacks(rig, tmp_path):
    made: list[Stack] = []

    def make(**extra: str) -> Stack:
        st = Stack(rig, tmp_path / f"s{len(made)}", **extra)
        made.append(st)
        return st

    yield make
    for st in made:
        st.down()


def served_certificate(port: int, name: str, bundle: str) -> tuple[int, str]:
    """(serial, issuer CN) of the certificate served for `name`, verified against `bundle`."""
    ctx = ssl.create_default_context(cafile=bundle)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        with ctx.wrap_socket(sock, server_hostname=name) as tls:
            cert = tls.getpeercert()
    issuer = dict(x[0] for x in cert["issuer"])["commonName"]
    return int(cert["serialNumber"], 16), issuer


def https_get(port: int, name: str, path: str, bundle: str) -> tuple[int, bytes]:
    """GET over TLS verified against `bundle` (chain and name), SNI and Host `name`."""
    ctx = ssl.create_default_context(cafile=bundle)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        with ctx.wrap_socket(sock, server_hostname=name) as tls:
            tls.sendall(f"GET {path} HTTP/1.1\r\nHost: {name}:{port}\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while chunk := tls.recv(65536):
                data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def announce(port: int, bundle: str) -> dict:
    q = urllib.parse.urlencode(
        {"info_hash": INFO_HASH, "peer_id": b"-TD0001-acmepeer0001", "port": 6881, "uploaded": 0,
         "downloaded": 0, "left": 0, "compact": 1},
        quote_via=urllib.parse.quote,
    )  # fmt: skip
    status, body = https_get(port, TRACKER, f"/announce?{q}", bundle)
    assert status == 200, body
    return bencode.decode(body)


def assert_verified_everywhere(st: Stack) -> None:
    doc = st.check()
    assert doc["_code"] == 0, [p for p in doc["probes"] if not p["ok"]]
    tls = [p for p in doc["probes"] if p["name"] == "tls certificate"]
    assert len(tls) == 4 and all(p["ok"] for p in tls), tls  # 2 names x 2 families
    assert all("issued by Pebble Intermediate CA" in p["detail"] and "renewal from" in p["detail"] for p in tls)
    bundle = st.env["TORRUST_ACME_CA_ROOT"]
    assert b"interval" in announce(st.rig.https_port, bundle)
    status, body = https_get(st.rig.https_port, API, "/api/health_check", bundle)
    assert (status, json.loads(body)) == (200, {"status": "Ok"})


@pytest.mark.parametrize("challenge", ["http-01", "tls-alpn-01"])
def test_first_deploy_obtains_certificates_from_the_acme_server(rig, stacks, challenge):
    issued = rig.pebble.issued()
    st = stacks(TORRUST_ACME_CHALLENGES=challenge)
    res = st.cli("app.deploy", "--json")
    assert res.returncode == 0, res.stderr
    assert rig.pebble.issued() - issued == 2  # one certificate per public name
    assert st.challenges_used() == {challenge}
    assert_verified_everywhere(st)
    # without the configured root, the system store applies: it does not trust Pebble
    res = st.cli("health.check", "--json", "--only", "tls", TORRUST_ACME_CA_ROOT="")
    assert res.returncode == 40
    details = {p["detail"] for p in json.loads(res.stdout)["probes"]}
    assert details == {"certificate not trusted: unable to get local issuer certificate"}


# ------------------------------------------------------------------------ the DNS preflight
def preflight(st: Stack, **extra: str) -> tuple[int, dict]:
    res = st.cli("app.preflight", "--json", **extra)
    return res.returncode, {**json.loads(res.stdout), "_stderr": res.stderr}


def findings(doc: dict) -> dict[tuple[str, str], tuple[str, str]]:
    return {(f["check"], f["name"]): (f["status"], f["detail"]) for f in doc["dns"]}


def test_preflight_checks_records_caa_ports_and_bep34(rig, stacks):
    st = stacks(TORRUST_DNS_BEP34="true", TORRUST_UDP_TRACKERS="[::]:16969")
    code, doc = preflight(st)
    assert code == 0, doc
    got = findings(doc)
    assert got[("A", TRACKER)] == ("ok", "127.0.0.1") and got[("AAAA", API)] == ("ok", "::1")
    assert got[("CAA", TRACKER)] == ("ok", f"CAA at {TRACKER} allows pebble.acme.example")
    assert got[("CAA", API)] == ("ok", "no CAA records: any CA may issue")
    ports = {k: v for k, v in got.items() if k[0].startswith("port ")}
    assert set(ports) == {
        (f"port {rig.http_port}/tcp (http-01)", "127.0.0.1"), (f"port {rig.http_port}/tcp (http-01)", "::1"),
        (f"port {rig.https_port}/tcp (tls-alpn-01)", "127.0.0.1"), (f"port {rig.https_port}/tcp (tls-alpn-01)", "::1"),
    }  # fmt: skip
    assert {v[0] for v in ports.values()} == {"warn"}  # nothing deployed: refused, fine before a first deploy
    assert got[("BEP 34", ZONE)] == ("ok", rig.bep34)


@pytest.mark.parametrize(
    ("extra", "cause"),
    [
        ({"TORRUST_API_DOMAIN": ELSEWHERE}, f"A {ELSEWHERE}: points at 127.0.0.2, but this host is 127.0.0.1"),
        ({"TORRUST_API_DOMAIN": MISSING}, f"A {MISSING}: the name does not exist (NXDOMAIN)"),
        (
            {"TORRUST_HTTP_TRACKER_DOMAINS": DENIED},
            f"CAA {DENIED}: CAA at {DENIED} allows ca.other.example, not pebble",
        ),
        (
            {"TORRUST_DNS_BEP34": "true", "TORRUST_UDP_TRACKERS": "[::]:16970"},
            f'BEP 34 {ZONE}: "BITTORRENT UDP:16969 TCP:',
        ),
    ],
    ids=["resolves-elsewhere", "no-record", "caa-denies", "bep34-port"],
)
def test_preflight_names_the_dns_cause_and_changes_nothing(rig, stacks, extra, cause):
    st = stacks(**extra)
    code, doc = preflight(st)
    assert code == 4, doc
    assert any(p.startswith(cause) for p in doc["problems"]), doc["problems"]
    assert cause in doc["_stderr"]
    assert not st.root.exists() or not (st.root / "releases").exists()


# ------------------------------------------------------------------------ faults in the gate
def test_http01_port_closed_names_the_challenge_and_the_running_release_keeps_serving(rig, stacks):
    st = stacks(TORRUST_ACME_CHALLENGES="http-01")
    assert st.cli("app.deploy").returncode == 0
    st.settle_account()  # the next order must fail on its challenge, not on the stand-in's account
    running = os.readlink(st.root / "current")
    # a new name needs a certificate, but HTTP now goes to another port: Pebble's HTTP-01
    # connection to the port it validates on is refused (port 80 closed, as the CA sees it)
    res = st.cli(  # the old HTTP port stops being published: a removal, allowed
        "app.deploy", "--json", "--allow-removal",
        TORRUST_HTTP_TRACKERS="[::]:7070,[::]:7071", TORRUST_HTTP_TRACKER_DOMAINS=f"{TRACKER},{TRACKER2}",
        TORRUST_HTTP_PORT=str(free_port()), TORRUST_ISSUANCE_TIMEOUT="12",
    )  # fmt: skip
    assert res.returncode == 31, res.stderr  # rolled back
    assert "no valid certificate after 1" in res.stderr and f"for {TRACKER2}:" in res.stderr
    assert f"{TRACKER2}: http-01 challenge failed (connection):" in res.stderr, res.stderr
    assert f":{rig.http_port}: connect: connection refused" in res.stderr  # 127.0.0.1 or [::1]
    assert "waiting for certificates (1" in res.stderr  # progress while it waited
    assert os.readlink(st.root / "current") == running
    assert_verified_everywhere(st)  # the previous release serves, its certificates verify


def test_acme_server_refusing_every_nonce_fails_a_first_deploy_naming_it(rig, stacks):
    rig.pebble.restart(PEBBLE_WFE_NONCEREJECT="100")
    try:
        st = stacks(TORRUST_ISSUANCE_TIMEOUT="10")
        res = st.cli("app.deploy", "--json")
        assert res.returncode == 31, res.stderr
        assert f"{TRACKER}: the CA refused the order (badNonce): HTTP 400" in res.stderr
        assert "rolled back to nothing (first deploy)" in res.stderr
        assert not os.path.exists(st.root / "current")
        running = docker("ps", "-q", "--filter", f"label=com.docker.compose.project={st.project}").stdout
        assert running.strip() == ""  # a first deploy's rollback stops what it started
    finally:
        rig.pebble.restart()  # a fresh Pebble (new issuance root) for the next tests


# ------------------------------------------------------------------------ restore
def test_restored_certificate_store_needs_no_new_order(rig, stacks, tmp_path):
    first = stacks()
    assert first.cli("app.deploy").returncode == 0
    backup = first.cli("app.backup", "--json")
    assert backup.returncode == 0, backup.stderr
    backup_id = json.loads(backup.stdout)["id"]
    dest = tmp_path / "copies"
    assert first.cli("app.backup-download", "--id", backup_id, "--dest", str(dest)).returncode == 0
    first.down()  # the host is gone; a fresh deploy root takes its place
    second = stacks()
    second.env["TORRUST_ACME_CA_ROOT"] = first.env["TORRUST_ACME_CA_ROOT"]
    orders = rig.pebble.orders()
    res = second.cli("app.restore", "--certificates", "--from", str(dest / backup_id), "--yes", "--json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["certificates"] == sorted([API, TRACKER]) and doc["proxy_restarted"] is False
    assert second.cli("app.deploy").returncode == 0
    assert rig.pebble.orders() == orders  # the proxy served the restored certificates: no new order
    assert_verified_everywhere(second)
    serial = served_certificate(rig.https_port, TRACKER, second.env["TORRUST_ACME_CA_ROOT"])
    # the same certificate as the first host's (its backup holds it)
    assert (dest / backup_id / "proxy-data.tar.gz").is_file() and serial[1].startswith("Pebble Intermediate CA")


def test_restore_of_certificates_refuses_a_crafted_archive(rig, stacks, tmp_path):
    import hashlib
    import io
    import tarfile

    st = stacks()
    copy = tmp_path / "20261129T000000Z-abcd"
    copy.mkdir()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        link = tarfile.TarInfo("./caddy/escape")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc"
        tar.addfile(link)
    data = buf.getvalue()
    db = b"SQLite stand-in"
    (copy / "proxy-data.tar.gz").write_bytes(data)
    (copy / "database.sqlite3.gz").write_bytes(db)
    manifest = {
        "format": 1, "id": copy.name, "files": [
            {"path": "proxy-data.tar.gz", "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)},
            {"path": "database.sqlite3.gz", "sha256": hashlib.sha256(db).hexdigest(), "size": len(db)},
        ], "database": {"driver": "sqlite3", "file": "database.sqlite3.gz"},
    }  # fmt: skip
    (copy / "manifest.json").write_text(json.dumps(manifest))
    res = st.cli("app.restore", "--certificates", "--from", str(copy), "--yes")
    assert res.returncode == 14, res.stderr
    assert "member './caddy/escape' is not a directory or a regular file" in res.stderr
    assert not (st.root / "storage" / "proxy").exists()


# ------------------------------------------------------------------------ renewal
def test_proxy_renews_without_a_deploy_and_without_downtime(rig, stacks):
    """Pebble 2.4 issues 5-year certificates (its validity setting came in 2.5), so time
    passing is stood in for: the running proxy's renewal window is widened to (almost)
    the whole lifetime through Caddy's admin API, a graceful config reload, which is what
    a certificate entering its last third does. No deploy runs; announces keep working."""
    st = stacks()
    assert st.cli("app.deploy").returncode == 0
    st.settle_account()  # the renewal orders again with the stored account
    # the check can fail: a registration naming another account is found and pointed back
    (reg,) = st.account_registrations()
    doc = json.loads(reg.read_text())
    good, doc["location"] = doc["location"], doc["location"].rsplit("/", 1)[0] + "/0"
    reg.write_text(json.dumps(doc))
    assert st.settle_account() == [f"{reg.name}: {doc['location']} -> {good}"]
    bundle = st.env["TORRUST_ACME_CA_ROOT"]
    before = served_certificate(rig.https_port, TRACKER, bundle)
    releases = sorted(os.listdir(st.root / "releases"))
    issued = rig.pebble.issued()
    cid = docker("ps", "-q", "--filter", f"label=com.docker.compose.project={st.project}",
                 "--filter", "label=com.docker.compose.service=proxy").stdout.strip()  # fmt: skip
    config = json.loads(docker("exec", cid, "caddy", "adapt", "--config", "/etc/caddy/Caddyfile").stdout)
    for policy in config["apps"]["tls"]["automation"]["policies"]:
        policy["renewal_window_ratio"] = 0.99999999  # renew when less than all but ~1.6 s of 5 years is left
    subprocess.run(["docker", "exec", "-i", cid, "sh", "-c", "cat > /tmp/renew.json"], input=json.dumps(config),
                   text=True, check=True, timeout=30)  # fmt: skip
    failures, stop = [], threading.Event()

    def keep_announcing() -> None:
        while not stop.is_set():
            try:
                announce(rig.https_port, bundle)
            except (OSError, AssertionError) as exc:
                failures.append(repr(exc))
            time.sleep(0.05)

    announcer = threading.Thread(target=keep_announcing, daemon=True)
    announcer.start()
    try:
        time.sleep(2)  # the certificate must be older than the window's ~1.6 s
        docker("exec", cid, "caddy", "reload", "--config", "/tmp/renew.json")
        deadline = time.monotonic() + 60
        while served_certificate(rig.https_port, TRACKER, bundle) == before:
            assert time.monotonic() < deadline, st.proxy_log()[-2000:]
            time.sleep(0.5)
        docker("exec", cid, "caddy", "reload", "--config", "/etc/caddy/Caddyfile", "--adapter", "caddyfile")
        time.sleep(1)
    finally:
        stop.set()
        announcer.join(timeout=10)
    assert failures == []  # no downtime: every announce during the renewal was answered over verified TLS
    assert rig.pebble.issued() > issued and "renewing certificate" in st.proxy_log()
    assert sorted(os.listdir(st.root / "releases")) == releases  # no deploy
    doc = st.check("--only", "tls")
    assert doc["_code"] == 0 and all(p["ok"] for p in doc["probes"])
    after = served_certificate(rig.https_port, TRACKER, bundle)
    assert after[0] != before[0]  # the probe's handshake sees the new certificate
