"""Where a task meets the process: exit codes, the JSON error document, signals, --verbose.

`@operation` wraps a task body: an expected failure (`ToolError`) prints its message (never
a traceback) and exits with its documented code (tasks/errors.py); with --json, a task that
printed no result prints the error as its one JSON document. SIGTERM takes the Ctrl-C path
(locks released, rollbacks done, exit 130). Every operation also takes `--verbose`: each
command the executor runs is printed to stderr, redacted, with where it ran, its duration
and its exit status (TORRUST_VERBOSE=1 does the same for any task).
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import signal
import sys

from invoke.exceptions import Exit

from tasks.cli import output
from tasks.errors import ToolError
from tasks.runner import executor

VERBOSE_HELP = "print every command run, redacted, with its duration and exit status (also TORRUST_VERBOSE=1)"
_verbose = {"on": False}


def _show(ex, result) -> None:
    if _verbose["on"]:
        print(executor.describe(ex, result), file=sys.stderr, flush=True)


executor.on_command(_show)


def operation(fn):
    """Wrap a task body: ToolError -> message + exit code; JSON error document on --json;
    adds the --verbose flag to the task's signature."""

    @functools.wraps(fn)
    def wrapper(c, *args, **kwargs):
        as_json = bool(kwargs.get("json", False))
        _verbose["on"] = bool(kwargs.pop("verbose", False)) or os.environ.get("TORRUST_VERBOSE", "") in ("1", "true")
        previous = signal.signal(signal.SIGTERM, _sigterm)
        output._emitted["done"] = False
        try:
            return fn(c, *args, **kwargs)
        except ToolError as exc:
            if as_json and not output._emitted["done"]:
                print(json.dumps({"ok": False, **exc.as_dict()}, indent=2, sort_keys=True))
            print(exc.render(), file=sys.stderr, flush=True)
            raise Exit(code=int(exc.code)) from None
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            raise Exit(code=130) from None
        finally:
            signal.signal(signal.SIGTERM, previous)

    signature = inspect.signature(fn)
    verbose = inspect.Parameter("verbose", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=False)
    wrapper.__signature__ = signature.replace(parameters=[*signature.parameters.values(), verbose])
    return wrapper


def _sigterm(signum, frame):
    # SIGTERM takes the same path as Ctrl-C: locks released, rollbacks done, exit 130.
    raise KeyboardInterrupt
