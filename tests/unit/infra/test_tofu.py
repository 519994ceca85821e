"""OpenTofu commands per environment and provider (tasks/infra/tofu.py, tasks/commands/tofu.py)."""

from __future__ import annotations

import pytest

from tasks.config.settings import load
from tasks.errors import SettingsError
from tasks.infra import tofu
from tests.conftest import ROOT
from tests.unit.infra.profiles import settings_for


# ------------------------------------------------------------------------ commands
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
