"""Output for people and for CI, and the mapping of errors to exit codes.

Step lines with durations go to stderr; a task's result goes to stdout, as text or,
with --json, as one JSON document. Expected failures print a message (never a
traceback) and exit with their documented code.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from invoke.exceptions import Exit

from tasks.errors import ExitCode, ToolError


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


_emitted = {"done": False}  # one JSON document per task run: the result, or else the error


def emit(result: dict, human: Callable[[dict], str], as_json: bool) -> None:
    _emitted["done"] = True
    if as_json:
        print(json.dumps(result, indent=2, sort_keys=True, default=str))
    else:
        text = human(result)
        if text:
            print(text)


def operation(fn):
    """Wrap a task body: ToolError -> message + exit code; JSON error document on --json."""

    @functools.wraps(fn)
    def wrapper(c, *args, **kwargs):
        as_json = bool(kwargs.get("json", False))
        previous = signal.signal(signal.SIGTERM, _sigterm)
        _emitted["done"] = False
        try:
            return fn(c, *args, **kwargs)
        except ToolError as exc:
            if as_json and not _emitted["done"]:
                print(json.dumps({"ok": False, **exc.as_dict()}, indent=2, sort_keys=True))
            print(exc.render(), file=sys.stderr, flush=True)
            raise Exit(code=int(exc.code)) from None
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            raise Exit(code=130) from None
        finally:
            signal.signal(signal.SIGTERM, previous)

    return wrapper


def _sigterm(signum, frame):
    # SIGTERM takes the same path as Ctrl-C: locks released, rollbacks done, exit 130.
    raise KeyboardInterrupt


def table(rows: list[tuple], headers: tuple[str, ...]) -> str:
    cells = [tuple(str(c) for c in headers)] + [tuple(str(c) for c in r) for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


__all__ = ["ExitCode", "emit", "interactive", "note", "operation", "step", "table"]
