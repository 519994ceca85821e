"""What the watch tasks do, below the CLI: settings -> WatchConfig, one round or a loop,
uptime and the status page from one or several stores, the watch installed on another
host and its store read back.

The engine (config, store, alerts, loop, report, remote) is standard-library code that
also runs on a vantage host from the zip bundle; this module is the tool's side and may
use the settings layer and SSH.
"""

from __future__ import annotations

import logging
import socket
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

from tasks.config.settings import Settings
from tasks.watch import remote, targets
from tasks.watch.config import WatchConfig, default_vantage, parse_duration, validate
from tasks.watch.loop import RoundResult, Watch, install_stop_signals
from tasks.watch.metrics import WatchMetrics
from tasks.watch.store import Store
from tasks.watch.uptime import Summary, summarize

# WatchConfig field -> the variable an operator sets (problems name what they set).
NAMES = {
    "interval": "TORRUST_WATCH_INTERVAL",
    "jitter": "TORRUST_WATCH_JITTER",
    "down_after": "TORRUST_WATCH_DOWN_AFTER",
    "cert_days": "TORRUST_WATCH_CERT_DAYS",
    "silent_after": "TORRUST_WATCH_SILENT_AFTER",
    "retention_raw_days": "TORRUST_WATCH_RETENTION_RAW_DAYS",
    "retention_hourly_days": "TORRUST_WATCH_RETENTION_HOURLY_DAYS",
    "webhook_url": "TORRUST_WATCH_WEBHOOK_URL",
    "smtp_host": "TORRUST_WATCH_SMTP_HOST",
    "smtp_port": "TORRUST_WATCH_SMTP_PORT",
    "smtp_user": "TORRUST_WATCH_SMTP_USER",
    "smtp_password": "TORRUST_WATCH_SMTP_PASSWORD",
    "smtp_from": "TORRUST_WATCH_SMTP_FROM",
    "smtp_to": "TORRUST_WATCH_SMTP_TO",
    "smtp_starttls": "TORRUST_WATCH_SMTP_STARTTLS",
    "smtp_cafile": "TORRUST_WATCH_SMTP_CAFILE",
    "vantage": "TORRUST_WATCH_VANTAGE",
    "store_path": "TORRUST_WATCH_STORE",
    "metrics_port": "TORRUST_WATCH_METRICS_PORT",
    "metrics_bind": "TORRUST_WATCH_METRICS_BIND",
    "probe_timeout": "TORRUST_PROBE_TIMEOUT",
    "probe_attempts": "TORRUST_PROBE_ATTEMPTS",
}


def watch_config(s: Settings, **flags) -> WatchConfig:
    """The watch's configuration from the settings, flags (None: not given) on top; every
    problem named by the variable or flag the operator set (SettingsError, exit 2)."""
    w = s.watch
    cfg = WatchConfig(
        store_path=Path(w.store),
        vantage=w.vantage or default_vantage(socket.gethostname()),
        interval=w.interval,
        jitter=w.jitter,
        probe_timeout=s.probe_timeout,
        probe_attempts=s.probe_attempts,
        down_after=w.down_after,
        cert_days=w.cert_days,
        silent_after=w.silent_after,
        retention_raw_days=w.retention_raw_days,
        retention_hourly_days=w.retention_hourly_days,
        webhook_url=w.webhook_url,
        smtp_host=w.smtp_host,
        smtp_port=w.smtp_port,
        smtp_user=w.smtp_user,
        smtp_password=w.smtp_password,
        smtp_from=w.smtp_from,
        smtp_to=tuple(a.strip() for a in w.smtp_to.split(",") if a.strip()),
        smtp_starttls=w.smtp_starttls,
        smtp_cafile=str(w.smtp_cafile or ""),
        metrics_port=w.metrics_port,
        metrics_bind=w.metrics_bind,
    )
    given = {k: v for k, v in flags.items() if v is not None}
    if "interval" in given and s.origins["TORRUST_WATCH_JITTER"].kind == "default":  # a shorter --interval
        given.setdefault("jitter", min(cfg.jitter, given["interval"] / 2))
    names = {**NAMES, **{k: f"--{k.replace('_', '-')}" for k in given}}
    return validate(replace(cfg, **given), s.env, names)


def _log_to_stderr() -> None:
    log = logging.getLogger("torrust.watch")
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%dT%H:%M:%S"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)


def watch(
    s: Settings,
    cfg: WatchConfig,
    *,
    once: bool,
    duration: str = "",
    extra_ca_pem: str = "",
    stop: threading.Event | None = None,
) -> dict:
    """One round (`once`) or rounds until SIGINT/SIGTERM or `duration` ("1h", "30m").
    `stop`: an event set by the caller instead (a fleet's watches share one)."""
    seconds = parse_duration(duration) if duration else None
    spec = targets.spec_from_settings(s, extra_ca_pem)
    metrics = WatchMetrics() if cfg.metrics_port else None
    _log_to_stderr()
    w = Watch(cfg, lambda: targets.round_probes(spec, cfg.probe_timeout, cfg.probe_attempts), s.env, metrics=metrics)
    try:
        if metrics is not None:
            metrics.serve(cfg.metrics_port, cfg.metrics_bind)
        if once:
            return round_document(w.once(), cfg)
        own = stop is None  # then Ctrl-C and SIGTERM stop this watch
        stop = threading.Event() if own else stop
        restore = install_stop_signals(stop) if own else (lambda: None)
        try:
            rounds = w.run(stop, seconds)
        finally:
            restore()
        return {"ok": True, "rounds": rounds, "store": str(cfg.store_path), "vantage": cfg.vantage}
    finally:
        w.close()
        if metrics is not None:
            metrics.close()


def round_document(r: RoundResult, cfg: WatchConfig) -> dict:
    return {
        "ok": not r.failed,
        "vantage": cfg.vantage,
        "store": str(cfg.store_path),
        "probes": len(r.observations),
        "failed": [f"{o.key.label}: {o.detail}" for o in r.failed],
        "alerts": r.alerts,
        "recorded": r.recorded,
    }


# ------------------------------------------------------------------ reading the history
def stores_for(s: Settings, cfg: WatchConfig, files: list[str], remote_env: str = "") -> list[Path]:
    """The stores to read: the given files, or the environment's own (and a vantage's
    store fetched over SSH first with `remote_env`)."""
    paths = [Path(f) for f in files]
    if remote_env:
        paths.append(fetch_from(s, remote_env))
    if not files and cfg.store_path.exists():
        paths.insert(0, cfg.store_path)
    return paths


def uptime(paths: list[Path], window: str) -> Summary:
    stores = [Store.open(p, readonly=True) for p in paths]
    try:
        return summarize(stores, window, int(time.time() * 1000))
    finally:
        for st in stores:
            st.close()


def report(s: Settings, cfg: WatchConfig, paths: list[Path], out: Path) -> dict:
    from tasks.watch.report import ReportInput, render

    stores = [Store.open(p, readonly=True) for p in paths]
    try:
        html = render(ReportInput(s.env, stores, int(time.time() * 1000), cfg.silent_after))
    finally:
        for st in stores:
            st.close()
    out.write_text(html, encoding="utf-8")
    out.chmod(0o644)
    return {"ok": True, "path": str(out), "bytes": len(html.encode()), "stores": [str(p) for p in paths]}


# ------------------------------------------------------------------ on another host
def _vantage_settings(name: str, root: Path) -> Settings:
    from tasks.config.settings import load

    return load(name, root=root)


def install_on(s: Settings, cfg: WatchConfig, on_env: str, *, directory: str = "", extra_ca_pem: str = "") -> dict:
    """Install the watch of environment `s` as a cron job on the host of environment `on_env`."""
    from tasks.runner.target import open_target

    host = _vantage_settings(on_env, s.root)
    cfg = replace(cfg, vantage=s.watch.vantage or on_env)
    with open_target(host) as ex:
        where = directory or remote.default_directory(ex, s.env)
        return remote.install(ex, cfg, targets.spec_from_settings(s, extra_ca_pem), s.env, where).as_dict()


def uninstall_from(s: Settings, on_env: str, *, directory: str = "", purge: bool = False) -> dict:
    from tasks.runner.target import open_target

    with open_target(_vantage_settings(on_env, s.root)) as ex:
        where = directory or remote.default_directory(ex, s.env)
        remote.uninstall(ex, s.env, where, purge)
    return {"ok": True, "removed": where, "purged": purge}


def fetch_from(s: Settings, on_env: str, directory: str = "") -> Path:
    """A consistent copy of the store the watch keeps on `on_env`'s host, beside ours."""
    from tasks.runner.target import open_target

    dest = s.root / ".torrust" / s.env / f"watch-{on_env}.sqlite"
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open_target(_vantage_settings(on_env, s.root)) as ex:
        return remote.fetch_store(ex, directory or remote.default_directory(ex, s.env), dest)


def import_into(s: Settings, cfg: WatchConfig, *, on_env: str = "", file: str = "") -> dict:
    """Merge another vantage's store (fetched from `on_env`, or a file) into ours."""
    with tempfile.TemporaryDirectory(prefix="torrust-watch-") as tmp:
        source = Path(file) if file else fetch_from(s, on_env, "")
        if not file:  # keep our copy of the fetched store out of the way of a later fetch
            source = source.rename(Path(tmp) / source.name)
        store = Store.open(cfg.store_path, create=True)
        try:
            counts = store.import_from(source, int(time.time() * 1000), cfg.retention_raw_days)
        finally:
            store.close()
    return {"ok": True, "into": str(cfg.store_path), **counts}
