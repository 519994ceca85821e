"""Fact: the host's Python and SQLite versions (the watch's vantage bundle needs
Python 3.11+ and SQLite 3.27+ for `VACUUM INTO`)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from tasks.errors import MalformedFact
from tasks.runner.executor import Executor

PROBE = "import sys, sqlite3; print('python', *sys.version_info[:3]); print('sqlite', sqlite3.sqlite_version)"


@dataclass(frozen=True)
class PythonFact:
    version: tuple[int, int, int]
    sqlite: tuple[int, ...]

    @property
    def usable(self) -> bool:
        return self.version >= (3, 11) and self.sqlite >= (3, 27)

    def __str__(self) -> str:
        return f"Python {'.'.join(map(str, self.version))}, SQLite {'.'.join(map(str, self.sqlite))}"


def command(python: str = "python3") -> list[str]:
    return [python, "-c", PROBE]


def parse(output: str) -> PythonFact:
    m = re.fullmatch(r"python (\d+) (\d+) (\d+)\nsqlite (\d+(?:\.\d+){1,3})\n?", output)
    if not m:
        raise MalformedFact(f"python fact: unexpected output {output[:120]!r}")
    return PythonFact(tuple(int(x) for x in m.group(1, 2, 3)), tuple(int(x) for x in m.group(4).split(".")))


def read(ex: Executor, python: str = "python3") -> PythonFact | None:
    """None when there is no such interpreter on the host."""
    r = ex.run(command(python), check=False)
    if r.exit_status == 127 or "not found" in r.stderr:
        return None
    if not r.ok:
        raise MalformedFact(f"{ex.where}: {python} failed ({r.exit_status}): {r.stderr.strip()[:200]}")
    return parse(r.stdout)
