"""Docker and Compose command lines as data: pure functions returning argv lists.

Nothing here runs anything; `tasks.runner.executor` does. Keeping the builders pure makes
every command trivial to unit-test and keeps quoting, secrets and timeouts in one place.
"""

from __future__ import annotations

from collections.abc import Sequence

from tasks.commands import sh


def compose(project: str, directory: str, *args: str) -> list[str]:
    """`docker compose` for a rendered release directory, with the fixed project name."""
    return [
        "docker",
        "compose",
        "--project-name",
        project,
        "--project-directory",
        directory,
        "--file",
        f"{directory}/compose.yaml",
        "--env-file",
        f"{directory}/.env",
        *args,
    ]


# "service|state|status|image|{json}": the prefix lets scripts/snapshot.sh judge health
# (and whether an image's tag moved: docker shows the short ID then) with shell builtins
# only; tasks/facts/services.py reads the JSON.
PS_FORMAT = '{{.Label "com.docker.compose.service"}}|{{.State}}|{{.Status}}|{{.Image}}|{{json .}}'


def ps_project(project: str) -> list[str]:
    """`docker ps` of a Compose project's containers (the docker CLI is much faster than compose)."""
    return [
        "docker",
        "ps",
        "--all",
        "--filter",
        f"label=com.docker.compose.project={project}",
        "--filter",
        "label=com.docker.compose.oneoff=False",
        "--format",
        PS_FORMAT,
    ]


def images_present(images: Sequence[str]) -> list[str]:
    """Succeeds only when every image is present (one round trip)."""
    return image_inspect(images, "{{.Id}}")


def image_inspect(images: Sequence[str], fmt: str) -> list[str]:
    """One line per image found, in order; fails when one is missing."""
    return ["docker", "image", "inspect", "--format", fmt, *images]


def retag(pairs: Sequence[tuple[str, str]]) -> list[str]:
    """`docker tag IMAGE-ID REF` for each pair, in one round trip; stops at the first failure."""
    script = 'while [ "$#" -gt 1 ]; do docker tag "$1" "$2" || exit; shift 2; done'
    return ["sh", "-c", script, "retag", *(x for pair in pairs for x in pair)]


def container_images(containers: Sequence[str]) -> list[str]:
    """`ID IMAGE-ID` of each container: what it actually runs."""
    return ["docker", "inspect", "--type", "container", "--format", "{{.Id}} {{.Image}}", *containers]


def exec_stdin(container: str, script: str, name: str, *args: str) -> list[str]:
    """`sh -c SCRIPT` inside a container, stdin passed through (secrets travel there,
    never in argv)."""
    return ["docker", "exec", "-i", container, "sh", "-c", script, name, *args]


def started_at(container: str) -> list[str]:
    return ["docker", "inspect", "--format", "{{.State.StartedAt}}", container]


def wait_compose_idle(project: str, limit: int) -> list[str]:
    """Wait (at most `limit` s) until no `docker compose` of the project runs for this user."""
    return sh("compose-idle", project, str(int(limit)))


def compose_config_quiet(project: str, directory: str) -> list[str]:
    return compose(project, directory, "config", "--quiet")


def compose_version() -> list[str]:
    return ["docker", "compose", "version", "--short"]


def image_present(image: str) -> list[str]:
    return images_present([image])


def image_pull(image: str) -> list[str]:
    return ["docker", "pull", "--quiet", image]


def run_validator(
    image: str,
    mounts: Sequence[tuple[str, str]],
    argv: Sequence[str],
    *,
    entrypoint: str | None = None,
    user: str | None = None,
) -> list[str]:
    """A throw-away container with no network and read-only mounts, running one check."""
    cmd = ["docker", "run", "--rm", "--network", "none"]
    if user:
        cmd += ["--user", user]
    if entrypoint:
        cmd += ["--entrypoint", entrypoint]
    for source, target in mounts:
        cmd += ["--volume", f"{source}:{target}:ro"]
    return [*cmd, image, *argv]


def caddy_validate(image: str, caddyfile: str, files: Sequence[tuple[str, str]] = ()) -> list[str]:
    """`caddy validate` of a Caddyfile; `files` (source, path in the container) are the
    files it names (a private ACME server's root), mounted where the proxy has them."""
    return run_validator(
        image,
        [(caddyfile, "/etc/caddy/Caddyfile"), *files],
        ["caddy", "validate", "--config", "/etc/caddy/Caddyfile", "--adapter", "caddyfile"],
    )


def promtool_check(image: str, config: str, user: str) -> list[str]:
    return run_validator(
        image,
        [(config, "/etc/prometheus/prometheus.yml")],
        ["check", "config", "/etc/prometheus/prometheus.yml"],
        entrypoint="promtool",
        user=user,
    )
