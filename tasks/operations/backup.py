"""Backups: the tool's side. The host script `<release>/bin/torrust-backup` does the work
(one implementation, also run by cron); these functions hold the host lock, run it
through the deploy connection, copy backups off the host and back, and check health
after a restore. Layout and format: docs/adr/0008-backups.md.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
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
    MalformedFact,
    RestoreFailed,
    ToolError,
    Untrusted,
    VerifyFailed,
)
from tasks.facts import backup as facts
from tasks.facts import paths
from tasks.facts import releases as release_facts
from tasks.facts.backup import ID_RE, MANIFEST, Manifest
from tasks.operations import gate
from tasks.operations import lock as lock_mod
from tasks.operations.day2 import require_current
from tasks.release.layout import Layout
from tasks.runner.executor import Executor

LONG = 6 * 3600  # a dump or restore of a very large database may take hours

# the host script's exit codes -> the tool's errors
SCRIPT_ERRORS = {
    2: ConfigError,
    4: BackupFailed,
    5: BackupCorrupt,
    6: VerifyFailed,
    7: RestoreFailed,
    8: BackupNotFound,
    9: Untrusted,  # a manifest or name in the backup directory the host script refuses
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
    doc = last_json_object(r.stdout)
    if r.ok and doc.get("ok") is True:
        return facts.parse_result(args[0], doc, source=f"{ex.where}: torrust-backup {args[0]}")
    fallback = ((r.stderr or r.stdout).strip().splitlines() or [f"exit {r.exit_status}"])[-1]
    message = facts.failure_text(doc, fallback, drill=r.exit_status == 6)
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
    Untrusted: facts.HINT,
    VerifyFailed: "do not rely on this backup; the result is recorded and shown by `app.backups`",
    RestoreFailed: "the tracker was started again; `app.backups` lists the safety backup taken before",
}


def last_json_object(stdout: str) -> dict:
    """The script's result: its last stdout line that is a JSON object ({} when none is)."""
    for line in reversed(stdout.strip().splitlines()):
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if isinstance(doc, dict):
            return doc
    return {}


def _locked(ex: Executor, s: Settings, command: str, force_unlock: bool):
    return lock_mod.HostLock(ex, Layout(s.deploy_root), env=s.env, command=command, force_unlock=force_unlock)


# ------------------------------------------------------------------------ on the host
def backup(ex: Executor, s: Settings, *, stop_tracker: bool = False, force_unlock: bool = False) -> dict:
    require_current(ex, Layout(s.deploy_root))
    with _locked(ex, s, "app.backup", force_unlock) as lock:
        return run_script(ex, s, "backup", "--lock-token", lock.token, *(["--stop-tracker"] if stop_tracker else []))


def backups(ex: Executor, s: Settings) -> list[dict]:
    require_current(ex, Layout(s.deploy_root))
    rows = facts.parse_listing(run_script(ex, s, "list"), source=f"{ex.where}: torrust-backup list")
    now = datetime.now(UTC)
    for row in rows:
        row["age_seconds"] = int((now - backup_id_time(row["id"])).total_seconds())
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
        manifest = local_copy(upload_from)  # refused before anything on the host is touched
        backup_id = manifest.id
    check_id(backup_id)
    require_current(ex, lay)
    with _locked(ex, s, "app.restore", force_unlock) as lock:
        current = release_facts.manifest(ex, lay)  # read (and refused, exit 14) before anything is touched
        if current is None:
            raise MalformedFact(
                f"{ex.where}:{lay.current}/release.json cannot be read",
                hint="the release on the host was damaged or altered: app.deploy writes a fresh one",
            )
        if upload_from is not None:
            _upload(ex, s, upload_from, manifest)
        result = run_script(
            ex, s, "restore", backup_id, "--lock-token", lock.token, *([] if safety else ["--no-safety-backup"])
        )
        try:
            gate.wait_healthy(ex, s, list(current.services), wait_timeout)
            if probes is not None:  # a factory of the gate's probes, given the executor
                result["probes"] = gate.probe_gate(probes(ex))
        except ToolError as exc:
            raise HealthFailed(
                f"backup {backup_id} was restored but the stack is not healthy: {exc.message}",
                hint=f"`app.status`, `app.logs`; the state before the restore is backup {result.get('safety_backup')}",
            ) from None
    return result


# ------------------------------------------------------------------------ off the host
# Every name from a manifest is one flat name (tasks/facts/paths.py) joined to a directory
# the tool chose; a manifest is a typed shape (tasks/facts/backup.py) or refused (exit 14)
# before any file is read, written or uploaded (docs/threat-model.md).
def file_sha256(path: Path) -> tuple[str, int]:
    h, size = hashlib.sha256(), 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def problems_of(directory: Path, manifest: Manifest) -> list[str]:
    """Each listed file: a regular file inside `directory` (UnsafeName when it is a symlink
    leading out), its size compared before a byte is read, then its sha256."""
    problems = []
    for f in manifest.files:
        p = paths.inside(directory, f.path, what="the backup file")
        if not p.is_file():
            problems.append(f"{f.path}: missing" if not p.exists() else f"{f.path}: not a regular file")
            continue
        size = p.stat().st_size
        if size != f.size:
            problems.append(f"{f.path}: size {size}, manifest says {f.size}")
        elif file_sha256(p)[0] != f.sha256:
            problems.append(f"{f.path}: sha256 differs from the manifest")
    return problems


def local_copy(directory: Path) -> Manifest:
    """A backup directory on this machine: its manifest, typed, every checksum verified."""
    source = f"{directory}/{MANIFEST}"
    try:
        with open(paths.inside(directory, MANIFEST, what="the manifest"), "rb") as fh:
            data = fh.read(facts.MAX_BYTES + 1)
    except FileNotFoundError:
        raise BackupNotFound(
            f"{directory} holds no {MANIFEST}", hint="pass the directory app.backup-download wrote"
        ) from None
    except OSError as exc:
        raise BackupNotFound(f"cannot read {source}: {exc.strerror or exc}") from None
    manifest = facts.parse_manifest(data, source=source)
    problems = problems_of(directory, manifest)
    if problems:
        raise BackupCorrupt(
            f"backup {manifest.id} in {directory} is damaged: " + "; ".join(problems), hint=HINTS[BackupCorrupt]
        )
    return manifest


def check_local(directory: Path) -> dict:
    """`local_copy` as the summary the CLI shows (id, number of files, size)."""
    manifest = local_copy(directory)
    return {"id": manifest.id, "files": len(manifest.files), "size": manifest.size}


def _new_dirs(path: Path) -> list[Path]:
    """The directories a mkdir -p of `path` would create, deepest first."""
    return [p for p in (path, *path.parents) if not p.exists() and not p.is_symlink()]


def _fetch_all(ex: Executor, remote: str, partial: Path, manifest: Manifest) -> None:
    for f in manifest.files:
        local_path = paths.inside(partial, f.path, what="the backup file")
        try:
            ex.fetch(paths.remote_join(remote, f.path, what="the backup file"), str(local_path))
        except OSError as exc:
            raise BackupCorrupt(
                f"backup {manifest.id}: {f.path} cannot be copied from {ex.where}: {exc.strerror or exc}",
                hint=HINTS[BackupCorrupt],
            ) from None
        local_path.chmod(0o600)
    fd = os.open(partial / MANIFEST, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(manifest.raw)


def download(ex: Executor, s: Settings, backup_id: str, dest: Path) -> dict:
    """Copy a backup off the host (SFTP), then verify every checksum here; the directory
    gets its final name only when all match. A refused or failed download removes
    everything it wrote (the partial directory, and `dest` when it created it)."""
    check_id(backup_id)
    remote = f"{s.backup_dir}/{backup_id}"
    try:
        raw = ex.get(facts.manifest_path(s.backup_dir, backup_id))
    except OSError:
        raise BackupNotFound(
            f"no backup {backup_id} in {s.backup_dir} on {ex.where}", hint=HINTS[BackupNotFound]
        ) from None
    manifest = facts.parse_manifest(raw, source=f"{ex.where}:{remote}/{MANIFEST}", expect_id=backup_id)
    final = dest / backup_id
    if final.exists() or final.is_symlink():
        raise ConfigError(f"{final} already exists", hint="remove it or pass another --dest")
    created = _new_dirs(dest)
    dest.mkdir(parents=True, exist_ok=True)
    partial = dest / f".partial-{backup_id}"
    if partial.is_symlink():
        partial.unlink()
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(mode=0o700)
    try:
        _fetch_all(ex, remote, partial, manifest)
        problems = problems_of(partial, manifest)
        if problems:
            raise BackupCorrupt(f"backup {backup_id} arrived damaged: " + "; ".join(problems), hint="download it again")
        partial.rename(final)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        for d in created:
            with contextlib.suppress(OSError):
                d.rmdir()
        raise
    return {"ok": True, "id": backup_id, "path": str(final), "files": len(manifest.files), "size": manifest.size}


def _upload(ex: Executor, s: Settings, directory: Path, manifest: Manifest) -> None:
    """Copy a checked local backup into the host's backup directory (temp name, renamed):
    only the manifest's flat names, read inside `directory`, written inside the staging
    directory; the manifest's bytes as checked, not the file read again."""
    final = paths.remote_join(s.backup_dir, manifest.id, what="the backup id")
    staging = paths.remote_join(s.backup_dir, f".upload-{manifest.id}", what="the staging directory")
    if ex.run(files.exists(f"{final}/{MANIFEST}"), check=False).ok:
        run_script(ex, s, "check", manifest.id)  # the host's copy must be intact too
        return
    ex.run(files.private_dir_fresh(s.backup_dir, staging))
    for f in manifest.files:
        source = paths.inside(directory, f.path, what="the backup file")
        ex.put_file(str(source), paths.remote_join(staging, f.path, what="the backup file"), 0o600)
    ex.put(manifest.raw, f"{staging}/{MANIFEST}", 0o600)
    ex.run(files.move(staging, final))
