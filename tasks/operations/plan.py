"""The dry run of a deploy: what it would change, read-only. File diff against the running
release (secret values never shown: only which keys changed), the services Compose would
recreate, the images that would be pulled."""

from __future__ import annotations

import difflib
import hashlib
import json
import re

import yaml

from tasks.commands import files
from tasks.config.settings import Settings
from tasks.facts import images
from tasks.facts import releases as facts
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
    return {
        "ok": True,
        "target": ex.where,
        "current": current,
        "unchanged": manifest is not None and manifest.content_sha256 == release.content_sha256,
        "changes": changes,
        "diff": "\n".join(x for x in diffs if x),
        "recreate": recreate,
        "pull": images.missing(ex, sorted(set(new_manifest["images"].values()))),
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
