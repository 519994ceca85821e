"""Backup facts: a backup's manifest.json and the host script's listing, as typed shapes.

A manifest comes from the host (app.backup-download) or from a copy on this machine
(app.restore --from); either may have been crafted. `parse_manifest` turns its bytes into
a `Manifest` or raises `ManifestRefused` (exit 14) naming every problem: not JSON, not an
object, an id that is not a backup id, files not a list, an entry without a flat path, a
sha256 that is not 64 hex digits, a size that is not an integer >= 0, duplicate paths,
a reserved name, a database whose file is not one of the checksummed entries. Only a
`Manifest` reaches the code that reads, writes or uploads files. Format: ADR 0008; the
host script (application/bin/torrust-backup) validates the same shape on its side.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from tasks.errors import ManifestRefused
from tasks.facts.paths import name_problem
from tasks.facts.text import host_text

MANIFEST = "manifest.json"
RESERVED = frozenset({MANIFEST, "verified.json"})  # beside the files, never one of them
ID_RE = re.compile(r"^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{4}$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
DRIVERS = ("mysql", "sqlite3")
MAX_BYTES = 1 << 20  # a real manifest is a few KiB
MAX_FILES = 64  # a real backup has 2 to 4 files
HINT = "do not use this backup: it was damaged or crafted; take or download another one (nothing was touched)"


@dataclass(frozen=True)
class BackupFile:
    path: str  # one flat name (tasks/facts/paths.py)
    sha256: str
    size: int


@dataclass(frozen=True)
class Database:
    driver: str
    file: str  # one of the manifest's files
    compression: str


@dataclass(frozen=True)
class Manifest:
    id: str
    files: tuple[BackupFile, ...]
    database: Database
    raw: bytes  # the bytes as read: written or uploaded unchanged

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)


def manifest_path(backup_dir: str, backup_id: str) -> str:
    """Where the host keeps a backup's manifest (the id is checked by the caller)."""
    return f"{backup_dir}/{backup_id}/{MANIFEST}"


def _is_size(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _file(entry: object, n: int, problems: list[str]) -> BackupFile | None:
    if not isinstance(entry, dict):
        problems.append(f"files[{n}] is a {type(entry).__name__}, not an object")
        return None
    path, sha, size = entry.get("path"), entry.get("sha256"), entry.get("size")
    before = len(problems)
    bad_path = name_problem(path)
    if bad_path:
        problems.append(f"files[{n}].path {path!r} {bad_path} (one flat file name is allowed)")
    elif path in RESERVED:
        problems.append(f"files[{n}].path {path!r} is reserved (the manifest and verify result sit beside the files)")
    if not (isinstance(sha, str) and SHA256_RE.fullmatch(sha)):
        problems.append(f"files[{n}].sha256 {sha!r} is not 64 lowercase hex digits")
    if "size" not in entry:
        problems.append(f"files[{n}] has no size")
    elif not _is_size(size):
        problems.append(f"files[{n}].size {size!r} is not an integer >= 0")
    return BackupFile(path, sha, size) if len(problems) == before else None


def _files(value: object, problems: list[str]) -> tuple[BackupFile, ...]:
    if not isinstance(value, list):
        problems.append(f"files is {'missing' if value is None else 'a ' + type(value).__name__}, not a list")
        return ()
    if not value:
        problems.append("files is empty (a backup has at least its database file)")
    if len(value) > MAX_FILES:
        problems.append(f"files has {len(value)} entries (at most {MAX_FILES})")
        return ()
    files = [f for n, entry in enumerate(value) if (f := _file(entry, n, problems)) is not None]
    seen: set[str] = set()
    for f in files:
        if f.path in seen:
            problems.append(f"files lists {f.path!r} twice")
        seen.add(f.path)
    return tuple(files)


def _database(value: object, files: tuple[BackupFile, ...], problems: list[str]) -> Database | None:
    if not isinstance(value, dict):
        problems.append(f"database is {'missing' if value is None else 'a ' + type(value).__name__}, not an object")
        return None
    driver, file, compression = value.get("driver"), value.get("file"), value.get("compression", "")
    before = len(problems)
    if driver not in DRIVERS:
        problems.append(f"database.driver {driver!r} is not one of {', '.join(DRIVERS)}")
    if not (isinstance(file, str) and file in {f.path for f in files}):
        problems.append(f"database.file {file!r} is not one of the checksummed files")
    if not isinstance(compression, str):
        problems.append(f"database.compression {compression!r} is not a string")
    return Database(driver, file, compression) if len(problems) == before else None


def _document(data: bytes, source: str) -> dict:
    if len(data) > MAX_BYTES:
        raise ManifestRefused(f"{source} is {len(data)} bytes (at most {MAX_BYTES})", hint=HINT)
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ManifestRefused(f"{source} is not JSON ({exc})", hint=HINT) from None
    if not isinstance(doc, dict):
        raise ManifestRefused(f"{source} is a JSON {type(doc).__name__}, not an object", hint=HINT)
    return doc


def parse_manifest(data: bytes, *, source: str, expect_id: str | None = None) -> Manifest:
    """A backup manifest from its bytes; ManifestRefused naming every problem otherwise."""
    doc = _document(data, source)
    problems: list[str] = []
    backup_id = doc.get("id")
    if not (isinstance(backup_id, str) and ID_RE.fullmatch(backup_id)):
        problems.append(f"id {backup_id!r} is not a backup id (YYYYMMDDTHHMMSSZ-xxxx)")
    elif expect_id is not None and backup_id != expect_id:
        problems.append(f"id {backup_id!r} is not the backup asked for ({expect_id})")
    files = _files(doc.get("files"), problems)
    database = _database(doc.get("database"), files, problems)
    if problems:
        raise ManifestRefused(f"{source} is refused: " + "; ".join(problems), hint=HINT)
    return Manifest(backup_id, files, database, data)  # type: ignore[arg-type]


# ------------------------------------------------------------------------ the listing
LISTING_FIELDS = {  # field -> accepted types (None: may be null)
    "valid": (bool,),
    "started": (str, type(None)),
    "finished": (str, type(None)),
    "release": (str, type(None)),
    "reason": (str, type(None)),
    "driver": (str, type(None)),
    "size": (int,),
    "files": (list,),
    "verified": (bool, type(None)),
    "verified_at": (str, type(None)),
    "skipped": (list,),
}


def parse_listing(doc: object, *, source: str) -> list[dict]:
    """The rows of `torrust-backup list --json`, each with a backup id and only the known
    fields of the right types; MalformedFact (as ManifestRefused) otherwise."""
    rows = doc.get("backups") if isinstance(doc, dict) else None
    if not isinstance(rows, list):
        raise ManifestRefused(f"{source}: the backup listing has no list of backups", hint=HINT)
    out = []
    for n, row in enumerate(rows):
        if not (isinstance(row, dict) and isinstance(row.get("id"), str) and ID_RE.fullmatch(row["id"])):
            raise ManifestRefused(f"{source}: backups[{n}] has no backup id", hint=HINT)
        clean = {"id": row["id"]}
        for field, types in LISTING_FIELDS.items():
            if field in row:
                value = row[field]
                if not isinstance(value, types) or (field == "size" and not _is_size(value)):
                    raise ManifestRefused(f"{source}: backups[{n}].{field} {value!r} has the wrong type", hint=HINT)
                clean[field] = value
        out.append(clean)
    return out


# ------------------------------------------------------------------------ script results
def _is_id(value: object) -> bool:
    return isinstance(value, str) and ID_RE.fullmatch(value) is not None


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_counts(value: object) -> bool:
    return isinstance(value, dict) and all(isinstance(k, str) and _is_size(n) for k, n in value.items())


def _is_skip(value: object) -> bool:
    return isinstance(value, dict) and isinstance(value.get("what"), str) and isinstance(value.get("reason"), str)


def _list_of(check):
    return lambda value: isinstance(value, list) and all(check(x) for x in value)


# command -> field -> check: what the CLI and the tool read from each result
RESULTS = {
    "backup": {
        "id": _is_id,
        "size": _is_size,
        "duration": _is_number,
        "deleted": _list_of(_is_id),
        "skipped": _list_of(_is_skip),
        "tables": _is_counts,
    },
    "verify": {"id": _is_id, "tables": _is_counts, "problems": _list_of(lambda x: isinstance(x, str))},
    "restore": {"id": _is_id, "safety_backup": lambda v: v is None or _is_id(v), "duration": _is_number},
    "check": {"id": _is_id, "problems": _list_of(lambda x: isinstance(x, str))},
    "list": {"backups": lambda v: isinstance(v, list)},
}


def parse_result(command: str, doc: dict, *, source: str) -> dict:
    """A successful result of `torrust-backup COMMAND --json` with the fields the tool
    reads, each of its type; ManifestRefused otherwise. Host text is made printable."""
    wrong = [f for f, check in RESULTS.get(command, {}).items() if f not in doc or not check(doc[f])]
    if wrong:
        raise ManifestRefused(
            f"{source}: the result of torrust-backup {command} lacks or mistypes {', '.join(wrong)}", hint=HINT
        )
    if command == "verify":
        doc["problems"] = [host_text(p) for p in doc["problems"]]
    return doc


def failure_text(doc: dict, fallback: str, *, drill: bool = False) -> str:
    """The message of a failed script run: its `error` (or `fallback`, the last line it
    printed); for a failed drill (`drill`) the problems it found."""
    problems = doc.get("problems")
    if drill and isinstance(problems, list) and problems and all(isinstance(p, str) for p in problems):
        return f"backup {host_text(doc.get('id'))} did not restore as recorded: " + host_text("; ".join(problems))
    error = doc.get("error")
    return host_text(error if isinstance(error, str) and error else fallback)
