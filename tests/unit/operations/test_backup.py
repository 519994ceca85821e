"""Backups without Docker: settings, rendering, the cron step, the lock's worker pid,
the drill's row-count rule, and downloads and local checks of a backup directory."""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import json
import os
import subprocess
from pathlib import Path

import pytest

from tasks.commands import lock as lock_cmd
from tasks.config.settings import load
from tasks.errors import BackupCorrupt, BackupNotFound, ConfigError, ManifestRefused, SettingsError, UnsafeName
from tasks.operations import backup as b
from tasks.operations import lock as lock_mod
from tasks.operations import releases as store
from tasks.release import render as r
from tasks.release.layout import Layout
from tasks.runner.executor import local
from tests.conftest import ROOT
from tests.unit.config.test_settings import prod_env


def _script():
    path = str(ROOT / "application/bin/torrust-backup")
    loader = importlib.machinery.SourceFileLoader("torrust_backup_script", path)
    spec = importlib.util.spec_from_loader(loader.name, loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def test_backup_dir_defaults_beside_storage_and_must_be_absolute(workdir):
    s = load("prod", root=workdir, environ=prod_env())
    assert s.backup_dir == "/opt/torrust/backups" and s.backup_compression == "zstd"
    s = load("prod", root=workdir, environ=prod_env(TORRUST_BACKUP_DIR="/srv/backups"))
    assert s.backup_dir == "/srv/backups"
    with pytest.raises(SettingsError, match=r"TORRUST_BACKUP_DIR = 'backups' .*must be an absolute path"):
        load("prod", root=workdir, environ=prod_env(TORRUST_BACKUP_DIR="backups"))


def test_backup_conf_and_cron_follow_the_settings(workdir):
    on = r.render(load("prod", root=workdir, environ=prod_env(TORRUST_BACKUP_DIR="/srv/b")))
    conf = on.file("bin/backup.conf").content.decode()
    assert "TORRUST_BACKUP_ENABLED=true" in conf and "TORRUST_BACKUP_DIR=/srv/b" in conf
    assert "PASSWORD" not in conf
    cron = on.file("cron/torrust-backup").content.decode()
    assert "/opt/torrust/current/bin/torrust-backup backup >> /srv/b/backup.log 2>&1" in cron
    off = r.render(load("prod", root=workdir, environ=prod_env(TORRUST_BACKUP="false", TORRUST_BACKUP_DIR="/srv/b")))
    assert off.content_sha256 != on.content_sha256  # switching backups off is a change the deploy applies
    assert ("backups", None) not in off.storage_dirs


def test_cron_args_install_or_remove(workdir):
    on = load("prod", root=workdir, environ=prod_env())
    off = load("prod", root=workdir, environ=prod_env(TORRUST_BACKUP="false"))
    assert store.cron_args(on) == (f"/etc/cron.d/torrust-backup-{on.compose_project}", "/opt/torrust/backups")
    assert store.cron_args(off) == (f"/etc/cron.d/torrust-backup-{off.compose_project}", "")


def test_release_keeps_a_lock_whose_worker_still_runs(tmp_path):
    lock = tmp_path / "deploy.lock"
    lock.mkdir()
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        info = {"token": "tok", "guard_pid": 999999, "worker_pid": sleeper.pid}
        (lock / "info.json").write_text(json.dumps(info, sort_keys=True))
        state = lock_mod.inspect(local(), Layout(str(tmp_path)))
        assert state.held and not state.stale  # the worker keeps it live
        subprocess.run(lock_cmd.release(str(lock), "tok"), check=True)
        assert lock.exists()
    finally:
        sleeper.kill()
        sleeper.wait()
    assert lock_mod.inspect(local(), Layout(str(tmp_path))).stale
    subprocess.run(lock_cmd.release(str(lock), "tok"), check=True)
    assert not lock.exists()


@pytest.mark.parametrize(
    ("before", "after", "got", "ok"),
    [
        (5, 5, 5, True),
        (5, 5, 6, False),  # a quiet table must match exactly
        (5, 9, 7, True),  # written during the dump: between the two counts
        (5, 9, 10, False),
        (9, 5, 4, False),
    ],
)
def test_drill_row_count_rule(before, after, got, ok):
    manifest = {"database": {"tables": {"t": after}, "tables_before": {"t": before}}}
    assert (not _script().compare_counts(manifest, {"t": got})) is ok


def test_drill_reports_a_missing_table():
    manifest = {"database": {"tables": {"t": 1, "u": 2}, "tables_before": {"t": 1, "u": 2}}}
    assert _script().compare_counts(manifest, {"t": 1}) == ["table u missing after the restore"]


def _backup_dir(base: Path, backup_id: str = "20261127T030000Z-abcd") -> Path:
    bdir = base / backup_id
    bdir.mkdir(parents=True)
    files = []
    for name, data in (("database.sql.gz", b"dump" * 1000), ("release.tar.gz", b"release")):
        (bdir / name).write_bytes(data)
        files.append({"path": name, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)})
    database = {"driver": "mysql", "file": "database.sql.gz", "compression": "gzip"}
    (bdir / "manifest.json").write_text(json.dumps({"id": backup_id, "files": files, "database": database}))
    return bdir


def test_download_verifies_every_checksum_before_the_final_name(workdir, tmp_path):
    hostdir = tmp_path / "host"
    _backup_dir(hostdir)
    s = load("local", root=workdir, environ={"TORRUST_BACKUP_DIR": str(hostdir)})
    out = b.download(local(), s, "20261127T030000Z-abcd", tmp_path / "dl")
    copy = Path(out["path"])
    assert out["files"] == 2 and b.check_local(copy)["id"] == "20261127T030000Z-abcd"
    assert oct(copy.joinpath("database.sql.gz").stat().st_mode)[-3:] == "600"
    # a file damaged in transit (here: on the host after its manifest) is not kept
    (hostdir / "20261127T030000Z-abcd" / "release.tar.gz").write_bytes(b"RELEASE")
    with pytest.raises(BackupCorrupt, match=r"release\.tar\.gz: sha256 differs"):
        b.download(local(), s, "20261127T030000Z-abcd", tmp_path / "dl2")
    assert not (tmp_path / "dl2").exists()  # it created dl2: a failed download removes it too
    (tmp_path / "dl4").mkdir()
    with pytest.raises(BackupCorrupt):
        b.download(local(), s, "20261127T030000Z-abcd", tmp_path / "dl4")
    assert list((tmp_path / "dl4").iterdir()) == []  # the operator's directory stays, empty as it was
    with pytest.raises(BackupNotFound):
        b.download(local(), s, "20261127T030000Z-ffff", tmp_path / "dl3")
    with pytest.raises(ConfigError, match="not a backup id"):
        b.download(local(), s, "../etc", tmp_path / "dl3")


@pytest.mark.parametrize("damage", ["truncate", "missing", "manifest"])
def test_check_local_refuses_damage(tmp_path, damage):
    bdir = _backup_dir(tmp_path)
    if damage == "truncate":
        (bdir / "database.sql.gz").write_bytes(b"dump")
    elif damage == "missing":
        os.unlink(bdir / "release.tar.gz")
    else:
        (bdir / "manifest.json").write_text("{not json")
    with pytest.raises(BackupCorrupt if damage != "manifest" else ManifestRefused):
        b.check_local(bdir)


# ------------------------------------------------------------------ names from a manifest
ID = "20261127T030000Z-abcd"


def _rewrite(bdir: Path, mutate) -> None:
    manifest = json.loads((bdir / "manifest.json").read_text())
    mutate(manifest)
    (bdir / "manifest.json").write_text(json.dumps(manifest))


def _entry_for(manifest: dict, path: str, data: bytes) -> None:
    manifest["files"][1] = {"path": path, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


@pytest.mark.parametrize("kind", ["absolute", "dotdot"])
def test_download_never_writes_outside_its_directory(workdir, tmp_path, kind):
    """Finding 1: the manifest names a path outside the download directory; the host
    serves matching bytes there. Refused (14) before any file is written."""
    hostdir, home = tmp_path / "host", tmp_path / "home"
    bdir = _backup_dir(hostdir)
    home.mkdir()
    victim = home / "victim"
    victim.write_text("the operator's file")
    evil = b"attacker bytes"
    name = str(victim) if kind == "absolute" else "../../victim"  # from home/backups/.partial-ID
    served = Path(str(bdir) + "/" + name) if kind == "absolute" else (bdir / name)  # on the host's side
    served.parent.mkdir(parents=True, exist_ok=True)
    served.write_bytes(evil)
    _rewrite(bdir, lambda m: _entry_for(m, name, evil))
    s = load("local", root=workdir, environ={"TORRUST_BACKUP_DIR": str(hostdir)})
    with pytest.raises(ManifestRefused) as info:
        b.download(local(), s, ID, home / "backups")
    assert info.value.code == 14 and "files[1].path" in info.value.message and "contains '/'" in info.value.message
    assert victim.read_text() == "the operator's file"
    assert sorted(p.name for p in home.iterdir()) == ["victim"]  # no backups/, no partial, no stray file


def test_check_local_reads_nothing_outside_the_directory(tmp_path):
    """Finding 2, locally: a --from copy naming a file outside itself is refused before
    that file is read: no size or checksum of it is reported (no oracle)."""
    bdir = _backup_dir(tmp_path / "copy")
    secret = tmp_path / "id_ed25519"
    secret.write_text("PRIVATE KEY")
    _rewrite(bdir, lambda m: _entry_for(m, "../../id_ed25519", b"guess"))
    with pytest.raises(ManifestRefused) as info:
        b.check_local(bdir)
    assert "size" not in info.value.message.split("refused:")[1].replace("has no size", "")
    assert "sha256 differs" not in info.value.message


def test_check_local_refuses_a_symlink_leading_out(tmp_path):
    bdir = _backup_dir(tmp_path / "copy")
    secret = tmp_path / "id_ed25519"
    secret.write_bytes(b"release")  # the same bytes the manifest records for release.tar.gz
    (bdir / "release.tar.gz").unlink()
    os.symlink(secret, bdir / "release.tar.gz")
    with pytest.raises(UnsafeName, match=r"'release\.tar\.gz' in .* is a symlink leading out of the directory"):
        b.check_local(bdir)
    os.unlink(bdir / "manifest.json")
    os.symlink(secret, bdir / "manifest.json")
    with pytest.raises(UnsafeName, match=r"the manifest 'manifest\.json'"):
        b.check_local(bdir)


def test_check_local_refuses_a_directory_in_place_of_a_file(tmp_path):
    bdir = _backup_dir(tmp_path / "copy")
    (bdir / "release.tar.gz").unlink()
    (bdir / "release.tar.gz").mkdir()
    with pytest.raises(BackupCorrupt, match=r"release\.tar\.gz: not a regular file"):
        b.check_local(bdir)


def test_a_failed_fetch_is_a_named_error_and_leaves_nothing(workdir, tmp_path):
    hostdir = tmp_path / "host"
    bdir = _backup_dir(hostdir)
    (bdir / "release.tar.gz").unlink()  # listed, but the host does not have it
    s = load("local", root=workdir, environ={"TORRUST_BACKUP_DIR": str(hostdir)})
    with pytest.raises(BackupCorrupt, match=r"release\.tar\.gz cannot be copied from local"):
        b.download(local(), s, ID, tmp_path / "dl")
    assert not (tmp_path / "dl").exists()


def test_a_downloaded_manifest_is_private(workdir, tmp_path):
    _backup_dir(tmp_path / "host")
    s = load("local", root=workdir, environ={"TORRUST_BACKUP_DIR": str(tmp_path / "host")})
    out = Path(b.download(local(), s, ID, tmp_path / "dl")["path"])
    assert {p.name: oct(p.stat().st_mode)[-3:] for p in out.iterdir()} == {
        "database.sql.gz": "600",
        "release.tar.gz": "600",
        "manifest.json": "600",
    }


# ------------------------------------------------------------------ the host script's rule
class _Dir:  # what complete_backups/find read from a Host: its backup directory
    def __init__(self, d: Path):
        self.dir = d


def test_script_find_takes_only_real_backup_directories(tmp_path):
    script = _script()
    backups = tmp_path / "backups"
    _backup_dir(backups)
    elsewhere = _backup_dir(tmp_path / "elsewhere", "20261127T040000Z-beef")
    os.symlink(elsewhere, backups / "20261127T040000Z-beef")  # a backup that is a symlink out
    _backup_dir(backups, "not-a-backup-id")
    h = _Dir(backups)
    assert [p.name for p in script.complete_backups(h)] == [ID]
    for bad in ("20261127T040000Z-beef", "not-a-backup-id", "../elsewhere/20261127T040000Z-beef", ".tmp-x"):
        with pytest.raises(script.Failure) as info:
            script.find(h, bad)
        assert info.value.code == script.EXIT_NOT_FOUND
    b_, manifest = script.find(h, ID)
    assert b_ == backups / ID and script.check(b_, manifest) == []


def test_script_check_refuses_a_file_that_leads_out(tmp_path):
    script = _script()
    bdir = _backup_dir(tmp_path / "backups")
    (tmp_path / "other").write_bytes(b"release")  # what the manifest records for release.tar.gz
    (bdir / "release.tar.gz").unlink()
    os.symlink(tmp_path / "other", bdir / "release.tar.gz")
    manifest = script.load_manifest(bdir)
    with pytest.raises(script.Failure) as info:
        script.check(bdir, manifest)
    assert info.value.code == script.EXIT_UNTRUSTED and "symlink leading out" in info.value.message


def test_script_reads_a_hostile_release_json_as_empty(tmp_path):
    script = _script()
    h = object.__new__(script.Host)
    h.release_manifest = {"images": ["mysql"]}
    assert h.release_image("mysql") == ""
    h.release_manifest = {"images": {"mysql": "torrust-test/mariadb:10.11"}}
    assert h.release_image("mysql") == "torrust-test/mariadb:10.11"


def test_script_exit_codes_map_to_the_tools():
    script = _script()
    assert b.SCRIPT_ERRORS[script.EXIT_UNTRUSTED].code == 14
    assert b.SCRIPT_ERRORS[script.EXIT_CORRUPT].code == 52
