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
@pytest.fixture(scope="module", autouse=True)
def parsed_module_cache(tmp_path_factory):
    """The stand-in parses each module file once for this file's runs (kept by content hash)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TOFU_STANDIN_CACHE", str(tmp_path_factory.mktemp("tofu-parsed")))
        yield


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


# ------------------------------------------------- the stand-in as strict as OpenTofu
def _plan_with(tmp_path: Path, provider: str, variables: dict, name: str = "terraform.tfvars.json"):
    """init + plan of a module with this variables file through the stand-in."""
    chdir = f"-chdir={ROOT}/infrastructure/{provider}"
    env = {"HCLOUD_TOKEN": "standin-token"} if provider == "hetzner" else {}
    assert _standin(tmp_path, chdir, "init", f"-backend-config=path={tmp_path / 'state'}").returncode == 0
    path = tmp_path / name
    path.write_text(json.dumps(variables) if name.endswith(".json") else variables)
    return _standin(tmp_path, chdir, "plan", f"-var-file={path}", env=env)


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_the_variables_the_tool_writes_have_the_declared_types(workdir, tmp_path, profile):
    user_data, s = render(workdir, profile)
    state.write_variables(s, state.tf_variables(s, user_data, cloudinit.read_public_key(s)))
    variables = json.loads(state.vars_file(s).read_text())  # the file itself, as OpenTofu reads it
    res = _plan_with(tmp_path, s.provider, variables)
    assert res.returncode == 0, res.stderr


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("ssh_port", "twenty-two", "var.ssh_port declared at variables.tf: a number is required."),
        ("deletion_protection", "yes", "var.deletion_protection declared at variables.tf: a bool is required."),
        ("firewall_tcp_ports", "80,443", "var.firewall_tcp_ports declared at variables.tf: list of number required."),
        ("firewall_udp_ports", [6969, "udp"], "element 1: a number is required."),
        ("server_name", ["a"], "var.server_name declared at variables.tf: string required."),
    ],
)
def test_a_wrongly_typed_variable_fails_as_in_opentofu(workdir, tmp_path, name, value, message):
    user_data, s = render(workdir, "hetzner")
    variables = {**state.tf_variables(s, user_data, cloudinit.read_public_key(s)), name: value}
    res = _plan_with(tmp_path, "hetzner", variables)
    assert res.returncode == 1 and "Invalid value for input variable" in res.stderr and message in res.stderr, (
        res.stderr
    )


def test_opentofu_converts_what_it_can(workdir, tmp_path):
    """A JSON "22" is a number to OpenTofu and 22 a string: converted, not refused."""
    user_data, s = render(workdir, "hetzner")
    variables = {**state.tf_variables(s, user_data, cloudinit.read_public_key(s)), "ssh_port": "22", "image": 24}
    assert _plan_with(tmp_path, "hetzner", variables).returncode == 0


def test_a_tfvars_file_is_read_as_hcl_and_a_missing_file_is_named(workdir, tmp_path):
    user_data, s = render(workdir, "libvirt")
    # (user_data holds ${...}, a template in HCL: this test's HCL file carries a plain one)
    variables = {**state.tf_variables(s, user_data, cloudinit.read_public_key(s)), "user_data": "#cloud-config"}
    hcl = "".join(f"{k} = {json.dumps(v)}\n" for k, v in variables.items())
    assert _plan_with(tmp_path, "libvirt", hcl, name="vars.tfvars").returncode == 0, "HCL tfvars"
    res = _standin(tmp_path, f"-chdir={ROOT}/infrastructure/libvirt", "plan", f"-var-file={tmp_path / 'none.json'}")
    assert res.returncode == 1 and "Given variables file" in res.stderr and "does not exist" in res.stderr


def test_backend_config_needs_a_backend_block(tmp_path):
    module = tmp_path / "module"
    shutil.copytree(ROOT / "infrastructure" / "libvirt", module)
    versions = module / "versions.tf"
    versions.write_text(versions.read_text().replace('backend "local" {}', ""))
    res = _standin(tmp_path, f"-chdir={module}", "init", f"-backend-config=path={tmp_path / 'state'}")
    assert res.returncode == 1 and 'Missing backend configuration: -backend-config was used without a "backend"' in (
        res.stderr
    )
