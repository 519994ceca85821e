"""tasks/cli/test.py: test.all runs the unit tests on two workers, then the integration tests
serially, then lint, every part even when an earlier one failed, and fails naming each part
that failed."""

from __future__ import annotations

import sys

import invoke
import pytest
from invoke.exceptions import Exit, UnexpectedExit
from invoke.runners import Result

from tasks.cli import test as t

UNIT = f"{sys.executable} -m pytest -m 'not integration' -n 2 --dist loadfile"
INTEGRATION = f"{sys.executable} -m pytest -m integration"


class Recorder(invoke.Context):
    """STAND-IN for Invoke's context: records each command instead of running it; the
    commands starting with one of `failing` exit 1 (raising, as Invoke does, unless warn)."""

    commands: list[str] = None  # (class attributes: Invoke's context keeps other names as config)
    envs: list[dict] = None
    failing: tuple[str, ...] = ()

    def __init__(self, failing: tuple[str, ...] = ()):
        super().__init__()
        self.commands, self.envs, self.failing = [], [], failing

    def run(self, command, warn=False, **kwargs):
        self.commands.append(command)
        self.envs.append(kwargs.get("env") or {})
        result = Result(command=command, exited=1 if command.startswith(self.failing) else 0)
        if result.exited and not warn:
            raise UnexpectedExit(result)
        return result


def test_unit_runs_on_two_workers_and_integration_serially():
    c = Recorder()
    t.unit(c)
    t.unit(c, k="watch and not loop")
    t.integration(c)
    assert c.commands == [UNIT, f"{UNIT} -k 'watch and not loop'", INTEGRATION]


def test_the_test_runs_write_bytecode_even_under_pythondontwritebytecode():
    c = Recorder()
    t.unit(c)
    t.integration(c)
    # an empty value turns the variable off for the child (Python reads a non-empty string)
    assert [e.get("PYTHONDONTWRITEBYTECODE") for e in c.envs] == ["", ""]


def test_all_runs_unit_then_integration_then_lint(capsys):
    c = Recorder()
    t.all_(c)
    assert c.commands[:2] == [UNIT, INTEGRATION]
    assert c.commands[2:4] == [f"{sys.executable} -m ruff check .", f"{sys.executable} -m ruff format --check ."]
    assert c.commands[4].startswith("shellcheck ") and len(c.commands) == 5
    assert capsys.readouterr().out.endswith("test.all: unit tests, integration tests and lint passed\n")


@pytest.mark.parametrize(
    ("failing", "named"),
    [
        ((UNIT,), "unit tests"),
        ((INTEGRATION,), "integration tests"),
        ((UNIT, "shellcheck"), "unit tests, lint"),
        ((UNIT, INTEGRATION), "unit tests, integration tests"),
    ],
)
def test_all_runs_every_part_and_names_each_that_failed(failing, named, capsys):
    c = Recorder(failing)
    with pytest.raises(Exit) as exc:
        t.all_(c)
    assert exc.value.message == f"test.all: failed: {named}" and exc.value.code == 1
    assert c.commands[:2] == [UNIT, INTEGRATION] and c.commands[-1].startswith("shellcheck ")
    assert "passed" not in capsys.readouterr().out
