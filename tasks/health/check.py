"""Assemble and run the health check of an environment: public and host probes."""

from __future__ import annotations

import ipaddress
import json
import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from cronsim import CronSim, CronSimError

from tasks.commands import backup as backup_cmd
from tasks.commands import docker, files
from tasks.config import trackers
from tasks.config.settings import Settings
from tasks.errors import ConfigError, HealthFailed
from tasks.facts import releases, services
from tasks.health import network as hn
from tasks.health import probes as p
from tasks.health import trust
from tasks.release.layout import Layout
from tasks.runner.executor import Executor

CADDY_ROOT_CA = "proxy/data/caddy/pki/authorities/local/root.crt"  # under <root>/storage
GROUPS = ("udp", "http", "api", "tls", "host", "network")
NAME_GROUP = {
    "udp tracker": "udp",
    "http tracker": "http",
    "api health": "api",
    "api stats": "api",
    "tls certificate": "tls",
}


def addresses(s: Settings, want: str) -> dict[int, str]:
    """{family: address} the public probes use; `want` is '4', '6' or 'both'."""
    if want not in ("4", "6", "both"):
        raise ConfigError(f"--family {want!r}: allowed values are 4, 6, both")
    result: dict[int, str] = {}
    for fam, configured, loopback in ((4, s.probe_ipv4, "127.0.0.1"), (6, s.probe_ipv6, "::1")):
        if want not in (str(fam), "both") or configured == "none":
            continue
        if configured:
            result[fam] = configured
        elif s.target == "local":
            result[fam] = loopback
        else:
            addr = _ssh_host_address(s.ssh.host, fam) or _resolve(s.http_tracker_domains[0], fam)
            if addr:
                result[fam] = addr
    return result


def _ssh_host_address(host: str, fam: int) -> str | None:
    try:
        return host if ipaddress.ip_address(host).version == fam else None
    except ValueError:
        return None


def _resolve(name: str, fam: int) -> str | None:
    try:
        infos = socket.getaddrinfo(name, None, socket.AF_INET if fam == 4 else socket.AF_INET6, socket.SOCK_STREAM)
    except OSError:
        return None
    return infos[0][4][0] if infos else None


def _seconds(duration: str) -> float:
    """A Prometheus duration such as '15s', '1m' or '1m30s' in seconds (15 if unreadable)."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    parts = re.findall(r"(\d+)(ms|s|m|h)", duration or "")
    return sum(int(n) * units[u] for n, u in parts) if parts else 15.0


# ------------------------------------------------------------------------ host probes
def host_probes(ex: Executor, s: Settings, timeout: float) -> list[p.Probe]:
    lay = Layout(s.deploy_root)
    cur = lay.current

    def compose(*args: str) -> list[str]:
        return docker.compose(s.compose_project, cur, *args)

    def run_ok(argv: list[str]) -> str:
        r = ex.run(argv, check=False, timeout=int(timeout) + 10)
        if not r.ok:
            raise p.ProbeFailed(((r.stderr or r.stdout).strip().splitlines() or [f"exit {r.exit_status}"])[-1][:200])
        return r.stdout

    def healthcheck_api() -> str:
        url = f"http://localhost:{s.health_check_api_bind.port}/health_check"
        out = run_ok(compose("exec", "-T", "tracker", "http_health_check", url))
        return out.strip().splitlines()[-1][:120] if out.strip() else "ok"

    def containers() -> str:
        manifest = releases.parse_manifest(run_ok(files.cat(f"{cur}/release.json")), f"{cur}/release.json")
        bad = services.unhealthy(services.read(ex, s.compose_project), list(manifest.services))
        if bad:
            raise p.ProbeFailed("not healthy: " + ", ".join(bad))
        return f"{len(manifest.services)} services running and healthy"

    def tracker_age() -> float | None:
        """Seconds since the tracker container started, or None when unknown."""
        cid = run_ok(compose("ps", "-q", "tracker")).strip().splitlines()
        if not cid:
            return None
        started = run_ok(docker.started_at(cid[0])).strip()
        try:
            when = datetime.fromisoformat(re.sub(r"(\.\d{6})\d*", r"\1", started).replace("Z", "+00:00"))
        except ValueError:
            return None
        return (datetime.now(UTC) - when).total_seconds()

    def prometheus() -> str:
        run_ok(compose("exec", "-T", "prometheus", "wget", "-q", "-O", "-", "http://127.0.0.1:9090/-/healthy"))
        targets = json.loads(
            run_ok(compose("exec", "-T", "prometheus", "wget", "-q", "-O", "-", "http://127.0.0.1:9090/api/v1/targets"))
        )
        active = [t for t in targets["data"]["activeTargets"] if t["labels"].get("job", "").startswith("tracker")]
        active, verdict = p.prometheus_targets(active, trackers.release_of(s).release)  # as the release allows
        if verdict:
            return f"healthy; {verdict}"
        down = [f"{t['labels']['job']} ({t.get('lastError') or 'down'})" for t in active if t["health"] == "down"]
        if down:  # "unknown" only means not scraped yet (right after a start)
            # A scrape that failed while the tracker was (re)starting is no evidence until
            # Prometheus had one full interval with the tracker up.
            grace = max(_seconds(t.get("scrapeInterval", "15s")) for t in active) + 5
            age = tracker_age()
            if age is not None and age < grace:
                return f"healthy; tracker started {age:.0f}s ago, not scraped since ({', '.join(down)})"
            raise p.ProbeFailed("targets down: " + ", ".join(down))
        up = sum(t["health"] == "up" for t in active)
        pending = len(active) - up
        return f"healthy; {up} tracker targets up" + (f", {pending} not scraped yet" if pending else "")

    def grafana() -> str:
        body = json.loads(
            run_ok(compose("exec", "-T", "grafana", "wget", "-q", "-O", "-", "http://127.0.0.1:3000/api/health"))
        )
        if body.get("database") != "ok":
            raise p.ProbeFailed(f"database {body.get('database')!r}")
        return "database ok"

    def database() -> str:
        if s.mysql:
            run_ok(compose("exec", "-T", "mysql", "mysqladmin", "ping", "-h", "127.0.0.1", "--silent"))
            return "mysql answers ping"
        path = f"{lay.storage}/tracker/lib/database/sqlite3.db"
        run_ok(files.non_empty(path))
        return "sqlite3 database file present"

    def backup_age() -> str:
        out = run_ok(backup_cmd.list_ids(s.backup_dir))
        ids = sorted(line.split("/")[0] for line in out.split())
        if not ids:
            raise p.ProbeFailed(f"no backup in {s.backup_dir}; {backup_advice(s, datetime.now(UTC))}")
        age = datetime.now(UTC) - datetime.strptime(ids[-1][:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        hours = age.total_seconds() / 3600
        if hours > s.backup_max_age_hours:
            raise p.ProbeFailed(
                f"newest backup {ids[-1]} is {hours:.1f} h old (limit {s.backup_max_age_hours} h); "
                + backup_advice(s, datetime.now(UTC))
            )
        return f"newest backup {ids[-1]} is {hours:.1f} h old"

    def host_probe(name: str, fn) -> p.Probe:
        return p.Probe(name, f"{ex.where}", None, fn, timeout, 1, group="host")

    result = [
        host_probe("health-check api", healthcheck_api),
        host_probe("containers", containers),
        host_probe("database", database),
    ]
    if s.prometheus:
        result.append(host_probe("prometheus", prometheus))
    if s.grafana:
        result.append(host_probe("grafana", grafana))
    if s.backup:
        result.append(host_probe("backup age", backup_age))
    return result


CRON_SHORTHANDS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}


def next_run(schedule: str, now: datetime) -> datetime | None:
    """The next time cron starts the backup (the host's clock read as UTC), or None."""
    try:
        return next(CronSim(CRON_SHORTHANDS.get(schedule, schedule), now.replace(second=0, microsecond=0)))
    except (CronSimError, StopIteration):
        return None


def backup_advice(s: Settings, now: datetime) -> str:
    """When the next scheduled backup runs and which command takes one now (issue #18)."""
    nxt = next_run(s.backup_schedule, now)
    when = (
        f"next scheduled run {nxt:%Y-%m-%d %H:%M} host time (in {(nxt - now).total_seconds() / 3600:.1f} h if the "
        f"host clock is UTC; TORRUST_BACKUP_SCHEDULE '{s.backup_schedule}')"
        if nxt
        else f"scheduled by TORRUST_BACKUP_SCHEDULE '{s.backup_schedule}'"
    )
    return f"{when}; take one now: ./tasks.py app.backup --env {s.env}"


def group_of(probe: p.Probe) -> str:
    return NAME_GROUP.get(probe.name, probe.group)


def parse_groups(text: str) -> set[str]:
    """A comma-separated --only/--skip value: known probe groups, or ConfigError."""
    names = {x.strip() for x in text.split(",") if x.strip()}
    unknown = names - set(GROUPS)
    if unknown:
        raise ConfigError(f"unknown probe group(s) {', '.join(sorted(unknown))}; allowed: {', '.join(GROUPS)}")
    return names


def select(probes: list[p.Probe], only: str, skip: str) -> list[p.Probe]:
    only_set, skip_set = parse_groups(only), parse_groups(skip)
    return [pr for pr in probes if (not only_set or group_of(pr) in only_set) and group_of(pr) not in skip_set]


PUBLIC_GROUPS = frozenset({"udp", "http", "api", "tls"})  # sent from here to the public addresses


def wants_public(only: str, skip: str) -> bool:
    """Whether --only/--skip leave a group probed from outside (udp, http, api, tls): with
    no address to probe (both families 'none', or --family of one the target lacks) such
    a check has nothing to run, which is a failure, not a pass."""
    chosen = (parse_groups(only) or set(GROUPS)) - parse_groups(skip)
    return bool(chosen & PUBLIC_GROUPS)


def reach(
    s: Settings, want: str, extra_ca_pem: str | None, internal_ca: Callable[[], str | None] | None = None
) -> p.Reach:
    """Where and how the public probes connect. Each name's certificate is verified against
    the trust that applies to it (tasks/health/trust.py); the internal CA is `extra_ca_pem`,
    or what `internal_ca()` reads from the host when it is asked (None: not had yet)."""
    return p.Reach(
        addresses=addresses(s, want),
        tls=s.tls,
        port=s.https_port if s.tls else s.http_port,
        context=p.tls_context(extra_ca_pem) if s.tls else None,
        contexts=trust.contexts(s, internal_ca or (lambda: extra_ca_pem)) if s.tls else {},
    )


def internal_ca_reader(ex: Executor, s: Settings) -> Callable[[], str | None]:
    """Reads the proxy's internal CA from the host when asked: None while it does not exist
    (the proxy makes it when it first serves an internal name), or without internal names."""

    def read() -> str | None:
        if not any(s.uses_internal_ca(n) for n in s.public_names):
            return None
        try:
            return internal_ca(ex, s)
        except ConfigError:
            return None

    return read


def internal_ca(ex: Executor, s: Settings) -> str:
    """The proxy's internal root CA (public, not a secret); Caddy keeps its data dir private."""
    path = f"{Layout(s.deploy_root).storage}/{CADDY_ROOT_CA}"
    r = ex.run(files.cat_privileged(path), check=False)
    if not r.ok or "BEGIN CERTIFICATE" not in r.stdout:
        raise ConfigError(
            f"cannot read the proxy's internal CA at {path} on {ex.where}",
            hint="it exists once the proxy has issued a certificate for a .local/.test name",
        )
    return r.stdout


# ------------------------------------------------------------------------ the whole check
@dataclass(frozen=True)
class CheckResult:
    env: str
    families: list[int]
    wall: float
    results: list[p.ProbeResult]
    public_wanted: bool  # public probes were selected (then an address is needed)

    @property
    def failed(self) -> list[p.ProbeResult]:
        return [x for x in self.results if x.required and not x.ok]

    @property
    def skipped(self) -> list[p.ProbeResult]:
        return [x for x in self.results if x.skipped]

    @property
    def unprobed(self) -> bool:
        """Public probes were asked for but there is no address to send them to."""
        return self.public_wanted and not self.families

    @property
    def ok(self) -> bool:
        return self.error() is None

    def error(self) -> HealthFailed | None:
        """What health.check fails with (exit 40), or None: no address to probe, or failed probes."""
        if self.unprobed:
            return HealthFailed("no address to probe: set TORRUST_PROBE_IPV4/TORRUST_PROBE_IPV6 or DNS for the names")
        if self.failed:
            return HealthFailed(
                f"{len(self.failed)} of {len(self.results)} probes failed: "
                + "; ".join(f"{x.name} {x.target}: {x.detail}" for x in self.failed[:5])
            )
        return None

    def as_dict(self) -> dict:
        return {
            "ok": self.ok,
            "env": self.env,
            "families": self.families,
            "wall": round(self.wall, 3),
            "probes": [x.as_dict() for x in self.results],
        }


def _groups(text: str) -> set[str]:
    return {x.strip() for x in text.split(",") if x.strip()}


def run_check(s: Settings, *, family: str = "both", only: str = "", skip: str = "", trust_internal_ca: bool = False):
    """Every selected probe at once: public ones from here (IPv6 UDP from the host when this
    machine has no IPv6 route), host and network ones through one connection to the target
    (opened only when a selected probe needs it)."""
    from contextlib import nullcontext

    from tasks.runner.target import open_target

    def wanted(group: str) -> bool:
        return group not in _groups(skip) and (not only or group in _groups(only))

    started = time.monotonic()
    addrs = addresses(s, family)
    vantage = hn.ipv6_vantage(addrs[6], s.probe_ipv6_from) if 6 in addrs and wanted("udp") else None
    needs_target = (
        wanted("host") or wanted("network") or (trust_internal_ca and s.tls) or (vantage and vantage.where == "host")
    )
    with open_target(s) if needs_target else nullcontext(None) as ex:
        r = reach(s, family, internal_ca(ex, s) if trust_internal_ca and s.tls else None)
        probes = hn.public_probes_with_vantage(ex, s, r, vantage)
        if ex is not None:
            probes += host_probes(ex, s, s.probe_timeout)
            expect = hn.expectations(s)
            probes += hn.network_probes(ex, expect, s.probe_timeout, required=hn.required_on(s))
            public = [*r.addresses.values(), *s.public_addresses]
            # the tracker ports (not the HTTP/3 port: it speaks QUIC, not BEP 15), when they serve
            trackers = [b.port for b in s.udp_trackers] if p.udp_served(s) else []
            probes += hn.reply_source_probes(public, trackers, s.probe_timeout, s.probe_attempts)
        probes = select(probes, only, skip)
        results = p.run(probes)
    return CheckResult(s.env, sorted(r.addresses), time.monotonic() - started, results, wants_public(only, skip))
