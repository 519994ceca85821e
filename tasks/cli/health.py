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
        "only": "only these probe groups, comma-separated: udp, http, api, tls, host",
        "skip": "skip these probe groups, comma-separated: udp, http, api, tls, host",
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


def probe_row(p: dict) -> tuple:
    """One probe's row (from its as_dict()), in health.check's table and the fleet's."""
    family = f"IPv{p['family']}" if p["family"] else "host"
    return (VERDICT[p["status"]], p["name"], p["target"], family, f"{p['latency'] * 1000:.0f} ms", p["detail"])


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
