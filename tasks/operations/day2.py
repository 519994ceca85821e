"""Operating a deployed release: status, logs, exec, restart/stop/start, down, releases,
rollback, and the dry-run plan of a deploy. Everything acts on `<root>/current`."""

from __future__ import annotations

import difflib
import hashlib
import json
import re
import time

import yaml

from tasks.commands import host
from tasks.config.settings import Settings
from tasks.errors import ConfigError, RollbackFailed, ToolError
from tasks.operations import deploy as d
from tasks.operations import lock as lock_mod
from tasks.operations.layout import Layout
from tasks.release.render import MANIFEST, Release
from tasks.runner.executor import Executor


def require_current(ex: Executor, lay: Layout) -> str:
    release_id, _ = d.current_release(ex, lay)
    if not release_id:
        raise ConfigError(
            f"nothing is deployed on {ex.where} ({lay.current} does not exist)", hint="run app.deploy first"
        )
    return release_id


def status(ex: Executor, s: Settings) -> dict:
    lay = Layout(s.deploy_root)
    release_id, manifest = d.current_release(ex, lay)
    lock = lock_mod.inspect(ex, lay)
    states = d.service_states(ex, s, lay.current) if release_id else {}
    expected = (manifest or {}).get("services", [])
    return {
        "ok": bool(release_id) and not d.unhealthy(states, expected),
        "target": ex.where,
        "current": release_id,
        "content_sha256": (manifest or {}).get("content_sha256"),
        "lock": {"held": lock.held, "stale": lock.stale, **({"info": lock.info} if lock.held else {})},
        "services": [{"service": n, **states.get(n, {"state": "missing", "health": ""})} for n in expected],
    }


def releases(ex: Executor, s: Settings) -> list[dict]:
    lay = Layout(s.deploy_root)
    current, _ = d.current_release(ex, lay)
    all_releases, failed = d.inventory(ex, lay)
    rows = []
    for rid in all_releases:
        raw = ex.run(host.cat(f"{lay.release(rid)}/{MANIFEST}"), check=False)
        sha = json.loads(raw.stdout).get("content_sha256", "") if raw.ok else ""
        rows.append({"release": rid, "content_sha256": sha, "current": rid == current, "failed": rid in failed})
    return rows


def compose_action(ex: Executor, s: Settings, action: str, services: list[str], timeout: int | None = None) -> None:
    lay = Layout(s.deploy_root)
    require_current(ex, lay)
    ex.run(d.compose_for(s, lay.current, action, *services), timeout=timeout)


def down(ex: Executor, s: Settings, *, purge_data: bool) -> dict:
    """Stop and remove the containers. Volumes and storage stay unless purge_data."""
    lay = Layout(s.deploy_root)
    require_current(ex, lay)
    with lock_mod.HostLock(ex, lay, env=s.env, command="app.down"):
        ex.run(d.compose_for(s, lay.current, "down", "--remove-orphans"))
        if purge_data:
            ex.run(host.remove_tree(lay.storage))
        d.audit(ex, lay, {"event": "down", "env": s.env, "purge_data": purge_data})
    return {"ok": True, "purged": purge_data}


def rollback(ex: Executor, s: Settings, to: str | None, *, wait_timeout: int, step, force_unlock: bool) -> dict:
    lay = Layout(s.deploy_root)
    started = time.monotonic()
    with lock_mod.HostLock(ex, lay, env=s.env, command="app.rollback", force_unlock=force_unlock):
        current = require_current(ex, lay)
        all_releases, failed = d.inventory(ex, lay)
        if to is None:
            older = [r for r in all_releases if r < current and r not in failed]
            if not older:
                raise ConfigError(f"no release older than {current} on {ex.where}", hint="`app.releases` lists them")
            to = older[-1]
        elif to not in all_releases:
            raise ConfigError(f"--to {to}: no such release on {ex.where}", hint="`app.releases` lists them")
        if to == current:
            return {"ok": True, "status": "unchanged", "release": current}
        raw = ex.run(host.cat(f"{lay.release(to)}/{MANIFEST}"))
        services = json.loads(raw.stdout)["services"]
        try:
            with step(f"switch current to {to} and start"):
                d.switch(ex, lay, to)
                d.bring_up(ex, s, lay, wait_timeout, pull=False)
            with step("health gate"):
                d.health_gate(ex, s, lay, services)
        except (ToolError, *d.CONNECTION_ERRORS) as exc:
            reason = exc.message if isinstance(exc, ToolError) else str(exc)
            d.switch(ex, lay, current)
            d.bring_up(ex, s, lay, wait_timeout, pull=False)
            d.audit(
                ex,
                lay,
                {
                    "event": "rollback",
                    "env": s.env,
                    "result": "failed",
                    "release": to,
                    "previous": current,
                    "error": reason.splitlines()[0],
                },
            )
            raise RollbackFailed(
                f"rolling back to {to} failed ({reason.splitlines()[0]}); {current} runs again"
            ) from None
        d.audit(
            ex,
            lay,
            {
                "event": "rollback",
                "env": s.env,
                "result": "rolled_back",
                "release": to,
                "previous": current,
                "duration": round(time.monotonic() - started, 2),
            },
        )
    return {"ok": True, "status": "rolled_back", "release": to, "previous": current}


# ------------------------------------------------------------------------ dry run
ENV_LINE = re.compile(r"^([A-Z_][A-Z0-9_]*)=(.*)$")


def _env_values(text: str) -> dict[str, str]:
    return {m.group(1): m.group(2) for ln in text.splitlines() if (m := ENV_LINE.match(ln))}


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def plan(ex: Executor, s: Settings, release: Release) -> dict:
    """What a deploy would change, read-only: file diff (secrets masked), services that
    would be recreated, images that would be pulled."""
    lay = Layout(s.deploy_root)
    current, manifest = d.current_release(ex, lay)
    new_manifest = json.loads(release.file(MANIFEST).content)
    old_files = {f["path"]: f for f in (manifest or {}).get("files", [])}
    new_files = {f.path: f for f in release.files if f.path != MANIFEST}
    changes, diffs = [], []
    for path in sorted(set(old_files) | set(new_files)):
        old, new = old_files.get(path), new_files.get(path)
        if old and new and old["sha256"] == new.sha256:
            continue
        kind = "added" if not old else "removed" if not new else "changed"
        changes.append({"path": path, "change": kind})
        if kind != "changed":
            continue
        after = new.content.decode("utf-8", "replace")
        if new.secret:  # never show a secret: only which keys changed (compared raw, never printed)
            before = ex.get(f"{lay.current}/{path}").decode("utf-8", "replace")
            a, b = _env_values(before), _env_values(after)
            keys = sorted(k for k in set(a) | set(b) if _digest(a.get(k, "")) != _digest(b.get(k, "")))
            diffs.append(f"--- {path}: secret values changed for: {', '.join(keys) or '(non-variable lines)'}")
        else:
            before = ex.run(host.cat(f"{lay.current}/{path}"), check=False).stdout
            diffs.append(
                "".join(
                    difflib.unified_diff(
                        before.splitlines(True), after.splitlines(True), f"current/{path}", f"new/{path}"
                    )
                )
            )
    recreate = _services_to_recreate(ex, lay, current, release) if current else new_manifest["services"]
    return {
        "ok": True,
        "target": ex.where,
        "current": current,
        "unchanged": bool(manifest) and manifest.get("content_sha256") == release.content_sha256,
        "changes": changes,
        "diff": "\n".join(x for x in diffs if x),
        "recreate": recreate,
        "pull": d.missing_images(ex, d.release_images(release)),
    }


def _services_to_recreate(ex: Executor, lay: Layout, current: str, release: Release) -> list[str]:
    old_compose = yaml.safe_load(ex.run(host.cat(f"{lay.current}/compose.yaml"), check=False).stdout or "{}") or {}
    old_env = _env_values(ex.get(f"{lay.current}/.env").decode())  # raw: run() output is redacted
    new_compose = yaml.safe_load(release.file("compose.yaml").content)
    new_env = _env_values(release.file(".env").content.decode())
    result = []
    for name, svc in (new_compose.get("services") or {}).items():
        old = (old_compose.get("services") or {}).get(name)
        refs = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", json.dumps(svc)))
        env_changed = any(_digest(old_env.get(r, "")) != _digest(new_env.get(r, "")) for r in refs)
        if old != svc or env_changed:
            result.append(name)
    return sorted(result)
