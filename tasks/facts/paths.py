"""The one rule for file names that cross the trust boundary (docs/threat-model.md).

A name that comes from a host or a backup copy (a manifest's file paths, a backup id, a
release id) is used only as ONE FLAT NAME inside a directory the tool chose: never a
path. `check_name` is the rule; `inside` joins a checked name to a local directory and
resolves it, refusing a symlink that leads out of the directory; `remote_join` joins a
checked name to a directory on the host (the host resolves nothing the name could
steer). The host script application/bin/torrust-backup applies the same rule to the
same names (a unit test runs both on one table of names: tests/unit/facts/test_paths.py).
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from pathlib import Path

from tasks.errors import UnsafeName

NAME_MAX_BYTES = 255  # NAME_MAX of Linux file systems
ALLOWED = (
    "one flat file name: no '/', no NUL, not '.' or '..', no leading '-', "
    f"printable characters only, at most {NAME_MAX_BYTES} bytes"
)


def _too_long(name: str) -> bool:
    return len(name.encode("utf-8", "surrogatepass")) > NAME_MAX_BYTES


# (refused when, why): checked in order, the first match is the reason
RULES: tuple[tuple[Callable[[str], bool], str], ...] = (
    (lambda n: n == "", "is empty"),
    (lambda n: n in (".", ".."), "is '.' or '..'"),
    (lambda n: "/" in n, "contains '/' (a directory or an absolute path, not a flat name)"),
    (lambda n: "\0" in n, "contains a NUL byte"),
    (lambda n: n.startswith("-"), "starts with '-' (a command would read it as an option)"),
    (lambda n: not n.isprintable(), "contains a control or non-printable character"),
    (_too_long, f"is longer than {NAME_MAX_BYTES} bytes"),
)


def name_problem(name: object) -> str | None:
    """Why `name` is not one flat name, or None when it is."""
    if not isinstance(name, str):
        return f"is a {type(name).__name__}, not a string"
    return next((why for refused, why in RULES if refused(name)), None)


def check_name(name: object, *, what: str) -> str:
    """`name` when it is one flat name; UnsafeName naming `what` and the rule otherwise."""
    problem = name_problem(name)
    if problem:
        raise UnsafeName(f"{what} {name!r} {problem}", hint=f"allowed: {ALLOWED}; nothing was read or written")
    return name  # type: ignore[return-value]


def inside(directory: Path, name: object, *, what: str) -> Path:
    """The path of flat `name` in local `directory`, resolved: a symlink leading out of the
    directory (or to a subdirectory) is refused. The file need not exist yet."""
    check_name(name, what=what)
    base = directory.resolve()
    try:
        resolved = (base / name).resolve()
    except (RuntimeError, OSError) as exc:  # a symlink loop (RuntimeError before Python 3.13)
        raise UnsafeName(f"{what} {name!r} in {directory} cannot be resolved: {exc}") from None
    if resolved.parent != base:
        raise UnsafeName(
            f"{what} {name!r} in {directory} is a symlink leading out of the directory (to {resolved})",
            hint="a backup directory holds regular files only; nothing was read or written",
        )
    return resolved


def remote_join(directory: str, name: object, *, what: str) -> str:
    """The host path of flat `name` in the host directory `directory` (chosen by the tool)."""
    return posixpath.join(directory, check_name(name, what=what))
