"""`app` namespace, part 3: backups (take, list, download, verify, restore)."""

from __future__ import annotations

from pathlib import Path

from invoke import task

from tasks.cli.app import gate_probes
from tasks.cli.boundary import operation
from tasks.cli.options import (
    CONTINUE_HELP,
    ENV_HELP,
    FORCE_UNLOCK_HELP,
    JSON_HELP,
    NO_PROBES_HELP,
    PARALLEL_HELP,
    WAIT_TIMEOUT_HELP,
    load,
)
from tasks.cli.output import emit, step, table
from tasks.runner.target import open_target

# ------------------------------------------------------------------------ backups
BACKUP_HELP = {
    "env": ENV_HELP,
    "force_unlock": FORCE_UNLOCK_HELP,
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


@task(
    help={
        **BACKUP_HELP,
        "stop_tracker": "stop the tracker during the copy for a consistent one (always restarted)",
        "fleet": "back up every host of this fleet (fleets.toml) instead of --env",
        "parallel": PARALLEL_HELP,
        "continue_on_error": CONTINUE_HELP,
    }
)
@operation
def backup(
    c, env="local", stop_tracker=False, force_unlock=False, fleet="", parallel=None, continue_on_error=False, json=False
):
    """Back up the database (online), the running release, certificates and Grafana data on the host."""
    from tasks.operations import backup as backup_mod

    if fleet:
        from tasks.cli import fleet as fleet_cli

        walk = fleet_cli.Walk(parallel, None, continue_on_error)
        return fleet_cli.backup(fleet, env, walk, stop_tracker, force_unlock, json)
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
        "certificates": "restore only the proxy's certificate store (works before the first deploy: no new "
        "certificates are ordered); the database is left as it is",
        "no_probes": NO_PROBES_HELP,
        "wait_timeout": WAIT_TIMEOUT_HELP,
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
    certificates=False,
    json=False,
):
    """Restore the database (or with --certificates the proxy's certificate store) from a backup."""
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
    what = "certificate store of the proxy" if certificates else "tracker database"
    if not yes:
        confirm(
            env,
            f"restoring backup {id} replaces the {what} of '{env}'",
            f"Replace the {what} of '{env}' with backup {id}?",
        )
    if certificates:
        _restore_certificates(s, id, source, force_unlock, json)
        return
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


def _restore_certificates(s, backup_id: str, source: Path | None, force_unlock: bool, json: bool) -> None:
    from tasks.operations import certificates

    with step(f"restore the certificate store of backup {backup_id}"), open_target(s) as ex:
        result = certificates.restore(ex, s, backup_id=backup_id, upload_from=source, force_unlock=force_unlock)
    emit(
        result,
        lambda r: (
            f"restored {r['files']} files of backup {r['id']}'s certificate store ("
            + (", ".join(r["certificates"]) or "no certificates")
            + ")"
            + ("; the proxy was restarted" if r["proxy_restarted"] else "; the next deploy's proxy uses it")
        ),
        json,
    )
