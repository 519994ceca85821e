"""`app` namespace, part 1: configure, render, validate, check the target and deploy.
(Operating a deployed release: operate.py; backups: backups.py.)"""

from __future__ import annotations

from pathlib import Path

from invoke import task

from tasks.cli.boundary import operation
from tasks.cli.options import ENV_HELP, FORCE_UNLOCK_HELP, JSON_HELP, NO_PROBES_HELP, WAIT_TIMEOUT_HELP, load
from tasks.cli.output import emit, note, step, table
from tasks.config import settings as settings_mod
from tasks.errors import PrerequisiteError, ValidationError
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
    "json": JSON_HELP,
}


def gate_probes(s: settings_mod.Settings):
    """The gate's protocol probes, built once an executor on the target exists (it reads
    the proxy's internal CA for internal names): tasks/health/gate_probes.py."""
    from tasks.health import gate_probes as gate

    return lambda ex: gate.gate_probes(s, ex)


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
    import time

    from tasks.facts import target
    from tasks.operations import deploy as deploy_mod
    from tasks.release import cache
    from tasks.runner.target import connect_executor

    started = time.monotonic()
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
            from tasks.operations import plan

            with step("check the target"):
                deploy_mod.check_target(target.read(ex, s.deploy_root))
            result = plan.plan(ex, s, candidate.release())
            emit(result, _plan_text, json)
            return
        opts = deploy_mod.DeployOptions(
            pull=not no_pull,
            force_unlock=force_unlock,
            wait_timeout=int(wait_timeout),
            probes=None if no_probes else gate_probes(s),
            preflight=lambda e: deploy_mod.check_target(target.read(e, s.deploy_root)),
            certificates=None if no_probes else certificate_wait(s, started),
        )

        def reconnect():
            fresh = connect_executor(s)
            extra.append(fresh)
            return fresh

        outcome = deploy_mod.deploy(ex, s, candidate, opts, step, reconnect=reconnect)
        result = outcome.as_dict()
        if outcome.status == "deployed" and s.target == "ssh":  # a switch may have undone the host's network path
            with step("check the host's network path"):
                result["network"] = network_drift(ex, s)
    finally:
        for e in [ex, *extra]:
            if e.remote:
                e.ctx.close()
    emit(result, lambda o: _summary(s, o), json)


def network_drift(ex, s) -> list[dict]:
    """After a change: the network findings that are not ok, each as a warning line (never a
    failure of the task: docs/guides/network.md)."""
    from tasks.health import network as hn

    found = hn.drift(ex, s)
    for f in found:
        note(f"warning: network {f['name']}: {f['detail']}")
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
    return "\n".join(lines)
