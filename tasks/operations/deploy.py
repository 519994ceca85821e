"""One deploy = one locked transaction on the target.

    compare  (one round trip: unchanged and healthy -> record "unchanged", stop)
    prepare  (render if needed; check the target on a first deploy)
    lock     (and look again under it, same round trip)
    upload   (one archive; `compose config -q` on the host; pull missing images)
    switch and gate  (switch `current`, `up -d --wait`, Compose health + protocol probes)
    record   (audit line + prune, one round trip)

Before the switch nothing the running release uses is touched: a failure there is
`DeployFailed`. After it, any failure (a command, the health gate, a dropped connection,
Ctrl-C) switches back and brings the previous release up again (`RolledBack`); a dropped
connection is reopened once for that.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import paramiko

from tasks.commands import docker
from tasks.config.settings import Settings
from tasks.errors import CommandFailed, DeployFailed, PrerequisiteError, RollbackFailed, RolledBack, ToolError
from tasks.facts import images, services
from tasks.facts import snapshot as snapshots
from tasks.facts.snapshot import Snapshot
from tasks.facts.target import TargetFacts
from tasks.operations import gate
from tasks.operations import lock as lock_mod
from tasks.operations import releases as store
from tasks.release.layout import MANIFEST, Layout, new_release_id
from tasks.release.render import Release
from tasks.runner.executor import Executor

Step = Callable[[str], object]  # a context-manager factory printing a step line
CONNECTION_ERRORS = (paramiko.SSHException, EOFError, OSError, socket.timeout)


@dataclass
class Outcome:
    status: str  # deployed | unchanged | rolled_back
    release: str
    previous: str | None
    content_sha256: str
    duration: float = 0.0
    recreated: list[str] = field(default_factory=list)
    steps: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"ok": self.status in ("deployed", "unchanged"), **self.__dict__}


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
        return sorted(set(json.loads(self.release().file(MANIFEST).content)["images"].values()))


def deploy(
    ex: Executor,
    s: Settings,
    candidate: Candidate,
    opts: DeployOptions,
    step: Step,
    reconnect: Callable[[], Executor] | None = None,
) -> Outcome:
    return Transaction(ex, s, candidate, opts, step, reconnect).run()


class Transaction:
    def __init__(self, ex, s, candidate, opts, step, reconnect):
        self.ex, self.s, self.candidate, self.opts, self.step, self.reconnect = ex, s, candidate, opts, step, reconnect
        self.lay = Layout(s.deploy_root)
        self.started = time.monotonic()

    def run(self) -> Outcome:
        with self.step("compare with the running release"):
            snap = self.look(unchanged_line=True)
        if self.unchanged(snap):
            return self.record_unchanged(snap)
        self.prepare(snap)
        lock = lock_mod.HostLock(
            self.ex,
            self.lay,
            env=self.s.env,
            command=self.opts.command,
            force_unlock=self.opts.force_unlock,
            then=snapshots.command(self.lay.root, self.s.compose_project),
        )
        with lock as held:
            snap = snapshots.parse(held.then_output)  # again, under the lock (same round trip)
            if self.unchanged(snap):
                return self.record_unchanged(snap)
            release_id = new_release_id(self.candidate.content_sha256)
            run_probes = self.upload(release_id, snap.current)
            after = self.switch_and_gate(release_id, snap.current, run_probes)
            return self.record(release_id, snap, after)

    # ------------------------------------------------------------------ the steps
    def look(self, *, unchanged_line: bool) -> Snapshot:
        """Lock, current release and containers in one round trip; the host records the
        "unchanged" audit line itself when the running release is this one and healthy."""
        line = store.audit_line(self.audit_record("unchanged")) if unchanged_line else ""
        c = self.candidate
        return snapshots.read(self.ex, self.lay, self.s.compose_project, c.content_sha256, line, c.services)

    def unchanged(self, snap: Snapshot) -> bool:
        same = snap.manifest is not None and snap.manifest.content_sha256 == self.candidate.content_sha256
        return not snap.locked and same and not services.unhealthy(snap.states, self.candidate.services)

    def record_unchanged(self, snap: Snapshot) -> Outcome:
        if not snap.recorded:
            store.audit(self.ex, self.lay, {**self.audit_record("unchanged"), "release": snap.current})
        elapsed = time.monotonic() - self.started
        return Outcome("unchanged", snap.current, snap.current, self.candidate.content_sha256, elapsed)

    def prepare(self, snap: Snapshot) -> None:
        if not self.candidate.rendered:
            with self.step("render release"):
                self.candidate.release()
        # A target already running a release, whose engine just answered, needs no separate
        # preflight: the host-side `compose config` below proves Compose v2 again.
        if self.opts.preflight is not None and not (snap.current and snap.docker_ok):
            with self.step("check the target"):
                self.opts.preflight(self.ex)

    def upload(self, release_id: str, previous: str | None) -> gate.ProbeRunner | None:
        """Everything before the switch; a failure removes the upload and leaves the running
        release untouched (DeployFailed). Returns the gate's prepared protocol probes."""
        ex, lay, release = self.ex, self.lay, self.candidate.release()
        try:
            with self.step(f"upload release {release_id} and prepare storage"):
                store.upload(ex, self.s, lay, release, release_id)
            with self.step("validate on the host (compose config) and check images"):
                with ThreadPoolExecutor(max_workers=3) as pool:  # channels of one connection
                    config = pool.submit(
                        ex.run, store.compose_for(self.s, lay.release(release_id), "config", "--quiet")
                    )
                    missing = pool.submit(images.missing, ex, self.candidate.images) if self.opts.pull else None
                    # the gate's probes are prepared meanwhile (imports, addresses): a problem
                    # with them stops the deploy here, before the switch
                    probes = pool.submit(self.opts.probes, ex) if self.opts.probes is not None else None
                    config.result()
                    to_pull = missing.result() if missing else []
                    run_probes = probes.result() if probes else None
            for image in to_pull:
                with self.step(f"pull {image}"):
                    ex.run(docker.image_pull(image), timeout=self.opts.wait_timeout)
        except ToolError as exc:
            ex.run(["rm", "-rf", "--", lay.release(release_id)], check=False)
            if not isinstance(exc, CommandFailed):
                raise
            reason = exc.message.splitlines()[0]
            store.audit(ex, lay, {**self.audit_record("failed", release_id, previous), "error": reason})
            raise DeployFailed(
                f"deploy of {release_id} failed before the switch: {exc.message}",
                hint="the running release was not touched",
            ) from None
        return run_probes

    def switch_and_gate(self, release_id: str, previous: str | None, run_probes) -> dict:
        try:
            with self.step(f"switch current to {release_id} and start"):
                store.bring_up(
                    self.ex, self.s, self.lay, self.opts.wait_timeout, pull=self.opts.pull, switch_to=release_id
                )
            with self.step("health gate"), ThreadPoolExecutor(max_workers=1) as pool:
                states = pool.submit(gate.compose_health, self.ex, self.s, self.candidate.services)  # meanwhile
                if self.opts.certificates is not None:
                    self.opts.certificates(self.ex)
                if run_probes is not None:
                    gate.probe_gate(
                        run_probes,
                        rounds=self.opts.gate_rounds,
                        pause=self.opts.gate_pause,
                        give_up=lambda: states.done() and states.exception() is not None,
                    )
                return states.result()
        except (CommandFailed, gate.HealthGateFailed, KeyboardInterrupt, *CONNECTION_ERRORS) as exc:
            reason = exc.message.splitlines()[0] if isinstance(exc, ToolError) else f"{type(exc).__name__}: {exc}"
            lost = isinstance(exc, CONNECTION_ERRORS) or not self.ex.connected
            if self.reconnect is not None and lost:
                self.ex = self.reconnect()  # explicitly: host key check, keepalive, back-off (the 2nd connection)
            self.roll_back(previous, release_id, reason, after_lost_connection=lost)
            if isinstance(exc, KeyboardInterrupt):
                raise
            raise RolledBack(
                f"release {release_id} failed ({reason}); rolled back to {previous or 'nothing (first deploy)'}",
                hint=f"the failed release stays in {self.lay.release(release_id)} for inspection; "
                "`app.logs` shows why it failed",
            ) from None

    def roll_back(self, previous: str | None, failed_id: str, reason: str, *, after_lost_connection=False) -> None:
        ex, lay = self.ex, self.lay
        store.mark_failed(ex, lay, failed_id, reason)
        record = {**self.audit_record("rolled_back", failed_id, previous), "error": reason}
        try:
            with self.step(f"roll back to {previous or 'nothing'}"):
                if after_lost_connection:  # the `up` the lost connection started still runs on the host
                    limit = self.opts.wait_timeout + 60
                    ex.run(docker.wait_compose_idle(self.s.compose_project, limit), timeout=limit + 30)
                store.switch(ex, lay, previous)
                if previous:
                    store.bring_up(ex, self.s, lay, self.opts.wait_timeout, pull=False)
                else:  # first deploy: stop what was started, keep every volume and file
                    ex.run(store.compose_for(self.s, lay.release(failed_id), "down", "--remove-orphans"), check=False)
        except (CommandFailed, *CONNECTION_ERRORS) as exc:
            detail = exc.message if isinstance(exc, ToolError) else str(exc)
            try:
                store.audit(ex, lay, {**record, "result": "rollback_failed"})
            finally:
                raise RollbackFailed(
                    f"release {failed_id} failed ({reason}) and bringing back {previous} failed too: {detail}",
                    hint=f"inspect with app.status; `app.rollback --to {previous}` retries" if previous else None,
                ) from None
        store.audit(ex, lay, record)

    def record(self, release_id: str, before: Snapshot, after: dict) -> Outcome:
        names = self.candidate.services
        recreated = sorted(n for n in names if _id(before.states, n) != _id(after, n))
        elapsed = time.monotonic() - self.started
        with self.step("record and prune"):
            record = {
                **self.audit_record("deployed", release_id, before.current),
                "recreated": recreated,
                "duration": round(elapsed, 2),
            }
            protect = {release_id, before.current} - {None}
            store.prune(self.ex, self.lay, self.s.releases_keep, protect, audit_record=record)
        return Outcome("deployed", release_id, before.current, self.candidate.content_sha256, elapsed, recreated)

    def audit_record(self, result: str, release: str | None = None, previous: str | None = None) -> dict:
        """The one shape of a deploy's audit line (no secrets: hashes and ids only)."""
        record = {
            "event": "deploy",
            "env": self.s.env,
            "result": result,
            "content_sha256": self.candidate.content_sha256,
        }
        if release is not None:
            record.update(release=release, previous=previous)
        return record


def _id(states: dict, name: str) -> str:
    st = states.get(name)
    return st.id if st else ""


def check_target(facts: TargetFacts) -> None:
    if facts.problems:
        raise PrerequisiteError("the target is not ready: " + "; ".join(facts.problems))
