"""Backups: the tool's side. The host script `<release>/bin/torrust-backup` does the work
(one implementation, also run by cron); these functions hold the host lock, run it
through the deploy connection, copy backups off the host and back, and check health
after a restore. Layout and format: docs/adr/0008-backups.md.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path

from tasks.commands import backup as cmd
from tasks.commands import files
from tasks.config.settings import Settings
from tasks.errors import (
    BackupCorrupt,
    BackupFailed,
    BackupNotFound,
    CommandFailed,
    ConfigError,
    HealthFailed,
    RestoreFailed,
    ToolError,
    VerifyFailed,
)
from tasks.facts import releases as release_facts
from tasks.operations import gate
from tasks.operations import lock as lock_mod
from tasks.operations.day2 import require_current
from tasks.release.layout import Layout
from tasks.runner.executor import Executor

LONG = 6 * 3600  # a dump or restore of a very large database may take hours
ID_RE = re.compile(r"^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{4}$")

# the host script's exit codes -> the tool's errors
SCRIPT_ERRORS = {
    2: ConfigError,
    4: BackupFailed,
    5: BackupCorrupt,
    6: VerifyFailed,
    7: RestoreFailed,
    8: BackupNotFound,
}


def backup_id_time(backup_id: str) -> datetime:
    return datetime.strptime(backup_id[:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


def check_id(backup_id: str) -> str:
    if not ID_RE.fullmatch(backup_id or ""):
        raise ConfigError(
            f"--id {backup_id!r} is not a backup id", hint="`app.backups` lists them (YYYYMMDDTHHMMSSZ-xxxx)"
        )
    return backup_id


def run_script(ex: Executor, s: Settings, *args: str) -> dict:
    """Run the host script; its last stdout line is a JSON document. Errors map to 50-59."""
    r = ex.run(cmd.script(Layout(s.deploy_root).current, s.backup_dir, *args), check=False, timeout=LONG)
    if not ex.connected:
        raise CommandFailed(f"{ex.where}: the connection was lost while running torrust-backup {args[0]}")
    doc: dict = {}
    for line in reversed(r.stdout.strip().splitlines()):
        try:
            doc = json.loads(line)
            break
        except json.JSONDecodeError:
            continue
    if r.ok and doc.get("ok"):
        return doc
    message = doc.get("error") or ((r.stderr or r.stdout).strip().splitlines() or [f"exit {r.exit_status}"])[-1]
    if r.exit_status == 6 and doc.get("problems"):
        message = f"backup {doc.get('id')} did not restore as recorded: " + "; ".join(doc["problems"])
    if r.exit_status == 3:
        raise lock_mod.LockHeld(message, info={}, stale="stale" in message)
    err = SCRIPT_ERRORS.get(r.exit_status)
    if err is None:
        raise CommandFailed(f"{ex.where}: torrust-backup {args[0]} exited with {r.exit_status}: {message}")
    raise err(message, hint=HINTS.get(err))


HINTS = {
    BackupFailed: "nothing partial was kept; earlier backups are untouched (check free space in the backup directory)",
    BackupCorrupt: "nothing was changed; use another backup (`app.backups`) or a downloaded copy",
    BackupNotFound: "`app.backups` lists the backups on the host",
    VerifyFailed: "do not rely on this backup; the result is recorded and shown by `app.backups`",
    RestoreFailed: "the tracker was started again; `app.backups` lists the safety backup taken before",
}


def _locked(ex: Executor, s: Settings, command: str, force_unlock: bool):
    return lock_mod.HostLock(ex, Layout(s.deploy_root), env=s.env, command=command, force_unlock=force_unlock)


# ------------------------------------------------------------------------ on the host
def backup(ex: Executor, s: Settings, *, stop_tracker: bool = False, force_unlock: bool = False) -> dict:
    require_current(ex, Layout(s.deploy_root))
    with _locked(ex, s, "app.backup", force_unlock) as lock:
        return run_script(ex, s, "backup", "--lock-token", lock.token, *(["--stop-tracker"] if stop_tracker else []))


def backups(ex: Executor, s: Settings) -> list[dict]:
    require_current(ex, Layout(s.deploy_root))
    rows = run_script(ex, s, "list")["backups"]
    now = datetime.now(UTC)
    for row in rows:
        row["age_seconds"] = int((now - backup_id_time(row["id"])).total_seconds()) if ID_RE.match(row["id"]) else None
    return rows


def verify(ex: Executor, s: Settings, backup_id: str, *, force_unlock: bool = False) -> dict:
    require_current(ex, Layout(s.deploy_root))
    with _locked(ex, s, "app.backup-verify", force_unlock) as lock:
        return run_script(ex, s, "verify", check_id(backup_id), "--lock-token", lock.token)


def restore(
    ex: Executor,
    s: Settings,
    backup_id: str,
    *,
    probes=None,
    wait_timeout: int = 300,
    safety: bool = True,
    force_unlock: bool = False,
    upload_from: Path | None = None,
    step=None,
) -> dict:
    """Checksums, safety backup, stop tracker, restore, start (all in the host script, under
    the lock); then the services' health and the protocol probes. With `upload_from`, a
    downloaded backup is checked here first, then copied to the host under the same lock."""
    lay = Layout(s.deploy_root)
    if upload_from is not None:
        manifest = check_local(upload_from)  # refused before anything on the host is touched
        backup_id = manifest["id"]
    check_id(backup_id)
    require_current(ex, lay)
    with _locked(ex, s, "app.restore", force_unlock) as lock:
        if upload_from is not None:
            _upload(ex, s, upload_from, manifest)
        result = run_script(
            ex, s, "restore", backup_id, "--lock-token", lock.token, *([] if safety else ["--no-safety-backup"])
        )
        manifest = release_facts.manifest(ex, lay)
        try:
            gate.wait_healthy(ex, s, list(manifest.services) if manifest else [], wait_timeout)
            if probes is not None:
                result["probes"] = gate.probe_gate(probes)
        except ToolError as exc:
            raise HealthFailed(
                f"backup {backup_id} was restored but the stack is not healthy: {exc.message}",
                hint=f"`app.status`, `app.logs`; the state before the restore is backup {result.get('safety_backup')}",
            ) from None
    return result


# ------------------------------------------------------------------------ off the host
def file_sha256(path: Path) -> tuple[str, int]:
    h, size = hashlib.sha256(), 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def problems_of(directory: Path, manifest: dict) -> list[str]:
    problems = []
    for f in manifest.get("files", []):
        p = directory / f["path"]
        if not p.is_file():
            problems.append(f"{f['path']}: missing")
            continue
        sha, size = file_sha256(p)
        if size != f["size"]:
            problems.append(f"{f['path']}: size {size}, manifest says {f['size']}")
        elif sha != f["sha256"]:
            problems.append(f"{f['path']}: sha256 differs from the manifest")
    if not manifest.get("files"):
        problems.append("the manifest lists no files")
    return problems


def check_local(directory: Path) -> dict:
    """A downloaded backup: its manifest, every checksum verified; raises when damaged."""
    try:
        manifest = json.loads((directory / "manifest.json").read_text())
    except FileNotFoundError:
        raise BackupNotFound(
            f"{directory} holds no manifest.json", hint="pass the directory app.backup-download wrote"
        ) from None
    except ValueError:
        raise BackupCorrupt(f"{directory}/manifest.json is not valid JSON") from None
    if not isinstance(manifest, dict) or not ID_RE.fullmatch(str(manifest.get("id", ""))):
        raise BackupCorrupt(f"{directory}/manifest.json names no backup id")
    problems = problems_of(directory, manifest)
    if problems:
        raise BackupCorrupt(
            f"backup {manifest['id']} in {directory} is damaged: " + "; ".join(problems), hint=HINTS[BackupCorrupt]
        )
    return manifest


def download(ex: Executor, s: Settings, backup_id: str, dest: Path) -> dict:
    """Copy a backup off the host (SFTP), then verify every checksum here; the directory
    gets its final name only when all match."""
    check_id(backup_id)
    remote = f"{s.backup_dir}/{backup_id}"
    try:
        raw = ex.get(f"{remote}/manifest.json")
        manifest = json.loads(raw)
    except (OSError, ValueError):
        raise BackupNotFound(
            f"no backup {backup_id} in {s.backup_dir} on {ex.where}", hint=HINTS[BackupNotFound]
        ) from None
    final = dest / backup_id
    if final.exists():
        raise ConfigError(f"{final} already exists", hint="remove it or pass another --dest")
    dest.mkdir(parents=True, exist_ok=True)
    partial = dest / f".partial-{backup_id}"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(mode=0o700)
    try:
        for f in manifest["files"]:
            ex.fetch(f"{remote}/{f['path']}", str(partial / f["path"]))
            (partial / f["path"]).chmod(0o600)
        (partial / "manifest.json").write_bytes(raw)
        problems = problems_of(partial, manifest)
        if problems:
            raise BackupCorrupt(f"backup {backup_id} arrived damaged: " + "; ".join(problems), hint="download it again")
        partial.rename(final)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return {
        "ok": True,
        "id": backup_id,
        "path": str(final),
        "files": len(manifest["files"]),
        "size": sum(f["size"] for f in manifest["files"]),
    }


def _upload(ex: Executor, s: Settings, directory: Path, manifest: dict) -> None:
    """Copy a checked local backup into the host's backup directory (temp name, renamed)."""
    backup_id = manifest["id"]
    final, staging = f"{s.backup_dir}/{backup_id}", f"{s.backup_dir}/.upload-{backup_id}"
    if ex.run(files.exists(f"{final}/manifest.json"), check=False).ok:
        run_script(ex, s, "check", backup_id)  # the host's copy must be intact too
        return
    ex.run(files.private_dir_fresh(s.backup_dir, staging))
    for f in [*manifest["files"], {"path": "manifest.json"}]:
        ex.put_file(str(directory / f["path"]), f"{staging}/{f['path']}", 0o600)
    ex.run(files.move(staging, final))
