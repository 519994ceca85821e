"""Validate a rendered release with real validators where they run.

Checks: `docker compose config --quiet`; `caddy validate` and `promtool check config`
in throw-away containers of the environment's own images (so tests and users select
validator images through the same settings); host scripts (`shellcheck`, a Python compile); the tracker
release of the image and whether the settings can work with it (tasks/config/trackers.py); the
tracker TOML as that release's configuration loader reads it; the publishing and network policy of the compose
model; Grafana provisioning and dashboards parse. A validator that cannot run here is
reported as skipped with the reason, never silently passed.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from tasks.commands import docker
from tasks.config import trackers
from tasks.config.settings import Settings
from tasks.errors import CommandFailed, ConfigError
from tasks.release.render import ACME_CA_ROOT, ACME_CA_ROOT_PATH
from tasks.runner.executor import Executor

OK, FAILED, SKIPPED = "ok", "failed", "skipped"

FREE_FORM = {"http_api.access_tokens"}  # label = token


@dataclass(frozen=True)
class Check:
    name: str
    status: str
    detail: str
    duration: float = 0.0

    def as_dict(self) -> dict:
        return {"name": self.name, "status": self.status, "detail": self.detail, "duration": round(self.duration, 3)}


def tracker_toml_problems(text: str, release: trackers.TrackerRelease = trackers.BASELINE) -> list[str]:
    """What the release's configuration loader would refuse (or silently ignore) in the
    rendered tracker.toml: unknown keys, mandatory options, enum values, the schema
    version and `[core.private_mode]` outside private mode."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        return [f"not valid TOML: {exc}"]
    problems = _unknown_keys(data, release)
    meta = data.get("metadata", {})
    if meta.get("schema_version") != release.schema_version:
        problems.append(
            f"metadata.schema_version is {meta.get('schema_version')!r}, expected {release.schema_version!r}"
        )
    for option in release.mandatory_options:
        if _lookup(data, option) is None:
            problems.append(f"mandatory option {option} is missing (release {release.key} refuses to start)")
    for option, allowed in release.enums:
        value = _lookup(data, option)
        if value is not None and value not in allowed:
            problems.append(f"{option} = {value!r}: allowed {', '.join(allowed)}")
    core = data.get("core", {})
    if "private_mode" in core and not core.get("private"):
        problems.append("[core.private_mode] without core.private = true (the tracker refuses it)")
    for section in ("udp_trackers", "http_trackers"):
        for item in data.get(section, []):
            if "bind_address" not in item:
                problems.append(f"a [[{section}]] entry has no bind_address")
    return problems


def _unknown_keys(data: dict, release: trackers.TrackerRelease) -> list[str]:
    problems: list[str] = []

    def walk(table: dict, path: str) -> None:
        allowed = release.config_tables.get(path)
        for key, value in table.items():
            full = f"{path}.{key}" if path else key
            if allowed is not None and key not in allowed:
                problems.append(f"unknown key '{full}' (not in schema {release.schema_version} of {release.key})")
                continue
            if full in FREE_FORM:
                continue
            if isinstance(value, dict):
                walk(value, full)
            elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
                for item in value:
                    walk(item, full)

    walk(data, "")
    return problems


def _lookup(data: dict, dotted: str):
    node = data
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def policy_problems(compose_text: str, s: Settings) -> list[str]:
    """Only the UDP tracker ports and the proxy's 80/443 are public; MySQL never;
    Prometheus on loopback only; only the tracker reaches the database."""
    model = yaml.safe_load(compose_text)
    services = model.get("services", {})
    problems: list[str] = []
    udp_ports = {b.port for b in s.udp_trackers}
    for name, svc in services.items():
        for port in svc.get("ports", []) or []:
            spec = str(port)
            if name == "tracker":
                host = spec.partition(":")[0]
                if not spec.endswith("/udp") or int(host) not in udp_ports:
                    problems.append(f"tracker publishes {spec}: only its UDP tracker ports may be published")
            elif name == "proxy":
                allowed = {f"{s.http_port}:80"} | (
                    {f"{s.https_port}:443", f"{s.https_port}:443/udp"} if s.tls else set()
                )
                if spec not in allowed:
                    problems.append(f"proxy publishes {spec}: only {', '.join(sorted(allowed))} are expected")
            elif name == "prometheus":
                if not spec.startswith("127.0.0.1:"):
                    problems.append(f"prometheus publishes {spec}: it must bind 127.0.0.1 only")
            else:
                problems.append(f"{name} publishes {spec}: it must not publish any port")
    networks = model.get("networks", {}) or {}
    on_db = sorted(n for n, svc in services.items() if "database" in (svc.get("networks") or []))
    if "mysql" in services:
        if on_db != ["mysql", "tracker"]:
            problems.append(f"the database network is shared by {on_db}; only mysql and tracker may use it")
        if not (networks.get("database") or {}).get("internal"):
            problems.append("the database network must be internal")
    on_metrics = sorted(n for n, svc in services.items() if "metrics" in (svc.get("networks") or []))
    if on_metrics and set(on_metrics) - {"prometheus", "grafana"}:
        problems.append(f"the metrics network is shared by {on_metrics}; only prometheus and grafana may use it")
    return problems


def validate(release_dir: Path, s: Settings, ex: Executor, *, pull: bool = False) -> list[Check]:
    d = release_dir.resolve()
    checks: list[Check] = []

    def timed(name: str, fn: Callable[[], tuple[str, str]]) -> None:
        started = time.monotonic()
        try:
            status, detail = fn()
        except CommandFailed as exc:
            status, detail = FAILED, exc.message
        checks.append(Check(name, status, detail, time.monotonic() - started))

    have_docker = shutil.which("docker") is not None

    def compose_check() -> tuple[str, str]:
        if not have_docker:
            return SKIPPED, "docker not found on this machine"
        v = ex.run(docker.compose_version(), check=False)
        if not v.ok or not v.stdout.strip().lstrip("v").startswith("2"):
            return SKIPPED, "Docker Compose v2 not found (`docker compose version` failed)"
        r = ex.run(docker.compose_config_quiet(s.compose_project, str(d)), check=False)
        return (OK, f"compose {v.stdout.strip()}: config is valid") if r.ok else (FAILED, _tail(r.stderr or r.stdout))

    def image_ready(image: str) -> str | None:
        if not have_docker:
            return "docker not found on this machine"
        if ex.run(docker.image_present(image), check=False).ok:
            return None
        if pull and ex.run(docker.image_pull(image), check=False, timeout=300).ok:
            return None
        return f"image {image} is not available here" + ("" if pull else " (pass --pull to fetch it)")

    def caddy_check() -> tuple[str, str]:
        image = s.images["caddy"]
        if why := image_ready(image):
            return SKIPPED, why
        root = d / ACME_CA_ROOT
        mounts = [(str(root), ACME_CA_ROOT_PATH)] if root.is_file() else []
        r = ex.run(docker.caddy_validate(image, str(d / "proxy/Caddyfile"), mounts), check=False, timeout=120)
        return (OK, f"caddy validate ({image})") if r.ok else (FAILED, _tail(r.stderr or r.stdout))

    def promtool_check() -> tuple[str, str]:
        image = s.images["prometheus"]
        if why := image_ready(image):
            return SKIPPED, why
        user = f"{os.getuid()}:{os.getgid()}"  # the file is 0600: read it as its owner
        r = ex.run(docker.promtool_check(image, str(d / "prometheus/prometheus.yml"), user), check=False, timeout=120)
        return (OK, f"promtool check config ({image})") if r.ok else (FAILED, _tail(r.stdout + r.stderr))

    def release_check() -> tuple[str, str]:
        return _release_check(s)

    def toml_check() -> tuple[str, str]:
        try:
            release = trackers.release_of(s).release
        except ConfigError as exc:
            return FAILED, exc.message
        problems = tracker_toml_problems((d / "tracker/tracker.toml").read_text(), release)
        if problems:
            return FAILED, "; ".join(problems)
        return OK, f"schema {release.schema_version} as {release.key} loads it"

    def policy_check() -> tuple[str, str]:
        problems = policy_problems((d / "compose.yaml").read_text(), s)
        return (FAILED, "; ".join(problems)) if problems else (OK, "published ports and networks as designed")

    def grafana_check() -> tuple[str, str]:
        for p in sorted((d / "grafana/provisioning").rglob("*.yml")):
            yaml.safe_load(p.read_text())
        boards = sorted((d / "grafana/dashboards").glob("*.json"))
        uids = [json.loads(p.read_text())["uid"] for p in boards]
        return OK, f"provisioning parses; dashboards: {', '.join(uids)}"

    def cron_check() -> tuple[str, str]:
        lines = [ln for ln in (d / "cron/torrust-backup").read_text().splitlines() if ln and not ln.startswith("#")]
        jobs = [ln for ln in lines if "=" not in ln.split()[0]]
        fields = 1 if jobs and jobs[0].startswith("@") else 5
        ok = len(jobs) == 1 and len(jobs[0].split()) >= fields + 2
        return (OK, "one job: " + " ".join(jobs[0].split()[: fields + 1])) if ok else (FAILED, "malformed cron.d entry")

    timed("tracker release", release_check)
    timed("compose config", compose_check)
    timed("tracker.toml schema", toml_check)
    timed("compose policy", policy_check)
    timed("caddy validate", caddy_check)
    if s.prometheus:
        timed("promtool check config", promtool_check)
    if s.grafana:
        timed("grafana provisioning", grafana_check)
    timed("host scripts", lambda: _scripts_check(d, ex))
    timed("cron entry", cron_check)
    return checks


def _release_check(s: Settings) -> tuple[str, str]:
    """Which tracker release the image is, and whether the stack's settings can work
    with it: an impossible combination fails, a reduced stack says so."""
    try:
        resolution = trackers.release_of(s)
    except ConfigError as exc:
        return FAILED, exc.message
    release, choice = resolution.release, trackers.choice_of(s)
    problems = trackers.problems(release, choice)
    if problems:
        return FAILED, "; ".join(problems)
    said = [n for n in (resolution.warning, *trackers.notes(release, choice)) if n]
    jobs = ", ".join(j.name for j in release.scrape_jobs) or "none"
    detail = f"{release.key} ({resolution.how}): scrape jobs {jobs}; token {release.token_auth}"
    return OK, "; ".join([detail, *said])


def _scripts_check(d: Path, ex: Executor) -> tuple[str, str]:
    """Host scripts: shellcheck on shell scripts, a compile of Python ones."""
    files = sorted(p for p in (d / "bin").iterdir() if p.is_file())
    python = [p for p in files if _is_python(p)]
    for p in python:
        try:
            compile(p.read_text(), str(p.relative_to(d)), "exec")
        except SyntaxError as exc:
            return FAILED, f"{exc.filename}:{exc.lineno}: SyntaxError: {exc.msg}"
    shell = [str(p) for p in files if _is_shell(p)]
    if shell and shutil.which("shellcheck") is None:
        return SKIPPED, "shellcheck not found on this machine"
    if shell:
        r = ex.run(["shellcheck", "--severity=style", *shell], check=False)
        if not r.ok:
            return FAILED, _tail(r.stdout)
    return OK, f"{len(shell)} shell script(s) clean, {len(python)} Python script(s) compile"


def _is_python(path: Path) -> bool:
    with open(path, "rb") as fh:
        return b"python" in fh.readline()


def _is_shell(path: Path) -> bool:
    with open(path, "rb") as fh:
        first = fh.readline()
    return first.startswith(b"#!") and (b"sh" in first.split(b"/")[-1])


def _tail(text: str, lines: int = 8) -> str:
    return " | ".join(text.strip().splitlines()[-lines:]) or "no output"
