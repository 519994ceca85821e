"""tasks/facts/lock.py: the host lock as the target shows it."""

from __future__ import annotations

from tasks.facts import lock
from tests.unit.facts.recorded import recorded


def test_free():
    assert lock.parse(recorded("lock/free.txt")) == lock.LockInfo(False)


def test_held_by_a_deploy():
    info = lock.parse(recorded("lock/held.txt"))
    assert info.held and info.info["command"] == "app.deploy" and info.pids == [info.info["guard_pid"]]


def test_held_without_details_or_with_garbage_has_no_pids():
    assert lock.parse(recorded("lock/held-no-info.txt")) == lock.LockInfo(True, {})
    garbage = lock.parse(recorded("lock/held-garbage.txt"))
    assert garbage.held and garbage.pids == []
