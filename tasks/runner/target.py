"""Open the environment's deploy target as an Executor: this machine or an SSH host."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from tasks.config.settings import Settings
from tasks.runner import ssh
from tasks.runner.executor import Executor, Redactor, local


def redactor(s: Settings) -> Redactor:
    """Masks every secret of the settings (the table's secret variables)."""
    return Redactor(s.secret_values())


def connect_executor(s: Settings, *, accept_new_host_key: bool = False, attempts: int = 4) -> Executor:
    """A fresh executor (for a reconnect); the caller closes `executor.ctx`."""
    if s.target == "local":
        return local(redactor(s), s.command_timeout)
    conn = ssh.connect(s, accept_new_host_key=accept_new_host_key, attempts=attempts)
    where = f"{s.ssh.user}@{ssh.known_hosts_name(s.ssh.host, s.ssh.port)}"
    return Executor(conn, redactor(s), s.command_timeout, where)


@contextmanager
def open_target(s: Settings, *, accept_new_host_key: bool = False) -> Iterator[Executor]:
    """One executor (one SSH connection) for the whole operation, closed on every exit."""
    ex = connect_executor(s, accept_new_host_key=accept_new_host_key)
    try:
        yield ex
    finally:
        if ex.remote:
            ex.ctx.close()
