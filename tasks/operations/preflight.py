"""Facts about the deploy target, gathered read-only in one round trip.

What a deploy needs from its target: a Docker engine it may use, Compose v2, and a
deploy root it can write (or create). Nothing is changed on the target.
"""

from __future__ import annotations

import posixpath

from tasks.config.settings import Settings
from tasks.runner.executor import Executor

# One script, one round trip: each line "KEY value".
FACTS_SCRIPT = r"""
root=$1
printf 'docker %s\n' "$(docker version --format '{{.Server.Version}}' 2>&1 | tail -n 1)"
printf 'compose %s\n' "$(docker compose version --short 2>/dev/null)"
if [ -e "$root" ]; then echo 'exists yes'; probe=$root; else echo 'exists no'; probe=$(dirname "$root"); fi
if [ -w "$probe" ]; then echo 'writable yes'; else echo 'writable no'; fi
printf 'probe %s\n' "$probe"
printf 'current %s\n' "$(readlink "$root/current" 2>/dev/null)"
"""


def facts_command(root: str) -> list[str]:
    return ["sh", "-c", FACTS_SCRIPT, "facts", root]


def parse(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key:
            out[key] = value.strip()
    return out


def gather(ex: Executor, s: Settings) -> dict:
    raw = parse(ex.run(facts_command(s.deploy_root), check=False, timeout=60).stdout)
    problems: list[str] = []
    docker = raw.get("docker", "")
    docker_ok = bool(docker) and docker[0].isdigit()
    if not docker_ok:
        problems.append("the Docker engine is not reachable: " + (docker or "no output"))
    compose = raw.get("compose", "").lstrip("v")
    if not compose.startswith("2"):
        problems.append("Docker Compose v2 is missing (`docker compose version` failed or is not v2)")
    writable = raw.get("writable") == "yes"
    if not writable:
        problems.append(f"{raw.get('probe') or s.deploy_root} is not writable by the deploy user")
    current = raw.get("current", "")
    return {
        "target": ex.where,
        "deploy_root": s.deploy_root,
        "docker_server": docker if docker_ok else None,
        "compose": compose or None,
        "deploy_root_exists": raw.get("exists") == "yes",
        "deploy_root_writable": writable,
        "current_release": posixpath.basename(current.rstrip("/")) if current else None,
        "ok": not problems,
        "problems": problems,
    }
