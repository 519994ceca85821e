"""Watching every host of a fleet (`health.watch --fleet NAME`): one watch per environment,
each with its own store, alerts and metrics, the same as `health.watch --env NAME` on each
(tasks/watch/service.py), run at once: one round on all of them through the fleet's
rollout (a table, exit 0/70/71), or loops in one thread each until one shared stop."""

from __future__ import annotations

import threading

from tasks.errors import ToolError
from tasks.fleet import rollout, views
from tasks.fleet.declaration import Fleet
from tasks.watch.config import WatchConfig
from tasks.watch.loop import install_stop_signals
from tasks.watch.service import watch


def once(fleet: Fleet, plans: dict[str, tuple[WatchConfig, str]]) -> rollout.Rollout:
    """One round on every host of a fleet at once, each recorded in its environment's own
    store; `plans`: {env: (its watch config, its extra CA)}."""

    def work(m, step) -> dict:
        cfg, ca = plans[m.env]
        doc = watch(m.settings, cfg, once=True, extra_ca_pem=ca)
        return {**doc, "status": "healthy" if doc["ok"] else "failing", "code": 40}

    return rollout.run(fleet.name, fleet.members, work, views.everyone(fleet), rollout.Progress(fleet.names, None))


def loop(fleet: Fleet, plans: dict[str, tuple[WatchConfig, str]], duration: str = "") -> dict[str, dict]:
    """Every host of a fleet watched at once, one thread each, each with its own store,
    alerts and metrics, until SIGINT/SIGTERM (one stop for all) or `duration`. A host whose
    watch fails does not stop the others; {env: its result, or its error}."""
    stop = threading.Event()
    results: dict[str, dict] = {}

    def one(m) -> None:
        cfg, ca = plans[m.env]
        try:
            results[m.env] = watch(m.settings, cfg, once=False, duration=duration, extra_ca_pem=ca, stop=stop)
        except ToolError as exc:
            results[m.env] = {"ok": False, "code": int(exc.code), "error": exc.message}

    threads = [threading.Thread(target=one, args=(m,), name=f"watch-{m.env}") for m in fleet.members]
    restore = install_stop_signals(stop)
    try:
        for t in threads:
            t.start()
        for t in threads:
            while t.is_alive():
                t.join(0.2)  # the main thread stays free for SIGINT/SIGTERM
    finally:
        restore()
    return {m.env: results.get(m.env, {"ok": False, "error": "no result"}) for m in fleet.members}
