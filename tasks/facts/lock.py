"""The host lock as the target shows it: held or not, and its info.json."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from tasks.commands import files
from tasks.commands import lock as cmd
from tasks.runner.executor import Executor

command = cmd.inspect


@dataclass(frozen=True)
class LockInfo:
    held: bool
    info: dict = field(default_factory=dict)  # empty when info.json is missing or unreadable

    @property
    def pids(self) -> list[int]:
        """The guard of the session holding it, and a host-side worker (a backup run that
        outlives a dropped connection)."""
        return [p for p in (self.info.get("guard_pid"), self.info.get("worker_pid")) if type(p) is int and p > 0]


def parse(text: str) -> LockInfo:
    head, _, rest = text.partition("\n")
    if head.strip() != "held yes":
        return LockInfo(False)
    try:
        info = json.loads(rest) if rest.strip() else {}
    except ValueError:
        info = {}
    return LockInfo(True, info if isinstance(info, dict) else {})


def read(ex: Executor, lock: str) -> LockInfo:
    return parse(ex.run(command(lock), check=False).stdout)


def alive(ex: Executor, pids: list[int]) -> bool:
    return any(ex.run(files.process_alive(p), check=False).ok for p in pids)
