"""The shell scripts of tasks/commands/scripts run for real, here, on files in a temporary
directory (no Docker needed for these paths)."""

from __future__ import annotations

import io
import os
import re
import subprocess
import tarfile

from tasks.commands import SCRIPTS, files, releases
from tests.conftest import ROOT


def tar_of(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for path, data in members.items():
            info = tarfile.TarInfo(path)
            info.size, info.mode = len(data), 0o600 if path == ".env" else 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def unpack(root, storage_dirs):
    argv = releases.unpack(
        str(root / "releases"),
        str(root / "releases/.upload-r1"),
        str(root / "releases/r1"),
        ("", ""),
        str(root / "storage"),
        [],
        storage_dirs,
    )
    data = tar_of({".env": b"TOKEN=x\n", "compose.yaml": b"services: {}\n"})
    return subprocess.run(argv, input=data, capture_output=True)


def test_unpack_places_the_release_with_its_modes(tmp_path):
    done = unpack(tmp_path, [("tracker/lib/database", None), ("proxy/data", None)])
    assert done.returncode == 0, done.stderr
    assert oct((tmp_path / "releases/r1/.env").stat().st_mode & 0o777) == "0o600"
    assert (tmp_path / "storage/tracker/lib/database").is_dir() and (tmp_path / "storage/proxy/data").is_dir()
    assert not (tmp_path / "releases/.upload-r1").exists()


def test_unpack_never_follows_a_symlink_planted_under_storage(tmp_path):
    """Issue 11, finding 6: a container can write into storage; a symlink it plants there
    must not redirect the (sudo) chown to a file outside."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "storage/tracker").mkdir(parents=True)
    os.symlink(outside, tmp_path / "storage/tracker/log")
    before = outside.stat()
    done = unpack(tmp_path, [("tracker/log", 4242)])
    assert done.returncode == 3 and b"tracker/log is a symbolic link; refusing to use it" in done.stderr
    after = outside.stat()
    assert (after.st_uid, after.st_gid) == (before.st_uid, before.st_gid)
    assert not (tmp_path / "releases/r1").exists()  # nothing switched into place


def test_the_switch_is_atomic_and_runs_the_follow_up_only_after_it(tmp_path):
    (tmp_path / "releases/a").mkdir(parents=True)
    (tmp_path / "releases/b").mkdir()
    link = str(tmp_path / "current")
    assert subprocess.run(files.symlink_atomic("releases/a", link)).returncode == 0
    out = subprocess.run(files.symlink_atomic("releases/b", link, "readlink", link), capture_output=True, text=True)
    assert out.stdout == "releases/b\n" and os.readlink(link) == "releases/b"


def test_every_script_the_code_names_exists():
    named = set()
    for path in (ROOT / "tasks").rglob("*.py"):
        named |= set(re.findall(r'\bsh\(\s*"([a-z0-9-]+)"', path.read_text()))
    assert named and named <= {p.stem for p in SCRIPTS.glob("*.sh")}, named - {p.stem for p in SCRIPTS.glob("*.sh")}


def snapshot_run(tmp_path, image: str, want: str, backups: str = ""):
    """scripts/snapshot.sh for real, with a stand-in `docker` on PATH printing one healthy
    tracker line whose image field is `image` (a reference, or an id when the tag moved)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "docker"
    fake.write_text(f"#!/bin/sh\nprintf '%s\\n' 'tracker|running|Up 2 minutes (healthy)|{image}|{{}}'\n")
    fake.chmod(0o755)
    root = tmp_path / "root"
    (root / "releases/r1").mkdir(parents=True, exist_ok=True)
    (root / "releases/r1/release.json").write_text('{"content_sha256": "abc"}\n')
    if not (root / "current").exists():
        (root / "current").symlink_to("releases/r1")
    argv = releases.snapshot(str(root), "no-such-project-x", want, '{"audit": 1}', ["tracker"], backups)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    out = subprocess.run(argv, capture_output=True, text=True, env=env).stdout
    return out, root


def test_snapshot_fast_path_needs_the_image_its_tag_names(tmp_path):
    out, root = snapshot_run(tmp_path, "torrust/tracker:v3.0.0", "abc")
    assert "RECORDED yes" in out and (root / "audit.log").read_text() == '{"audit": 1}\n'
    out, root = snapshot_run(tmp_path, "46b1e8e2f1c3", "abc")  # the tag moved: docker ps shows the id
    assert "RECORDED no" in out and (root / "audit.log").read_text().count("\n") == 1
    assert "CRON no" in out and "BACKUPS no" in out


def test_snapshot_says_whether_a_complete_backup_exists(tmp_path):
    backups = tmp_path / "backups"
    (backups / ".tmp-20261129T000000Z-aaaa").mkdir(parents=True)  # a partial one does not count
    assert "BACKUPS no" in snapshot_run(tmp_path, "a:1", "", str(backups))[0]
    (backups / "20261129T000000Z-aaaa").mkdir()
    (backups / "20261129T000000Z-aaaa/manifest.json").write_text("{}")
    assert "BACKUPS yes" in snapshot_run(tmp_path, "a:1", "", str(backups))[0]
