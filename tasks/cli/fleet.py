"""The `--fleet NAME` side of app.deploy, app.rollback, app.backup, app.status,
app.releases and health.check: load the fleet, run it (tasks/fleet/views.py), print one
table (and one JSON document with --json), and exit 0 when every host succeeded, 70 when
some did, 71 when none did; 130 after Ctrl-C, once every running host has ended."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tasks.cli.health import PROBE_HEADERS, probe_row
from tasks.cli.output import emit, note, table
from tasks.errors import ConfigError, FleetFailed, FleetPartial
from tasks.fleet import declaration, views
from tasks.fleet.declaration import Fleet
from tasks.fleet.rollout import NOT_STARTED, HostResult, Progress, Rollout
from tasks.operations.session import DeployRequest


@dataclass(frozen=True)
class Walk:
    """The rollout flags as given (None: the fleet's own value)."""

    parallel: str | int | None = None
    canary: str | int | None = None
    continue_on_error: bool = False


def load(name: str, env: str) -> Fleet:
    if env != "local":
        raise ConfigError(f"--env {env[:80]!r} and --fleet {name[:80]!r} together: choose one")
    return declaration.load(name, root=Path.cwd())


# ------------------------------------------------------------------------ the tasks' bodies
def deploy(name: str, env: str, req: DeployRequest, dry_run: bool, walk: Walk, as_json: bool) -> None:
    fleet = load(name, env)
    opts = declaration.rollout_options(fleet, walk.parallel, walk.canary, walk.continue_on_error)
    if dry_run:
        result = views.dry_run(fleet, req, Progress(fleet.names))
        _finish(result, {"dry_run": True}, _plan_text, "planned", as_json)
        return
    how = f"canary {opts.canary}, then " if opts.canary else ""
    note(f"==> fleet '{fleet.name}': {len(fleet.members)} hosts, {how}{opts.parallel} at a time")
    result = views.deploy(fleet, req, opts, Progress(fleet.names))
    note(_standing(result))
    _finish(result, {}, lambda d: _text(result, "deploy"), "deployed", as_json)


def rollback(name: str, env: str, walk: Walk, wait_timeout: int, force_unlock: bool, as_json: bool) -> None:
    fleet = load(name, env)
    opts = declaration.rollout_options(fleet, walk.parallel, 0, walk.continue_on_error)
    result = views.rollback(
        fleet, opts, wait_timeout=wait_timeout, force_unlock=force_unlock, progress=Progress(fleet.names)
    )
    note(_standing(result))
    _finish(result, {}, lambda d: _text(result, "rollback"), "rolled back", as_json)


def backup(name: str, env: str, walk: Walk, stop_tracker: bool, force_unlock: bool, as_json: bool) -> None:
    fleet = load(name, env)
    opts = declaration.rollout_options(fleet, walk.parallel, 0, walk.continue_on_error)
    result = views.backup(
        fleet, opts, stop_tracker=stop_tracker, force_unlock=force_unlock, progress=Progress(fleet.names)
    )
    note(_standing(result))
    _finish(result, {}, lambda d: _text(result, "backup"), "backed up", as_json)


def status(name: str, env: str, as_json: bool) -> None:
    result = views.status(load(name, env))
    _finish(result, {}, lambda d: _text(result, "status"), "healthy", as_json)


def releases(name: str, env: str, as_json: bool) -> None:
    result = views.releases(load(name, env), digests=views.image_digests)
    drifting = [h.env for h in result.hosts if h.detail.get("drift")]
    extra = {"drift": drifting}
    summary = f"\ndrift on {', '.join(drifting)} (marked *)" if drifting else "\nevery host in step"
    _finish(result, extra, lambda d: _text(result, "releases") + summary, "answered", as_json)


def check(name: str, env: str, family: str, only: str, skip: str, internal_ca: bool, as_json: bool) -> None:
    result = views.check(load(name, env), family, only, skip, internal_ca)
    _finish(result, {}, lambda d: _probe_text(result), "healthy", as_json)


def watch(name: str, env: str, plan: Callable, *, once: bool, duration: str, as_json: bool) -> None:
    """health.watch --fleet: `plan(settings)` -> (the watch config, the extra CA) of a host."""
    from tasks.watch import fleet as watch_fleet

    fleet = load(name, env)
    plans = {m.env: plan(m.settings) for m in fleet.members}
    ports: dict[int, str] = {}
    for env_name, (cfg, _) in plans.items():
        if cfg.metrics_port and cfg.metrics_port in ports:
            raise ConfigError(
                f"environments '{ports[cfg.metrics_port]}' and '{env_name}' both serve the watch's metrics on port "
                f"{cfg.metrics_port}: set TORRUST_WATCH_METRICS_PORT apart in their .env.NAME (0: none)"
            )
        ports[cfg.metrics_port] = env_name
    if once:
        result = watch_fleet.once(fleet, plans)
        _finish(result, {}, lambda d: _text(result, "watch"), "healthy", as_json)
        return
    started = time.monotonic()
    found = watch_fleet.loop(fleet, plans, duration)
    hosts = [
        HostResult(m.env, m.where, ok=found[m.env]["ok"], status="watched" if found[m.env]["ok"] else "failed")
        for m in fleet.members
    ]
    for h in hosts:
        doc = found[h.env]
        h.code, h.error, h.detail = (0 if h.ok else doc.get("code", 1)), doc.get("error"), doc
    result = Rollout(fleet.name, views.everyone(fleet), hosts, duration=time.monotonic() - started)
    _finish(result, {}, lambda d: _text(result, "watch"), "watched", as_json)


# ------------------------------------------------------------------------ the end of a fleet task
def _finish(result: Rollout, extra: dict, human: Callable[[dict], str], done: str, as_json: bool) -> None:
    emit({**result.as_dict(), **extra}, human, as_json)
    if result.interrupted:
        raise KeyboardInterrupt  # the boundary's Ctrl-C path: exit 130
    n, ok = len(result.hosts), [h for h in result.hosts if h.ok]
    failed = "; ".join(
        f"{h.env} {h.status.replace('_', ' ')}" + (f" (exit {h.code})" if h.code else "")
        for h in result.hosts
        if not h.ok
    )
    message = f"fleet '{result.fleet}': {len(ok)} of {n} hosts {done}; {failed}"
    hint = "each host's own exit code and error are in its row (and in the --json document)"
    if result.result == "some":
        raise FleetPartial(message, hint=hint)
    if result.result == "none":
        raise FleetFailed(message, hint=hint)


def _standing(result: Rollout) -> str:
    """Where each host stands, in words: what was done and kept, what failed, what was
    never started (untouched)."""
    ok = [h for h in result.hosts if h.ok]
    failed = [h for h in result.hosts if not h.ok and h.status != NOT_STARTED]
    waiting = [h for h in result.hosts if h.status == NOT_STARTED]
    lines = [f"{result.result}: {len(ok)} of {len(result.hosts)} hosts succeeded in {result.duration:.1f}s"]
    if result.stopped:
        lines.append(f"stopped: {result.stopped}")
    if ok and (failed or waiting):
        lines.append("done, and they keep it: " + ", ".join(f"{h.env} ({_release(h)})" for h in ok))
    if failed:
        lines.append("failed: " + ", ".join(f"{h.env} ({h.status}, exit {h.code})" for h in failed))
    if waiting:
        lines.append("not started, untouched: " + ", ".join(h.env for h in waiting))
    return "\n".join(lines)


# ------------------------------------------------------------------------ tables
def _first(text: str | None, width: int = 160) -> str:
    """The first line of an error, shortened for a table cell."""
    return (text or "").partition("\n")[0][:width]


def _release(h: HostResult) -> str:
    return h.detail.get("release") or h.detail.get("current") or "-"


def _seconds(h: HostResult) -> str:
    return "-" if h.duration is None else f"{h.duration:.1f}s"


def _detail(h: HostResult) -> str:
    if h.error:
        return _first(h.error)
    if h.detail.get("recreated"):
        return "recreated: " + ", ".join(h.detail["recreated"])
    previous = h.detail.get("previous")
    return f"previous {previous}" if previous and previous != _release(h) else ""


def _services(h: HostResult) -> str:
    """'2/2 ok', or '1/2 ok: tracker exited' (app.status's verdict per service)."""
    rows = h.detail.get("services") or []
    bad = [
        f"{x['service']} {x['state']}" + (f"/{x['health']}" if x.get("health") else "")
        for x in rows
        if x["state"] != "running" or x.get("health") not in ("", None, "healthy")
    ]
    return f"{len(rows) - len(bad)}/{len(rows)} ok" + (": " + ", ".join(bad) if bad else "")


def _lock(h: HostResult) -> str:
    lock = h.detail.get("lock") or {}
    return "-" if not lock else "free" if not lock.get("held") else "STALE" if lock.get("stale") else "held"


def _digests(h) -> str:
    found = h.detail.get("digests")
    if found is None:
        return "not read"
    return ", ".join(f"{name}={digest.rsplit(':', 1)[-1][:12]}" for name, digest in sorted(found.items())) or "-"


def _images(h: HostResult) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted((h.detail.get("images") or {}).items())) or "-"


def _drift(h: HostResult) -> str:
    return ", ".join(h.detail.get("drift") or []) or ("-" if h.ok else _first(h.error, 120))


HOST = ("host", lambda h: h.env)
TARGET = ("target", lambda h: h.target)
STATUS = ("status", lambda h: h.status)
TIME = ("time", _seconds)
# The columns of each fleet task's table: (header, cell of a host)
COLUMNS: dict[str, tuple[tuple[str, Callable[[HostResult], str]], ...]] = {
    "deploy": (
        HOST,
        ("", lambda h: "canary" if h.canary else ""),
        TARGET,
        STATUS,
        ("release", _release),
        TIME,
        ("detail", _detail),
    ),
    "rollback": (HOST, TARGET, STATUS, ("release", _release), TIME, ("detail", _detail)),
    "backup": (
        HOST,
        TARGET,
        STATUS,
        ("backup", lambda h: h.detail.get("id") or "-"),
        TIME,
        ("detail", lambda h: _first(h.error)),
    ),
    "status": (HOST, TARGET, STATUS, ("current", _release), ("lock", _lock), ("services", _services)),
    "watch": (
        HOST,
        STATUS,
        ("probes", lambda h: str(h.detail.get("probes", "-"))),
        ("rounds", lambda h: str(h.detail.get("rounds", "-"))),
        ("store", lambda h: h.detail.get("store") or "-"),
        ("failed", lambda h: "" if h.ok else "; ".join(h.detail.get("failed") or []) or _first(h.error)),
    ),
    "releases": (
        ("host", lambda h: h.env + (" *" if h.detail.get("drift") else "")),
        ("current", _release),
        ("content", lambda h: (h.detail.get("content_sha256") or "-")[:16]),
        ("expected", lambda h: (h.detail.get("expected_sha256") or "-")[:16]),
        ("images", _images),
        ("digests", _digests),
        ("drift", _drift),
    ),
}


def _text(result: Rollout, view: str) -> str:
    columns = COLUMNS[view]
    return table([tuple(cell(h) for _, cell in columns) for h in result.hosts], tuple(c for c, _ in columns))


def _probe_text(result: Rollout) -> str:
    rows = []
    for h in result.hosts:
        rows += [(h.env, *probe_row(p)) for p in h.detail.get("probes", [])]
        if h.error:
            rows.append((h.env, "FAIL", h.status, h.target, "-", "-", _first(h.error)))
    lines = [table(rows, ("host", *PROBE_HEADERS))]
    for h in result.hosts:
        probes = h.detail.get("probes", [])
        passed = sum(p["status"] == "ok" for p in probes)
        skipped = sum(p["status"] == "skipped" for p in probes)
        counts = f", {passed}/{len(probes)} probes passed" + (f", {skipped} skipped" if skipped else "")
        lines.append(f"{h.env}: {h.status}" + (counts if probes else ""))
    return "\n".join(lines)


def _plan_text(doc: dict) -> str:
    lines = []
    for h in doc["hosts"]:
        lines.append(f"{h['env']} ({h['target']}): " + (h["error"] or _plan_summary(h)))
        lines += [f"  {c['change']:<8} {c['path']}" for c in h.get("changes", [])]
        if h.get("diff"):
            lines += ["  " + ln for ln in h["diff"].splitlines()]
    return "\n".join(lines)


def _plan_summary(h: dict) -> str:
    if h.get("unchanged"):
        return f"unchanged ({h['current']})"
    return (
        f"changes against {h.get('current') or 'nothing deployed'}; would recreate: "
        + (", ".join(h.get("recreate") or []) or "nothing")
        + "; would pull: "
        + (", ".join(h.get("pull") or []) or "nothing")
    )
