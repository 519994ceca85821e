"""`health` namespace: what the public reaches, and (with the probes) whether it works."""

from __future__ import annotations

from pathlib import Path

from invoke import task

from tasks.cli.output import emit, operation, table
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
