"""app.deploy end to end: through real SSH (Fabric) to a real sshd, real Compose on the
real engine, real announces to the tracker stand-in over HTTP (through the proxy) and UDP.

The tests of this module share one deployment and run in order: first deploy, no-op,
one change, dry run, failures and rollbacks, locks, day-2 operations.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import pytest
import requests

from tasks.health import bencode
from tasks.health.udp import UDPTrackerClient
from tests.conftest import ROOT, clean_environ
from tests.integration.conftest import TEST_IMAGES, SSHHost, docker, free_port, local_env

STRONG = {
    "TORRUST_TRACKER_ADMIN_TOKEN": "Dp4-Kx9Wq2Lm7Zt5Rv8Nb3Hc6Jf1Gs0Y",
    "TORRUST_MYSQL_PASSWORD": "Mv6-Ts1Qa8Zk3Wp5Xr2Yb9Nc4Hd7Fj0L",
    "TORRUST_MYSQL_ROOT_PASSWORD": "Rr3-Jy8Pn5Vb2Kc9Wz6Xq1Lm4Gt7Hs0D",
}
INFO_HASH = bytes.fromhex("d1ce5eed" * 5)


class Deployment:
    """One environment 'e2e' deploying to the SSH host, driven through the CLI."""

    def __init__(self, host: SSHHost, workdir: Path, project: str):
        self.host, self.workdir, self.project = host, workdir, project
        self.udp_port, self.http_port, self.prom_port = free_port(socket.SOCK_DGRAM), free_port(), free_port()
        self.root = host.deploy_root
        self.env = {
            **host.settings_env(workdir / "known_hosts"),
            **TEST_IMAGES,
            **STRONG,
            "TORRUST_COMPOSE_PROJECT": project,
            "TORRUST_DB_DRIVER": "mysql",
            "TORRUST_PROMETHEUS": "true",
            "TORRUST_UDP_TRACKERS": f"[::]:{self.udp_port}",
            "TORRUST_HTTP_PORT": str(self.http_port),
            "TORRUST_PROMETHEUS_PORT": str(self.prom_port),
            "TORRUST_RELEASES_KEEP": "3",
        }
        self.outputs: list[str] = []

    def cli(self, *args: str, env: dict | None = None, timeout: int = 400) -> subprocess.CompletedProcess:
        res = subprocess.run(
            [sys.executable, str(ROOT / "tasks.py"), *args, "--env", "e2e"],
            cwd=self.workdir,
            env=clean_environ(**{**self.env, **(env or {})}),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        self.outputs.append(res.stdout + res.stderr)
        return res

    def deploy(self, *flags: str, env: dict | None = None) -> tuple[int, dict]:
        res = self.cli("app.deploy", "--json", *flags, env=env)
        try:
            doc = json.loads(res.stdout)
        except json.JSONDecodeError:
            doc = {}
        assert "Traceback" not in res.stderr, res.stderr
        return res.returncode, {**doc, "_stderr": res.stderr}

    def remove(self) -> None:
        """Take the stack and the SSH host down (fixture teardown)."""
        subprocess.run(
            ["docker", "compose", "--project-name", self.project, "down", "--remove-orphans", "--timeout", "5"],
            capture_output=True,
            timeout=120,
            cwd=self.workdir,
        )
        self.host.stop()

    def current(self) -> str:
        return os.readlink(self.root / "current").split("/")[-1]

    def containers(self) -> dict[str, tuple[str, str]]:
        out = docker(
            "ps",
            "--filter",
            f"label=com.docker.compose.project={self.project}",
            "--format",
            '{{.Label "com.docker.compose.service"}} {{.ID}}',
        ).stdout
        result = {}
        for line in out.split("\n"):
            if line.strip():
                service, cid = line.split()
                started = docker("inspect", "--format", "{{.State.StartedAt}}", cid).stdout.strip()
                result[service] = (cid, started)
        return result

    def audit(self) -> list[dict]:
        return [json.loads(ln) for ln in (self.root / "audit.log").read_text().splitlines()]

    def announce_http(self) -> dict:
        q = urllib.parse.urlencode(
            {
                "info_hash": INFO_HASH,
                "peer_id": b"-TD0001-httppeer0001",
                "port": 6881,
                "uploaded": 0,
                "downloaded": 0,
                "left": 0,
                "compact": 1,
            },
            quote_via=urllib.parse.quote,  # '+' would be a literal byte to the tracker
        )
        r = requests.get(
            f"http://127.0.0.1:{self.http_port}/announce?{q}", headers={"Host": "tracker.torrust.local"}, timeout=10
        )
        assert r.status_code == 200, r.text
        reply = bencode.decode(r.content)
        assert b"failure reason" not in reply, reply
        return reply

    def announce_udp(self):
        with UDPTrackerClient("127.0.0.1", self.udp_port) as udp:
            return udp.announce(INFO_HASH, b"-TD0001-udppeer00001", 6882, left=10)


@pytest.fixture(scope="module")
def dep(images, tmp_path_factory):
    work = tmp_path_factory.mktemp("deploy")
    (work / "cwd").mkdir()
    project = "e2e" + os.urandom(3).hex()
    host = SSHHost(f"{project}-sshhost", free_port(), work, images["sshhost"])
    host.start()
    d = Deployment(host, work / "cwd", project)
    assert d.cli("app.preflight", "--accept-new-host-key").returncode == 0
    yield d
    d.remove()


BROKEN_COPY = "localhost:5999/torrust/tracker:v3.0.0"  # a registry copy of the release tag, never pushed


@pytest.fixture(scope="module")
def unhealthy_image(images):
    """A container that runs but never becomes healthy: a broken build of a tracker release,
    tagged as a copy of v3.0.0 in another registry (the tool knows which release it is)."""
    ref = "torrust-test/never-healthy:1"
    if docker("image", "inspect", ref, check=False).returncode != 0:
        dockerfile = (
            f'FROM {images["base"]}\nHEALTHCHECK --interval=1s --retries=1 CMD false\nCMD ["sleep", "infinity"]\n'
        )
        subprocess.run(
            ["docker", "build", "-q", "-t", ref, "-"],
            input=dockerfile,
            text=True,
            check=True,
            capture_output=True,
            timeout=120,
        )
    docker("tag", ref, BROKEN_COPY)
    yield BROKEN_COPY
    docker("image", "rm", BROKEN_COPY, check=False)  # the tag only


def test_first_deploy_serves_announces(dep):
    code, out = dep.deploy()
    assert code == 0, out["_stderr"]
    assert out["status"] == "deployed" and out["previous"] is None
    assert dep.current() == out["release"]
    assert sorted(dep.containers()) == ["mysql", "prometheus", "proxy", "tracker"]
    assert b"interval" in dep.announce_http()
    reply = dep.announce_udp()
    assert reply.interval == 120 and reply.seeders + reply.leechers >= 2
    release = dep.root / "releases" / out["release"]
    assert oct((release / ".env").stat().st_mode)[-3:] == "600"
    assert dep.audit()[-1]["result"] == "deployed" and dep.audit()[-1]["release"] == out["release"]
    assert not (dep.root / "deploy.lock").exists()


def test_noop_redeploy_recreates_nothing(dep):
    before = dep.containers()
    releases_before = sorted(os.listdir(dep.root / "releases"))
    code, out = dep.deploy()
    assert code == 0 and out["status"] == "unchanged", out
    assert dep.containers() == before  # same ids and start times
    assert sorted(os.listdir(dep.root / "releases")) == releases_before


def test_dry_run_shows_the_change_and_touches_nothing(dep):
    current, before = dep.current(), dep.containers()
    res = dep.cli("app.deploy", "--dry-run", "--json", env={"TORRUST_ANNOUNCE_INTERVAL": "300"})
    assert res.returncode == 0, res.stderr
    plan = json.loads(res.stdout)
    assert plan["changes"] == [
        {"path": "compose.yaml", "change": "changed"},
        {"path": "tracker/tracker.toml", "change": "changed"},
    ]
    assert "-interval = 120\n+interval = 300" in plan["diff"] and plan["recreate"] == ["tracker"]
    assert plan["pull"] == []
    assert dep.current() == current and dep.containers() == before


def test_dry_run_masks_secrets(dep):
    new_token = "Zz9-Yy8Xx7Ww6Vv5Uu4Tt3Ss2Rr1Qq0P"
    res = dep.cli("app.deploy", "--dry-run", "--json", env={"TORRUST_TRACKER_ADMIN_TOKEN": new_token})
    plan = json.loads(res.stdout)
    assert ".env: secret values changed for: TRACKER_ADMIN_TOKEN" in plan["diff"]
    assert new_token not in res.stdout + res.stderr and STRONG["TORRUST_TRACKER_ADMIN_TOKEN"] not in res.stdout
    # v3.0.0 has no Prometheus endpoint: Prometheus holds no token, only the tracker changes
    assert sorted(plan["recreate"]) == ["tracker"]


def test_one_setting_change_recreates_only_the_tracker(dep):
    before = dep.containers()
    code, out = dep.deploy(env={"TORRUST_ANNOUNCE_INTERVAL": "300"})
    assert code == 0, out["_stderr"]
    assert out["recreated"] == ["tracker"]
    after = dep.containers()
    assert after["tracker"] != before["tracker"]
    assert {k: v for k, v in after.items() if k != "tracker"} == {k: v for k, v in before.items() if k != "tracker"}
    assert dep.announce_udp().interval == 300
    dep.env["TORRUST_ANNOUNCE_INTERVAL"] = "300"


def test_release_that_never_gets_healthy_rolls_back(dep, unhealthy_image):
    good, before = dep.current(), dep.containers()
    code, out = dep.deploy("--wait-timeout", "15", env={"TORRUST_TRACKER_IMAGE": unhealthy_image})
    assert code == 31, out["_stderr"]
    assert "rolled back to " + good in out["_stderr"]
    assert dep.current() == good
    assert dep.announce_udp().interval == 300 and b"interval" in dep.announce_http()
    assert dep.audit()[-1]["result"] == "rolled_back"
    assert {k: v for k, v in dep.containers().items() if k != "tracker"} == {
        k: v for k, v in before.items() if k != "tracker"
    }
    assert not (dep.root / "deploy.lock").exists()


def test_missing_image_fails_before_the_switch(dep):
    good, before = dep.current(), dep.containers()
    assert docker("image", "inspect", "torrust/tracker:v3.0.0", check=False).returncode != 0  # no registry here
    code, out = dep.deploy(env={"TORRUST_TRACKER_IMAGE": "torrust/tracker:v3.0.0"})
    assert code == 30, out["_stderr"]
    assert "running release was not touched" in out["_stderr"]
    assert dep.current() == good and dep.containers() == before
    assert dep.audit()[-1]["result"] == "failed"


def test_missing_image_without_pull_rolls_back(dep):
    good = dep.current()
    code, out = dep.deploy("--no-pull", env={"TORRUST_TRACKER_IMAGE": "torrust/tracker:v3.0.0"})
    assert code == 31, out["_stderr"]
    assert dep.current() == good and dep.announce_udp().interval == 300


def test_second_deploy_is_refused_while_the_lock_is_held(dep):
    from tasks.config.settings import load
    from tasks.operations.lock import HostLock
    from tasks.release.layout import Layout
    from tasks.runner.target import connect_executor

    s = load("e2e", root=dep.workdir, environ=clean_environ(**dep.env))
    ex = connect_executor(s)
    try:
        with HostLock(ex, Layout(s.deploy_root), env="e2e", command="app.deploy (test holder)"):
            code, out = dep.deploy(env={"TORRUST_ANNOUNCE_INTERVAL": "240"})
            assert code == 20, out["_stderr"]
            assert "another operation is running" in out["_stderr"] and "app.deploy (test holder)" in out["_stderr"]
            assert out["lock"]["command"] == "app.deploy (test holder)" and out["stale"] is False
            forced = dep.deploy("--force-unlock", env={"TORRUST_ANNOUNCE_INTERVAL": "240"})
            assert forced[0] == 20  # a live lock is never taken over
    finally:
        ex.ctx.close()
    assert not (dep.root / "deploy.lock").exists()


def test_killed_deploy_leaves_a_stale_lock_and_the_running_release(dep):
    good, before = dep.current(), dep.containers()
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "tasks.py"), "app.deploy", "--env", "e2e"],
        cwd=dep.workdir,
        env=clean_environ(**{**dep.env, "TORRUST_ANNOUNCE_INTERVAL": "180"}),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while not (dep.root / "deploy.lock" / "info.json").exists():
        assert time.monotonic() < deadline and proc.poll() is None, "the deploy never took the lock"
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGSTOP)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert dep.current() == good and dep.containers() == before  # never touched
    time.sleep(1)  # sshd notices the closed connection; the guard ends
    code, out = dep.deploy(env={"TORRUST_ANNOUNCE_INTERVAL": "180"})
    assert code == 20 and out["stale"] is True and "--force-unlock" in out["_stderr"]
    code, out = dep.deploy("--force-unlock", env={"TORRUST_ANNOUNCE_INTERVAL": "180"})
    assert code == 0, out["_stderr"]
    assert dep.announce_udp().interval == 180
    dep.env["TORRUST_ANNOUNCE_INTERVAL"] = "180"
    assert not [p for p in os.listdir(dep.root / "releases") if p.startswith(".upload-")]


def test_connection_dropped_after_the_switch_rolls_back(dep):
    """The SSH connection dies while the new release starts: the deploy reconnects once,
    switches back and brings the previous release up again."""
    good = dep.current()
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "tasks.py"), "app.deploy", "--env", "e2e", "--json"],
        cwd=dep.workdir,
        env=clean_environ(**{**dep.env, "TORRUST_ANNOUNCE_INTERVAL": "150"}),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    deadline = time.monotonic() + 120
    while dep.current() == good:  # wait for the switch
        assert time.monotonic() < deadline and proc.poll() is None, "the deploy never switched"
        time.sleep(0.02)
    # kill the deploy user's sshd session processes: the TCP connection drops
    docker("exec", dep.host.name, "pkill", "-KILL", "-f", "sshd: torrust", check=False)
    _out, err = proc.communicate(timeout=300)
    assert proc.returncode == 31, err
    assert "connection was lost" in err
    assert "rolled back to " + good in err
    assert dep.current() == good
    assert dep.announce_udp().interval == int(dep.env.get("TORRUST_ANNOUNCE_INTERVAL", "120"))
    assert dep.audit()[-1]["result"] == "rolled_back"
    assert not (dep.root / "deploy.lock").exists()


def test_logs_follow_streams_until_interrupted_and_leaves_nothing_behind(dep):
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "tasks.py"), "app.logs", "--env", "e2e", "--service", "tracker", "--follow"],
        cwd=dep.workdir,
        env=clean_environ(**dep.env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        first = proc.stdout.readline()  # blocks until the remote logs arrive
        assert "tracker" in first, first
        time.sleep(1)
        assert proc.poll() is None, "--follow must keep streaming"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=15) == 130, proc.stderr.read()
    finally:
        proc.kill()

    def followers() -> str:
        ps = docker("exec", dep.host.name, "ps", "-eo", "args", check=False).stdout
        return "\n".join(ln for ln in ps.splitlines() if "logs" in ln and "--follow" in ln)

    deadline = time.monotonic() + 15
    while followers() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert followers() == "", "the remote `compose logs --follow` outlived the task"


def test_day2_status_releases_logs_exec(dep):
    res = dep.cli("app.status", "--json")
    assert res.returncode == 0, res.stderr
    st = json.loads(res.stdout)
    assert st["current"] == dep.current() and st["lock"]["held"] is False
    assert {x["service"]: x["state"] for x in st["services"]} == {
        "tracker": "running",
        "mysql": "running",
        "proxy": "running",
        "prometheus": "running",
    }
    rel = json.loads(dep.cli("app.releases", "--json").stdout)["releases"]
    assert len(rel) <= 3 + 1 and [r["release"] for r in rel if r["current"]] == [dep.current()]
    logs = dep.cli("app.logs", "--service", "tracker", "--tail", "20")
    assert logs.returncode == 0 and "stand-in" in logs.stdout
    ex = dep.cli("app.exec", "--service", "mysql", "--command", "mysql --version")
    assert ex.returncode == 0 and "MariaDB" in ex.stdout


def test_restart_and_rollback(dep):
    before = dep.containers()
    assert dep.cli("app.restart", "--service", "proxy").returncode == 0
    after = dep.containers()
    assert after["proxy"][0] == before["proxy"][0] and after["proxy"][1] != before["proxy"][1]
    current = dep.current()
    res = dep.cli("app.rollback", "--json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["previous"] == current and dep.current() == doc["release"] != current
    assert dep.announce_udp().interval == 240 or dep.announce_udp().interval == 300
    assert dep.audit()[-1]["event"] == "rollback"


def test_down_keeps_data_and_purge_needs_confirmation(dep):
    db_dir = dep.root / "storage" / "mysql" / "data"
    assert any(db_dir.iterdir())
    assert dep.cli("app.down").returncode == 0
    assert dep.containers() == {} and any(db_dir.iterdir())
    refused = dep.cli("app.down", "--purge-data")
    assert refused.returncode == 5 and "--yes" in refused.stderr and any(db_dir.iterdir())
    code, out = dep.deploy()  # up again on the kept data
    assert code == 0, out["_stderr"]
    assert b"interval" in dep.announce_http()


def test_secrets_never_in_output_or_audit(dep):
    text = "\n".join(dep.outputs) + (dep.root / "audit.log").read_text()
    for secret in STRONG.values():
        assert secret not in text
    assert len(dep.outputs) > 10


def test_deploy_refuses_an_unknown_host_key(dep, tmp_path):
    code, out = dep.deploy(env={"TORRUST_SSH_KNOWN_HOSTS": str(tmp_path / "empty_known_hosts")})
    assert code == 12 and "is unknown" in out["_stderr"]


def test_local_target_first_deploy(images, tmp_path, cli):
    """The default target: Compose on this machine, no SSH, same files under the root."""
    udp_port = free_port(socket.SOCK_DGRAM)
    env = local_env(tmp_path / "root", "loc" + os.urandom(3).hex(), TORRUST_UDP_TRACKERS=f"[::]:{udp_port}")
    try:
        res = cli("app.deploy", "--env", "local", "--json", env=env)
        assert res.returncode == 0, res.stderr
        assert json.loads(res.stdout)["status"] == "deployed"
        with UDPTrackerClient("127.0.0.1", udp_port) as udp:
            assert udp.announce(INFO_HASH, b"-TD0001-localpeer001", 6883).interval == 120
        again = cli("app.deploy", "--env", "local", "--json", env=env)
        assert json.loads(again.stdout)["status"] == "unchanged"
    finally:
        cli("app.down", "--env", "local", env=env)


def test_readme_first_command_works_with_the_test_images(images, workdir, cli):
    """The README's first command, as written, with the test images selected as it says."""
    block = (ROOT / "README.md").read_text().split("```sh\n")[1].split("```")[0]
    first = block.splitlines()[0].split("#")[0].split()
    assert first[:2] == ["./tasks.py", "app.deploy"]
    assert "cp tests/images/images.env .env.local" in (ROOT / "README.md").read_text()
    (workdir / ".env.local").write_text((ROOT / "tests/images/images.env").read_text())
    try:
        res = cli(*first[1:], "--json")
        assert res.returncode == 0, res.stderr
        assert json.loads(res.stdout)["status"] in ("deployed", "unchanged")
        with UDPTrackerClient("127.0.0.1", 6969) as udp:
            assert udp.announce(INFO_HASH, b"-TD0001-readmepeer01", 6884).interval == 120
        r = requests.get("http://127.0.0.1:80/api/health_check", headers={"Host": "api.torrust.local"}, timeout=10)
        assert r.json() == {"status": "Ok"}
    finally:
        cli("app.down", "--env", "local")
