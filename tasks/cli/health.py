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


@task(help={"env": "environment name (default: local)", "json": "print one machine-readable JSON result on stdout"})
@operation
def endpoints(c, env="local", json=False):
    """List the announce URLs and service endpoints the environment exposes."""
    s = settings_mod.load(env, root=Path.cwd())
    rows = endpoints_of(s)
    emit(
        {"ok": True, "env": env, "endpoints": rows},
        lambda r: table([(e["service"], e["url"], e["reach"]) for e in rows], ("service", "url", "reach")),
        json,
    )


@task(
    help={
        "env": "environment name (default: local)",
        "family": "address families to probe: 4, 6 or both (default both: every family the target has)",
        "only": "only these probe groups, comma-separated: udp, http, api, tls, host",
        "skip": "skip these probe groups, comma-separated: udp, http, api, tls, host",
        "internal_ca": "trust the proxy's internal CA (fetched from the host) for .local/.test names",
        "json": "print one machine-readable JSON result on stdout",
    }
)
@operation
def check(c, env="local", family="both", only="", skip="", internal_ca=False, json=False):
    """Probe the deployed tracker from outside (UDP, HTTP, API, TLS) and on the host, in parallel."""
    from tasks.errors import HealthFailed
    from tasks.health import check as hc

    s = settings_mod.load(env, root=Path.cwd())
    result = hc.run_check(s, family=family, only=only, skip=skip, trust_internal_ca=internal_ca)
    emit(result.as_dict(), lambda d: check_table(result), json)
    if result.unprobed:
        raise HealthFailed("no address to probe: set TORRUST_PROBE_IPV4/TORRUST_PROBE_IPV6 or DNS for the names")
    if result.failed:
        raise HealthFailed(
            f"{len(result.failed)} of {len(result.results)} probes failed: "
            + "; ".join(f"{x.name} {x.target}: {x.detail}" for x in result.failed[:5])
        )


def check_table(result) -> str:
    """The probes as a table, then one summary line (passed, skipped, time, families)."""

    def verdict(x) -> str:
        return "skip" if x.skipped else "ok" if x.ok else "FAIL"

    rows = [
        (verdict(x), x.name, x.target, f"IPv{x.family}" if x.family else "host", f"{x.latency * 1000:.0f} ms", x.detail)
        for x in result.results
    ]
    fams = ", ".join(f"IPv{f}" for f in result.families) or "none"
    n, skipped = len(result.results), len(result.skipped)
    passed = n - len(result.failed) - skipped
    return table(rows, ("", "probe", "target", "family", "latency", "detail")) + (
        f"\n{passed}/{n} probes passed"
        + (f", {skipped} skipped" if skipped else "")
        + f" in {result.wall:.2f}s (families: {fams})"
    )
