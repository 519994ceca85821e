"""Every command line the tool sends, as data: pure functions returning argv lists.

Nothing here runs anything; `tasks.runner.executor` does (one place that quotes, times
out, refuses secrets in argv and redacts output). Shell scripts longer than a line or two
live in `scripts/*.sh` (shellchecked by `test.lint`) and are sent with `sh(NAME, ...)`.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent / "scripts"


@cache
def script(name: str) -> str:
    """The text of scripts/NAME.sh."""
    return (SCRIPTS / f"{name}.sh").read_text(encoding="utf-8")


def sh(name: str, *args: str) -> list[str]:
    """Run scripts/NAME.sh with `args` as $1.. ($0 is the script's name, so a command line
    and a test's fake executor both say which script runs)."""
    return ["sh", "-c", script(name), name, *args]
