"""`app` namespace, part 4: rotate the secrets of an environment (app.rotate-secrets)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from invoke import task

from tasks.cli.boundary import operation
from tasks.cli.options import ENV_HELP, JSON_HELP, WAIT_TIMEOUT_HELP, load
from tasks.cli.output import confirm, emit, note, step
from tasks.config import envfile
from tasks.config import secrets as sec
from tasks.errors import RotationFailed, ToolError
from tasks.runner.executor import Redactor


def secret_probes(old, new, names: list[str], ex):
    """The rotation's gate: the deploy's protocol probes with the new secrets, plus the
    old admin token refused by the API and the database passwords checked (new ones log
    in, old ones are refused) inside the database container. `ex`: the executor on the
    target the deploy builds its probes with."""
    from tasks.config import trackers
    from tasks.health import gate_probes as gate
    from tasks.health import probes as pr
    from tasks.operations import rotation

    base = gate.gate_probes(new, ex)
    reach = gate.gate_reach(new, ex)
    release = trackers.release_of(new).release
    extra = []
    if "admin-token" in names:
        old_token = old.admin_token.reveal()

        def refused(fam: int) -> str:
            try:
                pr.api_stats(reach, fam, new.api_domain, old_token, new.probe_timeout, release=release)
            except pr.ProbeFailed as exc:  # a skip (the token could not be sent safely) propagates
                return f"refused ({str(exc)[:80]})"
            raise pr.ProbeFailed("the OLD admin token is still accepted")

        extra = [
            pr.Probe("old admin token refused", f"{new.api_domain} via {addr}", fam, lambda f=fam: refused(f))
            for fam, addr in sorted(reach.addresses.items())
        ]

    def run() -> list:
        results = base() + (pr.run(extra) if extra else [])
        checks = rotation.db_checks(ex, old, new, names)
        return results + [pr.ProbeResult(n, "database", None, ok, 0.0, d) for n, ok, d in checks]

    return run


@task(
    iterable=["only"],
    help={
        "env": ENV_HELP,
        "only": "rotate only this secret (repeatable): admin-token, mysql-password, mysql-root-password, "
        "grafana-admin-password, or the variable name",
        "dry_run": "show what would be rotated and how; change nothing",
        "yes": "confirm without a prompt (required when CI is set)",
        "wait_timeout": WAIT_TIMEOUT_HELP,
        "json": JSON_HELP,
    },
)
@operation
def rotate_secrets(c, env="local", only=None, dry_run=False, yes=False, wait_timeout=300, json=False):
    """New strong secrets written to .env.NAME (old file kept) and applied in one transaction, undone on failure."""
    from tasks.operations import rotation

    old = load(env)
    names = rotation.choose(old, list(only or []))
    rotation.check_sources(old, names)
    plan = _plan(env, names)
    if dry_run:
        text = "would rotate: " + ", ".join(plan["rotate"]) + "".join(f"\n  then: {x}" for x in plan["steps"])
        emit({**plan, "dry_run": True}, lambda r: text, json)
        return
    if not yes:
        confirm(env, f"rotating {', '.join(plan['rotate'])} of '{env}'", f"Rotate the secrets of '{env}'?")
    values = {var: sec.generate() for var in plan["rotate"]}
    with step(f"write the new secrets into .env.{env} (old file kept)"):
        path, backup = envfile.rewrite_values(Path.cwd(), env, values, datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ"))
    try:
        result = _apply(env, old, names, values, int(wait_timeout))
    except RotationFailed:
        raise  # both files are kept: the message says which holds what
    except (ToolError, KeyboardInterrupt):
        envfile.put_back(path, backup)
        note(f"{path.name} holds the old secrets again")
        raise
    emit(
        {**result, "file": str(path), "backup": str(backup) if backup else None},
        lambda r: (
            f"rotated {', '.join(r['rotated'])}: release {r['release']} runs on them; "
            f"{path.name} updated" + (f", the old file is {backup.name} (mode 0600)" if backup else "")
        ),
        json,
    )


def _plan(env: str, names: list[str]) -> dict:
    from tasks.operations import rotation

    steps = ["ALTER USER in the database container"] if any("mysql" in n for n in names) else []
    steps.append("deploy the release with the new secrets (gate: new ones work, old ones refused)")
    if "grafana-admin-password" in names:
        steps.append("grafana cli admin reset-admin-password")
    return {"ok": True, "env": env, "rotate": rotation.variables(names), "file": f".env.{env}", "steps": steps}


def _apply(env: str, old, names: list[str], values: dict[str, str], wait_timeout: int) -> dict:
    """Reload the settings from the rewritten file and run the rotation transaction with an
    executor that redacts the old and the new secrets."""
    from tasks.operations import deploy as deploy_mod
    from tasks.operations import rotation
    from tasks.release import render as render_mod
    from tasks.runner.target import connect_executor

    new = load(env)
    redact = Redactor([*values.values(), *old.secret_values()])  # the old and the new ones
    executors = [connect_executor(new)]
    executors[0].redact = redact

    def reconnect():
        fresh = connect_executor(new)
        fresh.redact = redact
        executors.append(fresh)
        return fresh

    try:
        with step(f"render release for '{env}'"):
            candidate = deploy_mod.Candidate.of(render_mod.render(new))
        opts = deploy_mod.DeployOptions(
            wait_timeout=wait_timeout,
            probes=lambda ex: secret_probes(old, new, names, ex),
            upgrade_backup=False,
        )
        rot = rotation.Rotation(old, new, names)
        return rotation.rotate(executors[0], rot, candidate, opts, step, reconnect)
    finally:
        for e in executors:
            if e.remote:
                e.ctx.close()
