"""The watch as a program of its own: what a vantage host runs (bundled as a zip
application by `remote.bundle()`), and what `python -m tasks.watch.runner` runs here.

    torrust-watch.pyz --config watch.json [--log FILE] once
    torrust-watch.pyz --config watch.json [--log FILE] loop [--for 24h]
    torrust-watch.pyz --config watch.json check          settings valid, probes listed (JSON)
    torrust-watch.pyz --config watch.json export --out F a consistent copy of the store
    torrust-watch.pyz --config watch.json uptime [--window 24h]

The settings file (mode 0600: it holds the webhook URL and SMTP password) is written by
`remote.install`: {"format": 1, "env": ..., "watch": {WatchConfig fields}, "target":
{TargetSpec}}. Exit codes: 0, 2 (settings), 40 (a probe failed in `once`), 41-43 (store),
1 for a bug. Standard library plus prometheus_client.
"""

from __future__ import annotations

import argparse
import json
import logging
import logging.handlers
import os
import sys
import threading
import time
from dataclasses import fields
from pathlib import Path

from tasks.config.secrets import Secret
from tasks.errors import ConfigError, ExitCode, ToolError
from tasks.watch import config as wc
from tasks.watch.loop import Watch, install_stop_signals
from tasks.watch.metrics import WatchMetrics
from tasks.watch.store import Store
from tasks.watch.targets import TargetSpec, round_probes
from tasks.watch.uptime import summarize

FORMAT = 1
SECRET_FIELDS = {f.name for f in fields(wc.WatchConfig) if f.name in ("webhook_url", "smtp_password")}


def settings_document(cfg: wc.WatchConfig, spec: TargetSpec, env: str) -> dict:
    """The settings file's content, secrets revealed: write it with mode 0600 only."""
    watch = {}
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        if isinstance(value, Secret):
            value = value.reveal()
        elif isinstance(value, Path):
            value = str(value)
        elif isinstance(value, tuple):
            value = list(value)
        watch[f.name] = value
    return {"format": FORMAT, "env": env, "watch": watch, "target": spec.as_dict()}


def load_settings(path: Path) -> tuple[wc.WatchConfig, TargetSpec, str]:
    try:
        doc = json.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"watch settings {path}: cannot be read ({exc.strerror})") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"watch settings {path}: not JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ConfigError(
            f"watch settings {path}: format {doc.get('format') if isinstance(doc, dict) else '?'}, "
            f"this runner reads {FORMAT}",
            hint="install the watch again from the same tool version",
        )
    known = {f.name for f in fields(wc.WatchConfig)}
    raw = doc.get("watch", {})
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"watch settings {path}: unknown keys {', '.join(unknown)}")
    if "store_path" not in raw:
        raise ConfigError(f"watch settings {path}: no store_path", hint="install the watch again")
    values = {}
    for k, v in raw.items():
        if k in SECRET_FIELDS:
            v = Secret(v)
        elif k == "store_path":
            v = Path(v)
        elif k == "smtp_to":
            v = tuple(v)
        values[k] = v
    cfg = wc.WatchConfig(**values)
    env = str(doc.get("env", "local"))
    wc.validate(cfg, env)
    try:
        spec = TargetSpec.from_dict(doc["target"])
    except (KeyError, TypeError) as exc:
        raise ConfigError(f"watch settings {path}: bad target description ({exc})") from None
    return cfg, spec, env


def _logging(path: str | None, verbose: bool) -> None:
    handler: logging.Handler
    if path:
        handler = logging.handlers.RotatingFileHandler(path, maxBytes=1 << 20, backupCount=3)
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%dT%H:%M:%S%z"))
    root = logging.getLogger("torrust.watch")
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO if verbose or path else logging.WARNING)


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="torrust-watch", description="Watch a Torrust tracker from this host.")
    ap.add_argument("--config", required=True, help="the settings file written by the install (0600)")
    ap.add_argument("--log", help="log to this file (rotated at 1 MB, 3 kept) instead of stderr")
    ap.add_argument("-v", "--verbose", action="store_true")
    sub = ap.add_subparsers(dest="command", required=True)
    sub.add_parser("once", help="one round; exit 40 when a probe failed")
    loop = sub.add_parser("loop", help="rounds until SIGINT/SIGTERM")
    loop.add_argument("--for", dest="duration", help="stop after this long (90s, 10m, 24h)")
    sub.add_parser("check", help="validate the settings and list this round's probes")
    export = sub.add_parser("export", help="a consistent copy of the store")
    export.add_argument("--out", required=True)
    up = sub.add_parser("uptime", help="uptime and incidents (JSON)")
    up.add_argument("--window", default="24h")
    return ap


def run(args: argparse.Namespace) -> int:
    cfg, spec, env = load_settings(Path(args.config))

    def probes():
        return round_probes(spec, cfg.probe_timeout, cfg.probe_attempts)

    if args.command == "check":
        listed = [f"{w.kind} {w.target} IPv{w.family} via {w.address}" for w in probes()]
        print(json.dumps({"ok": True, "env": env, "vantage": cfg.vantage, "probes": listed, "config": cfg.redacted()}))
        return 0
    if args.command == "export":
        with Store.open(cfg.store_path) as st:
            st.export_to(args.out)
        os.chmod(args.out, 0o600)
        print(json.dumps({"ok": True, "out": args.out}))
        return 0
    if args.command == "uptime":
        stores = [Store.open(cfg.store_path, readonly=True)]
        print(json.dumps(summarize(stores, args.window, int(time.time() * 1000)).as_dict()))
        return 0
    metrics = WatchMetrics() if cfg.metrics_port else None
    if metrics:
        metrics.serve(cfg.metrics_port, cfg.metrics_bind)
    watch = Watch(cfg, probes, env, metrics=metrics)
    try:
        if args.command == "once":
            result = watch.once()
            print(json.dumps({"ok": not result.failed, "t": result.t, "failed": [o.key.label for o in result.failed]}))
            return int(ExitCode.HEALTH_FAILED) if result.failed else 0
        stop = threading.Event()
        restore = install_stop_signals(stop)
        try:
            duration = wc.parse_duration(args.duration) if args.duration else None
            rounds = watch.run(stop, duration)
        finally:
            restore()
        print(json.dumps({"ok": True, "rounds": rounds}))
        return 0
    finally:
        watch.close()
        if metrics:
            metrics.close()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _logging(args.log, args.verbose)
    try:
        return run(args)
    except ToolError as exc:
        logging.getLogger("torrust.watch").error("%s", exc.message)
        print(exc.render(), file=sys.stderr)
        return int(exc.code)


if __name__ == "__main__":
    raise SystemExit(main())
