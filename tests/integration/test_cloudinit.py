"""The rendered user-data of every profile, validated by Debian's cloud-init (22.4.2)
`cloud-init schema` in the torrust-test/cloudinit container, and the template's
top-level keys checked against cloud-init's own schema (the validator does not flag
unknown top-level keys)."""

from __future__ import annotations

import json
import subprocess

import pytest

from tasks.errors import ConfigError
from tasks.infra.cloudinit import check_user_data
from tests.integration.conftest import docker
from tests.unit.infra.profiles import KNOWN_TOP_LEVEL, PROFILES, render

SCHEMA_KEYS = r"""
import json
d = json.load(open("/usr/lib/python3/dist-packages/cloudinit/config/schemas/schema-cloud-config-v1.json"))
keys = set()
for v in d["$defs"].values():
    keys |= set(v.get("properties", {}))
print(json.dumps(sorted(keys)))
"""


def validate(image: str, files: dict[str, str], tmp_path) -> dict[str, subprocess.CompletedProcess]:
    d = tmp_path / "ud"
    d.mkdir()
    for name, text in files.items():
        (d / name).write_text(text)
    script = (
        'for f in /ud/*; do echo "=== $(basename "$f")"; cloud-init schema --config-file "$f" 2>&1; echo "rc=$?"; done'
    )
    out = docker("run", "--rm", "-v", f"{d}:/ud:ro", "--entrypoint", "sh", image, "-c", script).stdout
    results = {}
    for chunk in out.split("=== ")[1:]:
        name, _, body = chunk.partition("\n")
        results[name] = body
    return results


def test_every_profile_passes_cloud_init_schema(images, workdir, tmp_path):
    files = {f"{p}.yaml": render(workdir, p)[0] for p in PROFILES}
    files["broken.yaml"] = render(workdir, "hetzner")[0].replace("ssh_pwauth: false", "ssh_pwauth: [1]")
    results = validate(images["cloudinit"], files, tmp_path)
    assert set(results) == set(files)
    for name, body in results.items():
        if name == "broken.yaml":  # the validator can fail
            assert "rc=1" in body and "ssh_pwauth" in body, body
        else:
            assert body.strip().endswith("rc=0") and "Valid cloud-config" in body, (name, body)


def test_template_keys_exist_in_cloud_inits_schema(images):
    keys = set(
        json.loads(docker("run", "--rm", "--entrypoint", "python3", images["cloudinit"], "-c", SCHEMA_KEYS).stdout)
    )
    assert "runcmd" in keys and "write_files" in keys
    assert KNOWN_TOP_LEVEL <= keys, KNOWN_TOP_LEVEL - keys


@pytest.mark.parametrize("bad", ["runcmmd", "package_upgrades"])
def test_unknown_top_level_key_is_caught_by_our_check_not_by_cloud_init(images, workdir, tmp_path, bad):
    import yaml

    text = render(workdir, "hetzner")[0] + f"{bad}: true\n"
    body = validate(images["cloudinit"], {"x.yaml": text}, tmp_path)["x.yaml"]
    assert body.strip().endswith("rc=0")  # cloud-init says nothing
    assert set(yaml.safe_load(text)) - KNOWN_TOP_LEVEL == {bad}
    with pytest.raises(ConfigError, match=bad):  # our check does
        check_user_data(text)


def test_cloud_init_installs_exactly_the_generated_host_key(images, workdir, tmp_path, unique):
    """Finding 11, on the real cloud-init (22.4.2): its `ssh` module, run on the rendered
    user-data, deletes the image's host keys and installs the tool's key and no other,
    so the key pinned in known_hosts is the one sshd will show."""
    from tasks.infra import hostkeys
    from tests.unit.infra.profiles import settings_for

    text, _ = render(workdir, "hetzner")
    key = hostkeys.load(settings_for(workdir, "hetzner"))
    (tmp_path / "ud.yaml").write_text(text)
    script = (
        "mkdir -p /etc/ssh && for t in rsa ecdsa ed25519; do echo image > /etc/ssh/ssh_host_${t}_key; "
        "echo image > /etc/ssh/ssh_host_${t}_key.pub; done "
        "&& cloud-init --file /ud.yaml single --name ssh --frequency always >/dev/null 2>&1 "
        '&& cd /etc/ssh && for f in ssh_host_*; do echo "=== $f $(stat -c %a $f)"; cat $f; echo; done'
    )
    out = docker(
        "run", "--rm", "--name", f"{unique}-ci-ssh", "-v", f"{tmp_path / 'ud.yaml'}:/ud.yaml:ro",
        "--entrypoint", "sh", images["cloudinit"], "-c", script,
    ).stdout  # fmt: skip
    files = {}
    for chunk in out.split("=== ")[1:]:
        head, _, body = chunk.partition("\n")
        name, file_mode = head.split()
        files[name] = (file_mode, body.strip())
    assert set(files) == {"ssh_host_ed25519_key", "ssh_host_ed25519_key.pub"}, files  # the image's keys are gone
    assert files["ssh_host_ed25519_key"] == ("600", key.private.strip())
    assert files["ssh_host_ed25519_key.pub"][1] == key.public
