"""File commands (tasks/commands/files.py) run for real on a temporary directory."""

from __future__ import annotations

import subprocess

from tasks.commands import files


def test_remove_tree_privileged_removes_a_tree_with_read_only_parts(tmp_path):
    storage = tmp_path / "storage"
    (storage / "mysql" / "data").mkdir(parents=True)
    (storage / "mysql" / "data" / "ibdata1").write_bytes(b"x")
    (storage / "mysql" / "data").chmod(0o500)
    keep = tmp_path / "backups"
    keep.mkdir()
    assert subprocess.run(files.remove_tree_privileged(str(storage))).returncode == 0
    assert [p.name for p in tmp_path.iterdir()] == ["backups"]


def test_remove_tree_privileged_takes_the_path_as_one_argument():
    argv = files.remove_tree_privileged("/opt/torrust/storage dir; touch x")
    assert argv[:2] == ["sh", "-c"] and argv[-2:] == ["rm", "/opt/torrust/storage dir; touch x"]
