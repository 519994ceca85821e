"""Three SSH test hosts run as one fleet, for tests/integration/test_fleet.py and the fleet
benchmark: each host its own sshd (conftest.SSHHost on the host network), deploy root,
Compose project and free UDP/HTTP ports; each an environment (`.env.NAME`) of one
checkout, listed in its fleets.toml. Settings every environment shares (a fleet-wide
change) go in the checkout's `.env`, read by all of them.

Everything is real: sshd, Fabric, Docker, Compose, the tracker stand-in answering UDP and
HTTP announces. The hosts share this machine's Docker engine, which the declaration sees
(loopback SSH is "this machine"), so their roots, projects and ports must differ: they do.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.parse
from pathlib import Path

import requests

from tasks.health import bencode
from tasks.health.udp import UDPTrackerClient
from tests.conftest import ROOT, clean_environ
from tests.integration.conftest import ADMIN_TOKEN, TEST_IMAGES, SSHHost, docker, free_port

INFO_HASH = bytes.fromhex("f1ee7f1e" * 5)
# The hosts' public names (torrust.local) resolve nowhere: the probes, the gate's and the
# watch's, go to the hosts' one address (loopback), IPv4 only.
PROBED_AT = {"TORRUST_PROBE_IPV4": "127.0.0.1", "TORRUST_PROBE_IPV6": "none"}


class Member:
    """One environment of the fleet: its SSH host and its stack's ports."""

    def __init__(self, env: str, host: SSHHost, project: str):
        self.env, self.host, self.project = env, host, project
        self.udp_port, self.http_port = free_port(socket.SOCK_DGRAM), free_port()
        self.prometheus_port = free_port()  # published (on 127.0.0.1) when a profile turns Prometheus on
        self.root = host.deploy_root

    def settings(self, known_hosts: Path) -> dict[str, str]:
        return {
            **self.host.settings_env(known_hosts),
            "TORRUST_COMPOSE_PROJECT": self.project,
            "TORRUST_UDP_TRACKERS": f"[::]:{self.udp_port}",
            "TORRUST_HTTP_PORT": str(self.http_port),
            "TORRUST_PROMETHEUS_PORT": str(self.prometheus_port),
        }

    def pinned_key(self) -> str:
        kind, key = (self.host.run_dir / "host_keys" / "ssh_host_ed25519_key.pub").read_text().split()[:2]
        return f"[127.0.0.1]:{self.host.port} {kind} {key}\n"

    # ------------------------------------------------------------------ what the host shows
    def current(self) -> str | None:
        link = self.root / "current"
        return os.readlink(link).split("/")[-1] if link.is_symlink() else None

    def locked(self) -> bool:
        return (self.root / "deploy.lock").exists()

    def containers(self) -> dict[str, tuple[str, str]]:
        """{service: (container id, started at)}: equal before and after = not touched."""
        out = docker(
            "ps", "--filter", f"label=com.docker.compose.project={self.project}", "--format",
            '{{.Label "com.docker.compose.service"}} {{.ID}}',
        ).stdout  # fmt: skip
        result = {}
        for line in out.splitlines():
            if line.strip():
                service, cid = line.split()
                result[service] = (cid, docker("inspect", "--format", "{{.State.StartedAt}}", cid).stdout.strip())
        return result

    def connections(self) -> int:
        """SSH connections accepted so far (sshd's own log lines)."""
        logs = docker("logs", self.host.name, check=False)
        return (logs.stdout + logs.stderr).count("Accepted publickey")

    def audit(self) -> list[dict]:
        path = self.root / "audit.log"
        return [json.loads(ln) for ln in path.read_text().splitlines()] if path.exists() else []

    def announce_udp(self) -> int:
        """The interval a real BEP 15 announce gets back."""
        with UDPTrackerClient("127.0.0.1", self.udp_port) as udp:
            return udp.announce(INFO_HASH, f"-TD0001-{self.env:<12}".encode()[:20], 6881, left=1).interval

    def announce_http(self) -> int:
        q = urllib.parse.urlencode(
            {"info_hash": INFO_HASH, "peer_id": f"-TD0001-h{self.env:<11}".encode()[:20], "port": 6882}
            | {"uploaded": 0, "downloaded": 0, "left": 0, "compact": 1},
            quote_via=urllib.parse.quote,
        )
        r = requests.get(
            f"http://127.0.0.1:{self.http_port}/announce?{q}", headers={"Host": "tracker.torrust.local"}, timeout=10
        )
        reply = bencode.decode(r.content)
        assert r.status_code == 200 and b"failure reason" not in reply, reply
        return reply[b"interval"]


class Fleet:
    """The checkout (cwd) with one `.env.NAME` per host, the shared `.env` and fleets.toml."""

    def __init__(self, work: Path, images: dict, prefix: str, size: int = 3, fleets: str = ""):
        self.work, self.cwd = work, work / "cwd"
        self.cwd.mkdir()
        names = [f"f{chr(ord('a') + i)}" for i in range(size)]
        self.members: list[Member] = []
        for name in names:
            (work / name).mkdir()
            host = SSHHost(f"{prefix}-{name}", free_port(), work / name, images["sshhost"])
            self.members.append(Member(name, host, f"{prefix}{name}"))
        self.by_name = {m.env: m for m in self.members}
        listed = ", ".join(f'"{n}"' for n in names)
        (self.cwd / "fleets.toml").write_text(f"[fleet.trio]\nenvironments = [{listed}]\n{fleets}")
        self.shared({})

    def start(self) -> None:
        for m in self.members:
            m.host.start()
            known = self.cwd / f"known_hosts.{m.env}"
            known.write_text(m.pinned_key())  # pinned: no first-use trust
            env = {**m.settings(known), "TORRUST_TRACKER_ADMIN_TOKEN": ADMIN_TOKEN}
            (self.cwd / f".env.{m.env}").write_text("".join(f"{k}={v}\n" for k, v in env.items()))

    def remove(self) -> None:
        for m in self.members:
            subprocess.run(
                ["docker", "compose", "--project-name", m.project, "down", "--remove-orphans", "--timeout", "5"],
                capture_output=True,
                timeout=120,
            )
            m.host.stop()

    def shared(self, values: dict[str, str]) -> None:
        """The settings every environment shares (the checkout's `.env`: the test images,
        and `values`, a fleet-wide change); `.env.NAME` holds only what is the host's own."""
        shared = {**TEST_IMAGES, **PROBED_AT, "TORRUST_RELEASES_KEEP": "3", **values}
        (self.cwd / ".env").write_text("".join(f"{k}={v}\n" for k, v in shared.items()))

    def cli(self, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, str(ROOT / "tasks.py"), *args],
            cwd=self.cwd,
            env=clean_environ(),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    def popen(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, str(ROOT / "tasks.py"), *args],
            cwd=self.cwd,
            env=clean_environ(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )

    def run(self, *args: str) -> tuple[int, dict, str]:
        """A task with --json: (exit code, its one JSON document, stderr); never a traceback."""
        res = self.cli(*args, "--json")
        assert "Traceback" not in res.stderr, res.stderr
        try:
            doc = json.loads(res.stdout)
        except json.JSONDecodeError:
            raise AssertionError(f"not one JSON document on stdout: {res.stdout!r}\n{res.stderr}") from None
        return res.returncode, doc, res.stderr

    def deploy(self, *flags: str) -> tuple[int, dict, str]:
        return self.run("app.deploy", "--fleet", "trio", *flags)

    def hosts(self, doc: dict) -> dict[str, dict]:
        return {h["env"]: h for h in doc["hosts"]}
