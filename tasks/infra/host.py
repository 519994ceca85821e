"""Hosts you already own: register (verify and record) and bootstrap (harden).

`register` connects once (the host key checked strictly; recorded first only when the
operator asks: --accept-new-host-key trusts the first key seen, --host-key-fingerprint
records the key only if it is the one verified out of band), checks Docker,
Compose v2 and passwordless sudo with the preflight's one-round-trip facts, and records
the host for the environment. `bootstrap` uploads the hardening script cloud-init runs
(infrastructure/cloud-init/harden.sh) and runs it with sudo: the same steps, idempotent.
"""

from __future__ import annotations

import base64
import hashlib
import posixpath

from tasks.commands import files
from tasks.commands import infra as infra_cmd
from tasks.config.settings import Settings
from tasks.errors import CloudInitFailed, ConfigError, HostNotReady
from tasks.facts import hardening, target
from tasks.infra import cloudinit, hostkeys, state
from tasks.infra.wait import target_settings
from tasks.runner.executor import Executor
from tasks.runner.target import connect_executor, open_target


def host_key_fingerprint(ex: Executor) -> str:
    key = ex.ctx.client.get_transport().get_remote_server_key()
    digest = hashlib.sha256(key.asbytes()).digest()
    return f"{key.get_name()} SHA256:{base64.b64encode(digest).decode().rstrip('=')}"


def register(
    s: Settings,
    host: str,
    port: int,
    user: str,
    *,
    accept_new_host_key: bool = False,
    verified_fingerprint: str = "",
) -> dict:
    if s.provider != "existing":
        raise ConfigError(
            f"infra.register records a server you already own, but '{s.env}' has TORRUST_PROVIDER={s.provider}",
            hint=f"set TORRUST_PROVIDER=existing and TORRUST_DEPLOY_TARGET=ssh in .env.{s.env}",
        )
    t = target_settings(s, host, port, user)
    if verified_fingerprint:
        hostkeys.pin_verified(t, host, port, verified_fingerprint)  # HostKeyError unless it matches
    elif not accept_new_host_key and not hostkeys.known(t.ssh.known_hosts, host, port):
        hostkeys.refuse_unknown(t, host, port)  # first-use trust only when asked
    ex = connect_executor(t, accept_new_host_key=accept_new_host_key and not verified_fingerprint)
    try:
        fingerprint = host_key_fingerprint(ex)
        facts = target.read(ex, t.deploy_root)
        sudo = ex.run(infra_cmd.sudo_check(), check=False, timeout=30).ok
    finally:
        ex.ctx.close()
    missing = [p for p in facts.problems if "writable" not in p]
    ready = not missing
    state.record_host(s, host=host, port=port, user=user, source="register", ready=ready)
    result = {
        "ok": ready,
        "env": s.env,
        "host": host,
        "port": port,
        "user": user,
        "host_key": fingerprint,
        "known_hosts": str(s.ssh.known_hosts),
        "docker": facts.docker_server,
        "compose": facts.compose,
        "sudo": sudo,
        "deploy_root_writable": facts.deploy_root_writable,
        "problems": missing,
        "warnings": [
            w
            for ok, w in (
                (sudo, "no passwordless sudo: infra.bootstrap cannot run"),
                (facts.deploy_root_writable, f"{s.deploy_root} is not writable yet: infra.bootstrap creates it"),
            )
            if not ok
        ],
    }
    if not ready:
        err = HostNotReady(
            f"{user}@{host}:{port} is recorded but not ready: " + "; ".join(missing),
            hint=f"run infra.bootstrap --env {s.env} (needs passwordless sudo), then infra.register again",
        )
        err.result = result
        raise err
    return result


def bootstrap(s: Settings, skip: tuple[str, ...] = (), accept_new_host_key: bool = False) -> dict:
    env_text = cloudinit.harden_env(s, s.provider, skip)
    script = cloudinit.HARDEN_SCRIPT.read_bytes()
    with open_target(s, accept_new_host_key=accept_new_host_key) as ex:
        tmp = ex.run(files.make_temp_dir("torrust-harden.XXXXXX"), timeout=30).stdout.strip()
        try:
            ex.put(script, posixpath.join(tmp, "harden.sh"), 0o700)
            ex.put(env_text.encode(), posixpath.join(tmp, "harden.env"), 0o600)
            result = ex.run(
                infra_cmd.harden(posixpath.join(tmp, "harden.sh"), posixpath.join(tmp, "harden.env")),
                check=False,
                timeout=1800,
            )
        finally:
            ex.run(files.remove_tree(tmp), check=False, timeout=30)
    steps = hardening.parse(result.stdout)
    if not result.ok:
        tail = "\n".join("    " + ln for ln in (result.stderr or result.stdout).strip().splitlines()[-15:])
        raise CloudInitFailed(
            f"the hardening script failed on {ex.where} (exit {result.exit_status}) after {len(steps)} steps:\n{tail}",
            hint="fix the cause above and re-run infra.bootstrap: finished steps are not repeated",
        )
    return {
        "ok": True,
        "target": ex.where,
        "steps": steps,
        "changed": [x["step"] for x in steps if x["result"] == "changed"],
        "skipped": [x["step"] for x in steps if x["result"] == "skipped"],
    }
