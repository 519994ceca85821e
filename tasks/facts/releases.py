"""The release store on the target: which releases exist, which failed, which is current,
and what each holds (its release.json), each parsed into a typed, validated shape.

A release.json is read back from the host, so it is untrusted input: anything that is not
the shape tasks/release/render.py writes is refused with `MalformedFact`, never a traceback.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from tasks.commands import files
from tasks.commands import releases as cmd
from tasks.errors import MalformedFact
from tasks.release.layout import FAILED_MARKER, MANIFEST, Layout, is_release_id
from tasks.runner.executor import Executor

SHA256_RE = re.compile(r"[0-9a-f]{64}")
SERVICE_RE = re.compile(r"[a-z][a-z0-9_-]{0,62}")
PATH_PART_RE = re.compile(r"[A-Za-z0-9_.][A-Za-z0-9._-]{0,127}")


@dataclass(frozen=True)
class FileEntry:
    path: str
    sha256: str
    mode: str
    secret: bool


@dataclass(frozen=True)
class ReleaseManifest:
    content_sha256: str
    services: tuple[str, ...]
    images: dict[str, str]
    files: tuple[FileEntry, ...]
    env: str = ""
    project: str = ""

    def file(self, path: str) -> FileEntry | None:
        return next((f for f in self.files if f.path == path), None)


def _require(cond: bool, where: str, what: str) -> None:
    if not cond:
        raise MalformedFact(
            f"{where}: {what}", hint="the file was not written by this tool, or was changed on the host"
        )


def safe_relative_path(path: object) -> bool:
    """A release-relative path: components of letters, digits, '.', '_', '-'; no '..'."""
    return isinstance(path, str) and all(PATH_PART_RE.fullmatch(p) and p not in (".", "..") for p in path.split("/"))


def parse_manifest(text: str, where: str) -> ReleaseManifest:
    try:
        doc = json.loads(text)
    except ValueError:
        doc = None
    _require(isinstance(doc, dict), where, "not a JSON object")
    sha, services, images, entries = (
        doc.get("content_sha256"),
        doc.get("services"),
        doc.get("images", {}),
        doc.get("files", []),
    )
    _require(isinstance(sha, str) and bool(SHA256_RE.fullmatch(sha)), where, "content_sha256 is not a SHA-256")
    _require(
        isinstance(services, list)
        and bool(services)
        and all(isinstance(x, str) and SERVICE_RE.fullmatch(x) for x in services),
        where,
        "services is not a list of service names",
    )
    _require(
        isinstance(images, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in images.items()),
        where,
        "images is not a mapping of names to image references",
    )
    _require(isinstance(entries, list) and all(isinstance(f, dict) for f in entries), where, "files is not a list")
    parsed = []
    for f in entries:
        _require(
            safe_relative_path(f.get("path")), where, f"file path {str(f.get('path'))[:80]!r} is not a release path"
        )
        _require(
            isinstance(f.get("sha256"), str) and bool(SHA256_RE.fullmatch(f["sha256"])),
            where,
            f"{f['path']}: bad sha256",
        )
        parsed.append(FileEntry(f["path"], f["sha256"], str(f.get("mode", "")), f.get("secret") is True))
    return ReleaseManifest(
        sha, tuple(services), dict(images), tuple(parsed), str(doc.get("env", "")), str(doc.get("project", ""))
    )


def parse_inventory(text: str) -> tuple[list[str], set[str]]:
    """(release ids oldest first, the ids marked failed) from scripts/inventory.sh; names
    that are not release ids are ignored (the directory also holds staging dirs)."""
    names, _, markers = text.partition("---\n")
    failed = {line.rstrip("/").split("/")[-2] for line in markers.split() if line.count("/") >= 1}
    return sorted(n for n in names.split() if is_release_id(n)), {f for f in failed if is_release_id(f)}


def parse_current(link: str) -> str | None:
    """The release id `current` points at, or None. The tool writes exactly `releases/<id>`;
    anything else is refused."""
    target = link.strip()
    if not target:
        return None
    release_id = target.removeprefix("releases/")
    _require(
        target.startswith("releases/") and is_release_id(release_id),
        "the current link",
        f"points at {target[:120]!r}, not at releases/<id>",
    )
    return release_id


# ------------------------------------------------------------------------ reading them
def inventory(ex: Executor, lay: Layout, audit_line: str = "") -> tuple[list[str], set[str]]:
    """One round trip (which first appends `audit_line` to the audit log, when given; a
    failure to record it is an error: an audit line must not be lost silently)."""
    out = ex.run(
        cmd.inventory(lay.releases, FAILED_MARKER, audit_line, lay.audit if audit_line else ""), check=bool(audit_line)
    )
    return parse_inventory(out.stdout)


def manifest(ex: Executor, lay: Layout, release_id: str | None = None) -> ReleaseManifest | None:
    """The release.json of a release (default: current); None when it cannot be read."""
    path = f"{lay.current if release_id is None else lay.release(release_id)}/{MANIFEST}"
    out = ex.run(files.cat(path), check=False)
    return parse_manifest(out.stdout, f"{path} on {ex.where}") if out.ok else None


def current(ex: Executor, lay: Layout) -> tuple[str | None, ReleaseManifest | None]:
    link = ex.run(files.read_link(lay.current), check=False)
    release_id = parse_current(link.stdout) if link.ok else None
    return (release_id, manifest(ex, lay)) if release_id else (None, None)
