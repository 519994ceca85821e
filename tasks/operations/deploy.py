"""One deploy = one locked transaction on the target.

    compare  (one round trip: unchanged and healthy -> record "unchanged", stop)
    prepare  (render if needed; check the target on a first deploy)
    lock     (and look again under it, same round trip)
    (removals)  (refused before anything is touched unless allowed: operations/removals.py)
    upload   (one archive; `compose config -q` on the host; pull missing images; resolve
              every image's digest on the host; a backup first when the tracker's or the
              database's image changes: operations/upgrade.py)
    switch and gate  (write images.json, switch `current`, `up -d --wait`, Compose health
              + protocol probes)
    baseline (backups on and none on the host yet: the first backup, after the gate)
    record   (audit line + prune, one round trip)

The modules only a changing deploy needs (removals, upgrade, the release record) are
imported in the steps that use them: a no-op deploy skips about 35 ms of imports
(measured with `python -X importtime`; docs/benchmarks.md).

Before the switch nothing the running release uses is touched: a failure there is
`DeployFailed`. After it, any failure (a command, the health gate, a dropped connection,
Ctrl-C) switches back and brings the previous release up again (`RolledBack`); a dropped
connection is reopened once for that.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

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
from tasks.operations.candidate import IMAGE_SERVICE, Candidate, DeployOptions, Outcome
from tasks.release.layout import Layout, new_release_id
from tasks.runner.executor import Executor
from tasks.runner.ssh import CONNECTION_ERRORS

Step = Callable[[str], object]  # a context-manager factory printing a step line


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
        self.removed: list[str] = []
        self.allowed_by = ""
        self.restore_tags: list[tuple[str, str]] = []  # what a rollback re-tags (moved tags)

    def run(self) -> Outcome:
        if self.opts.lock is not None:  # the caller holds the lock: one look under it
            return self.locked_part(self.opts.lock, self.look(unchanged_line=False))
        with self.step("compare with the running release"):
            snap = self.look(unchanged_line=True)
        if self.unchanged(snap):
            return self.record_unchanged(snap)
        self.prepare(snap)
        self.check_removals(snap)
        lock = lock_mod.HostLock(
            self.ex,
            self.lay,
            env=self.s.env,
            command=self.opts.command,
            force_unlock=self.opts.force_unlock,
            then=snapshots.command(self.lay.root, self.s.compose_project, backup_dir=self.s.backup_dir),
        )
        with lock as held:
            return self.locked_part(held, snapshots.parse(held.then_output))  # looked again under the lock

    def locked_part(self, held: lock_mod.HostLock, snap: Snapshot) -> Outcome:
        from tasks.facts import record  # the changing path only (module docstring)

        if self.unchanged(snap):
            return self.record_unchanged(snap, held)
        self.prepare(snap)
        self.check_removals(snap)
        release_id = new_release_id(self.candidate.content_sha256)
        run_probes, resolved = self.upload(release_id, snap.current, snap)
        new = {svc: resolved[ref] for svc, ref in self.candidate.service_images.items() if ref in resolved}
        changes, backup = self.before_switch(release_id, snap, resolved, held)
        after = self.switch_and_gate(release_id, snap.current, run_probes, record.text(new, backup))
        sha = self.candidate.content_sha256
        outcome = Outcome("deployed", release_id, snap.current, sha, first_deploy=not snap.current)
        outcome.images = {k: v.as_dict() for k, v in sorted(new.items())}
        outcome.image_changes = [c.as_dict() for c in changes]
        outcome.pre_upgrade_backup = backup.id if backup else None
        outcome.removed, outcome.removal_allowed_by = self.removed, self.allowed_by
        if self.needs_baseline(snap):
            outcome.baseline_backup, outcome.baseline_error = self.baseline(snap, held.token)
        return self.record(outcome, snap, after)

    # ------------------------------------------------------------------ the steps
    def look(self, *, unchanged_line: bool) -> Snapshot:
        """Lock, current release and containers in one round trip; the host records the
        "unchanged" audit line itself when the running release is this one and healthy."""
        line = store.audit_line(self.audit_record("unchanged")) if unchanged_line else ""
        c, s = self.candidate, self.s
        want = c.content_sha256 if unchanged_line else ""
        return snapshots.read(self.ex, self.lay, s.compose_project, want, line, c.services, s.backup_dir)

    def unchanged(self, snap: Snapshot) -> bool:
        """The running release is this one, healthy, on the images its references name
        (a moved tag, e.g. `develop` after a pull, is an image change)."""
        same = snap.manifest is not None and snap.manifest.content_sha256 == self.candidate.content_sha256
        names = self.candidate.services
        healthy = not services.unhealthy(snap.states, names) and not services.moved(snap.states, names)
        return (self.opts.lock is not None or not snap.locked) and same and healthy

    def record_unchanged(self, snap: Snapshot, held: lock_mod.HostLock | None = None) -> Outcome:
        if not snap.recorded:
            store.audit(self.ex, self.lay, {**self.audit_record("unchanged"), "release": snap.current})
        elapsed = time.monotonic() - self.started
        outcome = Outcome("unchanged", snap.current, snap.current, self.candidate.content_sha256, elapsed)
        if self.needs_baseline(snap):  # a baseline that failed before is tried again
            if held is not None:
                outcome.baseline_backup, outcome.baseline_error = self.baseline(snap, held.token)
            else:
                with lock_mod.HostLock(self.ex, self.lay, env=self.s.env, command=self.opts.command) as lock:
                    outcome.baseline_backup, outcome.baseline_error = self.baseline(snap, lock.token)
        return outcome

    def check_removals(self, snap: Snapshot) -> None:
        """What the running release has and this one would remove: refused unless allowed."""
        from tasks.operations import removals  # the changing path only (module docstring)

        release = self.candidate.release()
        found = removals.removals(
            snap,
            self.candidate.services,
            self.s.backup,
            removals.compose_ports(release.file("compose.yaml").content),
        )
        self.removed, self.allowed_by = removals.check(
            found, allow_flag=self.opts.allow_removal, setting=self.s.allow_removal, env=self.s.env
        )

    def prepare(self, snap: Snapshot) -> None:
        if not self.candidate.rendered:
            with self.step("render release"):
                self.candidate.release()
        # A target already running a release, whose engine just answered, needs no separate
        # preflight: the host-side `compose config` below proves Compose v2 again.
        if self.opts.preflight is not None and not (snap.current and snap.docker_ok):
            with self.step("check the target"):
                self.opts.preflight(self.ex)

    def upload(self, release_id: str, previous: str | None, snap: Snapshot):
        """Everything before the switch; a failure removes the upload and leaves the running
        release untouched (DeployFailed). Returns the gate's prepared protocol probes and
        what every image reference (the release's and the running containers') resolves
        to on the host after the pull."""
        from tasks.operations import upgrade  # the changing path only (module docstring)

        ex, lay, release = self.ex, self.lay, self.candidate.release()
        refs = sorted(set(self.candidate.images) | set(upgrade.running_refs(snap.states)))
        try:
            with self.step(f"upload release {release_id} and prepare storage"):
                store.upload(ex, self.s, lay, release, release_id)
            with self.step("validate on the host (compose config) and check images"):
                with ThreadPoolExecutor(max_workers=3) as pool:  # channels of one connection
                    config = pool.submit(
                        ex.run, store.compose_for(self.s, lay.release(release_id), "config", "--quiet")
                    )
                    looked = pool.submit(images.resolve, ex, refs)
                    # the gate's probes are prepared meanwhile (imports, addresses): a problem
                    # with them stops the deploy here, before the switch
                    probes = pool.submit(self.opts.probes, ex) if self.opts.probes is not None else None
                    config.result()
                    resolved, absent = looked.result()
                    to_pull = [r for r in absent if r in self.candidate.images] if self.opts.pull else []
                    run_probes = probes.result() if probes else None
            for image in to_pull:
                with self.step(f"pull {image}"):
                    pull(ex, image, self.opts.wait_timeout)
            if to_pull:
                resolved.update(images.resolve(ex, to_pull)[0])
        except ToolError as exc:
            ex.run(["rm", "-rf", "--", lay.release(release_id)], check=False)
            if not isinstance(exc, CommandFailed):
                raise
            reason = _reason(exc)
            store.audit(ex, lay, {**self.audit_record("failed", release_id, previous), "error": reason})
            raise DeployFailed(
                f"deploy of {release_id} failed before the switch: {exc.message}",
                hint="the running release was not touched" + (f"; {exc.hint}" if isinstance(exc, PullFailed) else ""),
            ) from None
        return run_probes, resolved

    def before_switch(self, release_id: str, snap: Snapshot, resolved: dict, held: lock_mod.HostLock):
        """The image changes, and the pre-upgrade backup when the tracker's or the
        database's image changes (unless told not to); a failed backup stops the deploy
        before the switch (DeployFailed, the running release untouched)."""
        from tasks.facts.record import PreUpgradeBackup  # the changing path only (module docstring)
        from tasks.operations import upgrade

        changes = upgrade.image_changes(snap.states, self.candidate.service_images, resolved)
        if snap.manifest is not None:
            running = {IMAGE_SERVICE.get(k, k): v for k, v in snap.manifest.images.items()}
            self.restore_tags = upgrade.tags_to_restore(running, snap.states, resolved)
        data = upgrade.data_changes(changes)
        if not (data and snap.current and self.opts.upgrade_backup):
            return changes, None
        try:
            with self.step(f"back up the data before the upgrade ({', '.join(data)} image changes)"):
                taken = upgrade.backup_on_host(self.ex, self.s, held.token, "before-upgrade")
        except ToolError as exc:
            self.ex.run(["rm", "-rf", "--", self.lay.release(release_id)], check=False)
            reason = exc.message.splitlines()[0]
            store.audit(
                self.ex,
                self.lay,
                {**self.audit_record("failed", release_id, snap.current), "error": f"pre-upgrade backup: {reason}"},
            )
            raise DeployFailed(
                f"the backup before the upgrade of {', '.join(data)} failed, so nothing was deployed: {reason}",
                hint="the running release was not touched; fix the backup (`app.backup` shows the same error) "
                "or deploy with --no-upgrade-backup if you have another copy of the data",
            ) from None
        return changes, PreUpgradeBackup(taken["id"], snap.current, tuple(data))

    def needs_baseline(self, snap: Snapshot) -> bool:
        """Backups on and none on the host yet (issue #18)."""
        return self.s.backup and not snap.backups

    def baseline(self, snap: Snapshot, token: str) -> tuple[str | None, str | None]:
        """The first backup of the environment, after the gate passed: (its id, None), or
        (None, the error) when it failed; a failure never rolls the healthy release back."""
        from tasks.operations import upgrade  # the changing path only (module docstring)

        try:
            with self.step("baseline backup (backups are on and the host has none yet)"):
                return upgrade.backup_on_host(self.ex, self.s, token, "baseline")["id"], None
        except ToolError as exc:
            return None, exc.message.splitlines()[0]

    def switch_and_gate(self, release_id: str, previous: str | None, run_probes, record_text: str) -> dict:
        try:
            with self.step(f"switch current to {release_id} and start"):
                store.bring_up(
                    self.ex,
                    self.s,
                    self.lay,
                    self.opts.wait_timeout,
                    pull=self.opts.pull,
                    switch_to=release_id,
                    record=record_text,
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
            reason = _reason(exc)
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
                if self.opts.on_rollback is not None:
                    self.opts.on_rollback(ex)
                if previous:
                    store.retag(ex, self.restore_tags)
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

    def record(self, outcome: Outcome, before: Snapshot, after: dict) -> Outcome:
        names, release_id = self.candidate.services, outcome.release
        outcome.recreated = sorted(n for n in names if _id(before.states, n) != _id(after, n))
        outcome.duration = time.monotonic() - self.started
        with self.step("record and prune"):
            line = {
                **self.audit_record("deployed", release_id, before.current),
                "recreated": outcome.recreated,
                "duration": round(outcome.duration, 2),
                "images": {k: v["digest"] for k, v in outcome.images.items()},
            }
            optional = {
                "image_changes": [c["service"] for c in outcome.image_changes],
                "pre_upgrade_backup": outcome.pre_upgrade_backup,
                "baseline_backup": outcome.baseline_backup,
                "baseline_error": outcome.baseline_error,
                "removed": outcome.removed,
                "removal_allowed_by": outcome.removal_allowed_by,
            }
            line.update({k: v for k, v in optional.items() if v})
            protect = {release_id, before.current} - {None}
            store.prune(self.ex, self.lay, self.s.releases_keep, protect, audit_record=line)
        return outcome

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


NO_REGISTRY_HINT = (
    "no container registry could be reached from the target to pull {image}. On a machine without "
    "registry access, build the test images from Debian packages and select them: "
    "`./tasks.py test.images && cp tests/images/images.env .env.local` (tests/images/images.env names them; "
    "the tracker and Grafana images there are test stand-ins, never for production)"
)


class PullFailed(CommandFailed):
    """`docker pull` failed; its hint says what to do when no registry is reachable."""


def pull(ex: Executor, image: str, timeout: int) -> None:
    """Pull one image on the target; a registry nobody can reach is named as such, with
    the way to deploy without one (the test images), instead of Docker's bare DNS error."""
    try:
        ex.run(docker.image_pull(image), timeout=timeout)
    except CommandFailed as exc:
        unreachable = images.registry_unreachable(f"{exc.message}\n{exc.output}")
        raise PullFailed(
            exc.message,
            exit_status=exc.exit_status,
            output=exc.output,
            hint=NO_REGISTRY_HINT.format(image=image) if unreachable else "check the image reference and the registry",
        ) from None


def _reason(exc: BaseException) -> str:
    """One line saying why a step failed (a command's last output line included)."""
    if isinstance(exc, CommandFailed):
        return exc.brief()
    if isinstance(exc, ToolError):
        return exc.message.splitlines()[0]
    return f"{type(exc).__name__}: {exc}"


def _id(states: dict, name: str) -> str:
    st = states.get(name)
    return st.id if st else ""


def check_target(facts: TargetFacts) -> None:
    if facts.problems:
        raise PrerequisiteError("the target is not ready: " + "; ".join(facts.problems))
