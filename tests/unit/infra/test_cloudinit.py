"""cloud-init user-data and the hardening script (tasks/infra/cloudinit.py)."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from tasks.config.settings import load
from tasks.errors import ConfigError
from tasks.infra import cloudinit
from tests.unit.infra.profiles import KNOWN_TOP_LEVEL, PROFILES, render, settings_for


# ----------------------------------------------------------------------- cloud-init
@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_rendered_user_data(workdir, profile):
    text, s = render(workdir, profile)
    assert text.startswith("#cloud-config\n")
    doc = yaml.safe_load(text)
    assert set(doc) <= KNOWN_TOP_LEVEL, set(doc) - KNOWN_TOP_LEVEL
    user = doc["users"][0]
    assert user["name"] == "torrust" and user["lock_passwd"] is True and "docker" in user["groups"]
    assert user["ssh_authorized_keys"] == [cloudinit.read_public_key(s)]
    assert doc["ssh_pwauth"] is False and doc["disable_root"] is True and doc["package_upgrade"] is True
    assert {"docker.io", "docker-compose-v2", "ufw", "unattended-upgrades"} <= set(doc["packages"])
    files = {f["path"]: f["content"] for f in doc["write_files"]}
    # the one hardening script, byte for byte (infra.bootstrap runs the same file)
    assert files["/usr/local/sbin/torrust-harden"] == cloudinit.HARDEN_SCRIPT.read_text()
    env = dict(line.split("=", 1) for line in files["/etc/torrust/harden.env"].splitlines())
    assert env["SSH_PORT"] == f"'{s.ssh.port}'" and env["MARKER"] == f"'{cloudinit.MARKER}'"
    assert (env["DATA_DEVICE"] != "''") == (s.infra.data_volume_size > 0)
    assert doc["runcmd"] == [["bash", "/usr/local/sbin/torrust-harden", "/etc/torrust/harden.env"]]


@pytest.mark.parametrize(
    "text, problem",
    [
        ("---\nusers: []\n", "must start with '#cloud-config'"),
        ("#cloud-config\nruncmmd: []\n", "unknown top-level keys ['runcmmd']"),
        ("#cloud-config\n- a\n", "(not a mapping)"),
        ("#cloud-config\nusers: [\n", "not YAML"),
    ],
)
def test_what_the_schema_misses_is_refused(text, problem):
    with pytest.raises(ConfigError) as info:
        cloudinit.check_user_data(text)
    assert problem in info.value.message


def test_rendering_is_deterministic(workdir):
    assert render(workdir, "hetzner")[0] == render(workdir, "hetzner")[0]


def test_a_private_key_or_garbage_is_refused_as_public_key(workdir):
    s = settings_for(workdir, "hetzner", TORRUST_SSH_PUBLIC_KEY=str(workdir / "id_test"))
    with pytest.raises(ConfigError, match="not one OpenSSH public key line"):
        cloudinit.read_public_key(s)


def test_unknown_hardening_step_is_refused(workdir):
    s = settings_for(workdir, "hetzner")
    with pytest.raises(ConfigError, match="unknown hardening step"):
        cloudinit.harden_env(s, "hetzner", ("firewal",))


def test_hardening_script_passes_shellcheck():
    if shutil.which("shellcheck") is None:
        pytest.fail("shellcheck is required (installed by .ci/install.sh)")
    res = subprocess.run(["shellcheck", str(cloudinit.HARDEN_SCRIPT)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout


# ------------------------------------------------------- the network parts (issue 13)
def harden_function(name: str, call: str) -> str:
    """Run one function of the hardening script on its own (bash, no root, no side effects)."""
    text = cloudinit.HARDEN_SCRIPT.read_text()
    body = text[text.index(f"{name}() {{") :]
    body = body[: body.index("\n}\n") + 3]
    return subprocess.run(["bash", "-c", f"{body}\n{call}"], capture_output=True, text=True, check=True).stdout


@pytest.mark.parametrize(
    ("cpus", "mask"), [(2, "3"), (8, "ff"), (32, "ffffffff"), (40, "ff,ffffffff"), (64, "ffffffff,ffffffff")]
)
def test_rps_mask_covers_every_cpu(cpus, mask):
    assert harden_function("cpu_mask", f"cpu_mask {cpus}").strip() == mask


def test_hardening_env_carries_the_network_settings(workdir):
    s = load("local", root=workdir, environ={"TORRUST_UDP_TRACKERS": "[::]:6969,[::]:6868"})
    env = cloudinit.harden_env(s, "existing", public_addresses=("203.0.113.7", "2001:db8::7"))
    lines = dict(line.split("=", 1) for line in env.splitlines())
    assert lines["UDP_PORTS"] == "'6868 6969'" and lines["CONNTRACK_MAX"] == "'1048576'"
    assert (lines["UDP_TIMEOUT"], lines["UDP_TIMEOUT_STREAM"], lines["RPS_FLOW_ENTRIES"]) == ("'10'", "'15'", "'32768'")
    assert lines["PUBLIC_ADDRESSES"] == "'203.0.113.7 2001:db8::7'"
    assert "network" in cloudinit.STEPS


def test_hardening_refuses_a_public_address_that_is_not_one(tmp_path):
    env = tmp_path / "harden.env"
    env.write_text(
        "DEPLOY_USER=u\nDEPLOY_ROOT=/x\nSSH_PORT=22\nCONNTRACK_MAX=1\nMARKER=/m\nPUBLIC_ADDRESSES='1.2.3.4 $(reboot)'\n"
    )
    script = cloudinit.HARDEN_SCRIPT.read_text().replace('[ "$(id -u)" = 0 ] ||', "true ||", 1)
    res = subprocess.run(["bash", "-c", script, "torrust-harden", str(env)], capture_output=True, text=True)
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.strip() == "torrust-harden: PUBLIC_ADDRESSES: '$(reboot)' is not an address"
