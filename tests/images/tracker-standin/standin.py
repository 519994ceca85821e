#!/usr/bin/env python3
"""TEST STAND-IN for the Torrust tracker (torrust/tracker). Not the Torrust tracker.

A Python front (stdlib + python3-pymysql) around Debian's opentracker that behaves, on
the outside, like the Torrust tracker for what a deployment tool probes: the TOML
configuration (schema 2.0.0) with TORRUST_TRACKER_CONFIG_OVERRIDE_* variables, the
database (sqlite3 or MySQL), UDP (BEP 15) and HTTP trackers, the REST API (health check,
stats, Prometheus metrics) and the health-check API. See README.md beside this file for
what is and is not emulated. Test use only.

Opentracker runs on loopback ports inside the container. Each client IP is given its
own loopback source address (127.x.y.z) towards opentracker, so opentracker keeps one
peer per client address, and peer lists in replies are translated back to the clients'
real addresses (IPv4 peers for IPv4 clients, IPv6 peers for IPv6 clients).
"""

from __future__ import annotations

import concurrent.futures
import datetime
import hmac
import http.client
import http.server
import ipaddress
import json
import os
import re
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn

NAME = "tracker stand-in (opentracker)"
DEFAULT_CONFIG_PATH = "/etc/torrust/tracker/tracker.toml"
OVERRIDE_PREFIX = "TORRUST_TRACKER_CONFIG_OVERRIDE_"
SCHEMA_VERSION = "2.0.0"
OPENTRACKER = os.environ.get("STANDIN_OPENTRACKER", "/usr/bin/opentracker")
DB_CONNECT_SECONDS = float(os.environ.get("STANDIN_DB_CONNECT_SECONDS", "30"))
UDP_PROTOCOL_ID = 0x41727101980

# --------------------------------------------------------------------------- logging

LEVELS = {"off": 100, "error": 40, "warn": 30, "info": 20, "debug": 10, "trace": 5}
_log_threshold = LEVELS["info"]
_log_lock = threading.Lock()


def log(level: str, message: str) -> None:
    if LEVELS[level] < _log_threshold:
        return
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    with _log_lock:
        print(f"{now} {level.upper():>5} {NAME} {message}", flush=True)


def fatal(message: str, code: int = 1) -> NoReturn:
    print(f"{NAME} ERROR: {message}", file=sys.stderr, flush=True)
    sys.exit(code)


# ---------------------------------------------------------------------- profiles


@dataclass(frozen=True)
class Profile:
    """One Torrust tracker release this stand-in behaves like (README.md: sources)."""

    name: str
    stats_prometheus: bool  # format=prometheus on /api/v1/stats
    metrics_route: bool  # /api/v1/metrics (labelled metrics)
    bearer: bool  # Authorization: Bearer accepted (and preferred over ?token=)
    tables: tuple[str, ...]
    extra_keys: tuple[tuple[str, str, type], ...] = ()  # (table, key, type) beyond v3.0.0's schema
    extended_stats: bool = False  # the later stats fields (udp_requests_aborted, udp4_requests, ...)
    # Rust source locations the release prints in its messages ("" where not checked)
    loc_config_load: str = ""
    loc_config_validate: str = ""
    loc_not_whitelisted: str = ""
    loc_udp_tracker_error: str = ""
    loc_udp_private: str = ""
    loc_missing_key: str = ""
    loc_invalid_key: str = ""
    loc_unknown_key: str = ""
    loc_key_expired: str = ""
    loc_delete_failed: str = ""


PROFILES = {
    p.name: p
    for p in (
        Profile(
            name="v3.0.0",
            stats_prometheus=False,
            metrics_route=False,
            bearer=False,
            tables=("whitelist", "torrents", "keys"),
            loc_config_load="src/bootstrap/config.rs:27:32",
            loc_config_validate="src/bootstrap/app.rs:38:9",
            loc_not_whitelisted="src/core/mod.rs:1106:23",
            loc_udp_tracker_error="src/servers/udp/handlers.rs:161:75",
            loc_udp_private="src/servers/udp/handlers.rs:150:23",
            loc_missing_key="src/servers/http/v1/handlers/announce.rs:95:31",
            loc_invalid_key="src/servers/http/v1/extractors/authentication_key.rs:117:23",
            loc_unknown_key="src/core/mod.rs:1047:27",
            loc_key_expired="src/core/auth.rs:115:31",
            loc_delete_failed="src/core/databases/sqlite.rs:281:27",
        ),
        Profile(
            name="develop-02c33f69",
            stats_prometheus=True,
            metrics_route=True,
            bearer=True,
            tables=("whitelist", "torrents", "keys", "torrent_aggregate_metrics"),
            extra_keys=(("core.announce_policy", "max_peers_per_announce", int),),
            extended_stats=True,
        ),
    )
}


def _profile() -> Profile:
    name = os.environ.get("STANDIN_PROFILE", "")
    if name not in PROFILES:
        fatal(f"STANDIN_PROFILE={name!r} is not a profile of this stand-in (allowed: {', '.join(PROFILES)})")
    return PROFILES[name]


def located(message: str, location: str) -> str:
    """A Torrust message with the source location the release appends (when known)."""
    return f"{message}, {location}" if location else message


# ---------------------------------------------------------------------- configuration


class ConfigError(Exception):
    """A configuration the stand-in refuses (exit 1)."""


class LoaderPanic(ConfigError):
    """What the tracker's configuration loader panics with (exit 101, like a Rust panic)."""

    def __init__(self, message: str, location: str = ""):
        where = f" at {location}" if location else ""
        super().__init__(f"thread 'main' panicked{where}:\n{message}")


TOKENS = "tokens"  # a table of label = token strings
TLS = {"ssl_cert_path": str, "ssl_key_path": str}
ENUMS = {
    "metadata.app": ("torrust-tracker",),
    "metadata.purpose": ("configuration",),
    "logging.threshold": ("off", "error", "warn", "info", "debug", "trace"),
    "core.database.driver": ("sqlite3", "mysql"),
}
MANDATORY = ("metadata.schema_version", "logging.threshold", "core.private", "core.listed")

# Schema 2.0.0 of the Torrust tracker configuration (v3.0.0): nothing else is accepted.
SCHEMA: dict[str, Any] = {
    "metadata": {"app": str, "purpose": str, "schema_version": str},
    "logging": {"threshold": str},
    "core": {
        "listed": bool,
        "private": bool,
        "inactive_peer_cleanup_interval": int,
        "tracker_usage_statistics": bool,
        "private_mode": {"check_keys_expiration": bool},
        "announce_policy": {"interval": int, "interval_min": int},
        "database": {"driver": str, "path": str},
        "net": {"external_ip": str, "on_reverse_proxy": bool},
        "tracker_policy": {
            "max_peer_timeout": int,
            "persistent_torrent_completed_stat": bool,
            "remove_peerless_torrents": bool,
        },
    },
    "udp_trackers": [{"bind_address": str}],
    "http_trackers": [{"bind_address": str, "tsl_config": TLS}],
    "http_api": {"bind_address": str, "tsl_config": TLS, "access_tokens": TOKENS},
    "health_check_api": {"bind_address": str},
}

EXPECTED = {str: "a string", bool: "a boolean", int: "an unsigned integer"}


def _copy(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _copy(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_copy(node[0])]
    return node


def schema_for(profile: Profile) -> dict[str, Any]:
    """v3.0.0's schema plus the keys a later release added."""
    schema = _copy(SCHEMA)
    for table, key, kind in profile.extra_keys:
        node = schema
        for part in table.split("."):
            node = node[part]
        node[key] = kind
    return schema


def _actual(value: Any) -> str:
    """How figment names a value in its errors (Debug of figment::error::Actual)."""
    if isinstance(value, bool):
        return f"Bool({str(value).lower()})"
    if isinstance(value, int):
        return f"Unsigned({value})" if value >= 0 else f"Signed({value})"
    if isinstance(value, float):
        return f"Float({value})"
    if isinstance(value, str):
        return f"Str({json.dumps(value)})"
    return "Map" if isinstance(value, dict) else "Seq"


def _figment_error(path: list[str], kind: str) -> LoaderPanic:
    dotted = ", ".join(json.dumps(p) for p in path)
    return LoaderPanic(
        f"error loading configuration from sources: ConfigError {{ source: LocatedError {{ source: Error {{ "
        f"path: [{dotted}], kind: {kind} }} }} }}",
        PROFILE_LOC["config_load"],
    )


PROFILE_LOC: dict[str, str] = {}  # filled in main() from the profile


def _check_value(value: Any, schema: Any, path: list[str], strict: list[str]) -> None:
    dotted = ".".join(p for p in path if not p.isdigit())
    if isinstance(schema, dict):
        if not isinstance(value, dict):
            raise _figment_error(path, f'InvalidType({_actual(value)}, "a map")')
        for key, sub in value.items():
            if key not in schema:
                strict.append(".".join(p for p in [*path, key] if not p.isdigit()))
                continue
            _check_value(sub, schema[key], [*path, key], strict)
    elif isinstance(schema, list):
        if not isinstance(value, list):
            raise _figment_error(path, f'InvalidType({_actual(value)}, "a sequence")')
        for i, item in enumerate(value):
            _check_value(item, schema[0], [*path, str(i)], strict)
    elif schema is TOKENS:
        if not isinstance(value, dict):
            raise _figment_error(path, f'InvalidType({_actual(value)}, "a map")')
        for label, token in value.items():
            if not isinstance(token, str):
                raise _figment_error([*path, label], f'InvalidType({_actual(token)}, "a string")')
    else:
        ok = isinstance(value, schema) and not (schema is int and (isinstance(value, bool) or value < 0))
        if not ok:
            raise _figment_error(path, f'InvalidType({_actual(value)}, "{EXPECTED[schema]}")')
        allowed = ENUMS.get(dotted)
        if allowed and value not in allowed:
            names = ", ".join(json.dumps(a) for a in allowed)
            raise _figment_error(path, f"UnknownVariant({json.dumps(value)}, [{names}])")


def _env_value(raw: str) -> Any:
    """figment's Env provider parses every value (figment::value::Value::from_str)."""
    text = raw.strip()
    if text in ("true", "false"):
        return text == "true"
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text) if any(c in text for c in ".eE") and text[:1] in "+-.0123456789" else raw
    except ValueError:
        return raw


def _merge_overrides(config: dict, environ: dict[str, str]) -> list[str]:
    """TORRUST_TRACKER_CONFIG_OVERRIDE_<SECTION>__<KEY> (keys lower-cased), merged over the
    file like figment's Env provider. Returns their names (for the log, never values)."""
    applied = []
    for name in sorted(environ):
        if not name.startswith(OVERRIDE_PREFIX):
            continue
        parts = [p.lower() for p in name[len(OVERRIDE_PREFIX) :].split("__")]
        if not all(parts):
            raise ConfigError(f"malformed override variable {name}")
        node = config
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise _figment_error(parts, f'InvalidType({_actual(child)}, "a map")')
            node = child
        node[parts[-1]] = _env_value(environ[name])
        applied.append(name)
    return applied


def _find(config: dict, dotted: str) -> Any:
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def load_config(environ: dict[str, str], profile: Profile) -> tuple[dict, str, list[str]]:
    """The merged configuration as the release's loader accepts it (or its panic)."""
    if environ.get("TORRUST_TRACKER_CONFIG_TOML"):
        source = "$TORRUST_TRACKER_CONFIG_TOML"
        text = environ["TORRUST_TRACKER_CONFIG_TOML"]
    else:
        source = environ.get("TORRUST_TRACKER_CONFIG_TOML_PATH") or DEFAULT_CONFIG_PATH
        try:
            with open(source, "rb") as f:
                text = f.read().decode("utf-8")
        except FileNotFoundError:
            raise ConfigError(f"configuration file not found: {source}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read configuration file {source}: {exc}") from None
    try:
        config = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _figment_error([], f"Message({json.dumps(str(exc))})") from None
    overrides = _merge_overrides(config, environ)
    for option in MANDATORY:  # check_mandatory_options: before any default is filled in
        if _find(config, option) is None:
            raise LoaderPanic(
                f'error loading configuration from sources: MissingMandatoryOption {{ path: "{option}" }}',
                PROFILE_LOC["config_load"],
            )
    unknown: list[str] = []
    _check_value(config, schema_for(profile), [], unknown)
    version = config["metadata"]["schema_version"]
    if version != SCHEMA_VERSION:
        raise LoaderPanic(
            "error loading configuration from sources: "
            f'UnsupportedVersion {{ version: Version {{ schema_version: "{version}" }} }}',
            PROFILE_LOC["config_load"],
        )
    if unknown:  # the release ignores unknown keys: the stand-in is stricter (README.md)
        raise ConfigError(
            f"invalid configuration {source}: unknown key(s) "
            + ", ".join(f"'{k}'" for k in unknown)
            + f" (not in configuration schema {SCHEMA_VERSION}; the Torrust tracker would ignore them)"
        )
    core = config.get("core", {})
    if "private_mode" in core and not core.get("private"):
        raise LoaderPanic(
            "Configuration error: Private mode section in configuration can only be included when the "
            "tracker is running in private mode.",
            PROFILE_LOC["config_validate"],
        )
    return config, source, overrides


@dataclass(frozen=True)
class Bind:
    host: str
    port: int
    family: int
    text: str

    @property
    def probe_host(self) -> str:
        """Where to reach this binding from inside the container."""
        if self.host in ("0.0.0.0", "::"):
            return "127.0.0.1"
        return self.host


def parse_bind(text: str, what: str) -> Bind:
    try:
        if text.startswith("["):
            host, sep, port = text[1:].partition("]:")
            if not sep:
                raise ValueError
            ip = ipaddress.IPv6Address(host)
            family = socket.AF_INET6
        else:
            host, sep, port = text.rpartition(":")
            if not sep:
                raise ValueError
            ip = ipaddress.IPv4Address(host)
            family = socket.AF_INET
        port_n = int(port)
        if not 0 <= port_n <= 65535:
            raise ValueError
    except ValueError:
        raise ConfigError(
            f"{what} bind_address '{text}' is not a socket address (e.g. 0.0.0.0:6969 or [::]:6969)"
        ) from None
    return Bind(str(ip), port_n, family, text)


@dataclass
class Settings:
    source: str
    profile: Profile = field(default_factory=lambda: PROFILES["v3.0.0"])
    threshold: str = "info"
    listed: bool = False
    private: bool = False
    check_keys_expiration: bool = True
    usage_statistics: bool = True
    interval: int = 120
    interval_min: int = 120
    db_driver: str = "sqlite3"
    db_path: str = "./storage/tracker/lib/database/sqlite3.db"
    external_ip: str | None = None
    on_reverse_proxy: bool = False
    persistent_completed: bool = False
    udp: list[Bind] = field(default_factory=list)
    http: list[tuple[Bind, dict | None]] = field(default_factory=list)
    api: Bind | None = None
    api_tls: dict | None = None
    tokens: dict[str, str] = field(default_factory=dict)
    health: Bind | None = None
    overrides: list[str] = field(default_factory=list)


def load_settings(environ: dict[str, str], profile: Profile | None = None) -> Settings:
    profile = profile or PROFILES["v3.0.0"]
    PROFILE_LOC.update(config_load=profile.loc_config_load, config_validate=profile.loc_config_validate)
    config, source, overrides = load_config(environ, profile)
    s = Settings(source=source, profile=profile, overrides=overrides)
    s.threshold = config["logging"]["threshold"]
    core = config.get("core", {})
    s.listed = core["listed"]
    s.private = core["private"]
    # [core.private_mode] absent: keys' expiration is checked (verify_auth_key's None arm)
    s.check_keys_expiration = core.get("private_mode", {}).get("check_keys_expiration", True)
    s.usage_statistics = core.get("tracker_usage_statistics", True)
    ap = core.get("announce_policy", {})
    s.interval = ap.get("interval", 120)
    s.interval_min = ap.get("interval_min", 120)
    db = core.get("database", {})
    s.db_driver = db.get("driver", "sqlite3")
    s.db_path = db.get("path", s.db_path)
    net = core.get("net", {})
    s.external_ip = net.get("external_ip")
    if s.external_ip is not None:
        try:
            ipaddress.ip_address(s.external_ip)
        except ValueError:
            raise _figment_error(["core", "net", "external_ip"], 'InvalidValue(Str(...), "IP address")') from None
    s.on_reverse_proxy = net.get("on_reverse_proxy", False)
    s.persistent_completed = core.get("tracker_policy", {}).get("persistent_torrent_completed_stat", False)
    s.udp = [parse_bind(t.get("bind_address", "0.0.0.0:6969"), "udp_trackers") for t in config.get("udp_trackers", [])]
    s.http = [
        (parse_bind(t.get("bind_address", "0.0.0.0:7070"), "http_trackers"), _tls(t.get("tsl_config"), "http_trackers"))
        for t in config.get("http_trackers", [])
    ]
    api = config.get("http_api")
    if api is not None:
        s.api = parse_bind(api.get("bind_address", "127.0.0.1:1212"), "http_api")
        s.api_tls = _tls(api.get("tsl_config"), "http_api")
        s.tokens = {k: v for k, v in api.get("access_tokens", {}).items() if v}
    if s.api is None or not s.tokens.get("admin"):
        raise ConfigError(
            "no admin token configured: set [http_api.access_tokens] admin, e.g. with "
            f"{OVERRIDE_PREFIX}HTTP_API__ACCESS_TOKENS__ADMIN"
        )
    hc = config.get("health_check_api", {})
    s.health = parse_bind(hc.get("bind_address", "127.0.0.1:1313"), "health_check_api")
    return s


def _tls(tsl: dict | None, what: str) -> dict | None:
    if tsl is None:
        return None
    for key in ("ssl_cert_path", "ssl_key_path"):
        if key not in tsl:
            raise ConfigError(f"{what}.tsl_config needs {key}")
    return tsl


# --------------------------------------------------------------------------- bencode


def bencode(value: Any) -> bytes:
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, int):
        return b"i%de" % value
    if isinstance(value, str):
        value = value.encode()
    if isinstance(value, bytes):
        return b"%d:%s" % (len(value), value)
    if isinstance(value, list):
        return b"l" + b"".join(bencode(v) for v in value) + b"e"
    if isinstance(value, dict):
        items = sorted((k.encode() if isinstance(k, str) else k, v) for k, v in value.items())
        return b"d" + b"".join(bencode(k) + bencode(v) for k, v in items) + b"e"
    raise TypeError(f"cannot bencode {type(value)}")


def bdecode(data: bytes) -> Any:
    def parse(i: int) -> tuple[Any, int]:
        c = data[i : i + 1]
        if c == b"i":
            end = data.index(b"e", i)
            return int(data[i + 1 : end]), end + 1
        if c == b"l":
            i += 1
            out = []
            while data[i : i + 1] != b"e":
                v, i = parse(i)
                out.append(v)
            return out, i + 1
        if c == b"d":
            i += 1
            d = {}
            while data[i : i + 1] != b"e":
                k, i = parse(i)
                v, i = parse(i)
                d[k] = v
            return d, i + 1
        if c.isdigit():
            colon = data.index(b":", i)
            n = int(data[i:colon])
            return data[colon + 1 : colon + 1 + n], colon + 1 + n
        raise ValueError(f"bad bencode at {i}")

    value, end = parse(0)
    if end != len(data):
        raise ValueError("trailing data after bencoded value")
    return value


def failure(reason: str) -> bytes:
    return bencode({"failure reason": reason})


# -------------------------------------------------------------------------- database


class Database:
    """The tracker's tables, in sqlite3 or MySQL, like the Torrust tracker creates them."""

    SQLITE_TABLES = (
        "CREATE TABLE IF NOT EXISTS whitelist (id INTEGER PRIMARY KEY AUTOINCREMENT, info_hash TEXT NOT NULL UNIQUE)",
        "CREATE TABLE IF NOT EXISTS torrents (id INTEGER PRIMARY KEY AUTOINCREMENT, info_hash TEXT NOT NULL UNIQUE,"
        " completed INTEGER DEFAULT 0 NOT NULL)",
        "CREATE TABLE IF NOT EXISTS keys (id INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL UNIQUE,"
        " valid_until INTEGER)",
        "CREATE TABLE IF NOT EXISTS torrent_aggregate_metrics (id INTEGER PRIMARY KEY AUTOINCREMENT,"
        " metric_name TEXT NOT NULL UNIQUE, value INTEGER DEFAULT 0 NOT NULL)",
    )
    MYSQL_TABLES = (
        "CREATE TABLE IF NOT EXISTS whitelist (id integer PRIMARY KEY AUTO_INCREMENT,"
        " info_hash VARCHAR(40) NOT NULL UNIQUE)",
        "CREATE TABLE IF NOT EXISTS torrents (id integer PRIMARY KEY AUTO_INCREMENT,"
        " info_hash VARCHAR(40) NOT NULL UNIQUE, completed INTEGER DEFAULT 0 NOT NULL)",
        "CREATE TABLE IF NOT EXISTS `keys` (`id` INT NOT NULL AUTO_INCREMENT, `key` VARCHAR(32) NOT NULL,"
        " `valid_until` INT(10), PRIMARY KEY (`id`), UNIQUE (`key`))",
        "CREATE TABLE IF NOT EXISTS torrent_aggregate_metrics (id integer PRIMARY KEY AUTO_INCREMENT,"
        " metric_name VARCHAR(50) NOT NULL UNIQUE, value INTEGER DEFAULT 0 NOT NULL)",
    )

    def __init__(self, driver: str, path: str, tables: tuple[str, ...] = ("whitelist", "torrents", "keys")):
        self.driver = driver
        self.tables = tables  # the release's tables, nothing more
        self.lock = threading.Lock()
        self.conn: Any = None
        if driver == "sqlite3":
            self.description = f"sqlite3 {path}"
            self._open_sqlite(path)
        else:
            self._open_mysql(path)

    def _open_sqlite(self, path: str) -> None:
        import sqlite3

        try:
            self.conn = sqlite3.connect(path, check_same_thread=False, timeout=10, isolation_level=None)
            for stmt in self._creates(self.SQLITE_TABLES):
                self.conn.execute(stmt)
        except sqlite3.Error as exc:
            raise ConfigError(
                f"cannot open the sqlite3 database {path}: {exc} (its directory must exist and be "
                f"writable by uid {os.getuid()})"
            ) from None
        self.placeholder = "?"
        self.upsert = (
            "INSERT INTO torrents (info_hash, completed) VALUES (?, 1) "
            "ON CONFLICT(info_hash) DO UPDATE SET completed = completed + 1"
        )

    def _open_mysql(self, dsn: str) -> None:
        try:
            import pymysql
        except ImportError:  # pragma: no cover - the image installs python3-pymysql
            raise ConfigError("python3-pymysql is not installed") from None
        parts = urllib.parse.urlsplit(dsn)
        try:
            port = parts.port or 3306
        except ValueError:
            raise ConfigError("core.database.path: invalid port in the MySQL URL") from None
        db = parts.path.lstrip("/")
        if parts.scheme != "mysql" or not parts.hostname or not parts.username or not db or "/" in db:
            raise ConfigError(
                "core.database.path must be mysql://user:password@host:port/database "
                "(password percent-encoded) when the driver is mysql"
            )
        user = urllib.parse.unquote(parts.username)
        password = urllib.parse.unquote(parts.password or "")
        db = urllib.parse.unquote(db)
        self.description = f"mysql {user}@{parts.hostname}:{port}/{db}"
        deadline = time.monotonic() + DB_CONNECT_SECONDS
        last = None
        while True:
            try:
                self.conn = pymysql.connect(
                    host=parts.hostname,
                    port=port,
                    user=user,
                    password=password,
                    database=db,
                    autocommit=True,
                    connect_timeout=5,
                    charset="utf8mb4",
                )
                break
            except pymysql.err.OperationalError as exc:
                code = exc.args[0] if exc.args else None
                last = exc
                # Wrong credentials or database: no point in waiting.
                if code in (1044, 1045, 1049):
                    raise ConfigError(f"cannot open the MySQL database ({self.description}): {exc}") from None
            except pymysql.err.MySQLError as exc:
                last = exc
            if time.monotonic() >= deadline:
                raise ConfigError(
                    f"cannot connect to the MySQL database ({self.description}) within "
                    f"{DB_CONNECT_SECONDS:.0f}s: {last}"
                ) from None
            log("info", f"waiting for the database ({self.description}): {last}")
            time.sleep(1)
        with self.conn.cursor() as cur:
            for stmt in self._creates(self.MYSQL_TABLES):
                cur.execute(stmt)
        self.placeholder = "%s"
        self.upsert = (
            "INSERT INTO torrents (info_hash, completed) VALUES (%s, 1) "
            "ON DUPLICATE KEY UPDATE completed = completed + 1"
        )

    def _execute(self, sql: str, args: tuple) -> list:
        with self.lock:
            if self.driver == "sqlite3":
                return self.conn.execute(sql, args).fetchall()
            self.conn.ping(reconnect=True)
            with self.conn.cursor() as cur:
                cur.execute(sql, args)
                return list(cur.fetchall())

    def _creates(self, statements: tuple[str, ...]) -> list[str]:
        return [s for s in statements if s.split("EXISTS ", 1)[1].split(" ", 1)[0].strip("`") in self.tables]

    def increment_completed(self, info_hash_hex: str) -> None:
        self._execute(self.upsert, (info_hash_hex,))

    def _keys_table(self) -> str:
        return "`keys`" if self.driver == "mysql" else "keys"

    def load_whitelist(self) -> set[str]:
        return {row[0] for row in self._execute("SELECT info_hash FROM whitelist", ())}

    def add_to_whitelist(self, info_hash_hex: str) -> None:
        """Like the tracker: insert only when not whitelisted yet."""
        q = self.placeholder
        if not self._execute(f"SELECT 1 FROM whitelist WHERE info_hash = {q}", (info_hash_hex,)):
            self._execute(f"INSERT INTO whitelist (info_hash) VALUES ({q})", (info_hash_hex,))

    def remove_from_whitelist(self, info_hash_hex: str) -> None:
        self._execute(f"DELETE FROM whitelist WHERE info_hash = {self.placeholder}", (info_hash_hex,))

    def load_keys(self) -> dict[str, int | None]:
        return {k: v for k, v in self._execute(f"SELECT `key`, valid_until FROM {self._keys_table()}", ())}

    def add_key(self, key: str, valid_until: int | None) -> None:
        q = self.placeholder
        self._execute(f"INSERT INTO {self._keys_table()} (`key`, valid_until) VALUES ({q}, {q})", (key, valid_until))

    def remove_key(self, key: str) -> int:
        """Rows deleted (the tracker fails the request unless exactly one)."""
        with self.lock:
            if self.driver == "sqlite3":
                return self.conn.execute("DELETE FROM keys WHERE key = ?", (key,)).rowcount
            self.conn.ping(reconnect=True)
            with self.conn.cursor() as cur:
                return cur.execute("DELETE FROM `keys` WHERE `key` = %s", (key,))

    def close(self) -> None:
        try:
            self.conn.close()
        except Exception:
            pass


# ----------------------------------------------------------------------- opentracker


def _free_port() -> int:
    """A port free for both TCP and UDP on 127.0.0.1."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
            t.bind(("127.0.0.1", 0))
            port = t.getsockname()[1]
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                    u.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free loopback port for opentracker")


class OpenTracker:
    """Debian's opentracker on loopback; whitelist-only, so the front whitelists hashes."""

    def __init__(self) -> None:
        self.workdir = tempfile.mkdtemp(prefix="opentracker-")
        self.whitelist_path = os.path.join(self.workdir, "whitelist")
        self.whitelist: set[str] = set()
        self.wl_lock = threading.Lock()
        self.port = _free_port()
        self.proc: subprocess.Popen | None = None
        self.stopping = False

    def start(self) -> None:
        with open(self.whitelist_path, "w"):
            pass
        cmd = [
            OPENTRACKER,
            "-i",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-P",
            str(self.port),
            "-A",
            "127.0.0.1",
            "-w",
            self.whitelist_path,
            "-d",
            self.workdir,
        ]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        threading.Thread(target=self._forward_output, daemon=True).start()
        deadline = time.monotonic() + 10
        while True:
            try:
                self.http_get("/stats?mode=version", "127.0.0.1", timeout=1)
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"opentracker did not start (exit code {self.proc.poll()})") from None
                time.sleep(0.05)

    def _forward_output(self) -> None:
        assert self.proc and self.proc.stdout
        for line in self.proc.stdout:
            text = line.decode(errors="replace").rstrip()
            if text:
                log("debug", f"opentracker: {text}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        self.stopping = True
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(2)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(2)

    def ensure_whitelisted(self, info_hash_hex: str) -> None:
        """Add a hash to opentracker's whitelist and reload it (SIGHUP)."""
        if info_hash_hex in self.whitelist:
            return
        with self.wl_lock:
            if info_hash_hex in self.whitelist:
                return
            tmp = self.whitelist_path + ".tmp"
            with open(tmp, "w") as f:
                f.write("".join(h + "\n" for h in sorted(self.whitelist | {info_hash_hex})))
            os.replace(tmp, self.whitelist_path)
            self.whitelist.add(info_hash_hex)
            assert self.proc is not None
            self.proc.send_signal(signal.SIGHUP)

    def http_get(self, path: str, source_ip: str, timeout: float = 5) -> bytes:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout, source_address=(source_ip, 0))
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            return resp.read()
        finally:
            conn.close()

    def udp_request(self, packet: bytes, source_ip: str, timeout: float = 3) -> bytes | None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((source_ip, 0))
            s.settimeout(timeout)
            s.sendto(packet, ("127.0.0.1", self.port))
            try:
                return s.recv(65536)
            except TimeoutError:
                return None

    def fullscrape(self) -> dict[bytes, dict]:
        data = self.http_get("/scrape", "127.0.0.1")
        return bdecode(data).get(b"files", {})


# ------------------------------------------------------------------ tracker emulation

COUNTER_NAMES = [
    f"{proto}{fam}_{what}_handled"
    for proto in ("tcp", "udp")
    for fam in ("4", "6")
    for what in ("connections", "announces", "scrapes")
]
STATS_ORDER = ["torrents", "seeders", "completed", "leechers", *COUNTER_NAMES]
# The later stats resource (develop: packages/axum-rest-tracker-api-server/.../stats/resources.rs).
EXTENDED_ORDER = [
    "torrents",
    "seeders",
    "completed",
    "leechers",
    *(f"tcp{f}_{w}_handled" for f in ("4", "6") for w in ("connections", "announces", "scrapes")),
    "udp_requests_aborted",
    "udp_requests_banned",
    "udp_banned_ips_total",
    "udp_avg_connect_processing_time_ns",
    "udp_avg_announce_processing_time_ns",
    "udp_avg_scrape_processing_time_ns",
    *(
        f"udp{f}_{w}"
        for f in ("4", "6")
        for w in (
            "requests",
            "connections_handled",
            "announces_handled",
            "scrapes_handled",
            "responses",
            "errors_handled",
        )
    ),
]
KEY_LENGTH = 32
KEY_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
NOT_AUTHORIZED = b"Requested download is not authorized"
XFF_ERROR = (
    "Error resolving peer IP: missing or invalid the right most X-Forwarded-For IP "
    "(mandatory on reverse proxy tracker configuration)"
)


def canonical_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    ip = ipaddress.ip_address(text.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        return ip.ipv4_mapped
    return ip


def parse_tracker_query(raw_query: str) -> dict[str, list[bytes]]:
    """Percent-decode a tracker query to bytes. A '+' stays a '+' (no form decoding), as
    in the Torrust tracker and opentracker: an info-hash byte 0x20 must come as %20."""
    params: dict[str, list[bytes]] = {}
    for part in raw_query.split("&"):
        if not part:
            continue
        key, _, value = part.partition("=")
        name = urllib.parse.unquote_to_bytes(key).decode("latin-1")
        params.setdefault(name, []).append(urllib.parse.unquote_to_bytes(value))
    return params


@dataclass
class PeerInfo:
    peer_id: bytes
    event: str
    seen: float


class Tracker:
    def __init__(self, settings: Settings, db: Database, ot: OpenTracker):
        self.s = settings
        self.db = db
        self.ot = ot
        self.counters = dict.fromkeys([*COUNTER_NAMES, *EXTENDED_ORDER[4:]], 0)  # not the torrent figures
        self.counter_lock = threading.Lock()
        # per binding and request kind, for the labelled metrics of releases that have them
        self.by_binding: dict[tuple[str, str, int, str], int] = {}
        # in memory, like the tracker: loaded from the database at start (private: keys,
        # listed: whitelist) and changed through the API
        self.whitelist: set[str] = db.load_whitelist() if settings.listed else set()
        self.keys: dict[str, int | None] = db.load_keys() if settings.private else {}
        self.state_lock = threading.Lock()
        # real client address <-> loopback source address used towards opentracker
        self.fake_by_real: dict[Any, str] = {}
        self.real_by_fake: dict[str, Any] = {}
        self.map_lock = threading.Lock()
        # (info_hash, fake ip, port) -> last announce, for Torrust's "completed" rule
        self.peers: dict[tuple[bytes, str, int], PeerInfo] = {}
        self.peers_lock = threading.Lock()

    # --- helpers ---------------------------------------------------------------

    def count(self, proto: str, ip: Any, what: str) -> None:
        if not self.s.usage_statistics:
            return
        fam = "4" if ip.version == 4 else "6"
        with self.counter_lock:
            if proto == "tcp":
                self.counters[f"tcp{fam}_connections_handled"] += 1
            self.counters[f"{proto}{fam}_{what}_handled"] += 1

    def peer_ip(self, ip: Any) -> Any:
        """The address recorded for a peer (external_ip replaces loopback, as Torrust does)."""
        if ip.is_loopback and self.s.external_ip:
            return ipaddress.ip_address(self.s.external_ip)
        return ip

    def fake_for(self, real: Any) -> str:
        with self.map_lock:
            fake = self.fake_by_real.get(real)
            if fake is None:
                # 127.1.0.1, 127.1.0.2, ...: last octet 1..254, never 127.0.0.x
                n = len(self.fake_by_real)
                a, b = divmod(n, 254)
                fake = f"127.{1 + (a >> 8) % 254}.{a & 255}.{b + 1}"
                self.fake_by_real[real] = fake
                self.real_by_fake[fake] = real
            return fake

    def translate_peers(self, compact: bytes, self_key: tuple[str, int]) -> list[tuple[Any, int, str]]:
        """opentracker's compact IPv4 peer list -> [(real ip, port, fake ip)], without the asker."""
        out = []
        for i in range(0, len(compact) - len(compact) % 6, 6):
            fake = socket.inet_ntoa(compact[i : i + 4])
            port = struct.unpack(">H", compact[i + 4 : i + 6])[0]
            if (fake, port) == self_key:
                continue
            real = self.real_by_fake.get(fake)
            if real is not None:
                out.append((real, port, fake))
        return out

    def count_binding(self, proto: str, bind: Bind | None, kind: str) -> None:
        if bind is None or not self.s.usage_statistics:
            return
        key = (proto, bind.host, bind.port, kind)
        with self.counter_lock:
            self.by_binding[key] = self.by_binding.get(key, 0) + 1

    def count_udp(self, ip: Any, what: str) -> None:
        """The later releases' udpN_requests / udpN_responses / udpN_errors_handled."""
        if self.s.usage_statistics:
            with self.counter_lock:
                self.counters[f"udp{ip.version}_{what}"] += 1

    def check_listed(self, info_hash: bytes) -> str | None:
        """Torrust's authorize(): the in-memory whitelist (core/mod.rs TorrentNotWhitelisted)."""
        if self.s.listed and info_hash.hex() not in self.whitelist:
            return located(f"The torrent: {info_hash.hex()}, is not whitelisted", self.s.profile.loc_not_whitelisted)
        return None

    def authenticate(self, key: str | None) -> str | None:
        """Torrust's HTTP announce authentication in private mode: None when allowed, else
        the failure reason (handlers/common/auth.rs, core/auth.rs)."""
        if not self.s.private:
            return None
        prof = self.s.profile
        if key is None:
            where = prof.loc_missing_key or "(location not emulated)"
            return f"Authentication error: Missing authentication key param for private tracker. Error in {where}"
        if len(key) != KEY_LENGTH or not key.isascii() or not key.isalnum():
            where = prof.loc_invalid_key or "(location not emulated)"
            return f"Authentication error: Invalid format for authentication key param. Error in {where}"
        with self.state_lock:
            known = key in self.keys
            valid_until = self.keys.get(key)
        if not known:
            return "Authentication error: " + located(f"Failed to read key: {key}", prof.loc_unknown_key)
        if self.s.check_keys_expiration and valid_until is not None and valid_until < time.time():
            return "Authentication error: " + located("Key has expired", prof.loc_key_expired)
        return None

    # --- admin state (REST API) ---------------------------------------------------

    def whitelist_add(self, info_hash_hex: str) -> None:
        self.db.add_to_whitelist(info_hash_hex)
        with self.state_lock:
            self.whitelist.add(info_hash_hex)

    def whitelist_remove(self, info_hash_hex: str) -> None:
        with self.state_lock:
            present = info_hash_hex in self.whitelist or info_hash_hex in self.db.load_whitelist()
        if present:
            self.db.remove_from_whitelist(info_hash_hex)
        with self.state_lock:
            self.whitelist.discard(info_hash_hex)

    def whitelist_reload(self) -> None:
        fresh = self.db.load_whitelist()
        with self.state_lock:
            self.whitelist = fresh

    def key_add(self, key: str | None, seconds_valid: int | None) -> dict:
        """Generate (key None) or upload a key, permanent or expiring; as the API answers it."""
        key = key or "".join(KEY_CHARS[b % len(KEY_CHARS)] for b in os.urandom(KEY_LENGTH))
        valid_until = int(time.time()) + seconds_valid if seconds_valid is not None else None
        self.db.add_key(key, valid_until)
        with self.state_lock:
            self.keys[key] = valid_until
        expiry = None
        if valid_until is not None:
            expiry = datetime.datetime.fromtimestamp(valid_until, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        return {"key": key, "valid_until": valid_until, "expiry_time": expiry}

    def key_remove(self, key: str) -> int:
        deleted = self.db.remove_key(key)
        with self.state_lock:
            self.keys.pop(key, None)
        return deleted

    def keys_reload(self) -> None:
        fresh = self.db.load_keys()
        with self.state_lock:
            self.keys = fresh

    def record_announce(self, info_hash: bytes, fake: str, port: int, peer_id: bytes, event: str) -> None:
        """Track peers like the Torrust tracker to decide whether 'completed' counts."""
        key = (info_hash, fake, port)
        now = time.monotonic()
        with self.peers_lock:
            prev = self.peers.get(key)
            if event == "stopped":
                self.peers.pop(key, None)
            else:
                self.peers[key] = PeerInfo(peer_id, event, now)
            if len(self.peers) > 100_000:
                for k in [k for k, p in self.peers.items() if now - p.seen > 3600]:
                    del self.peers[k]
        # Torrust counts a download when a known peer that had not completed announces
        # "completed", and writes it to the database only with
        # persistent_torrent_completed_stat = true.
        if event == "completed" and prev is not None and prev.event != "completed":
            if self.s.persistent_completed:
                try:
                    self.db.increment_completed(info_hash.hex())
                except Exception as exc:
                    log("error", f"cannot save the completed count: {exc}")

    def peer_id_of(self, info_hash: bytes, fake: str, port: int) -> bytes:
        with self.peers_lock:
            p = self.peers.get((info_hash, fake, port))
        return p.peer_id if p else b""

    @staticmethod
    def _retry_while_denied(call, denied) -> Any:
        """opentracker reloads its whitelist asynchronously after SIGHUP: retry briefly."""
        deadline = time.monotonic() + 3
        delay = 0.002
        while True:
            result = call()
            if not denied(result) or time.monotonic() > deadline:
                return result
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    # --- HTTP tracker ------------------------------------------------------------

    def http_announce(self, raw_query: str, resolve_ip: Callable[[], Any], key: str | None = None) -> bytes:
        """Torrust's order: parse the request, authenticate (private), authorize (listed),
        then resolve the peer's IP (X-Forwarded-For behind a proxy)."""
        params = parse_tracker_query(raw_query)

        def one(name: str) -> bytes | None:
            values = params.get(name)
            return values[0] if values else None

        info_hash = one("info_hash")
        if info_hash is None or len(info_hash) != 20:
            return failure(
                "Bad request. Cannot parse query params for announce request: invalid param value "
                "for info_hash (a 20-byte info-hash is required)"
            )
        peer_id = one("peer_id")
        if peer_id is None or len(peer_id) != 20:
            return failure(
                "Bad request. Cannot parse query params for announce request: invalid param value "
                "for peer_id (a 20-byte peer id is required)"
            )
        try:
            port = int(one("port") or b"")
            if not 0 <= port <= 65535:
                raise ValueError
        except ValueError:
            return failure("Bad request. Cannot parse query params for announce request: invalid param value for port")
        event = (one("event") or b"").decode("latin-1")
        if event not in ("", "started", "stopped", "completed", "paused"):
            return failure(
                f"Bad request. Cannot parse query params for announce request: invalid param value {event} for event"
            )
        compact = one("compact") == b"1"
        denial = self.authenticate(key)
        if denial:
            return failure(denial)
        denial = self.check_listed(info_hash)
        if denial:
            return failure("Tracker error: " + denial)
        try:
            ip = resolve_ip()
        except ValueError:
            return failure(XFF_ERROR)
        if event != "stopped":
            self.ot.ensure_whitelisted(info_hash.hex())

        fake = self.fake_for(self.peer_ip(ip))
        keep = [p for p in raw_query.split("&") if p and p.split("=", 1)[0] not in ("ip", "ipv4", "ipv6", "compact")]
        path = "/announce?" + "&".join([*keep, "compact=1"])
        body = self._retry_while_denied(lambda: self.ot.http_get(path, fake), lambda b: NOT_AUTHORIZED in b)
        try:
            reply = bdecode(body)
        except ValueError:
            return failure("tracker stand-in: unexpected reply from opentracker")
        if b"failure reason" in reply:
            return bencode(reply)
        self.record_announce(info_hash, fake, port, peer_id, event)

        peers = self.translate_peers(reply.get(b"peers", b""), (fake, port))
        out: dict[str, Any] = {
            "complete": reply.get(b"complete", 0),
            "incomplete": reply.get(b"incomplete", 0),
            "interval": self.s.interval,
            "min interval": self.s.interval_min,
        }
        if compact:
            out["peers"] = b"".join(r.packed + struct.pack(">H", p) for r, p, _ in peers if r.version == 4)
            out["peers6"] = b"".join(r.packed + struct.pack(">H", p) for r, p, _ in peers if r.version == 6)
        else:
            out["peers"] = [{"ip": str(r), "peer id": self.peer_id_of(info_hash, f, p), "port": p} for r, p, f in peers]
        self.count("tcp", ip, "announces")
        return bencode(out)

    def http_scrape(self, raw_query: str, resolve_ip: Callable[[], Any], key: str | None = None) -> bytes:
        """Private without a valid key: zeroed data for every torrent (Torrust's fake
        scrape); listed: zeroed data for torrents not whitelisted."""
        hashes = parse_tracker_query(raw_query).get("info_hash", [])
        if not hashes or any(len(h) != 20 for h in hashes):
            return failure(
                "Bad request. Cannot parse query params for scrape request: invalid param value for info_hash"
            )
        real = self.authenticate(key) is None
        try:
            ip = resolve_ip()
        except ValueError:
            return failure(XFF_ERROR)
        served = [h for h in hashes if real and self.check_listed(h) is None]
        files: dict[bytes, Any] = {h: {"complete": 0, "downloaded": 0, "incomplete": 0} for h in hashes}
        if served:
            query = "&".join("info_hash=" + urllib.parse.quote_from_bytes(h, safe="") for h in served)
            reply = bdecode(self.ot.http_get("/scrape?" + query, self.fake_for(self.peer_ip(ip))))
            files.update(reply.get(b"files", {}))
        self.count("tcp", ip, "scrapes")
        return bencode({"files": files})

    # --- UDP tracker ---------------------------------------------------------------

    def udp_request(self, data: bytes, ip: Any) -> bytes | None:
        if len(data) < 16:
            return None
        action = struct.unpack(">I", data[8:12])[0]
        tid = data[12:16]
        fake = self.fake_for(self.peer_ip(ip))

        def error(message: str) -> bytes:  # the message without a terminator, as aquatic writes it
            return struct.pack(">I", 3) + tid + message.encode()

        if action == 0:
            reply = self.ot.udp_request(data[:16], fake)
            if reply and len(reply) >= 16 and reply[:4] == b"\0\0\0\0":
                self.count("udp", ip, "connections")
            return reply
        if action == 1:
            if len(data) < 98:
                return error("bad request: announce packet too short")
            info_hash = data[16:36]
            peer_id = data[36:56]
            event = {0: "", 1: "completed", 2: "started", 3: "stopped"}.get(struct.unpack(">I", data[80:84])[0], "")
            port = struct.unpack(">H", data[96:98])[0]
            denial = self.check_listed(info_hash)
            if denial:
                return error(located(f"tracker server error: {denial}", self.s.profile.loc_udp_tracker_error))
            if event != "stopped":
                self.ot.ensure_whitelisted(info_hash.hex())
            packet = data[:84] + b"\0\0\0\0" + data[88:98]  # the IP field is not honoured
            reply = self._retry_while_denied(
                lambda: self.ot.udp_request(packet, fake),
                lambda r: r is not None and len(r) < 20 and r[:4] == b"\0\0\0\1",
            )
            if reply is None or len(reply) < 20 or reply[:4] != b"\0\0\0\1":
                return reply
            self.record_announce(info_hash, fake, port, peer_id, event)
            leechers, seeders = struct.unpack(">II", reply[12:20])
            peers = self.translate_peers(reply[20:], (fake, port))
            family = ip.version
            body = b"".join(r.packed + struct.pack(">H", p) for r, p, _ in peers if r.version == family)
            self.count("udp", ip, "announces")
            return reply[:8] + struct.pack(">III", self.s.interval, leechers, seeders) + body
        if action == 2:
            reply = self.ot.udp_request(data, fake)
            if reply and reply[:4] == b"\0\0\0\2":
                self.count("udp", ip, "scrapes")
            return reply
        return self.ot.udp_request(data, fake)

    # --- statistics ----------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        files = self.ot.fullscrape()
        out = {
            "torrents": len(files),
            "seeders": sum(f.get(b"complete", 0) for f in files.values()),
            "completed": sum(f.get(b"downloaded", 0) for f in files.values()),
            "leechers": sum(f.get(b"incomplete", 0) for f in files.values()),
        }
        with self.counter_lock:
            out.update(self.counters)
        order = EXTENDED_ORDER if self.s.profile.extended_stats else STATS_ORDER
        return {k: out[k] for k in order}

    def labelled_metrics(self) -> str:
        """/api/v1/metrics?format=prometheus of the releases that have it: request counts
        per server binding (the names of torrust-tracker PR #1443)."""
        with self.counter_lock:
            items = sorted(self.by_binding.items())
        lines = []
        for (proto, host, port, kind), value in items:
            labels = (
                f'request_kind="{kind}",server_binding_ip="{host}",server_binding_port="{port}",'
                f'server_binding_protocol="{proto}"'
            )
            core = "http_tracker_core" if proto == "http" else "udp_tracker_core"
            lines.append(f"{core}_requests_received_total{{{labels}}} {value}")
        stats = self.stats()
        lines.append(f"tracker_core_persistent_torrents_downloads_total{{}} {stats['completed']}")
        lines.append(f"torrent_repository_torrents_total{{}} {stats['torrents']}")
        return "\n".join(lines)


# --------------------------------------------------------------------------- servers


class DualStackHTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, bind: Bind, handler, tls: dict | None = None):
        self.address_family = bind.family
        self.tls = tls
        self.bind = bind
        super().__init__((bind.host, bind.port), handler)
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(tls["ssl_cert_path"], tls["ssl_key_path"])
            self.socket = ctx.wrap_socket(self.socket, server_side=True, do_handshake_on_connect=False)

    def server_bind(self) -> None:
        if self.address_family == socket.AF_INET6:
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


class BaseHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "torrust-tracker-standin"
    sys_version = ""
    app: App

    def log_message(self, format: str, *args: Any) -> None:
        # Never log query strings: the API token travels in them.
        log("trace", f"{self.client_address[0]} {self.command} {urllib.parse.urlsplit(self.path).path}")

    def send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_json(self, status: int, value: Any) -> None:
        # serde_json's compact form, as axum's Json answers
        self.send(status, json.dumps(value, separators=(",", ":")).encode(), "application/json")

    def not_found(self) -> None:
        self.send(404, b"Not Found", "text/plain; charset=utf-8")


class TrackerHandler(BaseHandler):
    ROUTES = ("announce", "scrape")

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/health_check":
            return self.send_json(200, {"status": "Ok"})
        # /announce, /scrape, and with a key: /announce/{key}, /scrape/{key}
        parts = url.path.split("/")
        if len(parts) not in (2, 3) or parts[1] not in self.ROUTES or (len(parts) == 3 and not parts[2]):
            return self.not_found()
        key = urllib.parse.unquote(parts[2]) if len(parts) == 3 else None
        tracker = self.app.tracker
        tracker.count_binding("http", getattr(self.server, "bind", None), parts[1])
        try:
            if parts[1] == "announce":
                body = tracker.http_announce(url.query, self.resolve_ip, key)
            else:
                body = tracker.http_scrape(url.query, self.resolve_ip, key)
        except OSError as exc:
            log("error", f"opentracker unreachable: {exc}")
            body = failure("tracker stand-in: internal error")
        self.send(200, body, "text/plain; charset=utf-8")

    def resolve_ip(self) -> Any:
        if self.app.settings.on_reverse_proxy:
            xff = self.headers.get_all("X-Forwarded-For") or []
            values = [v.strip() for h in xff for v in h.split(",") if v.strip()]
            if not values:
                raise ValueError("no X-Forwarded-For")
            return canonical_ip(values[-1])
        return canonical_ip(self.client_address[0])


TEXT = "text/plain; charset=utf-8"


def rejection(reason: str) -> bytes:
    """The REST API's 500 (v1/responses.rs unhandled_rejection_response)."""
    return f"Unhandled rejection: Err {{ reason: {json.dumps(reason)} }}".encode()


class ApiHandler(BaseHandler):
    """The REST API: /api/health_check without a token; everything else (unknown paths
    too: axum's fallback is inside the auth layer) needs the token first."""

    def do_GET(self) -> None:
        self.route("GET")

    def do_POST(self) -> None:
        self.route("POST")

    def do_DELETE(self) -> None:
        self.route("DELETE")

    def route(self, method: str) -> None:
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if url.path == "/api/health_check" and method == "GET":
            return self.send_json(200, {"status": "Ok"})
        denial = self.authenticate(query)
        if denial:
            return self.send(500, rejection(denial), TEXT)
        routes = api_routes(self.app.settings.profile)
        matched = [(m, fn, g) for pattern, m, fn in routes if (g := pattern.fullmatch(url.path))]
        static = [x for x in matched if not x[2].groups()]
        matched = static or matched  # a static segment wins over a parameter (matchit)
        if not matched:
            return self.send(404, b"", TEXT)
        for m, fn, groups in matched:
            if m == method:
                return fn(self, query, body, *groups.groups())
        return self.send(405, b"", TEXT)

    def authenticate(self, query: dict) -> str | None:
        """None when authenticated, else the rejection reason (v1/middlewares/auth.rs)."""
        token = None
        header = self.headers.get("Authorization")
        if self.app.settings.profile.bearer and header is not None:
            if header == "Bearer":
                token = ""
            elif header.startswith("Bearer "):
                token = header[len("Bearer ") :]
            else:
                return "unknown token provided"
        if token is None:
            token = query.get("token", [None])[0]
        if token is None:
            return "unauthorized"
        if not any(hmac.compare_digest(token.encode(), t.encode()) for t in self.app.settings.tokens.values()):
            return "token not valid"
        return None

    # --- stats ----------------------------------------------------------------------

    def format_of(self, query: dict) -> str | None:
        """The `format` param where the release has one (None: refused, answered)."""
        if not self.app.settings.profile.stats_prometheus:
            return "json"  # v3.0.0's stats handler takes no query: any format is ignored
        fmt = query.get("format", ["json"])[0]
        if fmt not in ("json", "prometheus"):
            msg = f"Failed to deserialize query string: unknown variant `{fmt}`, expected `json` or `prometheus`"
            self.send(400, msg.encode(), TEXT)
            return None
        return fmt

    def stats(self, query: dict, _body: bytes) -> None:
        fmt = self.format_of(query)
        if fmt is None:
            return None
        try:
            stats = self.app.tracker.stats()
        except (OSError, ValueError) as exc:
            log("error", f"cannot read opentracker statistics: {exc}")
            return self.send(500, b"tracker stand-in: statistics unavailable", TEXT)
        if fmt == "prometheus":  # lines joined by \n, no trailing newline (stats/responses.rs)
            return self.send(200, "\n".join(f"{k} {v}" for k, v in stats.items()).encode(), TEXT)
        return self.send_json(200, stats)

    def metrics(self, query: dict, _body: bytes) -> None:
        fmt = self.format_of(query)
        if fmt is None:
            return None
        text = self.app.tracker.labelled_metrics()
        if fmt == "prometheus":
            return self.send(200, text.encode(), TEXT)
        return self.send_json(200, {"metrics": text.splitlines()})  # shape not emulated (README.md)

    # --- keys -----------------------------------------------------------------------

    def add_key(self, _query: dict, body: bytes) -> None:
        if not (self.headers.get("Content-Type") or "").startswith("application/json"):
            return self.send(415, b"Expected request with `Content-Type: application/json`", TEXT)
        try:
            form = json.loads(body or b"null")
            key, seconds = form.get("key"), form.get("seconds_valid")
            if not (key is None or isinstance(key, str)) or not (seconds is None or _is_u64(seconds)):
                raise ValueError
        except (ValueError, AttributeError):
            return self.send(422, b"Failed to deserialize the JSON body into the target type", TEXT)
        if key is not None and (len(key) != KEY_LENGTH or not key.isascii() or not key.isalnum()):
            why = (
                "Invalid key length. Key must be have 32 chars"
                if len(key) != KEY_LENGTH
                else ("Invalid chars for key. Key can only alphanumeric chars (0-9, a-z, A-Z)")
            )
            return self.send(400, f'Invalid URL: invalid auth key: string "{key}", {why}'.encode(), TEXT)
        return self.key_reply(key, seconds)

    def generate_key(self, _query: dict, _body: bytes, seconds: str) -> None:
        if not seconds.isdigit() or int(seconds) >= 2**64:
            return self.send(400, f"Invalid URL: Cannot parse `{seconds}` to a `u64`".encode(), TEXT)
        return self.key_reply(None, int(seconds))

    def key_reply(self, key: str | None, seconds: int | None) -> None:
        try:
            created = self.app.tracker.key_add(key, seconds)
        except Exception as exc:  # the key exists (UNIQUE) or the database failed
            return self.send(500, rejection(f"failed to generate key: {exc}"), TEXT)
        return self.send(200, json.dumps(created, separators=(",", ":")).encode(), "application/json; charset=utf-8")

    def delete_key(self, _query: dict, _body: bytes, key: str) -> None:
        if len(key) != KEY_LENGTH or not key.isascii() or not key.isalnum():
            return self.send(400, f'Invalid auth key id param "{key}"'.encode(), TEXT)
        deleted = self.app.tracker.key_remove(key)
        if deleted != 1 and self.app.settings.db_driver == "sqlite3":
            loc = self.app.settings.profile.loc_delete_failed
            reason = located(f"Failed to remove record from Sqlite3 database, error-code: {deleted}", loc)
            return self.send(500, rejection(f"failed to delete key: {reason}"), TEXT)
        return self.send_json(200, {"status": "ok"})

    def reload_keys(self, _query: dict, _body: bytes) -> None:
        self.app.tracker.keys_reload()
        return self.send_json(200, {"status": "ok"})

    # --- whitelist ------------------------------------------------------------------

    def whitelist(self, _query: dict, _body: bytes, info_hash: str, add: bool = True) -> None:
        if len(info_hash) != 40 or any(c not in "0123456789abcdefABCDEF" for c in info_hash):
            msg = f'Invalid URL: invalid infohash param: string "{info_hash}", expected a 40 character long string'
            return self.send(400, msg.encode(), TEXT)
        tracker = self.app.tracker
        (tracker.whitelist_add if add else tracker.whitelist_remove)(info_hash.lower())
        return self.send_json(200, {"status": "ok"})

    def unwhitelist(self, query: dict, body: bytes, info_hash: str) -> None:
        return self.whitelist(query, body, info_hash, add=False)

    def reload_whitelist(self, _query: dict, _body: bytes) -> None:
        self.app.tracker.whitelist_reload()
        return self.send_json(200, {"status": "ok"})


def _is_u64(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**64


def api_routes(profile: Profile) -> list[tuple[Any, str, Callable]]:
    """(path pattern, method, handler) of the release's REST API (v1/context/*/routes.rs)."""
    routes = [
        (r"/api/v1/stats", "GET", ApiHandler.stats),
        (r"/api/v1/key/([^/]+)", "POST", ApiHandler.generate_key),
        (r"/api/v1/key/([^/]+)", "DELETE", ApiHandler.delete_key),
        (r"/api/v1/keys/reload", "GET", ApiHandler.reload_keys),
        (r"/api/v1/keys", "POST", ApiHandler.add_key),
        (r"/api/v1/whitelist/reload", "GET", ApiHandler.reload_whitelist),
        (r"/api/v1/whitelist/([^/]+)", "POST", ApiHandler.whitelist),
        (r"/api/v1/whitelist/([^/]+)", "DELETE", ApiHandler.unwhitelist),
    ]
    if profile.metrics_route:
        routes.append((r"/api/v1/metrics", "GET", ApiHandler.metrics))
    return [(re.compile(p), m, fn) for p, m, fn in routes]


class HealthHandler(BaseHandler):
    def do_GET(self) -> None:
        if urllib.parse.urlsplit(self.path).path != "/health_check":
            return self.not_found()
        details = self.app.health_details()
        ok = all("Ok" in d["result"] for d in details)
        self.send_json(200, {"status": "Ok" if ok else "Error", "message": "", "details": details})


# ------------------------------------------------------------------------ application


class App:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.stop_event = threading.Event()
        self.exit_code = 0
        self.http_servers: list[tuple[str, Bind, DualStackHTTPServer]] = []
        self.udp_sockets: list[tuple[Bind, socket.socket, threading.Thread]] = []
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=32, thread_name_prefix="udp")
        self.ot = OpenTracker()
        self.db: Database | None = None
        self.tracker: Tracker | None = None

    # --- start ---------------------------------------------------------------------

    def start(self) -> None:
        s = self.settings
        log(
            "info",
            f"TEST STAND-IN for torrust/tracker {s.profile.name} built on Debian's opentracker; "
            "not the Torrust tracker",
        )
        overrides = f" (+ {len(s.overrides)} override variable(s))" if s.overrides else ""
        log("info", f"configuration: {s.source}{overrides}")
        self.db = Database(s.db_driver, s.db_path, s.profile.tables)
        log("info", f"database: {self.db.description}")
        self.ot.start()
        log("info", f"opentracker started (pid {self.ot.proc.pid}, 127.0.0.1:{self.ot.port} tcp+udp, whitelist mode)")
        self.tracker = Tracker(s, self.db, self.ot)
        BaseHandler.app = self

        for bind in s.udp:
            if s.private:  # src/app.rs: no UDP tracker in private mode
                log(
                    "warn",
                    f"Could not start UDP tracker on: {bind.text} while in private mode. "
                    "UDP is not safe for private trackers!",
                )
                continue
            sock = socket.socket(bind.family, socket.SOCK_DGRAM)
            if bind.family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            self._bind(sock, bind, "udp tracker")
            thread = threading.Thread(target=self._udp_loop, args=(sock,), daemon=True, name=f"udp {bind.text}")
            self.udp_sockets.append((bind, sock, thread))
        for bind, tls in s.http:
            self._http_server("http tracker", bind, TrackerHandler, tls)
        assert s.api is not None and s.health is not None
        self._http_server("api", s.api, ApiHandler, s.api_tls)
        self._http_server("health check api", s.health, HealthHandler, None)

        for bind, _sock, thread in self.udp_sockets:
            thread.start()
            log("info", f"listening: udp {bind.text} (BEP 15 udp tracker)")
        for kind, bind, server in self.http_servers:
            threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True).start()
            scheme = "https" if server.tls else "http"
            log("info", f"listening: {kind} {scheme}://{bind.text}")
        flags = {
            "on_reverse_proxy": s.on_reverse_proxy,
            "listed": s.listed,
            "private": s.private,
            "persistent_torrent_completed_stat": s.persistent_completed,
        }
        log(
            "info",
            f"announce interval {s.interval}s (min {s.interval_min}s), "
            + ", ".join(f"{k}={str(v).lower()}" for k, v in flags.items()),
        )
        threading.Thread(target=self._watch_opentracker, daemon=True).start()

    def _bind(self, sock: socket.socket, bind: Bind, what: str) -> None:
        try:
            sock.bind((bind.host, bind.port))
        except OSError as exc:
            raise ConfigError(f"cannot bind the {what} to {bind.text}: {exc.strerror or exc}") from None

    def _http_server(self, kind: str, bind: Bind, handler, tls: dict | None) -> None:
        try:
            server = DualStackHTTPServer(bind, handler, tls)
        except OSError as exc:
            raise ConfigError(f"cannot bind the {kind} to {bind.text}: {exc.strerror or exc}") from None
        except ssl.SSLError as exc:
            raise ConfigError(f"cannot load the TLS certificate/key of the {kind} {bind.text}: {exc}") from None
        self.http_servers.append((kind, bind, server))

    def _udp_loop(self, sock: socket.socket) -> None:
        assert self.tracker is not None
        while not self.stop_event.is_set():
            try:
                data, addr = sock.recvfrom(65536)
            except OSError:
                return
            self.pool.submit(self._udp_one, sock, data, addr)

    def _udp_one(self, sock: socket.socket, data: bytes, addr: tuple) -> None:
        try:
            ip = canonical_ip(addr[0])
            tracker = self.tracker
            tracker.count_udp(ip, "requests")
            if len(data) >= 12:
                kind = {0: "connect", 1: "announce", 2: "scrape"}.get(struct.unpack(">I", data[8:12])[0])
                bind = next((b for b, s, _ in self.udp_sockets if s is sock), None)
                if kind:
                    tracker.count_binding("udp", bind, kind)
            reply = tracker.udp_request(data, ip)
            if reply:
                sock.sendto(reply, addr)
                tracker.count_udp(ip, "errors_handled" if reply[:4] == b"\0\0\0\3" else "responses")
        except Exception as exc:
            log("error", f"udp request from {addr[0]}: {exc}")

    def _watch_opentracker(self) -> None:
        assert self.ot.proc is not None
        code = self.ot.proc.wait()
        if not self.ot.stopping:
            log("error", f"opentracker exited unexpectedly (code {code}); stopping")
            self.exit_code = 1
            self.stop_event.set()

    # --- health --------------------------------------------------------------------

    def health_details(self) -> list[dict]:
        details = []
        for bind, _sock, thread in self.udp_sockets:
            info = f"checking the udp tracker health check at: {bind.text}"
            ok = thread.is_alive() and self.ot.alive()
            if ok:
                probe = struct.pack(">QII", UDP_PROTOCOL_ID, 0, 0x5EA1)
                reply = self.ot.udp_request(probe, "127.0.0.1", timeout=1)
                ok = bool(reply and reply[:4] == b"\0\0\0\0")
            details.append(
                {
                    "binding": bind.text,
                    "info": info,
                    "result": {"Ok": "Connected"} if ok else {"Err": "udp tracker not responding"},
                }
            )
        for kind, bind, server in self.http_servers:
            if kind == "health check api":
                continue
            path = "/api/health_check" if kind == "api" else "/health_check"
            scheme = "https" if server.tls else "http"
            host = bind.probe_host if ":" not in bind.probe_host else f"[{bind.probe_host}]"
            url = f"{scheme}://{host}:{bind.port}{path}"
            label = "api" if kind == "api" else "http tracker"
            details.append(
                {
                    "binding": bind.text,
                    "info": f"checking {label} health check at: {url}",
                    "result": self._http_probe(scheme, bind, path),
                }
            )
        return details

    @staticmethod
    def _http_probe(scheme: str, bind: Bind, path: str) -> dict:
        try:
            if scheme == "https":
                conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                    bind.probe_host, bind.port, timeout=1, context=ssl._create_unverified_context()
                )
            else:
                conn = http.client.HTTPConnection(bind.probe_host, bind.port, timeout=1)
            try:
                conn.request("GET", path)
                resp = conn.getresponse()
                resp.read()
            finally:
                conn.close()
        except OSError as exc:
            return {"Err": str(exc)}
        status = f"{resp.status} {resp.reason}"
        return {"Ok": status} if resp.status == 200 else {"Err": status}

    # --- stop ----------------------------------------------------------------------

    def stop(self) -> None:
        for _, _, server in self.http_servers:
            threading.Thread(target=server.shutdown, daemon=True).start()
        for _, sock, _ in self.udp_sockets:
            sock.close()
        self.ot.stop()
        if self.db:
            self.db.close()


def main() -> int:
    global _log_threshold
    profile = _profile()
    try:
        settings = load_settings(dict(os.environ), profile)
    except LoaderPanic as exc:
        fatal(str(exc), 101)  # what a Rust panic exits with
    except ConfigError as exc:
        fatal(str(exc))
    _log_threshold = LEVELS[settings.threshold]

    app = App(settings)

    def on_signal(signum: int, _frame: Any) -> None:
        log("info", f"{signal.Signals(signum).name} received; stopping")
        app.stop_event.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        app.start()
    except ConfigError as exc:
        app.ot.stop()
        fatal(str(exc))
    except RuntimeError as exc:
        app.ot.stop()
        fatal(str(exc))
    while not app.stop_event.wait(0.5):
        pass
    app.stop()
    log("info", "stopped")
    sys.stdout.flush()
    os._exit(app.exit_code)


if __name__ == "__main__":
    sys.exit(main())
