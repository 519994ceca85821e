"""`infra` namespace: the hosts the application runs on (docs/adr/0009).

Thin tasks over tasks/infra/: OpenTofu per environment (init, plan, apply, destroy,
status, output, refresh), readiness (wait), access (ssh, console) and servers you
already own (register, bootstrap).
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

from invoke import task

from tasks.cli.boundary import operation
from tasks.cli.options import ENV_HELP, JSON_HELP, load
from tasks.cli.output import confirm, emit, note, step, table
from tasks.config import settings as settings_mod
from tasks.errors import InfraMissing, Protected, SettingsError


def _tofu():
    from tasks.infra import tofu

    return tofu


def _prepare_variables(s) -> Path:
    """Render cloud-init and write the module's variables (JSON) into the env's directory."""
    from tasks.infra import cloudinit, state

    key = cloudinit.read_public_key(s)
    return state.write_variables(s, state.tf_variables(s, cloudinit.render_user_data(s, s.provider, key), key))


def _output_text(out: str) -> str:
    return out.rstrip()


@task(help={"env": ENV_HELP, "json": JSON_HELP})
@operation
def init(c, env="local", json=False):
    """Initialize OpenTofu for the environment (its own state and data directory)."""
    from tasks.infra import state

    tofu = _tofu()
    s = load(env)
    tofu.require_module(s)
    state.infra_dir(s).mkdir(parents=True, exist_ok=True)
    with step(f"{s.infra.binary} init ({s.provider})"):
        out = tofu.run(tofu.executor(s), s, "init")
    emit(
        {"ok": True, "env": env, "provider": s.provider, "dir": str(state.infra_dir(s))},
        lambda r: _output_text(out),
        json,
    )


@task(help={"env": ENV_HELP, "json": JSON_HELP})
@operation
def plan(c, env="local", json=False):
    """Show what infra.apply would create or change (nothing is changed)."""
    tofu = _tofu()
    s = load(env)
    tofu.require_module(s)
    ex = tofu.executor(s)
    path = _prepare_variables(s)
    tofu.ensure_init(ex, s)
    with step(f"{s.infra.binary} plan ({s.provider})"):
        out = tofu.run(ex, s, "plan")
    emit({"ok": True, "env": env, "variables": str(path), "plan": out}, lambda r: _output_text(out), json)


def _wait(s, host: str, port: int, user: str, accept_new_host_key: bool = False) -> dict:
    from tasks.infra import wait as wait_mod

    t = wait_mod.target_settings(s, host, port, user)
    with step(f"wait for {user}@{host}:{port} (SSH, then cloud-init)"):
        return wait_mod.wait(t, accept_new_host_key=accept_new_host_key, log=lambda m: note(f"  {m}"))


@task(help={"env": ENV_HELP, "no_wait": "return after apply without waiting for SSH and cloud-init", "json": JSON_HELP})
@operation
def apply(c, env="local", no_wait=False, json=False):
    """Create or update the server, record its address, wait until it is ready for app.deploy."""
    from tasks.infra import state

    tofu = _tofu()
    s = load(env)
    tofu.require_module(s)
    ex = tofu.executor(s)
    _prepare_variables(s)
    if tofu.ensure_init(ex, s):
        note(f"  initialized {state.infra_dir(s)}")
    with step(f"{s.infra.binary} apply ({s.provider})"):
        tofu.run(ex, s, "apply")
    values = tofu.outputs(ex, s)
    host, port, user = tofu.host_from_outputs(values)
    record = state.record_host(s, host=host, port=port, user=user, source="apply")
    note(f"  recorded {user}@{host}:{port} in {record}")
    result = {"ok": True, "env": env, "provider": s.provider, "outputs": values, "recorded": str(record)}
    if not no_wait:
        result["wait"] = _wait(s, host, port, user)
    emit(
        result,
        lambda r: (
            f"{env}: {user}@{host}:{port} "
            + ("ready for app.deploy" if not no_wait else "created (not waited for: run infra.wait)")
        ),
        json,
    )


@task(
    help={
        "env": ENV_HELP,
        "accept_new_host_key": "record an unknown host key (a server created before the tool pinned keys)",
        "json": JSON_HELP,
    }
)
@operation
def wait(c, env="local", accept_new_host_key=False, json=False):
    """Wait for the recorded host: SSH accepts the deploy key, then cloud-init finished."""
    s = load(env)
    if not s.ssh.host:
        raise InfraMissing(f"no host recorded for '{env}'", hint=f"run infra.apply or infra.register --env {env}")
    result = _wait(s, s.ssh.host, s.ssh.port, s.ssh.user, accept_new_host_key)
    emit(result, lambda r: f"{env}: {r['user']}@{r['host']}:{r['port']} ready ({r['total_seconds']}s)", json)


@task(
    help={
        "env": ENV_HELP,
        "yes": "confirm without a prompt (required when CI is set)",
        "force_protected": "also destroy an environment with TORRUST_DELETION_PROTECTION=true",
        "json": JSON_HELP,
    }
)
@operation
def destroy(c, env="local", yes=False, force_protected=False, json=False):
    """Destroy the environment's server and resources (never a registered server)."""
    from tasks.infra import state

    tofu = _tofu()
    s = load(env)
    if s.provider == "existing" or (state.recorded(s) or {}).get("source") == "register":
        raise Protected(
            f"'{env}' is a server you own (registered): infra.destroy never deletes it",
            hint="to stop the stack run app.down; to forget the server remove .torrust/" + env + "/host.env",
        )
    tofu.require_module(s)
    if not tofu.initialized(s) or not state.state_file(s).exists():
        raise InfraMissing(f"nothing is provisioned for '{env}' ({s.provider}): no state in {state.infra_dir(s)}")
    if s.infra.deletion_protection and not force_protected:
        raise Protected(
            f"'{env}' is protected (TORRUST_DELETION_PROTECTION=true)",
            hint="pass --force-protected --yes if you really mean to delete it; on Hetzner first set "
            "TORRUST_DELETION_PROTECTION=false and run infra.apply (the provider refuses otherwise)",
        )
    if not yes:
        confirm(
            env,
            f"infra.destroy deletes the server of '{env}' and everything on it",
            f"Destroy the {s.provider} server of '{env}'?",
        )
    ex = tofu.executor(s)
    _prepare_variables(s)
    with step(f"{s.infra.binary} destroy ({s.provider})"):
        tofu.run(ex, s, "destroy")
    state.forget_host(s)
    emit(
        {"ok": True, "env": env, "destroyed": True},
        lambda r: f"{env}: destroyed; recorded host and key forgotten",
        json,
    )


@task(help={"env": ENV_HELP, "json": JSON_HELP})
@operation
def status(c, env="local", json=False):
    """What is provisioned or recorded for the environment (from `output -json`)."""
    from tasks.infra import state

    tofu = _tofu()
    s = load(env)
    result = {
        "env": env,
        "provider": s.provider,
        "recorded": state.recorded(s),
        "host": s.ssh.host or None,
        "host_origin": str(s.origins.get("TORRUST_SSH_HOST")),
    }
    if s.provider in state.PROVIDERS:
        result["initialized"] = tofu.initialized(s)
        result["outputs"] = None
        if result["initialized"]:
            try:
                result["outputs"] = tofu.outputs(tofu.executor(s), s)
            except InfraMissing:
                pass
    result["ok"] = True
    emit(result, lambda r: table([(k, v) for k, v in r.items() if k != "ok"], ("what", "value")), json)


@task(help={"env": ENV_HELP, "json": JSON_HELP})
@operation
def output(c, env="local", json=False):
    """The module's outputs (ipv4, ipv6, ssh_user, ssh_port)."""
    tofu = _tofu()
    s = load(env)
    values = tofu.outputs(tofu.executor(s), s)
    emit({"ok": True, **values}, lambda r: table(sorted(values.items()), ("output", "value")), json)


@task(help={"env": ENV_HELP, "json": JSON_HELP})
@operation
def refresh(c, env="local", json=False):
    """Re-read the real resources (e.g. a DHCP address) and record the host again."""
    from tasks.infra import state

    tofu = _tofu()
    s = load(env)
    ex = tofu.executor(s)
    _prepare_variables(s)
    with step(f"{s.infra.binary} refresh ({s.provider})"):
        tofu.run(ex, s, "refresh")
    values = tofu.outputs(ex, s)
    host, port, user = tofu.host_from_outputs(values)
    state.record_host(s, host=host, port=port, user=user, source="apply")
    emit({"ok": True, "outputs": values}, lambda r: table(sorted(values.items()), ("output", "value")), json)


PROVIDERS = (
    ("none", "-", "the local target: this machine's Docker engine"),
    ("libvirt", "infrastructure/libvirt", "local KVM: Ubuntu 24.04 cloud image, cloud-init disk"),
    ("hetzner", "infrastructure/hetzner", "Hetzner Cloud: server, SSH key, cloud firewall, volume"),
    ("existing", "-", "a server you already own: infra.register, infra.bootstrap"),
)


@task(help={"json": JSON_HELP})
@operation
def providers(c, json=False):
    """List the providers and their OpenTofu modules."""
    rows = [{"provider": p, "module": m, "description": d} for p, m, d in PROVIDERS]
    emit(
        {"ok": True, "providers": rows},
        lambda r: table([tuple(x.values()) for x in rows], ("provider", "module", "description")),
        json,
    )


@task(help={"json": JSON_HELP})
@operation
def environments(c, json=False):
    """List the environments configured here (.env.NAME files) with target, provider and host."""
    from tasks.infra import state

    root = Path.cwd()
    rows = []
    for name in settings_mod.configured_environments(root):
        try:
            s = settings_mod.load(name, root=root)
            rec = state.recorded(s) or {}
            rows.append(
                {
                    "env": name,
                    "target": s.target,
                    "provider": s.provider,
                    "host": s.ssh.host if s.target == "ssh" else "this machine",
                    "recorded_by": rec.get("source"),
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
                    "recorded_by": None,
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
                    e["recorded_by"] or "-",
                    "yes" if e["valid"] else f"no ({e['problems']} problems: run app.settings --env {e['env']})",
                )
                for e in rows
            ],
            ("env", "target", "provider", "host", "recorded by", "valid"),
        ),
        json,
    )


@task(help={"env": ENV_HELP, "print_": "print the ssh command instead of running it", "command": "run this command"})
@operation
def ssh(c, env="local", print_=False, command=""):
    """Open a shell on the deploy target (strict host key, the environment's key)."""
    s = load(env)
    if not s.ssh.host:
        raise InfraMissing(f"no host recorded for '{env}'", hint=f"run infra.apply or infra.register --env {env}")
    from tasks.commands import ssh as ssh_cmd

    t = s.ssh
    argv = ssh_cmd.interactive(t.host, t.port, t.user, t.known_hosts, t.key, [command] if command else None)
    if print_:
        print(shlex.join(argv))
        return
    os.execvp(argv[0], argv)  # noqa: S606 - replaces this process, as ssh/virsh would


@task(help={"env": ENV_HELP, "print_": "print the virsh command instead of running it"})
@operation
def console(c, env="local", print_=False):
    """The libvirt VM's serial console (virsh console); leave with Ctrl-]."""
    s = load(env)
    if s.provider != "libvirt":
        raise InfraMissing(f"infra.console is for libvirt VMs; '{env}' has provider '{s.provider}'")
    argv = ["virsh", "-c", s.infra.libvirt_uri, "console", s.infra.server_name]
    if print_:
        print(shlex.join(argv))
        return
    os.execvp(argv[0], argv)  # noqa: S606 - replaces this process, as ssh/virsh would


@task(
    help={
        "env": ENV_HELP,
        "host": "host name or IP address of the server",
        "port": "SSH port (default: TORRUST_SSH_PORT)",
        "user": "deploy user (default: TORRUST_SSH_USER)",
        "accept_new_host_key": "trust the host key the server shows at first contact",
        "host_key_fingerprint": "record the host key only if it has this SHA256 fingerprint (verified out of band)",
        "json": JSON_HELP,
    }
)
@operation
def register(c, env="local", host="", port=0, user="", accept_new_host_key=False, host_key_fingerprint="", json=False):
    """Record a server you already own: verify SSH, Docker, Compose v2; record it and its key."""
    from tasks.errors import ConfigError
    from tasks.infra import host as host_mod

    s = load(env)
    if not host:
        raise ConfigError("--host is required")
    with step(f"verify {host}"):
        result = host_mod.register(
            s,
            host,
            int(port or s.ssh.port),
            user or s.ssh.user,
            accept_new_host_key=accept_new_host_key,
            verified_fingerprint=host_key_fingerprint,
        )
    emit(
        result,
        lambda r: table([(k, v) for k, v in r.items() if k not in ("problems",)], ("what", "value")),
        json,
    )


@task(
    help={
        "env": ENV_HELP,
        "skip": "comma-separated steps to leave out: packages, user, docker, sshd, firewall, sysctl, upgrades, storage",
        "accept_new_host_key": "record an unknown host key (first contact only)",
        "json": JSON_HELP,
    }
)
@operation
def bootstrap(c, env="local", skip="", accept_new_host_key=False, json=False):
    """Harden the target with the script cloud-init runs (sudo; idempotent)."""
    from tasks.infra import host as host_mod

    s = load(env)
    steps = tuple(x.strip() for x in skip.split(",") if x.strip())
    with step(f"harden the '{env}' target"):
        result = host_mod.bootstrap(s, steps, accept_new_host_key=accept_new_host_key)
    emit(
        result,
        lambda r: table([(x["step"], x["result"], x["detail"]) for x in r["steps"]], ("step", "result", "detail")),
        json,
    )


@task(help={"env": ENV_HELP, "json": JSON_HELP})
@operation
def clean(c, env="local", json=False):
    """Remove the environment's OpenTofu data directory (.terraform); never its state."""
    import shutil

    from tasks.infra import state

    s = load(env)
    _tofu().require_module(s)
    path = state.data_dir(s)
    existed = path.exists()
    shutil.rmtree(path, ignore_errors=True)
    emit(
        {"ok": True, "removed": str(path) if existed else None},
        lambda r: f"removed {path}" if existed else "nothing to remove",
        json,
    )
