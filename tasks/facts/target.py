"""What a deploy needs from its target, read-only in one round trip (scripts/target-facts.sh):
a Docker engine the deploy user may use, Compose v2, a deploy root it can write or create."""

from __future__ import annotations

import posixpath
from dataclasses import asdict, dataclass, field

from tasks.commands import sh
from tasks.runner.executor import Executor


def command(root: str) -> list[str]:
    return sh("target-facts", root)


@dataclass(frozen=True)
class TargetFacts:
    target: str
    deploy_root: str
    docker_server: str | None
    compose: str | None
    deploy_root_exists: bool
    deploy_root_writable: bool
    current_release: str | None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict:
        return {**asdict(self), "ok": self.ok}


def parse(text: str, *, target: str, deploy_root: str) -> TargetFacts:
    raw: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key:
            raw[key] = value.strip()
    problems: list[str] = []
    docker = raw.get("docker", "")
    docker_ok = bool(docker) and docker[0].isdigit()
    if not docker_ok:
        problems.append("the Docker engine is not reachable: " + (docker[:200] or "no output"))
    compose = raw.get("compose", "").lstrip("v")
    if not compose.startswith("2"):
        problems.append("Docker Compose v2 is missing (`docker compose version` failed or is not v2)")
    writable = raw.get("writable") == "yes"
    if not writable:
        problems.append(f"{raw.get('probe') or deploy_root} is not writable by the deploy user")
    current = raw.get("current", "")
    return TargetFacts(
        target=target,
        deploy_root=deploy_root,
        docker_server=docker if docker_ok else None,
        compose=compose or None,
        deploy_root_exists=raw.get("exists") == "yes",
        deploy_root_writable=writable,
        current_release=posixpath.basename(current.rstrip("/")) if current else None,
        problems=problems,
    )


def read(ex: Executor, deploy_root: str) -> TargetFacts:
    out = ex.run(command(deploy_root), check=False, timeout=60)
    return parse(out.stdout, target=ex.where, deploy_root=deploy_root)
