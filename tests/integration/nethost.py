"""A test host with its own network stack: torrust-test/nethost:1 (Docker-in-Docker).

Its own network namespace on a bridge network this helper creates with a fixed ULA IPv6
subnet, its own dockerd (restartable, with or without ip6tables), ufw and
iptables/ip6tables (nf_tables), sshd for the deploy user. The tool deploys into it over
SSH like into a provisioned server; this machine reaches its IPv4 and IPv6 addresses
over the bridge (traffic stays on the Docker bridge network the test created).

Shared by tests/integration/test_network_host.py and tests/benchmarks/load.py.
"""

from __future__ import annotations

import json
import os
import random
import shlex
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.conftest import ROOT, clean_environ
from tests.integration.conftest import TEST_IMAGES

IMAGE = "torrust-test/nethost:1"
STACK_IMAGES = (TEST_IMAGES["TORRUST_TRACKER_IMAGE"], TEST_IMAGES["TORRUST_CADDY_IMAGE"])
DIND_FLAGS = (
    "--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE",
    "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
    "--security-opt", "systempaths=unconfined", "--device-cgroup-rule", "a *:* rwm",
    "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
)  # fmt: skip
ADMIN_TOKEN = "Nw5-Hq8Zt2Xk7Lp4Yv9Mb3Rc6Jd1Fs0G"  # a strong test value


def _docker(*args: str, check: bool = True, timeout: int = 180, **kw) -> subprocess.CompletedProcess:
    res = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, **kw)
    if check and res.returncode != 0:
        raise AssertionError(f"docker {' '.join(args[:4])} failed ({res.returncode}): {res.stdout}{res.stderr}")
    return res


class NetHost:
    def __init__(self, prefix: str, workdir: Path):
        self.name, self.network, self.workdir = f"{prefix}-nethost", f"{prefix}-net", workdir
        self.v4 = self.v6 = self.v4_extra = self.v6_extra = self.gateway6 = ""
        self.key = workdir / "id_deploy"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.key)], check=True)
        (workdir / "run-deploy").mkdir()
        (workdir / "run-deploy" / "authorized_keys").write_text(self.key.with_suffix(".pub").read_text())

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> NetHost:
        for _ in range(8):  # a free subnet: other work on this machine creates networks too
            n = random.randint(100, 250)
            v4net, v6net = f"10.77.{n}.0/24", f"fd42:7e57:{n:x}::/64"  # outside Docker's default pools
            res = _docker(
                "network", "create", "--ipv6", "--subnet", v4net, "--subnet", v6net, self.network, check=False
            )  # fmt: skip
            if res.returncode == 0:
                self.v4, self.v4_extra = f"10.77.{n}.10", f"10.77.{n}.11"
                v6 = f"fd42:7e57:{n:x}::"
                self.v6, self.v6_extra, self.gateway6 = f"{v6}10", f"{v6}11", f"{v6}1"
                break
        else:
            raise AssertionError(f"no free subnet for {self.network}: {res.stderr}")
        _docker(
            "run", "-d", "--name", self.name, "--hostname", "nethost", "--network", self.network,
            "--ip", self.v4, "--ip6", self.v6, *DIND_FLAGS,
            "-v", f"{self.workdir / 'run-deploy'}:/run/deploy:ro", IMAGE,
        )  # fmt: skip
        self.wait_ssh()
        self.sh("mount -o remount,rw /sys")  # its own sysfs (its netns): RPS can be set on its eth0
        self.sh("install -d -o torrust -g torrust /opt/torrust")  # what provisioning leaves
        return self

    def wait_ssh(self, seconds: float = 60) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((self.v4, 22), timeout=1) as s:
                    if s.recv(64).startswith(b"SSH-"):
                        return
            except OSError:
                time.sleep(0.2)
        raise AssertionError("nethost sshd did not start: " + _docker("logs", self.name, check=False).stdout)

    def remove(self) -> None:
        _docker("rm", "-f", "-v", self.name, check=False)
        _docker("network", "rm", self.network, check=False)

    def load_images(self, refs: tuple[str, ...] = STACK_IMAGES) -> None:
        save = subprocess.Popen(["docker", "save", *refs], stdout=subprocess.PIPE)
        res = subprocess.run(
            ["docker", "exec", "-i", self.name, "docker", "load", "-q"],
            stdin=save.stdout,
            capture_output=True,
            timeout=300,
        )
        save.stdout.close()
        assert save.wait() == 0 and res.returncode == 0, res.stderr

    # ------------------------------------------------------------------- commands
    def sh(self, script: str, check: bool = True, timeout: int = 180) -> subprocess.CompletedProcess:
        return _docker("exec", self.name, "bash", "-c", script, check=check, timeout=timeout)

    def restart_dockerd(self) -> None:
        """What a `systemctl restart docker` does here: stop, start, and the drop-ins'
        ExecStartPost (nethost-dockerd emulates them)."""
        self.sh("nethost-dockerd restart", timeout=120)

    def pid(self) -> int:
        return int(_docker("inspect", "--format", "{{.State.Pid}}", self.name).stdout)

    def ufw_like_the_post_mortem(self) -> None:
        """Default deny, SSH and HTTP, and UDP 6969 for IPv4 only: the state the live demo
        was in when IPv6 UDP was dropped."""
        self.sh(
            "ufw default deny incoming >/dev/null && ufw allow 22/tcp >/dev/null && ufw allow 80/tcp >/dev/null "
            "&& ufw allow proto udp from 0.0.0.0/0 to any port 6969 >/dev/null && ufw --force enable >/dev/null"
        )

    def harden(self, env_text: str, mode: str = "") -> str:
        """torrust-harden as infra.bootstrap runs it: uploaded, then `sudo bash` as the deploy user."""
        self.sh("mkdir -p /tmp/h")
        _docker("cp", str(ROOT / "infrastructure/cloud-init/harden.sh"), f"{self.name}:/tmp/h/harden.sh")
        _docker("exec", "-i", self.name, "sh", "-c", "cat >/tmp/h/harden.env", input=env_text)
        res = self.sh(f"su torrust -c 'sudo -n bash /tmp/h/harden.sh /tmp/h/harden.env {mode}'", check=False)
        assert res.returncode == 0, res.stdout + res.stderr
        return res.stdout

    # --------------------------------------------------------------- the deploy
    def settings_env(self, cwd: Path, **extra: str) -> dict[str, str]:
        return {
            "TORRUST_DEPLOY_TARGET": "ssh",
            "TORRUST_PROVIDER": "existing",
            "TORRUST_SSH_HOST": self.v4,
            "TORRUST_SSH_USER": "torrust",
            "TORRUST_SSH_KEY": str(self.key),
            "TORRUST_SSH_KNOWN_HOSTS": str(cwd / "known_hosts"),
            "TORRUST_SSH_CONNECT_TIMEOUT": "10",
            "TORRUST_TRACKER_ADMIN_TOKEN": ADMIN_TOKEN,
            "TORRUST_TRACKER_IMAGE": STACK_IMAGES[0],
            "TORRUST_CADDY_IMAGE": STACK_IMAGES[1],
            "TORRUST_IPV6": "true",
            "TORRUST_PROBE_IPV4": self.v4,
            "TORRUST_PROBE_IPV6": "none",
            "TORRUST_CONNTRACK_MAX": "262144",  # what this kernel has: a namespace cannot change it
            **extra,
        }

    def cli(self, cwd: Path, env: dict[str, str], *args: str, timeout: int = 400) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, str(ROOT / "tasks.py"), *args, "--env", "net"],
            cwd=cwd,
            env=clean_environ(**env),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    def stats(self) -> dict:
        """The tracker's /api/v1/stats through the proxy (IPv4)."""
        req = urllib.request.Request(
            f"http://{self.v4}/api/v1/stats?token={ADMIN_TOKEN}", headers={"Host": "api.torrust.local"}
        )
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

    def nsenter(self, argv: list[str], **kw) -> subprocess.CompletedProcess:
        """Run a command of this machine inside the test host's network namespace."""
        return subprocess.run(["nsenter", f"--net=/proc/{self.pid()}/ns/net", *argv], **kw)


def quote(argv: list[str]) -> str:
    return " ".join(shlex.quote(a) for a in argv)


def unique_prefix() -> str:
    return "netw" + os.urandom(3).hex()
