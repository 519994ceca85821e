"""Where things live on the deploy target (pure).

<root>/releases/<id>/   one rendered release; <id> = UTC time + content hash prefix
<root>/current          symlink to the running release, switched atomically
<root>/storage/         persistent data; no release switch touches it
<root>/deploy.lock/     held while a deploy, rollback or backup runs (info.json inside)
<root>/audit.log        one JSON line per deploy, rollback, failure (no secrets)

Pure: the paths as the target sees them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

RELEASE_ID_RE = re.compile(r"^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}$")
MANIFEST = "release.json"  # in each release directory: what it holds (tasks/release/render.py)
RECORD = "images.json"  # in each release: the image digests it runs and its pre-upgrade backup (after pull)
FAILED_MARKER = "FAILED"  # in a release that failed its gate: kept for inspection, never rolled back to


@dataclass(frozen=True)
class Layout:
    root: str

    @property
    def releases(self) -> str:
        return f"{self.root}/releases"

    @property
    def current(self) -> str:
        return f"{self.root}/current"

    @property
    def storage(self) -> str:
        return f"{self.root}/storage"

    @property
    def lock(self) -> str:
        return f"{self.root}/deploy.lock"

    @property
    def audit(self) -> str:
        return f"{self.root}/audit.log"

    def release(self, release_id: str) -> str:
        return f"{self.releases}/{release_id}"

    def upload_dir(self, release_id: str) -> str:
        return f"{self.releases}/.upload-{release_id}"


def new_release_id(content_sha256: str, now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    return f"{now:%Y%m%dT%H%M%SZ}-{content_sha256[:8]}"


def is_release_id(name: str) -> bool:
    return bool(RELEASE_ID_RE.fullmatch(name))
