"""The first deploy of an environment (issue #18) and no silent removals (issue #15, item
3), end to end through the SSH test host (SQLite, Prometheus and Grafana on, backups on).

- A first deploy with backups on takes a baseline backup after the gate: health.check
  passes with no other command, app.backups lists it (reason `baseline`), the summary
  lists the next steps. A second deploy takes none.
- A baseline that fails (a full backup disk: a tiny tmpfs) keeps the healthy release,
  exits 33 and says the environment has no backup yet; nothing else is touched.
- Grafana on, then off: refused (exit 6, nothing touched) unless --allow-removal, then
  removed and audited; the backup cron job likewise, allowed by TORRUST_ALLOW_REMOVAL.
"""

from __future__ import annotations

import json
import os

import pytest

from tests.integration.conftest import DEVELOP_TRACKER, SSHHost, docker, free_port
from tests.integration.test_backup import BackupDeployment

SMALL_DIR = "/small-backups"
GRAFANA = {
    "TORRUST_TRACKER_IMAGE": DEVELOP_TRACKER,  # a release with metrics: Grafana's dashboards need them
    "TORRUST_PROMETHEUS": "true",
    "TORRUST_GRAFANA": "true",
    "TORRUST_GRAFANA_ADMIN_PASSWORD": "Gx5-Wq8Lm2Zt7Rv4Nb1Hc9Jf6Ks3Pd0T",
}


def make(images, tmp_path_factory, name: str, extra_mounts=()) -> BackupDeployment:
    work = tmp_path_factory.mktemp(name)
    (work / "cwd").mkdir()
    project = name[:2] + os.urandom(3).hex()
    host = SSHHost(f"{project}-sshhost", free_port(), work, images["sshhost"])
    d = BackupDeployment(host, work / "cwd", project)
    d.env.update({"TORRUST_DB_DRIVER": "sqlite3", "TORRUST_BACKUP": "true", **GRAFANA})
    host.start(extra_mounts=list(extra_mounts))
    assert d.cli("app.preflight", "--accept-new-host-key").returncode == 0
    return d


@pytest.fixture(scope="module")
def first(images, tmp_path_factory):
    d = make(images, tmp_path_factory, "firstdeploy")
    try:
        yield d
    finally:
        d.remove()


@pytest.fixture(scope="module")
def full_disk(images, tmp_path_factory):
    volume = "fd" + os.urandom(3).hex() + "-small"
    docker(
        "volume",
        "create",
        "--driver",
        "local",
        *("--opt", "type=tmpfs", "--opt", "device=tmpfs", "--opt", "o=size=1m,uid=1000,gid=1000,mode=0700"),
        volume,
    )
    d = None
    try:
        d = make(images, tmp_path_factory, "fulldisk", [f"{volume}:{SMALL_DIR}"])
        d.env["TORRUST_BACKUP_DIR"] = SMALL_DIR
        d.sh(f"dd if=/dev/zero of={SMALL_DIR}/filler bs=64k count=64 2>/dev/null; true")  # full
        yield d
    finally:
        if d is not None:
            d.remove()
        docker("volume", "rm", "-f", volume, check=False)


def test_first_deploy_takes_a_baseline_backup_after_the_gate(first):
    res = first.cli("app.deploy")
    assert res.returncode == 0, res.stderr
    assert "baseline backup:" in res.stdout and "next steps:" in res.stdout
    assert "health.check --env e2e" in res.stdout and f"{first.root}/audit.log" in res.stdout
    listed = first.listed()
    assert len(listed) == 1 and listed[0]["reason"] == "baseline" and listed[0]["release"] == first.current()
    line = [x for x in first.audit() if x.get("event") == "deploy"][-1]
    assert line["result"] == "deployed" and line["baseline_backup"] == listed[0]["id"]
    backup = [x for x in first.audit() if x.get("event") == "backup"][-1]
    assert backup["reason"] == "baseline" and backup["backup"] == listed[0]["id"]
    # health.check passes with no other command: the backup age probe included (the network
    # group judges the host's kernel settings, which a test container cannot hold)
    code, doc, err = first.json_cli("health.check", "--skip", "network")
    assert code == 0, err
    age = next(p for p in doc["probes"] if p["name"] == "backup age")
    assert age["ok"] and listed[0]["id"] in age["detail"]


def test_a_second_deploy_takes_no_other_baseline(first):
    count = len(first.listed())
    code, out = first.deploy(env={"TORRUST_ANNOUNCE_INTERVAL": "300"})
    assert code == 0 and out["status"] == "deployed", out["_stderr"]
    assert out["baseline_backup"] is None and out["first_deploy"] is False
    assert len(first.listed()) == count
    first.env["TORRUST_ANNOUNCE_INTERVAL"] = "300"


def test_a_missing_backup_fails_health_check_with_what_to_do(first, tmp_path):
    code, doc, _ = first.json_cli("health.check", "--only", "host", env={"TORRUST_BACKUP_DIR": str(tmp_path)})
    age = next(p for p in doc["probes"] if p["name"] == "backup age")
    assert code == 40 and not age["ok"]
    assert "next scheduled run" in age["detail"] and "./tasks.py app.backup --env e2e" in age["detail"]


def test_removing_grafana_is_refused_without_the_flag(first):
    before, current = first.containers(), first.current()
    audit = (first.root / "audit.log").read_text()
    code, out = first.deploy(env={"TORRUST_GRAFANA": "false"})
    assert code == 6, out["_stderr"]
    assert out["removals"] == ["grafana"] and "service grafana" in out["message"]
    assert "--allow-removal" in out["hint"]
    assert first.containers() == before and first.current() == current
    assert (first.root / "audit.log").read_text() == audit  # not even a lock was taken
    # the dry run says the same, read-only
    code, plan, err = first.json_cli("app.deploy", "--dry-run", env={"TORRUST_GRAFANA": "false"})
    assert code == 0 and plan["removals"] == ["service grafana"] and plan["removals_refused"] is True, err


def test_removing_grafana_with_the_flag_is_done_and_audited(first):
    code, out = first.deploy("--allow-removal", env={"TORRUST_GRAFANA": "false"})
    assert code == 0, out["_stderr"]
    assert out["removed"] == ["grafana"] and out["removal_allowed_by"] == "--allow-removal"
    assert "grafana" not in first.containers()
    line = [x for x in first.audit() if x.get("event") == "deploy"][-1]
    assert line["removed"] == ["grafana"] and line["removal_allowed_by"] == "--allow-removal"
    first.env["TORRUST_GRAFANA"] = "false"


def test_the_backup_cron_job_goes_only_when_the_settings_say_so(first):
    cron = f"/etc/cron.d/torrust-backup-{first.project}"
    code, out = first.deploy(env={"TORRUST_BACKUP": "false"})
    assert code == 6 and out["removals"] == ["backup-cron"], out["_stderr"]
    assert first.sh(f"test -e {cron}", check=False).returncode == 0
    code, out = first.deploy(env={"TORRUST_BACKUP": "false", "TORRUST_ALLOW_REMOVAL": "backup-cron"})
    assert code == 0 and out["removed"] == ["backup-cron"], out["_stderr"]
    assert out["removal_allowed_by"] == "TORRUST_ALLOW_REMOVAL"
    assert first.sh(f"test -e {cron}", check=False).returncode == 1


def test_a_failed_baseline_keeps_the_release_and_says_there_is_no_backup(full_disk):
    d = full_disk
    filler = d.sh(f"ls -A {SMALL_DIR}").stdout.split()
    res = d.cli("app.deploy", "--json")
    assert res.returncode == 33, res.stderr
    out = json.loads(res.stdout)
    assert out["status"] == "deployed" and out["ok"] is False and out["baseline_backup"] is None
    assert "disk is full" in out["baseline_error"] and "exited with" not in out["baseline_error"]
    assert "has no backup yet" in res.stderr and "app.backup --env e2e" in res.stderr
    assert d.current() == out["release"]  # the healthy release stays
    assert sorted(d.containers()) == ["grafana", "prometheus", "proxy", "tracker"]
    assert d.announce_udp().interval == 120
    assert d.sh(f"ls -A {SMALL_DIR}").stdout.split() == filler  # nothing partial left
    assert not (d.root / "deploy.lock").exists()
    line = [x for x in d.audit() if x.get("event") == "deploy"][-1]
    assert line["result"] == "deployed" and "disk is full" in line["baseline_error"]
    # the text summary says it too
    res = d.cli("app.deploy")  # unchanged, still no backup: tried again, fails again
    assert res.returncode == 33 and "NO BACKUP YET" in res.stdout, res.stderr
