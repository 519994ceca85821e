"""The dry run of a deploy: what it would change, read-only. File diff against the running
release (secret values never shown: only which keys changed), the services Compose would
recreate, the images that would be pulled, each service's image (tag and digest, running
and new: a tag that moved is an image change), what it would remove (and whether the
deploy would be refused for it), and the backups it would take."""

from __future__ import annotations

import difflib
import hashlib
import json
import re

import yaml

from tasks.commands import files
from tasks.config.settings import Settings
from tasks.errors import RemovalRefused
from tasks.facts import images
from tasks.facts import releases as facts
from tasks.facts import snapshot as snapshots
from tasks.operations import removals, upgrade
from tasks.release.layout import MANIFEST, Layout
from tasks.release.render import Release
from tasks.runner.executor import Executor

ENV_LINE = re.compile(r"^([A-Z_][A-Z0-9_]*)=(.*)$")


def _env_values(text: str) -> dict[str, str]:
    return {m.group(1): m.group(2) for ln in text.splitlines() if (m := ENV_LINE.match(ln))}


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def plan(ex: Executor, s: Settings, release: Release) -> dict:
    lay = Layout(s.deploy_root)
    current, manifest = facts.current(ex, lay)
    new_manifest = json.loads(release.file(MANIFEST).content)
    old_files = {f.path: f for f in manifest.files} if manifest else {}
    new_files = {f.path: f for f in release.files if f.path != MANIFEST}
    changes, diffs = [], []
    for path in sorted(set(old_files) | set(new_files)):
        old, new = old_files.get(path), new_files.get(path)
        if old and new and old.sha256 == new.sha256:
            continue
        kind = "added" if not old else "removed" if not new else "changed"
        changes.append({"path": path, "change": kind})
        if kind == "changed":
            diffs.append(_diff(ex, lay, path, new))
    recreate = _services_to_recreate(ex, lay, release) if current else new_manifest["services"]
    more = _images_and_removals(ex, s, release, new_manifest)
    same = manifest is not None and manifest.content_sha256 == release.content_sha256
    return {
        **more,
        "ok": True,
        "target": ex.where,
        "current": current,
        "unchanged": same and not any(row["change"] for row in more["images"]),
        "changes": changes,
        "diff": "\n".join(x for x in diffs if x),
        "recreate": recreate,
    }


def _images_and_removals(ex: Executor, s: Settings, release: Release, manifest: dict) -> dict:
    snap = snapshots.read(ex, Layout(s.deploy_root), s.compose_project, backup_dir=s.backup_dir)
    wanted = {("proxy" if k == "caddy" else k): v for k, v in manifest["images"].items()}
    wanted = {k: v for k, v in wanted.items() if k in manifest["services"]}
    resolved, missing = images.resolve(ex, sorted(set(wanted.values()) | set(upgrade.running_refs(snap.states))))
    changes = {c.service: c for c in upgrade.image_changes(snap.states, wanted, resolved)}
    rows = []
    for service, ref in sorted(wanted.items()):
        state = snap.states.get(service)
        new = resolved.get(ref)
        rows.append(
            {
                "service": service,
                "ref": ref,
                "running": upgrade.running_image(state, resolved) if state else None,
                "new": new.digest if new else "not on the host: would be pulled",
                "change": service in changes,
            }
        )
    found = removals.removals(
        snap, manifest["services"], s.backup, removals.compose_ports(release.file("compose.yaml").content)
    )
    try:
        removals.check(found, allow_flag=False, setting=s.allow_removal, env=s.env)
        refused = False
    except RemovalRefused:
        refused = True
    data = upgrade.data_changes(list(changes.values()))
    return {
        "images": rows,
        "pull": [r for r in missing if r in wanted.values()],
        "removals": [str(r) for r in found],
        "removals_refused": refused,
        "upgrade_backup": bool(data and snap.current and s.upgrade_backup),
        "baseline_backup": bool(s.backup and not snap.backups),
    }


def _diff(ex: Executor, lay: Layout, path: str, new) -> str:
    after = new.content.decode("utf-8", "replace")
    if new.secret:  # never show a secret: only which keys changed (compared raw, never printed)
        before = ex.get(f"{lay.current}/{path}").decode("utf-8", "replace")
        a, b = _env_values(before), _env_values(after)
        keys = sorted(k for k in set(a) | set(b) if _digest(a.get(k, "")) != _digest(b.get(k, "")))
        return f"--- {path}: secret values changed for: {', '.join(keys) or '(non-variable lines)'}"
    before = ex.run(files.cat(f"{lay.current}/{path}"), check=False).stdout
    return "".join(
        difflib.unified_diff(before.splitlines(True), after.splitlines(True), f"current/{path}", f"new/{path}")
    )


def _services_to_recreate(ex: Executor, lay: Layout, release: Release) -> list[str]:
    old_compose = yaml.safe_load(ex.run(files.cat(f"{lay.current}/compose.yaml"), check=False).stdout or "{}") or {}
    old_env = _env_values(ex.get(f"{lay.current}/.env").decode())  # raw: run() output is redacted
    new_compose = yaml.safe_load(release.file("compose.yaml").content)
    new_env = _env_values(release.file(".env").content.decode())
    result = []
    for name, svc in (new_compose.get("services") or {}).items():
        old = (old_compose.get("services") or {}).get(name) if isinstance(old_compose, dict) else None
        refs = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", json.dumps(svc)))
        env_changed = any(_digest(old_env.get(r, "")) != _digest(new_env.get(r, "")) for r in refs)
        if old != svc or env_changed:
            result.append(name)
    return sorted(result)
