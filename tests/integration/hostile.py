"""The hostile-host harness: the real SSH test host serving crafted documents.

The SSH test host (conftest.SSHHost) mounts its deploy root at the same path inside and
outside its container, so a test writes what a compromised or damaged host would serve
straight into it: backup directories with crafted manifests, release.json documents,
symlinks. The tool then talks to that host the normal way: real SSH and SFTP (Fabric),
the real host script of a release the tool rendered. Nothing on this machine is a
stand-in.

    def test_x(hostile):                      # the fixture in conftest.py
        hostile.plant_release()               # a rendered release (sqlite3), `current`, a database
        hostile.backup(ID, files, mutate=...) # a backup directory with a crafted manifest
        hostile.release_json([])              # current/release.json replaced by any document
        hostile.symlink("backups/ID/x", "/home/torrust/.ssh/authorized_keys")
        hostile.shadow_command("docker", script)  # e.g. crafted `docker ps` output
        code, doc, err = hostile.cli("app.restore", "--id", ID, "--yes")
        assert code == 14 and hostile.host_digests() == before

`host_digests()` hashes files OUTSIDE the deploy root inside the host container (the
deploy user's authorized_keys, /etc/passwd, ...): "the host's files are untouched".
Reuse for release.json and `docker ps` output tests: plant a release, overwrite what
the host serves (`write`, `release_json`), run the task, assert the named error.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from tests.conftest import ROOT, clean_environ
from tests.integration.conftest import TEST_IMAGES, SSHHost, docker, free_port

DEPLOY_UID = 1000  # the SSH test host's deploy user
STRONG = {"TORRUST_TRACKER_ADMIN_TOKEN": "Hx5-Qm8Wr2Zt7Kp4Lv9Nb3Jc6Fd1Gs0Y"}
WATCHED = ("/home/torrust/.ssh/authorized_keys", "/etc/passwd", "/etc/sudoers.d/90-deploy-user")
SQLITE = "storage/tracker/lib/database/sqlite3.db"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def manifest_for(backup_id: str, files: dict[str, bytes], database_file: str) -> dict:
    """A manifest in the host script's format whose checksums match `files`."""
    return {
        "format": 1,
        "id": backup_id,
        "files": [{"path": name, "sha256": sha256(data), "size": len(data)} for name, data in files.items()],
        "database": {"driver": "sqlite3", "file": database_file, "compression": "gzip", "tables": {}},
        "skipped": [],
    }


class HostileHost:
    """One SSH test host, its shared deploy root, and the tool's CLI pointed at it."""

    def __init__(self, host: SSHHost, workdir: Path, project: str):
        self.host, self.workdir, self.project = host, workdir, project
        self.root = host.deploy_root
        self.backups = self.root / "backups"
        self.env = {
            **host.settings_env(workdir / "known_hosts"),
            **TEST_IMAGES,
            **STRONG,
            "TORRUST_COMPOSE_PROJECT": project,
            "TORRUST_DB_DRIVER": "sqlite3",
            "TORRUST_BACKUP": "true",
            "TORRUST_BACKUP_COMPRESSION": "gzip",
            "TORRUST_PROMETHEUS": "false",
            "TORRUST_HTTP_PORT": str(free_port()),
        }

    # ------------------------------------------------------------ what the host serves
    def _own(self, path: Path) -> None:
        for p in [path, *path.parents]:
            if p == self.root.parent:
                break
            os.lchown(p, DEPLOY_UID, DEPLOY_UID)

    def write(self, relpath: str, data: bytes | str, mode: int = 0o600) -> Path:
        """A file at `relpath` under the deploy root (owned by the deploy user)."""
        path = self.root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        path.chmod(mode)
        self._own(path)
        return path

    def symlink(self, relpath: str, target: str) -> Path:
        path = self.root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        os.symlink(target, path)
        self._own(path)
        return path

    def plant_release(self, release_id: str = "20261127T020000Z-0000beef", rows: int = 7) -> Path:
        """A release rendered by the tool (with its real host script), `current` pointing
        at it, and a SQLite tracker database with `rows` torrents. No container runs:
        the host script's compose stop/start act on nothing."""
        from tasks.config.settings import load
        from tasks.release import render as r

        s = load("e2e", root=self.workdir, environ=self.env)
        release = r.write(r.render(s), self.root / "releases" / release_id)
        (self.root / "current").unlink(missing_ok=True)
        os.symlink(f"releases/{release_id}", self.root / "current")
        self.sqlite_rows(rows)
        subprocess.run(["chown", "-R", "-h", f"{DEPLOY_UID}:{DEPLOY_UID}", str(self.root)], check=True)
        return release

    def sqlite_rows(self, rows: int) -> None:
        db = self.root / SQLITE
        db.parent.mkdir(parents=True, exist_ok=True)
        db.unlink(missing_ok=True)
        con = sqlite3.connect(db)
        con.execute("CREATE TABLE torrents (id INTEGER PRIMARY KEY, info_hash TEXT UNIQUE, completed INTEGER)")
        rows_data = [(f"{i:040x}", i) for i in range(rows)]
        con.executemany("INSERT INTO torrents (info_hash, completed) VALUES (?, ?)", rows_data)
        con.commit()
        con.close()
        self._own(db)

    def torrents(self) -> int:
        con = sqlite3.connect(f"file:{self.root / SQLITE}?mode=ro", uri=True)
        try:
            return con.execute("SELECT COUNT(*) FROM torrents").fetchone()[0]
        finally:
            con.close()

    def backup(
        self,
        backup_id: str,
        files: dict[str, bytes],
        *,
        database_file: str | None = None,
        mutate: Callable[[dict], None] | None = None,
        raw: bytes | None = None,
    ) -> Path:
        """A backup directory on the host: `files` written, a matching manifest changed by
        `mutate`, or `raw` bytes as the manifest."""
        for name, data in files.items():
            self.write(f"backups/{backup_id}/{name}", data)
        manifest = manifest_for(backup_id, files, database_file or next(iter(files)))
        if mutate:
            mutate(manifest)
        self.write(f"backups/{backup_id}/manifest.json", raw if raw is not None else json.dumps(manifest))
        return self.backups / backup_id

    def release_json(self, doc: object = None, raw: bytes | None = None) -> None:
        target = (self.root / "current").resolve() / "release.json"
        self.write(str(target.relative_to(self.root)), raw if raw is not None else json.dumps(doc))

    def shadow_command(self, name: str, script: str) -> None:
        """An executable `name` in /usr/local/bin of the host (first in an SSH session's
        PATH), e.g. a `docker` that prints crafted `ps` lines and runs /usr/bin/docker for
        everything else. The host container is per test, so nothing leaks."""
        install = 'cat > "$1" && chmod 755 "$1"'
        subprocess.run(
            ["docker", "exec", "-i", self.host.name, "sh", "-c", install, "x", f"/usr/local/bin/{name}"],
            input=script,
            text=True,
            check=True,
            timeout=60,
        )

    def ssh(self, command: str) -> subprocess.CompletedProcess:
        """`command` on the host over real SSH, with the environment's key and known_hosts."""
        return subprocess.run(
            [
                "ssh", "-p", str(self.host.port), "-i", str(self.host.client_key), "-o", "IdentitiesOnly=yes",
                "-o", f"UserKnownHostsFile={self.workdir / 'known_hosts'}", "-o", "StrictHostKeyChecking=yes",
                "-o", "BatchMode=yes", "torrust@127.0.0.1", command,
            ],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    # ------------------------------------------------------------ what the test checks
    def host_digests(self, paths: tuple[str, ...] = WATCHED) -> dict[str, str]:
        """sha256 of files outside the deploy root, read inside the host container."""
        out = docker("exec", self.host.name, "sha256sum", *paths).stdout
        return {line.split()[1]: line.split()[0] for line in out.splitlines()}

    def host_listing(self, relpath: str = "backups") -> list[str]:
        d = self.root / relpath
        return sorted(p.name for p in d.iterdir()) if d.is_dir() else []

    def cli(self, *args: str, env: dict | None = None, timeout: int = 300) -> tuple[int, dict, str]:
        """Run a task with --json against the host: (exit code, JSON document, stderr).
        A traceback is never an acceptable answer to a hostile host."""
        res = subprocess.run(
            [sys.executable, str(ROOT / "tasks.py"), *args, "--json", "--env", "e2e"],
            cwd=self.workdir,
            env=clean_environ(**{**self.env, **(env or {})}),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        assert "Traceback" not in res.stderr, res.stderr
        try:
            doc = json.loads(res.stdout)
        except json.JSONDecodeError:
            doc = {}
        return res.returncode, doc, res.stderr
