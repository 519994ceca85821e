"""tasks/facts/readiness.py: infra.wait's probe of a new host."""

from __future__ import annotations

import pytest

from tasks.facts import readiness
from tests.unit.facts.recorded import recorded


@pytest.mark.parametrize(
    ("name", "marker", "state"),
    [
        ("done", True, "done"),
        ("error", False, "error"),
        ("running", False, "running"),
        ("no-cloud-init", False, "absent"),
    ],
)
def test_states(name, marker, state):
    r = readiness.parse(recorded(f"readiness/{name}.txt"))
    assert (r.marker, r.cloud_init) == (marker, state)


def test_the_log_tail_is_kept():
    assert readiness.parse(recorded("readiness/error.txt")).log_tail.endswith("E: boom")


def test_an_odd_answer_is_never_success():
    r = readiness.parse(recorded("readiness/odd.txt"))
    assert (r.marker, r.cloud_init) == (False, "running")
