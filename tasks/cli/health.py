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
    import time

    from tasks.errors import HealthFailed
    from tasks.health import check as hc
    from tasks.health import probes as pr
    from tasks.runner.target import open_target

    s = settings_mod.load(env, root=Path.cwd())
    wants_host = "host" not in {x.strip() for x in skip.split(",")} and (
        not only or "host" in {x.strip() for x in only.split(",")}
    )
    needs_target = wants_host or (internal_ca and s.tls)
    started = time.monotonic()
    if needs_target:
        with open_target(s) as ex:
            ca = hc.internal_ca(ex, s) if internal_ca and s.tls else None
            r = hc.reach(s, family, ca)
            probes = hc.select(
                pr.public_probes(s, r, sorted(r.addresses), s.probe_timeout, s.probe_attempts)
                + hc.host_probes(ex, s, s.probe_timeout),
                only,
                skip,
            )
            results = pr.run(probes)
    else:
        r = hc.reach(s, family, None)
        probes = hc.select(pr.public_probes(s, r, sorted(r.addresses), s.probe_timeout, s.probe_attempts), only, skip)
        results = pr.run(probes)
    wall = time.monotonic() - started
    failed = [x for x in results if x.required and not x.ok]
    unprobed = not r.addresses and hc.wants_public(only, skip)
    doc = {
        "ok": not failed and not unprobed,
        "env": env,
        "families": sorted(r.addresses),
        "wall": round(wall, 3),
        "probes": [x.as_dict() for x in results],
    }

    def human(d: dict) -> str:
        rows = [
            (
                "ok" if x.ok else "FAIL",
                x.name,
                x.target,
                f"IPv{x.family}" if x.family else "host",
                f"{x.latency * 1000:.0f} ms",
                x.detail,
            )
            for x in results
        ]
        fams = ", ".join(f"IPv{f}" for f in d["families"]) or "none"
        return table(rows, ("", "probe", "target", "family", "latency", "detail")) + (
            f"\n{len(results) - len(failed)}/{len(results)} probes passed in {wall:.2f}s (families: {fams})"
        )

    emit(doc, human, json)
    if unprobed:
        raise HealthFailed("no address to probe: set TORRUST_PROBE_IPV4/TORRUST_PROBE_IPV6 or DNS for the names")
    if failed:
        raise HealthFailed(
            f"{len(failed)} of {len(results)} probes failed: "
            + "; ".join(f"{x.name} {x.target}: {x.detail}" for x in failed[:5])
        )
