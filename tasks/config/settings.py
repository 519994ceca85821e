"""Twelve-factor settings: defaults < .env < .env.NAME < .torrust/NAME/host.env < process environment.

`load()` reads the sources once, records where every value came from (file and line,
or the environment), converts each variable with its kind (kinds.py), fills the empty
optional ones that derive from others, applies the cross-field rules of each section
(rules.py) and returns a frozen `Settings`, or raises a `SettingsError` listing every
problem at once. Nothing here writes anything.

`Settings` is built from the variable table (variables.py): one attribute per variable,
named by its `field` ("ssh.port" is attribute `port` of the `ssh` part), plus the
environment name, the checkout root, and where each value came from.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from dotenv.parser import parse_stream

from tasks.config import rules
from tasks.config import secrets as sec
from tasks.config.kinds import ACME_DIRECTORIES, KINDS, MAX_LENGTH, Bind  # noqa: F401 - Bind is part of this module's API
from tasks.config.secrets import Secret
from tasks.config.variables import BY_NAME, PREFIX, STR, VARIABLES, Var
from tasks.errors import SettingsError

ENV_NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
LOCAL_ENV = "local"
INTERNAL_SUFFIXES = (".local", ".localhost", ".test", ".internal")
SHOWN = 80  # characters of a bad value echoed in an error; the rest is counted, not shown
# Process-environment names that are the tool's own switches, not settings.
TOOL_SWITCHES = frozenset({"TORRUST_VERBOSE"})


# --------------------------------------------------------------------------- sources
@dataclass(frozen=True)
class Origin:
    """Where a value came from: 'default', a file and line, or 'environment'."""

    kind: str  # "default" | "file" | "environment"
    path: str = ""
    line: int = 0

    def __str__(self) -> str:
        if self.kind == "file":
            return f"{self.path}:{self.line}"
        return self.kind


@dataclass(frozen=True)
class Raw:
    value: str
    origin: Origin


BLANK_LINES_RE = re.compile(r"(?:[ \t]*\n)*")
KEY_RE = re.compile(r"\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=")


def read_env_file(path: Path, display: str) -> tuple[dict[str, Raw], list[str]]:
    """Parse one dotenv file keeping line numbers. A line that cannot be parsed is a
    problem naming its line (and its variable, when that much is readable), never its
    text: it may hold a secret. A variable set twice is a problem naming both lines."""
    values: dict[str, Raw] = {}
    problems: list[str] = []
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return values, [f"{display}: not UTF-8 text"]
    except OSError as exc:
        return values, [f"{display}: cannot be read ({exc.strerror})"]
    for binding in parse_stream(_Stream(text)):
        original = binding.original.string  # blank lines before a binding belong to it
        blank = BLANK_LINES_RE.match(original).group()
        line = binding.original.line + blank.count("\n")
        if binding.error:
            key = KEY_RE.match(original[len(blank) :])
            what = f"the line setting {key.group(1)}" if key else "this line"
            problems.append(
                f"{display}:{line}: cannot parse {what} (expected NAME=value; an unbalanced quote?); "
                "its text is not shown because it may hold a secret"
            )
            continue
        if binding.key is None:
            continue
        if binding.key in values:
            first = values[binding.key].origin
            problems.append(
                f"{binding.key} is set twice in {display} (lines {first.line} and {line}); keep one, "
                "or move one to another file on purpose"
            )
        values[binding.key] = Raw(binding.value or "", Origin("file", display, line))
    return values, problems


class _Stream:
    # parse_stream wants a stream with .read(); a StringIO would do, this avoids the import
    def __init__(self, text: str):
        self._text = text

    def read(self) -> str:
        return self._text


def configured_environments(root: Path) -> list[str]:
    """The environments configured in a checkout: 'local', every `.env.NAME` and every
    environment with a recorded host (`.torrust/NAME/host.env`), sorted."""
    names = {p.name.split(".", 2)[2] for p in root.glob(".env.*") if p.name != ".env.example"}
    names |= {p.name for p in (root / ".torrust").glob("*") if (p / "host.env").is_file()}
    return sorted({LOCAL_ENV} | {n for n in names if ENV_NAME_RE.fullmatch(n)})


def env_files(root: Path, env: str) -> list[tuple[Path, str]]:
    return [(root / ".env", ".env"), (root / f".env.{env}", f".env.{env}")]


# The host infra.apply / infra.register recorded for an environment (docs/adr/0009). It
# sits above .env.NAME (the most recent provisioning wins) and below the process
# environment, and may set only these variables.
HOST_RECORD_KEYS = ("TORRUST_SSH_HOST", "TORRUST_SSH_PORT", "TORRUST_SSH_USER")


def host_record_file(root: Path, env: str) -> tuple[Path, str]:
    return root / ".torrust" / env / "host.env", f".torrust/{env}/host.env"


def collect(root: Path, env: str, environ: Mapping[str, str]) -> tuple[dict[str, Raw], list[str], list[str]]:
    """Merge the sources. Returns (values, problems, warnings)."""
    merged: dict[str, Raw] = {v.name: Raw(v.default, Origin("default")) for v in VARIABLES}
    problems: list[str] = []
    warnings: list[str] = []
    record, record_display = host_record_file(root, env)
    for path, display, allowed in (*((p, d, None) for p, d in env_files(root, env)), (record, record_display, True)):
        if not path.exists():
            continue
        values, file_problems = read_env_file(path, display)
        problems += file_problems
        for key, raw in values.items():
            if key not in BY_NAME:
                problems.append(f"{key} ({raw.origin}): unknown variable{_did_you_mean(key)}")
            elif allowed and key not in HOST_RECORD_KEYS:
                problems.append(
                    f"{key} ({raw.origin}): not allowed in the recorded host file (only {', '.join(HOST_RECORD_KEYS)})"
                )
            else:
                merged[key] = raw
    for key, value in environ.items():
        if key in BY_NAME:
            merged[key] = Raw(value, Origin("environment"))
        elif key.startswith(PREFIX) and not key.startswith("TORRUST_TRACKER_CONFIG") and key not in TOOL_SWITCHES:
            warnings.append(f"{key} (environment): unknown variable, ignored{_did_you_mean(key)}")
    return merged, problems, warnings


def _did_you_mean(key: str) -> str:
    close = difflib.get_close_matches(key, BY_NAME, n=1, cutoff=0.75)
    return f"; did you mean {close[0]}?" if close else ""


# --------------------------------------------------------------------------- the typed result
class SettingsBase:
    """What every Settings has beyond its variables (the class is built from the table)."""

    env: str

    @property
    def is_local_env(self) -> bool:
        return self.env == LOCAL_ENV

    @property
    def mysql(self) -> bool:
        return self.db_driver == "mysql"

    def uses_internal_ca(self, name: str) -> bool:
        if self.tls_internal == "always":
            return True
        if self.tls_internal == "never":
            return False
        return name.endswith(INTERNAL_SUFFIXES)

    @property
    def public_names(self) -> tuple[str, ...]:
        names = (*self.http_tracker_domains, self.api_domain)
        return names + ((self.grafana_domain,) if self.grafana else ())

    @property
    def acme_names(self) -> tuple[str, ...]:
        """The public names the proxy gets certificates for from the ACME server."""
        return tuple(n for n in self.public_names if not self.uses_internal_ca(n)) if self.tls else ()

    @property
    def acme_directory(self) -> str:
        """The ACME directory URL of TORRUST_ACME_CA (a known name or the URL itself)."""
        return ACME_DIRECTORIES.get(self.acme_ca, self.acme_ca)

    @property
    def public_acme(self) -> bool:
        """Let's Encrypt (production or staging), whose rules (ports 80/443, CAA) are known."""
        return self.acme_ca in ACME_DIRECTORIES

    def value_of(self, var: Var):
        """The typed value of a variable (a part's attribute for `ssh.port`)."""
        if var.part == "images":
            return self.images[var.attr]
        return getattr(getattr(self, var.part), var.attr) if var.part else getattr(self, var.field)

    def secret_values(self) -> list[str]:
        """Every secret's value, for the executor's redaction (never for printing)."""
        return [v for var in VARIABLES if var.secret and (v := self.value_of(var).reveal())]

    def display(self) -> list[tuple[str, str, str]]:
        """(name, value with secrets masked, origin) for every variable."""
        rows = []
        for var in VARIABLES:
            value = self.raw.get(var.name, "")
            if var.secret and value:
                value = sec.MASK
            rows.append((var.name, value, str(self.origins.get(var.name, Origin("default")))))
        return rows


def _part_class(part: str, variables: list[Var]) -> type:
    cls = dataclasses.make_dataclass(part, [(v.attr, KINDS[v.kind].type) for v in variables], frozen=True)
    cls.__module__ = __name__
    return cls


# Parts of Settings: "ssh" and "infra" are objects with attributes, "images" a mapping.
_PARTS: dict[str, list[Var]] = {}
for _v in VARIABLES:
    if _v.part:
        _PARTS.setdefault(_v.part, []).append(_v)
PART_NAMES = {"ssh": "SSHTarget", "infra": "InfraSettings", "watch": "WatchSettings"}
PART_TYPES: dict[str, type] = {
    part: dict if part == "images" else _part_class(PART_NAMES.get(part, f"{part.title()}Settings"), variables)
    for part, variables in _PARTS.items()
}
SSHTarget, InfraSettings = PART_TYPES["ssh"], PART_TYPES["infra"]

Settings = dataclasses.make_dataclass(
    "Settings",
    [
        ("env", str),
        ("root", Path),  # the checkout the settings were read from
        *((v.field, KINDS[v.kind].type) for v in VARIABLES if not v.part),
        *((part, typ) for part, typ in PART_TYPES.items()),
        ("origins", dict, field(default_factory=dict, compare=False)),
        ("raw", dict, field(default_factory=dict, compare=False, repr=False)),
        ("warnings", tuple, field(default=())),
    ],
    bases=(SettingsBase,),
    frozen=True,
)
Settings.__module__ = __name__
Settings.__doc__ = "The environment's settings: one attribute per variable of tasks/config/variables.py."


# --------------------------------------------------------------------------- conversion
class _Check:
    """Converts raw strings to typed values, collecting every problem."""

    def __init__(self, env: str, values: dict[str, Raw]):
        self.env = env
        self.values = values
        self.problems: list[str] = []

    @property
    def strict(self) -> bool:
        return self.env != LOCAL_ENV

    def fail(self, name: str, message: str, *, show: str | None = None) -> None:
        var = BY_NAME[name]
        raw = self.values[name]
        shown = sec.MASK if var.secret and raw.value else _shorten(show if show is not None else raw.value)
        allowed = allowed_text(var)
        self.problems.append(
            f"{name} = {shown!r} ({raw.origin}): {message}" + (f" (allowed: {allowed})" if allowed else "")
        )

    def convert(self, var: Var):
        value = self.values[var.name].value.strip()
        kind = KINDS[var.kind]
        if len(value) > MAX_LENGTH:
            self.fail(var.name, f"longer than {MAX_LENGTH} characters")
            return kind.fallback
        if not var.secret and sec.looks_like_placeholder(value):
            self.fail(var.name, "still a placeholder; set a real value")
            return var.default if kind.type is str else kind.fallback
        if value == "" and var.optional:
            return None if var.kind == "file" else kind.fallback
        if value == "" and var.kind == STR:
            self.fail(var.name, "must not be empty")
            return value
        return kind.convert(self, var, value)


def _shorten(value: str) -> str:
    return value if len(value) <= SHOWN else f"{value[:SHOWN]}... ({len(value)} characters)"


def allowed_text(var: Var) -> str:
    """What a variable accepts, in the words errors, .env.example and the README share."""
    return var.allowed or KINDS[var.kind].allowed(var)


def _build(env: str, root: Path, check: _Check) -> dict:
    """{field: typed value} for every variable: converted, then the empty ones derived."""
    values: dict = {"env": env, "root": root}
    for var in VARIABLES:
        values[var.field] = check.convert(var)
    for var in VARIABLES:
        if var.derive is not None and not check.values[var.name].value.strip():
            values[var.field] = var.derive(values)
    return values


def _assemble(values: dict, raws: dict[str, Raw], warnings: list[str]) -> SettingsBase:
    parts: dict[str, dict] = {part: {} for part in PART_TYPES}
    top = {"env": values["env"], "root": values["root"]}
    for var in VARIABLES:
        if var.part:
            parts[var.part][var.attr] = values[var.field]
        else:
            top[var.field] = values[var.field]
    return Settings(
        **top,
        **{part: PART_TYPES[part](**kv) for part, kv in parts.items()},
        origins={k: r.origin for k, r in raws.items()},
        raw={k: r.value for k, r in raws.items()},
        warnings=tuple(warnings),
    )


# --------------------------------------------------------------------------- entry point
def load(env: str = LOCAL_ENV, *, root: Path | None = None, environ: Mapping[str, str] | None = None):
    """Read, merge, convert and validate. Raises SettingsError listing every problem."""
    root = Path(root or Path.cwd())
    environ = os.environ if environ is None else environ
    if not ENV_NAME_RE.fullmatch(env or ""):
        raise SettingsError(
            _shorten(str(env)),
            [
                f"--env {_shorten(str(env))!r}: not a valid environment name (allowed: lowercase letters, digits, "
                "'-' and '_', starting with a letter, at most 32 characters)"
            ],
        )
    raws, problems, warnings = collect(root, env, environ)
    check = _Check(env, raws)
    s = _assemble(_build(env, root, check), raws, warnings)
    rules.check_all(s, check)
    s = _with_local_secrets(s)
    problems += check.problems
    if problems:
        raise SettingsError(env, problems)
    return s


def _with_local_secrets(s):
    """In the 'local' environment an empty secret gets a fixed development value.

    They are deterministic (so local renders are reproducible) and are refused outside
    'local' as placeholders would be: they never reach another environment.
    """
    if not s.is_local_env:
        return s
    changes = {k: Secret(v) for k, v in sec.LOCAL_DEV_SECRETS.items() if not getattr(s, k)}
    return dataclasses.replace(s, **changes) if changes else s
