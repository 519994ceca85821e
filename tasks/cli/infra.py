"""`infra` namespace: the hosts the application runs on."""

from __future__ import annotations

from pathlib import Path

from invoke import task

from tasks.cli.output import emit, operation, table
from tasks.config import settings as settings_mod
from tasks.errors import SettingsError


@task(help={"json": "print one machine-readable JSON result on stdout"})
@operation
def environments(c, json=False):
    """List the environments configured here (.env.NAME files) with target, provider and host."""
    root = Path.cwd()
    names = sorted(
        {settings_mod.LOCAL_ENV}
        | {
            p.name.split(".", 2)[2]
            for p in root.glob(".env.*")
            if p.name != ".env.example" and settings_mod.ENV_NAME_RE.fullmatch(p.name.split(".", 2)[2])
        }
    )
    rows = []
    for name in names:
        try:
            s = settings_mod.load(name, root=root)
            rows.append(
                {
                    "env": name,
                    "target": s.target,
                    "provider": s.provider,
                    "host": s.ssh.host if s.target == "ssh" else "this machine",
                    "valid": True,
                    "problems": 0,
                }
            )
        except SettingsError as exc:
            rows.append(
                {
                    "env": name,
                    "target": "?",
                    "provider": "?",
                    "host": "?",
                    "valid": False,
                    "problems": len(exc.problems),
                }
            )
    emit(
        {"ok": True, "environments": rows},
        lambda r: table(
            [
                (
                    e["env"],
                    e["target"],
                    e["provider"],
                    e["host"] or "(not set)",
                    "yes" if e["valid"] else f"no ({e['problems']} problems: run app.settings --env {e['env']})",
                )
                for e in rows
            ],
            ("env", "target", "provider", "host", "valid"),
        ),
        json,
    )
