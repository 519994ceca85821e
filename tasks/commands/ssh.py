"""The interactive `ssh` command line for `infra.ssh` (pure)."""

from __future__ import annotations

from pathlib import Path


def interactive(
    host: str, port: int, user: str, known_hosts: Path, key: Path | None, extra: list[str] | None = None
) -> list[str]:
    """`ssh` to the deploy target with the environment's key and known_hosts, the host key
    checked strictly, no agent forwarding."""
    argv = ["ssh", "-p", str(port), "-o", f"UserKnownHostsFile={known_hosts}", "-o", "StrictHostKeyChecking=yes"]
    argv += ["-o", "ForwardAgent=no"]
    if key:
        argv += ["-i", str(key), "-o", "IdentitiesOnly=yes"]
    return [*argv, "--", f"{user}@{host}", *(extra or [])]
