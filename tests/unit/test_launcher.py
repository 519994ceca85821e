"""The launcher (tasks.py): the exit code when Python is too old or the venv cannot be
made, and pip kept quiet unless it fails.

The launcher is loaded from its file under another module name (as `tasks` it would hand
over the package's collection). pip and `python -m venv` are replaced by a stand-in
executable (a shell script standing in for the venv's python) so no package is installed:
it prints what pip prints on a first run (warnings) and exits as told.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from tasks.errors import ExitCode
from tests.conftest import ROOT

STANDIN_PIP = """#!/bin/sh
# stand-in for the venv's python running `-m pip install`: pip's usual first-run chatter
echo "WARNING: Retrying (Retry(total=4)) after connection broken: cache entry stale" >&2
echo "DEPRECATION: a setup.py install is deprecated" >&2
echo "Collecting invoke==2.2.1"
exit {status}
"""


@pytest.fixture
def launcher(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("launcher_under_test", ROOT / "tasks.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("invoke==2.2.1\n")
    monkeypatch.setattr(mod, "VENV", str(venv))
    monkeypatch.setattr(mod, "PYTHON", str(venv / "bin" / "python"))
    monkeypatch.setattr(mod, "STAMP", str(venv / ".requirements.sha256"))
    monkeypatch.setattr(mod, "REQUIREMENTS", str(requirements))
    return mod


def standin_python(launcher, status: int) -> None:
    path = Path(launcher.PYTHON)
    path.write_text(STANDIN_PIP.format(status=status))
    path.chmod(0o755)


def test_the_launcher_code_is_the_prerequisite_exit_code(launcher):
    assert launcher.PREREQUISITE == ExitCode.PREREQUISITE == 4


def test_python_too_old_exits_4_and_says_what_is_needed(launcher, monkeypatch, capsys):
    monkeypatch.setattr(sys, "version_info", (3, 10, 12, "final", 0))
    with pytest.raises(SystemExit) as info:
        launcher.main()
    assert info.value.code == 4
    assert "Python 3.11 or newer is required (found 3.10)" in capsys.readouterr().err


def test_a_successful_install_keeps_pip_quiet(launcher, capfd):
    standin_python(launcher, 0)
    launcher._bootstrap()
    err = capfd.readouterr().err
    assert "preparing .venv" in err
    assert "WARNING" not in err and "DEPRECATION" not in err and "Collecting" not in err
    assert Path(launcher.STAMP).read_text().strip() == launcher._digest()
    capfd.readouterr()
    launcher._bootstrap()  # stamped: nothing to do, nothing printed
    assert capfd.readouterr().err == ""


def test_a_failed_install_shows_pips_output_and_exits_4(launcher, capfd):
    standin_python(launcher, 1)
    with pytest.raises(SystemExit) as info:
        launcher._bootstrap()
    assert info.value.code == 4
    err = capfd.readouterr().err
    assert "WARNING: Retrying" in err and "Collecting invoke==2.2.1" in err
    assert "installing the pinned dependencies failed (pip's output above)" in err
    assert not Path(launcher.STAMP).exists()  # the next run tries again


def test_a_python_without_venv_support_is_named_with_the_package_to_install(launcher, monkeypatch, capfd):
    real_run = subprocess.run

    def no_ensurepip(argv, **kw):  # stand-in for Debian's python3 without python3-venv
        assert argv[1:3] == ["-m", "venv"], argv
        return real_run(
            ["sh", "-c", "echo 'The virtual environment was not created: ensurepip is not available' >&2; exit 1"], **kw
        )

    monkeypatch.setattr(launcher.subprocess, "run", no_ensurepip)
    with pytest.raises(SystemExit) as info:
        launcher._bootstrap()
    assert info.value.code == 4
    err = capfd.readouterr().err
    assert "ensurepip is not available" in err and "apt-get install python3-venv" in err
