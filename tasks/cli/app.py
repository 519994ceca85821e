"""`app` namespace: configure, render, validate and (later) deploy the application."""

from __future__ import annotations

from pathlib import Path

from invoke import task

from tasks.cli.output import emit, note, operation, step, table
from tasks.config import settings as settings_mod
from tasks.errors import PrerequisiteError, ValidationError
from tasks.operations import preflight as preflight_mod
from tasks.release import render as render_mod
from tasks.runner.executor import local
from tasks.runner.target import open_target, redactor

ENV_HELP = "environment name: reads .env then .env.NAME (default: local)"
JSON_HELP = "print one machine-readable JSON result on stdout"


def load(env: str) -> settings_mod.Settings:
    s = settings_mod.load(env, root=Path.cwd())
    for w in s.warnings:
        note(f"warning: {w}")
    return s


@task(help={"env": ENV_HELP, "force": "replace an existing .env.NAME (new secrets too)", "json": JSON_HELP})
@operation
def config(c, env="local", force=False, json=False):
    """Write .env.NAME with every variable and strong random secrets (mode 0600)."""
    from tasks.config.envfile import write_config

    path = write_config(Path.cwd(), env, force=force)
    text = path.read_text()
    todo = [ln.split("=", 1)[0] for ln in text.splitlines() if ln.endswith("=REPLACE_ME")]
    emit(
        {"ok": True, "path": str(path), "todo": todo},
        lambda r: (
            f"wrote {r['path']} (mode 0600)" + (f"\nset before deploying: {', '.join(r['todo'])}" if r["todo"] else "")
        ),
        json,
    )


@task(help={"env": ENV_HELP, "json": JSON_HELP})
@operation
def settings(c, env="local", json=False):
    """Show the resolved settings, secrets masked, with the source of every value."""
    s = load(env)
    rows = s.display()
    emit(
        {"ok": True, "env": env, "settings": [{"name": n, "value": v, "source": o} for n, v, o in rows]},
        lambda r: table(rows, ("variable", "value", "source")),
        json,
    )


@task(
    help={
        "env": ENV_HELP,
        "out": "output directory (default: .torrust/NAME/release)",
        "force": "replace a previous rendering in --out",
        "json": JSON_HELP,
    }
)
@operation
def render(c, env="local", out="", force=False, json=False):
    """Render the release (compose, .env, tracker.toml, proxy, monitoring, backup) into a directory."""
    s = load(env)
    target = Path(out) if out else Path.cwd() / ".torrust" / env / "release"
    with step(f"render release for '{env}'"):
        release = render_mod.render(s)
        path = render_mod.write(release, target, replace=force or not out)
    emit(
        {"ok": True, "env": env, "path": str(path), "content_sha256": release.content_sha256, "files": release.paths},
        lambda r: f"rendered {len(r['files'])} files into {r['path']}\ncontent sha256 {r['content_sha256']}",
        json,
    )


@task(
    help={
        "env": ENV_HELP,
        "pull": "pull validator images (caddy, prometheus) that are missing",
        "strict": "treat a skipped validator as a failure",
        "json": JSON_HELP,
    }
)
@operation
def validate(c, env="local", pull=False, strict=False, json=False):
    """Render to a temporary directory and check every artifact with a real validator."""
    from tasks.release import validate as validate_mod

    s = load(env)
    import tempfile

    with tempfile.TemporaryDirectory(prefix="torrust-validate-") as tmp:
        with step(f"render release for '{env}'"):
            path = render_mod.write(render_mod.render(s), Path(tmp) / "release")
        with step("validate artifacts"):
            checks = validate_mod.validate(path, s, local(redactor(s)), pull=pull)
    failed = [ch for ch in checks if ch.status == validate_mod.FAILED]
    skipped = [ch for ch in checks if ch.status == validate_mod.SKIPPED]
    ok = not failed and not (strict and skipped)
    emit(
        {"ok": ok, "env": env, "checks": [ch.as_dict() for ch in checks]},
        lambda r: table(
            [(ch.name, ch.status, f"{ch.duration:.2f}s", ch.detail) for ch in checks],
            ("check", "status", "time", "detail"),
        ),
        json,
    )
    if not ok:
        names = ", ".join(ch.name for ch in failed or skipped)
        raise ValidationError(
            f"release for '{env}' did not validate: {names}" + (" (skipped under --strict)" if not failed else "")
        )
    if skipped:
        note(f"warning: {len(skipped)} check(s) skipped: " + ", ".join(ch.name for ch in skipped))


@task(
    help={"env": ENV_HELP, "accept_new_host_key": "record an unknown host key (first contact only)", "json": JSON_HELP}
)
@operation
def preflight(c, env="local", accept_new_host_key=False, json=False):
    """Check the deploy target read-only: Docker engine, Compose v2, deploy root."""
    s = load(env)
    with step(f"connect to the '{env}' target"), open_target(s, accept_new_host_key=accept_new_host_key) as ex:
        facts = preflight_mod.gather(ex, s)
    emit(
        facts,
        lambda f: (
            table([(k, v) for k, v in f.items() if k != "problems"], ("fact", "value"))
            + "".join(f"\nproblem: {p}" for p in f["problems"])
        ),
        json,
    )
    if facts["problems"]:
        raise PrerequisiteError(f"the '{env}' target is not ready: " + "; ".join(facts["problems"]))


# ------------------------------------------------------------------------ deploy
DEPLOY_HELP = {
    "env": ENV_HELP,
    "dry_run": "show what would change (diff, recreated services, pulls); change nothing",
    "no_pull": "do not pull missing images (they must be on the target already)",
    "force_unlock": "take over a stale lock (its process is gone); a live lock is never taken over",
    "accept_new_host_key": "record an unknown host key (first contact only)",
    "wait_timeout": "seconds to wait for the services to become healthy (default 300)",
    "no_probes": "gate on Compose health only, without the UDP/HTTP/API probes from this machine",
    "json": JSON_HELP,
}


def gate_probes(s: settings_mod.Settings):
    """The protocol probes of the deploy gate (tasks/health/gate.py)."""
    from tasks.health import gate

    return gate.gate_probes(s)


def _summary(s: settings_mod.Settings, outcome: dict) -> str:
    from tasks.cli.health import endpoints_of

    lines = [
        f"{outcome['status']}: release {outcome['release']} on {s.env}"
        + (f" (previous {outcome['previous']})" if outcome.get("previous") else "")
    ]
    if outcome.get("recreated"):
        lines.append("recreated: " + ", ".join(outcome["recreated"]))
    lines += [f"  {e['service']:<16} {e['url']}" for e in endpoints_of(s)]
    return "\n".join(lines)


@task(help=DEPLOY_HELP)
@operation
def deploy(
    c,
    env="local",
    dry_run=False,
    no_pull=False,
    force_unlock=False,
    accept_new_host_key=False,
    wait_timeout=300,
    no_probes=False,
    json=False,
):
    """Deploy the release: locked, atomic, health-gated, rolled back automatically on failure."""
    from tasks.operations import deploy as deploy_mod
    from tasks.release import cache
    from tasks.runner.target import connect_executor

    s = load(env)

    def render_and_remember():
        release = render_mod.render(s)
        cache.store(s, release.content_sha256, render_mod.services(s))
        return release

    known = None if dry_run else cache.lookup(s)
    if known:  # rendered before with these exact inputs: render only if the host differs
        candidate = deploy_mod.Candidate(*known, render_and_remember)
    else:
        with step(f"render release for '{env}'"):
            candidate = deploy_mod.Candidate.of(render_and_remember())
    with step(f"connect to the '{env}' target"):
        ex = connect_executor(s, accept_new_host_key=accept_new_host_key)
    extra: list = []
    try:
        if dry_run:
            from tasks.operations import day2

            with step("check the target"):
                deploy_mod.check_target(preflight_mod.gather(ex, s))
            result = day2.plan(ex, s, candidate.release())
            emit(result, _plan_text, json)
            return
        opts = deploy_mod.DeployOptions(
            pull=not no_pull,
            force_unlock=force_unlock,
            wait_timeout=int(wait_timeout),
            probes=None if no_probes else lambda: gate_probes(s),
            preflight=lambda e: deploy_mod.check_target(preflight_mod.gather(e, s)),
        )

        def reconnect():
            fresh = connect_executor(s)
            extra.append(fresh)
            return fresh

        outcome = deploy_mod.deploy(ex, s, candidate, opts, step, reconnect=reconnect)
    finally:
        for e in [ex, *extra]:
            if e.remote:
                e.ctx.close()
    emit(outcome.as_dict(), lambda o: _summary(s, o), json)


def _plan_text(p: dict) -> str:
    if p["unchanged"]:
        return f"unchanged: the rendered release equals {p['current']} on {p['target']}"
    lines = [f"dry run against {p['target']} (current: {p['current'] or 'nothing deployed'})"]
    lines += [f"  {c['change']:<8} {c['path']}" for c in p["changes"]]
    if p["diff"]:
        lines += ["", p["diff"]]
    lines.append("would recreate: " + (", ".join(p["recreate"]) or "nothing"))
    lines.append("would pull: " + (", ".join(p["pull"]) or "nothing"))
    return "\n".join(lines)


def _with_target(env: str, fn, accept_new_host_key: bool = False):
    s = load(env)
    with open_target(s, accept_new_host_key=accept_new_host_key) as ex:
        return s, fn(ex, s)


@task(help={"env": ENV_HELP, "json": JSON_HELP})
@operation
def status(c, env="local", json=False):
    """Show the current release, the lock and every service with its state and health."""
    from tasks.operations import day2

    _, st = _with_target(env, day2.status)

    def human(r: dict) -> str:
        lock = r["lock"]
        lock_text = "free" if not lock["held"] else ("STALE " if lock["stale"] else "held ") + str(lock.get("info"))
        rows = [(x["service"], x["state"], x.get("health") or "-") for x in r["services"]]
        return f"target:  {r['target']}\ncurrent: {r['current'] or 'nothing deployed'}\nlock:    {lock_text}\n" + (
            table(rows, ("service", "state", "health")) if rows else ""
        )

    emit(st, human, json)
    if not st["ok"]:
        raise PrerequisiteError("not every service is running and healthy" if st["current"] else "nothing deployed")


@task(help={"env": ENV_HELP, "json": JSON_HELP})
@operation
def releases(c, env="local", json=False):
    """List the releases on the target, newest last, marking the current one."""
    from tasks.operations import day2

    _, rows = _with_target(env, day2.releases)
    emit(
        {"ok": True, "releases": rows},
        lambda r: table(
            [
                ("*" if x["current"] else "", x["release"], x["content_sha256"][:16], "failed" if x["failed"] else "")
                for x in rows
            ],
            ("", "release", "content", "status"),
        ),
        json,
    )


@task(help={"env": ENV_HELP, "json": JSON_HELP})
@operation
def lock(c, env="local", json=False):
    """Show the host lock: free, held (by whom, since when, what) or stale."""
    from tasks.operations import lock as lock_mod
    from tasks.operations.layout import Layout

    _s, state = _with_target(env, lambda ex, s: lock_mod.inspect(ex, Layout(s.deploy_root)))
    doc = {"ok": True, "held": state.held, "stale": state.stale, "info": state.info}
    emit(
        doc,
        lambda r: "free" if not r["held"] else ("stale: " if r["stale"] else "held: ") + lock_mod.describe(r["info"]),
        json,
    )


@task(
    help={
        "env": ENV_HELP,
        "service": "only this service",
        "tail": "lines from the end (default 100)",
        "follow": "keep streaming new lines",
    }
)
@operation
def logs(c, env="local", service="", tail=100, follow=False):
    """Show the services' logs from the target."""
    from tasks.operations import deploy as deploy_mod
    from tasks.operations.day2 import require_current
    from tasks.operations.layout import Layout

    s = load(env)
    with open_target(s) as ex:
        lay = Layout(s.deploy_root)
        require_current(ex, lay)
        args = [
            "logs",
            "--no-color",
            "--tail",
            str(int(tail)),
            *(["--follow"] if follow else []),
            *([service] if service else []),
        ]
        ex.stream(deploy_mod.compose_for(s, lay.current, *args))


@task(
    help={
        "env": ENV_HELP,
        "service": "the service container (default tracker)",
        "command": "the command to run, e.g. 'sqlite3 -version'",
    }
)
@operation
def exec(c, env="local", service="tracker", command="sh -c 'id; uptime'"):
    """Run a command in a service container on the target and show its output."""
    import shlex

    from tasks.operations import deploy as deploy_mod
    from tasks.operations.day2 import require_current
    from tasks.operations.layout import Layout

    s = load(env)
    with open_target(s) as ex:
        lay = Layout(s.deploy_root)
        require_current(ex, lay)
        code = ex.stream(deploy_mod.compose_for(s, lay.current, "exec", "-T", service, *shlex.split(command)))
    if code:
        from tasks.errors import CommandFailed

        raise CommandFailed(f"`{command}` in {service} exited with {code}", exit_status=code)


def _compose_task(action: str, doc: str):
    @task(name=action, help={"env": ENV_HELP, "service": "only this service (default: all)", "json": JSON_HELP})
    @operation
    def run(c, env="local", service="", json=False):
        from tasks.operations import day2

        s = load(env)
        with step(f"{action} {service or 'all services'}"), open_target(s) as ex:
            day2.compose_action(ex, s, action, [service] if service else [])
        emit({"ok": True, "action": action, "service": service or "all"}, lambda r: "", json)

    run.__doc__ = doc
    run.body.__doc__ = doc
    return run


restart = _compose_task("restart", "Restart the services (or one) of the current release.")
stop = _compose_task("stop", "Stop the services (or one) of the current release; nothing is removed.")
start = _compose_task("start", "Start the stopped services (or one) of the current release.")


@task(
    help={
        "env": ENV_HELP,
        "purge_data": "also delete <deploy root>/storage (database, certificates, metrics)",
        "yes": "confirm --purge-data without a prompt (required when CI is set)",
        "json": JSON_HELP,
    }
)
@operation
def down(c, env="local", purge_data=False, yes=False, json=False):
    """Stop and remove the containers; volumes and storage are kept unless --purge-data."""
    from tasks.cli.output import confirm
    from tasks.operations import day2

    s = load(env)
    if purge_data and not yes:
        confirm(
            env,
            f"--purge-data deletes every tracker data file of '{env}'",
            f"Delete all data of '{env}' in {s.deploy_root}/storage?",
        )
    with step("down"), open_target(s) as ex:
        result = day2.down(ex, s, purge_data=purge_data)
    emit(result, lambda r: "down" + (" (storage purged)" if r["purged"] else "; storage kept"), json)


@task(
    help={
        "env": ENV_HELP,
        "to": "the release to return to (default: the one before current)",
        "force_unlock": DEPLOY_HELP["force_unlock"],
        "wait_timeout": DEPLOY_HELP["wait_timeout"],
        "json": JSON_HELP,
    }
)
@operation
def rollback(c, env="local", to="", force_unlock=False, wait_timeout=300, json=False):
    """Switch back to an earlier release and bring it up, health-gated."""
    from tasks.operations import day2

    s = load(env)
    with open_target(s) as ex:
        result = day2.rollback(ex, s, to or None, wait_timeout=int(wait_timeout), step=step, force_unlock=force_unlock)
    emit(result, lambda r: f"{r['status']}: current is {r['release']}", json)


# ------------------------------------------------------------------------ backups
BACKUP_HELP = {
    "env": ENV_HELP,
    "force_unlock": DEPLOY_HELP["force_unlock"],
    "json": JSON_HELP,
}


def _age(seconds: int | None) -> str:
    if seconds is None:
        return "?"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)  # pragma: no cover


@task(help={**BACKUP_HELP, "stop_tracker": "stop the tracker during the copy for a consistent one (always restarted)"})
@operation
def backup(c, env="local", stop_tracker=False, force_unlock=False, json=False):
    """Back up the database (online), the running release, certificates and Grafana data on the host."""
    from tasks.operations import backup as backup_mod

    s = load(env)
    with step("back up on the target"), open_target(s) as ex:
        result = backup_mod.backup(ex, s, stop_tracker=stop_tracker, force_unlock=force_unlock)
    emit(
        result,
        lambda r: (
            f"backup {r['id']}: {_size(r['size'])} in {r['duration']}s"
            + (f"; retention removed {', '.join(r['deleted'])}" if r["deleted"] else "")
            + "".join(f"\nwarning: {x['what']} not captured: {x['reason']}" for x in r["skipped"])
        ),
        json,
    )


@task(help={"env": ENV_HELP, "json": JSON_HELP})
@operation
def backups(c, env="local", json=False):
    """List the backups on the target, newest first: age, size, verified or not."""
    from tasks.operations import backup as backup_mod

    s = load(env)
    with open_target(s) as ex:
        rows = backup_mod.backups(ex, s)

    def verified(r: dict) -> str:
        return {None: "not verified", True: "verified", False: "VERIFY FAILED"}[r.get("verified")]

    emit(
        {"ok": True, "dir": s.backup_dir, "backups": rows},
        lambda r: (
            table(
                [
                    (x["id"], _age(x.get("age_seconds")), _size(x.get("size", 0)), verified(x), x.get("reason", ""))
                    for x in rows
                ],
                ("backup", "age", "size", "verified", "reason"),
            )
            if rows
            else f"no backups in {s.backup_dir}"
        ),
        json,
    )


@task(
    help={
        "env": ENV_HELP,
        "id": "the backup (see app.backups)",
        "dest": "local directory (default .torrust/NAME/backups)",
        "json": JSON_HELP,
    }
)
@operation
def backup_download(c, env="local", id="", dest="", json=False):
    """Copy a backup off the host (SFTP), then verify every checksum locally."""
    from tasks.operations import backup as backup_mod

    s = load(env)
    target = Path(dest) if dest else Path.cwd() / ".torrust" / env / "backups"
    with step(f"download backup {id}"), open_target(s) as ex:
        result = backup_mod.download(ex, s, id, target)
    emit(
        result,
        lambda r: f"downloaded {r['id']} ({r['files']} files, {_size(r['size'])}) to {r['path']}; checksums verified",
        json,
    )


@task(help={**BACKUP_HELP, "id": "the backup (see app.backups)"})
@operation
def backup_verify(c, env="local", id="", force_unlock=False, json=False):
    """Restore drill: load a backup into a scratch database, compare row counts with its manifest."""
    from tasks.operations import backup as backup_mod

    s = load(env)
    with step(f"verify backup {id} (restore drill)"), open_target(s) as ex:
        result = backup_mod.verify(ex, s, id, force_unlock=force_unlock)
    emit(result, lambda r: f"backup {r['id']} verified: {len(r['tables'])} tables, row counts match the manifest", json)


@task(
    help={
        **BACKUP_HELP,
        "id": "the backup on the host to restore (see app.backups)",
        "from": "restore a downloaded backup directory instead (e.g. onto a new host)",
        "yes": "confirm without a prompt (required when CI is set)",
        "no_safety_backup": "skip the backup of the current state taken first",
        "no_probes": DEPLOY_HELP["no_probes"],
        "wait_timeout": DEPLOY_HELP["wait_timeout"],
    }
)
@operation
def restore(
    c,
    env="local",
    id="",
    from_="",
    yes=False,
    no_safety_backup=False,
    force_unlock=False,
    no_probes=False,
    wait_timeout=300,
    json=False,
):
    """Restore the database from a backup: checksums, safety backup, stop, restore, start, health probes."""
    from tasks.cli.output import confirm
    from tasks.errors import ConfigError
    from tasks.operations import backup as backup_mod

    s = load(env)
    if bool(id) == bool(from_):
        raise ConfigError("pass exactly one of --id (a backup on the host) and --from (a downloaded backup directory)")
    source = Path(from_) if from_ else None
    if source is not None:
        with step(f"check {source}"):
            id = backup_mod.check_local(source)["id"]
    if not yes:
        confirm(
            env,
            f"restoring backup {id} replaces the tracker database of '{env}'",
            f"Replace the tracker database of '{env}' with backup {id}?",
        )
    with step(f"restore backup {id}"), open_target(s) as ex:
        result = backup_mod.restore(
            ex,
            s,
            id,
            probes=None if no_probes else gate_probes(s),
            wait_timeout=int(wait_timeout),
            safety=not no_safety_backup,
            force_unlock=force_unlock,
            upload_from=source,
        )
    emit(
        result,
        lambda r: (
            f"restored backup {r['id']} in {r['duration']}s"
            + (f"; the state before is backup {r['safety_backup']}" if r.get("safety_backup") else "")
        ),
        json,
    )
