"""Run the watch on another host: installed as a cron job, read back over SFTP.

Watching from the tracker's own host cannot see what the public sees (its firewall, its
routes, its provider's network), so the watch is installed elsewhere: another
environment's host or any SSH host. The host needs Python 3.11+ (SQLite 3.27+) and cron,
nothing else: the tool ships itself as one zip application (`bundle()`: the watch, the
probes, their helpers and the pure-Python prometheus_client, about 200 kB, deterministic)
plus a settings file (0600: the webhook URL and SMTP password are secrets). Cron runs one
round per interval (`once`); the runner's lock keeps rounds from overlapping. Its store
stays on that host; `fetch_store` takes a consistent copy (`VACUUM INTO`) over SFTP for
`health.report` or an import. (Decision record draft: NOTES-watch.md.)
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

import prometheus_client

from tasks.commands import watch as cmd
from tasks.errors import (
    CommandFailed,
    ConfigError,
    ExitCode,
    PrerequisiteError,
    StoreCorrupt,
    StoreLocked,
    StoreMissing,
)
from tasks.facts import python as python_fact
from tasks.runner.executor import Executor
from tasks.watch import runner
from tasks.watch.config import WatchConfig
from tasks.watch.targets import TargetSpec

ROOT = Path(__file__).resolve().parents[2]
# The modules the vantage runs (stdlib imports only, besides prometheus_client).
BUNDLED = (
    "tasks/errors.py",
    "tasks/config/__init__.py",
    "tasks/config/kinds.py",
    "tasks/config/secrets.py",
    "tasks/config/trackers.py",
    "tasks/health/__init__.py",
    "tasks/health/api.py",
    "tasks/health/bencode.py",
    "tasks/health/http.py",
    "tasks/health/probes.py",
    "tasks/health/reach.py",
    "tasks/health/udp.py",
    "tasks/watch/__init__.py",
    "tasks/watch/alerts.py",
    "tasks/watch/config.py",
    "tasks/watch/loop.py",
    "tasks/watch/metrics.py",
    "tasks/watch/records.py",
    "tasks/watch/retention.py",
    "tasks/watch/runner.py",
    "tasks/watch/store.py",
    "tasks/watch/targets.py",
    "tasks/watch/uptime.py",
)
VENDORED_SKIP = ("aiohttp/", "django/", "twisted/", "__pycache__/")
MAIN = "from tasks.watch.runner import main\n\nraise SystemExit(main())\n"
PACKAGE_INIT = '"""torrust-deploy, the subset a watch vantage runs (torrust-watch.pyz)."""\n'
CRON_STEPS = {60: "* * * * *", 120: "*/2 * * * *", 180: "*/3 * * * *", 240: "*/4 * * * *", 300: "*/5 * * * *"}
STORE_ERRORS = {
    int(ExitCode.WATCH_STORE_CORRUPT): StoreCorrupt,
    int(ExitCode.WATCH_STORE_LOCKED): StoreLocked,
    int(ExitCode.WATCH_STORE_MISSING): StoreMissing,
}
SAFE_PATH = re.compile(r"/[A-Za-z0-9._/-]+")


def bundle() -> bytes:
    """The zip application, byte for byte the same for the same sources."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:

        def add(name: str, data: bytes) -> None:
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            z.writestr(info, data)

        add("__main__.py", MAIN.encode())
        add("tasks/__init__.py", PACKAGE_INIT.encode())
        for rel in BUNDLED:
            add(rel, (ROOT / rel).read_bytes())
        vendored = Path(prometheus_client.__file__).parent
        for path in sorted(vendored.rglob("*.py")):
            rel = path.relative_to(vendored.parent).as_posix()
            if not any(skip in rel for skip in VENDORED_SKIP):
                add(rel, path.read_bytes())
    return buf.getvalue()


def cron_schedule(interval: float) -> str:
    """The crontab schedule of an interval: whole minutes dividing an hour, or whole hours
    dividing a day."""
    seconds = int(interval)
    if seconds == interval and seconds % 60 == 0:
        minutes = seconds // 60
        if minutes < 60 and 60 % minutes == 0:
            return CRON_STEPS.get(seconds, f"*/{minutes} * * * *")
        if minutes % 60 == 0 and 24 % (minutes // 60) == 0:
            hours = minutes // 60
            return "0 * * * *" if hours == 1 else f"0 */{hours} * * *"
    raise ConfigError(
        f"watch interval {interval:g} s: cron cannot run that interval on a vantage host "
        "(allowed: whole minutes dividing an hour, 60, 120, 300, 600, ..., or whole hours dividing a day)"
    )


@dataclass(frozen=True)
class Installed:
    where: str
    directory: str
    schedule: str
    bundle_sha256: str
    probes: list[str]
    python: str

    def as_dict(self) -> dict:
        return self.__dict__.copy()


def default_directory(ex: Executor, env: str) -> str:
    home = ex.run(cmd.home()).stdout.strip()
    if not SAFE_PATH.fullmatch(home):
        raise CommandFailed(f"{ex.where}: unusable home directory {home!r}")
    return f"{home}/.torrust-watch/{env}"


def _check_directory(directory: str) -> None:
    if not SAFE_PATH.fullmatch(directory) or ".." in PurePosixPath(directory).parts:
        raise ConfigError(
            f"watch directory {directory!r}: not an absolute path of letters, digits, '.', '_', '-' and '/' "
            "(cron treats '%' and spaces specially)"
        )


def install(
    ex: Executor, cfg: WatchConfig, spec: TargetSpec, env: str, directory: str, python: str = "python3"
) -> Installed:
    """Install (or update) the watch on `ex`'s host: bundle, settings (0600), a check run,
    the crontab entry. The store on the host is kept across re-installs."""
    _check_directory(directory)
    schedule = cron_schedule(cfg.interval)
    fact = python_fact.read(ex, python)
    if fact is None or not fact.usable:
        found = "no python3" if fact is None else str(fact)
        raise PrerequisiteError(
            f"{ex.where}: the watch needs Python 3.11+ with SQLite 3.27+ ({found})",
            hint="install python3 there (Debian 12 and Ubuntu 24.04 have it), or pick another host",
        )
    if ex.run(["sh", "-c", "command -v crontab"], check=False).exit_status != 0:
        raise PrerequisiteError(f"{ex.where}: no crontab command", hint="install cron there (apt-get install cron)")
    remote_cfg = replace(cfg, store_path=Path(f"{directory}/{cmd.STORE}"))
    data = bundle()
    ex.run(cmd.make_private_dir(directory))
    ex.put(data, f"{directory}/{cmd.BUNDLE}", mode=0o644)
    settings = json.dumps(runner.settings_document(remote_cfg, spec, env), indent=1).encode()
    ex.put(settings, f"{directory}/{cmd.CONFIG}", mode=0o600)
    check = ex.run(cmd.runner(python, directory, "check"), check=False)
    if not check.ok:
        raise CommandFailed(
            f"{ex.where}: the installed watch refused its settings: {(check.stderr or check.stdout).strip()[-400:]}"
        )
    probes = json.loads(check.stdout)["probes"]
    line = cmd.cron_line(schedule, python, directory)
    ex.run(cmd.cron("install", _mark(env, directory), line))
    return Installed(ex.where, directory, schedule, hashlib.sha256(data).hexdigest(), probes, str(fact))


def _mark(env: str, directory: str) -> str:
    return f"torrust-watch {env} {directory}"


def installed_line(ex: Executor, env: str, directory: str) -> str | None:
    r = ex.run(cmd.cron("show", _mark(env, directory)), check=False)
    return r.stdout.strip() if r.ok else None


def uninstall(ex: Executor, env: str, directory: str, purge: bool = False) -> None:
    """Remove the crontab entry; with `purge` also the directory (store included)."""
    _check_directory(directory)
    ex.run(cmd.cron("remove", _mark(env, directory)))
    if purge:
        ex.run(cmd.remove_dir(directory))


def fetch_store(ex: Executor, directory: str, dest: Path, python: str = "python3") -> Path:
    """A consistent copy of the host's store at `dest` (0600), taken while the watch runs."""
    _check_directory(directory)
    snapshot = f"{directory}/export.sqlite"
    r = ex.run(cmd.runner(python, directory, "export", "--out", snapshot), check=False)
    named = STORE_ERRORS.get(r.exit_status)
    if named:  # the runner's own verdict on its store, kept as the same named error
        message = next((ln[7:] for ln in r.stderr.splitlines() if ln.startswith("error: ")), "store unusable")
        raise named(f"{ex.where}: {message}")
    if not r.ok:
        raise CommandFailed(f"{ex.where}: exporting the watch store failed: {(r.stderr or r.stdout).strip()[-400:]}")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        ex.fetch(snapshot, str(dest))
        dest.chmod(0o600)
    finally:
        ex.run(cmd.remove_files(snapshot), check=False)
    return dest
