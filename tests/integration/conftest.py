"""Integration fixtures: the test images, free loopback ports, an SSH host container.

Everything here is real: Docker Engine, Compose v2, sshd, the test images built from
Debian packages. Traffic goes to 127.0.0.1 / ::1 and Docker bridge networks only.
"""

from __future__ import annotations

import importlib.util
import json
import os
import random
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.integration

ADMIN_TOKEN = "Tq7-Wm2Zr9Xk4Lp8Yv3Nb6Hc1Jd5Fs0G"  # a strong test value, never a real one

TEST_IMAGES = {
    "TORRUST_TRACKER_IMAGE": "torrust-test/tracker-standin:v3.0.0",
    "TORRUST_MYSQL_IMAGE": "torrust-test/mariadb:10.11",
    "TORRUST_CADDY_IMAGE": "torrust-test/caddy:2.6",
    "TORRUST_PROMETHEUS_IMAGE": "torrust-test/prometheus:2.42",
    "TORRUST_GRAFANA_IMAGE": "torrust-test/grafana-standin:1",
}
# The stand-in of the develop build with metrics (tasks/config/trackers.py DEVELOP): for
# stacks with Prometheus scraping the tracker and Grafana.
DEVELOP_TRACKER = "torrust-test/tracker-standin:develop-02c33f69"


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


def _load_builder():
    spec = importlib.util.spec_from_file_location("test_image_build", ROOT / "tests/images/build.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def images() -> dict[str, str]:
    """Build (or reuse from cache) every test image; fail loudly if Docker is missing."""
    return _load_builder().build_images()


EPHEMERAL_LOW = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
_handed_out: set[int] = set()


def _bindable(port: int) -> bool:
    """Free for TCP and UDP on every IPv4 and IPv6 address (what a published port binds)."""
    for family, address in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
        for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
            try:
                s = socket.socket(family, kind)
            except OSError:  # no IPv6 on this machine: nothing to collide with there
                continue
            with s:
                if family == socket.AF_INET6:
                    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                try:
                    s.bind((address, port))
                except OSError:
                    return False
    return True


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port free for TCP and UDP, chosen below the kernel's ephemeral range (`kind` is
    kept for the callers; both are checked). The kernel hands ephemeral ports to client
    sockets, and docker-proxy holds one per UDP client for 90 s: a published port taken
    from that range could be taken by anyone while its container is stopped (a tracker
    stopped for a backup then could not start again)."""
    rng = random.SystemRandom()
    for _ in range(500):
        port = rng.randrange(20000, EPHEMERAL_LOW)
        if port not in _handed_out and _bindable(port):
            _handed_out.add(port)
            return port
    raise AssertionError(f"no free port between 20000 and {EPHEMERAL_LOW}")


def local_env(root: Path, project: str, **extra: str) -> dict[str, str]:
    """Settings of a test stack: the test images, its own deploy root and Compose project,
    free loopback ports for one UDP tracker and HTTP. `extra` adds or overrides variables."""
    return {
        **TEST_IMAGES,
        "TORRUST_DEPLOY_ROOT": str(root),
        "TORRUST_COMPOSE_PROJECT": project,
        "TORRUST_UDP_TRACKERS": f"[::]:{free_port(socket.SOCK_DGRAM)}",
        "TORRUST_HTTP_PORT": str(free_port()),
        **extra,
    }


def docker(*args: str, check: bool = True, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check, timeout=timeout)


@pytest.fixture
def unique() -> str:
    return "t" + uuid.uuid4().hex[:10]


def make_keypair(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path


class SSHHost:
    """A container of torrust-test/sshhost on the host network, sshd on 127.0.0.1:port."""

    def __init__(self, name: str, port: int, workdir: Path, image: str):
        self.name, self.port, self.workdir, self.image = name, port, workdir, image
        self.client_key = make_keypair(workdir / "id_deploy")
        self.deploy_root = workdir / "deploy"  # same path inside and outside the container
        self.deploy_root.mkdir()
        os.chown(self.deploy_root, 1000, 1000)
        self.run_dir = workdir / "run-deploy"
        (self.run_dir / "host_keys").mkdir(parents=True)
        (self.run_dir / "authorized_keys").write_text((workdir / "id_deploy.pub").read_text())
        self.new_host_key()

    def new_host_key(self) -> None:
        key = self.run_dir / "host_keys" / "ssh_host_ed25519_key"
        for p in (key, key.with_suffix(".pub")):
            p.unlink(missing_ok=True)
        make_keypair(key)

    def start(self, extra_mounts: list[str] = ()) -> None:
        args = [
            "run",
            "-d",
            "--name",
            self.name,
            "--network",
            "host",
            "-e",
            f"SSH_PORT={self.port}",
            "-e",
            "SSH_LISTEN=127.0.0.1",
            "-e",
            "SSHHOST_CRON=0",
            "-v",
            f"{self.run_dir}:/run/deploy:ro",
            "-v",
            "/var/run/docker.sock:/var/run/docker.sock",
            "-v",
            f"{self.deploy_root}:{self.deploy_root}",
        ]
        for m in extra_mounts:
            args += ["-v", m]
        docker(*args, self.image)
        deadline = time.monotonic() + 120  # a hang guard only
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    if s.recv(64).startswith(b"SSH-"):
                        return
            except OSError:
                time.sleep(0.2)
        logs = docker("logs", self.name, check=False)
        raise AssertionError(f"sshd did not start: {logs.stdout}{logs.stderr}")

    def stop(self) -> None:
        docker("rm", "-f", self.name, check=False)

    def settings_env(self, known_hosts: Path) -> dict[str, str]:
        return {
            "TORRUST_DEPLOY_TARGET": "ssh",
            "TORRUST_PROVIDER": "existing",
            "TORRUST_SSH_HOST": "127.0.0.1",
            "TORRUST_SSH_PORT": str(self.port),
            "TORRUST_SSH_USER": "torrust",
            "TORRUST_SSH_KEY": str(self.client_key),
            "TORRUST_SSH_KNOWN_HOSTS": str(known_hosts),
            "TORRUST_SSH_CONNECT_TIMEOUT": "5",
            "TORRUST_TRACKER_ADMIN_TOKEN": ADMIN_TOKEN,
            "TORRUST_DEPLOY_ROOT": str(self.deploy_root),
        }


@pytest.fixture
def sshhost(images, tmp_path, unique):
    host = SSHHost(f"{unique}-sshhost", free_port(), tmp_path, images["sshhost"])
    host.start()
    yield host
    host.stop()


@pytest.fixture
def hostile(sshhost, tmp_path, unique):
    """The hostile-host harness (tests/integration/hostile.py) on a fresh SSH test host,
    its host key pinned in the environment's known_hosts (no first-use trust)."""
    from tests.integration.hostile import HostileHost

    cwd = tmp_path / "cwd"
    cwd.mkdir()
    pub = (sshhost.run_dir / "host_keys" / "ssh_host_ed25519_key.pub").read_text().split()
    (cwd / "known_hosts").write_text(f"[127.0.0.1]:{sshhost.port} {pub[0]} {pub[1]}\n")
    return HostileHost(sshhost, cwd, unique)


@pytest.fixture(autouse=True)
def _no_torrust_env(monkeypatch):
    for key in list(os.environ):
        if key.startswith("TORRUST_"):
            monkeypatch.delenv(key)


def prepare_storage(root: Path, release_dir: Path) -> None:
    """What the deploy does before `up`: the storage directories with their owners."""
    for entry in json.loads((release_dir / "release.json").read_text())["storage"]:
        path = root / "storage" / entry["path"]
        path.mkdir(parents=True, exist_ok=True)
        if entry["owner"] is not None:
            for p in [path, *path.parents]:
                if p == root / "storage":
                    break
                os.chown(p, entry["owner"], entry["owner"])


class Stack:
    def __init__(self, settings, root: Path, udp_port: int, http_port: int):
        self.settings, self.root, self.udp_port, self.http_port = settings, root, udp_port, http_port


@pytest.fixture
def rendered_stack(images, workdir, tmp_path, unique):
    """The local release rendered by the tool and brought up by Compose directly (no
    deploy): proves the rendered files run on the test images."""
    from tasks.commands import docker as cmd
    from tasks.config.settings import load
    from tasks.release import render as r

    root = tmp_path / "deploy"
    udp_port, http_port = free_port(socket.SOCK_DGRAM), free_port()
    env = local_env(root, unique, TORRUST_UDP_TRACKERS=f"[::]:{udp_port}", TORRUST_HTTP_PORT=str(http_port))
    s = load("local", root=workdir, environ=env)
    r.write(r.render(s), root / "releases" / "r1")
    (root / "current").symlink_to("releases/r1")
    release = str(root / "current")
    prepare_storage(root, root / "current")
    try:
        up = subprocess.run(
            cmd.compose(unique, release, "up", "-d", "--wait", "--wait-timeout", "120"),
            capture_output=True,
            text=True,
            timeout=180,
        )
        if up.returncode != 0:
            logs = subprocess.run(
                cmd.compose(unique, release, "logs", "--no-color"), capture_output=True, text=True, timeout=60
            ).stdout
            pytest.fail(f"compose up failed: {up.stderr}\n{logs}")
        yield Stack(s, root, udp_port, http_port)
    finally:
        subprocess.run(cmd.compose(unique, release, "down", "--timeout", "5"), capture_output=True, timeout=120)
