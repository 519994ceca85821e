"""tasks/runner/ssh.py: what a connection is made of, before it opens (issue 11, finding 7)."""

from __future__ import annotations

import pytest

from tasks.config.settings import load
from tasks.errors import ConfigError
from tasks.runner import ssh
from tests.integration.conftest import make_keypair


@pytest.fixture
def hostile_home(tmp_path, monkeypatch):
    """A home whose Fabric/Invoke/SSH config files ask for agent forwarding and echoing."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".fabric.yaml").write_text("forward_agent: true\nconnect_kwargs:\n  allow_agent: true\n")
    (home / ".invoke.yaml").write_text("run:\n  echo: true\n  env:\n    LEAK: yes\n")
    (home / ".ssh/config").write_text("Host *\n  ForwardAgent yes\n  User root\n")
    monkeypatch.setenv("HOME", str(home))
    return home


def settings(workdir, **extra):
    env = {
        "TORRUST_DEPLOY_TARGET": "ssh",
        "TORRUST_PROVIDER": "existing",
        "TORRUST_SSH_HOST": "203.0.113.10",
        "TORRUST_TRACKER_ADMIN_TOKEN": "Tq7-Wm2Zr9Xk4Lp8Yv3Nb6Hc1Jd5Fs0G",
        **extra,
    }
    return load("staging", root=workdir, environ=env)


def test_user_config_files_never_reach_the_connection(workdir, hostile_home):
    key = make_keypair(workdir / "id_deploy")
    conn = ssh.connection(settings(workdir, TORRUST_SSH_KEY=str(key)))
    assert conn.forward_agent is False and conn.user == "torrust"
    assert conn.connect_kwargs["allow_agent"] is False and conn.connect_kwargs["look_for_keys"] is False
    assert conn.connect_kwargs["key_filename"] in (str(key), [str(key)])
    assert conn.config.run.echo is False and "LEAK" not in conn.config.run.env


def test_without_a_key_the_agent_and_default_keys_may_be_used(workdir, hostile_home):
    conn = ssh.connection(settings(workdir))
    assert "allow_agent" not in conn.connect_kwargs and conn.forward_agent is False


def test_a_damaged_known_hosts_file_is_a_named_error(workdir):
    known = workdir / "known_hosts"
    known.write_text("203.0.113.10 ssh-ed25519 AAAA!!not-base64\n")
    with pytest.raises(ConfigError, match="cannot be read"):
        ssh.connection(settings(workdir, TORRUST_SSH_KNOWN_HOSTS=str(known)))
