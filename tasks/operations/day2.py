"""Operating a deployed release: status, releases, restart/stop/start, down, rollback.
Everything acts on `<root>/current`; the dry run of a deploy is in plan.py."""

from __future__ import annotations

import time

from tasks.commands import files
from tasks.config.settings import Settings
from tasks.errors import ConfigError, RollbackFailed, ToolError
from tasks.facts import images, services
from tasks.facts import record as release_record
from tasks.facts import releases as facts
from tasks.operations import gate
from tasks.operations import lock as lock_mod
from tasks.operations import releases as store
from tasks.release.layout import Layout
from tasks.runner.executor import Executor
from tasks.runner.ssh import CONNECTION_ERRORS


def require_current(ex: Executor, lay: Layout) -> tuple[str, facts.ReleaseManifest | None]:
    release_id, manifest = facts.current(ex, lay)
    if not release_id:
        raise ConfigError(
            f"nothing is deployed on {ex.where} ({lay.current} does not exist)", hint="run app.deploy first"
        )
    return release_id, manifest


def status(ex: Executor, s: Settings) -> dict:
    lay = Layout(s.deploy_root)
    release_id, manifest = facts.current(ex, lay)
    lock = lock_mod.inspect(ex, lay)
    states = services.read(ex, s.compose_project) if release_id else {}
    expected = list(manifest.services) if manifest else []
    missing = {"state": "missing", "health": ""}
    rec = release_record.read_many(ex, lay, [release_id]).get(release_id) if release_id else None
    refs = {("proxy" if k == "caddy" else k): v for k, v in (manifest.images if manifest else {}).items()}

    def image(name: str) -> dict:
        recorded = rec.images.get(name) if rec else None
        shown = states[name].image if name in states else ""
        return {
            "ref": refs.get(name, ""),
            "digest": recorded.digest if recorded else None,  # resolved on the host after the pull
            "tag_moved": images.moved(shown),  # the reference now names another image
        }

    return {
        "ok": bool(release_id) and not services.unhealthy(states, expected),
        "target": ex.where,
        "current": release_id,
        "content_sha256": manifest.content_sha256 if manifest else None,
        "lock": {"held": lock.held, "stale": lock.stale, **({"info": lock.info} if lock.held else {})},
        "services": [{"service": n, **(states[n].as_dict() if n in states else missing), **image(n)} for n in expected],
        "pre_upgrade_backup": rec.pre_upgrade_backup.id if rec and rec.pre_upgrade_backup else None,
    }


def releases(ex: Executor, s: Settings) -> list[dict]:
    lay = Layout(s.deploy_root)
    current, _ = facts.current(ex, lay)
    all_releases, failed = facts.inventory(ex, lay)
    records = release_record.read_many(ex, lay, all_releases)
    rows = []
    for rid in all_releases:
        manifest = facts.manifest(ex, lay, rid)
        sha = manifest.content_sha256 if manifest else ""
        rec = records.get(rid)
        rows.append(
            {
                "release": rid,
                "content_sha256": sha,
                "current": rid == current,
                "failed": rid in failed,
                "images": {k: v.digest for k, v in rec.images.items()} if rec else {},
                "pre_upgrade_backup": rec.pre_upgrade_backup.id if rec and rec.pre_upgrade_backup else None,
            }
        )
    return rows


def services_of(ex: Executor, s: Settings) -> list[str]:
    """The services of the current release (what --service may name)."""
    _, manifest = require_current(ex, Layout(s.deploy_root))
    return list(manifest.services) if manifest else []


def check_service(ex: Executor, s: Settings, service: str) -> str:
    """A --service value must be one of the current release's services: never an option
    (`--service=--since=1s`) or another project's container."""
    names = services_of(ex, s)
    if service not in names:
        raise ConfigError(f"--service {service[:80]!r}: not a service of the current release ({', '.join(names)})")
    return service


def logs(ex: Executor, s: Settings, *, service: str = "", tail: int = 100, follow: bool = False) -> int:
    """Stream the services' logs (or one service's); returns the exit status."""
    lay = Layout(s.deploy_root)
    names = [check_service(ex, s, service)] if service else []
    args = ["logs", "--no-color", "--tail", str(int(tail)), *(["--follow"] if follow else []), *names]
    return ex.stream(store.compose_for(s, lay.current, *args))


def exec_in(ex: Executor, s: Settings, service: str, argv: list[str]) -> int:
    """Run `argv` in a service container of the current release, output streamed."""
    lay = Layout(s.deploy_root)
    check_service(ex, s, service)
    return ex.stream(store.compose_for(s, lay.current, "exec", "-T", service, *argv))


def compose_action(ex: Executor, s: Settings, action: str, names: list[str], timeout: int | None = None) -> None:
    lay = Layout(s.deploy_root)
    for name in names:
        check_service(ex, s, name)
    require_current(ex, lay)
    ex.run(store.compose_for(s, lay.current, action, *names), timeout=timeout)


def down(ex: Executor, s: Settings, *, purge_data: bool) -> dict:
    """Stop and remove the containers. Volumes and storage stay unless purge_data."""
    lay = Layout(s.deploy_root)
    require_current(ex, lay)
    with lock_mod.HostLock(ex, lay, env=s.env, command="app.down"):
        ex.run(store.compose_for(s, lay.current, "down", "--remove-orphans"))
        if purge_data:
            ex.run(files.remove_tree_privileged(lay.storage))
        store.audit(ex, lay, {"event": "down", "env": s.env, "purge_data": purge_data})
    return {"ok": True, "purged": purge_data}


def rollback(ex: Executor, s: Settings, to: str | None, *, wait_timeout: int, step, force_unlock: bool) -> dict:
    lay = Layout(s.deploy_root)
    started = time.monotonic()
    with lock_mod.HostLock(ex, lay, env=s.env, command="app.rollback", force_unlock=force_unlock):
        current, _ = require_current(ex, lay)
        to = rollback_target(ex, lay, current, to)
        if to == current:
            return {"ok": True, "status": "unchanged", "release": current}
        manifest = facts.manifest(ex, lay, to)
        if manifest is None:
            raise ConfigError(f"release {to} on {ex.where} has no readable {lay.release(to)}/release.json")
        record = {"event": "rollback", "env": s.env, "release": to, "previous": current}
        try:
            with step(f"switch current to {to} and start"):
                store.retag(ex, release_record.tags_to_restore(ex, lay, to))  # its images, even under a moved tag
                store.switch(ex, lay, to)
                store.bring_up(ex, s, lay, wait_timeout, pull=False)
            with step("health gate"):
                gate.compose_health(ex, s, list(manifest.services))
        except (ToolError, *CONNECTION_ERRORS) as exc:
            reason = (exc.message if isinstance(exc, ToolError) else str(exc)).splitlines()[0]
            store.switch(ex, lay, current)
            store.retag(ex, release_record.tags_to_restore(ex, lay, current))
            store.bring_up(ex, s, lay, wait_timeout, pull=False)
            store.audit(ex, lay, {**record, "result": "failed", "error": reason})
            raise RollbackFailed(f"rolling back to {to} failed ({reason}); {current} runs again") from None
        store.audit(ex, lay, {**record, "result": "rolled_back", "duration": round(time.monotonic() - started, 2)})
    return {"ok": True, "status": "rolled_back", "release": to, "previous": current}


def rollback_target(ex: Executor, lay: Layout, current: str, to: str | None) -> str:
    all_releases, failed = facts.inventory(ex, lay)
    if to is None:
        older = [r for r in all_releases if r < current and r not in failed]
        if not older:
            raise ConfigError(f"no release older than {current} on {ex.where}", hint="`app.releases` lists them")
        return older[-1]
    if to not in all_releases:
        raise ConfigError(f"--to {to[:80]}: no such release on {ex.where}", hint="`app.releases` lists them")
    return to
