"""Fleets end to end (issue #20): three real SSH test hosts deployed and operated as one,
through the CLI, with real Compose and real UDP and HTTP announces.

The three hosts are shared by the module (starting them is the slow part); each test
brings the fleet to the state it needs first (`settle`), so tests do not depend on each
other's order. A fleet-wide change is a value in the checkout's shared `.env`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from tasks.config.settings import load
from tasks.operations.lock import HostLock
from tasks.release.layout import Layout
from tasks.runner.target import connect_executor
from tests.conftest import clean_environ, snapshot
from tests.integration.conftest import TEST_IMAGES, docker
from tests.integration.fleet import Fleet

# The test hosts share this machine's kernel, whose conntrack and firewall settings are not
# what a deploy asks of a host: the network group judges the machine, not the fleet.
NOT_THE_MACHINE = ("--skip", "network")
DUPLICATE_AND_GHOST = """
[fleet.ghost]
environments = ["fa", "fz"]

[fleet.dup]
environments = ["fa", "fdup"]
"""


@pytest.fixture(scope="module")
def fleet(images, tmp_path_factory):
    prefix = "fl" + os.urandom(3).hex()
    f = Fleet(tmp_path_factory.mktemp("fleet"), images, prefix, fleets=DUPLICATE_AND_GHOST)
    f.start()
    # 'fdup': another environment on fa's host and deploy root (only in the fleet 'dup')
    (f.cwd / ".env.fdup").write_text((f.cwd / ".env.fa").read_text().replace(f.members[0].project, prefix + "x"))
    yield f
    f.remove()


# Tags of this module's own (other suites' tags may come and go meanwhile): copies of the
# v3.0.0 release tag in registries that never existed, so the tool knows the release.
OWN = os.urandom(3).hex()
BROKEN_COPY = f"fleet{OWN}-broken.test:5999/torrust/tracker:v3.0.0"
DRIFT_COPY = f"fleet{OWN}-drift.test:5999/torrust/tracker:v3.0.0"


@pytest.fixture(scope="module")
def unhealthy_image(images):
    """A tracker that runs but never becomes healthy (the image test_deploy.py builds),
    tagged as a registry copy of a known release."""
    ref = "torrust-test/never-healthy:1"
    if docker("image", "inspect", ref, check=False).returncode != 0:
        dockerfile = (
            f'FROM {images["base"]}\nHEALTHCHECK --interval=1s --retries=1 CMD false\nCMD ["sleep", "infinity"]\n'
        )
        subprocess.run(["docker", "build", "-q", "-t", ref, "-"], input=dockerfile, text=True, check=True, timeout=120)
    docker("tag", ref, BROKEN_COPY)
    yield BROKEN_COPY
    docker("image", "rm", BROKEN_COPY, check=False)  # the tag only


def settle(fleet: Fleet, interval: int, **shared: str) -> dict[str, str]:
    """Every host runs the release of these shared settings (a no-op when it already does);
    returns {env: current release}."""
    fleet.shared({"TORRUST_ANNOUNCE_INTERVAL": str(interval), **shared})
    code, _, err = fleet.deploy("--parallel", "3")
    assert code == 0, err
    return {m.env: m.current() for m in fleet.members}


def touched(fleet: Fleet) -> dict:
    """What would change if a host were touched: its deploy root's files, its containers."""
    return {m.env: (snapshot(m.root), m.containers()) for m in fleet.members}


# ------------------------------------------------------------------------ bad inputs
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["app.deploy", "--fleet", "ghost"],
            "environments: 'fz' is not an environment here (no .env.fz or .torrust/fz/host.env; "
            "environments: fa, fb, fc, fdup, local)",
        ),
        (["app.deploy", "--fleet", "dup"], "environments 'fa' and 'fdup' both use, on this machine: deploy root "),
        (["app.deploy", "--fleet", "trio", "--parallel", "0"], "--parallel '0': allowed: a whole number from 1 to 64"),
        (
            ["app.deploy", "--fleet", "trio", "--canary", "4"],
            "--canary '4': allowed: a whole number from 0 to 3 (the fleet 'trio' has 3 hosts)",
        ),
        (["app.deploy", "--fleet", "nope"], "--fleet 'nope': no such fleet in fleets.toml (fleets: dup, ghost, trio)"),
        (["app.status", "--fleet", "trio", "--env", "fa"], "--env 'fa' and --fleet 'trio' together: choose one"),
    ],
)
def test_bad_inputs_are_named_and_touch_nothing(fleet, args, message):
    before, conns = touched(fleet), [m.connections() for m in fleet.members]
    res = fleet.cli(*args)
    assert res.returncode == 2, res.stderr
    assert message in res.stderr and "Traceback" not in res.stderr
    assert touched(fleet) == before
    assert [m.connections() for m in fleet.members] == conns  # not even connected


# ------------------------------------------------------------------------ rollouts
def test_parallel_rollout_every_host_answers_udp_and_http(fleet):
    settle(fleet, 120)
    conns = [m.connections() for m in fleet.members]
    fleet.shared({"TORRUST_ANNOUNCE_INTERVAL": "300"})
    code, doc, err = fleet.deploy("--parallel", "3")
    assert code == 0, err
    assert doc["result"] == "all" and doc["parallel"] == 3
    hosts = fleet.hosts(doc)
    assert {e: h["status"] for e, h in hosts.items()} == dict.fromkeys(["fa", "fb", "fc"], "deployed")
    for m in fleet.members:
        assert hosts[m.env]["release"] == m.current() and hosts[m.env]["recreated"] == ["tracker"]
        assert m.announce_udp() == 300 and m.announce_http() == 300
        assert m.audit()[-1]["result"] == "deployed" and not m.locked()
    assert [m.connections() - c for m, c in zip(fleet.members, conns, strict=True)] == [1, 1, 1]
    # one progress line per host and step, prefixed with the host
    for env in ("fa", "fb", "fc"):
        assert f"{env}  ✓ switch current to {hosts[env]['release']} and start (" in err
        assert f"{env}  deployed {hosts[env]['release']} in " in err


def test_noop_fleet_deploy_recreates_nothing(fleet):
    settle(fleet, 300)
    before = touched(fleet)
    code, doc, err = fleet.deploy("--parallel", "3")
    assert code == 0 and {h["status"] for h in doc["hosts"]} == {"unchanged"}, err
    assert {m.env: m.containers() for m in fleet.members} == {e: c for e, (_, c) in before.items()}


def test_dry_run_shows_per_host_changes_and_changes_nothing(fleet):
    settle(fleet, 300)
    before = touched(fleet)
    fleet.shared({"TORRUST_ANNOUNCE_INTERVAL": "240"})
    code, doc, err = fleet.deploy("--dry-run")
    assert code == 0, err
    assert doc["dry_run"] is True
    for env, h in fleet.hosts(doc).items():
        assert h["status"] == "changes" and h["recreate"] == ["tracker"], h
        assert {"path": "tracker/tracker.toml", "change": "changed"} in h["changes"]
        assert "-interval = 300\n+interval = 240" in h["diff"] and h["current"] == fleet.by_name[env].current()
    text = fleet.cli("app.deploy", "--fleet", "trio", "--dry-run")
    assert "fb (torrust@[127.0.0.1]:" in text.stdout and "would recreate: tracker" in text.stdout
    assert touched(fleet) == before


def test_canary_with_a_broken_image_rolls_back_and_no_other_host_is_touched(fleet, unhealthy_image):
    good = settle(fleet, 300)
    before = touched(fleet)
    fleet.shared({"TORRUST_ANNOUNCE_INTERVAL": "300", "TORRUST_TRACKER_IMAGE": unhealthy_image})
    code, doc, err = fleet.deploy("--canary", "1", "--parallel", "2", "--wait-timeout", "15")
    assert code == 71, err  # none succeeded
    hosts = fleet.hosts(doc)
    assert (hosts["fa"]["status"], hosts["fa"]["code"], hosts["fa"]["canary"]) == ("rolled_back", 31, True)
    assert "rolled back to " + good["fa"] in hosts["fa"]["error"]
    assert [hosts[e]["status"] for e in ("fb", "fc")] == ["not_started", "not_started"]
    assert doc["stopped"] == "fa failed (rolled_back)"
    assert "not started, untouched: fb, fc" in err
    fa = fleet.by_name["fa"]
    assert fa.current() == good["fa"] and fa.announce_udp() == 300 and fa.audit()[-1]["result"] == "rolled_back"
    for env in ("fb", "fc"):
        assert touched(fleet)[env] == before[env]


def test_an_unreachable_host_stops_the_rollout_or_is_skipped(fleet):
    good = settle(fleet, 300)
    fb = fleet.by_name["fb"]
    docker("stop", fb.host.name)
    try:
        fleet.shared({"TORRUST_ANNOUNCE_INTERVAL": "180"})
        before_c = touched(fleet)["fc"]
        code, doc, err = fleet.deploy()  # one at a time: fa, then fb fails, fc never starts
        assert code == 70, err
        hosts = fleet.hosts(doc)
        assert [hosts[e]["status"] for e in ("fa", "fb", "fc")] == ["deployed", "unreachable", "not_started"]
        assert hosts["fb"]["code"] == 10 and f"[127.0.0.1]:{fb.host.port}" in hosts["fb"]["error"]
        assert touched(fleet)["fc"] == before_c
        assert "done, and they keep it: fa (" in err and "failed: fb (unreachable, exit 10)" in err
        assert fleet.by_name["fa"].announce_udp() == 180

        code, doc, err = fleet.deploy("--continue-on-error")
        assert code == 70, err
        hosts = fleet.hosts(doc)
        assert [hosts[e]["status"] for e in ("fa", "fb", "fc")] == ["unchanged", "unreachable", "deployed"]
        assert fleet.by_name["fc"].announce_udp() == 180 and fb.current() == good["fb"]
    finally:
        docker("start", fb.host.name)


def test_a_held_lock_on_one_host(fleet):
    settle(fleet, 300)
    fb = fleet.by_name["fb"]
    s = load("fb", root=fleet.cwd, environ=clean_environ())
    ex = connect_executor(s)
    try:
        with HostLock(ex, Layout(s.deploy_root), env="fb", command="app.backup (test holder)"):
            before_b = touched(fleet)["fb"]
            fleet.shared({"TORRUST_ANNOUNCE_INTERVAL": "150"})
            code, doc, err = fleet.deploy("--parallel", "3", "--continue-on-error")
            assert code == 70, err
            hosts = fleet.hosts(doc)
            assert [hosts[e]["status"] for e in ("fa", "fb", "fc")] == ["deployed", "locked", "deployed"]
            assert hosts["fb"]["code"] == 20 and hosts["fb"]["lock"]["command"] == "app.backup (test holder)"
            assert "another operation is running" in hosts["fb"]["error"]
            assert touched(fleet)["fb"][1] == before_b[1]  # its containers untouched
    finally:
        ex.ctx.close()
    assert fb.announce_udp() == 300 and fleet.by_name["fa"].announce_udp() == 150


def test_drift_after_a_partial_rollout(fleet):
    settle(fleet, 300)
    docker("tag", TEST_IMAGES["TORRUST_TRACKER_IMAGE"], DRIFT_COPY)
    s = load("fc", root=fleet.cwd, environ=clean_environ())
    env_fa = fleet.cwd / ".env.fa"
    ex = connect_executor(s)
    try:
        with HostLock(ex, Layout(s.deploy_root), env="fc", command="app.deploy (test holder)"):
            fleet.shared({"TORRUST_ANNOUNCE_INTERVAL": "200"})
            code, doc, err = fleet.deploy()
            assert code == 70 and [h["status"] for h in doc["hosts"]] == ["deployed", "deployed", "locked"], err
        env_fa.write_text(env_fa.read_text() + f"TORRUST_TRACKER_IMAGE={DRIFT_COPY}\n")
        code, doc, err = fleet.run("app.deploy", "--env", "fa")  # fa alone runs another image reference
        assert code == 0, err
        code, doc, err = fleet.run("app.releases", "--fleet", "trio")
        assert code == 0, err
        hosts = fleet.hosts(doc)
        assert hosts["fa"]["drift"] == ["image:tracker"]
        assert hosts["fb"]["drift"] == []
        assert hosts["fc"]["drift"] == ["content"]  # behind: app.deploy would change it
        assert hosts["fc"]["content_sha256"] != hosts["fc"]["expected_sha256"]
        assert hosts["fb"]["content_sha256"] == hosts["fb"]["expected_sha256"]
        assert hosts["fa"]["images"]["tracker"] == DRIFT_COPY
        # fa names another reference, but it is the same image (a tag of it): its digest says so
        assert set(hosts["fb"]["digests"]) == set(hosts["fb"]["images"])
        assert hosts["fa"]["digests"]["tracker"] == hosts["fb"]["digests"]["tracker"]
        assert hosts["fb"]["digests"]["tracker"].startswith("sha256:")  # a locally built image: its ID
        assert doc["drift"] == ["fa", "fc"]
        text = fleet.cli("app.releases", "--fleet", "trio").stdout
        assert "fa *" in text and "fc *" in text and "fb *" not in text and "drift on fa, fc" in text
    finally:
        ex.ctx.close()
        env_fa.write_text("".join(ln + "\n" for ln in env_fa.read_text().splitlines() if DRIFT_COPY not in ln))
        settle(fleet, 300)
        docker("image", "rm", DRIFT_COPY, check=False)  # the tag only


def test_ctrl_c_mid_rollout(fleet):
    good = settle(fleet, 300)
    before = touched(fleet)
    fleet.shared({"TORRUST_ANNOUNCE_INTERVAL": "130"})
    proc = fleet.popen("app.deploy", "--fleet", "trio", "--json")
    fa = fleet.by_name["fa"]
    deadline = time.monotonic() + 120
    while not (fa.root / "deploy.lock" / "info.json").exists():  # fa's transaction is running
        assert time.monotonic() < deadline and proc.poll() is None, f"fa never took its lock: {proc.communicate()}"
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    assert "interrupted: no other host will be started; waiting for the running ones to finish or roll back: fa" in err
    doc = json.loads(out)
    assert doc["interrupted"] is True and doc["stopped"] == "interrupted (Ctrl-C)"
    assert [h["status"] for h in doc["hosts"]] == ["deployed", "not_started", "not_started"]
    assert fa.current() != good["fa"] and fa.announce_udp() == 130 and not fa.locked()
    for env in ("fb", "fc"):
        assert touched(fleet)[env] == before[env]


# ------------------------------------------------------------------------ fleet views
def test_status_and_health_check_of_every_host(fleet):
    settle(fleet, 300)
    code, doc, err = fleet.run("app.status", "--fleet", "trio")
    assert code == 0, err
    for env, h in fleet.hosts(doc).items():
        assert h["status"] == "healthy" and h["current"] == fleet.by_name[env].current()
        assert {x["service"]: x["state"] for x in h["services"]} == {"tracker": "running", "proxy": "running"}
    code, doc, err = fleet.run("health.check", "--fleet", "trio", *NOT_THE_MACHINE)
    assert code == 0, err
    for h in doc["hosts"]:
        udp = [p for p in h["probes"] if p["name"] == "udp tracker"]
        assert h["status"] == "healthy" and len(udp) == 1 and udp[0]["ok"]
        assert str(fleet.by_name[h["env"]].udp_port) in udp[0]["target"]
    text = fleet.cli("health.check", "--fleet", "trio", *NOT_THE_MACHINE).stdout
    assert all(f"{env}: healthy, " in text for env in ("fa", "fb", "fc"))


def test_a_stopped_service_fails_status_and_health_on_that_host_only(fleet):
    settle(fleet, 300)
    fc = fleet.by_name["fc"]
    docker("stop", fc.containers()["tracker"][0])
    try:
        code, doc, err = fleet.run("health.check", "--fleet", "trio", *NOT_THE_MACHINE)
        assert code == 70, err  # some hosts healthy
        hosts = fleet.hosts(doc)
        assert (hosts["fc"]["status"], hosts["fc"]["code"]) == ("failing", 40)
        assert hosts["fa"]["status"] == hosts["fb"]["status"] == "healthy"
        code, doc, err = fleet.run("app.status", "--fleet", "trio")
        assert code == 70 and fleet.hosts(doc)["fc"]["status"] == "unhealthy", err
    finally:
        docker("start", fc.containers().get("tracker", ("",))[0] or f"{fc.project}-tracker-1", check=False)
        settle(fleet, 300)


def test_backup_and_rollback_of_every_host(fleet):
    first = settle(fleet, 300)
    second = settle(fleet, 270)
    code, doc, err = fleet.run("app.backup", "--fleet", "trio", "--parallel", "3")
    assert code == 0, err
    for env, h in fleet.hosts(doc).items():
        assert h["status"] == "backed_up" and (fleet.by_name[env].root / "backups" / h["id"]).is_dir()
    code, doc, err = fleet.run("app.rollback", "--fleet", "trio", "--parallel", "3")
    assert code == 0, err
    for env, h in fleet.hosts(doc).items():
        assert (h["status"], h["release"], h["previous"]) == ("rolled_back", first[env], second[env])
        assert fleet.by_name[env].current() == first[env] and fleet.by_name[env].announce_udp() == 300
    res = fleet.cli("app.rollback", "--fleet", "trio", "--to", first["fa"])
    assert res.returncode == 2 and "--to and --with-data name one host's release" in res.stderr


def test_watch_every_host_each_in_its_own_store(fleet):
    settle(fleet, 300)
    code, doc, err = fleet.run("health.watch", "--fleet", "trio", "--once")
    assert code == 0, err
    for h in doc["hosts"]:
        store = fleet.cwd / ".torrust" / h["env"] / "watch.sqlite"
        assert (h["status"], h["failed"], h["store"]) == ("healthy", [], str(store)) and h["probes"] >= 2, h
        assert store.is_file()
    code, doc, err = fleet.run("health.watch", "--fleet", "trio", "--for", "3s", "--interval", "1")
    assert code == 0, err
    assert all(h["status"] == "watched" and h["rounds"] >= 2 for h in doc["hosts"]), doc["hosts"]
    code, doc, err = fleet.run("health.uptime", "--env", "fb")
    assert code == 0, err


def test_watch_names_the_failing_host(fleet):
    settle(fleet, 300)
    fb = fleet.by_name["fb"]
    tracker = fb.containers()["tracker"][0]
    docker("stop", tracker)
    try:
        code, doc, err = fleet.run("health.watch", "--fleet", "trio", "--once")
        assert code == 70, err
        hosts = fleet.hosts(doc)
        assert (hosts["fb"]["status"], hosts["fb"]["code"]) == ("failing", 40) and hosts["fb"]["failed"]
        assert hosts["fa"]["status"] == hosts["fc"]["status"] == "healthy"
        res = fleet.cli("health.watch", "--fleet", "trio", "--once", "--metrics-port", "9469")
        assert res.returncode == 2 and "one port cannot serve several watches" in res.stderr
    finally:
        docker("start", tracker)
        settle(fleet, 300)
