"""The python fact's parser on recorded outputs (tests/unit/facts/recorded/python/)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.errors import ExitCode, MalformedFact
from tasks.facts import python as fact

RECORDED = Path(__file__).parent / "recorded" / "python"


@pytest.mark.parametrize(
    ("name", "version", "sqlite", "usable"),
    [
        ("debian12.txt", (3, 11, 2), (3, 40, 1), True),
        ("ubuntu2404.txt", (3, 12, 3), (3, 45, 1), True),
        ("debian11-too-old.txt", (3, 9, 2), (3, 34, 1), False),
    ],
)
def test_recorded_outputs(name, version, sqlite, usable):
    f = fact.parse((RECORDED / name).read_text())
    assert (f.version, f.sqlite, f.usable) == (version, sqlite, usable)


@pytest.mark.parametrize("name", ["empty.txt", "hostile-python2.txt", "hostile-trailing.txt"])
def test_odd_outputs_are_a_named_error(name):
    with pytest.raises(MalformedFact) as err:
        fact.parse((RECORDED / name).read_text())
    assert err.value.code == ExitCode.UNTRUSTED and "python fact: unexpected output" in err.value.message


def test_the_command_is_argv_only():
    assert fact.command("/usr/bin/python3")[:2] == ["/usr/bin/python3", "-c"]
