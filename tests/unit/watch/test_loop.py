"""The loop: rounds recorded, bounded, never overlapping, stopped by SIGTERM; a locked
store keeps rounds in memory; failing channels neither stop nor slow the watch."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import threading
import time
import types
from dataclasses import replace
from pathlib import Path

import pytest

from tasks.config.secrets import Secret
from tasks.errors import StoreLocked, StoreMissing
from tasks.health import probes as p
from tasks.watch import loop, runner
from tasks.watch.config import WatchConfig
from tasks.watch.loop import RoundLock, Watch, classify, run_probes
from tasks.watch.store import Store
from tasks.watch.targets import TargetSpec, WatchProbe
from tests.conftest import ROOT
from tests.watchservers import SMTPServer, free_port, make_ca_and_leaf, open_when_ready, wait_for


class Switch:
    """Probes whose verdict the test sets: a real probe object around a plain check."""

    def __init__(self, names=("udp", "http")):
        self.ok = dict.fromkeys(names, True)
        self.delay = 0.0

    def probes(self) -> list[WatchProbe]:
        out = []
        for kind in self.ok:

            def check(k=kind) -> str:
                time.sleep(self.delay)
                if not self.ok[k]:
                    raise p.ProbeFailed("timed out")
                return "fine"

            out.append(WatchProbe(kind, f"{kind}.example", 4, "127.0.0.1", p.Probe(kind, kind, 4, check, 1, 1)))
        return out


def cfg(tmp_path: Path, **kw) -> WatchConfig:
    base = WatchConfig(
        store_path=tmp_path / "w.sqlite",
        interval=1,
        jitter=0,
        down_after=2,
        probe_timeout=1,
        probe_attempts=1,
        silent_after=60,
        retry_base=0.2,
        retry_max=1,
    )
    return replace(base, **kw)


@pytest.mark.parametrize(
    ("detail", "cls"),
    [
        ("timed out", "timeout"),
        ("UDPTrackerError: no reply from ::1:6969 after 1 attempts", "timeout"),
        ("connection refused", "refused"),
        ("certificate not trusted: certificate has expired", "tls"),
        ("certificate expires in 3 days (2026-12-01 10:00 UTC); renewal should have happened by now", "cert-expiring"),
        ("announce: HTTP 502: Bad Gateway", "http-status"),
        ("announce: tracker said: torrent not registered", "tracker-error"),
        ("malformed bencoded reply: unexpected end", "protocol"),
        ("tracker.example.org does not resolve (no A or AAAA record)", "dns"),
        ("no answer within the round's deadline", "deadline"),
        ("OSError: [Errno 101] Network is unreachable", "unreachable"),
        ("something new", "other"),
    ],
)
def test_error_classes(detail, cls):
    assert classify(detail) == cls


def test_a_probe_past_the_round_deadline_fails_and_the_round_ends(tmp_path):
    sw = Switch(("udp",))
    sw.delay = 3
    started = time.monotonic()
    (o,) = run_probes(sw.probes(), "v", deadline=0.1)
    assert time.monotonic() - started < sw.delay  # the round did not wait for the hung probe
    assert (o.ok, o.error, o.detail) == (False, "deadline", "no answer within the round's deadline")


def test_once_records_a_round_and_reports_failures(tmp_path):
    sw = Switch()
    w = Watch(cfg(tmp_path), sw.probes, "local")
    assert w.once().failed == []
    sw.ok["udp"] = False
    res = w.once()
    assert [o.key.kind for o in res.failed] == ["udp"] and res.failed[0].error == "timeout"
    assert w.store.round_count("local") == 2
    assert w.store.raw_counts(0, 2**62) == [(1, 2, 1), (2, 2, 2)]
    w.close()


def test_rounds_never_overlap_on_one_store(tmp_path):
    c = cfg(tmp_path)
    lock = RoundLock(c.store_path)
    lock.acquire()
    try:
        w = Watch(c, Switch().probes, "local")
        with pytest.raises(StoreLocked, match=r"another watch \(pid \d+\) is running on"):
            w.once()
        assert w.store.round_count() == 0
        w.close()
    finally:
        lock.release()


def test_a_locked_store_keeps_rounds_in_memory_until_it_can_write(tmp_path):
    import sqlite3

    c = cfg(tmp_path)
    w = Watch(c, Switch().probes, "local")
    w.store.close()
    w.store = Store.open(c.store_path, wait=0.05)
    holder = sqlite3.connect(c.store_path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    assert w.round().recorded is False
    assert w.round().recorded is False
    holder.execute("ROLLBACK")
    holder.close()
    assert w.round().recorded is True
    assert w.store.round_count() == 3  # nothing lost
    w.close()


class SimClock:
    """The loop's clocks in simulated seconds: `monotonic` for the schedule, `wall` for the
    recorded times. Only waiting (`SimStop.wait`) and a probe that takes time advance them."""

    def __init__(self):
        self.now = 1000.0
        self.time = types.SimpleNamespace(monotonic=lambda: self.now)  # stands in for loop's `time`

    def wall(self) -> float:
        return 1_700_000_000.0 + self.now


class SimStop(threading.Event):
    """A stop event whose wait passes simulated time instead of real time."""

    def __init__(self, clock: SimClock):
        super().__init__()
        self.clock, self.waits = clock, []

    def wait(self, timeout=None):
        self.waits.append(timeout)
        self.clock.now += timeout
        return self.is_set()


class Draws(random.Random):
    """The jitter: these values in turn (exact in binary), each checked against its range."""

    def __init__(self, values, jitter):
        super().__init__(0)
        self.values, self.jitter = list(values), jitter

    def uniform(self, a, b):
        assert (a, b) == (0, self.jitter)
        return self.values.pop(0)


def test_a_loop_runs_rounds_at_each_slot_plus_its_jitter_until_the_duration(tmp_path, monkeypatch):
    sim = SimClock()
    monkeypatch.setattr(loop, "time", sim.time)
    draws = Draws([0.125, 0.0, 0.1875, 0.0625, 0.03125], jitter=0.2)
    w = Watch(cfg(tmp_path, interval=1, jitter=0.2), Switch().probes, "local", clock=sim.wall, rng=draws)
    started, times = int(sim.wall() * 1000), []
    rounds = w.run(SimStop(sim), duration=3.5, on_round=lambda r: times.append(r.t))
    # slots 0, 1, 2, 3 s plus their jitter; the fifth (4.03 s) is past the 3.5 s duration
    assert rounds == 4 and w.store.round_count() == 4
    assert [t - started for t in times] == [125, 1000, 2187, 3062]
    assert draws.values == []
    w.close()


def test_a_round_that_overruns_skips_the_slots_it_missed(tmp_path, monkeypatch):
    sim = SimClock()
    monkeypatch.setattr(loop, "time", sim.time)
    sw = Switch(("udp",))
    slow = iter([2.5])  # the first round takes 2.5 s, the others no time

    def probes():
        ps = sw.probes()
        check = ps[0].probe.check

        def timed():
            sim.now += next(slow, 0.0)
            return check()

        return [replace(ps[0], probe=replace(ps[0].probe, check=timed))]

    w = Watch(cfg(tmp_path, interval=1, jitter=0), probes, "local", clock=sim.wall)
    started, times = int(sim.wall() * 1000), []
    rounds = w.run(SimStop(sim), duration=6.5, on_round=lambda r: times.append(r.t))
    # 0 s (ends at 2.5 s: slots 1 and 2 are skipped, not run back to back), then 3, 4, 5, 6 s
    assert rounds == 5 and [t - started for t in times] == [0, 3000, 4000, 5000, 6000]
    w.close()


def test_a_loop_runs_rounds_on_schedule_for_a_duration(tmp_path):
    """The same in real time, short: rounds at 0, 0.3, 0.6 and 0.9 s (each up to 0.06 s
    late) within 1.05 s; a round on a busy machine may overrun and skip one."""
    w = Watch(cfg(tmp_path, interval=0.3, jitter=0.06), Switch().probes, "local")
    started = time.time()
    rounds = w.run(threading.Event(), duration=1.05)
    assert rounds in (3, 4) and w.store.round_count() == rounds
    (last,) = w.store.last_rounds().values()
    assert last >= int(started * 1000) + 600  # the third round waited for its slot
    w.close()


def test_failing_channels_neither_stop_nor_delay_the_watch_and_are_retried(tmp_path, caplog):
    pki = make_ca_and_leaf(tmp_path / "pki")
    smtp = SMTPServer(pki[1], pki[2], password="the-right-password-1234").start()
    dead = free_port()
    c = cfg(
        tmp_path,
        webhook_url=Secret(f"http://127.0.0.1:{dead}/hook/tok3n-Xk4Lp8Yv3Nb6"),
        smtp_host="127.0.0.1",
        smtp_port=smtp.port,
        smtp_user="watch-alerts",
        smtp_password=Secret("Wr0-Ng9Tk8Ex7Yz6Ab5Cd4"),
        smtp_from="watch@example.org",
        smtp_to=("ops@example.org",),
        smtp_cafile=str(pki[0]),
        interval=0.2,
        jitter=0,
        silent_after=60,
        retry_base=0.05,
        retry_max=0.2,
    )
    sw = Switch()
    sw.ok["udp"] = False
    stop = threading.Event()

    def watch() -> None:  # the watch lives in its thread (an SQLite connection is per thread)
        w = Watch(c, sw.probes, "local")
        try:
            w.run(stop, duration=30)
        finally:
            w.close()

    thread = threading.Thread(target=watch)
    thread.start()
    try:
        with open_when_ready(c.store_path) as st:
            wait_for(lambda: any(d["attempts"] >= 3 for d in st.deliveries() if d["channel"] == "webhook"), 60)
            wait_for(lambda: smtp.auth_attempts >= 3, 60)
            rounds_then = st.round_count()
            wait_for(lambda: st.round_count() >= rounds_then + 2, 30)  # rounds go on
            deliveries = st.deliveries()
        assert {d["channel"] for d in deliveries} == {"webhook", "smtp"}
        assert all(d["done_at"] is None and d["gave_up_at"] is None for d in deliveries)
        assert any("authentication refused (535)" in (d["last_error"] or "") for d in deliveries)
        assert any("Connection refused" in (d["last_error"] or "") for d in deliveries)
    finally:
        stop.set()
        thread.join(30)
        smtp.stop()
    assert not thread.is_alive()
    assert "tok3n" not in caplog.text and "Wr0-Ng9" not in caplog.text


def _start_runner(directory: Path) -> tuple[subprocess.Popen, Path]:
    """The runner (what a vantage runs) in a process of its own, probing closed loopback
    ports, one round a second (the shortest interval a settings file may hold)."""
    spec = TargetSpec(
        "t",
        "torrust.local",
        (free_port(),),
        ("tracker.torrust.local",),
        "api.torrust.local",
        False,
        free_port(),
        ("tracker.torrust.local",),
        local=True,
    )
    directory.mkdir()
    c = cfg(directory, interval=1, jitter=0, probe_timeout=0.5)
    settings = directory / "watch.json"
    settings.write_text(json.dumps(runner.settings_document(c, spec, "t")))
    proc = subprocess.Popen(
        [sys.executable, "-m", "tasks.watch.runner", "--config", str(settings), "loop"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return proc, c.store_path


def test_a_signal_stops_a_foreground_loop_cleanly(tmp_path):
    """SIGTERM and SIGINT, each to a runner of its own (started together: each waits for two
    rounds a second apart), end it after the round in progress: exit 0, every round recorded."""
    runs = {sig: _start_runner(tmp_path / sig.name) for sig in (signal.SIGTERM, signal.SIGINT)}

    def rounds(proc: subprocess.Popen, store_path: Path) -> int:
        if proc.poll() is not None:
            raise AssertionError(f"the runner exited early: {proc.communicate()}")
        try:
            with Store.open(store_path) as st:
                return st.round_count()
        except StoreMissing:  # not created yet
            return 0

    try:
        for sig, (proc, store_path) in runs.items():
            wait_for(lambda proc=proc, store_path=store_path: rounds(proc, store_path) >= 2, 60)
            proc.send_signal(sig)
        ended = {sig: proc.communicate(timeout=30) for sig, (proc, _) in runs.items()}
    finally:
        for proc, _ in runs.values():
            proc.kill()
    for sig, (proc, store_path) in runs.items():
        out, err = ended[sig]
        assert proc.returncode == 0, (sig.name, err)
        doc = json.loads(out)
        with Store.open(store_path) as st:
            assert doc["rounds"] == st.round_count() >= 2, sig.name
            assert st.raw_counts(0, 2**62)[0][1] == doc["rounds"], sig.name  # each round complete
        assert "Traceback" not in err, sig.name
