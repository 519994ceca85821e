"""The rollout (tasks/fleet/rollout.py): canaries first, N at a time, stop at the first
failure or go on, Ctrl-C stops starting hosts, every host's result kept; against a strict
stand-in for a host's work (real threads, real signals, no hosts)."""

from __future__ import annotations

import io
import signal
import threading
import time

import pytest

from tasks.errors import CommandFailed, ConnectionFailed, DeployFailed, RollbackFailed, RolledBack
from tasks.fleet import declaration as d
from tasks.fleet import rollout as r
from tasks.operations.lock import LockHeld
from tests.unit.fleet.checkout import ssh_env, write

NAMES = ["ta", "tb", "tc", "td", "te"]


@pytest.fixture
def members(workdir):
    envs = {n: ssh_env(f"192.0.2.{10 + i}") for i, n in enumerate(NAMES)}
    write(workdir, envs, f"[fleet.five]\nenvironments = {NAMES!r}\n".replace("'", '"'))
    return list(d.load("five", root=workdir, environ={}).members)


class Stream(io.StringIO):
    """stderr stand-in: the lines written, and an event per expected text."""

    def __init__(self):
        super().__init__()
        self.lock = threading.Lock()
        self.waiting: dict[str, threading.Event] = {}

    def write(self, text):
        with self.lock:
            for needle, event in self.waiting.items():
                if needle in text:
                    event.set()
            return super().write(text)

    def when(self, needle: str) -> threading.Event:
        return self.waiting.setdefault(needle, threading.Event())


class Hosts:
    """A strict stand-in for each host's work: what each host does is given per name (a
    result document, an exception, or a function); a host nobody planned fails the test.
    Records the order hosts started and ended and the most that ran at once."""

    def __init__(self, plan: dict):
        self.plan = plan
        self.lock = threading.Lock()
        self.events: list[str] = []
        self.active = 0
        self.most = 0

    def __call__(self, m, step):
        with self.lock:
            self.events.append(f"start {m.env}")
            self.active += 1
            self.most = max(self.most, self.active)
        try:
            assert m.env in self.plan, f"host {m.env} was started but should not have been"
            what = self.plan[m.env]
            with step(f"work on {m.env}"):
                if isinstance(what, BaseException):
                    raise what
                return what(m) if callable(what) else dict(what)
        finally:
            with self.lock:
                self.active -= 1
                self.events.append(f"end {m.env}")


OK = {"status": "deployed", "release": "20261201T000000Z-aaaaaaaa"}


def run(members, hosts, parallel=1, canary=0, go_on=False, stream=None):
    progress = r.Progress([m.env for m in members], stream=stream if stream is not None else io.StringIO())
    return r.run("five", members, hosts, d.RolloutOptions(parallel, canary, go_on), progress, "deploy to")


def test_all_hosts_succeed_n_at_a_time(members):
    barrier = threading.Barrier(2, timeout=10)  # two hosts must run at once, or this breaks

    def together(m):
        barrier.wait()
        return OK

    hosts = Hosts({"ta": together, "tb": together, "tc": together, "td": together, "te": OK})
    result = run(members, hosts, parallel=2)
    assert result.result == "all" and result.as_dict()["ok"] is True
    assert [h.status for h in result.hosts] == ["deployed"] * 5
    assert hosts.most == 2
    assert result.stopped is None and result.interrupted is False


def test_canaries_first_then_the_rest(members):
    hosts = Hosts(dict.fromkeys(NAMES, OK))
    result = run(members, hosts, parallel=3, canary=2)
    first_other = min(hosts.events.index(f"start {n}") for n in NAMES[2:])
    assert hosts.events.index("end ta") < first_other and hosts.events.index("end tb") < first_other
    assert [h.canary for h in result.hosts] == [True, True, False, False, False]
    assert result.result == "all"


def test_the_first_failure_stops_starting_hosts(members):
    failure = DeployFailed("deploy of X failed before the switch: pull", hint="the running release was not touched")
    hosts = Hosts({"ta": OK, "tb": failure})
    result = run(members, hosts, parallel=1)
    assert [(h.env, h.status, h.code) for h in result.hosts] == [
        ("ta", "deployed", 0),
        ("tb", "failed", 30),
        ("tc", "not_started", None),
        ("td", "not_started", None),
        ("te", "not_started", None),
    ]
    assert result.result == "some" and result.stopped == "tb failed"
    assert result.hosts[1].error.startswith("deploy of X failed") and result.hosts[1].hint.startswith("the running")
    assert result.hosts[2].error == "not started: tb failed; untouched"
    assert hosts.events == ["start ta", "end ta", "start tb", "end tb"]


def test_running_hosts_finish_when_another_fails(members):
    release_tb = threading.Event()

    def slow(m):
        assert release_tb.wait(10)
        return OK

    def fails(m):
        release_tb.set()  # tb ends after this failure is known: it still finishes
        raise RolledBack("release Y failed (health gate); rolled back to Z")

    hosts = Hosts({"ta": fails, "tb": slow})
    result = run(members, hosts, parallel=2)
    assert [h.status for h in result.hosts] == ["rolled_back", "deployed"] + ["not_started"] * 3
    assert result.hosts[0].code == 31 and result.result == "some"


def test_continue_on_error_goes_on(members):
    plan = {**dict.fromkeys(NAMES, OK), "tb": ConnectionFailed("cannot connect to torrust@192.0.2.11")}
    result = run(members, Hosts(plan), parallel=2, go_on=True)
    assert [h.status for h in result.hosts] == ["deployed", "unreachable", "deployed", "deployed", "deployed"]
    assert result.result == "some" and result.stopped is None


def test_a_failed_canary_stops_even_with_continue_on_error(members):
    hosts = Hosts({"ta": RolledBack("release failed; rolled back to Z")})
    result = run(members, hosts, parallel=3, canary=1, go_on=True)
    assert [h.status for h in result.hosts] == ["rolled_back"] + ["not_started"] * 4
    assert result.result == "none" and result.stopped == "ta failed (rolled_back)"
    assert hosts.events == ["start ta", "end ta"]


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (ConnectionFailed("x"), "unreachable", 10),
        (LockHeld("another operation is running", info={"command": "app.deploy"}, stale=False), "locked", 20),
        (RolledBack("x"), "rolled_back", 31),
        (RollbackFailed("x"), "rollback_failed", 32),
        (CommandFailed("x"), "failed", 13),
    ],
)
def test_failures_are_named_by_their_error(members, error, status, code):
    result = run(members[:1], Hosts({"ta": error}))
    assert (result.hosts[0].status, result.hosts[0].code, result.hosts[0].ok) == (status, code, False)


def test_a_held_lock_keeps_its_holder_in_the_result(members):
    held = LockHeld("another operation is running on h", info={"command": "app.backup", "holder": "ci@x"}, stale=False)
    host = run(members[:1], Hosts({"ta": held})).hosts[0].as_dict()
    assert host["lock"] == {"command": "app.backup", "holder": "ci@x"} and host["stale"] is False


def test_a_bug_fails_its_host_with_the_traceback_shown(members):
    stream = Stream()
    result = run(members[:2], Hosts({"ta": KeyError("surprise"), "tb": OK}), go_on=True, stream=stream)
    assert (result.hosts[0].status, result.hosts[0].code) == ("error", 1)
    assert result.hosts[0].error == "KeyError: 'surprise'" and result.hosts[1].ok
    assert "Traceback (most recent call last)" in stream.getvalue()


def test_one_line_per_host_and_step_whole_and_prefixed(members):
    stream = Stream()
    plan = {n: OK for n in NAMES}
    run(members, Hosts(plan), parallel=5, stream=stream)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3 * 5  # start, the step, the outcome
    for n in NAMES:
        mine = [ln for ln in lines if ln.startswith(f"{n}  ")]
        assert mine[0] == f"{n}  ==> deploy to torrust@192.0.2.{10 + NAMES.index(n)}"
        assert mine[1].startswith(f"{n}  ✓ work on {n} (") and mine[1].endswith("s)")
        assert mine[2].startswith(f"{n}  deployed 20261201T000000Z-aaaaaaaa in ")


def test_steps_are_recorded_failed_ones_too(members):
    result = run(members[:1], Hosts({"ta": DeployFailed("no")}))
    assert [(s["step"], s["ok"]) for s in result.hosts[0].steps] == [("work on ta", False)]


def _interrupt_main():
    signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)


@pytest.fixture
def prompt(monkeypatch):
    """The walk looks for Ctrl-C every 20 ms instead of every 0.2 s (the same loop, sooner)."""
    monkeypatch.setattr(r, "POLL", 0.02)


def test_ctrl_c_stops_starting_hosts_and_lets_the_running_one_finish(members, prompt):
    stream = Stream()
    noticed = stream.when("interrupted: no other host will be started")

    def interrupted(m):
        _interrupt_main()
        assert noticed.wait(10), "the main thread never saw Ctrl-C"
        return OK  # and this host still finishes

    hosts = Hosts({"ta": interrupted})
    result = run(members, hosts, parallel=1, stream=stream)
    assert result.interrupted and result.stopped == "interrupted (Ctrl-C)"
    assert [h.status for h in result.hosts] == ["deployed"] + ["not_started"] * 4
    assert result.hosts[1].error == "not started: interrupted (Ctrl-C); untouched"
    assert "waiting for the running ones to finish or roll back: ta" in stream.getvalue()


def test_ctrl_c_twice_still_waits_for_every_running_host(members, prompt):
    stream = Stream()
    first, second = stream.when("running ones to finish or roll back: ta, tb"), threading.Event()

    def ta(m):
        _interrupt_main()
        assert first.wait(10)
        _interrupt_main()
        deadline = time.monotonic() + 10
        while stream.getvalue().count("interrupted:") < 2:  # polls the condition, no fixed wait
            assert time.monotonic() < deadline
            time.sleep(0.01)
        second.set()
        return OK

    def tb(m):
        assert second.wait(10)
        return OK

    result = run(members, Hosts({"ta": ta, "tb": tb}), parallel=2, stream=stream)
    assert [h.status for h in result.hosts[:2]] == ["deployed", "deployed"] and result.interrupted
    assert [h.status for h in result.hosts[2:]] == ["not_started"] * 3


def test_the_document(members):
    result = run(members[:2], Hosts({"ta": OK, "tb": DeployFailed("no", hint="untouched")}), canary=1)
    doc = result.as_dict()
    assert {k: v for k, v in doc.items() if k not in ("hosts", "duration")} == {
        "ok": False,
        "fleet": "five",
        "result": "some",
        "parallel": 1,
        "canary": 1,
        "continue_on_error": False,
        "stopped": "tb failed",
        "interrupted": False,
    }
    assert [(h["env"], h["ok"], h["status"], h["code"], h["error"], h.get("release")) for h in doc["hosts"]] == [
        ("ta", True, "deployed", 0, None, "20261201T000000Z-aaaaaaaa"),
        ("tb", False, "failed", 30, "no", None),
    ]
    assert doc["hosts"][0]["canary"] is True and doc["hosts"][0]["target"] == "torrust@192.0.2.10"
