"""Commands of the remote watch: argv lists, the crontab line, the cron script run for
real against a stand-in `crontab` (this machine has no cron; the SSH test host runs the
real one in tests/integration/test_watch_remote.py)."""

from __future__ import annotations

import os
import shlex
import stat
import subprocess
from pathlib import Path

from tasks.commands import watch as cmd


def test_runner_and_cron_line():
    assert cmd.runner("python3", "/home/t/.torrust-watch/prod", "once") == [
        "python3",
        "/home/t/.torrust-watch/prod/torrust-watch.pyz",
        "--config",
        "/home/t/.torrust-watch/prod/watch.json",
        "once",
    ]
    line = cmd.cron_line("*/5 * * * *", "python3", "/home/t/.torrust-watch/prod")
    assert line == (
        "*/5 * * * * python3 /home/t/.torrust-watch/prod/torrust-watch.pyz "
        "--config /home/t/.torrust-watch/prod/watch.json --log /home/t/.torrust-watch/prod/watch.log "
        "once >/dev/null 2>>/home/t/.torrust-watch/prod/cron.err"
    )
    assert shlex.split(line)[5:7] == ["python3", "/home/t/.torrust-watch/prod/torrust-watch.pyz"]
    assert cmd.make_private_dir("/d") == ["mkdir", "-p", "-m", "700", "--", "/d"]


def _fake_crontab(tmp_path: Path) -> dict[str, str]:
    """A STAND-IN for crontab(1): `-l` prints the table file, `-` replaces it; strict about
    its arguments."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    script = bindir / "crontab"
    script.write_text(
        "#!/bin/sh\n"
        'table="$CRONTAB_FILE"\n'
        'case "$*" in\n'
        '  -l) [ -f "$table" ] || { echo "no crontab for user" >&2; exit 1; }; cat "$table" ;;\n'
        '  -) cat > "$table" ;;\n'
        '  *) echo "crontab stand-in: unexpected arguments $*" >&2; exit 64 ;;\n'
        "esac\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}", "CRONTAB_FILE": str(tmp_path / "table")}


def test_the_cron_script_adds_replaces_shows_and_removes_only_its_block(tmp_path):
    env = _fake_crontab(tmp_path)
    table = tmp_path / "table"
    table.write_text("MAILTO=ops@example.org\n\n17 3 * * * /usr/local/bin/other-job\n")

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(cmd.cron(*args), env=env, capture_output=True, text=True)

    assert run("install", "torrust-watch prod /d", "* * * * * one").returncode == 0
    assert run("install", "torrust-watch prod /d", "*/5 * * * * two").returncode == 0  # replaces
    assert run("install", "torrust-watch staging /e", "* * * * * three").returncode == 0
    text = table.read_text()
    assert text.startswith("MAILTO=ops@example.org\n\n17 3 * * * /usr/local/bin/other-job\n")
    assert "one" not in text and text.count("*/5 * * * * two") == 1 and "three" in text
    shown = run("show", "torrust-watch prod /d")
    assert (shown.returncode, shown.stdout) == (0, "*/5 * * * * two\n")
    assert run("remove", "torrust-watch prod /d").returncode == 0
    assert "two" not in table.read_text() and "three" in table.read_text() and "other-job" in table.read_text()
    assert run("show", "torrust-watch prod /d").returncode == 1
    bad = run("frobnicate", "x")
    assert bad.returncode == 2 and "unknown action 'frobnicate'" in bad.stderr


def test_the_cron_script_starts_an_empty_table(tmp_path):
    env = _fake_crontab(tmp_path)
    assert subprocess.run(cmd.cron("install", "m", "* * * * * x"), env=env, check=False).returncode == 0
    assert (tmp_path / "table").read_text() == "# >>> m (torrust-deploy, do not edit)\n* * * * * x\n# <<< m\n"
