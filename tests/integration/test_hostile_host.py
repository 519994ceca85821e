"""Issue #11, findings 1 and 2, and the manifest tracebacks: a hostile host (and a crafted
backup copy) against the real tool, through real SSH/SFTP and the real host script.

Each test plays one attack with the hostile-host harness (tests/integration/hostile.py)
and checks three things: the error is named with its exit code (never a traceback), the
operator's files are untouched, and the host's files outside the backup directory (and
its database) are untouched. Every test here failed on the code before the fix.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import sqlite3
from pathlib import Path

import pytest

from tests.conftest import snapshot
from tests.integration.hostile import manifest_for

BID = "20261127T030000Z-abcd"
RECORDED = Path(__file__).parents[1] / "unit/facts/recorded/backup-manifest"


def sqlite_dump(tmp_path: Path, rows: int) -> bytes:
    """A gzip-compressed SQLite database with `rows` torrents (what a backup holds)."""
    db = tmp_path / f"dump-{rows}.sqlite3"
    db.unlink(missing_ok=True)
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE torrents (id INTEGER PRIMARY KEY, info_hash TEXT UNIQUE, completed INTEGER)")
    rows_data = [(f"{i:040x}", i) for i in range(rows)]
    con.executemany("INSERT INTO torrents (info_hash, completed) VALUES (?, ?)", rows_data)
    con.commit()
    con.close()
    return gzip.compress(db.read_bytes())


def good_files(tmp_path: Path, rows: int = 3) -> dict[str, bytes]:
    return {"database.sqlite3.gz": sqlite_dump(tmp_path, rows), "release.tar.gz": b"release archive"}


def entry(manifest: dict, n: int, path: str, data: bytes) -> None:
    manifest["files"][n] = {"path": path, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


# ------------------------------------------------------------------ finding 1: downloads
@pytest.mark.parametrize("kind", ["absolute", "dotdot", "dotdot-bad-sha256"])
def test_download_writes_nothing_outside_its_directory(hostile, tmp_path, kind):
    """The manifest names a path outside the download directory and the host serves
    matching bytes there: before the fix the download wrote them over the operator's
    file (absolute, dotdot), or left them behind after a failed checksum."""
    home = tmp_path / "operator"
    home.mkdir()
    victim = home / "victim"
    victim.write_text("the operator's file\n")
    evil = b"ssh-ed25519 AAAA attacker\n"
    files = good_files(tmp_path)
    # dest = home/backups; the partial directory home/backups/.partial-ID; ../../ is home
    name = str(victim) if kind == "absolute" else "../../victim"
    bdir = hostile.backup(BID, files, mutate=lambda m: entry(m, 1, name, evil))
    served = f"backups/{BID}/{name}" if kind != "absolute" else f"backups/{BID}{victim}"
    hostile.write(str(Path(os.path.normpath(served))), evil if kind != "dotdot-bad-sha256" else b"other bytes")
    before_home, before_host = snapshot(home), hostile.host_digests()
    code, doc, err = hostile.cli("app.backup-download", "--id", BID, "--dest", str(home / "backups"))
    assert snapshot(home) == before_home  # the victim as it was; no stray file, no backups/ left
    assert hostile.host_digests() == before_host and (bdir / "manifest.json").is_file()
    assert code == 14, err
    assert doc["error"] == "ManifestRefused" and "files[1].path" in doc["message"] and "contains '/'" in doc["message"]


@pytest.mark.parametrize(
    ("recorded", "problem"),
    [
        ("files-not-a-list.json", "files is a dict, not a list"),
        ("path-not-a-string.json", "files[1].path ['release.tar.gz'] is a list, not a string"),
        ("size-missing.json", "files[1] has no size"),
        ("a-list.json", "is a JSON list, not an object"),
        ("not-json.json", "is not JSON"),
    ],
)
def test_download_of_a_malformed_manifest_is_a_named_error(hostile, tmp_path, recorded, problem):
    """Before the fix: tracebacks (TypeError, KeyError, AttributeError) or 'not found'."""
    data = (RECORDED / recorded).read_bytes().replace(b"20261129T100433Z-5aa8", BID.encode())
    hostile.backup(BID, good_files(tmp_path), raw=data)
    code, doc, err = hostile.cli("app.backup-download", "--id", BID, "--dest", str(tmp_path / "dl"))
    assert code == 14, err
    assert problem in doc["message"] and doc["message"].startswith(f"torrust@[127.0.0.1]:{hostile.host.port}:")
    assert "error: " in err and "hint: do not use this backup" in err
    assert not (tmp_path / "dl").exists()


# ------------------------------------------------------------------ finding 2: restore --from
def deep_copy_dir(base: Path, depth: int) -> Path:
    d = base.joinpath(*["d"] * depth)
    d.mkdir(parents=True)
    return d


def test_restore_from_cannot_write_over_the_hosts_authorized_keys(hostile, tmp_path):
    """A crafted copy (e.g. unpacked from someone's tarball) whose manifest names
    ../../../home/torrust/.ssh/authorized_keys: the path resolves to the attacker's key
    inside the copy here, and to the deploy user's authorized_keys under the host's
    staging directory. Before the fix the upload replaced the host's authorized_keys."""
    hostile.plant_release()
    staging_depth = len(Path(hostile.backups, f".upload-{BID}").parts) - 1
    depth = staging_depth + 2  # enough '..' to reach / on the host (extra ones stay at /)
    unpacked = tmp_path / "unpacked"
    copy = deep_copy_dir(unpacked, depth)
    name = "../" * depth + "home/torrust/.ssh/authorized_keys"
    evil = b"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAttackerAttackerAttackerAttackerAttackerAtt attacker\n"
    (unpacked / "home/torrust/.ssh").mkdir(parents=True)
    (unpacked / "home/torrust/.ssh/authorized_keys").write_bytes(evil)
    files = good_files(tmp_path)
    for fname, data in files.items():
        (copy / fname).write_bytes(data)
    manifest = manifest_for(BID, files, "database.sqlite3.gz")
    manifest["files"].append({"path": name, "sha256": hashlib.sha256(evil).hexdigest(), "size": len(evil)})
    (copy / "manifest.json").write_text(json.dumps(manifest))
    before_host, rows = hostile.host_digests(), hostile.torrents()
    code, doc, err = hostile.cli("app.restore", "--from", str(copy), "--yes", "--no-probes", "--wait-timeout", "1")
    assert hostile.host_digests() == before_host  # the deploy user's authorized_keys is not replaced
    assert hostile.host_listing() == [] and hostile.torrents() == rows
    assert code == 14, err
    assert "files[2].path" in doc["message"] and "contains '/'" in doc["message"]
    assert not (hostile.root / "deploy.lock").exists()


def test_restore_from_never_uploads_a_file_outside_the_copy(hostile, tmp_path):
    """A copy whose release.tar.gz is a symlink to the operator's private key, with a
    manifest that matches it: before the fix the key was uploaded to the host."""
    hostile.plant_release()
    secret = tmp_path / "id_ed25519"
    secret.write_bytes(b"-----BEGIN OPENSSH PRIVATE KEY-----\noperator\n-----END OPENSSH PRIVATE KEY-----\n")
    copy = tmp_path / "copy"
    copy.mkdir()
    files = good_files(tmp_path)
    (copy / "database.sqlite3.gz").write_bytes(files["database.sqlite3.gz"])
    os.symlink(secret, copy / "release.tar.gz")
    (copy / "manifest.json").write_text(
        json.dumps(manifest_for(BID, {**files, "release.tar.gz": secret.read_bytes()}, "database.sqlite3.gz"))
    )
    code, doc, err = hostile.cli("app.restore", "--from", str(copy), "--yes", "--no-probes", "--wait-timeout", "1")
    assert hostile.host_listing() == []  # nothing reached the host (the key least of all)
    assert code == 14, err
    assert "'release.tar.gz'" in doc["message"] and "symlink leading out of the directory" in doc["message"]
    # no size oracle: the size nowhere as a number of its own (the paths named, which hold
    # pytest's run number, taken out first)
    text = doc["message"].replace(str(secret), "").replace(str(copy), "")
    assert not re.search(rf"\b{secret.stat().st_size}\b", text), text


@pytest.mark.parametrize(
    ("recorded", "problem"),
    [
        ("files-not-a-list.json", "files is a dict, not a list"),
        ("path-not-a-string.json", "is a list, not a string"),
        ("size-missing.json", "files[1] has no size"),
        ("path-absolute.json", "'/home/torrust/.ssh/authorized_keys' contains '/'"),
        ("database-file-not-checksummed.json", "database.file 'unlisted.sqlite3.zst' is not one of the checksummed"),
    ],
)
def test_restore_from_a_malformed_copy_is_a_named_error(hostile, tmp_path, recorded, problem):
    """Before the fix: tracebacks for the shapes, and the host script restored a
    database.file that no checksum covered."""
    hostile.plant_release()
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "manifest.json").write_bytes((RECORDED / recorded).read_bytes())
    for name in ("database.sqlite3.zst", "release.tar.gz", "unlisted.sqlite3.zst"):
        (copy / name).write_bytes(b"x")
    rows = hostile.torrents()
    code, doc, err = hostile.cli("app.restore", "--from", str(copy), "--yes", "--no-probes", "--wait-timeout", "1")
    assert code == 14, err
    assert problem in doc["message"], doc
    assert hostile.host_listing() == [] and hostile.torrents() == rows


# ------------------------------------------------------------------ the host script's side
def test_restore_refuses_a_database_file_no_checksum_covers(hostile, tmp_path):
    """On the host: the manifest's files are intact, but database.file names another file
    in the directory (a planted dump). Before the fix the host script restored it."""
    hostile.plant_release(rows=7)
    files = good_files(tmp_path, rows=3)
    hostile.backup(BID, files, mutate=lambda m: m["database"].update(file="planted.sqlite3.gz"))
    hostile.write(f"backups/{BID}/planted.sqlite3.gz", sqlite_dump(tmp_path, 1000))
    code, doc, err = hostile.cli(
        "app.restore", "--id", BID, "--yes", "--no-safety-backup", "--no-probes", "--wait-timeout", "1"
    )
    assert hostile.torrents() == 7  # the planted dump (1000 rows) was not restored
    assert code == 14, err
    assert doc["error"] == "Untrusted"
    assert "database.file 'planted.sqlite3.gz' is not one of the checksummed files" in doc["message"]
    assert not (hostile.root / "deploy.lock").exists()


def test_restore_refuses_a_backup_file_that_is_a_symlink_out_of_the_backup(hostile, tmp_path):
    """On the host: the dump is a symlink to a file elsewhere on the host (its checksum
    matches). Before the fix the host script read and restored it."""
    hostile.plant_release(rows=7)
    outside = sqlite_dump(tmp_path, 500)
    hostile.write("elsewhere/other.sqlite3.gz", outside)
    files = {"database.sqlite3.gz": outside, "release.tar.gz": b"release archive"}
    hostile.backup(BID, files)
    hostile.symlink(f"backups/{BID}/database.sqlite3.gz", str(hostile.root / "elsewhere/other.sqlite3.gz"))
    code, doc, err = hostile.cli(
        "app.restore", "--id", BID, "--yes", "--no-safety-backup", "--no-probes", "--wait-timeout", "1"
    )
    assert hostile.torrents() == 7  # the file outside the backup (500 rows) was not restored
    assert code == 14, err
    assert "'database.sqlite3.gz'" in doc["message"] and "symlink leading out" in doc["message"]


def test_a_good_backup_still_restores_through_the_harness(hostile, tmp_path):
    """The control: the same harness with an honest backup restores it (so the refusals
    above are the rule at work, not a broken setup)."""
    hostile.plant_release(rows=7)
    hostile.backup(BID, good_files(tmp_path, rows=3), database_file="database.sqlite3.gz")
    code, doc, err = hostile.cli(
        "app.restore", "--id", BID, "--yes", "--no-safety-backup", "--no-probes", "--wait-timeout", "1"
    )
    # the restore itself succeeds; nothing runs in this harness, so the health wait fails after it
    assert code == 40 and f"backup {BID} was restored but the stack is not healthy" in doc["message"], err
    assert hostile.torrents() == 3


def test_a_hostile_listing_is_shown_as_invalid_not_a_crash(hostile, tmp_path):
    """Before the fix the host script crashed on a manifest that is a JSON list (exit 1,
    the tool said 'exited with 1') and on a backup-like directory with a wrong name."""
    hostile.plant_release()
    hostile.backup(BID, good_files(tmp_path), raw=b"[]")
    hostile.backup("20261127T040000Z-beef", good_files(tmp_path))
    hostile.backup("not-a-backup-id", good_files(tmp_path))
    code, doc, err = hostile.cli("app.backups")
    assert code == 0, err
    assert [(r["id"], r["valid"]) for r in doc["backups"]] == [("20261127T040000Z-beef", True), (BID, False)]


def test_a_hostile_release_json_is_refused_before_the_restore(hostile, tmp_path):
    """current/release.json is not a release manifest: refused (14) before the backup is
    uploaded or restored. Before the fix: an AttributeError traceback after the restore."""
    hostile.plant_release(rows=7)
    hostile.backup(BID, good_files(tmp_path, rows=3))
    hostile.release_json(["tracker"])
    code, doc, err = hostile.cli(
        "app.restore", "--id", BID, "--yes", "--no-safety-backup", "--no-probes", "--wait-timeout", "1"
    )
    assert code == 14, err
    assert (
        doc["error"] == "MalformedFact" and "release.json" in doc["message"] and "not a JSON object" in doc["message"]
    )
    assert hostile.torrents() == 7


def test_the_harness_can_shadow_a_host_command(hostile):
    """For `docker ps` tests: a crafted `docker` answers `ps`, the real one the rest, in an
    SSH session of the deploy user (what the tool's executor gets)."""
    hostile.shadow_command(
        "docker",
        '#!/bin/sh\nif [ "$1" = ps ]; then echo \'{"Service": "tracker\\u001b[2J", "State": 7}\'; exit 0; fi\n'
        'exec /usr/bin/docker "$@"\n',
    )
    ps = hostile.ssh("docker ps --format json")
    assert ps.returncode == 0 and ps.stdout == '{"Service": "tracker\\u001b[2J", "State": 7}\n', ps.stderr
    assert hostile.ssh("docker version --format '{{.Server.Version}}'").stdout.strip()  # the real engine
