"""Run one function per host of a fleet in a bounded thread pool (docs/adr/0014-fleets.md).

    canaries   the first K hosts, in declaration order; no other host starts before all
               of them succeeded, and a failed canary always stops the rollout
    the rest   N at a time, as a window: a host starts as soon as another one ends
    a failure  stops starting hosts: hosts not reached stay untouched, hosts done keep
               what they did; with continue_on_error the other hosts go on
    Ctrl-C     (SIGTERM too) stops starting hosts; the running ones finish, or roll back
               on their own failure, and the result says where each host stands. During
               the walk the signals are counted, not raised: a KeyboardInterrupt inside
               `pool.submit` could start a host that neither the pool nor the walk waits for.

Each host's work gets its own step printer (its lines prefixed with the environment,
written whole under one lock) and records its own result, so nothing the main thread
does (an interrupt included) can lose a host that ran. A host's failure is its
`ToolError`: its exit code and message are kept, and its status named by the table
`ERROR_STATUS`.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TextIO

from tasks.errors import AuthFailed, ConnectionFailed, HostKeyError, RollbackFailed, RolledBack, ToolError
from tasks.fleet.declaration import Member, RolloutOptions
from tasks.operations.lock import LockHeld

Step = Callable[[str], object]  # a context-manager factory, as the deploy transaction takes
Work = Callable[[Member, Step], dict]  # one host's work: a result document, or a ToolError

# A host's failure, named by the class of its error (the first match wins).
ERROR_STATUS: tuple[tuple[type[ToolError], str], ...] = (
    (ConnectionFailed, "unreachable"),
    (AuthFailed, "unreachable"),
    (HostKeyError, "unreachable"),
    (LockHeld, "locked"),
    (RollbackFailed, "rollback_failed"),
    (RolledBack, "rolled_back"),
)
NOT_STARTED = "not_started"
POLL = 0.2  # seconds: how soon the walk notices Ctrl-C while hosts run (a host's end wakes it at once)


def status_of(exc: ToolError) -> str:
    return next((status for cls, status in ERROR_STATUS if isinstance(exc, cls)), "failed")


@dataclass
class HostResult:
    env: str
    target: str
    canary: bool = False
    ok: bool = False
    status: str = NOT_STARTED
    code: int | None = None
    error: str | None = None
    hint: str | None = None
    duration: float | None = None
    detail: dict = field(default_factory=dict)
    steps: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        own = {k: v for k, v in self.__dict__.items() if k != "detail"}
        return {**self.detail, **own}


@dataclass
class Rollout:
    fleet: str
    options: RolloutOptions
    hosts: list[HostResult]
    stopped: str | None = None  # why no further host was started
    interrupted: bool = False
    duration: float = 0.0

    @property
    def result(self) -> str:
        done = sum(h.ok for h in self.hosts)
        return "all" if done == len(self.hosts) else "none" if done == 0 else "some"

    def as_dict(self) -> dict:
        return {
            "ok": self.result == "all",
            "fleet": self.fleet,
            "result": self.result,
            "parallel": self.options.parallel,
            "canary": self.options.canary,
            "continue_on_error": self.options.continue_on_error,
            "stopped": self.stopped,
            "interrupted": self.interrupted,
            "duration": round(self.duration, 2),
            "hosts": [h.as_dict() for h in self.hosts],
        }


# ------------------------------------------------------------------------ progress
class Progress:
    """Step lines of several hosts at once: each line whole, prefixed with its host. With
    `stream=None` nothing is printed (the read-only views) but steps are still recorded."""

    def __init__(self, names: list[str], stream: TextIO | None = sys.stderr):
        self.width = max((len(n) for n in names), default=0)
        self.stream = stream
        self.lock = threading.Lock()

    def line(self, env: str, text: str) -> None:
        if self.stream is not None:
            with self.lock:
                print(f"{env:<{self.width}}  {text}", file=self.stream, flush=True)

    def note(self, text: str) -> None:
        if self.stream is not None:
            with self.lock:
                print(text, file=self.stream, flush=True)

    def host(self, env: str) -> HostSteps:
        return HostSteps(self, env)


class HostSteps:
    """The `step` of one host: one line per step when it ends, with its duration."""

    def __init__(self, progress: Progress, env: str):
        self.progress, self.env = progress, env
        self.steps: list[dict] = []

    @contextmanager
    def __call__(self, title: str) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        except BaseException:
            self._done(title, started, False)
            raise
        self._done(title, started, True)

    def _done(self, title: str, started: float, ok: bool) -> None:
        seconds = round(time.monotonic() - started, 2)
        self.steps.append({"step": title, "ok": ok, "seconds": seconds})
        self.progress.line(self.env, f"{'✓' if ok else '✗'} {title} ({seconds:.2f}s)")


# ------------------------------------------------------------------------ the walk
class _Walk:
    def __init__(self, members: list[Member], work: Work, opts: RolloutOptions, progress: Progress, label: str):
        self.work, self.opts, self.progress, self.label = work, opts, progress, label
        self.canaries = {m.env for m in members[: opts.canary]}
        self.members = members
        self.results = {m.env: HostResult(m.env, m.where, m.env in self.canaries) for m in members}
        self.lock = threading.Lock()  # guards self.results: the workers write their own
        self.stopped: str | None = None
        self.interrupted = False
        self.signals = self.noticed = 0  # SIGINT/SIGTERM received, and noticed by the loop

    def one(self, m: Member) -> HostResult:
        """A host's work, run in a worker thread; never raises."""
        result = HostResult(m.env, m.where, m.env in self.canaries, status="running")
        with self.lock:
            self.results[m.env] = result
        self.progress.line(m.env, f"==> {self.label} {m.where}" + (" (canary)" if result.canary else ""))
        steps = self.progress.host(m.env)
        started = time.monotonic()
        try:
            doc = self.work(m, steps)
            result.ok = bool(doc.get("ok", True))
            result.status = str(doc.get("status", "done"))
            result.code = 0 if result.ok else int(doc.get("code", 1))
            result.detail = {k: v for k, v in doc.items() if k not in ("ok", "status", "code", "steps")}
        except ToolError as exc:
            extra = {k: v for k, v in exc.as_dict().items() if k not in ("error", "code", "message", "hint")}
            result.status, result.code, result.error, result.hint = status_of(exc), int(exc.code), exc.message, exc.hint
            result.detail = extra
        except Exception as exc:  # a bug in the tool: this host failed; the traceback is shown
            self.progress.note(traceback.format_exc())
            result.status, result.code, result.error = "error", 1, f"{type(exc).__name__}: {exc}"
        result.duration, result.steps = round(time.monotonic() - started, 2), steps.steps
        self.progress.line(m.env, _outcome_line(result))
        return result

    def may_start(self, m: Member) -> bool:
        if m.env in self.canaries:
            return True
        with self.lock:
            return all(self.results[c].ok for c in self.canaries)

    def failed(self, m: Member) -> None:
        """A host failed: stop starting others, unless told to go on (never after a canary)."""
        if self.stopped is None and (m.env in self.canaries or not self.opts.continue_on_error):
            with self.lock:
                status = self.results[m.env].status
            self.stopped = f"{m.env} failed" + (f" ({status})" if status != "failed" else "")
            self.progress.note(f"stopping: {self.stopped}; no other host will be started")

    def on_signal(self, signum, frame) -> None:
        """SIGINT/SIGTERM during the walk: only counted here (no exception is raised into
        the pool's bookkeeping); the main loop notices it within POLL seconds."""
        self.signals += 1

    def notice(self, running: dict) -> None:
        if self.signals == self.noticed:
            return
        self.noticed = self.signals
        self.interrupted = True
        self.stopped = self.stopped or "interrupted (Ctrl-C)"
        names = ", ".join(m.env for m in running.values()) or "none"
        self.progress.note(
            f"interrupted: no other host will be started; waiting for the running ones to finish or roll back: {names}"
        )

    def run(self) -> None:
        pending = deque(self.members)
        running: dict = {}
        with caught_interrupts(self.on_signal), ThreadPoolExecutor(self.opts.parallel, "fleet") as pool:
            while pending or running:
                self.notice(running)
                while pending and self.stopped is None and len(running) < self.opts.parallel:
                    if not self.may_start(pending[0]):
                        break
                    m = pending.popleft()
                    running[pool.submit(self.one, m)] = m
                if not running:
                    break
                done, _ = wait(list(running), timeout=POLL, return_when=FIRST_COMPLETED)
                for future in done:
                    m = running.pop(future)
                    if not future.result().ok:
                        self.failed(m)
            self.notice(running)
        for m in pending:
            self.results[m.env].error = f"not started: {self.stopped}; untouched"


@contextmanager
def caught_interrupts(handler: Callable) -> Iterator[None]:
    """SIGINT and SIGTERM call `handler` instead of raising KeyboardInterrupt, for the
    block (signal handlers belong to the main thread: elsewhere nothing changes)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def run(
    fleet: str,
    members: list[Member],
    work: Work,
    opts: RolloutOptions,
    progress: Progress | None = None,
    label: str = "on",
) -> Rollout:
    """Walk the hosts as `opts` says, `work(member, step)` on each; never raises for a
    host's failure (each host's result says it). `label` starts each host's first line."""
    started = time.monotonic()
    walk = _Walk(list(members), work, opts, progress or Progress([m.env for m in members]), label)
    walk.run()
    hosts = [walk.results[m.env] for m in members]
    return Rollout(fleet, opts, hosts, walk.stopped, walk.interrupted, time.monotonic() - started)


def _outcome_line(r: HostResult) -> str:
    if r.ok:
        release = r.detail.get("release")
        return f"{r.status}" + (f" {release}" if release else "") + f" in {r.duration:.2f}s"
    return f"✗ {r.status} (exit {r.code}): {(r.error or '').splitlines()[0] if r.error else 'not ok'}"
