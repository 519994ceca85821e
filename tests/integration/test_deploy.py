"""app.deploy end to end: through real SSH (Fabric) to a real sshd, real Compose on the
real engine, real announces to the tracker stand-in over HTTP (through the proxy) and UDP.

The tests of this module share one deployment and run in file order (first deploy,
no-op, one change, dry run, failures and rollbacks, locks, day-2 operations), but each
one starts from the module's settings (`Deployment.ensure_deployed`) and takes what it
expects from the host (the current release, its interval, the release list), so any
test also runs alone with -k and one fault shows as one failure. A test that changes the
module's settings records them in `dep.env` before it asserts; anything a test injects
(a lock, a stopped service) is undone in `finally`.

The secrets hold the characters URLs, `.env` files and shells treat specially (issue
#19, item 9).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
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
from tests.integration.cmdlines import CmdlineWatcher, encoded_forms, secrets_in
from tests.integration.conftest import TEST_IMAGES, SSHHost, docker, free_port, local_env
from tests.integration.waiting import wait_for

STRONG = {
    "TORRUST_TRACKER_ADMIN_TOKEN": "Dp4:Kx9/Wq2@Lm7#Zt5+Rv8%2FNb3Hc6Jf1Gs0Y",
    "TORRUST_MYSQL_PASSWORD": "Mv6@Ts1:Qa8/Zk3+Wp5#Xr2%41b9Nc4Hd7Fj0L",
    "TORRUST_MYSQL_ROOT_PASSWORD": "Rr3#Jy8%Pn5+Vb2:Kc9/Wz6@Xq1Lm4Gt7Hs0D",
}  # ':/@#%+' and '%XX' sequences a double decoding would change
INFO_HASH = bytes.fromhex("d1ce5eed" * 5)
FAILED_MARKER = "FAILED"  # tasks/release/layout.py: a release that failed its gate
MYSQL = 'MYSQL_PWD="$MYSQL_ROOT_PASSWORD" exec mysql -uroot -N -B'


def secrets_found(text: str, secrets: dict[str, str]) -> list[str]:
    """'NAME (form)' for every secret found in `text`, raw or encoded."""
    return [f"{n} ({f})" for n, s in secrets.items() for f, v in encoded_forms(s).items() if v in text]


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

    def json_cli(self, *args: str, env: dict | None = None, timeout: int = 400) -> tuple[int, dict, str]:
        res = self.cli(*args, "--json", env=env, timeout=timeout)
        assert "Traceback" not in res.stderr, res.stderr
        try:
            doc = json.loads(res.stdout)
        except json.JSONDecodeError:
            doc = {}
        return res.returncode, doc, res.stderr

    def deploy(self, *flags: str, env: dict | None = None) -> tuple[int, dict]:
        code, doc, err = self.json_cli("app.deploy", *flags, env=env)
        return code, {**doc, "_stderr": err}

    def ensure_deployed(self) -> str:
        """The module's settings (`self.env`) deployed and healthy: a no-op when they are."""
        code, out = self.deploy()
        assert code == 0, out["_stderr"]
        assert self.current() == out["release"]
        return out["release"]

    def remove(self) -> None:
        """Take the stack and the SSH host down (fixture teardown)."""
        subprocess.run(
            ["docker", "compose", "--project-name", self.project, "down", "--remove-orphans", "--timeout", "5"],
            capture_output=True,
            timeout=120,
            cwd=self.workdir,
        )
        self.host.stop()

    def mysql(self, *client_args: str) -> list[str]:
        """The stack's MySQL client as root (the password is read inside the container)."""
        return [
            "docker", "compose", "--project-name", self.project, "exec", "-T", "mysql",
            "sh", "-c", f'{MYSQL} {" ".join(client_args)} "$MYSQL_DATABASE"',
        ]  # fmt: skip

    def sql(self, statement: str, check: bool = True) -> str:
        """Run SQL in the stack's database container."""
        out = subprocess.run(
            self.mysql(), input=statement, capture_output=True, text=True, timeout=120, cwd=self.workdir
        )
        if check:
            assert out.returncode == 0, out.stderr
        return out.stdout

    # ------------------------------------------------------------ the host, read directly
    def current(self) -> str:
        return os.readlink(self.root / "current").split("/")[-1]

    def release_ids(self) -> list[str]:
        """The release directories on the host, oldest first (no upload leftovers)."""
        return sorted(os.listdir(self.root / "releases"))

    def failed_ids(self) -> list[str]:
        return [r for r in self.release_ids() if (self.root / "releases" / r / FAILED_MARKER).exists()]

    def interval_of(self, release: str) -> int:
        toml = (self.root / "releases" / release / "tracker" / "tracker.toml").read_text()
        return int(re.search(r"^interval = (\d+)$", toml, re.M).group(1))

    def interval(self) -> int:
        """The announce interval the running release configures."""
        return self.interval_of(self.current())

    def containers(self) -> dict[str, tuple[str, str]]:
        """{service: (container id, started at)} of the running containers."""
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

    def state_of(self, service: str) -> str:
        """'status/health' of the service's container, stopped ones too ('missing' if none)."""
        cid = docker(
            "ps", "-aq",
            "--filter", f"label=com.docker.compose.project={self.project}",
            "--filter", f"label=com.docker.compose.service={service}",
        ).stdout.split()  # fmt: skip
        if not cid:
            return "missing"
        fmt = "{{.State.Status}}/{{if .State.Health}}{{.State.Health.Status}}{{end}}"
        return docker("inspect", "--format", fmt, cid[0]).stdout.strip()

    def service_report(self, service: str) -> str:
        """State and last log lines of a service: what a failed assertion shows."""
        logs = docker("compose", "--project-name", self.project, "logs", "--no-color", "--tail", "40", service,
                      check=False)  # fmt: skip
        return f"{service} is {self.state_of(service)}; its last log lines:\n{logs.stdout}{logs.stderr}"

    def ensure_running(self, service: str) -> None:
        """Start the service again if a test left it stopped, and wait until it is healthy."""
        if self.state_of(service) not in ("running/healthy", "running/"):
            docker("compose", "--project-name", self.project, "start", service, check=False)
        wait_for(lambda: self.state_of(service) in ("running/healthy", "running/"), f"{service} healthy again")

    def audit(self) -> list[dict]:
        return [json.loads(ln) for ln in (self.root / "audit.log").read_text().splitlines()]

    def lock(self) -> dict:
        """`app.lock --json`: held, stale and the holder's info."""
        code, doc, err = self.json_cli("app.lock")
        assert code == 0, err
        return doc

    def host_pids(self, pattern: str) -> list[int]:
        """PIDs on the SSH host whose command line matches; a failed `docker exec` fails."""
        r = docker("exec", self.host.name, "pgrep", "-f", pattern, check=False)
        assert r.returncode in (0, 1), f"pgrep on the SSH host failed ({r.returncode}): {r.stderr}"
        return [int(x) for x in r.stdout.split()]

    def host_ps(self) -> list[str]:
        """Every command line on the SSH host (`ps -eo args`); a failed `docker exec` fails."""
        return docker("exec", self.host.name, "ps", "-eo", "args").stdout.splitlines()[1:]

    # ------------------------------------------------------------ the tracker, from outside
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


@contextlib.contextmanager
def held_lock(dep: Deployment, command: str = "app.deploy (test holder)"):
    """The host lock held through the tool's own HostLock for the block; released after."""
    from tasks.config.settings import load
    from tasks.operations.lock import HostLock
    from tasks.release.layout import Layout
    from tasks.runner.target import connect_executor

    s = load("e2e", root=dep.workdir, environ=clean_environ(**dep.env))
    ex = connect_executor(s)
    try:
        with HostLock(ex, Layout(s.deploy_root), env="e2e", command=command) as lock:
            yield lock
    finally:
        ex.ctx.close()
    assert not (dep.root / "deploy.lock").exists()


@pytest.fixture(scope="module")
def dep(images, tmp_path_factory):
    work = tmp_path_factory.mktemp("deploy")
    (work / "cwd").mkdir()
    project = "e2e" + os.urandom(3).hex()
    host = SSHHost(f"{project}-sshhost", free_port(), work, images["sshhost"])
    d = Deployment(host, work / "cwd", project)
    try:
        host.start()
        res = d.cli("app.preflight", "--accept-new-host-key")
        assert res.returncode == 0, res.stderr
        yield d
    finally:
        d.remove()


def _build(ref: str, dockerfile: str, files: dict[str, str] | None = None) -> str:
    """Build a small test image once (it is kept for later runs, like the other test images)."""
    if docker("image", "inspect", ref, check=False).returncode == 0:
        return ref
    import tempfile

    with tempfile.TemporaryDirectory() as ctx:
        (Path(ctx) / "Dockerfile").write_text(dockerfile)
        for name, text in (files or {}).items():
            (Path(ctx) / name).write_text(text)
        subprocess.run(["docker", "build", "-q", "-t", ref, ctx], check=True, capture_output=True, timeout=300)
    return ref


BROKEN_COPY = "localhost:5999/torrust/tracker:v3.0.0"  # a registry copy of the release tag, never pushed
MISSING = "torrust/tracker:v3.0.0"  # a known release no registry here serves


@pytest.fixture(scope="module")
def unhealthy_image(images):
    """A container that runs but never becomes healthy: a broken build of a tracker release,
    tagged as a copy of v3.0.0 in another registry (the tool knows which release it is)."""
    ref = _build(
        "torrust-test/never-healthy:1",
        f'FROM {images["base"]}\nHEALTHCHECK --interval=1s --retries=1 CMD false\nCMD ["sleep", "infinity"]\n',
    )
    docker("tag", ref, BROKEN_COPY)
    yield BROKEN_COPY
    docker("image", "rm", BROKEN_COPY, check=False)  # the tag only


@pytest.fixture(scope="module")
def wrong_upstream_proxy(images):
    """The test proxy image with a baked-in configuration that forwards every request to a
    port of the tracker where nothing listens: it runs, has no healthcheck (like the
    proxy), so Compose calls it up, and it serves nothing but 502s."""
    return _build(
        "torrust-test/proxy-wrong-upstream:1",
        f"FROM {images['caddy']}\n"
        "COPY wrong-upstream.Caddyfile /etc/caddy/wrong-upstream.Caddyfile\n"
        'CMD ["caddy", "run", "--config", "/etc/caddy/wrong-upstream.Caddyfile", "--adapter", "caddyfile"]\n',
        {"wrong-upstream.Caddyfile": "{\n\tauto_https off\n}\n:80 {\n\treverse_proxy tracker:1\n}\n"},
    )


def test_first_deploy_serves_announces(dep):
    code, out = dep.deploy()
    assert code == 0, out["_stderr"]
    assert out["status"] == "deployed" and out["previous"] is None
    assert dep.current() == out["release"] and dep.release_ids() == [out["release"]]
    assert out["release"].endswith("-" + out["content_sha256"][:8])
    assert sorted(dep.containers()) == ["mysql", "prometheus", "proxy", "tracker"]
    assert dep.announce_http()[b"interval"] == 120
    reply = dep.announce_udp()
    assert reply.interval == 120 and (reply.seeders, reply.leechers) == (1, 1)  # the HTTP seeder, this leecher
    release = dep.root / "releases" / out["release"]
    assert oct((release / ".env").stat().st_mode)[-3:] == "600"
    last = dep.audit()[-1]
    assert (last["event"], last["result"], last["release"], last["previous"]) == (
        "deploy", "deployed", out["release"], None
    )  # fmt: skip
    assert not (dep.root / "deploy.lock").exists()


def test_noop_redeploy_recreates_nothing(dep):
    current = dep.ensure_deployed()
    before, releases_before = dep.containers(), dep.release_ids()
    code, out = dep.deploy()
    assert code == 0 and out["status"] == "unchanged", out
    assert out["release"] == current and out["previous"] == current
    assert dep.containers() == before  # same ids and start times
    assert dep.release_ids() == releases_before
    last = dep.audit()[-1]
    assert (last["result"], last["content_sha256"]) == ("unchanged", out["content_sha256"])


def test_dry_run_shows_the_change_and_touches_nothing(dep):
    current = dep.ensure_deployed()
    old, before, releases = dep.interval(), dep.containers(), dep.release_ids()
    new = old + 60
    res = dep.cli("app.deploy", "--dry-run", "--json", env={"TORRUST_ANNOUNCE_INTERVAL": str(new)})
    assert res.returncode == 0, res.stderr
    plan = json.loads(res.stdout)
    assert plan["changes"] == [
        {"path": "compose.yaml", "change": "changed"},
        {"path": "tracker/tracker.toml", "change": "changed"},
    ]
    assert f"-interval = {old}\n+interval = {new}" in plan["diff"] and plan["recreate"] == ["tracker"]
    assert plan["pull"] == [] and plan["current"] == current
    assert dep.current() == current and dep.containers() == before and dep.release_ids() == releases


def test_dry_run_masks_secrets(dep):
    dep.ensure_deployed()
    new_token = "Zz9:Yy8/Xx7@Ww6#Vv5%2BUu4+Tt3Ss2Rr1Qq0P"
    res = dep.cli("app.deploy", "--dry-run", "--json", env={"TORRUST_TRACKER_ADMIN_TOKEN": new_token})
    assert res.returncode == 0, res.stderr
    plan = json.loads(res.stdout)
    assert ".env: secret values changed for: TRACKER_ADMIN_TOKEN" in plan["diff"]
    assert secrets_found(res.stdout + res.stderr, {**STRONG, "new token": new_token}) == []
    # v3.0.0 has no Prometheus endpoint: Prometheus holds no token, only the tracker changes
    assert sorted(plan["recreate"]) == ["tracker"]


def test_one_setting_change_recreates_only_the_tracker(dep):
    previous = dep.ensure_deployed()
    before, new = dep.containers(), dep.interval() + 60
    dep.env["TORRUST_ANNOUNCE_INTERVAL"] = str(new)  # the module's settings from now on
    code, out = dep.deploy()
    assert code == 0, out["_stderr"]
    assert (out["status"], out["previous"], out["recreated"]) == ("deployed", previous, ["tracker"])
    assert dep.current() == out["release"] and out["release"] in dep.release_ids()
    after = dep.containers()
    assert after["tracker"][0] != before["tracker"][0]  # a new container
    assert {k: v for k, v in after.items() if k != "tracker"} == {k: v for k, v in before.items() if k != "tracker"}
    assert dep.announce_udp().interval == new and dep.interval() == new


def _assert_rolled_back(dep: Deployment, out: dict, good: str, before: dict, *, error: str) -> str:
    """The release that failed is kept, marked failed, named in the audit line; `good`
    runs again with its own interval; only `changed` services were touched."""
    failed = (set(dep.release_ids()) - set(before["releases"])).pop()
    assert f"release {failed} failed" in out["_stderr"] and f"rolled back to {good}" in out["_stderr"]
    assert dep.current() == good and dep.failed_ids() == sorted([*before["failed"], failed])
    last = dep.audit()[-1]
    assert (last["event"], last["result"], last["release"], last["previous"]) == ("deploy", "rolled_back", failed, good)
    assert last["error"].startswith(error), last
    assert dep.announce_udp().interval == before["interval"] == dep.interval()
    assert dep.announce_http()[b"interval"] == before["interval"]
    assert not (dep.root / "deploy.lock").exists()
    return failed


def _before(dep: Deployment) -> dict:
    return {
        "releases": dep.release_ids(),
        "failed": dep.failed_ids(),
        "interval": dep.interval(),
        "containers": dep.containers(),
    }


def test_release_that_compose_calls_healthy_but_serves_nothing_rolls_back(dep, wrong_upstream_proxy):
    """Issue #19, item 3: the proxy runs (no healthcheck, so Compose is satisfied) but
    forwards to the wrong upstream; the gate's protocol probes through it fail every
    round, and the release is rolled back."""
    good = dep.ensure_deployed()
    before = _before(dep)
    code, out = dep.deploy(env={"TORRUST_CADDY_IMAGE": wrong_upstream_proxy})
    assert code == 31, out["_stderr"]
    assert out["code"] == 31 and out["error"] == "RolledBack"
    _assert_rolled_back(dep, out, good, before, error="probes failed: ")
    assert "http tracker" in dep.audit()[-1]["error"] and "HTTP 502" in dep.audit()[-1]["error"]
    after = dep.containers()
    assert {k: v for k, v in after.items() if k != "proxy"} == {
        k: v for k, v in before["containers"].items() if k != "proxy"
    }  # the tracker, database and Prometheus were never touched
    probe = dep.cli("health.check", "--only", "http,api", "--json")
    assert probe.returncode == 0, probe.stdout + probe.stderr


def test_release_that_never_gets_healthy_rolls_back(dep, unhealthy_image):
    good = dep.ensure_deployed()
    before = _before(dep)
    code, out = dep.deploy("--wait-timeout", "15", env={"TORRUST_TRACKER_IMAGE": unhealthy_image})
    assert code == 31, out["_stderr"]
    _assert_rolled_back(dep, out, good, before, error="")
    assert {k: v for k, v in dep.containers().items() if k != "tracker"} == {
        k: v for k, v in before["containers"].items() if k != "tracker"
    }


def test_missing_image_fails_before_the_switch(dep):
    good = dep.ensure_deployed()
    assert docker("image", "inspect", MISSING, check=False).returncode != 0  # no registry here
    before, releases = dep.containers(), dep.release_ids()
    code, out = dep.deploy(env={"TORRUST_TRACKER_IMAGE": MISSING})
    assert code == 30, out["_stderr"]
    assert "running release was not touched" in out["_stderr"]
    assert dep.current() == good and dep.containers() == before
    assert dep.release_ids() == releases  # the upload was removed
    last = dep.audit()[-1]
    assert (last["event"], last["result"], last["previous"]) == ("deploy", "failed", good)
    assert last["release"] not in releases and MISSING in last["error"]


def test_missing_image_without_pull_rolls_back(dep):
    good = dep.ensure_deployed()
    before = _before(dep)
    code, out = dep.deploy("--no-pull", env={"TORRUST_TRACKER_IMAGE": MISSING})
    assert code == 31, out["_stderr"]
    _assert_rolled_back(dep, out, good, before, error="")


def test_second_deploy_is_refused_while_the_lock_is_held(dep):
    good = dep.ensure_deployed()
    releases = dep.release_ids()
    with held_lock(dep) as held:
        code, out = dep.deploy(env={"TORRUST_ANNOUNCE_INTERVAL": str(dep.interval() + 1)})
        assert code == 20, out["_stderr"]
        assert "another operation is running" in out["_stderr"] and "app.deploy (test holder)" in out["_stderr"]
        assert out["lock"]["token"] == held.token and out["lock"]["guard_pid"] == held.guard.pid
        assert out["stale"] is False
        forced = dep.deploy("--force-unlock", env={"TORRUST_ANNOUNCE_INTERVAL": str(dep.interval() + 1)})
        assert forced[0] == 20 and forced[1]["lock"]["token"] == held.token  # a live lock is never taken over
        assert json.loads((dep.root / "deploy.lock" / "info.json").read_text())["token"] == held.token
    assert dep.current() == good and dep.release_ids() == releases


def test_rollback_down_and_backup_are_refused_while_the_lock_is_held(dep):
    """Issue #19, item 10: every operation that changes the host takes the lock."""
    good = dep.ensure_deployed()
    before = dep.containers()
    with held_lock(dep, command="app.backup (test holder)") as held:
        for args in (("app.rollback",), ("app.down",), ("app.backup",)):
            code, doc, err = dep.json_cli(*args)
            assert code == 20, (args, err)
            assert "another operation is running" in err and "app.backup (test holder)" in err, err
            assert doc["lock"]["token"] == held.token, doc
        assert dep.current() == good and dep.containers() == before


def test_killed_deploy_leaves_a_stale_lock_and_the_running_release(dep):
    good = dep.ensure_deployed()
    before, new = dep.containers(), dep.interval() + 30
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "tasks.py"), "app.deploy", "--env", "e2e"],
        cwd=dep.workdir,
        env=clean_environ(**{**dep.env, "TORRUST_ANNOUNCE_INTERVAL": str(new)}),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while not (dep.root / "deploy.lock" / "info.json").exists():
            assert time.monotonic() < deadline and proc.poll() is None, "the deploy never took the lock"
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGSTOP)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert dep.current() == good and dep.containers() == before  # never touched
        # sshd notices the closed connection and the session's guard ends: the lock turns stale
        lock = wait_for(lambda: (d := dep.lock())["stale"] and d, "the killed deploy's lock to turn stale")
        assert lock["held"] is True and lock["info"]["client_pid"] == proc.pid
        dep.env["TORRUST_ANNOUNCE_INTERVAL"] = str(new)  # the module's settings from now on
        code, out = dep.deploy()
        assert code == 20 and out["stale"] is True and "--force-unlock" in out["_stderr"]
        assert out["lock"]["client_pid"] == proc.pid
        code, out = dep.deploy("--force-unlock")
        assert code == 0, out["_stderr"]
        assert dep.announce_udp().interval == new and dep.current() == out["release"]
        assert not [p for p in os.listdir(dep.root / "releases") if p.startswith(".upload-")]
    finally:
        proc.kill()
        proc.wait()
        stale = dep.root / "deploy.lock" / "info.json"
        if stale.exists() and json.loads(stale.read_text()).get("client_pid") == proc.pid:
            shutil.rmtree(dep.root / "deploy.lock")  # this test's stale lock, whatever failed


def test_connection_dropped_after_the_switch_rolls_back(dep):
    """The SSH connection dies while the new release starts: the deploy reconnects once,
    switches back and brings the previous release up again."""
    good = dep.ensure_deployed()
    interval = dep.interval()
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "tasks.py"), "app.deploy", "--env", "e2e", "--json"],
        cwd=dep.workdir,
        env=clean_environ(**{**dep.env, "TORRUST_ANNOUNCE_INTERVAL": str(interval + 15)}),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        deadline = time.monotonic() + 240
        while dep.current() == good:  # wait for the switch
            assert time.monotonic() < deadline and proc.poll() is None, "the deploy never switched"
            time.sleep(0.02)
        failed = dep.current()
        # kill the deploy user's sshd session processes: the TCP connection drops
        docker("exec", dep.host.name, "pkill", "-KILL", "-f", "sshd: torrust")
        _out, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 31, err
    assert "connection was lost" in err
    assert f"release {failed} failed" in err and f"rolled back to {good}" in err
    assert dep.current() == good and failed in dep.failed_ids()
    assert dep.announce_udp().interval == interval
    last = dep.audit()[-1]
    assert (last["result"], last["release"], last["previous"]) == ("rolled_back", failed, good)
    assert not (dep.root / "deploy.lock").exists()


def test_logs_follow_streams_until_interrupted_and_leaves_nothing_behind(dep):
    dep.ensure_deployed()
    argv = ["app.logs", "--env", "e2e", "--service", "prometheus", "--tail", "1", "--follow"]
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "tasks.py"), *argv],
        cwd=dep.workdir,
        env=clean_environ(**dep.env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        first = proc.stdout.readline()  # blocks until the remote logs arrive
        assert "prometheus" in first, first
        # a line written after the stream started arrives through it: Prometheus logs a
        # configuration reload on SIGHUP
        docker("kill", "--signal", "HUP", dep.containers()["prometheus"][0])
        seen = []
        while "Completed loading of configuration file" not in (line := proc.stdout.readline()):
            assert line, f"the stream ended before the new line: {seen[-5:]} {proc.stderr.read()}"
            seen.append(line)
        assert proc.poll() is None, "--follow must keep streaming"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 130, proc.stderr.read()
    finally:
        proc.kill()

    def followers() -> list[str]:
        return [ln for ln in dep.host_ps() if "logs" in ln and "--follow" in ln]

    assert wait_for(lambda: followers() == [], "the remote `compose logs --follow` to end")


def test_day2_status_releases_logs_exec(dep):
    current = dep.ensure_deployed()
    res = dep.cli("app.status", "--json")
    assert res.returncode == 0, res.stderr
    st = json.loads(res.stdout)
    assert st["current"] == current and st["lock"] == {"held": False, "stale": False}
    assert {x["service"]: (x["state"], x["health"]) for x in st["services"]} == {
        "tracker": ("running", "healthy"),
        "mysql": ("running", "healthy"),
        "proxy": ("running", ""),
        "prometheus": ("running", "healthy"),
    }
    rel = json.loads(dep.cli("app.releases", "--json").stdout)["releases"]
    assert [r["release"] for r in rel] == dep.release_ids()  # every release on the host, oldest first
    assert [r["release"] for r in rel if r["current"]] == [current]
    assert [r["release"] for r in rel if r["failed"]] == dep.failed_ids()
    logs = dep.cli("app.logs", "--service", "tracker", "--tail", "20")
    assert logs.returncode == 0 and "stand-in" in logs.stdout
    ex = dep.cli("app.exec", "--service", "mysql", "--command", "mysql --version")
    assert ex.returncode == 0 and "MariaDB" in ex.stdout


def test_status_exits_4_when_a_service_is_not_healthy(dep):
    """Issue #19, item 10: `app.status` exits 4 when not every service runs and is healthy."""
    current = dep.ensure_deployed()
    assert dep.cli("app.stop", "--service", "prometheus").returncode == 0
    try:
        code, st, err = dep.json_cli("app.status")
        assert code == 4, err
        assert "not every service is running and healthy" in err
        assert st["current"] == current and st["ok"] is False
        states = {x["service"]: x["state"] for x in st["services"]}
        assert states == {"tracker": "running", "mysql": "running", "proxy": "running", "prometheus": "exited"}
    finally:
        dep.ensure_running("prometheus")
    assert dep.json_cli("app.status")[0] == 0


def _deploy_interval(dep: Deployment, interval: int) -> str:
    dep.env["TORRUST_ANNOUNCE_INTERVAL"] = str(interval)  # the module's settings from now on
    code, out = dep.deploy()
    assert code == 0 and out["status"] == "deployed", out["_stderr"]
    return out["release"]


def test_restart_and_rollback(dep):
    dep.ensure_deployed()
    before = dep.containers()
    assert dep.cli("app.restart", "--service", "proxy").returncode == 0
    after = dep.containers()
    assert after["proxy"][0] == before["proxy"][0] and after["proxy"][1] != before["proxy"][1]
    base = dep.interval()
    older = _deploy_interval(dep, base + 10)
    newer = _deploy_interval(dep, base + 20)
    dep.env["TORRUST_ANNOUNCE_INTERVAL"] = str(base + 10)  # where the rollback goes
    code, doc, err = dep.json_cli("app.rollback")
    assert code == 0, err
    assert (doc["status"], doc["release"], doc["previous"]) == ("rolled_back", older, newer)
    assert dep.current() == older and dep.announce_udp().interval == base + 10
    last = dep.audit()[-1]
    assert (last["event"], last["result"], last["release"], last["previous"]) == (
        "rollback",
        "rolled_back",
        older,
        newer,
    )


def test_rollback_to_a_chosen_release(dep):
    """Issue #19, item 10: `app.rollback --to ID` returns to that release (not just the
    previous one); an unknown ID changes nothing; the current one is a no-op."""
    dep.ensure_deployed()
    base = dep.interval()
    target = _deploy_interval(dep, base + 1)
    middle = _deploy_interval(dep, base + 2)
    newest = _deploy_interval(dep, base + 3)
    # TORRUST_RELEASES_KEEP=3: the three newest good releases stay, older and failed ones go
    assert dep.release_ids() == [target, middle, newest]
    code, doc, err = dep.json_cli("app.rollback", "--to", "20200101T000000Z-deadbeef")
    assert code == 2 and "--to 20200101T000000Z-deadbeef: no such release" in err, err
    assert dep.current() == newest
    dep.env["TORRUST_ANNOUNCE_INTERVAL"] = str(base + 1)  # where the rollback goes
    code, doc, err = dep.json_cli("app.rollback", "--to", target)
    assert code == 0, err
    assert (doc["status"], doc["release"], doc["previous"]) == ("rolled_back", target, newest)
    assert dep.current() == target and dep.announce_udp().interval == base + 1
    code, doc, err = dep.json_cli("app.rollback", "--to", target)
    assert code == 0 and (doc["status"], doc["release"]) == ("unchanged", target), err


def test_health_check_probes_the_addresses_it_is_given(dep):
    """Issue #19, item 10: TORRUST_PROBE_IPV4/TORRUST_PROBE_IPV6 choose where the public
    probes connect (for an SSH target the default is TORRUST_SSH_HOST); 'none' turns a
    family off; with both off there is nothing to probe."""
    dep.ensure_deployed()
    names = ["api health", "api stats", "http tracker", "udp tracker"]

    def probed(env: dict) -> tuple[list[int], set[str]]:
        code, doc, err = dep.json_cli("health.check", "--skip", "host,network", env=env)
        assert code == 0, err + json.dumps(doc.get("probes"), indent=1)
        assert sorted(p["name"] for p in doc["probes"]) == names * len(doc["families"])
        return doc["families"], {p["target"].rsplit(" via ", 1)[1] for p in doc["probes"]}

    assert probed({}) == ([4], {"127.0.0.1"})  # the SSH host's address
    assert probed({"TORRUST_PROBE_IPV4": "127.0.0.2"}) == ([4], {"127.0.0.2"})
    assert probed({"TORRUST_PROBE_IPV4": "none", "TORRUST_PROBE_IPV6": "::1"}) == ([6], {"::1"})
    code, _doc, err = dep.json_cli(
        "health.check", "--skip", "host,network", env={"TORRUST_PROBE_IPV4": "none", "TORRUST_PROBE_IPV6": "none"}
    )
    assert code == 40 and "no address to probe: set TORRUST_PROBE_IPV4/TORRUST_PROBE_IPV6" in err, err


def _marker_row(dep: Deployment) -> str:
    """A row in the tracker's database that only the storage keeps."""
    marker = os.urandom(20).hex()
    dep.sql(f"INSERT INTO whitelist (info_hash) VALUES ('{marker}');")
    return marker


def _has_row(dep: Deployment, marker: str) -> bool:
    return dep.sql(f"SELECT COUNT(*) FROM whitelist WHERE info_hash = '{marker}';").strip() == "1"


def test_down_keeps_data_and_purge_needs_confirmation(dep):
    dep.ensure_deployed()
    marker = _marker_row(dep)
    try:
        code, doc, err = dep.json_cli("app.down")
        assert code == 0 and doc == {"ok": True, "purged": False}, err
        assert dep.containers() == {} and (dep.root / "storage" / "mysql" / "data" / "ibdata1").is_file()
        last = dep.audit()[-1]
        assert (last["event"], last["purge_data"]) == ("down", False)
        refused = dep.cli("app.down", "--purge-data", env={"CI": "1"})
        assert refused.returncode == 5 and "--yes" in refused.stderr
        assert (dep.root / "storage" / "mysql" / "data" / "ibdata1").is_file()
    finally:
        code, out = dep.deploy()  # up again on the kept data
    assert code == 0 and out["status"] == "deployed", out["_stderr"]
    assert _has_row(dep, marker)
    assert dep.announce_http()[b"interval"] == dep.interval()


def test_down_purge_data_deletes_the_storage_and_keeps_the_backups(dep):
    """Issue #19, item 10: `app.down --purge-data --yes` deletes <root>/storage (the
    database with it, whichever user the containers wrote it as) and keeps the backups
    in the default <root>/backups."""
    dep.ensure_deployed()
    marker = _marker_row(dep)
    code, backup, err = dep.json_cli("app.backup")
    assert code == 0, err
    kept = dep.root / "backups" / backup["id"]
    manifest = (kept / "manifest.json").read_bytes()
    try:
        code, doc, err = dep.json_cli("app.down", "--purge-data", "--yes")
        assert code == 0, err
        assert doc == {"ok": True, "purged": True}
        assert not (dep.root / "storage").exists() and dep.containers() == {}
        assert (kept / "manifest.json").read_bytes() == manifest
        code, listed, err = dep.json_cli("app.backups")
        assert code == 0 and backup["id"] in [b["id"] for b in listed["backups"]], err
        last = dep.audit()[-1]
        assert (last["event"], last["purge_data"]) == ("down", True)
    finally:
        code, out = dep.deploy()  # a fresh, empty database
    assert code == 0 and out["status"] == "deployed", out["_stderr"]
    assert not _has_row(dep, marker)
    assert dep.announce_http()[b"interval"] == dep.interval()


def test_no_secret_on_a_host_command_line_or_in_output_during_a_deploy(dep):
    """Issue #19, item 9: while a deploy rotates the admin token (a new .env goes up,
    the tracker is recreated) and a backup runs, no command line on the SSH host, in
    the stack's containers or of the tool itself holds a secret, raw or encoded; nor
    does any output or the audit log."""
    dep.ensure_deployed()
    new_token = "Nt5#Hy2:Ub8/Ki4@Ol7%3AJm1+Pq6Wr9Es3Dx0"
    secrets = {**STRONG, "TORRUST_TRACKER_ADMIN_TOKEN (rotated)": new_token}
    canary = "cmdline-canary-" + os.urandom(4).hex()
    start = len(dep.outputs)
    with CmdlineWatcher() as seen:
        dep.env["TORRUST_TRACKER_ADMIN_TOKEN"] = new_token  # the module's settings from now on
        code, out = dep.deploy()
        assert code == 0 and out["recreated"] == ["tracker"], out["_stderr"]  # v3.0.0: Prometheus holds no token
        code, _doc, err = dep.json_cli("app.backup")
        assert code == 0, err
        # the watcher sees a short command the deploy user runs on the SSH host
        assert dep.cli("app.exec", "--service", "tracker", "--command", f"sh -c 'sleep 0.1' {canary}").returncode == 0
    assert seen.saw(canary), f"the watcher missed the canary in {seen.sweeps} sweeps"
    assert any("torrust-backup backup" in line for line in seen.cmdlines)
    assert secrets_in(seen.cmdlines, secrets) == []
    assert secrets_found("\n".join(dep.outputs[start:]), secrets) == []
    assert secrets_found((dep.root / "audit.log").read_text(), secrets) == []


def test_secrets_never_in_output_or_audit(dep):
    """Every output of this module's commands so far (at least this test's own)."""
    dep.ensure_deployed()
    dep.cli("app.deploy", "--dry-run")
    dep.cli("app.status")
    dep.cli("app.settings")
    dep.cli("app.logs", "--tail", "200")
    text = "\n".join(dep.outputs) + (dep.root / "audit.log").read_text()
    assert secrets_found(text, STRONG) == []


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
    assert "cp tests/images/images.env .env.local" in " ".join((ROOT / "README.md").read_text().split())  # wrapped
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
