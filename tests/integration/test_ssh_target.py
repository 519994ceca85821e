"""A Fabric-backed task (app.preflight) against a real sshd: the pinned Invoke and Fabric
work together, host keys are verified, and every failure has its own exit code."""

from __future__ import annotations

import json

from tests.integration.conftest import ADMIN_TOKEN, free_port, make_keypair


def test_unknown_host_key_refused_then_accepted_once(cli, sshhost, tmp_path):
    known = tmp_path / "known_hosts"
    env = sshhost.settings_env(known)
    refused = cli("app.preflight", "--env", "ssh-test", env=env)
    assert refused.returncode == 12, refused.stderr
    assert "is unknown" in refused.stderr and "--accept-new-host-key" in refused.stderr
    assert not known.exists()

    accepted = cli("app.preflight", "--env", "ssh-test", "--accept-new-host-key", "--json", env=env)
    assert accepted.returncode == 0, accepted.stderr
    facts = json.loads(accepted.stdout)
    assert facts["compose"].startswith("2") and facts["docker_server"] and facts["ok"] is True
    assert facts["target"] == f"torrust@[127.0.0.1]:{sshhost.port}"
    assert known.read_text().startswith(f"[127.0.0.1]:{sshhost.port} ssh-ed25519 ")
    assert oct(known.stat().st_mode)[-3:] == "600"

    again = cli("app.preflight", "--env", "ssh-test", env=env)  # recorded key: no flag needed
    assert again.returncode == 0, again.stderr


def test_changed_host_key_is_refused_with_the_rekey_command(cli, sshhost, tmp_path):
    known = tmp_path / "known_hosts"
    env = sshhost.settings_env(known)
    assert cli("app.preflight", "--env", "ssh-test", "--accept-new-host-key", env=env).returncode == 0
    recorded = known.read_text()
    sshhost.stop()
    sshhost.new_host_key()  # the server is "rebuilt" at the same address
    sshhost.start()
    for flags in ([], ["--accept-new-host-key"]):  # accepting new keys never accepts a changed one
        res = cli("app.preflight", "--env", "ssh-test", *flags, env=env)
        assert res.returncode == 12, res.stderr
        assert "changed" in res.stderr and f"ssh-keygen -f {known} -R '[127.0.0.1]:{sshhost.port}'" in res.stderr
    assert known.read_text() == recorded


def test_wrong_key_is_an_auth_failure(cli, sshhost, tmp_path):
    known = tmp_path / "known_hosts"
    env = sshhost.settings_env(known)
    assert cli("app.preflight", "--env", "ssh-test", "--accept-new-host-key", env=env).returncode == 0
    env["TORRUST_SSH_KEY"] = str(make_keypair(tmp_path / "stranger"))
    res = cli("app.preflight", "--env", "ssh-test", env=env)
    assert res.returncode == 11, res.stderr
    assert "refused our SSH credentials" in res.stderr and "Traceback" not in res.stderr


def test_passphrase_key_without_agent_is_detected_up_front(cli, sshhost, tmp_path):
    import subprocess

    key = tmp_path / "locked"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "correct horse", "-f", str(key)], check=True)
    env = {**sshhost.settings_env(tmp_path / "kh"), "TORRUST_SSH_KEY": str(key), "SSH_AUTH_SOCK": ""}
    res = cli("app.preflight", "--env", "ssh-test", env=env)
    assert res.returncode == 11 and "passphrase" in res.stderr and "ssh-agent" in res.stderr


def test_nothing_listening_is_a_connection_failure(cli, tmp_path):
    env = {
        "TORRUST_DEPLOY_TARGET": "ssh",
        "TORRUST_PROVIDER": "existing",
        "TORRUST_SSH_HOST": "127.0.0.1",
        "TORRUST_SSH_PORT": str(free_port()),
        "TORRUST_SSH_KNOWN_HOSTS": str(tmp_path / "kh"),
        "TORRUST_SSH_CONNECT_TIMEOUT": "2",
        "TORRUST_TRACKER_ADMIN_TOKEN": ADMIN_TOKEN,
    }
    res = cli("app.preflight", "--env", "ssh-test", env=env)
    assert res.returncode == 10, res.stderr
    assert "after 4 attempts" in res.stderr


def test_missing_host_is_a_config_error(cli, tmp_path):
    env = {"TORRUST_DEPLOY_TARGET": "ssh", "TORRUST_PROVIDER": "existing", "TORRUST_TRACKER_ADMIN_TOKEN": ADMIN_TOKEN}
    res = cli("app.preflight", "--env", "ssh-test", env=env)
    assert res.returncode == 2 and "TORRUST_SSH_HOST is empty" in res.stderr


def test_local_target_preflight(cli):
    res = cli("app.preflight", "--env", "local", "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["target"] == "local"
