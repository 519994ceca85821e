"""The recorded host (tasks/infra/state.py) and its place among the settings sources."""

from __future__ import annotations

import pytest

from tasks.config.settings import load
from tasks.errors import SettingsError
from tasks.infra import state
from tests.unit.infra.profiles import settings_for


# -------------------------------------------------------------- the recorded host
def test_recorded_host_sits_above_env_file_and_below_the_process_environment(workdir):
    (workdir / ".env.prod").write_text("TORRUST_SSH_HOST=old.example.net\nTORRUST_SSH_PORT=22\n")
    s = settings_for(workdir, "hetzner")
    state.record_host(
        load("prod", root=workdir, environ=dict(s.raw)), host="203.0.113.7", port=2222, user="torrust", source="apply"
    )
    base = {k: v for k, v in s.raw.items() if not k.startswith("TORRUST_SSH_")}
    t = load("prod", root=workdir, environ=base)
    assert (t.ssh.host, t.ssh.port) == ("203.0.113.7", 2222)
    assert str(t.origins["TORRUST_SSH_HOST"]) == ".torrust/prod/host.env:2"
    u = load("prod", root=workdir, environ={**base, "TORRUST_SSH_HOST": "198.51.100.1"})
    assert u.ssh.host == "198.51.100.1"


def test_recorded_host_file_may_set_only_the_host(workdir):
    (workdir / ".torrust/local").mkdir(parents=True)
    (workdir / ".torrust/local/host.env").write_text("TORRUST_SSH_HOST=10.0.0.1\nTORRUST_DEPLOY_ROOT=/tmp\n")
    with pytest.raises(SettingsError, match="not allowed in the recorded host file"):
        load("local", root=workdir, environ={})
