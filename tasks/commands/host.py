"""Host-side file commands for the release layout, as argv lists (pure)."""

from __future__ import annotations


def remove_tree(path: str) -> list[str]:
    return ["rm", "-rf", "--", path]


def symlink_atomic(target: str, link: str) -> list[str]:
    """Point `link` at `target` atomically: a new symlink renamed over the old one."""
    tmp = f"{link}.new"
    return ["sh", "-c", 'ln -sfn "$1" "$2" && mv -T "$2" "$3"', "switch", target, tmp, link]


def remove_link(link: str) -> list[str]:
    return ["rm", "-f", "--", link]


def read_link(path: str) -> list[str]:
    return ["readlink", path]


def cat(path: str) -> list[str]:
    return ["cat", "--", path]


def process_alive(pid: int) -> list[str]:
    return ["test", "-d", f"/proc/{int(pid)}"]


def append_line(path: str, line: str) -> list[str]:
    """Append one line (never a secret: the executor refuses command lines holding one)."""
    return ["sh", "-c", 'umask 077; printf "%s\n" "$2" >> "$1"', "append", path, line]


def write_marker(path: str, text: str) -> list[str]:
    return ["sh", "-c", 'printf "%s\n" "$2" > "$1"', "marker", path, text]


def take_lock(root: str, lock: str, info_json: str, *then: str) -> list[str]:
    """Atomic `mkdir` of the lock (fails when held), then its details, in one round trip;
    once held, `then` (an argv) runs in the same round trip and its status is ignored."""
    script = 'mkdir -p -- "$1" && mkdir -- "$2" 2>/dev/null && printf "%s\n" "$3" > "$2/info.json"'
    if then:
        script += ' || exit 1; shift 3; "$@"; exit 0'
    return ["sh", "-c", script, "lock", root, lock, info_json, *then]


def release_lock(lock: str, token: str) -> list[str]:
    """Remove the lock only if it is ours (its info.json carries our token) and no host-side
    worker (a backup script that outlived our connection) still runs under it; that
    worker releases it itself when it ends."""
    return [
        "sh",
        "-c",
        'w=$(sed -n \'s/.*"worker_pid": \\([0-9]*\\).*/\\1/p\' "$1/info.json" 2>/dev/null); '
        'if [ -n "$w" ] && [ -d "/proc/$w" ]; then exit 0; fi; '
        'if [ ! -e "$1/info.json" ] || grep -q -- "$2" "$1/info.json"; then rm -rf -- "$1"; fi',
        "unlock",
        lock,
        token,
    ]
