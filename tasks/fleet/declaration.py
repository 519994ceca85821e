"""A fleet is declared once, in `fleets.toml` at the checkout root (beside the .env files):

    [fleet.public]
    environments = ["tracker-a", "tracker-b", "tracker-c"]
    parallel = 2   # hosts deployed at a time (default 1)
    canary = 1     # hosts deployed first; the rest only when they all succeeded (default 0)

Each environment keeps its own `.env.NAME`, host, state and lock. `load()` validates the
declaration like settings, every problem at once and each naming the fleet, the key or the
environments concerned and what is allowed: the fleet exists, its keys are known, every
environment is configured here and its settings load, no two environments collide on one
machine (the same deploy root, Compose project, published port or IPv6 subnet), and no two
on different machines share a public name (each tracker has announce URLs of its own).
Nothing here connects anywhere or writes anything.
"""

from __future__ import annotations

import difflib
import ipaddress
import itertools
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from tasks.config import settings as settings_mod
from tasks.config.settings import Settings
from tasks.errors import ConfigError, SettingsError
from tasks.runner.ssh import known_hosts_name

FILE = "fleets.toml"
KEYS = ("environments", "parallel", "canary")
PARALLEL_MAX = 64
THIS_MACHINE = "this machine"


@dataclass(frozen=True)
class Member:
    """One environment of a fleet, with its loaded settings."""

    env: str
    settings: Settings

    @property
    def where(self) -> str:
        """Where it deploys, as the executor names it: user@host[:port], or local."""
        s = self.settings
        return "local" if s.target == "local" else f"{s.ssh.user}@{known_hosts_name(s.ssh.host, s.ssh.port)}"


@dataclass(frozen=True)
class Fleet:
    name: str
    members: tuple[Member, ...]
    parallel: int = 1
    canary: int = 0

    @property
    def names(self) -> list[str]:
        return [m.env for m in self.members]


@dataclass(frozen=True)
class RolloutOptions:
    """How a fleet task walks the hosts (tasks/fleet/rollout.py)."""

    parallel: int = 1
    canary: int = 0
    continue_on_error: bool = False


class FleetError(ConfigError):
    """Every problem of a fleet's declaration (or of its environments), reported at once."""

    def __init__(self, name: str, problems: list[str]):
        self.fleet, self.problems = name, problems
        n = len(problems)
        lines = [f"fleet '{name}' ({FILE}) has {n} problem{'s' if n != 1 else ''}:", *(f"  - {p}" for p in problems)]
        super().__init__("\n".join(lines), hint="fix what is named above; no host was contacted or changed")

    def as_dict(self) -> dict:
        return {**super().as_dict(), "problems": self.problems}


# ------------------------------------------------------------------------ reading
def declared(root: Path) -> dict:
    """The `[fleet.*]` tables of fleets.toml ({} without the file)."""
    path = root / FILE
    if not path.is_file():
        return {}
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{FILE}: not valid TOML ({exc})", hint="see docs/guides/fleet.md for the format") from None
    extra = sorted(set(doc) - {"fleet"})
    if extra or not isinstance(doc.get("fleet", {}), dict):
        raise ConfigError(
            f"{FILE}: only [fleet.NAME] tables are allowed, found {', '.join(extra) or 'fleet = a value'}",
            hint="see docs/guides/fleet.md for the format",
        )
    return doc.get("fleet", {})


def load(name: str, *, root: Path | None = None, environ: Mapping[str, str] | None = None) -> Fleet:
    """The fleet `name` with every member's settings, or FleetError listing every problem."""
    root = Path(root or Path.cwd())
    fleets = declared(root)
    if name not in fleets:
        known = ", ".join(sorted(fleets)) or f"none: {FILE} is missing or empty"
        close = difflib.get_close_matches(name, list(fleets), n=1)
        hint = f"did you mean '{close[0]}'?" if close else "declare it as [fleet.NAME] in fleets.toml"
        raise ConfigError(f"--fleet {name[:80]!r}: no such fleet in {FILE} (fleets: {known})", hint=hint)
    table = fleets[name]
    if not settings_mod.ENV_NAME_RE.fullmatch(name) or not isinstance(table, dict):
        raise FleetError(name[:80], ["a fleet name is lowercase letters, digits, '-' and '_' and its value a table"])
    problems = _unknown_keys(table)
    envs = _environments(table.get("environments"), settings_mod.configured_environments(root), problems)
    parallel = _whole(table, "parallel", 1, 1, PARALLEL_MAX, problems)
    canary = _whole(table, "canary", 0, 0, len(envs) or PARALLEL_MAX, problems)
    members = []
    for env in envs:
        try:
            members.append(Member(env, settings_mod.load(env, root=root, environ=environ)))
        except SettingsError as exc:
            problems += [f"environment '{env}': {p}" for p in exc.problems]
    problems += collisions(members) + shared_names(members)
    if problems:
        raise FleetError(name, problems)
    return Fleet(name, tuple(members), parallel, canary)


def _unknown_keys(table: dict) -> list[str]:
    problems = []
    for key in sorted(set(table) - set(KEYS)):
        close = difflib.get_close_matches(key, KEYS, n=1)
        problems.append(
            f"{key}: unknown key" + (f"; did you mean {close[0]}?" if close else f" (allowed: {', '.join(KEYS)})")
        )
    return problems


def _environments(value: object, configured: list[str], problems: list[str]) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(x, str) for x in value):
        problems.append('environments: a non-empty list of environment names is required, e.g. ["a", "b"]')
        return []
    seen: list[str] = []
    for env in value:
        if env in seen:
            problems.append(f"environments: '{env[:80]}' is listed twice")
        elif env not in configured:
            problems.append(
                f"environments: '{env[:80]}' is not an environment here (no .env.{env[:80]} or "
                f".torrust/{env[:80]}/host.env; environments: {', '.join(configured)})"
            )
        else:
            seen.append(env)
    return seen  # the usable ones: their settings are checked too, so every problem shows at once


def _whole(table: dict, key: str, default: int, low: int, high: int, problems: list[str]) -> int:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        problems.append(f"{key} = {str(value)[:80]!r}: allowed: a whole number from {low} to {high}")
        return default
    return value


# ------------------------------------------------------------------------ one machine, two environments
def machine_of(s: Settings) -> str:
    """The machine an environment runs on: this one (the local target, or SSH to a loopback
    address), else its SSH host name. Two environments on one machine share its Docker
    engine and its public address."""
    host = s.ssh.host.lower()
    if s.target == "local" or host == "localhost":
        return THIS_MACHINE
    try:
        return THIS_MACHINE if ipaddress.ip_address(host).is_loopback else host
    except ValueError:
        return host


def published(s: Settings) -> set[str]:
    """The host ports the environment's stack publishes (compose.yaml.j2)."""
    ports = {f"UDP {b.port}" for b in s.udp_trackers} | {f"TCP {s.http_port}"}
    ports |= {f"TCP {s.https_port}", f"UDP {s.https_port}"} if s.tls else set()
    return ports | ({f"TCP {s.prometheus_port}"} if s.prometheus else set())


# What two environments on one machine must not share: (what, its values, the setting to change)
SHARED: tuple[tuple[str, Callable[[Settings], set[str]], str], ...] = (
    ("deploy root", lambda s: {s.deploy_root.rstrip("/") or "/"}, "TORRUST_DEPLOY_ROOT"),
    ("Compose project", lambda s: {s.compose_project}, "TORRUST_COMPOSE_PROJECT"),
    ("published ports", published, "the ports"),
    ("IPv6 subnet", lambda s: {s.ipv6_subnet} if s.ipv6 else set(), "TORRUST_IPV6_SUBNET"),
)


def collisions(members: list[Member]) -> list[str]:
    """One problem per pair of environments on one machine that share something."""
    problems = []
    for a, b in itertools.combinations(members, 2):
        machine = machine_of(a.settings)
        if machine != machine_of(b.settings):
            continue
        shared = [
            (what, sorted(values(a.settings) & values(b.settings)), fix)
            for what, values, fix in SHARED
            if values(a.settings) & values(b.settings)
        ]
        if shared:
            problems.append(
                f"environments '{a.env}' and '{b.env}' both use, on {machine}: "
                + "; ".join(f"{what} {', '.join(v)}" for what, v, _ in shared)
                + " (each needs its own host, or its own "
                + ", ".join(fix for _, _, fix in shared)
                + ")"
            )
    return problems


def names_of(s: Settings) -> set[str]:
    """The public names an environment answers on (its UDP announce URLs use the domain)."""
    return {s.domain, *s.public_names}


def shared_names(members: list[Member]) -> list[str]:
    """One problem per pair of environments on different machines sharing a public name: a
    name leads to one address, and a tracker's swarm lives in one process, so each tracker
    of a fleet needs announce URLs of its own."""
    problems = []
    for a, b in itertools.combinations(members, 2):
        machines = machine_of(a.settings), machine_of(b.settings)
        common = sorted(names_of(a.settings) & names_of(b.settings))
        if machines[0] != machines[1] and common:
            problems.append(
                f"environments '{a.env}' and '{b.env}' run on different hosts ({machines[0]}, {machines[1]}) but "
                f"share the public names {', '.join(common)}: each tracker needs names of its own "
                "(TORRUST_DOMAIN, TORRUST_HTTP_TRACKER_DOMAINS, TORRUST_API_DOMAIN, TORRUST_GRAFANA_DOMAIN)"
            )
    return problems


# ------------------------------------------------------------------------ flags
def rollout_options(
    fleet: Fleet, parallel: str | int | None, canary: str | int | None, continue_on_error: bool
) -> RolloutOptions:
    """--parallel and --canary (default: the fleet's), checked against the fleet's size."""
    size = len(fleet.members)
    problems: list[str] = []
    p = _flag("--parallel", parallel, fleet.parallel, 1, PARALLEL_MAX, problems)
    k = _flag("--canary", canary, fleet.canary, 0, size, problems, f" (the fleet '{fleet.name}' has {size} hosts)")
    if problems:
        raise ConfigError("; ".join(problems), hint="nothing was started")
    return RolloutOptions(p, k, bool(continue_on_error))


def _flag(flag: str, value, default: int, low: int, high: int, problems: list[str], why: str = "") -> int:
    if value is None or value == "":
        return default
    text = str(value).strip()
    if not text.isdigit() or not low <= int(text) <= high:
        problems.append(f"{flag} {text[:20]!r}: allowed: a whole number from {low} to {high}{why}")
        return default
    return int(text)
