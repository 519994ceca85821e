"""Infrastructure without a cloud: the modules (fmt, declared variables and outputs),
the rendered cloud-init, the OpenTofu command lines, the recorded host in the settings,
and the readiness probe's parsing."""

from __future__ import annotations

import errno
import json
import shutil
import subprocess
from pathlib import Path

import hcl2
import pytest
import yaml

from tasks.config.settings import load
from tasks.errors import AuthFailed, ConfigError, ConnectionFailed, SettingsError
from tasks.infra import cloudinit, state, tofu, wait
from tests.conftest import ROOT

PROFILES = {
    "hetzner": {"TORRUST_PROVIDER": "hetzner"},
    "hetzner-volume-port": {
        "TORRUST_PROVIDER": "hetzner",
        "TORRUST_DATA_VOLUME_SIZE": "50",
        "TORRUST_SSH_PORT": "2222",
        "TORRUST_DELETION_PROTECTION": "true",
        "TORRUST_UDP_TRACKERS": "[::]:6969,[::]:6868",
        "TORRUST_TLS": "true",
    },
    "libvirt": {"TORRUST_PROVIDER": "libvirt"},
    "libvirt-no-tls": {"TORRUST_PROVIDER": "libvirt", "TORRUST_TLS": "false", "TORRUST_DATA_VOLUME_SIZE": "20"},
}
KNOWN_TOP_LEVEL = cloudinit.TOP_LEVEL_KEYS


def settings_for(workdir: Path, profile: str, **extra: str):
    key = workdir / "id_test"
    if not key.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    env = {
        "TORRUST_DEPLOY_TARGET": "ssh",
        "TORRUST_SSH_KEY": str(key),
        "TORRUST_TRACKER_ADMIN_TOKEN": "Tq7-Wm2Zr9Xk4Lp8Yv3Nb6Hc1Jd5Fs0G",
        **PROFILES[profile],
        **extra,
    }
    return load("local", root=workdir, environ=env)


def render(workdir: Path, profile: str) -> tuple[str, dict]:
    s = settings_for(workdir, profile)
    return cloudinit.render_user_data(s, s.provider, cloudinit.read_public_key(s)), s


def module_declarations(provider: str) -> tuple[dict, set]:
    variables, outputs = {}, set()
    for tf in sorted((ROOT / "infrastructure" / provider).glob("*.tf")):
        doc = hcl2.loads(tf.read_text())
        for block in doc.get("variable", []):
            variables |= {k.strip('"'): v for k, v in block.items()}
        for block in doc.get("output", []):
            outputs |= {k.strip('"') for k in block}
    return variables, outputs


# ------------------------------------------------------------------------- modules
def test_modules_are_terraform_fmt_clean():
    binary = shutil.which("tofu") or shutil.which("terraform")
    if binary is None:
        pytest.fail("terraform or tofu is required for `fmt -check`")
    res = subprocess.run(
        [binary, "fmt", "-check", "-recursive", "-diff", str(ROOT / "infrastructure")], capture_output=True, text=True
    )
    assert res.returncode == 0, res.stdout


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_every_variable_written_is_declared_and_every_required_one_written(workdir, profile):
    user_data, s = render(workdir, profile)
    written = state.tf_variables(s, user_data, cloudinit.read_public_key(s))
    declared, _ = module_declarations(s.provider)
    assert set(written) - set(declared) == set()
    assert {n for n, body in declared.items() if "default" not in body} - set(written) == set()
    json.dumps(written)  # plain JSON values only
    assert not any("token" in k.lower() for k in written)


@pytest.mark.parametrize("provider", state.PROVIDERS)
def test_every_output_the_tool_reads_exists(provider):
    _, outputs = module_declarations(provider)
    assert outputs == set(state.OUTPUTS)


def test_the_hetzner_firewall_opens_both_families_and_the_tracker_ports(workdir):
    text = (ROOT / "infrastructure/hetzner/main.tf").read_text()
    assert '"0.0.0.0/0", "::/0"' in text and "firewall_udp_ports" in text
    user_data, s = render(workdir, "hetzner-volume-port")
    v = state.tf_variables(s, user_data, cloudinit.read_public_key(s))
    assert v["firewall_udp_ports"] == [443, 6868, 6969] and v["firewall_tcp_ports"] == [80, 443]
    assert v["deletion_protection"] is True and v["ssh_port"] == 2222 and v["data_volume_size"] == 50


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


# ------------------------------------------------------------------------ commands
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


def test_tofu_commands_keep_state_per_environment_and_provider(workdir, monkeypatch):
    monkeypatch.setenv("HCLOUD_TOKEN", "secret-token-value-123456")
    a = settings_for(workdir, "hetzner")
    b = load("prod", root=workdir, environ={**dict(a.raw), "TORRUST_PROVIDER": "libvirt"})
    argv_a, argv_b = tofu.command(a, "apply"), tofu.command(b, "apply")
    assert argv_a[:4] == ["env", f"TF_DATA_DIR={workdir}/.torrust/local/infra/hetzner/.terraform", *argv_a[2:4]]
    assert f"-chdir={ROOT}/infrastructure/hetzner" in argv_a and f"-chdir={ROOT}/infrastructure/libvirt" in argv_b
    assert (
        "-auto-approve" in argv_a and f"-var-file={workdir}/.torrust/prod/infra/libvirt/terraform.tfvars.json" in argv_b
    )
    init = tofu.command(a, "init")
    assert f"-backend-config=path={workdir}/.torrust/local/infra/hetzner/terraform.tfstate" in init
    assert not any("secret-token" in x for x in argv_a + argv_b + init)


def test_binary_must_be_tofu_or_terraform(workdir):
    assert settings_for(workdir, "hetzner", TORRUST_INFRA_BINARY="/opt/bin/terraform").infra.binary.endswith(
        "terraform"
    )
    with pytest.raises(SettingsError, match="TORRUST_INFRA_BINARY"):
        settings_for(workdir, "hetzner", TORRUST_INFRA_BINARY="rm")


def test_existing_provider_has_no_module(workdir):
    s = settings_for(workdir, "hetzner", TORRUST_PROVIDER="existing")
    with pytest.raises(Exception, match="no OpenTofu module"):
        tofu.require_module(s)


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


# --------------------------------------------------------------------- readiness
def test_probe_parsing():
    out = "marker no\ncloudinit error 2\n--- log\nE: boom\n"
    assert wait.parse_probe(out) == {"marker": False, "cloud_init": "error", "log_tail": "E: boom"}
    assert wait.parse_probe("marker yes\ncloudinit done\n--- log\n")["marker"] is True


def test_connection_failures_are_classified():
    refused = ConnectionFailed("x")
    refused.cause = ConnectionRefusedError(errno.ECONNREFUSED, "refused")
    timeout = ConnectionFailed("x")
    timeout.cause = TimeoutError("timed out")
    assert wait.classify(refused) == "refused"
    assert wait.classify(timeout) == "unreachable"
    assert wait.classify(AuthFailed("no")) == "auth"


# ---------------------------------------------------------------- the stand-in
def _standin(tmp_path: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    import os
    import sys

    control = tmp_path / "control.json"
    if not control.exists():
        control.write_text(json.dumps({"outputs": {"ipv4": "127.0.0.1", "ipv6": "", "ssh_port": 22}}))
    full = {
        **os.environ,
        "TF_DATA_DIR": str(tmp_path / "data"),
        "TF_IN_AUTOMATION": "1",
        "TF_INPUT": "0",
        "TOFU_STANDIN_CONTROL": str(control),
        **(env or {}),
    }
    return subprocess.run(
        [sys.executable, str(ROOT / "tests/standins/tofu"), *args], env=full, capture_output=True, text=True
    )


def test_the_opentofu_standin_is_strict(tmp_path):
    chdir = f"-chdir={ROOT}/infrastructure/libvirt"
    assert _standin(tmp_path, chdir, "import", "x").returncode == 64
    assert _standin(tmp_path, chdir, "apply", "-target=x").returncode == 64
    assert _standin(tmp_path, "-chdir=/tmp", "init").returncode == 64
    assert _standin(tmp_path, chdir, "init", env={"TF_IN_AUTOMATION": ""}).returncode == 64
    res = _standin(tmp_path, chdir, "plan", f"-var-file={tmp_path / 'v.json'}")
    assert res.returncode == 1 and "Backend initialization required" in res.stderr
    assert _standin(tmp_path, chdir, "init", f"-backend-config=path={tmp_path / 'state'}").returncode == 0
    (tmp_path / "v.json").write_text(json.dumps({"server_name": "x", "typo_var": 1}))
    res = _standin(tmp_path, chdir, "plan", f"-var-file={tmp_path / 'v.json'}")
    assert res.returncode == 1 and "undeclared variable(s) ['typo_var']" in res.stderr
    (tmp_path / "v.json").write_text(json.dumps({"server_name": "x"}))
    res = _standin(tmp_path, chdir, "plan", f"-var-file={tmp_path / 'v.json'}")
    assert res.returncode == 1 and "No value for required variable(s)" in res.stderr
