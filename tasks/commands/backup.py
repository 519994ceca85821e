"""The host backup script's command lines (pure): application/bin/torrust-backup, shipped
in every release, run from `current`."""

from __future__ import annotations

SCRIPT = "bin/torrust-backup"


def script(current: str, backup_dir: str, *args: str) -> list[str]:
    """`torrust-backup ARGS --dir BACKUP_DIR --json` of the running release; its last
    stdout line is a JSON document."""
    return [f"{current}/{SCRIPT}", *args, "--dir", backup_dir, "--json"]


def list_ids(backup_dir: str) -> list[str]:
    """The complete backups' manifest paths, one per line (empty when there are none)."""
    return ["sh", "-c", 'cd -- "$1" 2>/dev/null && ls -1d -- 2*/manifest.json 2>/dev/null; true', "ls", backup_dir]
