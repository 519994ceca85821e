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
from tasks.errors import BackupCorrupt, BackupNotFound, ConfigError, SettingsError
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
    (bdir / "manifest.json").write_text(json.dumps({"id": backup_id, "files": files}))
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
    assert not list((tmp_path / "dl2").iterdir())
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
    with pytest.raises(BackupCorrupt):
        b.check_local(bdir)
