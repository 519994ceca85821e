"""Output for people and for CI: step lines with durations on stderr, a task's result on
stdout as text or, with --json, as one JSON document; tables; the confirmation prompt.
(How a task ends, with its exit code, is tasks/cli/boundary.py.)"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager


def interactive() -> bool:
    return sys.stdin.isatty() and not os.environ.get("CI")


def confirm(env: str, consequence: str, question: str) -> None:
    """Ask for a destructive action unless the caller passed --yes: the operator types the
    environment name. Without a terminal, or under CI, the missing --yes is an error."""
    from tasks.errors import ConfirmationRequired

    if not interactive():
        raise ConfirmationRequired(
            consequence, hint="pass --yes to confirm (no prompt when CI is set or stdin is not a terminal)"
        )
    if input(f"{question} Type the environment name: ").strip() != env:
        raise ConfirmationRequired("not confirmed; nothing was changed")


@contextmanager
def step(title: str) -> Iterator[None]:
    started = time.monotonic()
    print(f"==> {title}", file=sys.stderr, flush=True)
    try:
        yield
    except BaseException:
        print(f"  ✗ {title} failed after {time.monotonic() - started:.2f}s", file=sys.stderr, flush=True)
        raise
    print(f"  ✓ {title} ({time.monotonic() - started:.2f}s)", file=sys.stderr, flush=True)


def note(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


_emitted = {"done": False}  # one JSON document per task run: the result, or else the error (boundary.py)


def emit(result: dict, human: Callable[[dict], str], as_json: bool) -> None:
    _emitted["done"] = True
    if as_json:
        print(json.dumps(result, indent=2, sort_keys=True, default=str))
    else:
        text = human(result)
        if text:
            print(text)


def table(rows: list[tuple], headers: tuple[str, ...]) -> str:
    cells = [tuple(str(c) for c in headers)] + [tuple(str(c) for c in r) for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


__all__ = ["confirm", "emit", "interactive", "note", "step", "table"]
