"""Settings profiles and module declarations shared by the infra unit tests."""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

import hcl2

from tasks.config.settings import load
from tasks.infra import cloudinit
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


@functools.cache
def _parsed(text: str) -> dict:
    """A module file as python-hcl2 reads it, parsed once per content (tests only read it)."""
    return hcl2.loads(text)


def module_declarations(provider: str) -> tuple[dict, set]:
    variables, outputs = {}, set()
    for tf in sorted((ROOT / "infrastructure" / provider).glob("*.tf")):
        doc = _parsed(tf.read_text())
        for block in doc.get("variable", []):
            variables |= {k.strip('"'): v for k, v in block.items()}
        for block in doc.get("output", []):
            outputs |= {k.strip('"') for k in block}
    return variables, outputs
