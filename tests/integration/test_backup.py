"""Backups end to end: real MariaDB in the deployed stack, through the SSH test host.

One deployment (MySQL, backups on) is shared by the module; the tests run in order:
back up, restore every row, refuse damaged backups, restore drills, a full disk, a
dropped connection, retention, the cron entry, and the entry's removal.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.integration.conftest import SSHHost, docker, free_port
from tests.integration.test_deploy import STRONG, Deployment

SMALL_DIR = "/small-backups"  # a 6 MiB tmpfs inside the SSH host: the "full disk"
TABLES_SQL = """
INSERT INTO torrents (info_hash, completed) SELECT SHA1(seq), seq % 97 FROM seq_1_to_3000;
INSERT INTO whitelist (info_hash) SELECT SHA1(CONCAT('w', seq)) FROM seq_1_to_500;
INSERT INTO `keys` (`key`, valid_until) SELECT MD5(seq), IF(seq % 3 = 0, NULL, 1700000000 + seq) FROM seq_1_to_200;
"""  # into the tracker's own tables (the stand-in creates them like the tracker does)


class BackupDeployment(Deployment):
    def sql(self, statement: str, check: bool = True) -> str:
        """Run SQL in the stack's database container (password read inside it)."""
        out = subprocess.run(
            [
                "docker",
                "compose",
                "--project-name",
                self.project,
                "exec",
                "-T",
                "mysql",
                "sh",
                "-c",
                'MYSQL_PWD="$MYSQL_ROOT_PASSWORD" exec mysql -uroot -N -B "$MYSQL_DATABASE"',
            ],
            input=statement,
            capture_output=True,
            text=True,
            timeout=120,
            cwd=self.workdir,
        )
        if check:
            assert out.returncode == 0, out.stderr
        return out.stdout

    def rows(self) -> dict[str, str]:
        return {t: self.sql(f"SELECT * FROM `{t}` ORDER BY id;") for t in ("torrents", "whitelist", "keys")}

    def json_cli(self, *args: str, env: dict | None = None, timeout: int = 400) -> tuple[int, dict, str]:
        res = self.cli(*args, "--json", env=env, timeout=timeout)
        assert "Traceback" not in res.stderr, res.stderr
        try:
            doc = json.loads(res.stdout)
        except json.JSONDecodeError:
            doc = {}
        return res.returncode, doc, res.stderr

    def backup(self, *flags: str, env: dict | None = None) -> dict:
        code, doc, err = self.json_cli("app.backup", *flags, env=env)
        assert code == 0, err
        return doc

    def listed(self, env: dict | None = None) -> list[dict]:
        code, doc, err = self.json_cli("app.backups", env=env)
        assert code == 0, err
        return doc["backups"]

    def sh(self, command: str, user: str = "torrust", check: bool = True) -> subprocess.CompletedProcess:
        return docker("exec", "-u", user, self.host.name, "sh", "-c", command, check=check, timeout=300)

    @property
    def backups_dir(self) -> Path:
        return self.root / "backups"

    def tracker_started(self) -> str:
        return self.containers()["tracker"][1]


@pytest.fixture(scope="module")
def bdep(images, tmp_path_factory):
    work = tmp_path_factory.mktemp("backup")
    (work / "cwd").mkdir()
    project = "bk" + os.urandom(3).hex()
    volume = f"{project}-small"
    docker(
        "volume",
        "create",
        "--driver",
        "local",
        "--opt",
        "type=tmpfs",
        "--opt",
        "device=tmpfs",
        "--opt",
        "o=size=6m,uid=1000,gid=1000,mode=0700",
        volume,
    )
    host = SSHHost(f"{project}-sshhost", free_port(), work, images["sshhost"])
    mounts = [f"{volume}:{SMALL_DIR}"]
    d = BackupDeployment(host, work / "cwd", project)
    d.env.update(
        {
            "TORRUST_PROMETHEUS": "false",
            "TORRUST_BACKUP": "true",
            "TORRUST_BACKUP_RETENTION_COUNT": "2",
            "TORRUST_BACKUP_RETENTION_DAYS": "14",
        }
    )
    try:
        host.start(extra_mounts=mounts)
        assert d.cli("app.preflight", "--accept-new-host-key").returncode == 0
        code, out = d.deploy()
        assert code == 0, out["_stderr"]
        d.baseline = out["baseline_backup"]  # the first deploy with backups on takes one (issue #18)
        assert d.baseline and [r["reason"] for r in d.listed()] == ["baseline"]
        d.sql(TABLES_SQL)
        yield d
    finally:
        d.remove()
        docker("volume", "rm", "-f", volume, check=False)
        for name in docker("ps", "-aq", "--filter", f"name={project}-verify-", check=False).stdout.split():
            docker("rm", "-f", name, check=False)


def test_backup_writes_a_complete_checksummed_backup(bdep):
    # a certificate store as Caddy leaves it: root-owned, private (TLS is off in this stack)
    certs = bdep.root / "storage/proxy/data/caddy/certificates"
    bdep.sh(
        f"mkdir -p {certs} && echo KEY > {certs}/site.key && chmod -R go-rwx {bdep.root}/storage/proxy/data",
        user="root",
    )
    doc = bdep.backup()
    assert doc["ok"] and {t: doc["tables"][t] for t in ("keys", "torrents", "whitelist")} == {
        "keys": 200,
        "torrents": 3000,
        "whitelist": 500,
    }
    b = bdep.backups_dir / doc["id"]
    manifest = json.loads((b / "manifest.json").read_text())
    names = {f["path"] for f in manifest["files"]}
    assert {"database.sql.zst", "release.tar.gz"} <= names  # zstd: the default, on the host
    assert "proxy-data.tar.gz" in names  # the certificate store (root-owned: read through sudo)
    members = subprocess.run(["tar", "-tzf", str(b / "proxy-data.tar.gz")], capture_output=True, text=True).stdout
    assert "./caddy/certificates/site.key" in members.split()
    release = subprocess.run(["tar", "-tzf", str(b / "release.tar.gz")], capture_output=True, text=True).stdout
    assert "./.env" in release.split() and "./compose.yaml" in release.split()
    for f in manifest["files"]:
        assert (b / f["path"]).stat().st_size == f["size"]
        assert oct((b / f["path"]).stat().st_mode)[-3:] == "600"
    assert manifest["release"] == bdep.current() and manifest["database"]["tables"]["torrents"] == 3000
    assert manifest["tools"]["mysqldump"].startswith("mysqldump") and manifest["started"] <= manifest["finished"]
    assert not [p for p in bdep.backups_dir.iterdir() if p.name.startswith(".")]
    assert not (bdep.root / "deploy.lock").exists()
    assert bdep.audit()[-1]["event"] == "backup" and bdep.audit()[-1]["backup"] == doc["id"]
    listed = bdep.listed()
    assert [r["id"] for r in listed] == [doc["id"], bdep.baseline] and listed[0]["verified"] is None
    assert 0 <= listed[0]["age_seconds"] < 600


def test_restore_brings_back_every_row(bdep):
    before = bdep.rows()
    doc = bdep.backup()
    bdep.sql("UPDATE torrents SET completed = completed + 1; DELETE FROM whitelist WHERE id < 100;")
    bdep.sql(
        "DROP TABLE `keys`; CREATE TABLE extra (id INT PRIMARY KEY); INSERT INTO torrents (info_hash) VALUES ('x');"
    )
    assert "keys" not in bdep.sql("SHOW TABLES;").split()
    code, out, err = bdep.json_cli("app.restore", "--id", doc["id"], "--yes")
    assert code == 0, err
    assert bdep.rows() == before
    assert "extra" not in bdep.sql("SHOW TABLES;").split()  # the database is replaced, not merged
    safety = out["safety_backup"]
    assert safety and (bdep.backups_dir / safety / "manifest.json").is_file()
    assert json.loads((bdep.backups_dir / safety / "manifest.json").read_text())["database"]["tables"]["extra"] == 0
    assert "probes" in out and bdep.containers()["tracker"]
    assert bdep.audit()[-1]["event"] == "restore" and bdep.audit()[-1]["result"] == "ok"
    assert not (bdep.root / "deploy.lock").exists()


def test_restore_needs_yes_under_ci(bdep):
    newest = bdep.listed()[0]["id"]
    code, doc, err = bdep.json_cli("app.restore", "--id", newest, env={"CI": "1"})
    assert code == 5 and "--yes" in err and doc["ok"] is False


@pytest.mark.parametrize("damage", ["flip", "truncate", "missing"])
def test_damaged_backup_is_refused_before_anything_is_touched(bdep, damage):
    doc = bdep.backup()
    b = bdep.backups_dir / doc["id"]
    victim = next(b.glob("database.sql.*")) if damage != "missing" else b / "release.tar.gz"
    if damage == "flip":
        data = bytearray(victim.read_bytes())
        data[len(data) // 2] ^= 0xFF
        victim.write_bytes(bytes(data))
    elif damage == "truncate":
        with open(victim, "r+b") as fh:
            fh.truncate(victim.stat().st_size // 2)
    else:
        victim.unlink()
    bdep.sql(f"INSERT INTO whitelist (info_hash) VALUES (SHA1('after the backup {damage}'));")
    rows, started, count = bdep.rows(), bdep.tracker_started(), len(bdep.listed())
    code, out, err = bdep.json_cli("app.restore", "--id", doc["id"], "--yes")
    assert code == 52, err
    assert victim.name in out["message"] and (
        "sha256" in out["message"] or "size" in out["message"] or "missing" in out["message"]
    )
    assert bdep.rows() == rows and bdep.tracker_started() == started  # not even stopped
    assert len(bdep.listed()) == count  # no safety backup was taken either
    shutil.rmtree(b)


def _forge(bdep, source_id: str, new_id: str, mutate) -> Path:
    """A copy of a backup under another id, changed by `mutate(dir, manifest)`."""
    src, dst = bdep.backups_dir / source_id, bdep.backups_dir / new_id
    shutil.copytree(src, dst)
    (dst / "verified.json").unlink(missing_ok=True)
    manifest = json.loads((dst / "manifest.json").read_text())
    manifest["id"] = new_id
    mutate(dst, manifest)
    (dst / "manifest.json").write_text(json.dumps(manifest))
    for p in [dst, *dst.iterdir()]:
        os.chown(p, 1000, 1000)
    return dst


def _rehash(dst: Path, manifest: dict, name: str) -> None:
    import hashlib

    data = (dst / name).read_bytes()
    for f in manifest["files"]:
        if f["path"] == name:
            f["sha256"], f["size"] = hashlib.sha256(data).hexdigest(), len(data)


def test_verify_drill_passes_a_good_backup_and_catches_bad_ones(bdep):
    good = bdep.backup()["id"]
    code, out, err = bdep.json_cli("app.backup-verify", "--id", good)
    assert code == 0, err
    assert out["tables"]["torrents"] == 3000
    assert {r["id"]: r["verified"] for r in bdep.listed()}[good] is True

    def bad_sql(dst: Path, manifest: dict) -> None:  # intact checksums, a dump that does not load
        dump = next(dst.glob("database.sql.*"))
        tool = ["zstd", "-q", "-c"] if dump.suffix == ".zst" else ["gzip", "-c"]
        dump.write_bytes(subprocess.run(tool, input=b"CREATE TABLE broken (;\n", capture_output=True).stdout)
        _rehash(dst, manifest, dump.name)

    def fewer_rows(dst: Path, manifest: dict) -> None:  # the dump restores, but not what was recorded
        manifest["database"]["tables"]["torrents"] += 1
        manifest["database"]["tables_before"]["torrents"] += 1

    for bad_id, mutate, message in (
        ("20200101T000000Z-bad1", bad_sql, "loading the dump failed"),
        ("20200101T000000Z-bad2", fewer_rows, "table torrents: 3000 rows restored, manifest says 3001"),
    ):
        dst = _forge(bdep, good, bad_id, mutate)
        code, out, err = bdep.json_cli("app.backup-verify", "--id", bad_id)
        assert code == 53, err
        assert message in out["message"], out
        assert {r["id"]: r["verified"] for r in bdep.listed()}[bad_id] is False
        shutil.rmtree(dst)
    assert not docker("ps", "-aq", "--filter", f"name={bdep.project}-verify-").stdout.strip()  # scratch removed


def test_download_then_restore_from_the_copy(bdep, tmp_path):
    doc = bdep.backup()
    rows = bdep.rows()
    code, out, err = bdep.json_cli("app.backup-download", "--id", doc["id"], "--dest", str(tmp_path / "dl"))
    assert code == 0, err
    local = tmp_path / "dl" / doc["id"]
    assert out["path"] == str(local) and (local / "manifest.json").is_file()
    assert not [p for p in (tmp_path / "dl").iterdir() if p.name.startswith(".")]
    # a damaged copy is refused before the host is touched
    bad = tmp_path / "bad"
    shutil.copytree(local, bad)
    dump = next(bad.glob("database.sql.*"))
    dump.write_bytes(dump.read_bytes()[:-10])
    started = bdep.tracker_started()
    code, out, err = bdep.json_cli("app.restore", "--from", str(bad), "--yes")
    assert code == 52 and dump.name in out["message"], err
    assert bdep.tracker_started() == started
    # the host loses the backup; the downloaded copy restores it (as onto a new host)
    shutil.rmtree(bdep.backups_dir / doc["id"])
    bdep.sql("DELETE FROM torrents WHERE id % 2 = 0;")
    code, out, err = bdep.json_cli("app.restore", "--from", str(local), "--yes", "--no-safety-backup")
    assert code == 0, err
    assert bdep.rows() == rows and out["safety_backup"] is None
    assert (bdep.backups_dir / doc["id"] / "manifest.json").is_file()


def test_full_disk_fails_cleanly_and_keeps_earlier_backups(bdep):
    small = {"TORRUST_BACKUP_DIR": SMALL_DIR}
    first = bdep.backup(env=small)["id"]
    # fill the tmpfs, leaving less than a backup needs
    bdep.sh(f"dd if=/dev/zero of={SMALL_DIR}/filler bs=64k count=400 2>/dev/null; true")
    bdep.sh(f"df -k {SMALL_DIR} | tail -1")
    started = bdep.tracker_started()
    code, out, err = bdep.json_cli("app.backup", "--stop-tracker", env=small)
    assert code == 50, err
    assert "tracker" in bdep.containers() and bdep.tracker_started() != started  # stopped, then started again
    assert "No space left on device" in out["message"], out
    assert [r["id"] for r in bdep.listed(env=small)] == [first]
    names = bdep.sh(f"ls -A {SMALL_DIR}").stdout.split()
    assert sorted(names) == sorted([first, "filler"]), names  # no .tmp-* left behind
    check = bdep.sh(f"{bdep.root}/current/bin/torrust-backup check {first} --dir {SMALL_DIR} --json", check=False)
    assert check.returncode == 0 and json.loads(check.stdout)["ok"], check.stdout + check.stderr
    assert not (bdep.root / "deploy.lock").exists()


def test_dropped_connection_during_a_backup(bdep):
    before = {r["id"] for r in bdep.listed()}
    # hold a table lock for a few seconds: the backup blocks in its database step
    holder = subprocess.Popen(
        [
            "docker",
            "compose",
            "--project-name",
            bdep.project,
            "exec",
            "-T",
            "mysql",
            "sh",
            "-c",
            'MYSQL_PWD="$MYSQL_ROOT_PASSWORD" exec mysql -uroot "$MYSQL_DATABASE" '
            '-e "LOCK TABLES whitelist WRITE; DO SLEEP(8); UNLOCK TABLES;"',
        ],
        cwd=bdep.workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1)
    proc = subprocess.Popen(
        [*bdep_cli_argv(bdep), "app.backup", "--json", "--env", "e2e"],
        cwd=bdep.workdir,
        env=bdep_env(bdep),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while bdep.sh("pgrep -f 'bin/torrust-backu[p] backup'", check=False).returncode != 0:
        assert time.monotonic() < deadline and proc.poll() is None, "the backup never started"
        time.sleep(0.1)
    docker("exec", bdep.host.name, "pkill", "-KILL", "-f", "sshd: torrust", check=False)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode != 0 and "Traceback" not in err, err
    if bdep.sh("pgrep -f 'bin/torrust-backu[p] backup'", check=False).returncode == 0:
        # the script outlived the connection: the lock stays live (its worker pid), not stale
        code, lock, _ = bdep.json_cli("app.lock")
        assert lock["held"] and not lock["stale"] and lock["info"]["worker_pid"], lock
    holder.wait(timeout=30)
    deadline = time.monotonic() + 60  # the host script outlives the connection, then ends
    while bdep.sh("pgrep -f 'bin/torrust-backu[p]'", check=False).returncode == 0:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    code, lock, _ = bdep.json_cli("app.lock")
    assert code == 0 and (not lock["held"] or lock["stale"]), lock
    if lock["held"]:
        assert bdep.json_cli("app.backup", "--force-unlock")[0] == 0
    assert not [p.name for p in bdep.backups_dir.iterdir() if p.name.startswith(".")]
    for row in bdep.listed():
        if row["id"] not in before:  # a backup the orphaned script finished is complete
            check = bdep.sh(f"{bdep.root}/current/bin/torrust-backup check {row['id']} --json", check=False)
            assert check.returncode == 0, check.stdout


def bdep_cli_argv(bdep) -> list[str]:
    import sys

    from tests.conftest import ROOT

    return [sys.executable, str(ROOT / "tasks.py")]


def bdep_env(bdep) -> dict:
    from tests.conftest import clean_environ

    return clean_environ(**bdep.env)


def test_retention_keeps_what_it_must(bdep):
    d = bdep.root / "retention"
    d.mkdir()
    os.chown(d, 1000, 1000)
    env = {"TORRUST_BACKUP_DIR": str(d)}
    seed = bdep.backup(env=env)["id"]
    old = ["20200101T000000Z-0001", "20200102T000000Z-0002", "20200103T000000Z-0003"]
    for i, name in enumerate(old):
        shutil.copytree(d / seed, d / name)
        if i == 1:  # the newest VERIFIED backup: never deleted
            (d / name / "verified.json").write_text(json.dumps({"ok": True, "time": "2020-01-02T00:00:00+00:00"}))
        for p in [d / name, *(d / name).iterdir()]:
            os.chown(p, 1000, 1000)
    doc = bdep.backup(env=env)
    # newest 2 kept (the new one and the seed); older than 14 days deleted, except the newest verified
    assert sorted(doc["deleted"]) == ["20200101T000000Z-0001", "20200103T000000Z-0003"]
    assert sorted(p.name for p in d.iterdir()) == sorted([seed, doc["id"], "20200102T000000Z-0002"])


def test_cron_entry_is_installed_valid_and_runs_the_script(bdep):
    path = f"/etc/cron.d/torrust-backup-{bdep.project}"
    stat = bdep.sh(f"stat -c '%U %a' {path}").stdout.split()
    assert stat == ["root", "644"]  # cron ignores entries not owned by root
    lines = [ln for ln in bdep.sh(f"cat {path}").stdout.splitlines() if ln and not ln.startswith("#")]
    job = [ln for ln in lines if "=" not in ln.split()[0]]
    assert len(job) == 1
    fields = job[0].split()
    assert fields[:5] == ["0", "3", "*", "*", "*"] and fields[5] == "torrust"
    command = " ".join(fields[6:])
    assert command.startswith(f"{bdep.root}/current/bin/torrust-backup backup >> ")
    # a live lock held by someone else: the scheduled run skips, creates nothing, says why
    (bdep.root / "deploy.lock").mkdir()
    (bdep.root / "deploy.lock" / "info.json").write_text(
        json.dumps({"holder": "x@y", "guard_pid": 1, "command": "app.deploy"})
    )
    before = {r["id"] for r in bdep.listed()}
    assert bdep.sh(command, check=False).returncode == 3
    assert {r["id"] for r in bdep.listed()} == before
    shutil.rmtree(bdep.root / "deploy.lock")
    # the scheduled run takes the lock itself and leaves a complete backup and a log line
    assert bdep.sh(command, check=False).returncode == 0
    new = [r for r in bdep.listed() if r["id"] not in before]
    assert len(new) == 1 and new[0]["reason"] == "scheduled"
    log = (bdep.backups_dir / "backup.log").read_text()
    assert "lock is held" in log and f"backup {new[0]['id']} complete" in log
    assert not (bdep.root / "deploy.lock").exists()


def test_health_check_reports_the_backup_age(bdep, tmp_path):
    code, doc, err = bdep.json_cli("health.check", "--only", "host")
    assert code == 0, err
    probe = next(p for p in doc["probes"] if p["name"] == "backup age")
    assert probe["ok"] and "h old" in probe["detail"]
    empty = tmp_path / "none"
    code, doc, err = bdep.json_cli("health.check", "--only", "host", env={"TORRUST_BACKUP_DIR": str(empty)})
    probe = next(p for p in doc["probes"] if p["name"] == "backup age")
    assert code == 40 and not probe["ok"] and "no backup" in probe["detail"]


def test_secrets_never_in_output(bdep):
    text = "\n".join(bdep.outputs) + (bdep.backups_dir / "backup.log").read_text()
    for b in bdep.backups_dir.iterdir():
        if (b / "manifest.json").is_file():
            text += (b / "manifest.json").read_text()
    for secret in STRONG.values():
        assert secret not in text


def test_backups_off_removes_the_cron_entry(bdep):
    code, out = bdep.deploy(env={"TORRUST_BACKUP": "false"})
    assert code == 6 and out["removals"] == ["backup-cron"], out["_stderr"]  # never silently (issue #15)
    code, out = bdep.deploy("--allow-removal", env={"TORRUST_BACKUP": "false"})
    assert code == 0 and out["status"] == "deployed" and out["removed"] == ["backup-cron"], out["_stderr"]
    assert bdep.sh(f"test -e /etc/cron.d/torrust-backup-{bdep.project}", check=False).returncode == 1
