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
        "only": "only these probe groups, comma-separated: udp, http, api, tls, host, network",
        "skip": "skip these probe groups, comma-separated: udp, http, api, tls, host, network",
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
        if x.skipped:
            return "skip"
        return ("warn" if x.detail.startswith("WARNING:") else "ok") if x.ok else "FAIL"

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
