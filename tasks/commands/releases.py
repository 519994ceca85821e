"""Commands of the release store on the target (pure): the deploy's snapshot, unpacking an
archive into a release directory, the inventory of releases. They take the paths of
tasks/release/layout.py as plain strings."""

from __future__ import annotations

from collections.abc import Sequence

from tasks.commands import sh
from tasks.commands.docker import PS_FORMAT


def snapshot(
    root: str,
    project: str,
    want: str = "",
    audit_line: str = "",
    services: Sequence[str] = (),
    backup_dir: str = "",
) -> list[str]:
    """Lock, current release, its manifest, the containers, the backup cron entry and
    whether `backup_dir` holds a backup (tasks/facts/snapshot.py); with `want`,
    `audit_line` is appended when that release runs healthy and unlocked."""
    return sh("snapshot", root, project, want, audit_line, backup_dir, PS_FORMAT, *services)


def release_records(releases: str, name: str, ids: Sequence[str]) -> list[str]:
    """The file `name` of each release in `ids`, each after a `=== ID` line (absent: no
    text after it), in one round trip."""
    script = 'd=$1; n=$2; shift 2; for r; do printf "=== %s\\n" "$r"; cat -- "$d/$r/$n" 2>/dev/null; echo; done'
    return ["sh", "-c", script, "records", releases, name, *ids]


def unpack(
    releases: str,
    staging: str,
    target: str,
    cron: tuple[str, str],
    storage: str,
    groups: Sequence[tuple[str, int]],
    storage_dirs: Sequence[tuple[str, int | None]],
) -> list[str]:
    """Unpack the archive on stdin into `target` (scripts/unpack.sh): `cron` is the cron.d
    file and the backup directory (empty: remove the entry); `groups` the files a container
    reads through its group; `storage_dirs` the directories under `storage` with owners."""
    args = [releases, staging, target, *cron, storage]
    args += [x for path, gid in groups for x in (path, str(gid))]
    args.append("--")
    args += [x for path, uid in storage_dirs for x in (path, "-" if uid is None else str(uid))]
    return sh("unpack", *args)


def inventory(releases: str, marker: str, audit_line: str = "", audit: str = "") -> list[str]:
    """The releases and their failed markers (tasks/facts/releases.py), after appending
    `audit_line` to `audit` when given."""
    return sh("inventory", releases, marker, audit_line, audit)
