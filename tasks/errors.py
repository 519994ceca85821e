"""Exit codes and the error types every task maps to them.

One table, documented in docs/guides/exit-codes.md; a test keeps the two in step.
A task never lets a traceback reach the user for an expected failure: it raises one
of these and the CLI layer prints the message and exits with the code.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    UNEXPECTED = 1  # a bug in the tool: the traceback is shown
    CONFIG = 2  # bad settings, bad flags, a refused placeholder
    VALIDATION = 3  # a rendered artifact was rejected by its validator
    PREREQUISITE = 4  # a tool the task needs is missing (docker, compose v2, ...)
    CONFIRMATION = 5  # a destructive action needs --yes (no prompt under CI)
    REMOVAL_REFUSED = 6  # the deploy would remove a service, cron job, port or the database driver: refused
    CONNECTION = 10  # the deploy target cannot be reached
    AUTH = 11  # the target refused our credentials
    HOST_KEY = 12  # the host key is unknown or changed
    COMMAND_FAILED = 13  # a command on the target failed or timed out
    UNTRUSTED = 14  # the target (or a backup copy) sent a document or name the tool refuses
    LOCK_HELD = 20  # another deploy/rollback/backup holds the host lock (or a stale lock is left)
    DEPLOY_FAILED = 30  # the deploy failed before switching: the running release is untouched
    ROLLED_BACK = 31  # the new release failed after starting; the previous one runs again
    ROLLBACK_FAILED = 32  # the new release failed and bringing the previous one back failed too
    NO_BACKUP_YET = 33  # deployed and healthy, but the baseline backup failed: the environment has no backup yet
    ROTATION_ROLLED_BACK = 34  # secret rotation failed and was put back: the stack runs on the old secrets
    ROTATION_FAILED = 35  # secret rotation failed and putting it back failed too: the message says what runs
    HEALTH_FAILED = 40  # a required health probe failed
    WATCH_STORE_CORRUPT = 41  # the watch history store is not a readable store of this tool: left untouched
    WATCH_STORE_LOCKED = 42  # another process held the watch store's write lock too long
    WATCH_STORE_MISSING = 43  # no watch history store at the path (nothing recorded there yet)
    BACKUP_FAILED = 50  # the backup did not complete; nothing partial is kept
    BACKUP_NOT_FOUND = 51  # no backup with that id (on the host, or at the local path)
    BACKUP_CORRUPT = 52  # a file is missing or its size/sha256 differs from the manifest: refused
    VERIFY_FAILED = 53  # the restore drill failed: the backup does not restore as recorded
    RESTORE_FAILED = 54  # the restore failed (the tracker is started again; a safety backup exists)
    INFRA_FAILED = 60  # an OpenTofu command (init, plan, apply, destroy, ...) failed
    INFRA_MISSING = 61  # nothing provisioned or recorded for the environment yet
    PROTECTED = 62  # destroy refused: a protected environment or a registered server
    WAIT_UNREACHABLE = 63  # infra.wait: no SSH answer from the host before the deadline
    WAIT_REFUSED = 64  # infra.wait: the SSH port refused connections until the deadline
    WAIT_AUTH = 65  # infra.wait: SSH refused the deploy key until the deadline (not installed yet / wrong key)
    CLOUD_INIT_TIMEOUT = 66  # infra.wait: cloud-init still running at the deadline
    CLOUD_INIT_FAILED = 67  # cloud-init (or the hardening script) failed on the host
    HOST_NOT_READY = 68  # infra.register: the host lacks Docker, Compose v2 or sudo
    FLEET_PARTIAL = 70  # a fleet task succeeded on some hosts, not all (each host's own code is in the result)
    FLEET_FAILED = 71  # a fleet task succeeded on no host


class ToolError(Exception):
    """An expected failure with a message for the operator and an exit code."""

    code: ExitCode = ExitCode.UNEXPECTED

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def render(self) -> str:
        text = f"error: {self.message}"
        if self.hint:
            text += f"\nhint: {self.hint}"
        return text

    def as_dict(self) -> dict:
        return {"error": type(self).__name__, "code": int(self.code), "message": self.message, "hint": self.hint}


class ConfigError(ToolError):
    code = ExitCode.CONFIG


class SettingsError(ConfigError):
    """Every problem found while loading settings, reported at once."""

    def __init__(self, env: str, problems: list[str]):
        self.env = env
        self.problems = problems
        n = len(problems)
        lines = [f"configuration for environment '{env}' has {n} problem{'s' if n != 1 else ''}:"]
        lines += [f"  - {p}" for p in problems]
        super().__init__("\n".join(lines), hint="fix the values named above; nothing was written or changed")

    def as_dict(self) -> dict:
        d = super().as_dict()
        d["problems"] = self.problems
        return d


class ValidationError(ToolError):
    code = ExitCode.VALIDATION


class PrerequisiteError(ToolError):
    code = ExitCode.PREREQUISITE


class ConfirmationRequired(ToolError):
    code = ExitCode.CONFIRMATION


class ConnectionFailed(ToolError):
    code = ExitCode.CONNECTION


class AuthFailed(ToolError):
    code = ExitCode.AUTH


class HostKeyError(ToolError):
    code = ExitCode.HOST_KEY


class CommandFailed(ToolError):
    code = ExitCode.COMMAND_FAILED

    def __init__(self, message: str, *, exit_status: int | None = None, output: str = "", hint: str | None = None):
        super().__init__(message, hint=hint)
        self.exit_status = exit_status
        self.output = output

    def brief(self, width: int = 100) -> str:
        """One line for a summary or an audit line: the command shortened and what it
        printed last (a lost connection says so instead)."""
        first = self.message.splitlines()[0]
        last = (self.output.strip().splitlines() or [""])[-1].strip()
        if "connection was lost" in first or not last:
            return first if len(first) <= 2 * width else first[: 2 * width] + "..."
        head = first if len(first) <= width else first[:width] + "..."
        return f"{head} (exit {self.exit_status}): {last[:200]}"


class Untrusted(ToolError):
    """A document or name that crossed the trust boundary (from the deploy target, or a
    backup copy) is malformed or unsafe: refused before anything is read or written."""

    code = ExitCode.UNTRUSTED


class MalformedFact(Untrusted):
    """A host's output or document does not have the shape its parser accepts."""


class UnsafeName(Untrusted):
    """A file name that is not one flat name inside its directory (tasks/facts/paths.py)."""


class ManifestRefused(MalformedFact):
    """A backup's manifest.json is not the typed shape tasks/facts/backup.py accepts."""


class DeployFailed(ToolError):
    code = ExitCode.DEPLOY_FAILED


class RolledBack(ToolError):
    code = ExitCode.ROLLED_BACK


class RollbackFailed(ToolError):
    code = ExitCode.ROLLBACK_FAILED


class RemovalRefused(ToolError):
    """A deploy would remove something the running release has (a service, the backup
    cron job, a published port) or switch the database driver: refused before anything is
    touched, unless --allow-removal or TORRUST_ALLOW_REMOVAL names it."""

    code = ExitCode.REMOVAL_REFUSED

    def __init__(self, message: str, *, removals: list[str], hint: str | None = None):
        super().__init__(message, hint=hint)
        self.removals = removals

    def as_dict(self) -> dict:
        return {**super().as_dict(), "removals": self.removals}


class NoBackupYet(ToolError):
    """The release is deployed and healthy, but its baseline backup failed."""

    code = ExitCode.NO_BACKUP_YET


class RotationRolledBack(ToolError):
    code = ExitCode.ROTATION_ROLLED_BACK


class RotationFailed(ToolError):
    code = ExitCode.ROTATION_FAILED


class HealthFailed(ToolError):
    code = ExitCode.HEALTH_FAILED


class StoreCorrupt(ToolError):
    code = ExitCode.WATCH_STORE_CORRUPT


class StoreLocked(ToolError):
    code = ExitCode.WATCH_STORE_LOCKED


class StoreMissing(ToolError):
    code = ExitCode.WATCH_STORE_MISSING


class BackupFailed(ToolError):
    code = ExitCode.BACKUP_FAILED


class BackupNotFound(ToolError):
    code = ExitCode.BACKUP_NOT_FOUND


class BackupCorrupt(ToolError):
    code = ExitCode.BACKUP_CORRUPT


class VerifyFailed(ToolError):
    code = ExitCode.VERIFY_FAILED


class RestoreFailed(ToolError):
    code = ExitCode.RESTORE_FAILED


class InfraFailed(ToolError):
    code = ExitCode.INFRA_FAILED


class InfraMissing(ToolError):
    code = ExitCode.INFRA_MISSING


class Protected(ToolError):
    code = ExitCode.PROTECTED


class WaitUnreachable(ToolError):
    code = ExitCode.WAIT_UNREACHABLE


class WaitRefused(ToolError):
    code = ExitCode.WAIT_REFUSED


class WaitAuth(ToolError):
    code = ExitCode.WAIT_AUTH


class CloudInitTimeout(ToolError):
    code = ExitCode.CLOUD_INIT_TIMEOUT


class CloudInitFailed(ToolError):
    code = ExitCode.CLOUD_INIT_FAILED


class HostNotReady(ToolError):
    code = ExitCode.HOST_NOT_READY


class FleetPartial(ToolError):
    code = ExitCode.FLEET_PARTIAL


class FleetFailed(ToolError):
    code = ExitCode.FLEET_FAILED
