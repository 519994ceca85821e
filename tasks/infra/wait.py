"""Readiness of a new host: SSH first, then cloud-init, each with its own budget.

Each round opens one connection, checking the host key strictly against the
environment's known_hosts: for a server the tool created, infra.apply pinned the key it
generated before anything connected (tasks/infra/hostkeys.py); a registered server's key
was recorded by infra.register. Only `accept_new_host_key` (the task's
--accept-new-host-key, for a server created before keys were generated) records an
unknown key at first contact. Once SSH works, one read-only probe runs per round. The failure
kinds are kept apart because each has a different cause: nothing answers (unreachable),
the port is closed (refused), sshd refuses the key (not installed yet or wrong key),
cloud-init is still running at the deadline, cloud-init failed. A changed host key is
final at once. Re-running continues: nothing here changes the host.
"""

from __future__ import annotations

import errno
import time
from collections.abc import Callable
from dataclasses import replace

from tasks.config.settings import Settings
from tasks.errors import (
    AuthFailed,
    CloudInitFailed,
    CloudInitTimeout,
    ConnectionFailed,
    WaitAuth,
    WaitRefused,
    WaitUnreachable,
)
from tasks.facts import readiness
from tasks.infra.cloudinit import MARKER
from tasks.runner.executor import Executor
from tasks.runner.target import connect_executor

Sleep = Callable[[float], None]


def classify(exc: Exception) -> str:
    """'refused', 'auth' or 'unreachable' for a failed connection attempt."""
    if isinstance(exc, AuthFailed):
        return "auth"
    cause = getattr(exc, "cause", None)
    codes = set()
    if cause is not None:
        codes.add(getattr(cause, "errno", None))
        for sub in getattr(cause, "errors", {}).values():  # paramiko NoValidConnectionsError
            codes.add(getattr(sub, "errno", None))
    return "refused" if errno.ECONNREFUSED in codes else "unreachable"


def target_settings(s: Settings, host: str, port: int, user: str) -> Settings:
    return replace(s, target="ssh", ssh=replace(s.ssh, host=host, port=port, user=user))


def wait_ssh(
    s: Settings,
    *,
    accept_new_host_key: bool = False,
    sleep: Sleep = time.sleep,
    log: Callable[[str], None] = lambda m: None,
) -> Executor:
    """An open executor on the host once it accepts the deploy key. An unknown or changed
    host key is final at once (HostKeyError): never retried, never accepted unless asked."""
    deadline = time.monotonic() + s.infra.wait_ssh_timeout
    where = f"{s.ssh.user}@{s.ssh.host}:{s.ssh.port}"
    last_kind, last_msg, tries = "", "", 0
    while True:
        tries += 1
        try:
            # HostKeyError (an unknown or changed key) propagates: never retried
            return connect_executor(s, accept_new_host_key=accept_new_host_key, attempts=1)
        except (ConnectionFailed, AuthFailed) as exc:
            kind = classify(exc)
            if kind != last_kind:
                log(f"{where}: {kind} ({exc.message.splitlines()[0]})")
            last_kind, last_msg = kind, exc.message
        if time.monotonic() + s.infra.wait_interval > deadline:
            break
        sleep(s.infra.wait_interval)
    budget = f"within {s.infra.wait_ssh_timeout}s ({tries} attempts; TORRUST_WAIT_SSH_TIMEOUT)"
    if last_kind == "auth":
        raise WaitAuth(
            f"{where} refused the deploy key {budget}",
            hint="cloud-init may not have installed the key yet (re-run infra.wait), or TORRUST_SSH_KEY does "
            "not match the public key given to the server (TORRUST_SSH_PUBLIC_KEY)",
        )
    if last_kind == "refused":
        raise WaitRefused(
            f"{where} refused connections {budget}",
            hint="sshd is not listening yet or on another port (TORRUST_SSH_PORT); re-run infra.wait to continue",
        )
    raise WaitUnreachable(
        f"no SSH answer from {where} {budget}: {last_msg.splitlines()[0] if last_msg else ''}",
        hint="check the address, the provider's firewall and that the server is running; re-run infra.wait",
    )


def wait_cloud_init(
    ex: Executor, s: Settings, *, sleep: Sleep = time.sleep, log: Callable[[str], None] = lambda m: None
) -> dict:
    deadline = time.monotonic() + s.infra.wait_cloud_init_timeout
    last = ""
    while True:
        facts = readiness.read(ex, MARKER)
        ci = facts.cloud_init
        if ci != last:
            log(f"cloud-init: {ci}, marker: {'yes' if facts.marker else 'no'}")
            last = ci
        if ci == "error":
            raise CloudInitFailed(
                f"cloud-init failed on {ex.where}; last lines of /var/log/cloud-init-output.log:\n"
                + _indent(facts.log_tail),
                hint="`cloud-init status --long` on the host says which module failed; fix and re-run "
                "infra.bootstrap (or destroy and apply again)",
            )
        if ci == "done" and not facts.marker:
            raise CloudInitFailed(
                f"cloud-init finished on {ex.where} but the hardening script did not write {MARKER}:\n"
                + _indent(facts.log_tail),
                hint="the hardening script stopped early; infra.bootstrap re-runs it",
            )
        if (ci == "done" or ci == "absent") and facts.marker:
            return {"cloud_init": ci, "marker": True}
        if ci == "absent" and not facts.marker:
            raise CloudInitFailed(
                f"{ex.where} has no cloud-init and was never bootstrapped (no {MARKER})",
                hint="for a server you own run infra.register and infra.bootstrap",
            )
        if time.monotonic() + s.infra.wait_interval > deadline:
            raise CloudInitTimeout(
                f"cloud-init still running on {ex.where} after {s.infra.wait_cloud_init_timeout}s "
                "(TORRUST_WAIT_CLOUD_INIT_TIMEOUT); last lines of its log:\n" + _indent(facts.log_tail),
                hint="first boots take 5-20 minutes on real clouds; re-run infra.wait to continue waiting",
            )
        sleep(s.infra.wait_interval)


def wait(
    s: Settings,
    *,
    accept_new_host_key: bool = False,
    sleep: Sleep = time.sleep,
    log: Callable[[str], None] = lambda m: None,
) -> dict:
    started = time.monotonic()
    ex = wait_ssh(s, accept_new_host_key=accept_new_host_key, sleep=sleep, log=log)
    try:
        ssh_seconds = time.monotonic() - started
        ci = wait_cloud_init(ex, s, sleep=sleep, log=log)
    finally:
        ex.ctx.close()
    return {
        "ok": True,
        "host": s.ssh.host,
        "port": s.ssh.port,
        "user": s.ssh.user,
        "known_hosts": str(s.ssh.known_hosts),
        "ssh_seconds": round(ssh_seconds, 2),
        "total_seconds": round(time.monotonic() - started, 2),
        **ci,
    }


def _indent(text: str) -> str:
    return "\n".join("    " + ln for ln in (text or "(no log)").splitlines())
