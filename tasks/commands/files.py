"""File commands on the target for the release layout, as argv lists (pure)."""

from __future__ import annotations


def remove_tree(path: str) -> list[str]:
    return ["rm", "-rf", "--", path]


REMOVE_PRIVILEGED = (
    'rm -rf -- "$1" 2>/dev/null || sudo -n rm -rf -- "$1" || '
    '{ echo "cannot remove $1: the files the containers wrote as their own users need passwordless sudo" >&2; '
    "exit 1; }"
)


def remove_tree_privileged(path: str) -> list[str]:
    """Remove a tree holding files the containers wrote as their own users (the
    database's, Prometheus', the proxy's root): as the deploy user, then with
    passwordless sudo for what it may not delete."""
    return ["sh", "-c", REMOVE_PRIVILEGED, "rm", path]


SWITCH = 'ln -sfn -- "$1" "$2" && mv -T -- "$2" "$3"'


def symlink_atomic(target: str, link: str, *then: str) -> list[str]:
    """Point `link` at `target` atomically (a new symlink renamed over the old one); then,
    if given, exec `then` (an argv) in the same round trip, only after the switch worked."""
    script = SWITCH + (' && shift 3 && exec "$@"' if then else "")
    return ["sh", "-c", script, "switch", target, f"{link}.new", link, *then]


def write_then(path: str, text: str, *then: str) -> list[str]:
    """Write `text` (never a secret: the executor refuses command lines holding one) to
    `path`, then exec `then` (an argv) in the same round trip, only if the write worked."""
    return ["sh", "-c", 'printf "%s" "$2" > "$1" && shift 2 && exec "$@"', "write", path, text, *then]


def remove_link(link: str) -> list[str]:
    return ["rm", "-f", "--", link]


def read_link(path: str) -> list[str]:
    return ["readlink", "--", path]


def cat(path: str) -> list[str]:
    return ["cat", "--", path]


def cat_privileged(path: str) -> list[str]:
    """Read a file the deploy user may not read directly (a container's data), with
    passwordless sudo as the fallback."""
    return ["sh", "-c", 'cat -- "$1" 2>/dev/null || sudo -n cat -- "$1"', "cat", path]


def exists(path: str) -> list[str]:
    return ["test", "-e", path]


def is_dir(path: str) -> list[str]:
    return ["test", "-d", path]


def non_empty(path: str) -> list[str]:
    return ["test", "-s", path]


def process_alive(pid: int) -> list[str]:
    return ["test", "-d", f"/proc/{int(pid)}"]


def append_line(path: str, line: str) -> list[str]:
    """Append one line (never a secret: the executor refuses command lines holding one)."""
    return ["sh", "-c", 'umask 077; printf "%s\n" "$2" >> "$1"', "append", path, line]


def write_marker(path: str, text: str) -> list[str]:
    return ["sh", "-c", 'printf "%s\n" "$2" > "$1"', "marker", path, text]


def move(source: str, target: str) -> list[str]:
    return ["mv", "-T", "--", source, target]


def make_temp_dir(template: str) -> list[str]:
    return ["mktemp", "-d", "-t", template]


def private_dir_fresh(parent: str, path: str) -> list[str]:
    """`parent` (0700 if created) and an empty `path` (0700) inside it."""
    return ["sh", "-c", 'mkdir -p -m 0700 -- "$1" && rm -rf -- "$2" && mkdir -m 0700 -- "$2"', "stage", parent, path]
