"""Write environment files: the documented `.env.example` and `app.config`'s `.env.NAME`.

Both come from the variable table, so they list exactly the variables the code reads.
"""

from __future__ import annotations

import os
import tempfile
import textwrap
from pathlib import Path

from tasks.config import secrets as sec
from tasks.config.settings import ENV_NAME_RE, LOCAL_ENV, allowed_text
from tasks.config.variables import PLACEHOLDER, SECTIONS, VARIABLES, Var
from tasks.errors import ConfigError

HEADER = """\
# Torrust Tracker deployment settings: every variable the tool reads.
#
# Sources, lowest to highest: built-in defaults (the values below), .env, .env.<NAME>
# (chosen with --env NAME, default 'local'), then the process environment.
# Values are literal: no ${VAR} interpolation. Secrets: leave empty here; run
# `./tasks.py app.config --env NAME` to write .env.NAME (mode 0600) with strong random
# secrets. Outside 'local', placeholders and weak secrets are refused.
#
# This file is generated from tasks/config/variables.py (a test keeps them equal).
"""


def _describe(var: Var) -> list[str]:
    lines = textwrap.wrap(var.doc, 86)
    allowed = _allowed_text(var)
    if allowed:
        lines += textwrap.wrap(f"Allowed: {allowed}.", 86)
    lines.append(
        f"Default: {var.default or '(empty)'}"
        + (f"; app.config for non-local: {_prod_hint(var)}" if _prod_hint(var) else "")
    )
    return [f"# {ln}" for ln in lines]


def _allowed_text(var: Var) -> str:
    return allowed_text(var)  # one wording for errors and docs


def _prod_hint(var: Var) -> str:
    if var.generated:
        return "generated"
    if var.production is None:
        return ""
    return "you set it" if var.production == PLACEHOLDER else var.production


def example_text() -> str:
    out = [HEADER]
    for group in SECTIONS:
        out.append(f"\n# ==== {group} " + "=" * (80 - len(group)) + "\n")
        for var in (v for v in VARIABLES if v.section == group):
            out.append("\n".join(_describe(var)) + f"\n{var.name}={'' if var.secret else var.default}\n\n")
    return "".join(out).rstrip("\n") + "\n"


def config_text(env: str) -> str:
    """The content of a new .env.NAME: every variable, secrets generated."""
    strict = env != LOCAL_ENV
    out = [
        f"# Settings of environment '{env}', written by `app.config`. Mode 0600: it holds secrets.\n"
        "# Documentation of every variable: .env.example.\n"
    ]
    for group in SECTIONS:
        out.append(f"\n# ==== {group}\n")
        for var in (v for v in VARIABLES if v.section == group):
            if var.generated:
                value = sec.generate()
            elif var.secret:
                value = ""
            elif strict and var.production is not None:
                value = var.production
            else:
                value = var.default
            if value == PLACEHOLDER:
                out.append(f"# Set {var.name} before validating or deploying (see .env.example).\n")
            out.append(f"{var.name}={value}\n")
    return "".join(out)


def write_config(root: Path, env: str, *, force: bool = False) -> Path:
    if not ENV_NAME_RE.fullmatch(env or ""):
        raise ConfigError(f"--env {env!r}: not a valid environment name (lowercase letters, digits, '-' and '_')")
    path = root / f".env.{env}"
    if path.exists() and not force:
        raise ConfigError(
            f"{path.name} already exists; not overwriting it",
            hint="pass --force to replace it (its secrets are replaced too)",
        )
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=root)
    except OSError as exc:
        raise ConfigError(
            f"cannot write {path}: {exc.strerror or exc}", hint="run app.config in the checkout, a writable directory"
        ) from None
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(config_text(env))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def reference_markdown() -> str:
    """The configuration reference table of README.md (a test keeps it current)."""
    rows = ["| Variable | Default | Meaning |", "|---|---|---|"]
    for group in SECTIONS:
        rows.append(f"| **{group}** | | |")
        for var in (v for v in VARIABLES if v.section == group):
            default = (
                "(generated secret)"
                if var.generated
                else (f"`{var.default}`" if var.default and not var.secret else "(empty)")
            )
            allowed = _allowed_text(var)
            meaning = var.doc + (f" Allowed: {allowed}." if allowed and var.kind != "secret" else "")
            rows.append(f"| `{var.name}` | {default} | {meaning.replace('|', '/')} |")
    return "\n".join(rows) + "\n"


def replace_values(text: str, values: dict[str, str]) -> str:
    """`text` (a dotenv file) with each variable of `values` set to its value: its line
    replaced where it is set (the last such line), appended otherwise. Every other line is
    kept as it was."""
    lines = text.splitlines()
    for name, value in values.items():
        where = [i for i, ln in enumerate(lines) if ln.split("=", 1)[0].strip().removeprefix("export ").strip() == name]
        if where:
            lines[where[-1]] = f"{name}={value}"
        else:
            lines.append(f"{name}={value}")
    return "\n".join(lines) + "\n"


def _write_private(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def rewrite_values(root: Path, env: str, values: dict[str, str], stamp: str) -> tuple[Path, Path | None]:
    """Write `values` into .env.NAME (mode 0600), keeping the old file as a 0600 backup
    `.env.NAME.bak-STAMP` first. Returns (the file, its backup or None when there was no
    file: it is then created with these values only)."""
    path = root / f".env.{env}"
    try:
        old = path.read_bytes() if path.exists() else None
        backup = None
        if old is not None:
            backup = root / f".env.{env}.bak-{stamp}"
            _write_private(backup, old)
        _write_private(path, replace_values(old.decode("utf-8") if old else "", values).encode("utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}", hint="nothing was rotated") from None
    return path, backup


def put_back(path: Path, backup: Path | None) -> None:
    """Undo `rewrite_values`: the old content again (the backup stays), or no file."""
    if backup is None:
        path.unlink(missing_ok=True)
    else:
        _write_private(path, backup.read_bytes())
