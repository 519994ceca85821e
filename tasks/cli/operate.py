"""`app` namespace, part 2: operate the deployed release (status, releases, lock, logs,
exec, restart/stop/start, down, rollback)."""

from __future__ import annotations

from invoke import task

from tasks.cli.app import network_drift
from tasks.cli.boundary import operation
from tasks.cli.options import (
    CONTINUE_HELP,
    ENV_HELP,
    FLEET_VIEW_HELP,
    FORCE_UNLOCK_HELP,
    JSON_HELP,
    PARALLEL_HELP,
    WAIT_TIMEOUT_HELP,
    load,
)
from tasks.cli.output import emit, step, table
from tasks.errors import ConfigError, PrerequisiteError
from tasks.runner.target import open_target


def _with_target(env: str, fn, accept_new_host_key: bool = False):
    s = load(env)
    with open_target(s, accept_new_host_key=accept_new_host_key) as ex:
        return s, fn(ex, s)


@task(help={"env": ENV_HELP, "fleet": FLEET_VIEW_HELP, "json": JSON_HELP})
@operation
def status(c, env="local", fleet="", json=False):
    """Show the current release, the lock and every service with its state and health."""
    from tasks.operations import day2

    if fleet:
        from tasks.cli import fleet as fleet_cli

        return fleet_cli.status(fleet, env, json)
    _, st = _with_target(env, day2.status)

    def human(r: dict) -> str:
        lock = r["lock"]
        lock_text = "free" if not lock["held"] else ("STALE " if lock["stale"] else "held ") + str(lock.get("info"))
        rows = [
            (
                x["service"],
                x["state"],
                x.get("health") or "-",
                x.get("ref", ""),
                (x.get("digest") or "-") + (" (TAG MOVED since)" if x.get("tag_moved") else ""),
            )
            for x in r["services"]
        ]
        return f"target:  {r['target']}\ncurrent: {r['current'] or 'nothing deployed'}\nlock:    {lock_text}\n" + (
            table(rows, ("service", "state", "health", "image", "digest")) if rows else ""
        )

    emit(st, human, json)
    if not st["ok"]:
        raise PrerequisiteError("not every service is running and healthy" if st["current"] else "nothing deployed")


@task(help={"env": ENV_HELP, "fleet": FLEET_VIEW_HELP + "; hosts that drift are marked", "json": JSON_HELP})
@operation
def releases(c, env="local", fleet="", json=False):
    """List the releases on the target, newest last, marking the current one."""
    from tasks.operations import day2

    if fleet:
        from tasks.cli import fleet as fleet_cli

        return fleet_cli.releases(fleet, env, json)
    _, rows = _with_target(env, day2.releases)
    emit(
        {"ok": True, "releases": rows},
        lambda r: table(
            [
                (
                    "*" if x["current"] else "",
                    x["release"],
                    x["content_sha256"][:16],
                    "failed" if x["failed"] else "",
                    x["images"].get("tracker", "-")[-19:],
                    x["pre_upgrade_backup"] or "",
                )
                for x in rows
            ],
            ("", "release", "content", "status", "tracker digest", "pre-upgrade backup"),
        ),
        json,
    )


@task(help={"env": ENV_HELP, "json": JSON_HELP})
@operation
def lock(c, env="local", json=False):
    """Show the host lock: free, held (by whom, since when, what) or stale."""
    from tasks.operations import lock as lock_mod
    from tasks.release.layout import Layout

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
    from tasks.operations import day2

    s = load(env)
    with open_target(s) as ex:
        day2.logs(ex, s, service=service, tail=int(tail), follow=follow)


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

    from tasks.errors import CommandFailed
    from tasks.operations import day2

    s = load(env)
    with open_target(s) as ex:
        code = day2.exec_in(ex, s, service, shlex.split(command))
    if code:
        raise CommandFailed(f"`{command}` in {service} exited with {code}", exit_status=code)


def _compose_task(action: str, doc: str):
    @task(name=action, help={"env": ENV_HELP, "service": "only this service (default: all)", "json": JSON_HELP})
    @operation
    def run(c, env="local", service="", json=False):
        from tasks.operations import day2

        s = load(env)
        result = {"ok": True, "action": action, "service": service or "all"}
        with open_target(s) as ex:
            with step(f"{action} {service or 'all services'}"):
                day2.compose_action(ex, s, action, [service] if service else [])
            if action == "restart" and s.target == "ssh":  # a restart may undo the host's network settings
                with step("check the host's network path"):
                    result["network"] = network_drift(ex, s)
        emit(result, lambda r: "", json)

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
        "force_unlock": FORCE_UNLOCK_HELP,
        "wait_timeout": WAIT_TIMEOUT_HELP,
        "with_data": "also restore the backup taken before the upgrade being undone (a safety backup first)",
        "yes": "confirm --with-data without a prompt (required when CI is set)",
        "fleet": "every host of this fleet back to its own previous good release (not with --to)",
        "parallel": PARALLEL_HELP,
        "continue_on_error": CONTINUE_HELP,
        "json": JSON_HELP,
    }
)
@operation
def rollback(
    c,
    env="local",
    to="",
    force_unlock=False,
    wait_timeout=300,
    with_data=False,
    yes=False,
    fleet="",
    parallel=None,
    continue_on_error=False,
    json=False,
):
    """Switch back to an earlier release and bring it up, health-gated; --with-data restores the pre-upgrade data."""
    from tasks.cli.output import confirm
    from tasks.operations import day2, upgrade

    if fleet:
        from tasks.cli import fleet as fleet_cli

        if to or with_data:
            raise ConfigError(
                "--to and --with-data name one host's release and data; with --fleet each host goes back to its own "
                "previous release"
            )
        walk = fleet_cli.Walk(parallel, None, continue_on_error)
        return fleet_cli.rollback(fleet, env, walk, int(wait_timeout), force_unlock, json)
    s = load(env)
    if with_data and not yes:
        confirm(
            env,
            f"--with-data replaces the tracker database of '{env}' with the backup taken before the upgrade",
            f"Roll '{env}' back and replace its database with the pre-upgrade backup?",
        )
    run = upgrade.rollback if with_data else day2.rollback
    with open_target(s) as ex:
        result = run(ex, s, to or None, wait_timeout=int(wait_timeout), step=step, force_unlock=force_unlock)
    emit(
        result,
        lambda r: (
            f"{r['status']}: current is {r['release']}"
            + (
                f"; data restored from backup {r['restored_backup']} (before: {r['safety_backup']})"
                if r.get("restored_backup")
                else ""
            )
        ),
        json,
    )
