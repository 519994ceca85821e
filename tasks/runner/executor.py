"""The one place that runs commands: locally or on the deploy target, the same way.

Commands arrive as argv lists (built by the pure functions in `tasks.commands`) and are
quoted here. The executor wraps an Invoke `Context` (this machine) or a Fabric
`Connection` (the target): both have the same `run()`, so every operation is written
once. It enforces a timeout on every command, never echoes a secret (a command line
that contains one is refused: secrets travel in files), redacts secrets from captured
output and errors, and records what ran for the step log.
"""

from __future__ import annotations

import contextlib
import io
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from urllib.parse import quote, quote_plus

import invoke

from tasks.commands import lock as lock_cmd
from tasks.commands import sh
from tasks.config.secrets import MASK
from tasks.errors import CommandFailed, ToolError


@dataclass(frozen=True)
class Result:
    argv: tuple[str, ...]
    exit_status: int
    stdout: str
    stderr: str
    duration: float

    @property
    def ok(self) -> bool:
        return self.exit_status == 0


class Redactor:
    """Replaces every known secret value with a mask: as written, and in the encoded forms
    it takes in URLs and form bodies (the MySQL password sits percent-encoded in the
    tracker's database URL)."""

    def __init__(self, secrets: Iterable[str] = ()):
        forms = {f for s in secrets if s for f in (s, quote(s, safe=""), quote_plus(s), quote(s))}
        self._secrets = sorted(forms, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for s in self._secrets:
            text = text.replace(s, MASK)
        return text

    def contains_secret(self, text: str) -> bool:
        return any(s in text for s in self._secrets)


# Every command can be shown as it runs (`--verbose` or TORRUST_VERBOSE=1): redacted,
# with where it ran, its duration and its exit status. The CLI boundary installs the sink.
Listener = Callable[["Executor", "Result"], None]
_listeners: list[Listener] = []


def on_command(listener: Listener) -> None:
    _listeners.append(listener)


def describe(ex: Executor, result: Result) -> str:
    """One line for the verbose log: `[where] $ command (0.12s, exit 0)`, redacted; a script
    sent with `sh -c` is named (`<scripts/snapshot.sh>`), not printed whole."""
    argv = list(result.argv)
    if argv[:2] == ["sh", "-c"] and len(argv) > 3 and "\n" in argv[2]:
        argv[2:4] = [f"<scripts/{argv[3]}.sh>"]
    line = ex.redact(shlex.join(argv))
    return f"[{ex.where}] $ {line} ({result.duration:.2f}s, exit {result.exit_status})"


@dataclass
class Executor:
    ctx: invoke.Context  # an Invoke Context, or a Fabric Connection (a Context subclass)
    redact: Redactor = field(default_factory=Redactor)
    timeout: int = 600
    where: str = "local"
    history: list[Result] = field(default_factory=list)

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: int | None = None,
        check: bool = True,
        stdin: str | None = None,
        cwd: str | None = None,
    ) -> Result:
        command = self._command(argv, cwd)
        started = time.monotonic()
        try:
            out = self.ctx.run(
                command,
                hide=True,
                warn=True,
                pty=False,
                timeout=timeout or self.timeout,
                in_stream=io.StringIO(stdin) if stdin is not None else False,
            )
        except invoke.CommandTimedOut as exc:
            raise CommandFailed(
                f"{self.where}: timed out after {exc.timeout}s: {self.redact(command)}",
                output=self.redact(exc.result.stdout + exc.result.stderr),
            ) from None
        result = self._record(
            Result(
                tuple(argv), out.exited, self.redact(out.stdout), self.redact(out.stderr), time.monotonic() - started
            )
        )
        if check:
            self._raise_on_failure(result, command)
        return result

    def _command(self, argv: Sequence[str], cwd: str | None = None) -> str:
        """The quoted command line; refused when it holds a secret (a bug in the tool, never
        an operator error: secrets go in files, not argv)."""
        command = shlex.join(argv)
        if cwd:
            command = f"cd {shlex.quote(cwd)} && {command}"
        if self.redact.contains_secret(command):
            raise ToolError("refusing to run a command line that contains a secret")
        return command

    def _raise_on_failure(self, result: Result, command: str) -> None:
        """CommandFailed for a failed result: a lost connection named as such, otherwise the
        exit status with the tail of the (redacted) output."""
        if result.ok:
            return
        if self.remote and not self.connected:
            message = f"{self.where}: the connection was lost while running `{self.redact(command)}`"
        else:
            tail = (result.stderr or result.stdout).strip().splitlines()[-15:]
            message = f"{self.where}: `{self.redact(command)}` exited with {result.exit_status}" + (
                "\n    " + "\n    ".join(tail) if tail else ""
            )
        raise CommandFailed(message, exit_status=result.exit_status, output=result.stdout + result.stderr)

    def feed(self, argv: Sequence[str], data: bytes, *, timeout: int | None = None, check: bool = True) -> Result:
        """Run with `data` (bytes, e.g. an archive, or a secret a script reads) on stdin, in
        one round trip; raises CommandFailed like `run` (unless `check` is false). (Invoke's
        in_stream polls a byte at a time: far too slow for an archive, hence a channel of
        our own.)"""
        command = self._command(argv)
        limit = timeout or self.timeout
        started = time.monotonic()
        try:
            if self.remote:
                status, out, err = self._feed_remote(command, data, limit)
            else:
                done = subprocess.run(["sh", "-c", command], input=data, capture_output=True, timeout=limit)
                status, out, err = done.returncode, done.stdout, done.stderr
        except (TimeoutError, subprocess.TimeoutExpired):
            raise CommandFailed(f"{self.where}: timed out after {limit}s: {self.redact(command)}") from None
        result = self._record(
            Result(
                tuple(argv),
                status,
                self.redact(out.decode("utf-8", "replace")),
                self.redact(err.decode("utf-8", "replace")),
                time.monotonic() - started,
            )
        )
        if check:
            self._raise_on_failure(result, command)
        return result

    def _record(self, result: Result) -> Result:
        self.history.append(result)
        for listener in _listeners:
            listener(self, result)
        return result

    def _feed_remote(self, command: str, data: bytes, limit: float) -> tuple[int, bytes, bytes]:
        chan = self.ctx.client.get_transport().open_session()
        try:
            chan.settimeout(limit)  # each blocking send/recv; socket.timeout is a TimeoutError
            chan.exec_command(command)
            chan.sendall(data)
            chan.shutdown_write()
            # Small outputs only (scripts that print a few lines): stderr waits in the
            # channel's buffer while stdout is read to its end.
            out = b"".join(iter(lambda: chan.recv(65536), b""))
            err = b"".join(iter(lambda: chan.recv_stderr(65536), b""))
            if not chan.status_event.wait(limit):
                raise TimeoutError
            return (chan.exit_status if self.connected else -1), out, err
        finally:
            chan.close()

    def stream(self, argv: Sequence[str], *, timeout: int | None = None) -> int:
        """Run with output passed through as it comes (logs, exec), secrets redacted per
        line; returns the exit status. Ctrl-C stops the command on the target too."""
        command = self._command(argv)
        started = time.monotonic()
        if self.remote:
            status = self._stream_remote(command, timeout)
        else:
            status = self._stream_local(command, timeout)
        self._record(Result(tuple(argv), status, "", "", time.monotonic() - started))
        return status

    def _stream_local(self, command: str, timeout: int | None) -> int:
        """Output redacted per line, like the remote path; Ctrl-C reaches the child too (same
        process group), and it is waited for."""
        proc = subprocess.Popen(["sh", "-c", command], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            for raw in proc.stdout:
                sys.stdout.write(self.redact(raw.decode("utf-8", "replace")))
                sys.stdout.flush()
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise CommandFailed(f"{self.where}: timed out after {timeout}s: {self.redact(command)}") from None
        finally:
            if proc.poll() is None:
                proc.terminate()
                proc.wait()

    def _stream_remote(self, command: str, timeout: int | None) -> int:
        with interrupts_as_flag() as stop:
            return self._stream_channel(command, timeout, stop)

    def _stream_channel(self, command: str, timeout: int | None, stop: threading.Event) -> int:
        chan = self.ctx.client.get_transport().open_session()
        deadline = time.monotonic() + timeout if timeout else None
        pending = {1: b"", 2: b""}

        def emit(fd: int, data: bytes, final: bool = False) -> None:
            buf = pending[fd] + data
            lines, _, rest = buf.rpartition(b"\n") if not final else (buf, b"", b"")
            pending[fd] = rest
            if lines:
                out = sys.stdout if fd == 1 else sys.stderr
                out.write(self.redact(lines.decode("utf-8", "replace")) + ("" if final else "\n"))
                out.flush()

        try:
            chan.exec_command(shlex.join(sh("stoppable")) + f" {command}")
            while True:
                if stop.is_set():  # Ctrl-C or SIGTERM, acted on between paramiko's calls
                    raise KeyboardInterrupt
                if chan.recv_ready():
                    emit(1, chan.recv(65536))
                elif chan.recv_stderr_ready():
                    emit(2, chan.recv_stderr(65536))
                elif chan.exit_status_ready() or chan.closed or not self.connected:
                    while chan.recv_ready() or chan.recv_stderr_ready():
                        emit(1, chan.recv(65536)) if chan.recv_ready() else emit(2, chan.recv_stderr(65536))
                    break
                elif deadline and time.monotonic() > deadline:
                    raise CommandFailed(f"{self.where}: timed out after {timeout}s: {self.redact(command)}")
                else:
                    time.sleep(0.02)
            emit(1, b"", final=True)
            emit(2, b"", final=True)
            return chan.recv_exit_status() if chan.exit_status_ready() else -1
        finally:
            try:
                chan.shutdown_write()  # the watcher's EOF: the command stops if still running
            except (OSError, EOFError):  # the channel or connection is gone already
                pass
            chan.close()

    # ---------------------------------------------------------------- files and guards
    @property
    def remote(self) -> bool:
        return hasattr(self.ctx, "sftp")  # a Fabric Connection

    @property
    def connected(self) -> bool:
        return not self.remote or bool(self.ctx.is_connected)

    def put(self, data: bytes, path: str, mode: int = 0o600) -> None:
        """Write a file on the target with `mode` from its creation on."""
        if self.remote:
            sftp = self.ctx.sftp()
            with sftp.open(path, "wb") as fh:
                fh.chmod(mode)  # before any byte is written
                fh.write(data)
            return
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), mode)
            fh.write(data)

    def get(self, path: str) -> bytes:
        if self.remote:
            buf = io.BytesIO()
            self.ctx.sftp().getfo(path, buf)
            return buf.getvalue()
        with open(path, "rb") as fh:
            return fh.read()

    def fetch(self, path: str, local_path: str) -> None:
        """Copy a file from the target to this machine, streamed (large backups)."""
        if self.remote:
            self.ctx.sftp().get(path, local_path)
        else:
            shutil.copyfile(path, local_path)

    def put_file(self, local_path: str, path: str, mode: int = 0o600) -> None:
        """Copy a file from this machine to the target, streamed, with `mode` from creation on."""
        if self.remote:
            sftp = self.ctx.sftp()
            with sftp.open(path, "wb") as fh, open(local_path, "rb") as src:
                fh.chmod(mode)
                fh.set_pipelined(True)
                shutil.copyfileobj(src, fh, 1 << 20)
            return
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as fh, open(local_path, "rb") as src:
            os.fchmod(fh.fileno(), mode)
            shutil.copyfileobj(src, fh, 1 << 20)

    def spawn_guard(self) -> Guard:
        """A process on the target that lives exactly as long as this executor's session.

        It reads its stdin until EOF: when we exit, are killed (even SIGKILL) or lose the
        connection, its stdin closes and it ends. A lock naming its PID is stale once the
        PID is gone.
        """
        if self.remote:
            chan = self.ctx.client.get_transport().open_session()
            chan.exec_command(shlex.join(lock_cmd.guard()))
            line = chan.makefile("r").readline()
            return Guard(int(line.strip()), chan.close)
        proc = subprocess.Popen(lock_cmd.guard(), stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        line = proc.stdout.readline()

        def close() -> None:
            proc.stdin.close()
            proc.wait(timeout=10)

        return Guard(int(line.strip()), close)


@dataclass
class Guard:
    pid: int
    close: Callable[[], None]


def local(redact: Redactor | None = None, timeout: int = 600) -> Executor:
    # lazy: no /etc/invoke.yaml or ~/.invoke.yaml (run.echo, run.env, ...) changes how commands run
    return Executor(invoke.Context(config=invoke.Config(lazy=True)), redact or Redactor(), timeout, "local")


@contextlib.contextmanager
def interrupts_as_flag():
    """Ctrl-C and SIGTERM set the yielded flag instead of raising wherever the main thread
    is: a KeyboardInterrupt raised inside paramiko (between a lock's acquire and its try)
    can leave the lock held, and closing the channel then waits forever. The streaming loop
    reads the flag between calls and raises KeyboardInterrupt itself. Outside the main
    thread (no signal handlers there) the flag is never set."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, lambda _signum, _frame: stop.set())
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)  # None: not set from Python
