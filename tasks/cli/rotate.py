"""`app` namespace, part 4: rotate the secrets of an environment (app.rotate-secrets)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from invoke import task

from tasks.cli.app import gate_probes, gate_reach
from tasks.cli.boundary import operation
from tasks.cli.options import ENV_HELP, JSON_HELP, WAIT_TIMEOUT_HELP, load
from tasks.cli.output import confirm, emit, note, step
from tasks.config import envfile
from tasks.config import secrets as sec
from tasks.errors import RotationFailed, ToolError
from tasks.runner.executor import Redactor


def secret_probes(old, new, names: list[str], ex_of):
    """The rotation's gate: the deploy's protocol probes with the new secrets, plus the
    old admin token refused by the API and the database passwords checked (new ones log
    in, old ones are refused) inside the database container."""
    from tasks.health import probes as pr
    from tasks.operations import rotation

    base = gate_probes(new)
    reach = gate_reach(new)
    extra = []
    if "admin-token" in names:
        old_token = old.admin_token.reveal()

        def refused(fam: int) -> str:
            try:
                pr.api_stats(reach, fam, new.api_domain, old_token, new.probe_timeout)
            except pr.ProbeFailed as exc:
                return f"refused ({str(exc)[:80]})"
            raise pr.ProbeFailed("the OLD admin token is still accepted")

        extra = [
            pr.Probe("old admin token refused", f"{new.api_domain} via {addr}", fam, lambda f=fam: refused(f))
            for fam, addr in sorted(reach.addresses.items())
        ]

    def run() -> list:
        results = base() + (pr.run(extra) if extra else [])
        checks = rotation.db_checks(ex_of(), old, new, names)
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
    from tasks.operations import deploy as deploy_mod
    from tasks.operations import rotation
    from tasks.release import render as render_mod
    from tasks.runner.target import connect_executor

    old = load(env)
    names = rotation.choose(old, list(only or []))
    rotation.check_sources(old, names)
    plan = {
        "ok": True,
        "env": env,
        "rotate": rotation.variables(names),
        "file": f".env.{env}",
        "steps": (["ALTER USER in the database container"] if any("mysql" in n for n in names) else [])
        + ["deploy the release with the new secrets (gate: new ones work, old ones refused)"]
        + (["grafana cli admin reset-admin-password"] if "grafana-admin-password" in names else []),
    }
    if dry_run:
        emit(
            {**plan, "dry_run": True},
            lambda r: "would rotate: " + ", ".join(r["rotate"]) + "\n" + "\n".join(f"  then: {x}" for x in r["steps"]),
            json,
        )
        return
    if not yes:
        confirm(env, f"rotating {', '.join(plan['rotate'])} of '{env}'", f"Rotate the secrets of '{env}'?")
    values = {var: sec.generate() for var in plan["rotate"]}
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    with step(f"write the new secrets into .env.{env} (old file kept)"):
        path, backup = envfile.rewrite_values(Path.cwd(), env, values, stamp)
    try:
        new = load(env)
        redact = Redactor([*values.values(), *(x.reveal() for x in _secrets(old))])
        ex = connect_executor(new)
        ex.redact = redact
        extra = []

        def reconnect():
            fresh = connect_executor(new)
            fresh.redact = redact
            extra.append(fresh)
            return fresh

        with step(f"render release for '{env}'"):
            candidate = deploy_mod.Candidate.of(render_mod.render(new))
        opts = deploy_mod.DeployOptions(
            wait_timeout=int(wait_timeout),
            probes=lambda: secret_probes(old, new, names, lambda: (extra or [ex])[-1]),
            upgrade_backup=False,
        )
        try:
            result = rotation.rotate(ex, rotation.Rotation(old, new, names), candidate, opts, step, reconnect)
        finally:
            for e in [ex, *extra]:
                if e.remote:
                    e.ctx.close()
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


def _secrets(s):
    return [s.admin_token, s.mysql_password, s.mysql_root_password, s.grafana_admin_password]
