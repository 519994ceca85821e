"""`app` namespace, part 1: configure, render, validate, check the target and deploy.
(Operating a deployed release: operate.py; backups: backups.py.)"""

from __future__ import annotations

from pathlib import Path

from tasks.cli.boundary import operation
from tasks.cli.options import (
    CONTINUE_HELP,
    ENV_HELP,
    FLEET_HELP,
    FORCE_UNLOCK_HELP,
    JSON_HELP,
    NO_PROBES_HELP,
    PARALLEL_HELP,
    WAIT_TIMEOUT_HELP,
    load,
    task,
)
from tasks.cli.output import emit, note, step, table
from tasks.config import settings as settings_mod
from tasks.errors import NoBackupYet, PrerequisiteError, ValidationError
from tasks.release import render as render_mod
from tasks.runner.executor import local
from tasks.runner.target import open_target, redactor


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
    """Check the deploy target read-only (Docker engine, Compose v2, deploy root) and, for
    public certificates, DNS: A/AAAA point here, CAA allows the CA, challenge ports reachable."""
    s = load(env)
    from tasks.facts import target
    from tasks.health import dns

    with step(f"connect to the '{env}' target"), open_target(s, accept_new_host_key=accept_new_host_key) as ex:
        facts = target.read(ex, s.deploy_root)
    with step("check DNS and the challenge ports" if s.acme_names or s.dns_bep34 else "no public names to check"):
        findings = dns.preflight(s, dns.resolver(s.dns_resolver))
    dns_problems = dns.problems(findings, s.acme_challenges)
    doc = {**facts.as_dict(), "dns": [f.as_dict() for f in findings]}
    doc["problems"] = [*doc["problems"], *dns_problems]
    doc["ok"] = not doc["problems"]
    emit(doc, _preflight_text, json)
    if doc["problems"]:
        raise PrerequisiteError(f"the '{env}' target is not ready: " + "; ".join(doc["problems"]))


def _preflight_text(f: dict) -> str:
    text = table([(k, v) for k, v in f.items() if k not in ("problems", "dns", "ok")], ("fact", "value"))
    if f["dns"]:
        rows = [(d["status"], d["check"], d["name"], d["detail"]) for d in f["dns"]]
        text += "\n\n" + table(rows, ("", "check", "name", "detail"))
    return text + "".join(f"\nproblem: {p}" for p in f["problems"])


# ------------------------------------------------------------------------ deploy
DEPLOY_HELP = {
    "env": ENV_HELP,
    "dry_run": "show what would change (diff, recreated services, pulls); change nothing",
    "no_pull": "do not pull missing images (they must be on the target already)",
    "force_unlock": FORCE_UNLOCK_HELP,
    "accept_new_host_key": "record an unknown host key (first contact only)",
    "wait_timeout": WAIT_TIMEOUT_HELP,
    "no_probes": NO_PROBES_HELP,
    "allow_removal": "let the deploy remove a service, the backup cron job, a published port or switch the "
    "database driver (refused otherwise, exit 6)",
    "no_upgrade_backup": "do not back up the data before the tracker's or the database's image changes",
    "fleet": FLEET_HELP,
    "parallel": PARALLEL_HELP,
    "canary": "with --fleet: deploy the first K hosts first; the rest start only when they all succeeded",
    "continue_on_error": CONTINUE_HELP,
    "json": JSON_HELP,
}


def gate_probes(s: settings_mod.Settings):
    """The gate's protocol probes, built once an executor on the target exists (it reads
    the proxy's internal CA for internal names): tasks/health/gate_probes.py. Imported
    when they are built, while the release uploads: a no-op deploy never needs them
    (the health modules and cryptography's x509 are 0.1-0.2 s of imports)."""

    def build(ex):
        from tasks.health import gate_probes as gate

        return gate.gate_probes(s, ex)

    return build


def certificate_wait(s: settings_mod.Settings, started: float):
    """The gate's wait for the proxy's certificates (TLS on): a verified handshake per name
    and family, polled until all pass or TORRUST_ISSUANCE_TIMEOUT; the proxy's log since
    the deploy began tells why a name has none (operations/issuance.py)."""
    import time

    def wait(ex) -> str:
        from tasks.facts import proxy_log
        from tasks.health import check as hc
        from tasks.health import probes as pr
        from tasks.operations import issuance
        from tasks.release.layout import Layout

        r = hc.reach(s, "both", None, hc.internal_ca_reader(ex, s))
        checks = [
            (
                name,
                pr.Probe("tls certificate", name, fam, lambda f=fam, n=name: pr.certificate(r, f, n, s.probe_timeout)),
            )
            for name in s.public_names
            for fam in sorted(r.addresses)
        ]

        def check() -> dict[str, str | None]:
            state: dict[str, str | None] = dict.fromkeys(s.public_names)
            for (name, _), result in zip(checks, pr.run([p for _, p in checks]), strict=True):
                if not result.ok and state[name] is None:
                    state[name] = f"IPv{result.family}: {result.detail}"
            return state

        def log():
            since = f"{int(time.monotonic() - started) + 60}s"  # relative: the host's clock may differ
            return proxy_log.read(ex, s.compose_project, Layout(s.deploy_root).current, since)

        return issuance.wait(check, log, s.issuance_timeout, note)

    return wait if s.tls else None


def _summary(s: settings_mod.Settings, outcome: dict) -> str:
    from tasks.cli.health import endpoints_of

    lines = [
        f"{outcome['status']}: release {outcome['release']} on {s.env}"
        + (f" (previous {outcome['previous']})" if outcome.get("previous") else "")
    ]
    if outcome.get("recreated"):
        lines.append("recreated: " + ", ".join(outcome["recreated"]))
    lines += [f"image change: {c['service']} {c['ref']} -> {c['new']}" for c in outcome.get("image_changes", [])]
    if outcome.get("pre_upgrade_backup"):
        backup = outcome["pre_upgrade_backup"]
        lines.append(f"backup before the upgrade: {backup} (app.rollback --with-data restores it)")
    if outcome.get("removed"):
        lines.append(f"removed ({outcome['removal_allowed_by']}): " + ", ".join(outcome["removed"]))
    if outcome.get("baseline_backup"):
        lines.append(f"baseline backup: {outcome['baseline_backup']}")
    if outcome.get("baseline_error"):
        lines.append(f"NO BACKUP YET: the baseline backup failed: {outcome['baseline_error']}")
    lines += [f"  {e['service']:<16} {e['url']}" for e in endpoints_of(s)]
    if outcome.get("first_deploy"):
        lines += next_steps(s)
    return "\n".join(lines)


def next_steps(s: settings_mod.Settings) -> list[str]:
    """What matters after a first deploy (issue #18), briefly."""
    env = s.env
    steps = [
        "next steps:",
        f"  ./tasks.py health.check --env {env}      prove it from outside (UDP, HTTP, API)",
        f"  ./tasks.py health.watch --env {env}      keep watching it",
    ]
    if s.backup:
        steps.append(f"  backups: cron '{s.backup_schedule}' (host time) into {s.backup_dir}")
        steps.append(f"  ./tasks.py app.backups --env {env}          list them; app.backup takes one now")
    else:
        steps.append("  backups are off: set TORRUST_BACKUP=true to schedule them")
    steps.append(f"  audit log: {s.deploy_root}/audit.log on the target; app.releases lists the releases")
    return steps


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
    allow_removal=False,
    no_upgrade_backup=False,
    fleet="",
    parallel=None,
    canary=None,
    continue_on_error=False,
    json=False,
):
    """Deploy the release: locked, atomic, health-gated, rolled back automatically on failure."""
    from tasks.operations import session

    request = session.DeployRequest(
        pull=not no_pull,
        force_unlock=force_unlock,
        accept_new_host_key=accept_new_host_key,
        wait_timeout=int(wait_timeout),
        probes=None if no_probes else gate_probes,
        certificates=None if no_probes else certificate_wait,
        after=network_check,
        allow_removal=allow_removal,
        upgrade_backup=not no_upgrade_backup,
    )
    if fleet:
        from tasks.cli import fleet as fleet_cli

        fleet_cli.deploy(fleet, env, request, dry_run, fleet_cli.Walk(parallel, canary, continue_on_error), json)
        return
    s = load(env)
    if dry_run:
        emit(session.dry_run(s, request, step), _plan_text, json)
        return
    result = session.deploy(s, request, step)
    emit(result, lambda o: _summary(s, o), json)
    _no_backup_yet(env, result)


def _no_backup_yet(env: str, result: dict) -> None:
    """Exit 33 when the baseline backup failed: the release stays, CI must notice."""
    if result.get("baseline_error"):
        raise NoBackupYet(
            f"release {result['release']} is deployed and healthy, but the baseline backup failed: "
            f"{result['baseline_error']}; '{env}' has no backup yet",
            hint=f"fix the cause (often a full backup disk), then `./tasks.py app.backup --env {env}`; "
            "the next deploy tries again too",
        )


def network_check(ex, s, outcome: dict, step) -> dict:
    """After a change over SSH, on the deploy's connection: a switch may have undone the
    host's network path (`network` in the result; warnings, never a failure)."""
    if outcome["status"] != "deployed" or s.target != "ssh":
        return {}
    with step("check the host's network path"):
        return {"network": network_drift(ex, s)}


def network_drift(ex, s) -> list[dict]:
    """After a change: the network findings that are not ok, each as a warning line (never a
    failure of the task: docs/guides/network.md)."""
    from tasks.health import network as hn

    found = hn.drift(ex, s)
    for f in found:
        note(f"warning: network {f['name']} on {s.env}: {f['detail']}")
    return found


def _plan_text(p: dict) -> str:
    if p["unchanged"]:
        return f"unchanged: the rendered release equals {p['current']} on {p['target']}"
    lines = [f"dry run against {p['target']} (current: {p['current'] or 'nothing deployed'})"]
    lines += [f"  {c['change']:<8} {c['path']}" for c in p["changes"]]
    if p["diff"]:
        lines += ["", p["diff"]]
    lines.append("would recreate: " + (", ".join(p["recreate"]) or "nothing"))
    lines.append("would pull: " + (", ".join(p["pull"]) or "nothing"))
    lines.append("images:")
    lines += [
        f"  {i['service']:<11} {i['ref']}  running {i['running'] or '-'}  new {i['new']}"
        + ("  IMAGE CHANGE" if i["change"] else "")
        for i in p["images"]
    ]
    if p["removals"]:
        verdict = "REFUSED without --allow-removal" if p["removals_refused"] else "allowed by TORRUST_ALLOW_REMOVAL"
        lines.append(f"would remove ({verdict}): " + "; ".join(p["removals"]))
    if p["upgrade_backup"]:
        lines.append("would back up the data first (the tracker's or the database's image changes)")
    if p["baseline_backup"]:
        lines.append("would take the baseline backup after the gate (backups on, none on the host yet)")
    return "\n".join(lines)
