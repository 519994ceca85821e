"""The release store on the target, as operations: upload a release, switch `current`,
bring it up, record the audit line, prune old releases, mark a failed one.

Used by the deploy transaction, rollback and restore; the facts (what exists, what is
current) are read through tasks/facts/releases.py.
"""

from __future__ import annotations

import io
import json
import tarfile
from datetime import UTC, datetime

from tasks.commands import docker, files
from tasks.commands import releases as cmd
from tasks.config.settings import Settings
from tasks.facts import releases as facts
from tasks.operations.lock import who
from tasks.release.layout import FAILED_MARKER, RECORD, Layout
from tasks.release.render import Release
from tasks.runner.executor import Executor


def compose_for(s: Settings, release_dir: str, *args: str) -> list[str]:
    return docker.compose(s.compose_project, release_dir, *args)


def audit_line(record: dict) -> str:
    return json.dumps({"time": datetime.now(UTC).isoformat(timespec="seconds"), "who": who(), **record}, sort_keys=True)


def audit(ex: Executor, lay: Layout, record: dict) -> None:
    ex.run(files.append_line(lay.audit, audit_line(record)))


def archive(release: Release) -> bytes:
    """The release as one tar.gz: deterministic member order, modes as rendered."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=6) as tar:
        dirs = sorted({"/".join(f.path.split("/")[:i]) for f in release.files for i in range(1, f.path.count("/") + 1)})
        for d in dirs:
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for f in release.files:
            info = tarfile.TarInfo(f.path)
            info.size, info.mode = len(f.content), f.mode
            tar.addfile(info, io.BytesIO(f.content))
    return buf.getvalue()


def cron_args(s: Settings) -> tuple[str, str]:
    """The cron.d file, and the backup directory when backups are on (empty: remove the entry)."""
    return f"/etc/cron.d/torrust-backup-{s.compose_project}", s.backup_dir if s.backup else ""


def upload(ex: Executor, s: Settings, lay: Layout, release: Release, release_id: str) -> str:
    """One round trip: the archive streamed into a 0700 staging dir, unpacked (modes as
    rendered, secrets 0600), storage prepared, the backup cron entry installed or removed,
    renamed into place."""
    target = lay.release(release_id)
    groups = [(f.path, f.group) for f in release.files if f.group is not None]
    argv = cmd.unpack(
        lay.releases, lay.upload_dir(release_id), target, cron_args(s), lay.storage, groups, release.storage_dirs
    )
    ex.feed(argv, archive(release))
    return target


def switch(ex: Executor, lay: Layout, release_id: str | None) -> None:
    if release_id is None:
        ex.run(files.remove_link(lay.current))
    else:
        ex.run(files.symlink_atomic(f"releases/{release_id}", lay.current))


def bring_up(
    ex: Executor,
    s: Settings,
    lay: Layout,
    wait_timeout: int,
    *,
    pull: bool,
    switch_to: str | None = None,
    record: str | None = None,
) -> None:
    """`up -d --wait` on `current`; with `switch_to`, switch `current` first in the same
    round trip (the switch is atomic and happens only if nothing before it failed), and
    before that write `record` (the release's images.json) into the release."""
    up = compose_for(
        s,
        lay.current,
        *("up", "-d", "--wait", "--wait-timeout", str(wait_timeout), "--remove-orphans"),
        *("--pull", "missing" if pull else "never"),
    )
    if switch_to is not None:
        up = files.symlink_atomic(f"releases/{switch_to}", lay.current, *up)
        if record is not None:
            up = files.write_then(f"{lay.release(switch_to)}/{RECORD}", record, *up)
    ex.run(up, timeout=wait_timeout + 120)


def retag(ex: Executor, pairs: list[tuple[str, str]]) -> None:
    """Point each reference back at the image a release ran (image ID, reference): a
    mutable tag that moved since (`develop` after a pull) would otherwise start the new
    image again on a rollback. Locally, as `docker tag`; nothing is pulled."""
    if pairs:
        ex.run(docker.retag(pairs))


def mark_failed(ex: Executor, lay: Layout, release_id: str, reason: str) -> None:
    """Keep a failed release for inspection, marked so rollbacks never pick it."""
    ex.run(files.write_marker(f"{lay.release(release_id)}/{FAILED_MARKER}", reason), check=False)


def prune(ex: Executor, lay: Layout, keep: int, protect: set[str], audit_record: dict | None = None) -> list[str]:
    """Keep the newest `keep` good releases; failed ones go first; never `protect`.
    `audit_record` is appended to the audit log in the same round trip as the listing."""
    releases, failed = facts.inventory(ex, lay, audit_line(audit_record) if audit_record else "")
    good = [r for r in releases if r not in failed]
    doomed = [r for r in failed if r not in protect]
    doomed += [r for r in good[:-keep] if r not in protect] if len(good) > keep else []
    if doomed:
        ex.run(["rm", "-rf", "--", *(lay.release(r) for r in doomed)])
    return doomed
