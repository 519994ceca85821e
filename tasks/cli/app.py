"""`app` namespace: configure, render, validate and (later) deploy the application."""

from __future__ import annotations

import tempfile
from pathlib import Path

from invoke import task

from tasks.cli.output import emit, note, operation, step, table
from tasks.config import settings as settings_mod
from tasks.config.envfile import write_config
from tasks.errors import PrerequisiteError, ValidationError
from tasks.operations import preflight as preflight_mod
from tasks.release import render as render_mod
from tasks.release import validate as validate_mod
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
    s = load(env)
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
