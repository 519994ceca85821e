"""Integration tests of the test images built by tests/images/build.py.

They start real containers (Docker daemon needed: run .ci/install.sh first) and check
behaviour through the network, the Docker CLI and SSH. Every container gets a unique
name and is removed (with its anonymous volumes) in a finalizer. Published ports are on
127.0.0.1 only.
"""

from __future__ import annotations

import importlib.util
import json
import random
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
IMAGES_DIR = ROOT / "tests" / "images"
ADMIN_TOKEN = "standin-admin-" + uuid.uuid4().hex[:12]
UDP_PROTOCOL_ID = 0x41727101980


# ------------------------------------------------------------------------- helpers


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


build = _load("torrust_test_images_build", IMAGES_DIR / "build.py")
# bencode/bdecode of the stand-in (pure functions; importing it starts nothing)
standin = _load("torrust_tracker_standin", IMAGES_DIR / "tracker-standin" / "standin.py")


def docker(*args: str, check: bool = True, timeout: float = 120, input: bytes | None = None):
    proc = subprocess.run(["docker", *args], capture_output=True, timeout=timeout, input=input)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"docker {' '.join(args)} failed ({proc.returncode}):\n"
            f"{proc.stdout.decode(errors='replace')}\n{proc.stderr.decode(errors='replace')}"
        )
    return proc


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def unique(prefix: str) -> str:
    return f"torrust-test-{prefix}-{uuid.uuid4().hex[:10]}"


class Containers:
    """Starts containers and removes them (and their anonymous volumes) afterwards."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def run(self, prefix: str, *args: str) -> str:
        name = unique(prefix)
        self.names.append(name)
        docker("run", "-d", "--name", name, *args)
        return name

    def cleanup(self) -> None:
        for name in self.names:
            docker("rm", "-f", "-v", name, check=False, timeout=60)


@pytest.fixture(scope="session")
def images() -> dict[str, str]:
    if shutil.which("docker") is None:
        pytest.fail("docker is not installed: run .ci/install.sh")
    if docker("info", check=False, timeout=30).returncode != 0:
        pytest.fail("the Docker daemon is not running: run .ci/install.sh")
    return build.build_images(log=lambda line: print(line, flush=True))


@pytest.fixture(scope="module")
def containers():
    c = Containers()
    yield c
    c.cleanup()


def logs(name: str) -> str:
    proc = docker("logs", name, check=False)
    return proc.stdout.decode(errors="replace") + proc.stderr.decode(errors="replace")


def wait_for(predicate, timeout: float, what: str, name: str | None = None, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = predicate()
            if result:
                return result
        except Exception as exc:
            last_exc = exc
        if name is not None:
            state = docker("inspect", "-f", "{{.State.Status}}", name, check=False).stdout.decode().strip()
            if state in ("exited", "dead"):
                raise AssertionError(f"{name} exited while waiting for {what}:\n{logs(name)}")
        time.sleep(interval)
    extra = f"\nlogs:\n{logs(name)}" if name else ""
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last error: {last_exc}){extra}")


_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never a proxy


def http_get(url: str, headers: dict | None = None, timeout: float = 5) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with _opener.open(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


# ------------------------------------------------------------------- labels / build


def test_every_image_is_labelled_as_a_test_image(images):
    for key, ref in images.items():
        labels = json.loads(docker("image", "inspect", "-f", "{{json .Config.Labels}}", ref).stdout)
        assert labels.get("org.torrust.test-image") == key, ref
        assert labels.get("org.torrust.test-image.recipe"), ref
    standin_labels = json.loads(
        docker("image", "inspect", "-f", "{{json .Config.Labels}}", images["tracker-standin"]).stdout
    )
    assert standin_labels["org.torrust.stand-in-for"] == "torrust/tracker:v3.0.0"
    assert standin_labels["org.torrust.stand-in-profile"] == "v3.0.0"
    assert "STAND-IN" in standin_labels["org.opencontainers.image.description"]
    develop = json.loads(
        docker("image", "inspect", "-f", "{{json .Config.Labels}}", images["tracker-standin-develop"]).stdout
    )
    assert develop["org.torrust.stand-in-profile"] == "develop-02c33f69"


def test_rebuild_with_nothing_changed_is_cached(images):
    lines: list[str] = []
    build.build_images(log=lines.append)
    built = [line for line in lines if " built " in line]
    assert not built, f"images rebuilt although nothing changed: {built}"


# ---------------------------------------------------------------- tracker stand-in

TRACKER_TOML = """\
[metadata]
app = "torrust-tracker"
purpose = "configuration"
schema_version = "2.0.0"

[logging]
threshold = "info"

[core]
listed = false
private = false

[core.announce_policy]
interval = 300
interval_min = 150

[core.database]
driver = "sqlite3"
path = "/var/lib/torrust/tracker/database/sqlite3.db"

[core.net]
on_reverse_proxy = false

[[udp_trackers]]
bind_address = "[::]:6969"

[[http_trackers]]
bind_address = "0.0.0.0:7070"

[http_api]
bind_address = "0.0.0.0:1212"

[health_check_api]
bind_address = "127.0.0.1:1313"
"""

STANDIN_ENV = [
    "-e",
    "TORRUST_TRACKER_CONFIG_OVERRIDE_CORE__DATABASE__DRIVER=sqlite3",
]


class Standin:
    def __init__(self, name: str, udp: int, http: int, api: int):
        self.name, self.udp, self.http, self.api = name, udp, http, api

    def stats(self, token: str | None = ADMIN_TOKEN, extra: str = "") -> tuple[int, bytes]:
        query = f"?token={urllib.parse.quote(token)}{extra}" if token is not None else ""
        return http_get(f"http://127.0.0.1:{self.api}/api/v1/stats{query}")


@pytest.fixture(scope="module")
def standin_container(images, containers, tmp_path_factory) -> Standin:
    cfg = tmp_path_factory.mktemp("standin") / "tracker.toml"
    cfg.write_text(TRACKER_TOML)
    udp, http, api = free_port(socket.SOCK_DGRAM), free_port(), free_port()
    name = containers.run(
        "standin",
        "-p",
        f"127.0.0.1:{udp}:6969/udp",
        "-p",
        f"127.0.0.1:{http}:7070",
        "-p",
        f"127.0.0.1:{api}:1212",
        # IPv6 on the container's loopback, for the [::]:6969 dual-stack binding
        "--sysctl",
        "net.ipv6.conf.all.disable_ipv6=0",
        "--sysctl",
        "net.ipv6.conf.lo.disable_ipv6=0",
        "-v",
        f"{cfg}:/etc/torrust/tracker/tracker.toml:ro",
        *STANDIN_ENV,
        "-e",
        f"TORRUST_TRACKER_CONFIG_OVERRIDE_HTTP_API__ACCESS_TOKENS__ADMIN={ADMIN_TOKEN}",
        images["tracker-standin"],
    )
    wait_for(
        lambda: docker("inspect", "-f", "{{.State.Health.Status}}", name).stdout.strip() == b"healthy",
        timeout=60,
        what="the stand-in's HEALTHCHECK to pass",
        name=name,
        interval=0.5,
    )
    return Standin(name, udp, http, api)


def test_standin_api_health_check_needs_no_token(standin_container):
    status, body = http_get(f"http://127.0.0.1:{standin_container.api}/api/health_check")
    assert status == 200
    assert json.loads(body) == {"status": "Ok"}


def test_standin_stats_with_the_admin_token(standin_container):
    status, body = standin_container.stats()
    assert status == 200, body
    stats = json.loads(body)
    fields = ["torrents", "seeders", "completed", "leechers"] + [
        f"{p}{f}_{w}_handled"
        for p in ("tcp", "udp")
        for f in ("4", "6")
        for w in ("connections", "announces", "scrapes")
    ]
    for name in fields:
        assert isinstance(stats.get(name), int), f"{name} missing or not a number in {stats}"


def test_standin_rejects_a_wrong_or_missing_token_like_the_real_tracker(standin_container):
    status, body = standin_container.stats(token="not-the-token")
    assert status == 500
    assert body.decode() == 'Unhandled rejection: Err { reason: "token not valid" }'
    status, body = standin_container.stats(token=None)
    assert status == 500
    assert body.decode() == 'Unhandled rejection: Err { reason: "unauthorized" }'


def test_standin_v3_has_no_prometheus_endpoint_like_the_release(standin_container):
    """v3.0.0: /api/v1/metrics does not exist (404 after the token check) and the stats
    route answers JSON whatever `format` says (its handler takes no query)."""
    api = f"http://127.0.0.1:{standin_container.api}"
    assert http_get(f"{api}/api/v1/metrics?token={ADMIN_TOKEN}&format=prometheus") == (404, b"")
    status, body = standin_container.stats(extra="&format=prometheus")
    assert status == 200 and json.loads(body)["torrents"] >= 0
    # axum's fallback sits inside the auth layer: an unknown path without a token is a 500
    assert http_get(f"{api}/api/v1/metrics")[0] == 500
    assert http_get(f"{api}/nowhere") == (500, b'Unhandled rejection: Err { reason: "unauthorized" }')
    assert http_get(f"{api}/nowhere?token={ADMIN_TOKEN}") == (404, b"")
    # no Authorization header in v3.0.0: only the query token counts
    status, body = http_get(f"{api}/api/v1/stats", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert (status, body) == (500, b'Unhandled rejection: Err { reason: "unauthorized" }')


def test_standin_health_check_api_lists_every_binding(standin_container):
    out = docker(
        "exec",
        standin_container.name,
        "python3",
        "-c",
        "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:1313/health_check').read().decode())",
    ).stdout
    report = json.loads(out)
    assert report["status"] == "Ok"
    assert report["message"] == ""
    bindings = {d["binding"]: d for d in report["details"]}
    assert set(bindings) == {"[::]:6969", "0.0.0.0:7070", "0.0.0.0:1212"}
    for detail in report["details"]:
        assert "Ok" in detail["result"], detail
        assert detail["info"]


def _udp_roundtrip(sock: socket.socket, port: int, packet: bytes) -> bytes:
    sock.sendto(packet, ("127.0.0.1", port))
    data, _ = sock.recvfrom(65536)
    return data


def test_standin_udp_and_http_announces_are_served_and_counted(standin_container):
    s = standin_container
    before = json.loads(s.stats()[1])
    # bytes 0x20 and 0x2B: percent-encoded as %20 and %2B, never form-encoded as '+'
    info_hash = b" +" + random.randbytes(18)

    # BEP 15 connect
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(5)
    try:
        tid = random.getrandbits(32)
        reply = _udp_roundtrip(sock, s.udp, struct.pack(">QII", UDP_PROTOCOL_ID, 0, tid))
        assert len(reply) == 16
        action, reply_tid, connection_id = struct.unpack(">IIQ", reply)
        assert (action, reply_tid) == (0, tid)

        # BEP 15 announce: a seeder (left = 0) on port 51413
        tid = random.getrandbits(32)
        packet = struct.pack(
            ">QII20s20sQQQIIIiH",
            connection_id,
            1,
            tid,
            info_hash,
            b"-TT0001-" + random.randbytes(12),
            0,
            0,
            0,
            2,
            0,
            random.getrandbits(32),
            -1,
            51413,
        )
        reply = _udp_roundtrip(sock, s.udp, packet)
        assert len(reply) >= 20, reply
        action, reply_tid, interval, leechers, seeders = struct.unpack(">IIIII", reply[:20])
        assert (action, reply_tid) == (1, tid), reply
        assert interval == 300  # core.announce_policy.interval from tracker.toml
        assert (seeders, leechers) == (1, 0)
        assert len(reply[20:]) % 6 == 0

        # BEP 15 scrape
        tid = random.getrandbits(32)
        reply = _udp_roundtrip(sock, s.udp, struct.pack(">QII", connection_id, 2, tid) + info_hash)
        assert struct.unpack(">II", reply[:8]) == (2, tid)
        assert struct.unpack(">III", reply[8:20]) == (1, 0, 0)  # seeders, completed, leechers
    finally:
        sock.close()

    # HTTP announce of a leecher in the same swarm: compact reply lists the UDP seeder
    query = urllib.parse.urlencode(
        {
            "info_hash": info_hash,
            "peer_id": b"-TT0002-" + random.randbytes(12),
            "port": 6881,
            "uploaded": 0,
            "downloaded": 0,
            "left": 1000,
            "event": "started",
            "compact": 1,
        },
        quote_via=urllib.parse.quote,
    )
    status, body = http_get(f"http://127.0.0.1:{s.http}/announce?{query}")
    assert status == 200
    reply = standin.bdecode(body)
    assert b"failure reason" not in reply, reply
    assert reply[b"complete"] == 1 and reply[b"incomplete"] == 1
    assert reply[b"interval"] == 300 and reply[b"min interval"] == 150
    peers = reply[b"peers"]
    assert isinstance(peers, bytes) and len(peers) % 6 == 0
    ports = [struct.unpack(">H", peers[i + 4 : i + 6])[0] for i in range(0, len(peers), 6)]
    assert ports == [51413], f"expected only the UDP seeder, got ports {ports}"

    # HTTP health check route of the tracker
    status, body = http_get(f"http://127.0.0.1:{s.http}/health_check")
    assert (status, json.loads(body)) == (200, {"status": "Ok"})

    after = json.loads(s.stats()[1])
    assert after["udp4_connections_handled"] == before["udp4_connections_handled"] + 1
    assert after["udp4_announces_handled"] == before["udp4_announces_handled"] + 1
    assert after["udp4_scrapes_handled"] == before["udp4_scrapes_handled"] + 1
    assert after["tcp4_announces_handled"] == before["tcp4_announces_handled"] + 1
    assert after["tcp4_connections_handled"] == before["tcp4_connections_handled"] + 1
    assert after["torrents"] == before["torrents"] + 1
    assert after["seeders"] == before["seeders"] + 1
    assert after["leechers"] == before["leechers"] + 1


UDP6_CLIENT = """
import socket, struct, sys
info_hash = bytes.fromhex(sys.argv[1])
def announce(port, left):
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.settimeout(5)
    s.sendto(struct.pack(">QII", 0x41727101980, 0, 11), ("::1", 6969))
    action, tid, cid = struct.unpack(">IIQ", s.recv(64))
    assert (action, tid) == (0, 11)
    s.sendto(struct.pack(">QII20s20sQQQIIIiH", cid, 1, 12, info_hash, bytes([port % 256]) * 20,
                         0, left, 0, 2, 0, 0, -1, port), ("::1", 6969))
    return s.recv(2048)
announce(4001, 0)
reply = announce(4002, 100)
print(reply.hex())
"""


def test_standin_udp_over_ipv6_returns_ipv6_peers_and_counts_udp6(standin_container):
    s = standin_container
    before = json.loads(s.stats()[1])
    info_hash = random.randbytes(20)
    out = docker("exec", s.name, "python3", "-c", UDP6_CLIENT, info_hash.hex()).stdout
    reply = bytes.fromhex(out.decode().strip())
    action, tid, interval, leechers, seeders = struct.unpack(">IIIII", reply[:20])
    assert (action, tid, interval, leechers, seeders) == (1, 12, 300, 1, 1)
    # one 18-byte IPv6 peer (::1 port 4001), not the asking peer itself
    assert reply[20:] == socket.inet_pton(socket.AF_INET6, "::1") + struct.pack(">H", 4001)
    after = json.loads(s.stats()[1])
    assert after["udp6_connections_handled"] == before["udp6_connections_handled"] + 2
    assert after["udp6_announces_handled"] == before["udp6_announces_handled"] + 2
    assert after["udp4_announces_handled"] == before["udp4_announces_handled"]


def test_standin_http_announce_errors_are_bencoded(standin_container):
    status, body = http_get(f"http://127.0.0.1:{standin_container.http}/announce?peer_id=x")
    assert status == 200
    assert b"failure reason" in standin.bdecode(body)


def test_standin_logs_name_the_stand_in_and_never_the_token(standin_container):
    text = logs(standin_container.name)
    assert "tracker stand-in (opentracker) listening: udp [::]:6969" in text
    assert "tracker stand-in (opentracker) listening: http tracker http://0.0.0.0:7070" in text
    assert ADMIN_TOKEN not in text


def _http_announce(port: int, info_hash: bytes, peer_id: bytes, left: int, event: str, headers=None) -> dict:
    query = urllib.parse.urlencode(
        {"info_hash": info_hash, "peer_id": peer_id, "port": 6881, "left": left, "event": event, "compact": 1},
        quote_via=urllib.parse.quote,
    )
    status, body = http_get(f"http://127.0.0.1:{port}/announce?{query}", headers=headers)
    assert status == 200
    return standin.bdecode(body)


def test_standin_behind_a_reverse_proxy_needs_x_forwarded_for(images, containers, tmp_path):
    cfg = tmp_path / "tracker.toml"
    cfg.write_text(TRACKER_TOML)
    http, api = free_port(), free_port()
    name = containers.run(
        "standin-xff",
        "-p",
        f"127.0.0.1:{http}:7070",
        "-p",
        f"127.0.0.1:{api}:1212",
        "-v",
        f"{cfg}:/etc/torrust/tracker/tracker.toml:ro",
        *STANDIN_ENV,
        "-e",
        f"TORRUST_TRACKER_CONFIG_OVERRIDE_HTTP_API__ACCESS_TOKENS__ADMIN={ADMIN_TOKEN}",
        "-e",
        "TORRUST_TRACKER_CONFIG_OVERRIDE_CORE__NET__ON_REVERSE_PROXY=true",
        images["tracker-standin"],
    )
    wait_for(lambda: http_get(f"http://127.0.0.1:{api}/api/health_check")[0] == 200, 30, "the API", name)
    info_hash, peer_id = random.randbytes(20), b"-TT0003-" + random.randbytes(12)

    reply = _http_announce(http, info_hash, peer_id, 10, "started")
    assert b"X-Forwarded-For" in reply[b"failure reason"], reply

    reply = _http_announce(http, info_hash, peer_id, 10, "started", {"X-Forwarded-For": "198.51.100.1, 2001:db8::5"})
    assert b"failure reason" not in reply, reply
    assert reply[b"incomplete"] == 1
    stats = json.loads(http_get(f"http://127.0.0.1:{api}/api/v1/stats?token={ADMIN_TOKEN}")[1])
    # the right-most X-Forwarded-For address is the peer: an IPv6 peer
    assert (stats["tcp6_announces_handled"], stats["tcp4_announces_handled"]) == (1, 0)


def test_standin_with_mysql_from_the_mariadb_image(images, tmp_path):
    network = unique("net")
    containers = Containers()  # its own: removed before the network
    docker("network", "create", network)
    try:
        password = "p@ss:w/rd#" + uuid.uuid4().hex[:6]
        db = containers.run(
            "standin-db",
            "--network",
            network,
            "--network-alias",
            "mysql",
            "-e",
            "MYSQL_ROOT_PASSWORD=" + uuid.uuid4().hex,
            "-e",
            "MYSQL_DATABASE=torrust_tracker",
            "-e",
            "MYSQL_USER=torrust",
            "-e",
            f"MYSQL_PASSWORD={password}",
            images["mariadb"],
        )
        cfg = tmp_path / "tracker.toml"
        cfg.write_text(TRACKER_TOML + "\n[core.tracker_policy]\npersistent_torrent_completed_stat = true\n")
        dsn = f"mysql://torrust:{urllib.parse.quote(password, safe='')}@mysql:3306/torrust_tracker"
        http, api = free_port(), free_port()
        tracker = containers.run(
            "standin-mysql",
            "--network",
            network,
            "-p",
            f"127.0.0.1:{http}:7070",
            "-p",
            f"127.0.0.1:{api}:1212",
            "-v",
            f"{cfg}:/etc/torrust/tracker/tracker.toml:ro",
            "-e",
            "TORRUST_TRACKER_CONFIG_OVERRIDE_CORE__DATABASE__DRIVER=mysql",
            "-e",
            f"TORRUST_TRACKER_CONFIG_OVERRIDE_CORE__DATABASE__PATH={dsn}",
            "-e",
            f"TORRUST_TRACKER_CONFIG_OVERRIDE_HTTP_API__ACCESS_TOKENS__ADMIN={ADMIN_TOKEN}",
            images["tracker-standin"],
        )
        # the stand-in waits for MariaDB's first initialisation
        wait_for(lambda: http_get(f"http://127.0.0.1:{api}/api/health_check")[0] == 200, 90, "the API", tracker)
        info_hash, peer_id = random.randbytes(20), b"-TT0004-" + random.randbytes(12)
        assert b"failure reason" not in _http_announce(http, info_hash, peer_id, 10, "started")
        assert b"failure reason" not in _http_announce(http, info_hash, peer_id, 0, "completed")

        proc = mysql_as_user(db, "SELECT info_hash, completed FROM torrents;", password=password)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.decode().split() == [info_hash.hex(), "1"]
        proc = mysql_as_user(db, "SHOW TABLES;", password=password)
        assert set(proc.stdout.decode().split()) == {
            "whitelist",
            "torrents",
            "keys",
        }  # v3.0.0 has no torrent_aggregate_metrics
        text = logs(tracker)
        assert password not in text and urllib.parse.quote(password, safe="") not in text
    finally:
        containers.cleanup()
        docker("network", "rm", network, check=False)


def _standin_run_once(images, tmp_path, toml: str, *env: str) -> subprocess.CompletedProcess:
    cfg = tmp_path / "tracker.toml"
    cfg.write_text(toml)
    name = unique("standin-once")
    try:
        return docker(
            "run",
            "--name",
            name,
            "-v",
            f"{cfg}:/etc/torrust/tracker/tracker.toml:ro",
            *env,
            images["tracker-standin"],
            check=False,
            timeout=60,
        )
    finally:
        docker("rm", "-f", "-v", name, check=False)


def test_standin_refuses_an_unknown_key(images, tmp_path):
    toml = TRACKER_TOML.replace("[core.net]\n", "[core.net]\nbogus_setting = true\n")
    proc = _standin_run_once(
        images,
        tmp_path,
        toml,
        *STANDIN_ENV,
        "-e",
        f"TORRUST_TRACKER_CONFIG_OVERRIDE_HTTP_API__ACCESS_TOKENS__ADMIN={ADMIN_TOKEN}",
    )
    assert proc.returncode != 0
    assert b"core.net.bogus_setting" in proc.stderr, proc.stderr


def test_standin_refuses_an_unknown_override_variable(images, tmp_path):
    proc = _standin_run_once(
        images,
        tmp_path,
        TRACKER_TOML,
        *STANDIN_ENV,
        "-e",
        f"TORRUST_TRACKER_CONFIG_OVERRIDE_HTTP_API__ACCESS_TOKENS__ADMIN={ADMIN_TOKEN}",
        "-e",
        "TORRUST_TRACKER_CONFIG_OVERRIDE_CORE__DATABASE__PASSWORD=x",
    )
    assert proc.returncode != 0
    assert b"core.database.password" in proc.stderr, proc.stderr


def test_standin_refuses_to_start_without_an_admin_token(images, tmp_path):
    proc = _standin_run_once(images, tmp_path, TRACKER_TOML, *STANDIN_ENV)
    assert proc.returncode != 0
    assert b"admin token" in proc.stderr, proc.stderr


def test_standin_refuses_another_schema_version(images, tmp_path):
    proc = _standin_run_once(
        images,
        tmp_path,
        TRACKER_TOML.replace('"2.0.0"', '"1.0.0"'),
        *STANDIN_ENV,
        "-e",
        f"TORRUST_TRACKER_CONFIG_OVERRIDE_HTTP_API__ACCESS_TOKENS__ADMIN={ADMIN_TOKEN}",
    )
    assert proc.returncode != 0
    assert b"schema_version" in proc.stderr, proc.stderr


def test_standin_stops_quickly_and_cleanly_on_sigterm(images, containers, tmp_path):
    cfg = tmp_path / "tracker.toml"
    cfg.write_text(TRACKER_TOML)
    api = free_port()
    name = containers.run(
        "standin-stop",
        "-p",
        f"127.0.0.1:{api}:1212",
        # IPv6 on the container's loopback, for the [::]:6969 dual-stack binding
        "--sysctl",
        "net.ipv6.conf.all.disable_ipv6=0",
        "--sysctl",
        "net.ipv6.conf.lo.disable_ipv6=0",
        "-v",
        f"{cfg}:/etc/torrust/tracker/tracker.toml:ro",
        *STANDIN_ENV,
        "-e",
        f"TORRUST_TRACKER_CONFIG_OVERRIDE_HTTP_API__ACCESS_TOKENS__ADMIN={ADMIN_TOKEN}",
        images["tracker-standin"],
    )
    wait_for(lambda: http_get(f"http://127.0.0.1:{api}/api/health_check")[0] == 200, 30, "the API", name)
    docker("stop", "-t", "10", name)
    # 0, not 137: it stopped on SIGTERM, before Docker's SIGKILL after the 10 s grace
    assert docker("inspect", "-f", "{{.State.ExitCode}}", name).stdout.strip() == b"0"


# ------------------------------------------------- tracker stand-in: release profiles
# Each profile behaves like one Torrust release (tracker-standin/README.md). The expected
# texts below are the releases' own (v3.0.0: the source files named in the README).

CANARY = bytes.fromhex("c0ffee00" * 5)


def _run_profile(images, containers, prefix: str, toml: str, key: str = "tracker-standin") -> Standin:
    """A stand-in of one profile with `toml`, its UDP, HTTP and API ports on 127.0.0.1."""
    cfg_dir = Path(tempfile.mkdtemp(prefix="standin-profile-"))
    (cfg_dir / "tracker.toml").write_text(toml)
    udp, http, api = free_port(socket.SOCK_DGRAM), free_port(), free_port()
    name = containers.run(
        prefix,
        "-p", f"127.0.0.1:{udp}:6969/udp", "-p", f"127.0.0.1:{http}:7070", "-p", f"127.0.0.1:{api}:1212",
        "-v", f"{cfg_dir / 'tracker.toml'}:/etc/torrust/tracker/tracker.toml:ro",
        *STANDIN_ENV,
        "-e", f"TORRUST_TRACKER_CONFIG_OVERRIDE_HTTP_API__ACCESS_TOKENS__ADMIN={ADMIN_TOKEN}",
        images[key],
    )  # fmt: skip
    wait_for(lambda: http_get(f"http://127.0.0.1:{api}/api/health_check")[0] == 200, 30, "the API", name)
    return Standin(name, udp, http, api)


def _api(s: Standin, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    sep = "&" if "?" in path else "?"
    req = urllib.request.Request(
        f"http://127.0.0.1:{s.api}{path}{sep}token={ADMIN_TOKEN}", data=body, method=method, headers=headers or {}
    )
    try:
        with _opener.open(req, timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _announce(s: Standin, info_hash: bytes, key: str = "", event: str = "started") -> dict:
    query = urllib.parse.urlencode(
        {"info_hash": info_hash, "peer_id": b"-TT0009-" + random.randbytes(12), "port": 6881, "left": 0,
         "event": event, "compact": 1},
        quote_via=urllib.parse.quote,
    )  # fmt: skip
    status, body = http_get(f"http://127.0.0.1:{s.http}/announce{'/' + key if key else ''}?{query}")
    assert status == 200, body
    return standin.bdecode(body)


TABLES = """
import sqlite3
db = sqlite3.connect("/var/lib/torrust/tracker/database/sqlite3.db")
rows = db.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
print(" ".join(sorted(r[0] for r in rows)))
"""


def _tables(s: Standin) -> list[str]:
    return docker("exec", s.name, "python3", "-c", TABLES).stdout.decode().split()


def _reason(reply: dict) -> str:
    return reply.get(b"failure reason", b"").decode()


PRIVATE_LISTED_TOML = TRACKER_TOML.replace(
    "listed = false\nprivate = false\n", "listed = true\nprivate = true\n"
).replace("[core.announce_policy]", "[core.private_mode]\ncheck_keys_expiration = true\n\n[core.announce_policy]")


@pytest.fixture(scope="module")
def private_listed_container(images, containers) -> Standin:
    return _run_profile(images, containers, "standin-private", PRIVATE_LISTED_TOML)


def test_v3_private_mode_starts_no_udp_tracker(private_listed_container):
    s = private_listed_container
    out = docker("logs", s.name).stdout.decode()
    assert (
        "Could not start UDP tracker on: [::]:6969 while in private mode. UDP is not safe for private trackers!" in out
    )
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(1)
    try:
        with pytest.raises(OSError):  # refused (ICMP) or silence: nothing listens
            _udp_roundtrip(sock, s.udp, struct.pack(">QII", UDP_PROTOCOL_ID, 0, 7))
    finally:
        sock.close()


def test_v3_private_announce_needs_a_key_made_through_the_api(private_listed_container):
    s = private_listed_container
    assert _api(s, "POST", f"/api/v1/whitelist/{CANARY.hex()}") == (200, b'{"status":"ok"}')
    assert _reason(_announce(s, CANARY)) == (
        "Authentication error: Missing authentication key param for private tracker. "
        "Error in src/servers/http/v1/handlers/announce.rs:95:31"
    )
    status, body = _api(
        s, "POST", "/api/v1/keys", b'{"key":null,"seconds_valid":600}', {"Content-Type": "application/json"}
    )
    assert status == 200, body
    key = json.loads(body)["key"]
    assert len(key) == 32 and key.isalnum() and json.loads(body)["valid_until"] > time.time()
    reply = _announce(s, CANARY, key)
    assert b"failure reason" not in reply and reply[b"interval"] == 300
    assert _reason(_announce(s, CANARY, "x" * 32)) == (
        "Authentication error: Failed to read key: " + "x" * 32 + ", src/core/mod.rs:1047:27"
    )
    assert _reason(_announce(s, CANARY, "short")) == (
        "Authentication error: Invalid format for authentication key param. "
        "Error in src/servers/http/v1/extractors/authentication_key.rs:117:23"
    )
    # the JSON form needs its content type, as axum's Json extractor does
    assert _api(s, "POST", "/api/v1/keys", b'{"key":null,"seconds_valid":60}')[0] == 415
    assert _api(s, "DELETE", f"/api/v1/key/{key}") == (200, b'{"status":"ok"}')
    assert _reason(_announce(s, CANARY, key)).startswith(f"Authentication error: Failed to read key: {key}")


def test_v3_private_key_expiry_and_scrape_without_a_key(private_listed_container):
    s = private_listed_container
    status, body = _api(s, "POST", "/api/v1/key/0")  # valid for 0 seconds: expired at once
    assert status == 200, body
    expired = json.loads(body)["key"]
    time.sleep(1.1)  # the expiry has a one-second resolution
    assert _reason(_announce(s, CANARY, expired)) == "Authentication error: Key has expired, src/core/auth.rs:115:31"
    assert _api(s, "POST", "/api/v1/key/soon") == (400, b"Invalid URL: Cannot parse `soon` to a `u64`")
    # without a key a private tracker answers a scrape with zeros (Torrust's fake scrape)
    query = urllib.parse.urlencode({"info_hash": CANARY}, quote_via=urllib.parse.quote)
    status, body = http_get(f"http://127.0.0.1:{s.http}/scrape?{query}")
    assert standin.bdecode(body)[b"files"][CANARY] == {b"complete": 0, b"downloaded": 0, b"incomplete": 0}


def test_v3_listed_mode_whitelist_lives_in_memory_and_reloads_from_the_database(private_listed_container):
    s = private_listed_container
    _status, body = _api(
        s, "POST", "/api/v1/keys", b'{"key":null,"seconds_valid":600}', {"Content-Type": "application/json"}
    )
    key = json.loads(body)["key"]
    other = random.randbytes(20)
    assert _reason(_announce(s, other, key)) == (
        f"Tracker error: The torrent: {other.hex()}, is not whitelisted, src/core/mod.rs:1106:23"
    )
    # written to the database behind the tracker's back: not seen until a reload
    docker("exec", s.name, "python3", "-c",
           "import sqlite3,sys; c=sqlite3.connect('/var/lib/torrust/tracker/database/sqlite3.db');"
           "c.execute('INSERT INTO whitelist (info_hash) VALUES (?)', (sys.argv[1],)); c.commit()",
           other.hex())  # fmt: skip
    assert "is not whitelisted" in _reason(_announce(s, other, key))
    assert _api(s, "GET", "/api/v1/whitelist/reload") == (200, b'{"status":"ok"}')
    assert b"failure reason" not in _announce(s, other, key)
    assert _api(s, "POST", "/api/v1/whitelist/nothex") == (
        400,
        b'Invalid URL: invalid infohash param: string "nothex", expected a 40 character long string',
    )
    assert _api(s, "POST", "/api/v1/whitelist/reload")[0] == 405  # a static segment wins, GET only


def test_v3_creates_exactly_its_tables(private_listed_container):
    assert _tables(private_listed_container) == [
        "keys",
        "torrents",
        "whitelist",
    ]  # no torrent_aggregate_metrics in v3.0.0


@pytest.fixture(scope="module")
def develop_container(images, containers) -> Standin:
    return _run_profile(images, containers, "standin-develop", TRACKER_TOML, key="tracker-standin-develop")


def test_develop_stats_in_prometheus_format_and_the_later_fields(develop_container):
    s = develop_container
    status, body = s.stats()
    fields = list(json.loads(body))
    assert status == 200 and fields[:4] == ["torrents", "seeders", "completed", "leechers"]
    assert {"udp_requests_aborted", "udp4_requests", "udp6_errors_handled"} <= set(fields) and len(fields) == 28
    status, body = s.stats(extra="&format=prometheus")
    lines = body.decode().split("\n")
    assert status == 200 and not body.endswith(b"\n")  # lines joined by \n (stats/responses.rs)
    assert [line.split(" ")[0] for line in lines] == fields and all(line.split(" ")[1].isdigit() for line in lines)
    assert s.stats(extra="&format=xml") == (
        400,
        b"Failed to deserialize query string: unknown variant `xml`, expected `json` or `prometheus`",
    )


def test_develop_labelled_metrics_parse_as_prometheus_text(develop_container):
    s = develop_container
    _announce(s, random.randbytes(20))
    status, body = http_get(f"http://127.0.0.1:{s.api}/api/v1/metrics?token={ADMIN_TOKEN}&format=prometheus")
    assert status == 200
    sample = re.compile(r'^[a-z_]+\{([a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*)?\} \d+$')
    lines = body.decode().split("\n")
    assert all(sample.match(line) for line in lines), lines
    assert any(
        line.startswith('http_tracker_core_requests_received_total{request_kind="announce",server_binding_ip="0.0.0.0"')
        for line in lines
    ), lines


def test_develop_accepts_the_token_in_a_bearer_header(develop_container):
    api = f"http://127.0.0.1:{develop_container.api}/api/v1/stats"
    assert http_get(api, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})[0] == 200
    # the header wins over the query
    assert http_get(f"{api}?token=wrong", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})[0] == 200
    assert http_get(f"{api}?token={ADMIN_TOKEN}", headers={"Authorization": "Bearer wrong"}) == (
        500,
        b'Unhandled rejection: Err { reason: "token not valid" }',
    )
    assert http_get(api, headers={"Authorization": f"Basic {ADMIN_TOKEN}"}) == (
        500,
        b'Unhandled rejection: Err { reason: "unknown token provided" }',
    )


def test_develop_creates_the_later_metrics_table(develop_container):
    assert _tables(develop_container) == ["keys", "torrent_aggregate_metrics", "torrents", "whitelist"]


LOADER_REFUSALS = [
    (
        TRACKER_TOML.replace('threshold = "info"\n', ""),
        'MissingMandatoryOption { path: "logging.threshold" }',
    ),
    (TRACKER_TOML.replace("listed = false\n", ""), 'MissingMandatoryOption { path: "core.listed" }'),
    (
        TRACKER_TOML.replace('threshold = "info"', 'threshold = "verbose"'),
        'kind: UnknownVariant("verbose", ["off", "error", "warn", "info", "debug", "trace"])',
    ),
    (
        TRACKER_TOML.replace('app = "torrust-tracker"', 'app = "torrust-index"'),
        'path: ["metadata", "app"], kind: UnknownVariant("torrust-index", ["torrust-tracker"])',
    ),
    (
        TRACKER_TOML.replace('purpose = "configuration"', 'purpose = "config"'),
        'kind: UnknownVariant("config", ["configuration"])',
    ),
    (
        TRACKER_TOML.replace("private = false", 'private = "no"'),
        'path: ["core", "private"], kind: InvalidType(Str("no"), "a boolean")',
    ),
    (
        TRACKER_TOML.replace(
            "[core.announce_policy]", "[core.private_mode]\ncheck_keys_expiration = true\n\n[core.announce_policy]"
        ),
        "Configuration error: Private mode section in configuration can only be included when the tracker is "
        "running in private mode.",
    ),
    (
        TRACKER_TOML.replace('"2.0.0"', '"3.0.0"'),
        'UnsupportedVersion { version: Version { schema_version: "3.0.0" } }',
    ),
]


@pytest.mark.parametrize("key", ["tracker-standin", "tracker-standin-develop"])
@pytest.mark.parametrize(("toml", "expected"), LOADER_REFUSALS, ids=[
    "no-threshold", "no-listed", "bad-threshold", "bad-app", "bad-purpose", "private-not-bool",
    "private-mode-not-private", "schema-3",
])  # fmt: skip
def test_standin_loader_refuses_what_the_release_refuses(images, tmp_path, key, toml, expected):
    cfg = tmp_path / "tracker.toml"
    cfg.write_text(toml)
    name = unique("standin-loader")
    try:
        proc = docker(
            "run", "--name", name, "-v", f"{cfg}:/etc/torrust/tracker/tracker.toml:ro", *STANDIN_ENV,
            "-e", f"TORRUST_TRACKER_CONFIG_OVERRIDE_HTTP_API__ACCESS_TOKENS__ADMIN={ADMIN_TOKEN}",
            images[key], check=False, timeout=60,
        )  # fmt: skip
    finally:
        docker("rm", "-f", "-v", name, check=False)
    assert proc.returncode == 101, proc.stderr  # a Rust panic's exit code
    err = proc.stderr.decode()
    assert expected in err and "thread 'main' panicked" in err, err


def test_standin_mandatory_option_from_an_override_variable_counts(images, tmp_path):
    """check_mandatory_options looks at the file and the override variables together."""
    cfg = tmp_path / "tracker.toml"
    cfg.write_text(TRACKER_TOML.replace("listed = false\n", "").replace("private = false\n", 'private = "x"\n'))
    name = unique("standin-loader")
    try:
        proc = docker(
            "run", "--name", name, "-v", f"{cfg}:/etc/torrust/tracker/tracker.toml:ro", *STANDIN_ENV,
            "-e", "TORRUST_TRACKER_CONFIG_OVERRIDE_CORE__LISTED=false",
            "-e", f"TORRUST_TRACKER_CONFIG_OVERRIDE_HTTP_API__ACCESS_TOKENS__ADMIN={ADMIN_TOKEN}",
            images["tracker-standin"], check=False, timeout=60,
        )  # fmt: skip
    finally:
        docker("rm", "-f", "-v", name, check=False)
    # past the mandatory check (listed came from the variable), stopped at the next fault
    assert proc.returncode == 101 and b'InvalidType(Str("x"), "a boolean")' in proc.stderr, proc.stderr


def test_tool_table_and_standin_profiles_agree():
    """The tool's release table (tasks/config/trackers.py) and the stand-in describe each
    release the same way: a drift between them would let a test pass the real image fails."""
    from tasks.config import trackers

    for name, profile in standin.PROFILES.items():
        release = trackers.RELEASES[name]
        assert f"torrust-test/tracker-standin:{name}" in release.standins
        assert profile.tables == release.tables
        assert profile.metrics_route == (release.metrics_route is not None)
        assert profile.stats_prometheus == release.stats_prometheus
        assert profile.bearer == release.header_token
        assert set(standin.MANDATORY) == set(release.mandatory_options)
        assert standin.ENUMS["logging.threshold"] == release.enum("logging.threshold")
    assert set(standin.PROFILES) == set(trackers.RELEASES)


# ------------------------------------------------------------------------- mariadb

DB_ROOT_PASSWORD = "root-" + uuid.uuid4().hex[:8] + "'\"x"
DB_USER_PASSWORD = "user-" + uuid.uuid4().hex[:8] + "@:/#"


@pytest.fixture(scope="module")
def mariadb_container(images, containers) -> tuple[str, int]:
    port = free_port()
    name = containers.run(
        "mariadb",
        "-p",
        f"127.0.0.1:{port}:3306",
        "-e",
        f"MYSQL_ROOT_PASSWORD={DB_ROOT_PASSWORD}",
        "-e",
        "MYSQL_DATABASE=torrust_tracker",
        "-e",
        "MYSQL_USER=torrust",
        "-e",
        f"MYSQL_PASSWORD={DB_USER_PASSWORD}",
        images["mariadb"],
        "--max-connections=77",
        "--character-set-server=utf8mb4",
    )

    def greeting() -> bool:
        # The final server (not the socket-only init server) sends its handshake.
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            data = sock.recv(256)
        return len(data) > 5 and data[4] == 10 and b"MariaDB" in data

    wait_for(greeting, 90, "MariaDB to accept TCP connections", name, interval=0.5)
    return name, port


def mysql_as_user(
    name: str, sql: str, user: str = "torrust", password: str = DB_USER_PASSWORD, database: str = "torrust_tracker"
) -> subprocess.CompletedProcess:
    # MYSQL_PWD through the environment of docker exec: not on any command line.
    return docker(
        "exec",
        "-e",
        f"MYSQL_PWD={password}",
        name,
        "mysql",
        "--protocol=tcp",
        "-h",
        "127.0.0.1",
        "-u",
        user,
        "-N",
        "-B",
        database,
        "-e",
        sql,
        check=False,
        timeout=30,
    )


def test_mariadb_user_owns_its_database(mariadb_container):
    name, _ = mariadb_container
    proc = mysql_as_user(
        name,
        "CREATE TABLE torrents (id INT PRIMARY KEY, info_hash VARCHAR(40) NOT NULL UNIQUE);"
        "INSERT INTO torrents VALUES (1, 'abc'); SELECT info_hash FROM torrents;",
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.decode().strip() == "abc"
    # ... and only that database
    proc = mysql_as_user(name, "CREATE DATABASE other_db;")
    assert proc.returncode != 0
    assert b"denied" in proc.stderr.lower()


def test_mariadb_root_password_and_server_arguments(mariadb_container):
    name, _ = mariadb_container
    proc = mysql_as_user(
        name,
        "SELECT @@max_connections, @@character_set_server;",
        user="root",
        password=DB_ROOT_PASSWORD,
        database="mysql",
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.decode().split() == ["77", "utf8mb4"]
    proc = mysql_as_user(name, "SELECT 1;", user="root", password="wrong", database="mysql")
    assert proc.returncode != 0


def test_mariadb_mysqldump_and_mysqladmin(mariadb_container):
    name, _ = mariadb_container
    mysql_as_user(name, "CREATE TABLE IF NOT EXISTS dumped (v INT); INSERT INTO dumped VALUES (42);")
    proc = docker(
        "exec",
        "-e",
        f"MYSQL_PWD={DB_USER_PASSWORD}",
        name,
        "mysqldump",
        "--protocol=tcp",
        "-h",
        "127.0.0.1",
        "-u",
        "torrust",
        "--single-transaction",
        "--no-tablespaces",
        "torrust_tracker",
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    dump = proc.stdout.decode()
    assert "CREATE TABLE `dumped`" in dump
    assert "INSERT INTO `dumped` VALUES" in dump and "(42)" in dump
    proc = docker(
        "exec",
        "-e",
        f"MYSQL_PWD={DB_USER_PASSWORD}",
        name,
        "mysqladmin",
        "--protocol=tcp",
        "-h",
        "127.0.0.1",
        "-u",
        "torrust",
        "ping",
        check=False,
    )
    assert proc.returncode == 0 and b"mysqld is alive" in proc.stdout, proc.stdout + proc.stderr


def test_mariadb_no_password_on_the_server_command_line(mariadb_container):
    name, _ = mariadb_container
    cmdline = docker("exec", name, "cat", "/proc/1/cmdline").stdout.replace(b"\0", b" ").decode()
    assert "mariadbd" in cmdline and "--max-connections=77" in cmdline
    assert DB_ROOT_PASSWORD not in cmdline and DB_USER_PASSWORD not in cmdline


def _mariadb_run_once(images, *env: str) -> subprocess.CompletedProcess:
    name = unique("mariadb-once")
    try:
        return docker("run", "--name", name, *env, images["mariadb"], check=False, timeout=60)
    finally:
        docker("rm", "-f", "-v", name, check=False)


def test_mariadb_refuses_mysql_user_root(images):
    proc = _mariadb_run_once(images, "-e", "MYSQL_ROOT_PASSWORD=x", "-e", "MYSQL_USER=root", "-e", "MYSQL_PASSWORD=y")
    assert proc.returncode != 0
    assert b'MYSQL_USER="root"' in proc.stderr, proc.stderr


def test_mariadb_refuses_to_initialise_without_a_root_password(images):
    proc = _mariadb_run_once(images, "-e", "MYSQL_DATABASE=x")
    assert proc.returncode != 0
    assert b"MYSQL_ROOT_PASSWORD" in proc.stderr, proc.stderr


# --------------------------------------------------------------- caddy, prometheus

GOOD_CADDYFILE = """\
{
	email admin@example.org
}

tracker.torrust.local {
	tls internal
	reverse_proxy tracker:7070 {
		header_up X-Forwarded-For {remote_host}
	}
}

api.torrust.local {
	tls internal
	reverse_proxy tracker:1212
}
"""

BAD_CADDYFILE = """\
tracker.torrust.local {
	reverse_proxy tracker:7070 {
		no_such_subdirective on
	}
}
"""


def _caddy_validate(images, tmp_path, text: str) -> subprocess.CompletedProcess:
    (tmp_path / "Caddyfile").write_text(text)
    return docker(
        "run",
        "--rm",
        "-v",
        f"{tmp_path}:/cfg:ro",
        images["caddy"],
        "caddy",
        "validate",
        "--config",
        "/cfg/Caddyfile",
        "--adapter",
        "caddyfile",
        check=False,
    )


def test_caddy_validates_a_good_caddyfile(images, tmp_path):
    proc = _caddy_validate(images, tmp_path, GOOD_CADDYFILE)
    assert proc.returncode == 0, proc.stderr
    assert b"Valid configuration" in proc.stdout + proc.stderr


def test_caddy_rejects_a_bad_caddyfile(images, tmp_path):
    proc = _caddy_validate(images, tmp_path, BAD_CADDYFILE)
    assert proc.returncode != 0
    assert b"no_such_subdirective" in proc.stderr


def test_caddy_image_layout(images):
    config = json.loads(docker("image", "inspect", "-f", "{{json .Config}}", images["caddy"]).stdout)
    assert config["Cmd"] == ["caddy", "run", "--config", "/etc/caddy/Caddyfile", "--adapter", "caddyfile"]
    assert "XDG_DATA_HOME=/data" in config["Env"] and "XDG_CONFIG_HOME=/config" in config["Env"]


GOOD_PROMETHEUS = """\
global:
  scrape_interval: 15s
scrape_configs:
  - job_name: tracker_stats
    metrics_path: /api/v1/stats
    params:
      token: ["secret"]
      format: ["prometheus"]
    static_configs:
      - targets: ["tracker:1212"]
"""

BAD_PROMETHEUS = """\
global:
  scrape_interval: often
scrape_configs:
  - job_name: tracker_stats
    static_configs:
      - targets: ["tracker:1212"]
"""


def _promtool(images, tmp_path, text: str) -> subprocess.CompletedProcess:
    (tmp_path / "prometheus.yml").write_text(text)
    # promtool runs as nobody: pytest's tmp_path is private to root.
    tmp_path.chmod(0o755)
    (tmp_path / "prometheus.yml").chmod(0o644)
    return docker(
        "run",
        "--rm",
        "-v",
        f"{tmp_path}:/cfg:ro",
        "--entrypoint",
        "/bin/promtool",
        images["prometheus"],
        "check",
        "config",
        "/cfg/prometheus.yml",
        check=False,
    )


def test_promtool_accepts_a_good_config(images, tmp_path):
    proc = _promtool(images, tmp_path, GOOD_PROMETHEUS)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert b"SUCCESS" in proc.stdout + proc.stderr


def test_promtool_rejects_a_bad_config(images, tmp_path):
    proc = _promtool(images, tmp_path, BAD_PROMETHEUS)
    assert proc.returncode != 0
    assert b"FAILED" in proc.stdout + proc.stderr


def test_prometheus_runs_as_nobody_with_a_writable_tsdb(images):
    proc = docker(
        "run",
        "--rm",
        "--entrypoint",
        "/bin/sh",
        images["prometheus"],
        "-c",
        "id -u && touch /prometheus/probe && /bin/prometheus --version && command -v wget",
    )
    out = proc.stdout.decode()
    assert out.splitlines()[0] == "65534"
    assert "prometheus, version 2.42" in out


# ------------------------------------------------------------------------- sshhost


def _ssh_keygen(path: Path, comment: str) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)], check=True, timeout=30
    )


@pytest.fixture(scope="module")
def sshhost(images, containers, tmp_path_factory):
    if shutil.which("ssh") is None or shutil.which("ssh-keygen") is None:
        pytest.fail("openssh-client is not installed: run .ci/install.sh")
    d = tmp_path_factory.mktemp("sshhost")
    _ssh_keygen(d / "id_ed25519", "deploy@test")
    host_keys = d / "host_keys"
    host_keys.mkdir()
    _ssh_keygen(host_keys / "ssh_host_ed25519_key", "host@test")
    (d / "authorized_keys").write_text((d / "id_ed25519.pub").read_text())
    port = free_port()
    name = containers.run(
        "sshhost",
        "--network",
        "host",
        "-v",
        "/var/run/docker.sock:/var/run/docker.sock",
        "-v",
        f"{d / 'authorized_keys'}:/run/deploy/authorized_keys:ro",
        "-v",
        f"{host_keys}:/run/deploy/host_keys:ro",
        "-e",
        f"SSH_PORT={port}",
        "-e",
        "SSH_LISTEN=127.0.0.1",
        images["sshhost"],
    )
    # Pin the host key we handed to the container: strict checking, no TOFU.
    host_pub = (host_keys / "ssh_host_ed25519_key.pub").read_text().split()
    known_hosts = d / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{port} {host_pub[0]} {host_pub[1]}\n")
    wait_for(lambda: "Server listening on 127.0.0.1" in logs(name), 30, "sshd", name)

    def ssh(command: str, *extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [
                "ssh",
                "-o",
                "BatchMode=yes",
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                f"UserKnownHostsFile={known_hosts}",
                "-o",
                "ConnectTimeout=10",
                "-i",
                str(d / "id_ed25519"),
                "-p",
                str(port),
                *extra,
                "torrust@127.0.0.1",
                command,
            ],
            capture_output=True,
            timeout=60,
        )

    return name, ssh


def test_sshhost_docker_compose_v2_over_ssh(sshhost):
    _, ssh = sshhost
    proc = ssh("docker compose version")
    assert proc.returncode == 0, proc.stderr
    assert re.search(rb"version v?2\.\d+", proc.stdout), proc.stdout


def test_sshhost_non_root_user_runs_docker(sshhost):
    name, ssh = sshhost
    proc = ssh("id -u && docker ps --format '{{.Names}}'")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.decode().split()
    assert lines[0] == "1000"
    assert name in lines[1:], "the deploy user's docker ps does not show the sshhost container"


def test_sshhost_sudo_rsync_python(sshhost):
    _, ssh = sshhost
    proc = ssh("sudo -n true && rsync --version >/dev/null && python3 -c 'print(6*7)'")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.decode().strip() == "42"


def test_sshhost_refuses_password_authentication(sshhost):
    _, ssh = sshhost
    proc = ssh("true", "-o", "PreferredAuthentications=password,keyboard-interactive", "-o", "PubkeyAuthentication=no")
    assert proc.returncode == 255
    assert b"Permission denied" in proc.stderr
