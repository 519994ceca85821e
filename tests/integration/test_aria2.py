"""A real BitTorrent client end to end: aria2 seeds over the UDP tracker, another aria2 leeches over HTTP.

The local release runs on the test images (as in test_stack.py). The seeder announces to
the published UDP tracker; the leecher announces to the HTTP tracker through the Caddy
proxy. The proxy serves the tracker under its public name only, which does not resolve
here, so a small forwarder on 127.0.0.1 (tests/integration/faults.py) sets that Host
header and relays to the proxy's published port; Caddy still adds X-Forwarded-For, which
the tracker requires. The file must arrive byte for byte and the tracker's statistics
must show the announces of both protocols.

Peers: the tracker sees both clients at the Compose network's gateway (the host, on a
bridge network this test created), so the leecher reaches the seeder there.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests

from tests.integration.conftest import free_port
from tests.integration.faults import ForwardingProxy

pytestmark = pytest.mark.integration

SIZE = 4 << 20
CLIENT_SECONDS = 60  # each aria2c stops by itself after this (--stop), and is killed in a finalizer anyway


@pytest.fixture
def stack(rendered_stack):
    return rendered_stack.settings, rendered_stack.udp_port, rendered_stack.http_port


class Clients:
    """The aria2c processes of one test: each bounded by --stop, all killed at the end."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.procs: list[tuple[subprocess.Popen, Path]] = []

    def start(self, name: str, torrent: Path, directory: Path, *options: str) -> subprocess.Popen:
        log = self.workdir / f"{name}.log"
        argv = [
            "aria2c",
            "--no-conf=true",
            f"--dir={directory}",
            f"--listen-port={free_port()}",
            f"--stop={CLIENT_SECONDS}",
            f"--log={log}",
            "--log-level=info",
            "--console-log-level=warn",
            "--summary-interval=0",
            "--disable-ipv6=true",
            "--enable-dht6=false",
            "--enable-peer-exchange=false",
            "--bt-enable-lpd=false",
            "--file-allocation=none",
            f"--dht-file-path={self.workdir / f'{name}-dht.dat'}",
            *options,
            str(torrent),
        ]
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.procs.append((proc, log))
        return proc

    def log(self, proc: subprocess.Popen) -> str:
        log = next(path for p, path in self.procs if p is proc)
        text = log.read_text(errors="replace") if log.exists() else ""
        return "\n".join(text.splitlines()[-40:])

    def stop_all(self) -> None:
        for proc, _log in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc, _log in self.procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)


@pytest.fixture
def clients(tmp_path):
    missing = [tool for tool in ("aria2c", "mktorrent") if not shutil.which(tool)]
    if missing:
        pytest.fail(f"{', '.join(missing)} missing: apt-get install aria2 mktorrent (.ci/install.sh does)")
    c = Clients(tmp_path)
    yield c
    c.stop_all()


def make_torrent(source: Path, announce: str, out: Path) -> str:
    """A torrent of `source` announcing to `announce`; returns its info-hash (hex)."""
    subprocess.run(
        ["mktorrent", "--no-date", "--piece-length=18", f"--announce={announce}", f"--output={out}", str(source)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    shown = subprocess.run(["aria2c", "--show-files=true", str(out)], capture_output=True, text=True, timeout=30)
    match = re.search(r"Info Hash: ([0-9a-f]{40})", shown.stdout)
    assert match, shown.stdout
    return match.group(1)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_aria2_seeds_over_udp_and_leeches_over_http(stack, clients, tmp_path, request):
    s, udp_port, http_port = stack
    api = f"http://127.0.0.1:{http_port}/api/v1/stats"

    def stats() -> dict:
        reply = requests.get(api, params={"token": s.admin_token.reveal()}, headers={"Host": s.api_domain}, timeout=5)
        assert reply.status_code == 200, reply.text
        return reply.json()

    seed_dir, leech_dir = tmp_path / "seed", tmp_path / "leech"
    seed_dir.mkdir()
    leech_dir.mkdir()
    original = seed_dir / "payload.bin"
    original.write_bytes(os.urandom(SIZE))

    # the HTTP tracker's public name is only known to the proxy: a forwarder on 127.0.0.1 sets it
    forwarder = ForwardingProxy(http_port, set_headers={"Host": s.http_tracker_domains[0]})
    request.addfinalizer(forwarder.close)

    seed_hash = make_torrent(original, f"udp://127.0.0.1:{udp_port}/announce", tmp_path / "seed.torrent")
    leech_hash = make_torrent(original, f"http://127.0.0.1:{forwarder.port}/announce", tmp_path / "leech.torrent")
    assert seed_hash == leech_hash  # the announce URL is outside the info dictionary

    before = stats()
    assert before["seeders"] == 0 and before["torrents"] == 0, before

    seeder = clients.start(
        "seeder",
        tmp_path / "seed.torrent",
        seed_dir,
        "--enable-dht=true",  # aria2 speaks to UDP trackers only with DHT on (its UDP socket)
        f"--dht-listen-port={free_port(socket.SOCK_DGRAM)}",
        "--seed-ratio=0",
        "--bt-seed-unverified=true",
        "--check-integrity=true",
    )
    deadline = time.monotonic() + 120  # a hang guard only
    while (now := stats())["seeders"] < 1:
        assert seeder.poll() is None, f"seeder exited {seeder.returncode}:\n{clients.log(seeder)}"
        assert time.monotonic() < deadline, f"the seeder never announced over UDP: {now}\n{clients.log(seeder)}"
        time.sleep(0.3)
    assert now["udp4_announces_handled"] + now["udp6_announces_handled"] >= 1, now
    assert now["tcp4_announces_handled"] + now["tcp6_announces_handled"] == 0, now

    leecher = clients.start(
        "leecher",
        tmp_path / "leech.torrent",
        leech_dir,
        "--enable-dht=false",
        "--seed-time=0",
        "--bt-stop-timeout=30",
    )
    try:
        leecher.wait(timeout=CLIENT_SECONDS)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the download did not finish in {CLIENT_SECONDS}s:\n{clients.log(leecher)}")
    assert leecher.returncode == 0, f"leecher exited {leecher.returncode}:\n{clients.log(leecher)}"
    assert seeder.poll() is None, "the seeder stopped before the end"

    copy = leech_dir / original.name
    assert copy.stat().st_size == SIZE
    assert sha256(copy) == sha256(original)
    assert forwarder.requests and all(p.startswith("/announce?") for p, _h in forwarder.requests)

    after = stats()
    assert after["udp4_announces_handled"] + after["udp6_announces_handled"] >= 1, after
    assert after["tcp4_announces_handled"] + after["tcp6_announces_handled"] >= 1, after
    assert after["torrents"] == 1 and after["seeders"] >= 1, after
