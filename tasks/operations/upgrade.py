"""Upgrades that know about the data (issues #15 and #18): image digests, the backup taken
before an image change of the tracker or the database, the baseline backup of a new
environment, and a rollback that restores the data of before an upgrade.

- `image_changes`: which services would run another image than they run now (a new tag,
  or the same tag now pointing elsewhere), from the snapshot's `docker ps` view and the
  references resolved on the host after the pull.
- `backup_on_host`: the host backup script (the same one cron runs), under the lock the
  caller holds, with a reason recorded in the backup's manifest.
- `rollback_with_data`: app.rollback --with-data (ADR 0012).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from tasks.config.settings import Settings
from tasks.errors import ConfigError, RollbackFailed, ToolError
from tasks.facts import images, record
from tasks.facts import releases as release_facts
from tasks.facts.images import ImageFact
from tasks.facts.record import ReleaseRecord
from tasks.facts.services import ServiceState
from tasks.operations import backup as backup_ops
from tasks.operations import day2, gate
from tasks.operations import lock as lock_mod
from tasks.operations import releases as store
from tasks.release.layout import Layout
from tasks.runner.executor import Executor
from tasks.runner.ssh import CONNECTION_ERRORS

DATA_SERVICES = ("tracker", "mysql")  # an image change of these may migrate the data


@dataclass(frozen=True)
class ImageChange:
    service: str
    ref: str
    running: str  # the image ID (or short ID) the container runs now
    new: ImageFact

    def as_dict(self) -> dict:
        return {"service": self.service, "ref": self.ref, "running": self.running, "new": self.new.digest}


def running_refs(states: dict[str, ServiceState]) -> list[str]:
    """The references the running containers were created from (those still naming their
    image; a moved tag shows as an ID and needs no lookup)."""
    return sorted({st.image for st in states.values() if st.image and not images.moved(st.image)})


def running_image(state: ServiceState, resolved: dict[str, ImageFact]) -> str:
    """The image ID a container runs: `docker ps` shows it when its tag moved, otherwise
    its reference still resolves to it."""
    if images.moved(state.image):
        return state.image
    fact = resolved.get(state.image)
    return fact.id if fact else ""


def image_changes(
    states: dict[str, ServiceState], wanted: dict[str, str], resolved: dict[str, ImageFact]
) -> list[ImageChange]:
    """The services of `wanted` (service -> reference) that run now and would run another
    image: a different reference, or the same one now resolving elsewhere."""
    changes = []
    for service, ref in sorted(wanted.items()):
        state, new = states.get(service), resolved.get(ref)
        if state is None or new is None:
            continue
        running = running_image(state, resolved)
        if not images.same_image(running, new.id):
            changes.append(ImageChange(service, ref, running, new))
    return changes


def tags_to_restore(snap_images: dict[str, str], states: dict[str, ServiceState], resolved) -> list[tuple[str, str]]:
    """(running image, reference) of the running release's services whose reference now
    resolves to another image: what a rollback re-tags so the old images start again."""
    pairs = []
    for service, ref in sorted(snap_images.items()):
        state, now = states.get(service), resolved.get(ref)
        running = running_image(state, resolved) if state else ""
        if running and not images.is_digest_pinned(ref) and (now is None or not images.same_image(running, now.id)):
            pairs.append((running, ref))
    return pairs


def data_changes(changes: list[ImageChange]) -> list[str]:
    return [c.service for c in changes if c.service in DATA_SERVICES]


# ------------------------------------------------------------------------ backups
def backup_on_host(ex: Executor, s: Settings, token: str, reason: str) -> dict:
    """Run the host backup script of `current` under the held lock (`token`), with `reason`
    in the manifest and no retention run (a deploy never deletes backups). Raises the
    script's errors (BackupFailed, ...)."""
    return backup_ops.run_script(ex, s, "backup", "--lock-token", token, "--reason", reason, "--no-retention")


def required_images(s: Settings) -> list[str]:
    """Outside 'local', with TORRUST_REQUIRE_IMAGE_DIGESTS on, the image settings that are
    not pinned by digest (the settings rule reports them; listed here for the dry run)."""
    return [ref for ref in s.images.values() if not images.is_digest_pinned(ref)]


# ------------------------------------------------------------------------ rollback --with-data
def data_backup_for(records: dict[str, ReleaseRecord | None], to: str, current: str) -> tuple[str, str]:
    """(backup id, the release that recorded it): the pre-upgrade backup of the oldest
    release after `to`, up to `current`, that took one; ConfigError when none did."""
    for release_id in sorted(r for r in records if to < r <= current):
        rec = records[release_id]
        if rec is not None and rec.pre_upgrade_backup is not None:
            return rec.pre_upgrade_backup.id, release_id
    raise ConfigError(
        f"no release between {to} and {current} recorded a pre-upgrade backup: the data needs no rollback",
        hint="run app.rollback without --with-data (the images did not change the data), or restore a backup "
        "by hand with app.restore",
    )


def rollback_with_data(
    ex: Executor, s: Settings, to: str, current: str, services: list[str], *, wait_timeout: int, step, token: str
) -> dict:
    """Under the caller's lock: check the pre-upgrade backup, take a safety backup, stop the
    tracker, switch to `to`, start its database, restore the backup (tracker left stopped),
    bring `to` up and gate it. A failure after the tracker stopped puts everything back:
    `current` again, with the safety backup restored once the restore had begun."""
    lay = Layout(s.deploy_root)
    records = record.read_many(ex, lay, sorted({to, current} | set(_between(ex, lay, to, current))))
    backup_id, recorded_by = data_backup_for(records, to, current)
    with step(f"check backup {backup_id} (taken before {recorded_by} started)"):
        backup_ops.run_script(ex, s, "check", backup_id)
    with step("safety backup of the current data"):
        safety = backup_on_host(ex, s, token, "before-rollback")["id"]
    started = time.monotonic()
    restoring = False
    try:
        with step(f"stop the tracker, switch current to {to}, restore backup {backup_id}"):
            ex.run(store.compose_for(s, lay.current, "stop", "tracker"), timeout=wait_timeout)
            store.switch(ex, lay, to)
            store.retag(ex, record.tags_to_restore(ex, lay, to))  # its images, even under a moved tag
            if "mysql" in services:
                up = ("up", "-d", "--wait", "--wait-timeout", str(wait_timeout), "mysql")
                ex.run(store.compose_for(s, lay.current, *up), timeout=wait_timeout + 120)
            restoring = True
            _restore(ex, s, backup_id, token)
        with step(f"start {to}"):
            store.bring_up(ex, s, lay, wait_timeout, pull=False)
        with step("health gate"):
            gate.compose_health(ex, s, services)
    except (ToolError, *CONNECTION_ERRORS) as exc:
        reason = (exc.message if isinstance(exc, ToolError) else f"{type(exc).__name__}: {exc}").splitlines()[0]
        put_back(ex, s, current, safety if restoring else None, token, wait_timeout, reason, step)
        raise RollbackFailed(
            f"rolling back to {to} with the data of backup {backup_id} failed ({reason}); {current} runs again"
            + (f" on its own data (safety backup {safety} restored)" if restoring else ", its data untouched"),
            hint="`app.logs` shows why; the backups are kept (`app.backups`)",
        ) from None
    return {
        "ok": True,
        "status": "rolled_back",
        "release": to,
        "previous": current,
        "restored_backup": backup_id,
        "safety_backup": safety,
        "duration": round(time.monotonic() - started, 2),
    }


def _between(ex: Executor, lay: Layout, to: str, current: str) -> list[str]:
    all_releases, failed = release_facts.inventory(ex, lay)
    return [r for r in all_releases if to < r <= current and r not in failed]


def _restore(ex: Executor, s: Settings, backup_id: str, token: str) -> dict:
    return backup_ops.run_script(
        ex, s, "restore", backup_id, "--lock-token", token, "--no-safety-backup", "--leave-tracker-stopped"
    )


def put_back(ex, s, current: str, safety: str | None, token: str, wait_timeout: int, reason: str, step) -> None:
    """Bring `current` back after a failed rollback --with-data, with its data (the safety
    backup) when the restore had begun. RollbackFailed (naming the safety backup) if that
    fails too."""
    lay = Layout(s.deploy_root)
    try:
        with step(f"put {current} back"):
            ex.run(store.compose_for(s, lay.current, "stop", "tracker"), check=False, timeout=wait_timeout)
            store.switch(ex, lay, current)
            store.retag(ex, record.tags_to_restore(ex, lay, current))
            if safety is not None:
                _restore(ex, s, safety, token)
            store.bring_up(ex, s, lay, wait_timeout, pull=False)
    except (ToolError, *CONNECTION_ERRORS) as exc:
        detail = (exc.message if isinstance(exc, ToolError) else str(exc)).splitlines()[0]
        raise RollbackFailed(
            f"rolling back with data failed ({reason}) and putting {current} back failed too: {detail}",
            hint=f"`app.status`; the data of before is backup {safety} (`app.restore --id {safety}`)"
            if safety
            else "`app.status`; `app.rollback --to " + current + "` brings it up again",
        ) from None


def rollback(ex: Executor, s: Settings, to: str | None, *, wait_timeout: int, step, force_unlock: bool) -> dict:
    """app.rollback --with-data: the release switch and the data of before the upgrade,
    under the host lock, recorded in the audit log."""
    lay = Layout(s.deploy_root)
    with lock_mod.HostLock(ex, lay, env=s.env, command="app.rollback --with-data", force_unlock=force_unlock) as held:
        current, _ = day2.require_current(ex, lay)
        to = day2.rollback_target(ex, lay, current, to)
        if to == current:
            return {"ok": True, "status": "unchanged", "release": current}
        manifest = release_facts.manifest(ex, lay, to)
        if manifest is None:
            raise ConfigError(f"release {to} on {ex.where} has no readable {lay.release(to)}/release.json")
        line = {"event": "rollback", "env": s.env, "release": to, "previous": current, "with_data": True}
        try:
            result = rollback_with_data(
                ex, s, to, current, list(manifest.services), wait_timeout=wait_timeout, step=step, token=held.token
            )
        except ToolError as exc:
            store.audit(ex, lay, {**line, "result": "failed", "error": exc.message.splitlines()[0]})
            raise
        store.audit(
            ex,
            lay,
            {
                **line,
                "result": "rolled_back",
                "restored_backup": result["restored_backup"],
                "safety_backup": result["safety_backup"],
                "duration": result["duration"],
            },
        )
    return result
