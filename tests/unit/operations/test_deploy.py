"""The deploy transaction's decisions (tasks/operations/deploy.py), against a fake target
answering with recorded outputs: the unchanged fast path, a failure before the switch, a
failed gate rolled back, a first deploy rolled back, a stale lock."""

from __future__ import annotations

import contextlib
import json

import pytest

from tasks.config.settings import load
from tasks.errors import DeployFailed, ExitCode, RolledBack
from tasks.health.probes import ProbeResult
from tasks.operations import deploy as d
from tasks.operations.lock import LockHeld
from tasks.release import render as r
from tests.unit.facts.recorded import recorded
from tests.unit.operations.fake_target import FakeTarget

RUNNING = recorded("snapshot/running.txt")  # release 20261129T101009Z-be922269, tracker + proxy healthy
RUNNING_SHA = json.loads(RUNNING.split("--- manifest\n")[1].split("--- ps\n")[0])["content_sha256"]
FIRST = recorded("snapshot/first-deploy.txt")
HEALTHY_PS = recorded("services/healthy.txt")
OK = (0, "")


def step(title):
    return contextlib.nullcontext()


def never_render():
    raise AssertionError("a no-op deploy must not render")


@pytest.fixture
def settings(workdir):
    return load("local", root=workdir, environ={})


@pytest.fixture
def candidate(settings):
    return d.Candidate.of(r.render(settings))


def probes(*rounds: bool):
    """A probe runner whose successive rounds pass or fail as given (the last one repeats)."""
    seen = []

    def run():
        ok = rounds[min(len(seen), len(rounds) - 1)]
        seen.append(ok)
        return [ProbeResult("udp tracker", "udp://x via 127.0.0.1", 4, ok, 0.01, "ok" if ok else "timed out")]

    run.rounds = seen
    return lambda ex: run


def opts(**kw):
    return d.DeployOptions(gate_pause=0, **kw)


def answers(snapshot: str, **extra):
    return {
        "snapshot": (0, snapshot),
        "lock": (0, snapshot),  # the look under the lock runs in the lock's round trip
        "unpack": OK,
        "compose config": OK,
        "docker image": OK,
        "switch": OK,
        "docker ps": (0, HEALTHY_PS),
        "inventory": (0, recorded("releases/inventory.txt")),
        "release-lock": OK,
        "append": OK,
        "marker": OK,
        "compose up": OK,
        "compose down": OK,
        **extra,
    }


def test_unchanged_and_recorded_by_the_host_is_one_round_trip(settings):
    target = FakeTarget({"snapshot": (0, RUNNING.replace("RECORDED no", "RECORDED yes"))})
    c = d.Candidate(RUNNING_SHA, ["tracker", "proxy"], never_render)
    out = d.deploy(target, settings, c, opts(), step)
    assert (out.status, out.release, out.previous) == ("unchanged", "20261129T101009Z-be922269", out.release)
    assert target.calls == ["snapshot"]
    assert json.loads(target.argvs[0][7])["result"] == "unchanged"  # the line the host appends


def test_unchanged_not_yet_recorded_appends_the_audit_line_itself(settings):
    target = FakeTarget({"snapshot": (0, RUNNING), "append": OK})
    out = d.deploy(target, settings, d.Candidate(RUNNING_SHA, ["tracker", "proxy"], never_render), opts(), step)
    assert out.status == "unchanged" and target.calls == ["snapshot", "append"]
    assert json.loads(target.argvs[1][5])["release"] == "20261129T101009Z-be922269"


def test_an_unhealthy_service_is_not_unchanged(settings, candidate):
    unhealthy = RUNNING.split("--- ps\n")[0] + "--- ps\n" + recorded("services/unhealthy.txt")
    c = d.Candidate(RUNNING_SHA, ["tracker", "proxy"], lambda: r.render(settings))
    target = FakeTarget(answers(unhealthy))
    out = d.deploy(target, settings, c, opts(), step)
    assert out.status == "deployed" and "unpack" in target.calls


def test_a_changed_release_is_uploaded_switched_gated_and_recorded(settings, candidate):
    target = FakeTarget(answers(RUNNING))
    runner = probes(False, True)
    out = d.deploy(target, settings, candidate, opts(probes=runner), step)
    assert out.status == "deployed" and out.previous == "20261129T101009Z-be922269"
    assert target.calls == [
        *("snapshot", "guard", "lock", "unpack", "compose config", "docker image", "switch", "docker ps"),
        *("inventory", "release-lock"),
    ]
    assert runner(None).rounds == [False, True]  # the gate retried one round
    record = json.loads(target.argvs[target.calls.index("inventory")][6])
    assert record["result"] == "deployed" and record["release"] == out.release and record["previous"] == out.previous
    assert target.fed and target.fed[0][:2] == b"\x1f\x8b"  # one gzip archive


def test_a_failure_before_the_switch_leaves_the_running_release(settings, candidate):
    target = FakeTarget(answers(RUNNING, **{"compose config": (15, "")}, rm=OK))
    with pytest.raises(DeployFailed) as info:
        d.deploy(target, settings, candidate, opts(), step)
    assert info.value.code == ExitCode.DEPLOY_FAILED and "switch" not in target.calls
    record = json.loads(target.argvs[target.calls.index("append")][5])
    assert record["result"] == "failed" and record["previous"] == "20261129T101009Z-be922269"
    assert target.argvs[target.calls.index("rm")] == ["rm", "-rf", "--", f"/opt/torrust/releases/{record['release']}"]
    assert target.calls[-3:] == ["rm", "append", "release-lock"]


def test_a_failed_gate_rolls_back_to_the_previous_release(settings, candidate):
    target = FakeTarget(answers(RUNNING))
    runner = probes(False)
    with pytest.raises(RolledBack) as info:
        d.deploy(target, settings, candidate, opts(probes=runner, gate_rounds=3), step)
    assert info.value.code == ExitCode.ROLLED_BACK and "rolled back to 20261129T101009Z-be922269" in info.value.message
    assert runner(None).rounds == [False, False, False]
    after_gate = target.calls[target.calls.index("docker ps") + 1 :]
    assert after_gate == ["marker", "switch", "compose up", "append", "release-lock"]
    switch_back = target.argvs[target.calls.index("switch", target.calls.index("marker"))]
    assert switch_back[4] == "releases/20261129T101009Z-be922269"
    record = json.loads(target.argvs[-2][5])
    assert record["result"] == "rolled_back" and "timed out" in record["error"]


def test_a_first_deploy_that_fails_is_stopped_not_switched_back(settings, candidate):
    target = FakeTarget(answers(FIRST, **{"docker ps": (0, recorded("services/unhealthy.txt"))}, rm=OK))
    with pytest.raises(RolledBack, match=r"rolled back to nothing \(first deploy\)"):
        d.deploy(target, settings, candidate, opts(), step)
    tail = target.calls[target.calls.index("marker") :]
    assert tail == ["marker", "rm", "compose down", "append", "release-lock"]  # rm -f current, down, audit


def test_a_stale_lock_is_named_and_taken_over_only_when_asked(settings, candidate):
    lock = recorded("lock/held.txt")
    stale = {**answers(RUNNING), "lock": (1, ""), "inspect": (0, lock), "test": (1, "")}
    target = FakeTarget(stale)
    with pytest.raises(LockHeld) as info:
        d.deploy(target, settings, candidate, opts(), step)
    assert info.value.stale and info.value.code == ExitCode.LOCK_HELD and "unpack" not in target.calls
    took = iter([(1, ""), (0, RUNNING)])
    target = FakeTarget({**stale, "lock": lambda argv: next(took), "rm": OK})
    out = d.deploy(target, settings, candidate, opts(force_unlock=True), step)
    assert out.status == "deployed" and target.calls[:6] == ["snapshot", "guard", "lock", "inspect", "test", "rm"]


def test_a_live_lock_is_never_taken_over(settings, candidate):
    live = {**answers(RUNNING), "lock": (1, ""), "inspect": (0, recorded("lock/held.txt")), "test": OK}
    target = FakeTarget(live)
    with pytest.raises(LockHeld) as info:
        d.deploy(target, settings, candidate, opts(force_unlock=True), step)
    assert not info.value.stale and "rm" not in target.calls


def test_after_a_lost_connection_the_rollback_waits_for_the_abandoned_up(settings, candidate):
    """The `up` a dropped connection started keeps running on the host: the rollback waits
    for it before its own `up` (two of them race for container names)."""
    switches = iter([EOFError("connection lost")])

    def switch(argv):
        raise next(switches)

    fresh = FakeTarget(answers(RUNNING, **{"compose-idle": OK}))
    target = FakeTarget(answers(RUNNING, switch=switch))
    with pytest.raises(RolledBack):
        d.deploy(target, settings, candidate, opts(), step, reconnect=lambda: fresh)
    assert fresh.calls[:4] == ["marker", "compose-idle", "switch", "compose up"]
    assert fresh.argvs[1][4:] == [settings.compose_project, "360"]
