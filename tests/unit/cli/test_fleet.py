"""The end of a fleet task (tasks/cli/fleet.py): one JSON document, the table, where each
host stands, and the exit code that says all, some or none."""

from __future__ import annotations

import json

import pytest

from tasks.cli import fleet as f
from tasks.errors import ExitCode, FleetFailed, FleetPartial
from tasks.fleet.declaration import RolloutOptions
from tasks.fleet.rollout import HostResult, Rollout

DONE = HostResult("fa", "torrust@h1", ok=True, status="deployed", code=0, duration=5.0, detail={"release": "R1"})
FAILED = HostResult(
    "fb", "torrust@h2", status="unreachable", code=10, error="cannot connect to torrust@h2", duration=3.5
)
WAITING = HostResult("fc", "torrust@h3", error="not started: fb failed (unreachable); untouched")


def rollout(*hosts, **kw):
    return Rollout("public", RolloutOptions(1, 0, False), list(hosts), **kw)


def test_all_hosts_done_exits_zero(capsys):
    f._finish(rollout(DONE), {}, lambda d: f._text(rollout(DONE), "deploy"), "deployed", True)
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] is True and doc["result"] == "all" and doc["hosts"][0]["release"] == "R1"


def test_some_hosts_exit_70_naming_each_failure(capsys):
    r = rollout(DONE, FAILED, WAITING, stopped="fb failed (unreachable)")
    with pytest.raises(FleetPartial) as err:
        f._finish(r, {}, lambda d: f._text(r, "deploy"), "deployed", False)
    assert err.value.code == ExitCode.FLEET_PARTIAL == 70
    assert err.value.message == "fleet 'public': 1 of 3 hosts deployed; fb unreachable (exit 10); fc not started"
    table = capsys.readouterr().out.splitlines()
    assert table[2].split() == ["fa", "torrust@h1", "deployed", "R1", "5.0s"]
    assert table[3].split()[:3] == ["fb", "torrust@h2", "unreachable"] and table[3].endswith(
        "cannot connect to torrust@h2"
    )
    assert table[4].split()[:4] == ["fc", "torrust@h3", "not_started", "-"]


def test_no_host_exits_71():
    with pytest.raises(FleetFailed) as err:
        f._finish(rollout(FAILED, WAITING), {}, lambda d: "", "deployed", False)
    assert err.value.code == 71


def test_an_interrupted_rollout_prints_then_takes_the_ctrl_c_path(capsys):
    with pytest.raises(KeyboardInterrupt):
        f._finish(rollout(DONE, WAITING, interrupted=True), {}, lambda d: "", "deployed", True)
    assert json.loads(capsys.readouterr().out)["interrupted"] is True


def test_where_each_host_stands():
    text = f._standing(rollout(DONE, FAILED, WAITING, stopped="fb failed (unreachable)", duration=9.4))
    assert text.splitlines() == [
        "some: 1 of 3 hosts succeeded in 9.4s",
        "stopped: fb failed (unreachable)",
        "done, and they keep it: fa (R1)",
        "failed: fb (unreachable, exit 10)",
        "not started, untouched: fc",
    ]


def test_drift_is_marked_in_the_releases_table():
    behind = HostResult("fb", "t", ok=True, status="drift", detail={"current": "R2", "drift": ["content"]})
    in_step = HostResult("fa", "t", ok=True, status="in step", detail={"current": "R1", "drift": []})
    rows = f._text(rollout(in_step, behind), "releases").splitlines()
    assert rows[2].startswith("fa ") and rows[2].endswith("  -")
    assert rows[3].startswith("fb *") and rows[3].endswith("content")
