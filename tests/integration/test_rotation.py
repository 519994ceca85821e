"""app.rotate-secrets (issue #15, item 4) against the MariaDB test stack through the SSH
test host: the secrets live in .env.e2e (as app.config writes them), not in the process
environment.

Faults first, each leaving a working stack on the OLD secrets and the old .env.e2e (never
a mix): MySQL refusing the ALTER USER, a gate that fails (the ALTER silently not applied,
so the tracker cannot log in with the new password), the SSH connection dropped after the
switch. Both faults inside the database container are injected with a `mysql` wrapper
placed in front of the real client (named as a fault injection, removed afterwards).
Then the rotation itself (the `rotated` fixture, once, whichever test asks first; every
test reads the secrets in effect from .env.e2e, so any test runs alone or in any order):
new values in .env.e2e (old file kept, 0600), the old token and
passwords refused, the new ones working, the scheduled backup running with the new
password, no secret in any output.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import requests

from tests.conftest import ROOT, clean_environ
from tests.integration.conftest import SSHHost, docker, free_port
from tests.integration.test_backup import TABLES_SQL, BackupDeployment
from tests.integration.test_deploy import STRONG

SECRETS = ("TORRUST_TRACKER_ADMIN_TOKEN", "TORRUST_MYSQL_PASSWORD", "TORRUST_MYSQL_ROOT_PASSWORD")
WRAPPER = """#!/bin/sh
# FAULT INJECTION (tests/integration/test_rotation.py): ALTER USER is {what}.
if [ -t 0 ]; then exec /usr/bin/mariadb "$@"; fi
sql=$(cat)
case $sql in
  *"ALTER USER"*) {action} ;;
esac
printf '%s\\n' "$sql" | exec /usr/bin/mariadb "$@"
"""
REFUSE = WRAPPER.format(  # once: the put-back's ALTER USER goes through
    what="refused once",
    action='[ -e /tmp/refused ] || { touch /tmp/refused; echo "ERROR 1396 (HY000): Operation ALTER USER failed '
    '(fault injected)" >&2; exit 1; }',
)
SWALLOW = WRAPPER.format(what="swallowed (reported done, not applied)", action="exit 0")


class RotationDeployment(BackupDeployment):
    def env_file(self) -> dict[str, str]:
        lines = (self.workdir / ".env.e2e").read_text().splitlines()
        return dict(ln.split("=", 1) for ln in lines if "=" in ln and not ln.startswith("#"))

    def mysql_cid(self) -> str:
        return self.containers()["mysql"][0]

    def inject(self, script: str) -> None:
        cid = self.mysql_cid()
        subprocess.run(
            [
                "docker",
                "exec",
                "-i",
                "-u",
                "root",
                cid,
                "sh",
                "-c",
                "cat > /usr/local/bin/mysql && chmod 755 /usr/local/bin/mysql",
            ],
            input=script,
            text=True,
            check=True,
            timeout=60,
        )
        self.injected = cid

    def remove_injection(self) -> None:
        docker("exec", "-u", "root", self.injected, "rm", "-f", "/usr/local/bin/mysql", check=False)

    def login(self, user: str, password: str) -> bool:
        """Can `user` log in over TCP with `password` (read from stdin inside the container)?"""
        res = subprocess.run(
            [
                *("docker", "exec", "-i", self.mysql_cid(), "sh", "-c"),
                'IFS= read -r p; MYSQL_PWD=$p exec mariadb -u"$1" -h127.0.0.1 -e "SELECT 1"',
                *("login", user),
            ],
            input=password + "\n",
            capture_output=True,
            text=True,
            timeout=60,
        )
        return res.returncode == 0

    def api_status(self, token: str) -> int:
        r = requests.get(
            f"http://127.0.0.1:{self.http_port}/api/v1/stats",
            params={"token": token},
            headers={"Host": "api.torrust.local"},
            timeout=10,
        )
        return r.status_code

    def works_on(self, values: dict[str, str]) -> None:
        """The whole stack runs on exactly these secrets: no mix."""
        assert self.env_file()["TORRUST_TRACKER_ADMIN_TOKEN"] == values["TORRUST_TRACKER_ADMIN_TOKEN"]
        assert self.api_status(values["TORRUST_TRACKER_ADMIN_TOKEN"]) == 200
        assert self.login("root", values["TORRUST_MYSQL_ROOT_PASSWORD"])
        assert self.login("torrust", values["TORRUST_MYSQL_PASSWORD"])
        assert self.announce_udp().interval == 120 and b"interval" in self.announce_http()
        assert not (self.root / "deploy.lock").exists()

    def rotate(self, *flags: str) -> tuple[int, dict, str]:
        return self.json_cli("app.rotate-secrets", "--yes", *flags)

    def in_effect(self) -> dict[str, str]:
        """The secrets .env.e2e holds now (every value ever in effect is remembered)."""
        values = {k: self.env_file()[k] for k in SECRETS}
        self.seen.update(values.values())
        return values


@pytest.fixture(scope="module")
def rdep(images, tmp_path_factory):
    work = tmp_path_factory.mktemp("rotation")
    (work / "cwd").mkdir()
    project = "ro" + os.urandom(3).hex()
    host = SSHHost(f"{project}-sshhost", free_port(), work, images["sshhost"])
    d = RotationDeployment(host, work / "cwd", project)
    d.env.update({"TORRUST_PROMETHEUS": "false", "TORRUST_BACKUP": "true"})
    for name in SECRETS:  # in the environment's file, as app.config writes them
        del d.env[name]
    env_file = d.workdir / ".env.e2e"
    env_file.write_text("# e2e secrets\n" + "".join(f"{k}={STRONG[k]}\n" for k in SECRETS))
    env_file.chmod(0o600)
    try:
        host.start()
        assert d.cli("app.preflight", "--accept-new-host-key").returncode == 0
        code, out = d.deploy()
        assert code == 0, out["_stderr"]
        d.sql(TABLES_SQL)
        d.seen = set()
        assert d.in_effect() == {k: STRONG[k] for k in SECRETS}
        yield d
    finally:
        d.remove()


def test_dry_run_names_the_secrets_and_changes_nothing(rdep):
    before = (rdep.workdir / ".env.e2e").read_text()
    code, doc, err = rdep.json_cli("app.rotate-secrets", "--dry-run")
    assert code == 0, err
    assert doc["rotate"] == list(SECRETS) and doc["dry_run"] is True
    assert (rdep.workdir / ".env.e2e").read_text() == before
    code, doc, err = rdep.json_cli("app.rotate-secrets", "--only", "admin-token", "--only", "grafana-admin-password")
    assert code == 2 and "grafana-admin-password" in doc["message"], err
    code, doc, err = rdep.json_cli("app.rotate-secrets", env={"CI": "1"})
    assert code == 5 and "--yes" in err
    code, doc, err = rdep.json_cli(
        "app.rotate-secrets", "--yes", env={"TORRUST_MYSQL_PASSWORD": STRONG["TORRUST_MYSQL_PASSWORD"]}
    )
    assert code == 2 and "process environment" in doc["message"], err
    assert (rdep.workdir / ".env.e2e").read_text() == before


@pytest.mark.parametrize("fault", ["mysql-refuses", "gate-fails"])
def test_a_fault_inside_the_database_leaves_the_old_secrets(rdep, fault):
    rows, current, old = rdep.rows(), rdep.current(), rdep.in_effect()
    rdep.inject(REFUSE if fault == "mysql-refuses" else SWALLOW)
    try:
        code, doc, err = rdep.rotate("--wait-timeout", "40")
    finally:
        rdep.remove_injection()
    assert code == 34, err
    assert "rotation was undone" in doc["message"]
    assert ("ALTER USER failed" in doc["message"]) == (fault == "mysql-refuses")
    assert rdep.in_effect() == old
    rdep.works_on(old)
    assert rdep.current() == current and rdep.rows() == rows
    line = [x for x in rdep.audit() if x.get("event") == "rotate-secrets"][-1]
    assert line["result"] == "rolled_back" and line["rotated"] == list(SECRETS)
    backups = sorted(rdep.workdir.glob(".env.e2e.bak-*"))
    assert backups and oct(backups[-1].stat().st_mode)[-3:] == "600"


def test_a_dropped_connection_after_the_switch_leaves_the_old_secrets(rdep):
    current, old = rdep.current(), rdep.in_effect()
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "tasks.py"), "app.rotate-secrets", "--yes", "--env", "e2e"],
        cwd=rdep.workdir,
        env=clean_environ(**rdep.env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    deadline = time.monotonic() + 180
    while rdep.current() == current:  # the new release was switched in (the ALTER ran before)
        assert time.monotonic() < deadline and proc.poll() is None, "the rotation never switched"
        time.sleep(0.02)
    docker("exec", rdep.host.name, "pkill", "-KILL", "-f", "sshd: torrust", check=False)
    _out, err = proc.communicate(timeout=400)
    rdep.outputs.append(_out + err)
    assert proc.returncode == 34, err
    assert "connection was lost" in err
    assert rdep.in_effect() == old
    rdep.works_on(old)
    assert rdep.current() == current


@pytest.fixture(scope="module")
def rotated(rdep):
    """The rotation, run once: (exit code, JSON document, stderr, secrets before, secrets after)."""
    old = rdep.in_effect()
    code, doc, err = rdep.rotate()
    return code, doc, err, old, rdep.in_effect()


def test_rotation_applies_new_secrets_and_refuses_the_old(rdep, rotated):
    code, doc, err, old, new = rotated
    assert code == 0, err
    assert doc["rotated"] == list(SECRETS) and doc["status"] == "deployed"
    assert all(new[k] != old[k] and len(new[k]) >= 40 for k in SECRETS)
    assert oct((rdep.workdir / ".env.e2e").stat().st_mode)[-3:] == "600"
    backup = rdep.workdir / doc["backup"].split("/")[-1]
    assert oct(backup.stat().st_mode)[-3:] == "600"
    assert backup.read_text().count(old["TORRUST_MYSQL_ROOT_PASSWORD"]) == 1
    rdep.works_on(new)
    assert rdep.api_status(old["TORRUST_TRACKER_ADMIN_TOKEN"]) != 200
    assert not rdep.login("root", old["TORRUST_MYSQL_ROOT_PASSWORD"])
    assert not rdep.login("torrust", old["TORRUST_MYSQL_PASSWORD"])
    line = [x for x in rdep.audit() if x.get("event") == "rotate-secrets" and x.get("result") == "ok"][-1]
    assert line == {**line, "rotated": list(SECRETS), "release": rdep.current()}


def test_the_scheduled_backup_runs_with_the_new_password(rdep, rotated):
    assert rotated[0] == 0, rotated[2]
    command = f"{rdep.root}/current/bin/torrust-backup backup"
    before = {r["id"] for r in rdep.listed()}
    res = rdep.sh(command, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    new = [r for r in rdep.listed() if r["id"] not in before]
    assert len(new) == 1 and new[0]["reason"] == "scheduled"


def test_no_secret_in_any_output_or_audit_line(rdep, rotated):
    text = "\n".join(rdep.outputs) + (rdep.root / "audit.log").read_text()
    text += (
        (rdep.root / "backups" / "backup.log").read_text() if (rdep.root / "backups" / "backup.log").exists() else ""
    )
    assert len(rdep.seen) >= 2 * len(SECRETS)  # the values before and after the rotation
    for secret in rdep.seen:
        assert secret not in text
