"""`health` namespace: what the public reaches, and (with the probes) whether it works."""

from __future__ import annotations

from pathlib import Path

from invoke import task

from tasks.cli.boundary import operation
from tasks.cli.output import emit, table
from tasks.config import settings as settings_mod


def endpoints_of(s: settings_mod.Settings) -> list[dict]:
    scheme = "https" if s.tls else "http"
    port = s.https_port if s.tls else s.http_port
    suffix = "" if port == (443 if s.tls else 80) else f":{port}"
    rows = [
        {"service": "udp tracker", "url": f"udp://{s.domain}:{b.port}/announce", "reach": "public"}
        for b in s.udp_trackers
    ]
    rows += [
        {"service": "http tracker", "url": f"{scheme}://{d}{suffix}/announce", "reach": "public (proxy)"}
        for d in s.http_tracker_domains
    ]
    rows.append(
        {"service": "rest api", "url": f"{scheme}://{s.api_domain}{suffix}/api/health_check", "reach": "public (proxy)"}
    )
    if s.grafana:
        rows.append({"service": "grafana", "url": f"{scheme}://{s.grafana_domain}{suffix}/", "reach": "public (proxy)"})
    if s.prometheus:
        rows.append(
            {"service": "prometheus", "url": f"http://127.0.0.1:{s.prometheus_port}/", "reach": "host loopback"}
        )
    rows.append(
        {
            "service": "health-check api",
            "url": f"http://{s.health_check_api_bind}/health_check",
            "reach": "inside the tracker container",
        }
    )
    return rows


@task(
    help={
        "env": "environment name (default: local)",
        "fleet": "every environment of this fleet (fleets.toml): the announce URLs to list for clients",
        "json": "print one machine-readable JSON result on stdout",
    }
)
@operation
def endpoints(c, env="local", fleet="", json=False):
    """List the announce URLs and service endpoints the environment exposes."""
    if fleet:
        from tasks.cli import fleet as fleet_cli

        members = [(m.env, m.settings) for m in fleet_cli.load(fleet, env).members]
    else:
        members = [(env, settings_mod.load(env, root=Path.cwd()))]
    rows = [{"env": name, **e} for name, s in members for e in endpoints_of(s)]
    emit(
        {"ok": True, **({"fleet": fleet} if fleet else {"env": env}), "endpoints": rows},
        lambda r: table(
            [(*((e["env"],) if fleet else ()), e["service"], e["url"], e["reach"]) for e in rows],
            (*(("host",) if fleet else ()), "service", "url", "reach"),
        ),
        json,
    )


@task(
    help={
        "env": "environment name (default: local)",
        "family": "address families to probe: 4, 6 or both (default both: every family the target has)",
        "only": "only these probe groups, comma-separated: udp, http, api, tls, host, network",
        "skip": "skip these probe groups, comma-separated: udp, http, api, tls, host, network",
        "internal_ca": "trust the proxy's internal CA (fetched from the host) for .local/.test names",
        "fleet": "every host of this fleet (fleets.toml) in parallel, one table, instead of --env",
        "json": "print one machine-readable JSON result on stdout",
    }
)
@operation
def check(c, env="local", family="both", only="", skip="", internal_ca=False, fleet="", json=False):
    """Probe the deployed tracker from outside (UDP, HTTP, API, TLS) and on the host, in parallel."""
    from tasks.health import check as hc

    if fleet:
        from tasks.cli import fleet as fleet_cli

        fleet_cli.check(fleet, env, family, only, skip, internal_ca, json)
        return
    s = settings_mod.load(env, root=Path.cwd())
    result = hc.run_check(s, family=family, only=only, skip=skip, trust_internal_ca=internal_ca)
    emit(result.as_dict(), lambda d: check_table(result), json)
    error = result.error()
    if error:
        raise error


PROBE_HEADERS = ("", "probe", "target", "family", "latency", "detail")
VERDICT = {"skipped": "skip", "ok": "ok", "failed": "FAIL"}


def verdict(p: dict) -> str:
    """skip, warn (passed with a warning: the network group), ok or FAIL."""
    if p["status"] == "ok" and p["detail"].startswith("WARNING:"):
        return "warn"
    return VERDICT[p["status"]]


def probe_row(p: dict) -> tuple:
    """One probe's row (from its as_dict()), in health.check's table and the fleet's."""
    family = f"IPv{p['family']}" if p["family"] else "host"
    return (verdict(p), p["name"], p["target"], family, f"{p['latency'] * 1000:.0f} ms", p["detail"])


def check_table(result) -> str:
    """The probes as a table, then one summary line (passed, skipped, time, families)."""
    rows = [probe_row(x.as_dict()) for x in result.results]
    fams = ", ".join(f"IPv{f}" for f in result.families) or "none"
    n, skipped = len(result.results), len(result.skipped)
    passed = n - len(result.failed) - skipped
    return table(rows, PROBE_HEADERS) + (
        f"\n{passed}/{n} probes passed"
        + (f", {skipped} skipped" if skipped else "")
        + f" in {result.wall:.2f}s (families: {fams})"
    )


@task(
    help={
        "env": "environment name (default: local)",
        "rate": "offered announces per second (past 5,000 needs --yes)",
        "duration": "seconds of load (past 60 needs --yes)",
        "protocol": "udp (BEP 15 connect + announce, default) or http (announces through the proxy)",
        "family": "4 (default) or 6: the public address the load goes to",
        "workers": "processes sending (default 1; each sends rate/workers)",
        "yes": "go past the caps (5,000/s, 60 s)",
        "json": "print one machine-readable JSON result on stdout",
    }
)
@operation
def load(c, env="local", rate=1000, duration=10, protocol="udp", family="4", workers=1, yes=False, json=False):
    """Size a server BEFORE it goes public: a bounded announce load; loss, latency, conntrack, UDP errors."""
    from tasks.errors import HealthFailed
    from tasks.health import load as hl

    s = settings_mod.load(env, root=Path.cwd())
    params = hl.params_for(
        s,
        protocol=protocol,
        family=str(family),
        rate=int(rate),
        duration=float(duration),
        workers=int(workers),
        yes=yes,
    )
    report = hl.run_against(s, params)
    emit(report.as_dict(), lambda r: load_text(report), json)
    if report.replies == 0:
        raise HealthFailed(f"no announce of {report.sent} was answered by {report.target}")


def load_text(r) -> str:
    def ms(v):
        return "-" if v is None else f"{v:.1f} ms"

    def host(h):
        if h is None:
            return "?"
        fill = f"{h.fill:.1%}" if h.fill is not None else "?"
        return f"conntrack {h.conntrack_count}/{h.conntrack_max} ({fill}), UDP errors {h.udp_errors}"

    lines = [
        f"{r.protocol} load on {r.target}: offered {r.offered_rate}/s for {r.duration:g}s",
        f"  sent {r.sent} ({r.sent_rate:.0f}/s), answered {r.replies} ({r.achieved_rate:.0f}/s), "
        f"errors {r.errors}, lost {r.lost} ({r.loss_pct:.2f}%)",
        f"  latency p50 {ms(r.p50_ms)}, p99 {ms(r.p99_ms)}",
        f"  host before: {host(r.host_before)}",
        f"  host after:  {host(r.host_after)}",
    ]
    lines += [f"  error: {e}" for e in r.error_samples]
    if r.generator_limited:
        lines.append(
            "  generator-limited: this machine could not keep the schedule (add --workers or a bigger machine)"
        )
    return "\n".join(lines)


# ------------------------------------------------------------------------ the watch
WATCH_HELP = {"env": "environment name (default: local)", "json": "print one machine-readable JSON result on stdout"}
INTERNAL_CA_HELP = "trust the proxy's internal CA (fetched from the host) for .local/.test names"


def _watch_cfg(s, **flags):
    from tasks.watch.service import watch_config

    return watch_config(s, **flags)


def _internal_ca(s, internal_ca: bool) -> str:
    if not (internal_ca and s.tls):
        return ""
    from tasks.health import check as hc
    from tasks.runner.target import open_target

    with open_target(s) as ex:
        return hc.internal_ca(ex, s)


@task(
    help={
        **WATCH_HELP,
        "interval": "seconds between round starts (default TORRUST_WATCH_INTERVAL)",
        "once": "run one round and exit: 0, or 40 when a probe failed (for cron and CI schedules)",
        "for_": "stop after this long (e.g. 30m, 24h); default: until Ctrl-C or SIGTERM",
        "vantage": "name of this vantage in the store (default TORRUST_WATCH_VANTAGE or the host name)",
        "metrics_port": "serve Prometheus metrics of the watch on this port (default TORRUST_WATCH_METRICS_PORT)",
        "internal_ca": INTERNAL_CA_HELP,
        "fleet": "watch every host of this fleet (fleets.toml) at once, each in its own store, instead of --env",
    }
)
@operation
def watch(
    c,
    env="local",
    interval=0,
    once=False,
    for_="",
    vantage="",
    metrics_port=-1,
    internal_ca=False,
    fleet="",
    json=False,
):
    """Watch the tracker from outside on a schedule: every address and family, history, alerts, metrics."""
    from tasks.errors import ConfigError, HealthFailed
    from tasks.watch import service

    if fleet:
        from tasks.cli import fleet as fleet_cli

        if int(metrics_port) >= 0:
            raise ConfigError(
                "--metrics-port with --fleet: one port cannot serve several watches; "
                "set TORRUST_WATCH_METRICS_PORT in each .env.NAME"
            )

        def plan(s):
            cfg = _watch_cfg(s, interval=float(interval) or None, vantage=vantage or None)
            return cfg, _internal_ca(s, internal_ca)

        fleet_cli.watch(fleet, env, plan, once=once, duration=for_, as_json=json)
        return
    s = settings_mod.load(env, root=Path.cwd())
    cfg = _watch_cfg(
        s,
        interval=float(interval) or None,
        vantage=vantage or None,
        metrics_port=None if int(metrics_port) < 0 else int(metrics_port),
    )
    doc = service.watch(s, cfg, once=once, duration=for_, extra_ca_pem=_internal_ca(s, internal_ca))
    if once:
        emit(
            doc,
            lambda d: (
                f"{d['probes']} probes, {len(d['failed'])} failed" + "".join(f"\n  FAIL {f}" for f in d["failed"])
            ),
            json,
        )
        if doc["failed"]:
            raise HealthFailed(
                f"{len(doc['failed'])} of {doc['probes']} probes failed: " + "; ".join(doc["failed"][:5])
            )
    else:
        emit(doc, lambda d: f"{d['rounds']} rounds recorded in {d['store']}", json)


def _lines(tag: str, items: list[str]) -> str:
    return "".join(f"\n  {tag} {x}" for x in items)


def _stores_help(what: str) -> dict:
    return {
        "store": f"a store file to {what} (repeatable: several vantages' stores merge); default the environment's",
        "from_": "also fetch the store the watch keeps on this environment's host (health.watch-install --on)",
    }


@task(
    iterable=["store"],
    help={**WATCH_HELP, **_stores_help("read"), "window": "24h, 7d, 30d (any Nh or Nd; default 24h)"},
)
@operation
def uptime(c, env="local", window="24h", store=None, from_="", json=False):
    """Uptime %, latency p50/p95 per probe and family, and incidents, from the watch's history."""
    from tasks.watch import service

    s = settings_mod.load(env, root=Path.cwd())
    cfg = _watch_cfg(s)
    summary = service.uptime(service.stores_for(s, cfg, store or [], from_), window)
    emit(summary.as_dict(), lambda d: uptime_text(summary), json)


def uptime_text(summary) -> str:
    def pct(v):
        return "-" if v is None else f"{v:.3f} %"

    def ms(v):
        return "-" if v is None else f"{v:.0f} ms"

    rows = [(x.label, pct(x.uptime), ms(x.p50_ms), ms(x.p95_ms), x.results) for x in summary.lines]
    out = table(rows, ("probe", "uptime", "p50", "p95", "results")) if rows else "no results in the window"
    for i in summary.incidents:
        end = "ongoing" if i.end is None else f"{i.duration_s(summary.until):.0f} s"
        out += f"\nincident: {', '.join(i.probes[:3])}{'...' if len(i.probes) > 3 else ''} ({end})"
    return out


@task(iterable=["store"], help={**WATCH_HELP, **_stores_help("show"), "out": "the HTML file to write"})
@operation
def report(c, env="local", out="", store=None, from_="", json=False):
    """One self-contained HTML status page: uptime, latency, incidents, certificates."""
    from tasks.errors import ConfigError
    from tasks.watch import service

    if not out:
        raise ConfigError("--out FILE.html is required")
    s = settings_mod.load(env, root=Path.cwd())
    cfg = _watch_cfg(s)
    doc = service.report(s, cfg, service.stores_for(s, cfg, store or [], from_), Path(out))
    emit(doc, lambda d: f"wrote {d['path']} ({d['bytes']} bytes) from {len(d['stores'])} store(s)", json)


@task(
    name="watch-install",
    help={
        **WATCH_HELP,
        "on": "the environment whose SSH host runs the watch (a vantage away from the tracker)",
        "directory": "where on that host (default ~/.torrust-watch/ENV)",
        "remove": "remove the cron entry instead (the store stays unless --purge)",
        "purge": "with --remove: delete the directory and its store too",
        "internal_ca": INTERNAL_CA_HELP,
    },
)
@operation
def watch_install(c, env="local", on="", directory="", remove=False, purge=False, internal_ca=False, json=False):
    """Install the watch as a cron job on another environment's host (Python 3.11 and cron only)."""
    from tasks.errors import ConfigError
    from tasks.watch import service

    if not on:
        raise ConfigError("--on ENV is required: the environment whose host runs the watch")
    s = settings_mod.load(env, root=Path.cwd())
    if remove:
        doc = service.uninstall_from(s, on, directory=directory, purge=purge)
        emit(doc, lambda d: f"removed the watch from {d['removed']}" + (" (purged)" if purge else ""), json)
        return
    doc = service.install_on(s, _watch_cfg(s), on, directory=directory, extra_ca_pem=_internal_ca(s, internal_ca))
    emit(
        doc, lambda d: f"installed in {d['where']}:{d['directory']} ({d['schedule']}), {len(d['probes'])} probes", json
    )


@task(
    name="watch-import",
    help={**WATCH_HELP, "from_": "fetch the store of the watch on this environment's host", "file": "a store file"},
)
@operation
def watch_import(c, env="local", from_="", file="", json=False):
    """Merge another vantage's history into this environment's store (re-importing adds nothing)."""
    from tasks.errors import ConfigError
    from tasks.watch import service

    if bool(from_) == bool(file):
        raise ConfigError("pass exactly one of --from ENV and --file STORE")
    s = settings_mod.load(env, root=Path.cwd())
    doc = service.import_into(s, _watch_cfg(s), on_env=from_, file=file)
    emit(
        doc,
        lambda d: f"merged into {d['into']}: " + ", ".join(f"{k} {v}" for k, v in d.items() if k not in ("ok", "into")),
        json,
    )
