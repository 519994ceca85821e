"""`test` namespace: the project's own checks."""

from __future__ import annotations

import sys
from pathlib import Path

from invoke.exceptions import Exit, UnexpectedExit

from tasks.cli.options import task

ROOT = Path(__file__).resolve().parents[2]


# Bytecode is written for the test runs as the launcher writes it for the tool (in the
# git-ignored __pycache__ folders) even where PYTHONDONTWRITEBYTECODE is set: else every
# pytest process and worker compiles the project and rewrites the tests again.
BYTECODE = {"PYTHONDONTWRITEBYTECODE": ""}


def _py(c, *args: str, warn: bool = False):
    return c.run(" ".join([sys.executable, *args]), pty=False, warn=warn, echo=True, env=BYTECODE)


@task
def lint(c):
    """Lint: ruff (check and format) on the Python code, shellcheck on shell scripts."""
    with c.cd(str(ROOT)):
        _py(c, "-m", "ruff", "check", ".")
        _py(c, "-m", "ruff", "format", "--check", ".")
        scripts = " ".join(str(p.relative_to(ROOT)) for p in _shell_scripts())
        c.run(f"shellcheck {scripts}", echo=True)


def _shell_scripts() -> list[Path]:
    found = []
    globs = ("application/bin/*", ".ci/*", "tests/images/**/*", "infrastructure/**/*.sh", "tasks/**/*.sh")
    for p in sorted(p for g in globs for p in ROOT.glob(g)):
        if p.is_file():
            with open(p, "rb") as fh:
                first = fh.readline()
            if first.startswith(b"#!") and first.rstrip().endswith((b"sh", b"bash")):
                found.append(p)
    return found


# The unit tests run on two workers (pytest-xdist), each file's tests on one worker, so a
# module's fixture is built once; the integration tests stay serial: they share a deployment
# through module fixtures and fixed ports.
UNIT_ARGS = ("-m", "pytest", "-m", "'not integration'", "-n", "2", "--dist", "loadfile")
INTEGRATION_ARGS = ("-m", "pytest", "-m", "integration")


def _k(k: str) -> list[str]:
    return ["-k", repr(k)] if k else []


@task(help={"k": "only tests matching this pytest -k expression"})
def unit(c, k=""):
    """Unit tests: settings, rendering, command builders (no Docker needed)."""
    with c.cd(str(ROOT)):
        _py(c, *UNIT_ARGS, *_k(k))


@task(help={"k": "only tests matching this pytest -k expression"})
def integration(c, k=""):
    """Integration tests against real Docker, Compose, sshd and the test images."""
    with c.cd(str(ROOT)):
        _py(c, *INTEGRATION_ARGS, *_k(k))


@task
def images(c):
    """Build (or reuse from cache) the test images from Debian packages."""
    with c.cd(str(ROOT)):
        _py(c, "tests/images/build.py")


@task(name="all")
def all_(c):
    """Everything CI runs: the unit tests (two workers), the integration tests (serial), then lint."""
    with c.cd(str(ROOT)):
        unit_run = _py(c, *UNIT_ARGS, warn=True)
        integration_run = _py(c, *INTEGRATION_ARGS, warn=True)
    try:
        lint(c)
        linted = True
    except UnexpectedExit:
        linted = False
    parts = (("unit tests", unit_run.exited == 0), ("integration tests", integration_run.exited == 0), ("lint", linted))
    failed = [name for name, ok in parts if not ok]
    if failed:
        raise Exit(f"test.all: failed: {', '.join(failed)}", code=1)
    print("test.all: unit tests, integration tests and lint passed")


BENCHMARKS = tuple(sorted(p.stem for p in (ROOT / "tests" / "benchmarks").glob("*.py") if p.stem != "__init__"))
# Scripts run more than once, with these argument sets (the others: once, as they are).
VARIANTS: dict[str, tuple[tuple[str, ...], ...]] = {
    "fleet": ((), ("--profile", "light", "--hosts", "6")),  # the targets, then the growth to six hosts
}


@task(
    help={
        "runs": "repetitions per scenario (the tables show medians)",
        "only": f"one of {', '.join(BENCHMARKS)} (default all)",
    }
)
def bench(c, runs=5, only=""):
    """Benchmarks, each a table of medians next to a raw baseline measured in the same run (docs/benchmarks.md)."""
    if only and only not in BENCHMARKS:
        raise Exit(f"test.bench: --only {only!r}: allowed {', '.join(BENCHMARKS)}", code=2)
    with c.cd(str(ROOT)):
        for name in BENCHMARKS:
            if only in ("", name):
                for extra in VARIANTS.get(name, ((),)):
                    _py(c, f"tests/benchmarks/{name}.py", "--runs", str(int(runs)), *extra)
