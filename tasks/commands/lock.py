"""The host lock's commands (pure): take, inspect, release, and the guard process."""

from __future__ import annotations

from tasks.commands import sh


def take(root: str, lock: str, info_json: str, *then: str) -> list[str]:
    """Atomic `mkdir` of the lock (fails when held), then its details, in one round trip;
    once held, `then` (an argv) runs in the same round trip and its status is ignored."""
    script = 'mkdir -p -- "$1" && mkdir -- "$2" 2>/dev/null && printf "%s\n" "$3" > "$2/info.json"'
    if then:
        script += ' || exit 1; shift 3; "$@"; exit 0'
    return ["sh", "-c", script, "lock", root, lock, info_json, *then]


def inspect(lock: str) -> list[str]:
    """Whether the lock is held and its info.json: "held yes|no", then the document."""
    return ["sh", "-c", 'if [ -d "$1" ]; then echo held yes; cat -- "$1/info.json" 2>/dev/null; else echo held no; fi',
            "inspect", lock]  # fmt: skip


def release(lock: str, token: str) -> list[str]:
    return sh("release-lock", lock, token)


# A process on the target that lives exactly as long as the session: it prints its PID,
# then reads stdin until EOF (tasks/runner/executor.py `spawn_guard`).
GUARD = "echo $$; exec cat >/dev/null"


def guard() -> list[str]:
    return ["sh", "-c", GUARD]
