"""The deploy transaction's decisions (tasks/operations/deploy.py), against a fake target
answering with recorded outputs: the unchanged fast path, a failure before the switch, a
failed gate rolled back, a first deploy rolled back, a stale lock."""

from __future__ import annotations

import contextlib
import hashlib
import json

import pytest

from tasks.config.settings import load
from tasks.errors import DeployFailed, ExitCode, RemovalRefused, RolledBack
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
BACKUP_SCRIPT = "/opt/torrust/current/bin/torrust-backup"
BACKUP_OK = (0, recorded("backup-result/backup.json"))  # backup 20261129T100444Z-e04a
OK = (0, "")
# the settings of the recorded stack: its ports and images (a deploy with other ones
# would remove its ports, and change its images)
RECORDED_STACK = {
    "TORRUST_UDP_TRACKERS": "[::]:16969",
    "TORRUST_HTTP_PORT": "18080",
    "TORRUST_TRACKER_IMAGE": "torrust-test/tracker-standin:1",
    "TORRUST_CADDY_IMAGE": "torrust-test/caddy:2.6",
}


def image_id(ref: str) -> str:
    return "sha256:" + hashlib.sha256(ref.encode()).hexdigest()


def inspect_images(moved: dict[str, str] | None = None):
    """An answer to `docker image inspect --format ... REFS`: one line per ref, its id a
    hash of the ref (or `moved[ref]`: the tag now points at that image)."""
    moved = moved or {}
    return lambda argv: (0, "".join(f"{moved.get(ref, image_id(ref))}|[]\n" for ref in argv[5:]))


def step(title):
    return contextlib.nullcontext()


def never_render():
    raise AssertionError("a no-op deploy must not render")


@pytest.fixture
def settings(workdir):
    return load("local", root=workdir, environ=RECORDED_STACK)


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
        "docker image": inspect_images(),
        "switch": OK,
        "write": OK,  # images.json, then the switch and `up` in the same round trip
        "docker ps": (0, HEALTHY_PS),
        "inventory": (0, recorded("releases/inventory.txt")),
        "release-lock": OK,
        "append": OK,
        "marker": OK,
        "compose up": OK,
        "compose down": OK,
        BACKUP_SCRIPT: BACKUP_OK,
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
        *("snapshot", "guard", "lock", "unpack", "compose config", "docker image", "write", "docker ps"),
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


# ------------------------------------------------------------------------ upgrades (issues #15, #18)
# the same release, its tracker tag moved (a backup exists; no cron entry, as these settings have no backups)
MOVED = recorded("snapshot/moved-tag.txt").replace("CRON yes", "CRON no")


def test_a_moved_tag_is_not_unchanged_and_upgrades_with_a_backup_first(settings):
    target = FakeTarget(answers(MOVED))
    c = d.Candidate(RUNNING_SHA, ["tracker", "proxy"], lambda: r.render(settings))
    out = d.deploy(target, settings, c, opts(), step)
    assert out.status == "deployed" and [x["service"] for x in out.image_changes] == ["tracker"]
    assert out.pre_upgrade_backup == "20261129T100444Z-e04a"
    assert target.calls.index(BACKUP_SCRIPT) < target.calls.index("write")  # before the switch
    backup = target.argvs[target.calls.index(BACKUP_SCRIPT)]
    assert backup[1:3] == ["backup", "--lock-token"] and backup[4:7] == ["--reason", "before-upgrade", "--no-retention"]
    written = json.loads(target.argvs[target.calls.index("write")][5])
    assert written["pre_upgrade_backup"]["id"] == "20261129T100444Z-e04a"
    assert written["pre_upgrade_backup"]["from_release"] == "20261129T101009Z-be922269"
    record = json.loads(target.argvs[target.calls.index("inventory")][6])
    assert record["pre_upgrade_backup"] == out.pre_upgrade_backup and record["image_changes"] == ["tracker"]


def test_without_the_upgrade_backup_no_backup_is_taken(settings):
    target = FakeTarget(answers(MOVED))
    c = d.Candidate(RUNNING_SHA, ["tracker", "proxy"], lambda: r.render(settings))
    out = d.deploy(target, settings, c, opts(upgrade_backup=False), step)
    assert out.pre_upgrade_backup is None and BACKUP_SCRIPT not in target.calls


def test_a_failed_pre_upgrade_backup_stops_before_the_switch(settings):
    failed = (4, '{"ok": false, "code": 4, "error": "the mysql container is not running"}')
    target = FakeTarget(answers(MOVED, **{BACKUP_SCRIPT: failed}, rm=OK))
    c = d.Candidate(RUNNING_SHA, ["tracker", "proxy"], lambda: r.render(settings))
    with pytest.raises(DeployFailed, match="backup before the upgrade of tracker failed") as info:
        d.deploy(target, settings, c, opts(), step)
    assert "--no-upgrade-backup" in info.value.hint and "write" not in target.calls and "switch" not in target.calls
    record = json.loads(target.argvs[target.calls.index("append")][5])
    assert record["result"] == "failed" and "pre-upgrade backup" in record["error"]


def test_the_first_deploy_with_backups_on_takes_a_baseline_after_the_gate(workdir):
    s = load("local", root=workdir, environ={**RECORDED_STACK, "TORRUST_BACKUP": "true"})
    target = FakeTarget(answers(FIRST))
    out = d.deploy(target, s, d.Candidate.of(r.render(s)), opts(), step)
    assert out.first_deploy and out.baseline_backup == "20261129T100444Z-e04a" and out.baseline_error is None
    assert target.calls.index("docker ps") < target.calls.index(BACKUP_SCRIPT) < target.calls.index("inventory")
    assert target.argvs[target.calls.index(BACKUP_SCRIPT)][5] == "baseline"
    assert json.loads(target.argvs[target.calls.index("inventory")][6])["baseline_backup"] == out.baseline_backup


def test_a_failed_baseline_keeps_the_healthy_release(workdir):
    s = load("local", root=workdir, environ={**RECORDED_STACK, "TORRUST_BACKUP": "true"})
    full = (4, '{"ok": false, "code": 4, "error": "No space left on device"}')
    target = FakeTarget(answers(FIRST, **{BACKUP_SCRIPT: full}))
    out = d.deploy(target, s, d.Candidate.of(r.render(s)), opts(), step)
    assert out.status == "deployed" and out.baseline_error == "No space left on device"
    assert out.as_dict()["ok"] is False and "marker" not in target.calls  # not rolled back


def test_no_baseline_when_the_host_has_a_backup(workdir):
    s = load("local", root=workdir, environ={**RECORDED_STACK, "TORRUST_BACKUP": "true"})
    has_backup = RUNNING.replace("DOCKER 0\n", "DOCKER 0\nCRON yes\nBACKUPS yes\n")
    target = FakeTarget(answers(has_backup))
    out = d.deploy(target, s, d.Candidate.of(r.render(s)), opts(), step)
    assert out.baseline_backup is None and BACKUP_SCRIPT not in target.calls


def test_a_removal_is_refused_before_the_lock(workdir):
    s = load("local", root=workdir, environ={**RECORDED_STACK, "TORRUST_HTTP_PORT": "18081"})
    target = FakeTarget(answers(RUNNING))
    with pytest.raises(RemovalRefused) as info:
        d.deploy(target, s, d.Candidate.of(r.render(s)), opts(), step)
    assert info.value.removals == ["18080/tcp"] and target.calls == ["snapshot"]
    out = d.deploy(FakeTarget(answers(RUNNING)), s, d.Candidate.of(r.render(s)), opts(allow_removal=True), step)
    assert out.removed == ["18080/tcp"] and out.removal_allowed_by == "--allow-removal"


def test_after_a_lost_connection_the_rollback_waits_for_the_abandoned_up(settings, candidate):
    """The `up` a dropped connection started keeps running on the host: the rollback waits
    for it before its own `up` (two of them race for container names)."""
    switches = iter([EOFError("connection lost")])

    def switch(argv):
        raise next(switches)

    fresh = FakeTarget(answers(RUNNING, **{"compose-idle": OK}))
    target = FakeTarget(answers(RUNNING, write=switch))  # images.json, switch and `up`: one command
    with pytest.raises(RolledBack):
        d.deploy(target, settings, candidate, opts(), step, reconnect=lambda: fresh)
    assert fresh.calls[:4] == ["marker", "compose-idle", "switch", "compose up"]
    assert fresh.argvs[1][4:] == [settings.compose_project, "360"]
