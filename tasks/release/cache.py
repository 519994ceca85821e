"""Remember which release a set of inputs renders to, so a no-op deploy can skip rendering.

Rendering is a pure function of the settings (environment name, checkout, every
variable's value) and the sources: `application/`, the code that renders, and the pinned
dependencies. `fingerprint()` hashes exactly those; after each full render, `store()`
records fingerprint -> (content hash, services). `lookup()` hands that back, so the
deploy can ask the host "is this release running and healthy?" without importing Jinja2
or rendering (docs/adr/0006). Any change to any input is a different fingerprint, i.e. a
miss and a full render; a wrong or unreadable entry is a miss too.

The cache lives beside the template bytecode cache (~/.cache/torrust-deploy, 0700). An
entry holds only hashes and service names; the fingerprint is a SHA-256 over inputs that
include secrets, never the secrets themselves.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

from tasks.config.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
SOURCES = (ROOT / "application", ROOT / "tasks" / "release", ROOT / "tasks" / "config")
PINS = ROOT / "requirements.txt"
FORMAT = b"torrust-deploy release cache 1\n"
KEEP = 256  # entries; the oldest beyond that are removed when one is stored


def user_cache(name: str) -> Path:
    """`name` under the user's cache directory for this tool (XDG_CACHE_HOME respected)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "torrust-deploy" / name


def cache_dir() -> Path:
    return user_cache("releases")


def _source_files() -> list[Path]:
    files = [PINS]
    for top in SOURCES:
        files += [p for p in top.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    return sorted(files)


def fingerprint(s: Settings) -> str:
    h = hashlib.sha256(FORMAT)
    h.update(f"env\0{s.env}\0root\0{s.root}\n".encode())
    for name, value in sorted(s.raw.items()):
        h.update(f"{name}\0{value}\n".encode())
    for path in _source_files():
        h.update(f"{path.relative_to(ROOT)}\0".encode())
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


def lookup(s: Settings) -> tuple[str, list[str]] | None:
    """(content hash, services) of the release these settings render to, if known."""
    try:
        entry = json.loads((cache_dir() / fingerprint(s)).read_text())
        sha, services = entry["content_sha256"], entry["services"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not (isinstance(sha, str) and len(sha) == 64 and isinstance(services, list) and services):
        return None
    return sha, [str(x) for x in services]


def store(s: Settings, content_sha256: str, services: list[str]) -> None:
    """Record a full render's result; a cache that cannot be written is skipped."""
    path = cache_dir()
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        # a name of its own per call: a fleet rollout stores from several threads at once
        fd, tmp = tempfile.mkstemp(dir=path, prefix=".", suffix=".tmp")  # mode 0600
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump({"content_sha256": content_sha256, "services": services}, fh)
            os.replace(tmp, path / fingerprint(s))
        finally:
            Path(tmp).unlink(missing_ok=True)  # gone already when the replace succeeded
        entries = sorted((p for p in path.iterdir() if not p.name.startswith(".")), key=lambda p: p.stat().st_mtime)
        for old in entries[:-KEEP]:
            old.unlink(missing_ok=True)
    except OSError:
        pass
