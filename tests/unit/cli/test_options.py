"""tasks/cli/options.py: the task decorator every task uses."""

from __future__ import annotations

import copy

from invoke import Collection

import tasks
from tasks.cli.options import Task


def _tasks(coll: Collection):
    yield from coll.tasks.values()
    for sub in coll.collections.values():
        yield from _tasks(sub)


def test_every_task_uses_the_project_s_task_class_and_no_short_flag_is_a_dash():
    found = list(_tasks(tasks.ns))
    assert len(found) > 40
    for task in found:
        assert isinstance(task, Task), task.name
        shorts = {n for a in copy.deepcopy(task).get_arguments() for n in a.names if len(n) == 1}
        assert "-" not in shorts, task.name
    deploy = tasks.ns.collections["app"].tasks["deploy"]
    names = {a.name: a.names for a in copy.deepcopy(deploy).get_arguments()}
    assert names["no_upgrade_backup"] == ("no-upgrade-backup", "u")
