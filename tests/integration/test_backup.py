"""Backups end to end: real MariaDB in the deployed stack, through the SSH test host.

One deployment (MySQL, backups on) is shared by the module and its tests run in file
order (back up, restore every row, refuse damaged backups, restore drills, a full disk,
a tracker that cannot start again, a dropped connection, retention, the cron entry, its
removal), but each test takes what it needs itself (its own backup, the row counts of
the moment) and undoes what it injects in `finally` (a lock, a filled disk, a stopped
tracker), so any test runs alone with -k and one fault shows as one failure.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.conftest import ROOT, clean_environ
from tests.integration.cmdlines import CmdlineWatcher, secrets_in
from tests.integration.conftest import SSHHost, docker, free_port
from tests.integration.test_deploy import STRONG, Deployment, secrets_found
from tests.integration.waiting import wait_for

SMALL_DIR = "/small-backups"  # a 6 MiB tmpfs inside the SSH host: the "full disk"
TABLES_SQL = """
INSERT INTO torrents (info_hash, completed) SELECT SHA1(seq), seq % 97 FROM seq_1_to_3000;
INSERT INTO whitelist (info_hash) SELECT SHA1(CONCAT('w', seq)) FROM seq_1_to_500;
INSERT INTO `keys` (`key`, valid_until) SELECT MD5(seq), IF(seq % 3 = 0, NULL, 1700000000 + seq) FROM seq_1_to_200;
"""  # into the tracker's own tables (the stand-in creates them like the tracker does)
TABLES = ("keys", "torrents", "whitelist")
SCRIPT = "bin/torrust-backu[p]"  # pgrep pattern of the host script (never matches pgrep itself)


class BackupDeployment(Deployment):
    def rows(self) -> dict[str, str]:
        return {t: self.sql(f"SELECT * FROM `{t}` ORDER BY id;") for t in TABLES}

    def counts(self) -> dict[str, int]:
        return {t: int(self.sql(f"SELECT COUNT(*) FROM `{t}`;")) for t in TABLES}

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
        containers = self.containers()
        assert "tracker" in containers, self.service_report("tracker")
        return containers["tracker"][1]

    def host_alive(self, pid: int) -> bool:
        r = docker("exec", self.host.name, "test", "-d", f"/proc/{pid}", check=False)
        assert r.returncode in (0, 1), f"docker exec failed ({r.returncode}): {r.stderr}"
        return r.returncode == 0

    def waiting_for_a_table_lock(self) -> int:
        """Queries of other sessions waiting for a table lock (MySQL's processlist)."""
        return int(
            self.sql(
                "SELECT COUNT(*) FROM information_schema.processlist "
                "WHERE state LIKE 'Waiting for table%' AND id <> CONNECTION_ID();"
            )
        )


class TableLock:
    """A MySQL session holding `LOCK TABLES <table> WRITE` for the block: whatever reads
    the table (the backup's row count, mysqldump) waits until the block ends."""

    def __init__(self, bdep: BackupDeployment, table: str):
        self.bdep, self.table = bdep, table

    def __enter__(self) -> TableLock:
        self.proc = subprocess.Popen(
            self.bdep.mysql("--unbuffered"),
            cwd=self.bdep.workdir,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.proc.stdin.write(f"LOCK TABLES `{self.table}` WRITE; SELECT 'locked';\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line.strip() == "locked", f"no table lock: {line!r} {self.proc.stderr.read()}"
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.proc.stdin.write("UNLOCK TABLES;\n")
            self.proc.stdin.close()
        except OSError:
            pass
        self.proc.wait(timeout=120)


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


def _id_time(backup_id: str) -> float:
    return datetime.strptime(backup_id[:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).timestamp()


def test_backup_writes_a_complete_checksummed_backup(bdep):
    # a certificate store as Caddy leaves it: root-owned, private (TLS is off in this stack)
    certs = bdep.root / "storage/proxy/data/caddy/certificates"
    bdep.sh(
        f"mkdir -p {certs} && echo KEY > {certs}/site.key && chmod -R go-rwx {bdep.root}/storage/proxy/data",
        user="root",
    )
    counts, before = bdep.counts(), [r["id"] for r in bdep.listed()]
    doc = bdep.backup()
    assert doc["ok"] and {t: doc["tables"][t] for t in TABLES} == counts
    b = bdep.backups_dir / doc["id"]
    manifest = json.loads((b / "manifest.json").read_text())
    names = {f["path"] for f in manifest["files"]}
    assert names == {"database.sql.zst", "release.tar.gz", "proxy-data.tar.gz"}  # zstd: the default, on the host
    members = subprocess.run(["tar", "-tzf", str(b / "proxy-data.tar.gz")], capture_output=True, text=True).stdout
    assert "./caddy/certificates/site.key" in members.split()  # root-owned: read through sudo
    release = subprocess.run(["tar", "-tzf", str(b / "release.tar.gz")], capture_output=True, text=True).stdout
    assert "./.env" in release.split() and "./compose.yaml" in release.split()
    for f in manifest["files"]:
        assert (b / f["path"]).stat().st_size == f["size"]
        assert oct((b / f["path"]).stat().st_mode)[-3:] == "600"
    assert manifest["release"] == bdep.current() and manifest["database"]["tables"] == doc["tables"]
    assert manifest["tools"]["mysqldump"].startswith("mysqldump") and manifest["started"] <= manifest["finished"]
    assert not [p for p in bdep.backups_dir.iterdir() if p.name.startswith(".")]
    assert not (bdep.root / "deploy.lock").exists()
    last = bdep.audit()[-1]
    assert (last["event"], last["result"], last["backup"], last["release"]) == (
        "backup", "ok", doc["id"], bdep.current()
    )  # fmt: skip
    asked = time.time()
    listed = bdep.listed()
    answered = time.time()
    assert [r["id"] for r in listed] == sorted([doc["id"], *before], reverse=True)[: len(listed)]
    assert listed[0]["id"] == doc["id"] and listed[0]["verified"] is None and listed[0]["reason"] == "manual"
    assert int(asked - _id_time(doc["id"])) - 1 <= listed[0]["age_seconds"] <= int(answered - _id_time(doc["id"])) + 1


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
    assert "probes" in out and bdep.state_of("tracker") == "running/healthy"
    last = bdep.audit()[-1]
    assert (last["event"], last["result"], last["backup"], last["safety"]) == ("restore", "ok", doc["id"], safety)
    assert not (bdep.root / "deploy.lock").exists()


def test_restore_needs_yes_under_ci(bdep):
    newest = bdep.backup()["id"]
    rows, started = bdep.rows(), bdep.tracker_started()
    code, doc, err = bdep.json_cli("app.restore", "--id", newest, env={"CI": "1"})
    assert code == 5 and "--yes" in err and doc["ok"] is False
    assert bdep.rows() == rows and bdep.tracker_started() == started


DAMAGE = {  # what the check names for each kind of damage
    "flip": "{name}: sha256 differs from the manifest",
    "truncate": "{name}: size {half}, manifest says {size}",
    "missing": "{name}: missing",
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_backup_is_refused_before_anything_is_touched(bdep, damage):
    doc = bdep.backup()
    b = bdep.backups_dir / doc["id"]
    try:
        victim = next(b.glob("database.sql.*")) if damage != "missing" else b / "release.tar.gz"
        size = victim.stat().st_size
        if damage == "flip":
            data = bytearray(victim.read_bytes())
            data[len(data) // 2] ^= 0xFF
            victim.write_bytes(bytes(data))
        elif damage == "truncate":
            with open(victim, "r+b") as fh:
                fh.truncate(size // 2)
        else:
            victim.unlink()
        bdep.sql(f"INSERT INTO whitelist (info_hash) VALUES (SHA1('after the backup {damage}'));")
        rows, started, count = bdep.rows(), bdep.tracker_started(), len(bdep.listed())
        code, out, err = bdep.json_cli("app.restore", "--id", doc["id"], "--yes")
        assert code == 52, err
        expected = DAMAGE[damage].format(name=victim.name, half=size // 2, size=size)
        assert out["message"] == f"backup {doc['id']} is damaged: {expected}", out
        assert bdep.rows() == rows and bdep.tracker_started() == started  # not even stopped
        assert len(bdep.listed()) == count  # no safety backup was taken either
    finally:
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
    torrents = bdep.counts()["torrents"]
    good = bdep.backup()["id"]
    code, out, err = bdep.json_cli("app.backup-verify", "--id", good)
    assert code == 0, err
    assert out["tables"]["torrents"] == torrents
    assert {r["id"]: r["verified"] for r in bdep.listed()}[good] is True

    def bad_sql(dst: Path, manifest: dict) -> None:  # intact checksums, a dump that does not load
        dump = next(dst.glob("database.sql.*"))
        tool = ["zstd", "-q", "-c"] if dump.suffix == ".zst" else ["gzip", "-c"]
        dump.write_bytes(subprocess.run(tool, input=b"CREATE TABLE broken (;\n", capture_output=True).stdout)
        _rehash(dst, manifest, dump.name)

    def fewer_rows(dst: Path, manifest: dict) -> None:  # the dump restores, but not what was recorded
        manifest["database"]["tables"]["torrents"] += 1
        manifest["database"]["tables_before"]["torrents"] += 1

    counted = f"table torrents: {torrents} rows restored, manifest says {torrents + 1}"
    for bad_id, mutate, message in (
        ("20200101T000000Z-bad1", bad_sql, "loading the dump failed"),
        ("20200101T000000Z-bad2", fewer_rows, counted),
    ):
        dst = _forge(bdep, good, bad_id, mutate)
        try:
            code, out, err = bdep.json_cli("app.backup-verify", "--id", bad_id)
            assert code == 53, err
            assert message in out["message"], out
            assert {r["id"]: r["verified"] for r in bdep.listed()}[bad_id] is False
        finally:
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


def _clear_small_dir(bdep) -> None:
    bdep.sh(f"find {SMALL_DIR} -mindepth 1 -maxdepth 1 -exec rm -rf {{}} +")


def test_full_disk_fails_cleanly_and_keeps_earlier_backups(bdep):
    small = {"TORRUST_BACKUP_DIR": SMALL_DIR}
    _clear_small_dir(bdep)
    try:
        first = bdep.backup(env=small)["id"]
        # fill the tmpfs, leaving less than a backup needs
        bdep.sh(f"dd if=/dev/zero of={SMALL_DIR}/filler bs=64k count=400 2>/dev/null; true")
        started = bdep.tracker_started()
        code, out, err = bdep.json_cli("app.backup", "--stop-tracker", env=small)
        assert code == 50, err
        assert "No space left on device" in out["message"], out
        # stopped, then started again: running and healthy when the task returns
        assert bdep.state_of("tracker") == "running/healthy", bdep.service_report("tracker")
        assert bdep.tracker_started() != started
        assert "did not start again" not in out["message"], out
        assert [r["id"] for r in bdep.listed(env=small)] == [first]
        names = bdep.sh(f"ls -A {SMALL_DIR}").stdout.split()
        assert sorted(names) == sorted([first, "filler"]), names  # no .tmp-* left behind
        check = bdep.sh(f"{bdep.root}/current/bin/torrust-backup check {first} --dir {SMALL_DIR} --json", check=False)
        assert check.returncode == 0 and json.loads(check.stdout)["ok"], check.stdout + check.stderr
        assert not (bdep.root / "deploy.lock").exists()
    finally:
        _clear_small_dir(bdep)
        bdep.ensure_running("tracker")


def test_a_tracker_that_cannot_start_again_is_reported(bdep):
    """The host script checks that the tracker it stopped runs again (it used to ignore
    `compose start` failing): here its UDP port is taken while it is stopped, so Docker
    cannot start it; the task fails naming why, keeps no backup, and the tracker starts
    once the port is free."""
    before, started = [r["id"] for r in bdep.listed()], bdep.tracker_started()
    squatter = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    proc = None
    try:
        with TableLock(bdep, "whitelist"):  # the copy waits while the port is taken
            proc = subprocess.Popen(
                [sys.executable, str(ROOT / "tasks.py"), "app.backup", "--stop-tracker", "--json", "--env", "e2e"],
                cwd=bdep.workdir,
                env=clean_environ(**bdep.env),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                stdin=subprocess.DEVNULL,
                text=True,
            )
            wait_for(lambda: bdep.state_of("tracker").startswith("exited"), "the script to stop the tracker")
            squatter.bind(("0.0.0.0", bdep.udp_port))  # where Docker publishes it
            wait_for(bdep.waiting_for_a_table_lock, "the backup to wait for the table lock")
        out, err = proc.communicate(timeout=400)
        assert proc.returncode == 50, err
        doc = json.loads(out)
        assert "the tracker did not start again (`compose start tracker` failed 3 times)" in doc["message"], doc
        assert "address already in use" in doc["message"], doc
        assert bdep.state_of("tracker").startswith("exited/")  # what the message says
        assert [r["id"] for r in bdep.listed()] == before  # nothing partial kept
        last = bdep.audit()[-1]
        assert (last["event"], last["result"]) == ("backup", "failed") and "did not start again" in last["error"]
        assert not (bdep.root / "deploy.lock").exists()
    finally:
        squatter.close()
        if proc is not None:
            proc.kill()
            proc.wait()
        bdep.ensure_running("tracker")
    assert bdep.tracker_started() != started


def test_dropped_connection_during_a_backup(bdep):
    """The connection drops while the host script waits for the database: the script
    outlives it, keeps the lock live (its worker pid) and releases it when it ends."""
    before = {r["id"] for r in bdep.listed()}
    proc = None
    try:
        with TableLock(bdep, "whitelist"):  # the backup blocks in its database step
            proc = subprocess.Popen(
                [sys.executable, str(ROOT / "tasks.py"), "app.backup", "--json", "--env", "e2e"],
                cwd=bdep.workdir,
                env=clean_environ(**bdep.env),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                stdin=subprocess.DEVNULL,
                text=True,
            )
            wait_for(bdep.waiting_for_a_table_lock, "the backup to wait for the table lock")
            (script,) = bdep.host_pids(f"{SCRIPT} backup")
            guard = bdep.lock()["info"]["guard_pid"]
            docker("exec", bdep.host.name, "pkill", "-KILL", "-f", "sshd: torrust")
            _out, err = proc.communicate(timeout=120)
            assert proc.returncode == 13, err
            assert "connection was lost while running torrust-backup backup" in err and "Traceback" not in err
            # the session's guard ended with the connection; the script still waits
            wait_for(lambda: not bdep.host_alive(guard), "the session's guard to end")
            assert bdep.host_pids(f"{SCRIPT} backup") == [script]
            lock = bdep.lock()
            assert (lock["held"], lock["stale"]) == (True, False), lock
            assert (lock["info"]["worker_pid"], lock["info"]["guard_pid"]) == (script, guard)
        # the table is free: the script finishes its backup, then releases the lock itself
        wait_for(lambda: not bdep.host_pids(SCRIPT), "the host script to end")
        assert bdep.lock() == {"ok": True, "held": False, "stale": False, "info": {}}
        new = [r for r in bdep.listed() if r["id"] not in before]
        assert len(new) == 1 and new[0]["reason"] == "manual", new
        check = bdep.sh(f"{bdep.root}/current/bin/torrust-backup check {new[0]['id']} --json", check=False)
        assert check.returncode == 0, check.stdout
        assert not [p.name for p in bdep.backups_dir.iterdir() if p.name.startswith(".")]
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()


def test_retention_keeps_what_it_must(bdep):
    d = bdep.root / "retention"
    shutil.rmtree(d, ignore_errors=True)
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
    try:
        (bdep.root / "deploy.lock" / "info.json").write_text(
            json.dumps({"holder": "x@y", "guard_pid": 1, "command": "app.deploy"})
        )
        before = {r["id"] for r in bdep.listed()}
        assert bdep.sh(command, check=False).returncode == 3
        assert {r["id"] for r in bdep.listed()} == before
    finally:
        shutil.rmtree(bdep.root / "deploy.lock")
    # the scheduled run takes the lock itself and leaves a complete backup and a log line
    assert bdep.sh(command, check=False).returncode == 0
    new = [r for r in bdep.listed() if r["id"] not in before]
    assert len(new) == 1 and new[0]["reason"] == "scheduled"
    log = (bdep.backups_dir / "backup.log").read_text()
    assert "lock is held" in log and f"backup {new[0]['id']} complete" in log
    assert not (bdep.root / "deploy.lock").exists()


def test_health_check_reports_the_backup_age(bdep, tmp_path):
    newest = bdep.backup()["id"]
    code, doc, err = bdep.json_cli("health.check", "--only", "host")
    assert code == 0, err
    probe = next(p for p in doc["probes"] if p["name"] == "backup age")
    assert probe["ok"] and probe["detail"] == f"newest backup {newest} is 0.0 h old", probe
    empty = tmp_path / "none"
    code, doc, err = bdep.json_cli("health.check", "--only", "host", env={"TORRUST_BACKUP_DIR": str(empty)})
    probe = next(p for p in doc["probes"] if p["name"] == "backup age")
    assert code == 40 and not probe["ok"] and probe["detail"].startswith(f"no backup in {empty}; "), probe
    assert [p["name"] for p in doc["probes"] if not p["ok"]] == ["backup age"]


def test_no_secret_on_a_host_command_line_during_a_backup_and_a_restore(bdep):
    """Issue #19, item 9: while a backup (tracker stopped for it) and a restore run, no
    command line on the SSH host or in the stack's containers holds a secret, raw or
    encoded; nor does any output, the backup log or a manifest."""
    canary = "cmdline-canary-" + os.urandom(4).hex()
    start = len(bdep.outputs)
    with CmdlineWatcher() as seen:
        doc = bdep.backup("--stop-tracker")
        code, _out, err = bdep.json_cli("app.restore", "--id", doc["id"], "--yes", "--no-safety-backup")
        assert code == 0, err
        assert bdep.cli("app.exec", "--service", "mysql", "--command", f"sh -c 'sleep 0.1' {canary}").returncode == 0
    assert seen.saw(canary), f"the watcher missed the canary in {seen.sweeps} sweeps"
    assert any("torrust-backup restore" in line for line in seen.cmdlines)
    assert any("mysqldump" in line for line in seen.cmdlines)
    assert secrets_in(seen.cmdlines, STRONG) == []
    assert secrets_found("\n".join(bdep.outputs[start:]) + _host_texts(bdep), STRONG) == []


def _host_texts(bdep) -> str:
    """What the host keeps as text about backups: the cron log (once cron ran) and every manifest."""
    log = bdep.backups_dir / "backup.log"
    texts = [log.read_text()] if log.exists() else []
    texts += [m.read_text() for m in sorted(bdep.backups_dir.glob("*/manifest.json"))]
    return "\n".join(texts)


def test_secrets_never_in_output(bdep):
    bdep.backup()
    bdep.listed()
    assert secrets_found("\n".join(bdep.outputs) + _host_texts(bdep), STRONG) == []


def test_backups_off_removes_the_cron_entry(bdep):
    bdep.env["TORRUST_BACKUP"] = "false"  # the module's settings from now on
    code, out = bdep.deploy()
    assert code == 6 and out["removals"] == ["backup-cron"], out["_stderr"]  # never silently (issue #15)
    code, out = bdep.deploy("--allow-removal")
    assert code == 0 and out["status"] == "deployed" and out["removed"] == ["backup-cron"], out["_stderr"]
    assert bdep.sh(f"test -e /etc/cron.d/torrust-backup-{bdep.project}", check=False).returncode == 1
