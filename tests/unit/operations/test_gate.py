"""The health gate (tasks/operations/gate.py): probe rounds, give-up, Compose's view."""

from __future__ import annotations

import pytest

from tasks.config.settings import load
from tasks.health.probes import ProbeResult
from tasks.operations import gate
from tests.unit.facts.recorded import recorded
from tests.unit.operations.fake_target import FakeTarget


def result(ok: bool, name: str = "http tracker", required: bool = True) -> ProbeResult:
    return ProbeResult(name, "tracker.x via 127.0.0.1", 4, ok, 0.01, "ok" if ok else "HTTP 502", required)


def test_rounds_until_every_required_probe_passes():
    rounds = iter([[result(False)], [result(False), result(True)], [result(True), result(False, required=False)]])
    slept = []
    assert gate.probe_gate(lambda: next(rounds), rounds=5, pause=1.5, sleep=slept.append) == "2 probes passed"
    assert slept == [1.5, 1.5]


def test_the_last_rounds_failures_are_named():
    slept = []
    with pytest.raises(gate.HealthGateFailed) as info:
        gate.probe_gate(lambda: [result(False), result(False, "api stats")], rounds=3, pause=2, sleep=slept.append)
    assert slept == [2, 2]  # no pause after the last round
    assert info.value.message == (
        "probes failed: http tracker tracker.x via 127.0.0.1: HTTP 502; api stats tracker.x via 127.0.0.1: HTTP 502"
    )


def test_give_up_stops_at_once():
    calls = []
    with pytest.raises(gate.HealthGateFailed):
        gate.probe_gate(lambda: calls.append(1) or [result(False)], rounds=5, give_up=lambda: True, sleep=calls.append)
    assert calls == [1]


def test_compose_health(workdir):
    s = load("local", root=workdir, environ={})
    assert set(gate.compose_health(FakeTarget({"docker ps": (0, recorded("services/healthy.txt"))}), s, ["tracker"]))
    bad = FakeTarget({"docker ps": (0, recorded("services/unhealthy.txt"))})
    with pytest.raises(gate.HealthGateFailed, match=r"services not healthy: tracker \(running/unhealthy\)"):
        gate.compose_health(bad, s, ["tracker"])
