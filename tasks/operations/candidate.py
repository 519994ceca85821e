"""What a deploy takes and gives: the release `Candidate` (rendered only when its files are
needed), the `DeployOptions` the tasks set, and the `Outcome` the transaction
(tasks/operations/deploy.py) returns and `--json` prints.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

from tasks.operations import gate
from tasks.operations import lock as lock_mod
from tasks.release.layout import MANIFEST
from tasks.release.render import Release
from tasks.runner.executor import Executor

IMAGE_SERVICE = {"caddy": "proxy"}  # release.json names images by setting; the proxy runs caddy


@dataclass
class Outcome:
    status: str  # deployed | unchanged | rolled_back
    release: str
    previous: str | None
    content_sha256: str
    duration: float = 0.0
    recreated: list[str] = field(default_factory=list)
    steps: list[dict] = field(default_factory=list)
    images: dict[str, dict] = field(default_factory=dict)  # service -> ref, id, digest (resolved on the host)
    image_changes: list[dict] = field(default_factory=list)
    pre_upgrade_backup: str | None = None
    baseline_backup: str | None = None
    baseline_error: str | None = None  # the baseline backup failed: the environment has no backup yet
    removed: list[str] = field(default_factory=list)
    removal_allowed_by: str = ""
    first_deploy: bool = False

    def as_dict(self) -> dict:
        ok = self.status in ("deployed", "unchanged") and self.baseline_error is None
        return {"ok": ok, **self.__dict__}


@dataclass
class DeployOptions:
    pull: bool = True
    force_unlock: bool = False
    wait_timeout: int = 300
    command: str = "app.deploy"
    probes: Callable[[Executor], gate.ProbeRunner] | None = None  # builds the gate's protocol probes
    preflight: Callable[[Executor], None] | None = None  # target checks before the first change
    # waits for the proxy's certificates before the protocol probes (operations/issuance.py)
    certificates: Callable[[Executor], str] | None = None
    gate_rounds: int = 5  # protocol probe rounds after Compose health ...
    gate_pause: float = 2.0  # ... and the pause between them
    allow_removal: bool = False  # --allow-removal: a service, cron job, port or driver may go
    upgrade_backup: bool = True  # a backup before the tracker's or the database's image changes
    lock: lock_mod.HostLock | None = None  # a lock the caller already holds (app.rotate-secrets)
    on_rollback: Callable[[Executor], None] | None = None  # runs after switching back, before `up`


class Candidate:
    """The release to deploy. Its content hash and services may be known before it is
    rendered (tasks/release/cache.py), so a no-op deploy never renders; `release()`
    renders once, when the files are needed."""

    def __init__(self, content_sha256: str, services: list[str], render: Callable[[], Release]):
        self.content_sha256, self.services, self._render = content_sha256, services, render
        self._release: Release | None = None

    @classmethod
    def of(cls, release: Release) -> Candidate:
        c = cls(release.content_sha256, json.loads(release.file(MANIFEST).content)["services"], lambda: release)
        c._release = release
        return c

    @property
    def rendered(self) -> bool:
        return self._release is not None

    def release(self) -> Release:
        if self._release is None:
            self._release = self._render()
            self.content_sha256 = self._release.content_sha256
            self.services = json.loads(self._release.file(MANIFEST).content)["services"]
        return self._release

    @property
    def images(self) -> list[str]:
        return sorted(set(self.service_images.values()))

    @property
    def service_images(self) -> dict[str, str]:
        """service -> image reference, for the services of this release."""
        named = json.loads(self.release().file(MANIFEST).content)["images"]
        pairs = {IMAGE_SERVICE.get(k, k): v for k, v in named.items()}
        return {k: v for k, v in pairs.items() if k in self.services}
