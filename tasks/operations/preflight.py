"""Facts about the deploy target, gathered read-only before anything is decided.

What a deploy needs from its target: a Docker engine it may use, Compose v2, and a
deploy root it can write (or create). Nothing is changed on the target.
"""

from __future__ import annotations

import posixpath

from tasks.commands import docker
from tasks.config.settings import Settings
from tasks.runner.executor import Executor


def gather(ex: Executor, s: Settings) -> dict:
    facts: dict = {"target": ex.where, "deploy_root": s.deploy_root, "problems": []}
    problems: list[str] = facts["problems"]
    r = ex.run(docker.docker_server_version(), check=False, timeout=30)
    facts["docker_server"] = r.stdout.strip() if r.ok else None
    if not r.ok:
        problems.append("the Docker engine is not reachable: " + (r.stderr.strip().splitlines() or ["no output"])[-1])
    r = ex.run(docker.compose_version(), check=False, timeout=30)
    version = r.stdout.strip().lstrip("v") if r.ok else ""
    facts["compose"] = version or None
    if not version.startswith("2"):
        problems.append("Docker Compose v2 is missing (`docker compose version` failed or is not v2)")
    root = s.deploy_root
    exists = ex.run(docker.path_exists(root), check=False).ok
    facts["deploy_root_exists"] = exists
    probe = root if exists else posixpath.dirname(root)
    facts["deploy_root_writable"] = ex.run(docker.test_writable(probe), check=False).ok
    if not facts["deploy_root_writable"]:
        problems.append(f"{probe} is not writable by the deploy user")
    current = ex.run(docker.read_link(f"{root}/current"), check=False)
    facts["current_release"] = posixpath.basename(current.stdout.strip()) if current.ok else None
    facts["ok"] = not problems
    return facts
