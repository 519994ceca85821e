"""tasks/facts/target.py: what a deploy needs from its target."""

from __future__ import annotations

from tasks.facts import target
from tests.unit.facts.recorded import recorded


def parse(name: str):
    return target.parse(recorded(f"target/{name}.txt"), target="local", deploy_root="/tmp/smoke/deploy")


def test_a_ready_target():
    facts = parse("ready")
    assert facts.ok and facts.docker_server == "20.10.24+dfsg1" and facts.compose.startswith("2.")
    assert facts.deploy_root_exists and facts.current_release == "20261129T101009Z-be922269"


def test_a_new_deploy_root_is_created_in_a_writable_parent():
    facts = parse("new-root")
    assert facts.ok and not facts.deploy_root_exists and facts.current_release is None


def test_no_docker_is_named():
    facts = parse("no-docker")
    assert not facts.ok and facts.problems == [
        "the Docker engine is not reachable: tasks/commands/scripts/target-facts.sh: 5: docker: not found",
        "Docker Compose v2 is missing (`docker compose version` failed or is not v2)",
    ]
