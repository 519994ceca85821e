"""Docker and Compose command lines are pure data."""

from __future__ import annotations

from tasks.commands import docker


def test_compose_builder_pins_project_file_and_env_file():
    assert docker.compose_config_quiet("torrust", "/opt/torrust/releases/r1") == [
        "docker",
        "compose",
        "--project-name",
        "torrust",
        "--project-directory",
        "/opt/torrust/releases/r1",
        "--file",
        "/opt/torrust/releases/r1/compose.yaml",
        "--env-file",
        "/opt/torrust/releases/r1/.env",
        "config",
        "--quiet",
    ]


def test_validators_run_without_network_and_read_only():
    cmd = docker.caddy_validate("caddy:2.8.4", "/tmp/x/Caddyfile")
    assert cmd[:5] == ["docker", "run", "--rm", "--network", "none"]
    assert "/tmp/x/Caddyfile:/etc/caddy/Caddyfile:ro" in cmd
    prom = docker.promtool_check("prom/prometheus:v3.0.1", "/tmp/p.yml", "1000:1000")
    assert prom[prom.index("--entrypoint") + 1] == "promtool" and prom[prom.index("--user") + 1] == "1000:1000"


def test_ps_lists_only_the_projects_service_containers():
    argv = docker.ps_project("torrust")
    assert argv[:3] == ["docker", "ps", "--all"]
    assert "label=com.docker.compose.project=torrust" in argv and "label=com.docker.compose.oneoff=False" in argv
    assert argv[-1] == docker.PS_FORMAT and docker.PS_FORMAT.endswith("|{{json .}}")
