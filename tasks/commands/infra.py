"""Commands on a host being prepared (pure): the sudo check, the hardening run."""

from __future__ import annotations


def sudo_check() -> list[str]:
    """Succeeds when the deploy user has passwordless sudo."""
    return ["sudo", "-n", "true"]


def harden(script: str, env_file: str) -> list[str]:
    """Run the uploaded hardening script (infrastructure/cloud-init/harden.sh) with sudo."""
    return ["sudo", "-n", "bash", script, env_file]
