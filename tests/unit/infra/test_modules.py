"""The OpenTofu modules (infrastructure/) and the strict OpenTofu stand-in."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tasks.infra import cloudinit, state
from tests.conftest import ROOT
from tests.unit.infra.profiles import PROFILES, module_declarations, render


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
