"""The one path rule (tasks/facts/paths.py) and the host script's copy of it agree on
every recorded name; `inside` resolves within its directory and refuses symlinks out."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tasks.errors import ExitCode, UnsafeName
from tasks.facts import paths
from tests.unit.operations.test_backup import _script

RECORDED = Path(__file__).parent / "recorded"
NAMES = json.loads((RECORDED / "flat-names/names.json").read_text())


@pytest.mark.parametrize(("name", "allowed"), NAMES, ids=[repr(n)[:40] for n, _ in NAMES])
def test_the_rule_on_both_sides(name, allowed):
    assert (paths.name_problem(name) is None) is allowed
    assert (_script().name_problem(name) is None) is allowed  # the host script's copy
    assert paths.name_problem(name) == _script().name_problem(name)  # the same reason, word for word


@pytest.mark.parametrize("value", [None, 7, ["a"], b"name"])
def test_a_name_must_be_a_string(value):
    with pytest.raises(UnsafeName, match="not a string"):
        paths.check_name(value, what="the backup file")


def test_the_error_names_what_the_value_and_what_is_allowed():
    with pytest.raises(UnsafeName) as info:
        paths.check_name("../../.ssh/authorized_keys", what="files[1].path")
    err = info.value
    assert err.code == ExitCode.UNTRUSTED == 14
    assert err.message == (
        "files[1].path '../../.ssh/authorized_keys' contains '/' (a directory or an absolute path, not a flat name)"
    )
    assert "one flat file name" in err.hint and "nothing was read or written" in err.hint


def test_inside_joins_and_resolves(tmp_path):
    (tmp_path / "a.gz").write_bytes(b"x")
    assert paths.inside(tmp_path, "a.gz", what="f") == (tmp_path / "a.gz").resolve()
    assert paths.inside(tmp_path, "not-yet", what="f") == (tmp_path / "not-yet").resolve()
    os.symlink("a.gz", tmp_path / "alias")  # a symlink that stays inside: its target, inside
    assert paths.inside(tmp_path, "alias", what="f") == (tmp_path / "a.gz").resolve()


@pytest.mark.parametrize(
    ("target", "problem"),
    [
        ("/etc/passwd", "symlink leading out"),
        ("../outside", "symlink leading out"),
        (".", "symlink leading out"),
        ("loop", "cannot be resolved"),
    ],
)
def test_inside_refuses_symlinks_that_leave(tmp_path, target, problem):
    d = tmp_path / "backup"
    d.mkdir()
    (tmp_path / "outside").write_text("the operator's file")
    os.symlink(target, d / ("loop" if target == "loop" else "evil"))
    name = "loop" if target == "loop" else "evil"
    with pytest.raises(UnsafeName, match=problem):
        paths.inside(d, name, what="the backup file")
    script = _script()
    with pytest.raises(script.Failure) as info:
        script.inside(d, name, "the backup file")
    assert info.value.code == script.EXIT_UNTRUSTED


def test_remote_join():
    assert paths.remote_join("/opt/torrust/backups/X", "database.sql.zst", what="f") == (
        "/opt/torrust/backups/X/database.sql.zst"
    )
    with pytest.raises(UnsafeName):
        paths.remote_join("/opt/torrust/backups/X", "/home/torrust/.ssh/authorized_keys", what="f")
