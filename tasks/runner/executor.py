"""The one place that runs commands: locally or on the deploy target, the same way.

Commands arrive as argv lists (built by the pure functions in `tasks.commands`) and are
quoted here. The executor wraps an Invoke `Context` (this machine) or a Fabric
`Connection` (the target): both have the same `run()`, so every operation is written
once. It enforces a timeout on every command, never echoes a secret (a command line
that contains one is refused: secrets travel in files), redacts secrets from captured
output and errors, and records what ran for the step log.
"""

from __future__ import annotations

import io
import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import invoke

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
    """Replaces every known secret value with a mask."""

    def __init__(self, secrets: Iterable[str] = ()):
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for s in self._secrets:
            text = text.replace(s, MASK)
        return text

    def contains_secret(self, text: str) -> bool:
        return any(s in text for s in self._secrets)


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
        command = shlex.join(argv)
        if cwd:
            command = f"cd {shlex.quote(cwd)} && {command}"
        if self.redact.contains_secret(command):
            # A bug in the tool, never an operator error: secrets go in files, not argv.
            raise ToolError("refusing to run a command line that contains a secret")
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
        result = Result(
            tuple(argv), out.exited, self.redact(out.stdout), self.redact(out.stderr), time.monotonic() - started
        )
        self.history.append(result)
        if check and not result.ok and self.remote and not self.connected:
            raise CommandFailed(
                f"{self.where}: the connection was lost while running `{self.redact(command)}`",
                exit_status=result.exit_status,
            )
        if check and not result.ok:
            tail = (result.stderr or result.stdout).strip().splitlines()[-15:]
            raise CommandFailed(
                f"{self.where}: `{self.redact(command)}` exited with {result.exit_status}"
                + ("\n    " + "\n    ".join(tail) if tail else ""),
                exit_status=result.exit_status,
                output=result.stdout + result.stderr,
            )
        return result

    def stream(self, argv: Sequence[str], *, timeout: int | None = None) -> int:
        """Run with output passed straight through (logs, exec); returns the exit status."""
        command = shlex.join(argv)
        if self.redact.contains_secret(command):
            raise ToolError("refusing to run a command line that contains a secret")
        out = self.ctx.run(command, hide=False, warn=True, pty=False, timeout=timeout, in_stream=False)
        return out.exited

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
        script = "echo $$; exec cat >/dev/null"
        if self.remote:
            chan = self.ctx.client.get_transport().open_session()
            chan.exec_command(f"sh -c {shlex.quote(script)}")
            line = chan.makefile("r").readline()
            return Guard(int(line.strip()), chan.close)
        proc = subprocess.Popen(["sh", "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
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
    return Executor(invoke.Context(), redact or Redactor(), timeout, "local")
