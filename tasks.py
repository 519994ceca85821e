#!/usr/bin/env python3
"""Launcher: `./tasks.py <task> [flags]` with nothing installed but Python 3.11+.

First run: creates .venv beside this file from the pinned requirements.txt, then runs
the task with Invoke. Later runs start at once, unless requirements.txt changed (its
hash is stamped into the venv). `import tasks` finds the `tasks/` package, which holds
the four namespaces; when the `invoke` command loads this file instead (Invoke's loader
prefers tasks.py), it hands over the package's collection (docs/adr/0002).
"""

import gc
import hashlib
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.abspath(__file__))
VENV = os.path.join(ROOT, ".venv")
REQUIREMENTS = os.path.join(ROOT, "requirements.txt")
STAMP = os.path.join(VENV, ".requirements.sha256")
PYTHON = os.path.join(VENV, "bin", "python")
# ExitCode.PREREQUISITE of tasks/errors.py (not importable before the venv exists):
# Python too old, or the pinned dependencies could not be installed.
PREREQUISITE = 4


def _digest() -> str:
    with open(REQUIREMENTS, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def _stamped() -> str:
    try:
        with open(STAMP, encoding="ascii") as fh:
            return fh.read().strip()
    except OSError:
        return ""


def _bootstrap() -> None:
    want = _digest()
    if _stamped() == want and os.path.exists(PYTHON):
        return
    print("tasks.py: preparing .venv from requirements.txt (first run or pinned set changed)", file=sys.stderr)
    if not os.path.exists(PYTHON):
        made = subprocess.run([sys.executable, "-m", "venv", VENV], capture_output=True, text=True)
        if made.returncode != 0:
            sys.stderr.write(made.stdout + made.stderr)
            print(
                "tasks.py: creating .venv failed (on Debian and Ubuntu install python3-venv, as root: "
                "apt-get install python3-venv; then remove .venv and run again)",
                file=sys.stderr,
            )
            sys.exit(PREREQUISITE)
    pip = [PYTHON, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    # pip's output (deprecation and cache warnings on many first runs) is kept back and
    # shown only when the install fails.
    result = subprocess.run([*pip, "--requirement", REQUIREMENTS], capture_output=True, text=True)
    if result.returncode != 0:
        sys.stderr.write(result.stdout + result.stderr)
        print("tasks.py: installing the pinned dependencies failed (pip's output above)", file=sys.stderr)
        sys.exit(PREREQUISITE)
    with open(STAMP, "w", encoding="ascii") as fh:
        fh.write(want + "\n")


def main() -> None:
    if sys.version_info < (3, 11):
        print("tasks.py: Python 3.11 or newer is required (found %d.%d)" % sys.version_info[:2], file=sys.stderr)
        sys.exit(PREREQUISITE)
    if os.path.realpath(sys.prefix) != os.path.realpath(VENV):
        _bootstrap()
        os.execv(PYTHON, [PYTHON, os.path.abspath(__file__), *sys.argv[1:]])
    # PYTHONDONTWRITEBYTECODE (set on some CI images) would recompile the tool's own
    # modules on every run (~55 ms of each task's start-up). Python's default: cache them
    # (in tasks/**/__pycache__, ignored by git).
    sys.dont_write_bytecode = False
    # Importing Invoke, Fabric and Paramiko allocates many objects and no cycles worth
    # collecting: without the cyclic GC meanwhile, start-up is ~20 ms shorter (measured).
    gc.disable()
    sys.path.insert(0, ROOT)
    from invoke import Program

    from tasks import ns

    gc.freeze()  # what start-up created is never collected; later collections skip it
    gc.enable()
    Program(namespace=ns, name="torrust-deploy", binary="./tasks.py", version="0.1.0").run()


def _package_namespace():
    """`invoke` imports this file as module `tasks` (its loader prefers tasks.py over the
    tasks/ package). Step aside and hand Invoke the package's collection."""
    import importlib

    sys.modules.pop("tasks", None)
    if ROOT not in sys.path:
        sys.path.insert(0, ROOT)
    package = importlib.import_module("tasks")  # a package wins over a module of the same name
    return package.ns


if __name__ == "__main__":
    main()
elif __name__ == "tasks":
    ns = _package_namespace()
