"""The watch loop: rounds on a schedule, recorded, alerted on, exposed.

A round resolves the targets, runs every probe at once (each bounded by its timeout and
attempts, the round by `cfg.round_deadline`: a probe still running then counts as failed),
and records the results, the round, the alert states and any alerts in one transaction.
Rounds start every `interval` seconds plus a random delay of up to `jitter` (vantages do
not probe in lockstep), never overlap (one thread runs them; a round that overran skips
the slots it missed, and a lock file keeps a second watch off the same store), and stop
cleanly on SIGINT/SIGTERM: the round in progress is finished and recorded, then the loop
returns. Alerts are delivered by a thread of their own, so a slow or failing channel never
delays a round. A store locked by another process keeps rounds in memory until it can be
written (nothing is lost).
"""

from __future__ import annotations

import fcntl
import logging
import math
import os
import random
import re
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tasks.errors import StoreLocked
from tasks.health import probes as p
from tasks.watch import alerts as al
from tasks.watch.config import WatchConfig
from tasks.watch.metrics import WatchMetrics
from tasks.watch.records import HOUR_MS, Row, SeriesKey
from tasks.watch.store import Store
from tasks.watch.targets import WatchProbe

log = logging.getLogger("torrust.watch")

# The first pattern that matches a failed probe's detail names its error class.
ERROR_CLASSES: tuple[tuple[str, re.Pattern], ...] = tuple(
    (name, re.compile(pattern, re.I))
    for name, pattern in (
        ("deadline", r"round's deadline"),
        ("dns", r"does not resolve|name or service not known|nodename|getaddrinfo"),
        ("cert-expiring", r"renewal should have happened"),
        ("tls", r"certificate|ssl|tls|handshake"),
        ("timeout", r"timed out|timeout|no reply"),
        ("refused", r"connection refused"),
        ("reset", r"connection reset|broken pipe|remote end closed|connection aborted"),
        ("unreachable", r"unreachable|no route"),
        ("tracker-error", r"tracker said|error reply|action 3"),
        ("http-status", r"\bHTTP [1-5][0-9]{2}\b"),
        ("protocol", r"malformed|unexpected|not a bencoded|transaction|reply|lack|no interval|no files"),
    )
)


def classify(detail: str) -> str:
    for name, pattern in ERROR_CLASSES:
        if pattern.search(detail):
            return name
    return "other"


@dataclass
class RoundResult:
    t: int  # ms, when the round started
    duration: float
    observations: list[al.Observation]
    alerts: list[int] = field(default_factory=list)
    recorded: bool = True

    @property
    def failed(self) -> list[al.Observation]:
        return [o for o in self.observations if not o.ok]


def run_probes(probes: list[WatchProbe], vantage: str, deadline: float) -> list[al.Observation]:
    """Every probe at once, in threads; the round waits at most `deadline` seconds."""
    results: list[p.ProbeResult | None] = [None] * len(probes)

    def work(i: int) -> None:
        results[i] = p._attempt(probes[i].probe)  # health.check's attempt loop (timeouts, retries)

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(len(probes))]
    started = time.monotonic()
    for th in threads:
        th.start()
    for th in threads:
        th.join(max(0.0, deadline - (time.monotonic() - started)))
    out = []
    for wp, res in zip(probes, results, strict=True):
        key = SeriesKey(vantage, wp.kind, wp.target, wp.family, wp.address)
        if res is None:
            out.append(
                al.Observation(key, False, int(deadline * 1000), "no answer within the round's deadline", "deadline")
            )
            continue
        error = None if res.ok else classify(res.detail)
        out.append(al.Observation(key, res.ok, int(res.latency * 1000), res.detail, error, wp.cell.get("value")))
    return out


class RoundLock:
    """One watch per store: an exclusive lock on `<store>.lock` (with the holder's pid)."""

    def __init__(self, store_path: Path):
        self.path = Path(str(store_path) + ".lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise StoreLocked(
                f"another watch (pid {holder}) is running on {str(self.path)[:-5]}; rounds never overlap",
                hint="stop the other watch, or give this one a store of its own",
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def install_stop_signals(stop: threading.Event) -> Callable[[], None]:
    """SIGINT and SIGTERM set `stop`; returns the function that restores the old handlers."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    old = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}

    def restore() -> None:
        for sig, handler in old.items():
            signal.signal(sig, handler)

    return restore


class Watch:
    """Rounds of `make_probes()` recorded in `cfg.store_path`, alerts and metrics."""

    def __init__(
        self,
        cfg: WatchConfig,
        make_probes: Callable[[], list[WatchProbe]],
        env: str,
        *,
        channels: dict[str, al.Channel] | None = None,
        metrics: WatchMetrics | None = None,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ):
        self.cfg = cfg
        self.make_probes = make_probes
        self.env = env
        self.channels = al.channels_from(cfg) if channels is None else channels
        self.metrics = metrics
        self.clock = clock
        self.rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self.store = Store.open(cfg.store_path, create=True)
        self._pending: list[RoundResult] = []
        self._maintained_hour: int | None = None

    def close(self) -> None:
        self.store.close()

    # ------------------------------------------------------------------ one round
    def round(self) -> RoundResult:
        t = int(self.clock() * 1000)
        started = time.monotonic()
        probes = self.make_probes()
        observations = run_probes(probes, self.cfg.vantage, self.cfg.round_deadline)
        result = RoundResult(t, time.monotonic() - started, observations)
        self._pending.append(result)
        try:
            self._write_pending()
        except StoreLocked as exc:
            result.recorded = False
            log.warning("round kept in memory (%d waiting): %s", len(self._pending), exc.message)
        if self.metrics:
            self.metrics.observe(observations, t, result.duration, self.cfg.vantage)
        self._maintain(t)
        failed = result.failed
        log.info(
            "round: %d/%d probes passed in %.2fs", len(observations) - len(failed), len(observations), result.duration
        )
        for o in failed:
            log.warning("failed: %s: %s", o.key.label, o.detail)
        return result

    def _write_pending(self) -> None:
        with self.store.transaction():
            for res in self._pending:
                res.alerts = self._record(res)
        self._pending.clear()

    def _record(self, res: RoundResult) -> list[int]:
        st, cfg = self.store, self.cfg
        states = st.states()
        updates, events = al.evaluate(states, res.observations, cfg, res.t, st.last_rounds())
        st.add_results(Row(o.key, res.t, o.ok, o.latency_ms, o.error, o.value) for o in res.observations)
        st.add_round(cfg.vantage, res.t, int(res.duration * 1000), len(res.observations), len(res.failed))
        for key, (state, fails, since, detail) in updates.items():
            st.set_state(key, state, fails, since, detail)
        ids = []
        for a in al.compose(events, cfg.vantage, self.env, res.t, cfg.down_after):
            ids.append(st.add_alert(res.t, cfg.vantage, a.kind, a.subject, a.text, a.body, self.channels))
            log.warning("alert: %s", a.subject)
        return ids

    def _maintain(self, t: int) -> None:
        hour = t // HOUR_MS
        if hour == self._maintained_hour or self._pending:
            return
        try:
            self.store.maintain(t, self.cfg.retention_raw_days, self.cfg.retention_hourly_days)
            self._maintained_hour = hour
        except StoreLocked as exc:
            log.warning("retention postponed: %s", exc.message)

    def deliver(self) -> dict[str, int]:
        if not self.channels:
            return {}
        return al.deliver_due(self.store, self.channels, self.cfg, int(self.clock() * 1000))

    # ------------------------------------------------------------------ schedules
    def once(self) -> RoundResult:
        """One round (cron, CI), then one delivery pass; the caller exits 40 on failures."""
        lock = RoundLock(self.cfg.store_path)
        lock.acquire()
        try:
            result = self.round()
            if self._pending:
                raise StoreLocked(f"watch store {self.cfg.store_path}: still locked; this round was not recorded")
            self.deliver()
            return result
        finally:
            lock.release()

    def run(self, stop: threading.Event, duration: float | None = None, on_round: Callable | None = None) -> int:
        """Rounds until `stop` is set or `duration` seconds have passed. Returns how many ran."""
        lock = RoundLock(self.cfg.store_path)
        lock.acquire()
        dispatcher = Dispatcher(self.cfg, self.channels, self.clock, stop)
        dispatcher.start()
        started = time.monotonic()
        end = started + duration if duration else math.inf
        slot = started
        rounds = 0
        try:
            while not stop.is_set():
                wait = slot + self.rng.uniform(0, self.cfg.jitter) - time.monotonic()
                if time.monotonic() + max(wait, 0) >= end or stop.wait(max(0.0, wait)):
                    break
                result = self.round()
                rounds += 1
                dispatcher.wake()
                if on_round:
                    on_round(result)
                slot += self.cfg.interval
                now = time.monotonic()
                if now > slot:  # overran: the missed slots are skipped, not run back to back
                    missed = math.ceil((now - slot) / self.cfg.interval)
                    log.warning("round took %.1fs; skipping %d slot(s)", result.duration, missed)
                    slot += missed * self.cfg.interval
        finally:
            dispatcher.stop()
            if self._pending:
                try:
                    self._write_pending()
                except StoreLocked as exc:
                    log.error("%d round(s) not recorded: %s", len(self._pending), exc.message)
            lock.release()
        return rounds


class Dispatcher(threading.Thread):
    """Delivers due alerts with a store connection of its own, between and during rounds."""

    def __init__(
        self, cfg: WatchConfig, channels: dict[str, al.Channel], clock: Callable[[], float], stop: threading.Event
    ):
        super().__init__(name="watch-alerts", daemon=True)
        self.cfg, self.channels, self.clock = cfg, channels, clock
        self._stop_loop = threading.Event()
        self._wake = threading.Event()
        self._outer = stop

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop_loop.set()
        self._wake.set()
        if self.is_alive():
            self.join(self.cfg.webhook_timeout + self.cfg.smtp_timeout + 5)

    def run(self) -> None:
        if not self.channels:
            return
        store = Store.open(self.cfg.store_path, create=True)
        try:
            while not self._stop_loop.is_set():
                now = int(self.clock() * 1000)
                try:
                    al.deliver_due(store, self.channels, self.cfg, now)
                    nxt = store.next_delivery_time()
                except Exception as exc:  # a locked store, a bug in a channel: logged, never fatal
                    log.error("alert delivery pass failed: %s", getattr(exc, "message", exc))
                    nxt = now + 5000
                wait = 60.0 if nxt is None else max(0.05, min(60.0, (nxt - now) / 1000))
                self._wake.wait(wait)
                self._wake.clear()
        finally:
            store.close()
