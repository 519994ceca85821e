"""The watch on another host: installed on the SSH test host (a real sshd, Debian's
python3 and cron, no venv, no tool checkout) as a cron job; cron runs its rounds against
the test stack; the store is read back over SFTP, merged, and reported."""

from __future__ import annotations

import json
import stat
import time

import pytest

from tasks.config.secrets import Secret
from tasks.config.settings import load
from tasks.errors import ConfigError, PrerequisiteError, StoreMissing
from tasks.runner.target import connect_executor
from tasks.watch import remote
from tasks.watch.config import WatchConfig
from tasks.watch.report import ReportInput, render
from tasks.watch.store import Store
from tasks.watch.targets import spec_from_settings
from tasks.watch.uptime import summarize
from tests.integration.conftest import SSHHost, docker, free_port
from tests.watchservers import wait_for

TOKEN_URL = "http://127.0.0.1:9/hooks/T1/B2/rem0te-Xk4Lp8Yv3Nb6Hc1"


@pytest.fixture
def vantage_host(images, tmp_path_factory, unique):
    """The SSH test host in a directory of its own (the stack fixture uses tmp_path)."""
    host = SSHHost(f"{unique}-vantage", free_port(), tmp_path_factory.mktemp("vantage"), images["sshhost"])
    host.start()
    yield host
    host.stop()


@pytest.fixture
def vantage(vantage_host, workdir, tmp_path):
    s = load("vantage", root=workdir, environ=vantage_host.settings_env(tmp_path / "known_hosts"))
    ex = connect_executor(s, accept_new_host_key=True)
    yield ex
    ex.ctx.close()


def test_install_runs_from_cron_and_the_store_comes_back(rendered_stack, vantage_host, vantage, tmp_path):
    spec = spec_from_settings(rendered_stack.settings)
    cfg = WatchConfig(
        store_path=tmp_path / "unused-here.sqlite",
        vantage="sshhost",
        interval=60,
        jitter=0,
        probe_timeout=2,
        probe_attempts=1,
        webhook_url=Secret(TOKEN_URL),
    )
    directory = remote.default_directory(vantage, "local")
    assert directory == "/home/torrust/.torrust-watch/local"
    done = remote.install(vantage, cfg, spec, "local", directory)
    assert done.schedule == "* * * * *" and len(done.probes) == 6 and done.python.startswith("Python 3.11")
    line = remote.installed_line(vantage, "local", directory)
    assert line.startswith(f"* * * * * python3 {directory}/torrust-watch.pyz --config {directory}/watch.json")
    # the settings file holds the secrets: 0600, and nothing printed them
    settings = vantage.ctx.sftp().stat(f"{directory}/watch.json")
    assert stat.S_IMODE(settings.st_mode) == 0o600
    assert json.loads(vantage.get(f"{directory}/watch.json"))["watch"]["webhook_url"] == TOKEN_URL
    assert all("rem0te" not in " ".join(r.argv) for r in vantage.history)
    # a second install replaces the block, keeps one
    remote.install(vantage, cfg, spec, "local", directory)
    crontab = vantage.run(["crontab", "-l"]).stdout
    assert crontab.count("torrust-watch.pyz") == 1
    docker("exec", vantage_host.name, "cron")  # the host's cron daemon (the fixture starts it off)
    copy = tmp_path / "fetched.sqlite"

    with pytest.raises(StoreMissing, match=rf"no watch store at {directory}/watch.sqlite"):
        remote.fetch_store(vantage, directory, copy)  # before cron's first round

    def recorded() -> int:
        try:
            remote.fetch_store(vantage, directory, copy)
        except StoreMissing:
            return 0
        with Store.open(copy, readonly=True) as st:
            return st.round_count("sshhost")

    wait_for(lambda: recorded() >= 1, timeout=150, interval=5)  # cron fires at the next minute
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600
    with Store.open(copy, readonly=True) as st:
        summary = summarize([st], "24h", int(time.time() * 1000))
        assert {(x.kind, x.family) for x in summary.lines} == {(k, f) for k in ("udp", "http", "api") for f in (4, 6)}
        assert all(x.uptime == 100.0 for x in summary.lines), [(x.label, x.uptime) for x in summary.lines]
        html = render(ReportInput("local", [st], int(time.time() * 1000)))
    assert "sshhost: running" in html
    # merged into this machine's store, next to its own vantage
    with Store.open(tmp_path / "here.sqlite", create=True) as mine:
        counts = mine.import_from(copy, int(time.time() * 1000), 7)
        assert counts["results"] >= 6 and mine.last_rounds().keys() == {"sshhost"}
    cron_errors = vantage.run(["cat", f"{directory}/cron.err"], check=False).stdout
    assert "Traceback" not in cron_errors
    remote.uninstall(vantage, "local", directory)
    assert remote.installed_line(vantage, "local", directory) is None
    assert vantage.run(["test", "-f", f"{directory}/watch.sqlite"], check=False).ok  # the store is kept
    remote.uninstall(vantage, "local", directory, purge=True)
    assert not vantage.run(["test", "-d", directory], check=False).ok


def test_a_host_without_the_interpreter_or_with_a_bad_interval_is_refused(rendered_stack, vantage, tmp_path):
    spec = spec_from_settings(rendered_stack.settings)
    cfg = WatchConfig(store_path=tmp_path / "x.sqlite")
    directory = "/home/torrust/.torrust-watch/refused"
    with pytest.raises(PrerequisiteError, match=r"needs Python 3.11\+ with SQLite 3.27\+ \(no python3\)"):
        remote.install(vantage, cfg, spec, "local", directory, python="python3.99")
    with pytest.raises(ConfigError, match="cron cannot run that interval"):
        remote.install(vantage, WatchConfig(store_path=tmp_path / "x", interval=90), spec, "local", directory)
    assert not vantage.run(["test", "-e", directory], check=False).ok  # nothing was written
