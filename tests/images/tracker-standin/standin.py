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


# ---------------------------------------------------------------------- configuration


class ConfigError(Exception):
    pass


TOKENS = "tokens"  # a table of label = token strings
TLS = {"ssl_cert_path": str, "ssl_key_path": str}

# Schema 2.0.0 of the Torrust tracker configuration: nothing else is accepted.
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

TYPE_NAMES = {str: "a string", bool: "a boolean", int: "an integer"}


def _validate(value: Any, schema: Any, path: str, errors: list[str]) -> None:
    if isinstance(schema, dict):
        if not isinstance(value, dict):
            errors.append(f"'{path}' must be a table")
            return
        for key, sub in value.items():
            sub_path = f"{path}.{key}" if path else key
            if key not in schema:
                errors.append(f"unknown key '{sub_path}' (not in configuration schema {SCHEMA_VERSION})")
                continue
            _validate(sub, schema[key], sub_path, errors)
    elif isinstance(schema, list):
        if not isinstance(value, list):
            errors.append(f"'{path}' must be an array of tables ([[{path}]])")
            return
        for i, item in enumerate(value):
            _validate(item, schema[0], f"{path}[{i}]", errors)
    elif schema is TOKENS:
        if not isinstance(value, dict):
            errors.append(f"'{path}' must be a table of label = \"token\"")
            return
        for label, token in value.items():
            if not isinstance(token, str):
                errors.append(f"'{path}.{label}' must be a string")
    else:
        ok = isinstance(value, schema) and not (schema is int and isinstance(value, bool))
        if not ok:
            errors.append(f"'{path}' must be {TYPE_NAMES[schema]}, got {type(value).__name__}")


def _apply_overrides(config: dict, environ: dict[str, str]) -> list[str]:
    """Apply TORRUST_TRACKER_CONFIG_OVERRIDE_<SECTION>__<KEY> variables; return their names."""
    applied = []
    for name in sorted(environ):
        if not name.startswith(OVERRIDE_PREFIX):
            continue
        raw = environ[name]
        parts = [p.lower() for p in name[len(OVERRIDE_PREFIX) :].split("__")]
        dotted = ".".join(parts)
        if not all(parts):
            raise ConfigError(f"malformed override variable {name}")
        schema: Any = SCHEMA
        node = config
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if schema is TOKENS:
                if not last:
                    raise ConfigError(f"unknown key '{dotted}' (from {name})")
                node[part] = raw
                break
            if not isinstance(schema, dict) or part not in schema:
                raise ConfigError(f"unknown key '{dotted}' (from {name}; not in configuration schema {SCHEMA_VERSION})")
            schema = schema[part]
            if isinstance(schema, list):
                raise ConfigError(f"'{dotted}' is an array of tables and cannot be set by {name}")
            if last:
                if isinstance(schema, dict) or schema is TOKENS:
                    raise ConfigError(f"'{dotted}' is a table and cannot be set by {name}")
                if schema is bool:
                    if raw.lower() not in ("true", "false"):
                        raise ConfigError(f"{name} must be true or false")
                    node[part] = raw.lower() == "true"
                elif schema is int:
                    try:
                        node[part] = int(raw)
                    except ValueError:
                        raise ConfigError(f"{name} must be an integer") from None
                else:
                    node[part] = raw
            else:
                child = node.setdefault(part, {})
                if not isinstance(child, dict):
                    raise ConfigError(f"'{'.'.join(parts[: i + 1])}' is not a table")
                node = child
        applied.append(name)
    return applied


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
    threshold: str = "info"
    listed: bool = False
    private: bool = False
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


def load_settings(environ: dict[str, str]) -> Settings:
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
        raise ConfigError(f"cannot parse configuration {source}: {exc}") from None

    overrides = _apply_overrides(config, environ)
    errors: list[str] = []
    _validate(config, SCHEMA, "", errors)
    if errors:
        raise ConfigError(f"invalid configuration {source}: " + "; ".join(errors))

    version = config.get("metadata", {}).get("schema_version")
    if version != SCHEMA_VERSION:
        raise ConfigError(
            f'unsupported configuration: [metadata] schema_version is {version!r}, expected "{SCHEMA_VERSION}"'
        )

    s = Settings(source=source, overrides=overrides)
    s.threshold = config.get("logging", {}).get("threshold", "info")
    if s.threshold not in LEVELS:
        raise ConfigError(f"logging.threshold must be one of {', '.join(LEVELS)}, got {s.threshold!r}")
    core = config.get("core", {})
    s.listed = core.get("listed", False)
    s.private = core.get("private", False)
    if s.private:
        raise ConfigError("core.private = true (private mode with keys) is not emulated by this stand-in")
    s.usage_statistics = core.get("tracker_usage_statistics", True)
    ap = core.get("announce_policy", {})
    s.interval = ap.get("interval", 120)
    s.interval_min = ap.get("interval_min", 120)
    db = core.get("database", {})
    s.db_driver = db.get("driver", "sqlite3")
    if s.db_driver not in ("sqlite3", "mysql"):
        raise ConfigError(f"core.database.driver must be sqlite3 or mysql, got {s.db_driver!r}")
    s.db_path = db.get("path", s.db_path)
    net = core.get("net", {})
    s.external_ip = net.get("external_ip")
    if s.external_ip is not None:
        try:
            ipaddress.ip_address(s.external_ip)
        except ValueError:
            raise ConfigError(f"core.net.external_ip is not an IP address: {s.external_ip!r}") from None
    s.on_reverse_proxy = net.get("on_reverse_proxy", False)
    s.persistent_completed = core.get("tracker_policy", {}).get("persistent_torrent_completed_stat", False)

    s.udp = [
        parse_bind(t["bind_address"], "udp_trackers")
        for t in config.get("udp_trackers", [])
        if _require(t, "bind_address", "udp_trackers")
    ]
    s.http = [
        (parse_bind(t["bind_address"], "http_trackers"), _tls(t.get("tsl_config"), "http_trackers"))
        for t in config.get("http_trackers", [])
        if _require(t, "bind_address", "http_trackers")
    ]
    api = config.get("http_api")
    if api is not None:
        _require(api, "bind_address", "http_api")
        s.api = parse_bind(api["bind_address"], "http_api")
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


def _require(table: dict, key: str, what: str) -> bool:
    if key not in table:
        raise ConfigError(f"[{what}] entry without {key}")
    return True


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

    def __init__(self, driver: str, path: str):
        self.driver = driver
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
            for stmt in self.SQLITE_TABLES:
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
            for stmt in self.MYSQL_TABLES:
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

    def increment_completed(self, info_hash_hex: str) -> None:
        self._execute(self.upsert, (info_hash_hex,))

    def is_whitelisted(self, info_hash_hex: str) -> bool:
        return bool(self._execute(f"SELECT 1 FROM whitelist WHERE info_hash = {self.placeholder}", (info_hash_hex,)))

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
        self.counters = dict.fromkeys(COUNTER_NAMES, 0)
        self.counter_lock = threading.Lock()
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

    def check_listed(self, info_hash: bytes) -> str | None:
        if self.s.listed and not self.db.is_whitelisted(info_hash.hex()):
            return f"The torrent: {info_hash.hex()}, is not whitelisted"
        return None

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

    def http_announce(self, raw_query: str, ip: Any) -> bytes:
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
        if event != "stopped":
            denial = self.check_listed(info_hash)
            if denial:
                return failure(denial)
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

    def http_scrape(self, raw_query: str, ip: Any) -> bytes:
        hashes = parse_tracker_query(raw_query).get("info_hash", [])
        if not hashes or any(len(h) != 20 for h in hashes):
            return failure(
                "Bad request. Cannot parse query params for scrape request: invalid param value for info_hash"
            )
        query = "&".join("info_hash=" + urllib.parse.quote_from_bytes(h, safe="") for h in hashes)
        body = self.ot.http_get("/scrape?" + query, self.fake_for(self.peer_ip(ip)))
        self.count("tcp", ip, "scrapes")
        return body

    # --- UDP tracker ---------------------------------------------------------------

    def udp_request(self, data: bytes, ip: Any) -> bytes | None:
        if len(data) < 16:
            return None
        action = struct.unpack(">I", data[8:12])[0]
        tid = data[12:16]
        fake = self.fake_for(self.peer_ip(ip))

        def error(message: str) -> bytes:
            return struct.pack(">I", 3) + tid + message.encode() + b"\0"

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
            if event != "stopped":
                denial = self.check_listed(info_hash)
                if denial:
                    return error(denial)
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
        return {k: out[k] for k in STATS_ORDER}


# --------------------------------------------------------------------------- servers


class DualStackHTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, bind: Bind, handler, tls: dict | None = None):
        self.address_family = bind.family
        self.tls = tls
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
        self.send(status, json.dumps(value).encode(), "application/json")

    def not_found(self) -> None:
        self.send(404, b"Not Found", "text/plain; charset=utf-8")


class TrackerHandler(BaseHandler):
    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/health_check":
            return self.send_json(200, {"status": "Ok"})
        if url.path not in ("/announce", "/scrape"):
            return self.not_found()
        try:
            ip = self.resolve_ip()
        except ValueError:
            return self.send(200, failure(XFF_ERROR), "text/plain; charset=utf-8")
        tracker = self.app.tracker
        try:
            if url.path == "/announce":
                body = tracker.http_announce(url.query, ip)
            else:
                body = tracker.http_scrape(url.query, ip)
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


class ApiHandler(BaseHandler):
    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
        if url.path == "/api/health_check":
            return self.send_json(200, {"status": "Ok"})
        if not url.path.startswith("/api/v1/"):
            return self.not_found()
        token = query.get("token", [None])[0]
        if token is None:
            return self.send(500, b'Unhandled rejection: Err { reason: "unauthorized" }', "text/plain; charset=utf-8")
        if not any(hmac.compare_digest(token.encode(), t.encode()) for t in self.app.settings.tokens.values()):
            return self.send(
                500, b'Unhandled rejection: Err { reason: "token not valid" }', "text/plain; charset=utf-8"
            )
        if url.path in ("/api/v1/stats", "/api/v1/metrics"):
            try:
                stats = self.app.tracker.stats()
            except (OSError, ValueError) as exc:
                log("error", f"cannot read opentracker statistics: {exc}")
                return self.send(500, b"tracker stand-in: statistics unavailable", "text/plain; charset=utf-8")
            if query.get("format", [""])[0] == "prometheus":
                text = "".join(f"{k} {v}\n" for k, v in stats.items())
                return self.send(200, text.encode(), "text/plain; version=0.0.4; charset=utf-8")
            return self.send_json(200, stats)
        return self.not_found()


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
        log("info", "TEST STAND-IN for torrust/tracker built on Debian's opentracker; not the Torrust tracker")
        overrides = f" (+ {len(s.overrides)} override variable(s))" if s.overrides else ""
        log("info", f"configuration: {s.source}{overrides}")
        self.db = Database(s.db_driver, s.db_path)
        log("info", f"database: {self.db.description}")
        self.ot.start()
        log("info", f"opentracker started (pid {self.ot.proc.pid}, 127.0.0.1:{self.ot.port} tcp+udp, whitelist mode)")
        self.tracker = Tracker(s, self.db, self.ot)
        BaseHandler.app = self

        for bind in s.udp:
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
            reply = self.tracker.udp_request(data, ip)
            if reply:
                sock.sendto(reply, addr)
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
    try:
        settings = load_settings(dict(os.environ))
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
