"""`app.restore --certificates`: put the proxy's certificate store back from a backup, so a
rebuilt host serves the certificates it had instead of asking the CA again (Let's Encrypt
limits new certificates per name set: five a week).

The archive (`proxy-data.tar.gz`) is read from a downloaded backup (`--from`, its manifest
and every checksum verified here first) or from the host's backup directory (`--id`, its
size and sha256 checked against the manifest here), judged member by member
(tasks/facts/certificate_store.py), then uploaded and put in place under the host lock by
scripts/restore-certificates.sh: checksum again on the host, the proxy stopped while the
store is replaced (and started again), the previous store kept beside it. No release is
needed on the host: restoring before the first deploy is what avoids the new orders.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from tasks.commands import sh
from tasks.config.settings import Settings
from tasks.errors import BackupCorrupt, BackupNotFound, CommandFailed, RestoreFailed
from tasks.facts import backup as facts
from tasks.facts import certificate_store, paths
from tasks.facts import releases as release_facts
from tasks.operations import backup as backups
from tasks.operations import lock as lock_mod
from tasks.release.layout import Layout
from tasks.runner.executor import Executor


def _archive_from_host(ex: Executor, s: Settings, backup_id: str) -> tuple[facts.Manifest, bytes]:
    backups.check_id(backup_id)
    remote = f"{s.backup_dir}/{backup_id}"
    try:
        raw = ex.get(facts.manifest_path(s.backup_dir, backup_id))
    except OSError:
        raise BackupNotFound(f"no backup {backup_id} in {s.backup_dir} on {ex.where}") from None
    manifest = facts.parse_manifest(raw, source=f"{ex.where}:{remote}/{facts.MANIFEST}", expect_id=backup_id)
    entry = _entry(manifest)
    data = ex.get(paths.remote_join(remote, entry.path, what="the backup file"))
    if len(data) != entry.size or hashlib.sha256(data).hexdigest() != entry.sha256:
        raise BackupCorrupt(
            f"backup {backup_id}: {entry.path} differs from its manifest", hint=backups.HINTS[BackupCorrupt]
        )
    return manifest, data


def _archive_from_copy(directory: Path) -> tuple[facts.Manifest, bytes]:
    manifest = backups.local_copy(directory)  # manifest shape and every checksum
    entry = _entry(manifest)
    return manifest, paths.inside(directory, entry.path, what="the backup file").read_bytes()


def _entry(manifest: facts.Manifest):
    entry = next((f for f in manifest.files if f.path == certificate_store.ARCHIVE), None)
    if entry is None:
        raise BackupNotFound(
            f"backup {manifest.id} holds no certificate store ({certificate_store.ARCHIVE})",
            hint="the backup was taken before the proxy had certificates, or its store could not be read (see "
            "`app.backups`: skipped)",
        )
    return entry


def restore(
    ex: Executor, s: Settings, *, backup_id: str = "", upload_from: Path | None = None, force_unlock: bool = False
) -> dict:
    manifest, data = _archive_from_copy(upload_from) if upload_from else _archive_from_host(ex, s, backup_id)
    store = certificate_store.parse(data, source=f"backup {manifest.id}: {certificate_store.ARCHIVE}")
    lay = Layout(s.deploy_root)
    ex.run(["mkdir", "-p", "--", lay.storage])
    with lock_mod.HostLock(ex, lay, env=s.env, command="app.restore --certificates", force_unlock=force_unlock):
        current = lay.current if release_facts.manifest(ex, lay) is not None else ""
        staging = f"{lay.storage}/.restore-{manifest.id}.tar.gz"
        ex.put(data, staging, 0o600)
        sha = hashlib.sha256(data).hexdigest()
        try:
            r = ex.run(sh("restore-certificates", f"{lay.storage}/proxy", staging, sha, s.compose_project, current))
        except CommandFailed as exc:
            raise RestoreFailed(
                f"restoring the certificate store of backup {manifest.id} failed: {exc.message}",
                hint="the proxy's store was left as it was (and the proxy started again)",
            ) from None
    return {
        "ok": True,
        "id": manifest.id,
        "certificates": list(store.names),
        "files": store.files,
        "proxy_restarted": bool(current),
        "detail": r.stdout.strip().splitlines()[-1] if r.stdout.strip() else "",
    }
