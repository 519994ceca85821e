"""Finding 11 without a cloud: the host key the tool generates for a server it creates,
in the user-data (cloud-init's `ssh_keys:`), pinned at apply, kept secret (files 0600 in
0700 directories, redacted, sensitive in the modules), forgotten at destroy; a server
created before keys were generated keeps its own."""

from __future__ import annotations

import json
import stat
import subprocess

import hcl2
import pytest
import yaml
from cryptography.hazmat.primitives import serialization

from tasks.errors import HostKeyError
from tasks.infra import cloudinit, hostkeys, state, tofu
from tasks.runner.executor import Redactor
from tests.conftest import ROOT
from tests.unit.infra.profiles import PROFILES, settings_for


def mode(path) -> str:
    return oct(stat.S_IMODE(path.stat().st_mode))


def user_data(s) -> dict:
    return yaml.safe_load(cloudinit.render_user_data(s, s.provider, cloudinit.read_public_key(s)))


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_a_created_server_gets_the_generated_key_in_its_user_data(workdir, profile):
    s = settings_for(workdir, profile)
    doc = user_data(s)
    key = hostkeys.load(s)
    assert key is not None and doc["ssh_keys"] == {"ed25519_private": key.private, "ed25519_public": key.public}
    assert doc["ssh_deletekeys"] is True and "ssh_genkeytypes" not in doc  # only this key on the server
    private = serialization.load_ssh_private_key(doc["ssh_keys"]["ed25519_private"].encode(), password=None)
    derived = private.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    assert derived.decode() == doc["ssh_keys"]["ed25519_public"]
    assert mode(hostkeys.key_file(s)) == "0o600"
    assert mode(hostkeys.infra_dir(s)) == "0o700" and mode(workdir / ".torrust" / s.env) == "0o700"


def test_the_key_is_generated_once_per_environment_and_provider(workdir):
    s = settings_for(workdir, "hetzner")
    first = user_data(s)["ssh_keys"]
    assert user_data(s)["ssh_keys"] == first  # re-rendering keeps it: a running server keeps its key
    other = settings_for(workdir, "libvirt")
    assert user_data(other)["ssh_keys"] != first


def test_the_key_agrees_with_ssh_keygen(workdir):
    s = settings_for(workdir, "hetzner")
    key = hostkeys.load_or_create(s)
    out = subprocess.run(
        ["ssh-keygen", "-lf", str(hostkeys.key_file(s).with_suffix(".pub"))], capture_output=True, text=True
    )
    assert out.stdout.split()[1] == hostkeys.fingerprint(key.public).split()[1]
    derived = subprocess.run(["ssh-keygen", "-yf", str(hostkeys.key_file(s))], capture_output=True, text=True)
    assert derived.stdout.split()[:2] == key.public.split()


def test_a_server_created_before_keys_were_generated_keeps_its_own(workdir):
    s = settings_for(workdir, "hetzner")
    state.private_dir(state.infra_dir(s))
    state.state_file(s).write_text(json.dumps({"resources": [{"type": "hcloud_server"}]}))
    assert "ssh_keys" not in user_data(s) and hostkeys.load(s) is None
    assert tofu.secrets(s) == []  # no token in this test's environment, no key


def test_the_variables_file_holds_the_key_and_is_private(workdir):
    s = settings_for(workdir, "libvirt")
    text = cloudinit.render_user_data(s, s.provider, cloudinit.read_public_key(s))
    path = state.write_variables(s, state.tf_variables(s, text, cloudinit.read_public_key(s)))
    written = yaml.safe_load(json.loads(path.read_text())["user_data"])
    assert written["ssh_keys"]["ed25519_private"] == hostkeys.load(s).private
    assert mode(path) == "0o600" and mode(state.infra_dir(s)) == "0o700"
    assert hostkeys.infra_dir(s) == state.infra_dir(s) and hostkeys.key_file(s).parent == state.infra_dir(s)


@pytest.mark.parametrize("provider", state.PROVIDERS)
def test_the_modules_declare_user_data_sensitive(provider):
    doc = hcl2.loads((ROOT / "infrastructure" / provider / "variables.tf").read_text())
    variables = {k.strip('"'): v for block in doc["variable"] for k, v in block.items()}
    assert variables["user_data"]["sensitive"] is True


def test_opentofu_output_never_shows_the_key(workdir, monkeypatch):
    monkeypatch.setenv("HCLOUD_TOKEN", "tok-123456")
    s = settings_for(workdir, "hetzner")
    key = hostkeys.load_or_create(s)
    redact = Redactor(tofu.secrets(s))
    shown = redact(f"  + user_data = <<-EOT\n{key.private}\nEOT token tok-123456")
    assert all(line not in shown for line in key.secret_lines()) and "tok-123456" not in shown
    assert key.public.split()[1] not in repr(key) and "PRIVATE" not in repr(key)


def test_apply_pins_the_key_before_any_connection_and_destroy_forgets_it(workdir):
    s = settings_for(workdir, "hetzner")
    key = hostkeys.load_or_create(s)
    s.ssh.known_hosts.parent.mkdir(parents=True, exist_ok=True)
    old, keep = hostkeys.generate().public, hostkeys.generate().public
    s.ssh.known_hosts.write_text(f"[127.0.0.1]:2222 {old}\nother.example {keep}\n")
    state.record_host(s, host="127.0.0.1", port=2222, user="torrust", source="apply")
    assert s.ssh.known_hosts.read_text() == f"other.example {keep}\n[127.0.0.1]:2222 {key.public}\n"
    assert mode(s.ssh.known_hosts) == "0o600"
    assert state.recorded(s)["host_key"] == hostkeys.fingerprint(key.public)
    assert hostkeys.known(s.ssh.known_hosts, "127.0.0.1", 2222)
    assert not hostkeys.known(s.ssh.known_hosts, "127.0.0.1", 22)
    state.forget_host(s)
    assert hostkeys.load(s) is None and "127.0.0.1" not in s.ssh.known_hosts.read_text()


def test_an_unreadable_known_hosts_is_a_named_error(workdir):
    from tasks.errors import ConfigError

    s = settings_for(workdir, "hetzner")
    s.ssh.known_hosts.parent.mkdir(parents=True, exist_ok=True)
    s.ssh.known_hosts.write_text("[127.0.0.1]:2222 ssh-ed25519 AAAAnot-a-key\n")
    with pytest.raises(ConfigError, match="cannot be read"):
        hostkeys.known(s.ssh.known_hosts, "127.0.0.1", 2222)


def test_register_records_no_generated_key(workdir):
    s = settings_for(workdir, "hetzner")
    hostkeys.load_or_create(s)
    state.record_host(s, host="10.0.0.5", port=22, user="torrust", source="register")
    assert not s.ssh.known_hosts.exists() and state.recorded(s)["host_key"] is None


@pytest.mark.parametrize("value", ["", "MD5:aa:bb", "not a fingerprint"])
def test_a_fingerprint_must_be_sha256(workdir, value):
    from tasks.errors import ConfigError

    s = settings_for(workdir, "hetzner")
    with pytest.raises(ConfigError, match="is not a SHA256 fingerprint"):
        hostkeys.pin_verified(s, "127.0.0.1", 1, value)


def test_host_key_error_is_exit_12():
    assert HostKeyError("x").code == 12
