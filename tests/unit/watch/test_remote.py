"""The vantage bundle: deterministic, runs on a bare Python (no venv, isolated mode),
cron schedules, refused directories."""

from __future__ import annotations

import hashlib
import json
import subprocess
import zipfile
from io import BytesIO
from pathlib import Path

import pytest

from tasks.config.secrets import Secret
from tasks.errors import ConfigError
from tasks.watch import remote, runner
from tasks.watch.config import WatchConfig
from tasks.watch.targets import TargetSpec

SYSTEM_PYTHON = "/usr/bin/python3"


def test_the_bundle_is_deterministic_and_holds_only_what_a_vantage_runs():
    a, b = remote.bundle(), remote.bundle()
    assert hashlib.sha256(a).digest() == hashlib.sha256(b).digest()
    names = zipfile.ZipFile(BytesIO(a)).namelist()
    assert "__main__.py" in names and "tasks/watch/loop.py" in names and "prometheus_client/__init__.py" in names
    assert not [n for n in names if n.startswith(("tasks/cli/", "tasks/operations/", "tasks/config/settings"))]
    assert not [n for n in names if "twisted" in n or "django" in n or n.endswith(".pyc")]
    assert len(a) < 300_000


@pytest.mark.skipif(not Path(SYSTEM_PYTHON).exists(), reason="needs the system's python3")
def test_the_bundle_runs_on_a_bare_python(tmp_path):
    (tmp_path / "w.pyz").write_bytes(remote.bundle())
    spec = TargetSpec(
        "prod",
        "torrust.local",
        (6969,),
        ("tracker.torrust.local",),
        "api.torrust.local",
        False,
        80,
        ("tracker.torrust.local",),
        local=True,
    )
    cfg = WatchConfig(store_path=tmp_path / "s.sqlite", webhook_url=Secret("https://hooks.example.org/T/B/tok3nXk4Lp8"))
    settings = tmp_path / "w.json"
    settings.write_text(json.dumps(runner.settings_document(cfg, spec, "prod")))
    r = subprocess.run(
        [SYSTEM_PYTHON, "-I", str(tmp_path / "w.pyz"), "--config", str(settings), "check"],
        capture_output=True,
        text=True,
        cwd="/",
        env={"PATH": "/usr/bin:/bin"},
    )
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["probes"] == [
        "udp udp://torrust.local:6969 IPv4 via 127.0.0.1",
        "udp udp://torrust.local:6969 IPv6 via ::1",
        "http tracker.torrust.local IPv4 via 127.0.0.1",
        "http tracker.torrust.local IPv6 via ::1",
        "api api.torrust.local IPv4 via 127.0.0.1",
        "api api.torrust.local IPv6 via ::1",
    ]
    assert "tok3n" not in r.stdout and doc["config"]["webhook_url"] == "********"
    # one round against closed loopback ports: exit 40, the failures listed, the round stored
    closed = TargetSpec(
        "prod",
        "torrust.local",
        (1,),
        ("tracker.torrust.local",),
        "api.torrust.local",
        False,
        1,
        ("tracker.torrust.local",),
        local=True,
    )
    fast = WatchConfig(store_path=tmp_path / "s.sqlite", probe_timeout=0.5, probe_attempts=1)
    settings.write_text(json.dumps(runner.settings_document(fast, closed, "prod")))
    r = subprocess.run(
        [SYSTEM_PYTHON, "-I", str(tmp_path / "w.pyz"), "--config", str(settings), "once"],
        capture_output=True,
        text=True,
        cwd="/",
    )
    assert r.returncode == 40, r.stderr
    assert len(json.loads(r.stdout)["failed"]) == 6 and "Traceback" not in r.stderr
    settings.write_text(json.dumps({"format": 1, "watch": {"interval": 0, "store_path": "/tmp/x"}, "target": {}}))
    r = subprocess.run(
        [SYSTEM_PYTHON, "-I", str(tmp_path / "w.pyz"), "--config", str(settings), "once"],
        capture_output=True,
        text=True,
        cwd="/",
    )
    assert r.returncode == 2 and "interval = '0': out of range" in r.stderr and "Traceback" not in r.stderr
    settings.write_text(json.dumps({"format": 1, "watch": {}, "target": {}}))
    r = subprocess.run(
        [SYSTEM_PYTHON, "-I", str(tmp_path / "w.pyz"), "--config", str(settings), "once"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and "no store_path" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize(
    ("interval", "schedule"),
    [(60, "* * * * *"), (300, "*/5 * * * *"), (900, "*/15 * * * *"), (3600, "0 * * * *"), (21600, "0 */6 * * *")],
)
def test_cron_schedules(interval, schedule):
    assert remote.cron_schedule(interval) == schedule


@pytest.mark.parametrize("interval", [30, 90, 420, 5400, 18000, 60.5])
def test_intervals_cron_cannot_run_are_refused(interval):
    with pytest.raises(ConfigError, match="cron cannot run that interval"):
        remote.cron_schedule(interval)


@pytest.mark.parametrize("directory", ["relative/dir", "/home/t/watch dir", "/home/t/%d", "/home/t/../../etc", "/"])
def test_unsafe_directories_are_refused(directory):
    with pytest.raises(ConfigError, match="not an absolute path"):
        remote._check_directory(directory)
