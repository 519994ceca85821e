"""Twelve-factor settings: defaults < .env < .env.NAME < process environment.

`load()` reads the sources once, records where every value came from (file and line,
or the environment), converts them into a typed, frozen `Settings` and reports every
problem at once in a `SettingsError`. Nothing here writes anything.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from dotenv.parser import parse_stream

from tasks.config import secrets as sec
from tasks.config.secrets import Secret
from tasks.config.variables import (
    BINDS,
    BOOL,
    BY_NAME,
    CRON,
    DOMAIN,
    DOMAINS,
    DURATION,
    EMAIL,
    ENUM,
    IMAGE,
    INT,
    PATH,
    SECRET,
    STR,
    SUBNET6,
    VARIABLES,
    Var,
)
from tasks.errors import SettingsError

ENV_NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
LOCAL_ENV = "local"
PREFIX = "TORRUST_"
INTERNAL_SUFFIXES = (".local", ".localhost", ".test", ".internal")
DOC_DOMAINS = ("example.com", "example.net", "example.org")
MOVING_TAGS = frozenset({"latest", "develop", "main", "master", "nightly", "edge", "dev"})


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


def read_env_file(path: Path, display: str) -> tuple[dict[str, Raw], list[str]]:
    """Parse one dotenv file keeping line numbers; syntax errors become problems."""
    values: dict[str, Raw] = {}
    problems: list[str] = []
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return values, [f"{display}: not UTF-8 text"]
    except OSError as exc:
        return values, [f"{display}: cannot be read ({exc.strerror})"]
    for binding in parse_stream(_Stream(text)):
        line = binding.original.line
        if binding.error:
            snippet = binding.original.string.strip()[:60]
            problems.append(f"{display}:{line}: cannot parse {snippet!r}; expected NAME=value")
            continue
        if binding.key is None:
            continue
        original = binding.original.string  # blank lines before a binding belong to it
        line += original[: original.find(binding.key)].count("\n")
        values[binding.key] = Raw(binding.value or "", Origin("file", display, line))
    return values, problems


class _Stream:
    # parse_stream wants a stream with .read(); a StringIO would do, this avoids the import
    def __init__(self, text: str):
        self._text = text

    def read(self) -> str:
        return self._text


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
    for path, display in env_files(root, env):
        if not path.exists():
            continue
        values, file_problems = read_env_file(path, display)
        problems += file_problems
        for key, raw in values.items():
            if key not in BY_NAME:
                problems.append(f"{key} ({raw.origin}): unknown variable{_did_you_mean(key)}")
                continue
            merged[key] = raw
    record, display = host_record_file(root, env)
    if record.exists():
        values, file_problems = read_env_file(record, display)
        problems += file_problems
        for key, raw in values.items():
            if key not in HOST_RECORD_KEYS:
                problems.append(
                    f"{key} ({raw.origin}): not allowed in the recorded host file (only {', '.join(HOST_RECORD_KEYS)})"
                )
                continue
            merged[key] = raw
    for key, value in environ.items():
        if key in BY_NAME:
            merged[key] = Raw(value, Origin("environment"))
        elif key.startswith(PREFIX) and not key.startswith("TORRUST_TRACKER_CONFIG"):
            warnings.append(f"{key} (environment): unknown variable, ignored{_did_you_mean(key)}")
    return merged, problems, warnings


def _did_you_mean(key: str) -> str:
    close = difflib.get_close_matches(key, BY_NAME, n=1, cutoff=0.75)
    return f"; did you mean {close[0]}?" if close else ""


# --------------------------------------------------------------------------- typed result
@dataclass(frozen=True)
class Bind:
    host: str  # as written, without brackets: "::", "0.0.0.0", "127.0.0.1"
    port: int

    @property
    def family(self) -> int:
        return 6 if ":" in self.host else 4

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if self.family == 6 else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class SSHTarget:
    host: str
    port: int
    user: str
    key: Path | None
    known_hosts: Path
    connect_timeout: int


@dataclass(frozen=True)
class InfraSettings:
    binary: str
    server_name: str
    ssh_public_key: Path | None
    deletion_protection: bool
    data_volume_size: int
    hetzner_server_type: str
    hetzner_location: str
    hetzner_image: str
    libvirt_uri: str
    libvirt_pool: str
    libvirt_network: str
    libvirt_image_url: str
    vm_memory: int
    vm_vcpus: int
    vm_disk_size: int
    conntrack_max: int
    wait_ssh_timeout: int
    wait_cloud_init_timeout: int
    wait_interval: int


@dataclass(frozen=True)
class Settings:
    env: str
    root: Path  # the checkout the settings were read from
    target: str  # "local" | "ssh"
    ssh: SSHTarget
    command_timeout: int
    deploy_root: str
    compose_project: str
    releases_keep: int
    provider: str
    infra: InfraSettings
    domain: str
    http_tracker_domains: tuple[str, ...]
    api_domain: str
    grafana_domain: str
    udp_trackers: tuple[Bind, ...]
    http_trackers: tuple[Bind, ...]
    api_bind: Bind
    health_check_api_bind: Bind
    private: bool
    listed: bool
    announce_interval: int
    announce_interval_min: int
    log_level: str
    external_ip: str
    admin_token: Secret
    tracker_uid: int
    db_driver: str
    mysql_database: str
    mysql_user: str
    mysql_password: Secret
    mysql_root_password: Secret
    http_port: int
    https_port: int
    tls: bool
    acme_email: str
    acme_staging: bool
    tls_internal: str
    prometheus: bool
    prometheus_port: int
    prometheus_retention: str
    grafana: bool
    grafana_admin_user: str
    grafana_admin_password: Secret
    backup: bool
    backup_schedule: str
    backup_retention_count: int
    backup_retention_days: int
    backup_dir: str
    backup_compression: str
    backup_max_age_hours: int
    images: dict[str, str]
    ipv6: bool
    ipv6_subnet: str
    probe_ipv4: str
    probe_ipv6: str
    probe_timeout: int
    probe_attempts: int
    origins: dict[str, Origin] = field(default_factory=dict, compare=False)
    raw: dict[str, str] = field(default_factory=dict, compare=False, repr=False)
    warnings: tuple[str, ...] = ()

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

    def display(self) -> list[tuple[str, str, str]]:
        """(name, value with secrets masked, origin) for every variable."""
        rows = []
        for var in VARIABLES:
            value = self.raw.get(var.name, "")
            if var.secret and value:
                value = sec.MASK
            rows.append((var.name, value, str(self.origins.get(var.name, Origin("default")))))
        return rows


# --------------------------------------------------------------------------- conversion
class _Builder:
    """Converts raw strings to typed values, collecting every problem."""

    def __init__(self, env: str, values: dict[str, Raw]):
        self.env = env
        self.values = values
        self.problems: list[str] = []
        self.read: set[str] = set()

    @property
    def strict(self) -> bool:
        return self.env != LOCAL_ENV

    def raw(self, name: str) -> str:
        self.read.add(name)
        return self.values[name].value.strip()

    def fail(self, name: str, message: str, *, show: str | None = None) -> None:
        var = BY_NAME[name]
        raw = self.values[name]
        shown = sec.MASK if var.secret and raw.value else (show if show is not None else raw.value)
        allowed = f" (allowed: {_allowed(var)})" if _allowed(var) else ""
        self.problems.append(f"{name} = {shown!r} ({raw.origin}): {message}{allowed}")

    def get(self, name: str):
        var = BY_NAME[name]
        value = self.raw(name)
        if var.kind != SECRET and sec.looks_like_placeholder(value):
            self.fail(name, "still a placeholder; set a real value")
            return _fallback(var)
        if value == "" and var.optional:
            return ""
        kind = var.kind
        if kind == STR:
            if value == "" and not var.optional:
                self.fail(name, "must not be empty")
            return value
        if kind == INT:
            return self._int(var, value)
        if kind == BOOL:
            low = value.lower()
            if low in ("true", "1", "yes", "on"):
                return True
            if low in ("false", "0", "no", "off"):
                return False
            self.fail(name, "not a boolean")
            return False
        if kind == ENUM:
            if value not in var.choices:
                self.fail(name, "not one of the allowed values")
                return var.default
            return value
        if kind == SECRET:
            return self._secret(var, value)
        if kind == BINDS:
            return self._binds(var, value)
        if kind == DOMAIN:
            return self._domain(var, value, value)
        if kind == DOMAINS:
            items = [d.strip() for d in value.split(",")]
            return tuple(self._domain(var, d, value) for d in items)
        if kind == EMAIL:
            if not re.fullmatch(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}", value):
                self.fail(name, "not an email address")
            return value
        if kind == IMAGE:
            return self._image(var, value)
        if kind == CRON:
            return self._cron(var, value)
        if kind == PATH:
            return value
        if kind == SUBNET6:
            try:
                net = ipaddress.IPv6Network(value, strict=True)
            except ValueError as exc:
                self.fail(name, f"not an IPv6 network ({exc})")
                return var.default
            if not 48 <= net.prefixlen <= 112:
                self.fail(name, f"prefix /{net.prefixlen} out of range")
            return str(net)
        if kind == DURATION:
            if not re.fullmatch(r"[1-9][0-9]{0,5}[hdwy]", value):
                self.fail(name, "not a duration")
            return value
        raise AssertionError(f"unknown kind {kind}")  # pragma: no cover

    def _int(self, var: Var, value: str) -> int:
        if not re.fullmatch(r"[0-9]{1,10}", value):
            self.fail(var.name, "not a whole number")
            return int(var.default)
        number = int(value)
        if (var.minimum is not None and number < var.minimum) or (var.maximum is not None and number > var.maximum):
            self.fail(var.name, "out of range")
        return number

    def _secret(self, var: Var, value: str) -> Secret:
        if value == "":
            return Secret("")  # required-ness depends on other settings: checked in _cross
        bad = sec.bad_characters(value)
        if bad:
            self.fail(var.name, f"contains characters that are not allowed ({len(bad)} kinds)")
        elif self.strict and sec.looks_like_placeholder(value):
            self.fail(var.name, "still a placeholder; run app.config or set a real secret")
        elif self.strict and (why := sec.weakness(value)):
            self.fail(var.name, f"weak secret: {why}")
        return Secret(value)

    def _binds(self, var: Var, value: str) -> tuple[Bind, ...] | Bind:
        single = var.extra.get("single", False)
        items = [i.strip() for i in value.split(",")] if value else []
        if not items or (single and len(items) != 1):
            self.fail(var.name, "expected exactly one address" if single else "expected at least one address")
            return Bind("0.0.0.0", 1) if single else ()
        binds = []
        for item in items:
            m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:([0-9]{1,5})|([0-9.]+):([0-9]{1,5})", item)
            host = (m.group(1) or m.group(3)) if m else ""
            port = int(m.group(2) or m.group(4)) if m else 0
            try:
                ip = ipaddress.ip_address(host)
                if (ip.version == 6) != bool(m and m.group(1)):
                    raise ValueError
            except ValueError:
                self.fail(var.name, f"{item!r} is not HOST:PORT with an IP address (IPv6 in brackets)")
                continue
            if not 1 <= port <= 65535:
                self.fail(var.name, f"port {port} out of range 1-65535")
                continue
            binds.append(Bind(host, port))
        ports = [b.port for b in binds]
        dupes = sorted({p for p in ports if ports.count(p) > 1})
        if dupes:
            self.fail(var.name, f"port {dupes[0]} is used twice")
        if single:
            return binds[0] if binds else Bind("0.0.0.0", 1)
        return tuple(binds)

    def _domain(self, var: Var, value: str, whole: str) -> str:
        name = value.lower().rstrip(".")
        label = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
        if not re.fullmatch(rf"{label}(\.{label})+", name) or len(name) > 253:
            self.fail(var.name, f"{value!r} is not a fully qualified domain name", show=whole)
            return name
        if self.strict and (name in DOC_DOMAINS or name.endswith(tuple("." + d for d in DOC_DOMAINS))):
            self.fail(var.name, f"{value!r} is reserved for documentation; use your own domain", show=whole)
        return name

    def _image(self, var: Var, value: str) -> str:
        comp = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
        registry = r"(?:[A-Za-z0-9.-]+(?::[0-9]+)?/)?"
        m = re.fullmatch(
            rf"({registry}{comp}(?:/{comp})*)(?::([A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}}))?(?:@(sha256:[0-9a-f]{{64}}))?",
            value,
        )
        if not m:
            self.fail(var.name, "not an image reference")
            return var.default
        tag, digest = m.group(2), m.group(3)
        if not tag and not digest:
            self.fail(var.name, "has no tag: pin a release tag or a digest")
        elif tag in MOVING_TAGS and not digest and self.strict:
            self.fail(var.name, f"tag '{tag}' moves; pin a release tag or a digest")
        return value

    def _cron(self, var: Var, value: str) -> str:
        if value in ("@hourly", "@daily", "@midnight", "@weekly", "@monthly", "@yearly", "@annually"):
            return value
        fields = value.split()
        limits = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 7)]
        names = ["minute", "hour", "day of month", "month", "day of week"]
        if len(fields) != 5:
            self.fail(var.name, f"has {len(fields)} fields, cron needs 5")
            return var.default
        for text, (lo, hi), label in zip(fields, limits, names, strict=True):
            for part in text.split(","):
                m = re.fullmatch(r"(\*|([0-9]+)(?:-([0-9]+))?)(?:/([0-9]+))?", part)
                nums = [int(n) for n in (m.group(2), m.group(3)) if n] if m else []
                step = int(m.group(4)) if m and m.group(4) else None
                if not m or any(not lo <= n <= hi for n in nums) or step == 0 or (len(nums) == 2 and nums[0] > nums[1]):
                    self.fail(var.name, f"{label} field {text!r} is invalid (range {lo}-{hi})")
                    return var.default
        return value


def _allowed(var: Var) -> str:
    if var.allowed:
        return var.allowed
    if var.kind == ENUM:
        return ", ".join(var.choices)
    if var.kind == BOOL:
        return "true or false"
    if var.kind == INT:
        return f"a whole number from {var.minimum} to {var.maximum}"
    if var.kind == SECRET:
        return (
            f"at least {sec.MIN_LENGTH} characters, printable ASCII without spaces, quotes, backslash, '$' or backtick"
        )
    if var.kind in (DOMAIN, DOMAINS):
        return "a fully qualified domain name such as tracker.torrust.example"
    if var.kind == EMAIL:
        return "an email address"
    return ""


def _fallback(var: Var):
    if var.kind == INT:
        return int(var.default or 0)
    fallbacks = {BOOL: False, SECRET: Secret(""), BINDS: (), DOMAINS: ()}
    return fallbacks.get(var.kind, var.default)


# --------------------------------------------------------------------------- entry point
def load(env: str = LOCAL_ENV, *, root: Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Read, merge, convert and validate. Raises SettingsError listing every problem."""
    root = Path(root or Path.cwd())
    environ = os.environ if environ is None else environ
    if not ENV_NAME_RE.fullmatch(env or ""):
        raise SettingsError(
            str(env),
            [
                f"--env {env!r}: not a valid environment name (allowed: lowercase letters, digits, '-' and '_', "
                "starting with a letter, at most 32 characters)"
            ],
        )
    values, problems, warnings = collect(root, env, environ)
    b = _Builder(env, values)
    g = b.get

    domain = g("TORRUST_DOMAIN")
    http_trackers = g("TORRUST_HTTP_TRACKERS")
    http_domains = g("TORRUST_HTTP_TRACKER_DOMAINS") or tuple(
        f"tracker{'' if i == 0 else i + 1}.{domain}" for i in range(len(http_trackers))
    )
    known_hosts = g("TORRUST_SSH_KNOWN_HOSTS") or str(root / ".torrust" / env / "known_hosts")
    key = g("TORRUST_SSH_KEY")
    pub = g("TORRUST_SSH_PUBLIC_KEY")
    backup_dir = g("TORRUST_BACKUP_DIR")
    if backup_dir and not backup_dir.startswith("/"):
        b.fail("TORRUST_BACKUP_DIR", "not an absolute path")
    images = {
        "tracker": g("TORRUST_TRACKER_IMAGE"),
        "mysql": g("TORRUST_MYSQL_IMAGE"),
        "caddy": g("TORRUST_CADDY_IMAGE"),
        "prometheus": g("TORRUST_PROMETHEUS_IMAGE"),
        "grafana": g("TORRUST_GRAFANA_IMAGE"),
    }
    s = Settings(
        env=env,
        root=root,
        target=g("TORRUST_DEPLOY_TARGET"),
        ssh=SSHTarget(
            host=g("TORRUST_SSH_HOST"),
            port=g("TORRUST_SSH_PORT"),
            user=g("TORRUST_SSH_USER"),
            key=Path(key).expanduser() if key else None,
            known_hosts=Path(known_hosts).expanduser(),
            connect_timeout=g("TORRUST_SSH_CONNECT_TIMEOUT"),
        ),
        command_timeout=g("TORRUST_COMMAND_TIMEOUT"),
        deploy_root=g("TORRUST_DEPLOY_ROOT"),
        compose_project=g("TORRUST_COMPOSE_PROJECT"),
        releases_keep=g("TORRUST_RELEASES_KEEP"),
        provider=g("TORRUST_PROVIDER"),
        infra=InfraSettings(
            binary=g("TORRUST_INFRA_BINARY"),
            server_name=g("TORRUST_SERVER_NAME") or f"torrust-{env}".replace("_", "-"),
            ssh_public_key=Path(pub).expanduser() if pub else (Path(f"{key}.pub").expanduser() if key else None),
            deletion_protection=g("TORRUST_DELETION_PROTECTION"),
            data_volume_size=g("TORRUST_DATA_VOLUME_SIZE"),
            hetzner_server_type=g("TORRUST_HETZNER_SERVER_TYPE"),
            hetzner_location=g("TORRUST_HETZNER_LOCATION"),
            hetzner_image=g("TORRUST_HETZNER_IMAGE"),
            libvirt_uri=g("TORRUST_LIBVIRT_URI"),
            libvirt_pool=g("TORRUST_LIBVIRT_POOL"),
            libvirt_network=g("TORRUST_LIBVIRT_NETWORK"),
            libvirt_image_url=g("TORRUST_LIBVIRT_IMAGE_URL"),
            vm_memory=g("TORRUST_VM_MEMORY"),
            vm_vcpus=g("TORRUST_VM_VCPUS"),
            vm_disk_size=g("TORRUST_VM_DISK_SIZE"),
            conntrack_max=g("TORRUST_CONNTRACK_MAX"),
            wait_ssh_timeout=g("TORRUST_WAIT_SSH_TIMEOUT"),
            wait_cloud_init_timeout=g("TORRUST_WAIT_CLOUD_INIT_TIMEOUT"),
            wait_interval=g("TORRUST_WAIT_INTERVAL"),
        ),
        domain=domain,
        http_tracker_domains=http_domains,
        api_domain=g("TORRUST_API_DOMAIN") or f"api.{domain}",
        grafana_domain=g("TORRUST_GRAFANA_DOMAIN") or f"grafana.{domain}",
        udp_trackers=g("TORRUST_UDP_TRACKERS"),
        http_trackers=http_trackers,
        api_bind=g("TORRUST_API_BIND"),
        health_check_api_bind=g("TORRUST_HEALTH_CHECK_API_BIND"),
        private=g("TORRUST_TRACKER_PRIVATE"),
        listed=g("TORRUST_TRACKER_LISTED"),
        announce_interval=g("TORRUST_ANNOUNCE_INTERVAL"),
        announce_interval_min=g("TORRUST_ANNOUNCE_INTERVAL_MIN"),
        log_level=g("TORRUST_LOG_LEVEL"),
        external_ip=g("TORRUST_TRACKER_EXTERNAL_IP"),
        admin_token=g("TORRUST_TRACKER_ADMIN_TOKEN"),
        tracker_uid=g("TORRUST_TRACKER_USER_ID"),
        db_driver=g("TORRUST_DB_DRIVER"),
        mysql_database=g("TORRUST_MYSQL_DATABASE"),
        mysql_user=g("TORRUST_MYSQL_USER"),
        mysql_password=g("TORRUST_MYSQL_PASSWORD"),
        mysql_root_password=g("TORRUST_MYSQL_ROOT_PASSWORD"),
        http_port=g("TORRUST_HTTP_PORT"),
        https_port=g("TORRUST_HTTPS_PORT"),
        tls=g("TORRUST_TLS"),
        acme_email=g("TORRUST_ACME_EMAIL"),
        acme_staging=g("TORRUST_ACME_STAGING"),
        tls_internal=g("TORRUST_TLS_INTERNAL"),
        prometheus=g("TORRUST_PROMETHEUS"),
        prometheus_port=g("TORRUST_PROMETHEUS_PORT"),
        prometheus_retention=g("TORRUST_PROMETHEUS_RETENTION"),
        grafana=g("TORRUST_GRAFANA"),
        grafana_admin_user=g("TORRUST_GRAFANA_ADMIN_USER"),
        grafana_admin_password=g("TORRUST_GRAFANA_ADMIN_PASSWORD"),
        backup=g("TORRUST_BACKUP"),
        backup_schedule=g("TORRUST_BACKUP_SCHEDULE"),
        backup_retention_count=g("TORRUST_BACKUP_RETENTION_COUNT"),
        backup_retention_days=g("TORRUST_BACKUP_RETENTION_DAYS"),
        backup_dir=backup_dir or f"{g('TORRUST_DEPLOY_ROOT').rstrip('/')}/backups",
        backup_compression=g("TORRUST_BACKUP_COMPRESSION"),
        backup_max_age_hours=g("TORRUST_BACKUP_MAX_AGE_HOURS"),
        images=images,
        ipv6=g("TORRUST_IPV6"),
        ipv6_subnet=g("TORRUST_IPV6_SUBNET"),
        probe_ipv4=g("TORRUST_PROBE_IPV4"),
        probe_ipv6=g("TORRUST_PROBE_IPV6"),
        probe_timeout=g("TORRUST_PROBE_TIMEOUT"),
        probe_attempts=g("TORRUST_PROBE_ATTEMPTS"),
        origins={k: r.origin for k, r in values.items()},
        raw={k: r.value for k, r in values.items()},
        warnings=tuple(warnings),
    )
    unread = set(BY_NAME) - b.read
    assert not unread, f"variables never read: {sorted(unread)}"  # guarded by a unit test too
    _cross_checks(b, s)
    s = _with_local_secrets(s)
    problems += b.problems
    if problems:
        raise SettingsError(env, problems)
    return s


def _cross_checks(b: _Builder, s: Settings) -> None:  # noqa: C901 - a flat list of rules
    f = b.fail
    if s.announce_interval_min > s.announce_interval:
        f("TORRUST_ANNOUNCE_INTERVAL_MIN", f"greater than TORRUST_ANNOUNCE_INTERVAL ({s.announce_interval})")
    if s.grafana and not s.prometheus:
        f("TORRUST_GRAFANA", "Grafana needs Prometheus: set TORRUST_PROMETHEUS=true or TORRUST_GRAFANA=false")
    if s.target == "local" and s.provider != "none":
        f("TORRUST_PROVIDER", "a provider needs TORRUST_DEPLOY_TARGET=ssh (the local target uses this machine)")
    if s.target == "ssh" and s.provider == "none":
        f("TORRUST_PROVIDER", "the ssh target needs a provider: libvirt, hetzner or existing")
    if len(s.http_tracker_domains) != len(s.http_trackers) and s.http_trackers:
        f(
            "TORRUST_HTTP_TRACKER_DOMAINS",
            f"has {len(s.http_tracker_domains)} names for {len(s.http_trackers)} HTTP trackers; give one per tracker",
        )
    names = [*s.http_tracker_domains, s.api_domain] + ([s.grafana_domain] if s.grafana else [])
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        culprit = (
            "TORRUST_API_DOMAIN"
            if s.api_domain in dupes
            else "TORRUST_GRAFANA_DOMAIN"
            if s.grafana_domain in dupes
            else "TORRUST_HTTP_TRACKER_DOMAINS"
        )
        f(culprit, f"public name {dupes[0]} is used for two services")
    if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,62}", s.compose_project):
        f("TORRUST_COMPOSE_PROJECT", "not a valid Compose project name")
    if not re.fullmatch(r"/[A-Za-z0-9._/-]*[A-Za-z0-9._-]", s.deploy_root) or ".." in s.deploy_root.split("/"):
        f("TORRUST_DEPLOY_ROOT", "must be an absolute path of letters, digits, '.', '_', '-' and '/', not '/'")
    if s.ssh.key and not s.ssh.key.is_file():
        f("TORRUST_SSH_KEY", "file not found")
    binary = s.infra.binary.rsplit("/", 1)[-1]
    if binary not in ("tofu", "terraform"):
        f("TORRUST_INFRA_BINARY", "must be tofu or terraform (or a path to one of them)")
    if not re.fullmatch(r"[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?", s.infra.server_name):
        f("TORRUST_SERVER_NAME", "not a valid server name")
    if b.values["TORRUST_SSH_PUBLIC_KEY"].value.strip() and not (
        s.infra.ssh_public_key and s.infra.ssh_public_key.is_file()
    ):
        f("TORRUST_SSH_PUBLIC_KEY", "file not found")
    for name in (
        "TORRUST_HETZNER_SERVER_TYPE",
        "TORRUST_HETZNER_LOCATION",
        "TORRUST_HETZNER_IMAGE",
        "TORRUST_LIBVIRT_POOL",
        "TORRUST_LIBVIRT_NETWORK",
    ):
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}", b.values[name].value.strip()):
            f(name, "not a valid name (letters, digits, '.', '_', '-')")
    if not re.fullmatch(r"[a-z_][a-z0-9_.-]{0,31}", s.ssh.user) or s.ssh.user == "root":
        f("TORRUST_SSH_USER", "not a valid non-root user name")
    if s.external_ip:
        try:
            ipaddress.ip_address(s.external_ip)
        except ValueError:
            f("TORRUST_TRACKER_EXTERNAL_IP", "not an IP address")
    for name, value, version in (("TORRUST_PROBE_IPV4", s.probe_ipv4, 4), ("TORRUST_PROBE_IPV6", s.probe_ipv6, 6)):
        if value and value != "none":
            try:
                if ipaddress.ip_address(value).version != version:
                    raise ValueError
            except ValueError:
                f(name, f"not an IPv{version} address")
    if not re.fullmatch(r"[A-Za-z0-9_]{1,64}", s.mysql_database):
        f("TORRUST_MYSQL_DATABASE", "not a valid database name")
    if not re.fullmatch(r"[A-Za-z0-9_]{1,32}", s.mysql_user) or s.mysql_user.lower() == "root":
        f("TORRUST_MYSQL_USER", "not a valid user name, or root (the tracker must not use root)")
    if not re.fullmatch(r"[A-Za-z0-9._@-]{1,64}", s.grafana_admin_user):
        f("TORRUST_GRAFANA_ADMIN_USER", "not a valid user name")
    # ports published on the host must not collide
    published: dict[tuple[int, str], str] = {}
    wanted = [(b_.port, "udp", "TORRUST_UDP_TRACKERS") for b_ in s.udp_trackers]
    wanted.append((s.http_port, "tcp", "TORRUST_HTTP_PORT"))
    if s.tls:
        wanted += [(s.https_port, "tcp", "TORRUST_HTTPS_PORT"), (s.https_port, "udp", "TORRUST_HTTPS_PORT")]
    if s.prometheus:
        wanted.append((s.prometheus_port, "tcp", "TORRUST_PROMETHEUS_PORT"))
    for port, proto, name in wanted:
        other = published.get((port, proto))
        if other and other != name:
            f(name, f"host port {port}/{proto} is already used by {other}")
        published[(port, proto)] = name
    internal = [(b_.port, "TORRUST_HTTP_TRACKERS") for b_ in s.http_trackers]
    internal += [(s.api_bind.port, "TORRUST_API_BIND"), (s.health_check_api_bind.port, "TORRUST_HEALTH_CHECK_API_BIND")]
    seen: dict[int, str] = {}
    for port, name in internal:
        if port in seen and seen[port] != name:
            f(name, f"port {port} is already used by {seen[port]} in the tracker container")
        seen[port] = name
    # secrets required by what is switched on (outside local, where no dev value applies)
    required = ["TORRUST_TRACKER_ADMIN_TOKEN"]
    if s.mysql:
        required += ["TORRUST_MYSQL_PASSWORD", "TORRUST_MYSQL_ROOT_PASSWORD"]
        if s.mysql_password and s.mysql_password == s.mysql_root_password:
            f("TORRUST_MYSQL_PASSWORD", "must differ from TORRUST_MYSQL_ROOT_PASSWORD")
    if s.grafana:
        required.append("TORRUST_GRAFANA_ADMIN_PASSWORD")
    if b.strict:
        for name in required:
            if not b.values[name].value.strip():
                f(name, f"required; run ./tasks.py app.config --env {s.env} to generate it, or set it")
        if s.tls:
            acme_names = [n for n in s.public_names if not s.uses_internal_ca(n)]
            if acme_names and not s.acme_email:
                f("TORRUST_ACME_EMAIL", f"required with TLS on for public names ({', '.join(acme_names)})")
    if s.tls and s.tls_internal == "never":
        internal_names = [n for n in s.public_names if n.endswith(INTERNAL_SUFFIXES)]
        if internal_names:
            f("TORRUST_TLS_INTERNAL", f"'never' but {internal_names[0]} cannot get a public certificate")


def _with_local_secrets(s: Settings) -> Settings:
    """In the 'local' environment an empty secret gets a fixed development value.

    They are deterministic (so local renders are reproducible) and are refused outside
    'local' as placeholders would be: they never reach another environment.
    """
    if not s.is_local_env:
        return s
    from dataclasses import replace

    changes = {k: Secret(v) for k, v in sec.LOCAL_DEV_SECRETS.items() if not getattr(s, k)}
    return replace(s, **changes) if changes else s
