"""A checkout for fleet tests: .env.NAME files and a fleets.toml in a temporary directory."""

from __future__ import annotations

from pathlib import Path

TOKEN = "Dp4-Kx9Wq2Lm7Zt5Rv8Nb3Hc6Jf1Gs0Y"  # a strong test value, never a real one


def ssh_env(host: str, **extra: str) -> dict[str, str]:
    """The settings of an environment deploying over SSH to `host` (nothing is contacted),
    with public names of its own host's."""
    return {
        "TORRUST_DEPLOY_TARGET": "ssh",
        "TORRUST_PROVIDER": "existing",
        "TORRUST_SSH_HOST": host,
        "TORRUST_DOMAIN": "h" + host.replace(".", "-").replace(":", "-") + ".trackers.torrust.test",
        "TORRUST_TRACKER_ADMIN_TOKEN": TOKEN,
        **extra,
    }


def write(root: Path, envs: dict[str, dict[str, str]], fleets: str) -> Path:
    for name, values in envs.items():
        (root / f".env.{name}").write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    (root / "fleets.toml").write_text(fleets)
    return root


THREE = {"ta": ssh_env("192.0.2.10"), "tb": ssh_env("192.0.2.11"), "tc": ssh_env("192.0.2.12")}
FLEET = '[fleet.public]\nenvironments = ["ta", "tb", "tc"]\nparallel = 2\ncanary = 1\n'
