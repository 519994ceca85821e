"""The host script with SQLite, on this machine (no SSH): an online copy through the
backup API, a restore drill and a restore with no containers at all (nothing to stop or
start), and with the rendered stack running, the tracker always started again after
`--stop-tracker`, and waited for, even when the copy fails. Docker Compose is real."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path

import pytest

from tasks.config.settings import load
from tasks.release import render as r


@pytest.fixture
def sqlite_release(workdir, tmp_path, unique):
    root = tmp_path / "root"
    s = load("local", root=workdir, environ={"TORRUST_DEPLOY_ROOT": str(root), "TORRUST_COMPOSE_PROJECT": unique})
    r.write(r.render(s), root / "releases" / "r1")
    (root / "current").symlink_to("releases/r1")
    db = root / "storage/tracker/lib/database/sqlite3.db"
    db.parent.mkdir(parents=True)
    con = sqlite3.connect(db)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("CREATE TABLE torrents (id INTEGER PRIMARY KEY, info_hash TEXT UNIQUE, completed INTEGER)")
    con.executemany(
        "INSERT INTO torrents (info_hash, completed) VALUES (?, ?)", [(f"{i:040x}", i) for i in range(2000)]
    )
    con.commit()
    yield root, db, con
    con.close()


def script(root: Path, *args: str) -> tuple[int, dict]:
    p = subprocess.run(
        [str(root / "current/bin/torrust-backup"), *args, "--json"], capture_output=True, text=True, timeout=120
    )
    return p.returncode, json.loads(p.stdout.strip().splitlines()[-1])


def test_sqlite_online_backup_verify_and_restore(sqlite_release):
    root, db, con = sqlite_release
    code, doc = script(root, "backup")  # the database stays open (WAL) by "the tracker"
    assert code == 0, doc
    assert doc["tables"] == {"torrents": 2000}
    assert (root / "backups" / doc["id"] / "manifest.json").is_file()
    code, verified = script(root, "verify", doc["id"])
    assert code == 0 and verified["ok"] and verified["tables"] == {"torrents": 2000}
    con.execute("DELETE FROM torrents WHERE id > 10")
    con.commit()
    con.close()
    code, restored = script(root, "restore", doc["id"], "--no-safety-backup")
    assert code == 0, restored
    again = sqlite3.connect(db)
    assert again.execute("SELECT COUNT(*), SUM(completed) FROM torrents").fetchone() == (2000, sum(range(2000)))
    again.close()


def _tracker(project: str) -> tuple[str, str]:
    """(status/health, started at) of the project's tracker container."""
    cid = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={project}",
         "--filter", "label=com.docker.compose.service=tracker"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert len(cid) == 1, cid
    fmt = "{{.State.Status}}/{{if .State.Health}}{{.State.Health.Status}}{{end}} {{.State.StartedAt}}"
    out = subprocess.run(["docker", "inspect", "--format", fmt, cid[0]], capture_output=True, text=True, check=True)
    state, started = out.stdout.split()
    return state, started


def test_stop_tracker_always_starts_it_again(rendered_stack, tmp_path):
    root, project = rendered_stack.root, rendered_stack.settings.compose_project
    state, started = _tracker(project)
    assert state == "running/healthy"
    log = tmp_path / "calls"
    fake = tmp_path / "bin"
    fake.mkdir()
    # a recording `docker` in front of the real one: what matters is the order of calls
    (fake / "docker").write_text(f'#!/bin/sh\necho "$*" >> {log}\nexec /usr/bin/docker "$@"\n')
    (fake / "docker").chmod(0o755)
    db = root / "storage/tracker/lib/database/sqlite3.db"
    assert db.is_file()
    db.rename(db.with_name("elsewhere.db"))  # the copy fails: no database
    env = {"PATH": f"{fake}:/usr/local/bin:/usr/bin:/bin"}
    p = subprocess.run(
        [str(root / "current/bin/torrust-backup"), "backup", "--stop-tracker", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert p.returncode == 4, p.stderr
    error = json.loads(p.stdout.strip().splitlines()[-1])["error"]
    assert error == f"the SQLite database {db} does not exist", error
    calls = [ln.split()[-2:] for ln in log.read_text().splitlines() if " compose " in f" {ln} "]
    assert calls == [["stop", "tracker"], ["start", "tracker"]]
    # started again, and running and healthy when the script returns
    state, started_again = _tracker(project)
    assert state == "running/healthy" and started_again != started, p.stderr
    assert "the tracker is running and healthy" in p.stderr
    assert not [x for x in (root / "backups").iterdir() if x.name != "backup.log"]
