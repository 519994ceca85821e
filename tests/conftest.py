"""Shared fixtures: a clean settings root, a CLI runner, snapshots of a directory."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def snapshot(path: Path) -> dict[str, str]:
    """Every file under path with its content hash and mode: 'nothing was touched' checks."""
    out = {}
    for p in sorted(path.rglob("*")):
        if p.is_file():
            out[str(p.relative_to(path))] = hashlib.sha256(p.read_bytes()).hexdigest() + oct(p.stat().st_mode)
        elif p.is_dir():
            out[str(p.relative_to(path)) + "/"] = "dir"
    return out


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """An empty directory to hold .env files: the settings root of one test."""
    d = tmp_path / "work"
    d.mkdir()
    return d


def clean_environ(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TORRUST_")}
    env.update(extra)
    return env


@pytest.fixture
def cli(workdir: Path):
    """Run `python tasks.py ...` (the launcher, inside this venv) from workdir."""

    def run(*args: str, env: dict[str, str] | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, str(ROOT / "tasks.py"), *args],
            cwd=workdir,
            env=clean_environ(**(env or {})),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    return run
