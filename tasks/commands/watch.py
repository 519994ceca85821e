"""Commands of the remote watch (argv lists; the cron editing script is watch-cron.sh)."""

from __future__ import annotations

import shlex
from pathlib import Path

CRON_SCRIPT = (Path(__file__).parent / "watch-cron.sh").read_text()
BUNDLE = "torrust-watch.pyz"
CONFIG = "watch.json"
STORE = "watch.sqlite"
LOG = "watch.log"


def home() -> list[str]:
    return ["sh", "-c", 'printf "%s\\n" "$HOME"']


def make_private_dir(directory: str) -> list[str]:
    return ["mkdir", "-p", "-m", "700", "--", directory]


def runner(python: str, directory: str, *args: str) -> list[str]:
    """The bundle with its settings file: `once`, `check`, `export --out F`, ..."""
    return [python, f"{directory}/{BUNDLE}", "--config", f"{directory}/{CONFIG}", *args]


def cron_line(schedule: str, python: str, directory: str) -> str:
    """The crontab line: one round per run, logging to the directory (rotated by the runner)."""
    q = shlex.quote
    return (
        f"{schedule} {q(python)} {q(directory + '/' + BUNDLE)} --config {q(directory + '/' + CONFIG)} "
        f"--log {q(directory + '/' + LOG)} once >/dev/null 2>>{q(directory + '/cron.err')}"
    )


def cron(action: str, mark: str, line: str = "") -> list[str]:
    return ["sh", "-c", CRON_SCRIPT, "watch-cron", action, mark, *([line] if line else [])]


def remove_files(*paths: str) -> list[str]:
    return ["rm", "-f", "--", *paths]


def remove_dir(directory: str) -> list[str]:
    return ["rm", "-rf", "--", directory]
