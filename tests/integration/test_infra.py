"""The provision flow end to end, with a STAND-IN for OpenTofu (tests/standins/tofu)
whose outputs point at the real SSH test host, whose readiness each test controls.

In file order: a failed apply and its re-run (no server thrown away), every distinct wait
error, the ready host with its key recorded, app.deploy to the recorded host, destroy;
then register and bootstrap of a server you already own. Each test first puts the server
where it needs it (`Flow.applied`, `booted`, `stopped`, `destroyed`), so any test also
runs alone with -k.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, clean_environ
from tests.integration.conftest import TEST_IMAGES, SSHHost, docker, free_port

STANDIN = ROOT / "tests" / "standins" / "tofu"
TOKEN = "Hz7-standin-token-Kq2Wm9Xr4Lp8Yv3Nb6Hc1Jd5Fs0G"  # a fake; must never reach a file or output
STRONG = {"TORRUST_TRACKER_ADMIN_TOKEN": "Dp4-Kx9Wq2Lm7Zt5Rv8Nb3Hc6Jf1Gs0Y"}


class Flow:
    def __init__(self, host: SSHHost, work: Path, project: str):
        self.host, self.cwd, self.project = host, work / "cwd", project
        self.cwd.mkdir()
        self.control = work / "standin" / "control.json"
        self.control.parent.mkdir()
        self.control.write_text(json.dumps({"outputs": {"ipv4": "127.0.0.1", "ipv6": "", "ssh_port": host.port}}))
        self.http_port, self.udp_port = free_port(), free_port(socket.SOCK_DGRAM)
        env_file = {
            "TORRUST_DEPLOY_TARGET": "ssh",
            "TORRUST_PROVIDER": "hetzner",
            "TORRUST_INFRA_BINARY": str(STANDIN),
            "TORRUST_SSH_KEY": str(host.client_key),
            "TORRUST_SSH_PORT": str(host.port),
            "TORRUST_SSH_CONNECT_TIMEOUT": "2",
            "TORRUST_WAIT_SSH_TIMEOUT": "2",
            "TORRUST_WAIT_CLOUD_INIT_TIMEOUT": "2",
            "TORRUST_WAIT_INTERVAL": "1",
            "TORRUST_DEPLOY_ROOT": str(host.deploy_root),
            "TORRUST_COMPOSE_PROJECT": project,
            "TORRUST_HTTP_PORT": str(self.http_port),
            "TORRUST_UDP_TRACKERS": f"[::]:{self.udp_port}",
            **TEST_IMAGES,
            **STRONG,
        }
        (self.cwd / ".env.prov").write_text("".join(f"{k}={v}\n" for k, v in env_file.items()))
        self.outputs: list[str] = []

    def cli(self, *args: str, env: dict | None = None, name: str | None = "prov") -> subprocess.CompletedProcess:
        extra = {
            "HCLOUD_TOKEN": TOKEN,
            "TOFU_STANDIN_CONTROL": str(self.control),
            "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",  # the stand-in imports hcl2
            **(env or {}),
        }
        res = subprocess.run(
            [sys.executable, str(ROOT / "tasks.py"), *args, *(["--env", name] if name else [])],
            cwd=self.cwd,
            env=clean_environ(**extra),
            capture_output=True,
            text=True,
            timeout=300,
            stdin=subprocess.DEVNULL,
        )
        self.outputs.append(res.stdout + res.stderr)
        assert "Traceback" not in res.stderr, res.stderr
        return res

    def control_set(self, **kw) -> None:
        doc = json.loads(self.control.read_text())
        doc.update(kw)
        self.control.write_text(json.dumps(doc))

    @property
    def state(self) -> dict:
        return json.loads((self.cwd / ".torrust/prov/infra/hetzner/terraform.tfstate").read_text())

    def on_host(self, script: str) -> None:
        docker("exec", self.host.name, "sh", "-c", script)

    def restart_with_new_host_key(self) -> str:
        """The server rebuilt: a new host key, the deploy key and cloud-init's result installed."""
        self.host.stop()
        self.host.new_host_key()
        self.host.start()
        pub = (self.host.workdir / "id_deploy.pub").read_text().strip()
        self.on_host(
            f"echo '{pub}' > /home/torrust/.ssh/authorized_keys && mkdir -p /var/lib/cloud/data /var/lib/torrust "
            """&& printf '%s' '{"v1": {"datasource": "x", "errors": []}}' > /var/lib/cloud/data/result.json """
            "&& echo ok > /var/lib/torrust/host-ready"
        )
        return (self.host.run_dir / "host_keys" / "ssh_host_ed25519_key.pub").read_text().split()[1]

    def known_hosts(self) -> str:
        path = self.cwd / ".torrust/prov/known_hosts"
        return path.read_text() if path.exists() else ""

    def user_data_host_key(self) -> dict:
        variables = json.loads((self.cwd / ".torrust/prov/infra/hetzner/terraform.tfvars.json").read_text())
        return yaml.safe_load(variables["user_data"])["ssh_keys"]

    def boot_from_user_data(self, ready: bool = False) -> str:
        """The server's first boot as cloud-init does it: sshd starts with the host key
        from the user-data the tool rendered (ssh_keys:), and no other key."""
        keys = self.user_data_host_key()
        self.host.stop()
        key_dir = self.host.run_dir / "host_keys"
        for p in key_dir.iterdir():
            p.unlink()
        (key_dir / "ssh_host_ed25519_key").write_text(keys["ed25519_private"])
        (key_dir / "ssh_host_ed25519_key").chmod(0o600)
        (key_dir / "ssh_host_ed25519_key.pub").write_text(keys["ed25519_public"] + "\n")
        self.host.start()
        if ready:
            pub = (self.host.workdir / "id_deploy.pub").read_text().strip()
            self.on_host(
                f"echo '{pub}' > /home/torrust/.ssh/authorized_keys && mkdir -p /var/lib/cloud/data /var/lib/torrust "
                """&& printf '%s' '{"v1": {"datasource": "x", "errors": []}}' > /var/lib/cloud/data/result.json """
                "&& echo ok > /var/lib/torrust/host-ready"
            )
        return keys["ed25519_public"]

    # -------------------------------------------- where a test starts (any test runs alone)
    def applied(self) -> None:
        """The server created and recorded (infra.apply ran)."""
        state = self.cwd / ".torrust/prov/infra/hetzner/terraform.tfstate"
        if state.exists() and "server" in self.state["resources"] and (self.cwd / ".torrust/prov/host.env").exists():
            return
        res = self.cli("infra.apply", "--no-wait")
        assert res.returncode == 0, res.stderr

    def destroyed(self) -> None:
        state = self.cwd / ".torrust/prov/infra/hetzner/terraform.tfstate"
        if state.exists() and self.state["resources"]:
            res = self.cli("infra.destroy", "--yes")
            assert res.returncode == 0, res.stderr

    def running(self) -> bool:
        r = docker("inspect", "--format", "{{.State.Running}}", self.host.name, check=False)
        return r.stdout.strip() == "true"

    def stopped(self) -> None:
        """sshd down: nothing listens on the server's SSH port."""
        if self.running():
            self.host.stop()

    def booted(self, *, key: bool = False) -> None:
        """The server up with the host key of its user-data, no trace of cloud-init (a test
        writes the ones it needs); `key`: the deploy key installed."""
        self.applied()
        wanted = self.user_data_host_key()["ed25519_public"].split()[:2]
        pub = self.host.run_dir / "host_keys" / "ssh_host_ed25519_key.pub"
        if not self.running() or not pub.exists() or pub.read_text().split()[:2] != wanted:
            self.boot_from_user_data()
        self.on_host("rm -rf /var/lib/cloud /var/lib/torrust /var/log/cloud-init-output.log")
        if key:
            deploy_key = (self.host.workdir / "id_deploy.pub").read_text().strip()
            self.on_host(f"echo '{deploy_key}' > /home/torrust/.ssh/authorized_keys")

    def secrets_seen(self) -> list[str]:
        """Lines of the generated private host key found in any output so far."""
        lines = [ln for ln in self.user_data_host_key()["ed25519_private"].splitlines() if not ln.startswith("-----")]
        return [ln for ln in lines if any(ln in out for out in self.outputs)]


@pytest.fixture(scope="module")
def flow(images, tmp_path_factory):
    work = tmp_path_factory.mktemp("infra")
    project = "inf" + os.urandom(3).hex()
    host = SSHHost(f"{project}-sshhost", free_port(), work, images["sshhost"])
    (host.run_dir / "authorized_keys").write_text("")  # cloud-init has not installed the key yet
    f = Flow(host, work, project)
    yield f
    subprocess.run(
        ["docker", "compose", "--project-name", project, "down", "--timeout", "5"], capture_output=True, timeout=120
    )
    host.stop()


def test_apply_failing_midway_then_rerun_continues(flow):
    flow.control_set(fail_apply_after=1)
    res = flow.cli("infra.apply", "--no-wait")
    assert res.returncode == 60, res.stderr
    assert "stand-in failure injected" in res.stderr and "re-run" in res.stderr
    first = flow.state["resources"]
    assert list(first) == ["ssh_key"]
    assert not (flow.cwd / ".torrust/prov/host.env").exists()

    res = flow.cli("infra.apply", "--no-wait", "--json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["outputs"] == {"ipv4": "127.0.0.1", "ipv6": "", "ssh_port": flow.host.port, "ssh_user": "torrust"}
    assert flow.state["resources"]["ssh_key"] == first["ssh_key"]  # continued, nothing re-created
    assert {"server", "firewall"} <= set(flow.state["resources"])
    calls = [json.loads(ln)["sub"] for ln in (flow.control.parent / "calls.jsonl").read_text().splitlines()]
    assert calls == ["init", "apply", "apply", "output"]  # init once, state kept across the failure
    host_env = (flow.cwd / ".torrust/prov/host.env").read_text()
    assert f"TORRUST_SSH_HOST=127.0.0.1\nTORRUST_SSH_PORT={flow.host.port}\n" in host_env
    assert oct((flow.cwd / ".torrust/prov/host.env").stat().st_mode)[-3:] == "600"
    variables = json.loads((flow.cwd / ".torrust/prov/infra/hetzner/terraform.tfvars.json").read_text())
    assert variables["user_data"].startswith("#cloud-config\n")
    assert variables["firewall_udp_ports"] == [flow.udp_port]


def test_apply_pins_the_generated_host_key_before_any_connection(flow):
    """Finding 11: the server's host key is the one the tool put into its user-data, and
    it is in known_hosts before anything connects (the SSH host has not even started)."""
    flow.applied()
    public = flow.user_data_host_key()["ed25519_public"]
    assert flow.known_hosts() == f"[127.0.0.1]:{flow.host.port} {public}\n"
    assert oct((flow.cwd / ".torrust/prov/known_hosts").stat().st_mode)[-3:] == "600"
    for name in ("terraform.tfvars.json", "ssh_host_ed25519_key"):
        assert oct((flow.cwd / ".torrust/prov/infra/hetzner" / name).stat().st_mode)[-3:] == "600", name
    assert oct((flow.cwd / ".torrust/prov/infra/hetzner").stat().st_mode)[-3:] == "700"
    host = json.loads((flow.cwd / ".torrust/prov/host.json").read_text())
    assert host["host_key"].startswith("ssh-ed25519 SHA256:")
    assert flow.secrets_seen() == []


def test_settings_take_the_recorded_host(flow):
    flow.applied()
    res = flow.cli("app.settings", "--json")
    assert res.returncode == 0, res.stderr
    rows = {r["name"]: r for r in json.loads(res.stdout)["settings"]}
    assert rows["TORRUST_SSH_HOST"]["value"] == "127.0.0.1"
    assert rows["TORRUST_SSH_HOST"]["source"] == ".torrust/prov/host.env:2"


def test_wait_refused_while_sshd_is_down(flow):
    flow.applied()
    flow.stopped()
    res = flow.cli("infra.wait")
    assert res.returncode == 64, res.stderr
    assert "refused connections" in res.stderr


def test_wait_unreachable_when_nothing_speaks_ssh(flow):
    flow.applied()
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # the kernel accepts; nobody sends an SSH banner
    try:
        res = flow.cli("infra.wait", env={"TORRUST_SSH_PORT": str(silent.getsockname()[1])})
    finally:
        silent.close()
    assert res.returncode == 63, res.stderr
    assert "no SSH answer" in res.stderr


def test_a_server_with_another_host_key_is_refused_at_first_contact(flow):
    """Finding 11: whoever answers at the server's address with another key (someone in
    between, or not our server) is refused at once, before authentication. Before the
    fix infra.wait trusted the first key it saw and recorded it."""
    flow.applied()
    flow.stopped()
    pinned = flow.known_hosts()
    flow.host.new_host_key()
    flow.host.start()  # its own random host key, not the one from the user-data
    try:
        res = flow.cli("infra.wait")
    finally:
        flow.host.stop()
    assert flow.known_hosts() == pinned
    assert res.returncode == 12, res.stderr
    assert "changed since it was recorded" in res.stderr


def test_wait_auth_refused_until_the_key_is_installed(flow):
    flow.applied()
    public = flow.boot_from_user_data()
    res = flow.cli("infra.wait")
    assert res.returncode == 65, res.stderr
    assert "refused the deploy key" in res.stderr
    # the host key checked was the pinned one; nothing was recorded at first contact
    assert flow.known_hosts() == f"[127.0.0.1]:{flow.host.port} {public}\n"


def test_wait_cloud_init_still_running(flow):
    flow.booted(key=True)
    flow.on_host("mkdir -p /var/lib/cloud/instance && echo 'Setting up docker.io ...' > /var/log/cloud-init-output.log")
    res = flow.cli("infra.wait")
    assert res.returncode == 66, res.stderr
    assert "still running" in res.stderr and "Setting up docker.io" in res.stderr


def test_wait_cloud_init_failed_shows_the_log_tail(flow):
    flow.booted(key=True)
    flow.on_host(
        "mkdir -p /var/lib/cloud/data && echo 'E: Unable to locate package docker-compose-v2' "
        ">> /var/log/cloud-init-output.log && printf '%s' "
        """'{"v1": {"datasource": "DataSourceHetzner", "errors": ["runcmd failed"]}}' """
        "> /var/lib/cloud/data/result.json"
    )
    res = flow.cli("infra.wait")
    assert res.returncode == 67, res.stderr
    assert "cloud-init failed" in res.stderr and "Unable to locate package docker-compose-v2" in res.stderr


def test_wait_done_without_marker_is_a_failure(flow):
    flow.booted(key=True)
    flow.on_host(
        """mkdir -p /var/lib/cloud/data && printf '%s' '{"v1": {"datasource": "x", "errors": []}}' """
        "> /var/lib/cloud/data/result.json"
    )
    res = flow.cli("infra.wait")
    assert res.returncode == 67, res.stderr
    assert "did not write /var/lib/torrust/host-ready" in res.stderr


def test_wait_ready_then_deploy_to_the_recorded_host(flow):
    flow.booted(key=True)
    flow.on_host(
        """mkdir -p /var/lib/cloud/data && printf '%s' '{"v1": {"datasource": "x", "errors": []}}' """
        "> /var/lib/cloud/data/result.json && mkdir -p /var/lib/torrust && echo ok > /var/lib/torrust/host-ready"
    )
    res = flow.cli("infra.wait", "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["cloud_init"] == "done"
    res = flow.cli("app.deploy", "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["status"] == "deployed"


def test_plan_output_never_shows_the_token(flow):
    flow.applied()
    res = flow.cli("infra.plan")
    assert res.returncode == 0, res.stderr
    assert "provider token in use: ***" in res.stdout and TOKEN not in res.stdout + res.stderr
    assert flow.secrets_seen() == []


def test_ssh_status_environments_providers(flow):
    flow.booted(key=True)
    res = flow.cli("infra.ssh", "--print")
    assert res.returncode == 0, res.stderr
    known = flow.cwd / ".torrust/prov/known_hosts"
    assert f"-o UserKnownHostsFile={known} -o StrictHostKeyChecking=yes" in res.stdout
    assert f"-p {flow.host.port}" in res.stdout and res.stdout.strip().endswith("torrust@127.0.0.1")
    res = flow.cli("infra.ssh", "--command", "id -un")  # the real ssh client, exec'd
    assert res.returncode == 0 and res.stdout.strip() == "torrust", res.stderr
    res = flow.cli("infra.status", "--json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["outputs"]["ipv4"] == "127.0.0.1" and doc["recorded"]["source"] == "apply"
    assert doc["host_origin"] == ".torrust/prov/host.env:2"
    res = flow.cli("infra.environments", "--json", name=None)
    assert res.returncode == 0, res.stderr
    rows = {r["env"]: r for r in json.loads(res.stdout)["environments"]}
    assert rows["prov"]["recorded_by"] == "apply" and rows["prov"]["host"] == "127.0.0.1"
    res = flow.cli("infra.console")
    assert res.returncode == 61 and "for libvirt VMs" in res.stderr
    res = flow.cli("infra.console", "--print", env={"TORRUST_PROVIDER": "libvirt"})
    assert res.stdout.strip() == "virsh -c qemu:///system console torrust-prov", res.stderr


def test_changed_host_key_stops_the_wait_at_once(flow):
    flow.applied()
    flow.restart_with_new_host_key()
    res = flow.cli("infra.wait")
    assert res.returncode == 12, res.stderr
    assert "changed since it was recorded" in res.stderr and "ssh-keygen -f" in res.stderr


def test_destroy_needs_confirmation_and_respects_protection(flow):
    flow.applied()
    res = flow.cli("infra.destroy")
    assert res.returncode == 5, res.stderr
    protected = {"TORRUST_DELETION_PROTECTION": "true"}
    res = flow.cli("infra.destroy", "--yes", env=protected)
    assert res.returncode == 62, res.stderr
    assert "'prov' is protected (TORRUST_DELETION_PROTECTION=true)" in res.stderr and "--force-protected" in res.stderr
    assert "server" in flow.state["resources"]
    res = flow.cli("infra.destroy", "--force-protected", env={**protected, "CI": "1"})
    assert res.returncode == 5 and "--yes" in res.stderr, res.stderr  # still a destructive action to confirm
    assert "server" in flow.state["resources"]
    # --force-protected passes the tool's own guard; Hetzner's protection (set at apply) still
    # refuses until TORRUST_DELETION_PROTECTION=false is applied, as the hint says
    res = flow.cli("infra.destroy", "--yes", "--force-protected", env=protected)
    assert res.returncode == 60 and "server deletion is protected" in res.stderr, res.stderr
    assert "server" in flow.state["resources"] and (flow.cwd / ".torrust/prov/host.env").exists()
    res = flow.cli("infra.apply", "--no-wait")  # protection off at the provider
    assert res.returncode == 0, res.stderr
    res = flow.cli("infra.destroy", "--yes", "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == {"ok": True, "env": "prov", "destroyed": True}
    assert flow.state["resources"] == {}
    assert not (flow.cwd / ".torrust/prov/host.env").exists()
    assert f"[127.0.0.1]:{flow.host.port}" not in (flow.cwd / ".torrust/prov/known_hosts").read_text()
    assert not (flow.cwd / ".torrust/prov/infra/hetzner/ssh_host_ed25519_key").exists()  # the next server: a new key
    res = flow.cli("infra.output")
    assert res.returncode == 61, res.stderr
    res = flow.cli("infra.destroy", "--yes")
    assert res.returncode == 0, res.stderr  # a re-run (e.g. after a failed destroy) is safe


def test_force_protected_destroys_a_protected_server_the_provider_does_not_guard(flow):
    """Issue #19, item 10: libvirt has no provider-side protection, so the tool's refusal is
    the guard: without --force-protected nothing is destroyed, with it the server goes."""
    env_file = (flow.cwd / ".env.prov").read_text().replace("TORRUST_PROVIDER=hetzner", "TORRUST_PROVIDER=libvirt")
    (flow.cwd / ".env.lv").write_text(env_file + "TORRUST_DELETION_PROTECTION=true\n")
    try:
        res = flow.cli("infra.apply", "--no-wait", name="lv")
        assert res.returncode == 0, res.stderr
        state = flow.cwd / ".torrust/lv/infra/libvirt/terraform.tfstate"
        assert "server" in json.loads(state.read_text())["resources"]
        res = flow.cli("infra.destroy", "--yes", name="lv")
        assert res.returncode == 62 and "'lv' is protected" in res.stderr, res.stderr
        assert "server" in json.loads(state.read_text())["resources"]
        res = flow.cli("infra.destroy", "--yes", "--force-protected", "--json", name="lv")
        assert res.returncode == 0, res.stderr
        assert json.loads(res.stdout) == {"ok": True, "env": "lv", "destroyed": True}
        assert json.loads(state.read_text())["resources"] == {}
        assert not (flow.cwd / ".torrust/lv/host.env").exists()
    finally:
        (flow.cwd / ".env.lv").unlink()


def test_a_rebuilt_server_is_keyed_afresh_after_destroy(flow):
    flow.destroyed()
    old_key = (flow.host.run_dir / "host_keys" / "ssh_host_ed25519_key.pub").read_text().split()[1]
    res = flow.cli("infra.apply", "--no-wait")
    assert res.returncode == 0, res.stderr
    new_key = flow.boot_from_user_data(ready=True).split()[1]
    assert new_key != old_key
    assert flow.known_hosts() == f"[127.0.0.1]:{flow.host.port} ssh-ed25519 {new_key}\n"  # pinned before the wait
    res = flow.cli("infra.wait", "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["cloud_init"] == "done"
    assert len(flow.known_hosts().splitlines()) == 1


def test_the_token_never_reaches_a_file_or_output(flow):
    flow.applied()
    assert flow.cli("infra.plan").returncode == 0
    for p in (flow.cwd / ".torrust").rglob("*"):
        if p.is_file():
            assert TOKEN not in p.read_text(errors="replace"), p
    assert not any(TOKEN in out for out in flow.outputs)
    assert flow.secrets_seen() == []  # nor the server's private host key


def test_hetzner_without_token_is_refused(flow):
    res = flow.cli("infra.plan", env={"HCLOUD_TOKEN": ""})
    assert res.returncode == 2 and "HCLOUD_TOKEN is not set" in res.stderr


# ------------------------------------------------------------ a server you already own
def _own(flow: Flow) -> tuple[str, ...]:
    """The environment 'own': the SSH test host as a server you already own (not yet
    registered); returns the register command."""
    own = {
        "TORRUST_DEPLOY_TARGET": "ssh",
        "TORRUST_PROVIDER": "existing",
        "TORRUST_SSH_KEY": str(flow.host.client_key),
        "TORRUST_DEPLOY_ROOT": str(flow.host.deploy_root),
        "TORRUST_SSH_CONNECT_TIMEOUT": "5",
        "TORRUST_WAIT_SSH_TIMEOUT": "5",
        "TORRUST_WAIT_INTERVAL": "1",
        **STRONG,
    }
    (flow.cwd / ".env.own").write_text("".join(f"{k}={v}\n" for k, v in own.items()))
    shutil.rmtree(flow.cwd / ".torrust/own", ignore_errors=True)
    return ("infra.register", "--host", "127.0.0.1", "--port", str(flow.host.port), "--json")


def _shown(flow: Flow) -> str:
    """The fingerprint of the host key the SSH test host shows (checked out of band)."""
    return subprocess.run(
        ["ssh-keygen", "-lf", str(flow.host.run_dir / "host_keys" / "ssh_host_ed25519_key.pub")],
        capture_output=True,
        text=True,
    ).stdout.split()[1]


def test_register_then_bootstrap_then_wait(flow):
    flow.booted(key=True)
    register = _own(flow)
    flow.on_host("rm -rf /var/lib/torrust /var/lib/cloud /run/cloud-init")
    shown = _shown(flow)
    # Finding 11: no first-use trust unless asked; the error shows what the server shows
    res = flow.cli(*register, name="own")
    assert res.returncode == 12, res.stderr
    assert "is not known yet" in res.stderr and f"it shows ssh-ed25519 {shown}" in res.stderr
    assert "--host-key-fingerprint" in res.stderr and "--accept-new-host-key" in res.stderr
    assert not (flow.cwd / ".torrust/own/host.env").exists() and not (flow.cwd / ".torrust/own/known_hosts").exists()
    wrong = "SHA256:" + "A" * 43
    res = flow.cli(*register, "--host-key-fingerprint", wrong, name="own")
    assert res.returncode == 12 and f"does not show the host key {wrong}" in res.stderr, res.stderr
    assert not (flow.cwd / ".torrust/own/known_hosts").exists()
    res = flow.cli(*register, "--host-key-fingerprint", shown, name="own")  # verified out of band
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["compose"].startswith("2") and doc["docker"] and doc["sudo"] is True
    assert doc["host_key"] == f"ssh-ed25519 {shown}"
    assert (flow.cwd / ".torrust/own/known_hosts").read_text().startswith(f"[127.0.0.1]:{flow.host.port} ")

    res = flow.cli("infra.wait", name="own")  # never bootstrapped, no cloud-init
    assert res.returncode == 67 and "never bootstrapped" in res.stderr, res.stderr

    # packages would apt-get install unattended-upgrades; firewall needs NET_ADMIN the test host lacks
    res = flow.cli("infra.bootstrap", "--skip", "packages,firewall", "--json", name="own")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert [x["step"] for x in doc["steps"]] == [
        "self", "packages", "user", "docker", "sshd", "firewall", "sysctl", "network", "upgrades", "storage", "marker"
    ]  # fmt: skip
    assert doc["skipped"] == ["packages", "firewall"]
    assert {"self", "user", "docker", "sshd", "sysctl", "upgrades", "marker"} <= set(doc["changed"])
    flow.on_host(
        "grep -qx 'PermitRootLogin no' /etc/ssh/sshd_config.d/00-torrust.conf && sshd -t "
        "&& grep -q 'nf_conntrack_max = 1048576' /etc/sysctl.d/90-torrust.conf "
        "&& grep -qx nf_conntrack /etc/modules-load.d/torrust-conntrack.conf "
        "&& grep -q '\"ip6tables\": true' /etc/docker/daemon.json && id -nG torrust | grep -qw docker "
        "&& test -x /usr/local/sbin/torrust-harden && test -f /var/lib/torrust/host-ready"
    )
    res = flow.cli("infra.bootstrap", "--skip", "packages,firewall", "--json", name="own")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["changed"] == []  # idempotent

    res = flow.cli("infra.wait", name="own")
    assert res.returncode == 0, res.stderr
    for flags in (("--yes",), ("--yes", "--force-protected")):  # never, whatever the flags
        res = flow.cli("infra.destroy", *flags, name="own")
        assert res.returncode == 62 and "never deletes" in res.stderr, res.stderr


def test_register_a_host_without_docker_keeps_the_record_for_bootstrap(flow):
    flow.booted(key=True)
    res = flow.cli(*_own(flow), "--host-key-fingerprint", _shown(flow), name="own")  # registered before
    assert res.returncode == 0, res.stderr
    flow.on_host("mv /usr/bin/docker /usr/bin/docker.off")
    try:
        res = flow.cli("infra.register", "--host", "127.0.0.1", "--port", str(flow.host.port), name="own")
    finally:
        flow.on_host("mv /usr/bin/docker.off /usr/bin/docker")
    assert res.returncode == 68, res.stderr
    assert "Docker engine is not reachable" in res.stderr and "infra.bootstrap" in res.stderr
    assert json.loads((flow.cwd / ".torrust/own/host.json").read_text())["ready"] is False
    res = flow.cli("infra.register", "--host", "127.0.0.1", "--port", str(flow.host.port), name="own")
    assert res.returncode == 0, res.stderr
    assert json.loads((flow.cwd / ".torrust/own/host.json").read_text())["ready"] is True


def test_register_refuses_a_wrong_key_and_records_nothing(flow, tmp_path):
    from tests.integration.conftest import make_keypair

    flow.booted()
    other = make_keypair(tmp_path / "other")
    (flow.cwd / ".env.wrong").write_text(
        f"TORRUST_DEPLOY_TARGET=ssh\nTORRUST_PROVIDER=existing\nTORRUST_SSH_KEY={other}\n"
        + "".join(f"{k}={v}\n" for k, v in STRONG.items())
    )
    res = flow.cli(
        "infra.register", "--host", "127.0.0.1", "--port", str(flow.host.port), "--accept-new-host-key", name="wrong"
    )
    assert res.returncode == 11, res.stderr
    assert not (flow.cwd / ".torrust/wrong/host.env").exists()


# ------------------------------------------------- every step of the hardening script
def test_hardening_script_every_step_in_its_own_network_namespace(images, workdir, unique):
    """All steps, packages and firewall included, as root in a container on a Docker
    bridge (its own network namespace, NET_ADMIN there only): UFW rules on both
    families; a second run changes nothing. Installing the packages needs the mirror."""
    from tasks.config.settings import load
    from tasks.infra import cloudinit

    s = load(
        "local",
        root=workdir,
        environ={"TORRUST_SSH_PORT": "2222", "TORRUST_TLS": "true", "TORRUST_UDP_TRACKERS": "[::]:6969,[::]:6868"},
    )
    (workdir / "harden.env").write_text(cloudinit.harden_env(s, "hetzner"))
    script = (
        "useradd -m torrust && ssh-keygen -A >/dev/null "
        "&& bash /h/harden.sh /h/harden.env 2>/dev/null && echo '=== status' && ufw status "
        "&& echo '=== again' && bash /h/harden.sh /h/harden.env "
        "&& echo '=== sshd' && sshd -T | grep -E '^(port|permitrootlogin|passwordauthentication) '"
    )
    res = docker(
        "run", "--rm", "--name", f"{unique}-harden", "--cap-add", "NET_ADMIN",
        "-v", "/var/run/docker.sock:/var/run/docker.sock",
        "-v", f"{cloudinit.HARDEN_SCRIPT}:/h/harden.sh:ro", "-v", f"{workdir / 'harden.env'}:/h/harden.env:ro",
        "--entrypoint", "bash", images["sshhost"], "-c", script,
        check=False, timeout=300,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    first, rest = res.stdout.split("=== status\n")
    status, rest = rest.split("=== again\n")
    again, sshd = rest.split("=== sshd\n")
    assert "STEP packages changed installed ufw unattended-upgrades" in first
    assert "STEP firewall changed" in first and "STEP sshd changed" in first
    assert "STEP network changed hooks at boot and after docker/ufw/nftables restarts;" in first
    for rule in ("2222/tcp", "80/tcp", "443/tcp", "443/udp", "6868/udp", "6969/udp"):
        assert f"\n{rule} " in status and f"\n{rule} (v6) " in status, (rule, status)
    assert "22/tcp " not in status.replace("2222/tcp", "")
    assert [ln.split()[2] for ln in again.splitlines() if ln.startswith("STEP ")] == ["ok"] * 11, again
    assert sorted(sshd.split("\n")[:3]) == ["passwordauthentication no", "permitrootlogin no", "port 2222"]
