"""The host lock shared by deploys, rollbacks and backups.

Acquire = atomic `mkdir <root>/deploy.lock`, then `info.json` inside: who, from which
host, the command, when, and the PID of a guard process on the target whose life is
tied to our session (see Executor.spawn_guard). A lock whose guard PID is gone is stale:
its holder died (Ctrl-C is handled; SIGKILL or a dropped connection are not) and
`--force-unlock` may take it over. A live lock is never taken over.
"""

from __future__ import annotations

import getpass
import json
import os
import secrets
import socket
from dataclasses import dataclass
from datetime import UTC, datetime

from tasks.commands import files
from tasks.commands import lock as cmd
from tasks.errors import ExitCode, ToolError
from tasks.facts import lock as facts
from tasks.release.layout import Layout
from tasks.runner.executor import Executor, Guard


class LockHeld(ToolError):
    code = ExitCode.LOCK_HELD

    def __init__(self, message: str, *, info: dict | None, stale: bool, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.info = info or {}
        self.stale = stale

    def as_dict(self) -> dict:
        return {**super().as_dict(), "lock": self.info, "stale": self.stale}


def who() -> str:
    return f"{getpass.getuser()}@{socket.gethostname()}"


@dataclass
class LockState:
    held: bool
    info: dict
    stale: bool


def inspect(ex: Executor, lay: Layout) -> LockState:
    found = facts.read(ex, lay.lock)
    if not found.held:
        return LockState(False, {}, False)
    return LockState(True, found.info, not facts.alive(ex, found.pids))


def describe(info: dict) -> str:
    if not info:
        return "no details (info.json missing or unreadable)"
    return (
        f"held by {info.get('holder', '?')} since {info.get('started', '?')} for "
        f"`{info.get('command', '?')}` (env {info.get('env', '?')}, guard pid {info.get('guard_pid', '?')})"
    )


class HostLock:
    """`with HostLock(...):` holds the lock; released on every exit path we survive."""

    def __init__(
        self,
        ex: Executor,
        lay: Layout,
        *,
        env: str,
        command: str,
        force_unlock: bool = False,
        then: list[str] | None = None,
    ):
        """`then`: a read-only command run right after the lock is taken, in the same round
        trip; its output is `self.then_output`."""
        self.ex, self.lay, self.env, self.command, self.force_unlock = ex, lay, env, command, force_unlock
        self.then = then or []
        self.then_output = ""
        self.token = secrets.token_hex(16)
        self.guard: Guard | None = None
        self.info: dict = {}
        self.took_over: dict | None = None
        self.held = False

    def __enter__(self) -> HostLock:
        ex, lay = self.ex, self.lay
        self.guard = ex.spawn_guard()
        self.info = {
            "holder": who(),
            "command": self.command,
            "env": self.env,
            "token": self.token,
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
            "guard_pid": self.guard.pid,
            "client_pid": os.getpid(),
        }
        info = json.dumps(self.info, sort_keys=True)
        try:
            first = ex.run(cmd.take(lay.root, lay.lock, info, *self.then), check=False)
            self.then_output = first.stdout
            if not first.ok:
                state = inspect(ex, lay)
                if not state.held:  # released between our mkdir and the look: try once more
                    self.then_output = ex.run(cmd.take(lay.root, lay.lock, info, *self.then)).stdout
                elif state.stale and self.force_unlock:
                    self.took_over = state.info
                    ex.run(files.remove_tree(lay.lock))
                    self.then_output = ex.run(cmd.take(lay.root, lay.lock, info, *self.then)).stdout
                elif state.stale:
                    raise LockHeld(
                        f"a stale lock is left on {ex.where}: {describe(state.info)}; its process is gone",
                        info=state.info,
                        stale=True,
                        hint="the holder died; re-run with --force-unlock to take the lock over",
                    )
                else:
                    raise LockHeld(
                        f"another operation is running on {ex.where}: {describe(state.info)}",
                        info=state.info,
                        stale=False,
                        hint="wait for it to finish (`app.lock` shows the lock); a live lock is never taken over",
                    )
        except BaseException:
            self.guard.close()
            raise
        self.held = True
        return self

    def _release(self) -> None:
        try:
            if self.held:
                self.ex.run(cmd.release(self.lay.lock, self.token), check=False)
        finally:
            if self.guard:
                try:
                    self.guard.close()
                except Exception:  # noqa: S110 - the lock is gone; the guard ends with us anyway
                    pass

    def __exit__(self, *exc) -> None:
        self._release()
