"""The Compose project's containers: `docker ps` lines -> {service: ServiceState}."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass

from tasks.commands import docker
from tasks.errors import MalformedFact
from tasks.facts import images
from tasks.runner.executor import Executor

command = docker.ps_project


@dataclass(frozen=True)
class ServiceState:
    state: str  # running | exited | created | restarting | paused | dead
    health: str  # healthy | unhealthy | starting | "" (no healthcheck)
    id: str
    created: str
    image: str = ""  # as `docker ps` shows it: the reference, or a short ID once the tag moved
    ports: tuple[str, ...] = ()  # published on the host: "PORT/PROTO", sorted

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def ok(self) -> bool:
        return self.state == "running" and self.health in ("", "healthy")

    def __str__(self) -> str:
        return self.state + (f"/{self.health}" if self.health else "")


def _health(status: str) -> str:
    for marker, health in (("(unhealthy)", "unhealthy"), ("(healthy)", "healthy"), ("health: starting", "starting")):
        if marker in status:
            return health
    return ""


# "0.0.0.0:6969->6969/udp", "[::]:6969->6969/udp", "127.0.0.1:9090->9090/tcp"; a port
# without "->" is exposed, not published.
PUBLISHED_RE = re.compile(r"(\d+)->\d+/(tcp|udp|sctp)")


def published(ports: str) -> tuple[str, ...]:
    """The host ports a container publishes, from `docker ps`'s Ports column."""
    return tuple(sorted({f"{port}/{proto}" for port, proto in PUBLISHED_RE.findall(ports)}))


def parse(text: str) -> dict[str, ServiceState]:
    """From `docker ps --format PS_FORMAT` lines ("service|state|status|image|{json}"). A line
    that is not one (a non-JSON tail, a document that is not an object) is refused."""
    states: dict[str, ServiceState] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        start = line.find("|{")
        try:
            row = json.loads(line[start + 1 :]) if start >= 0 else None
        except ValueError:
            row = None
        fields = ("Labels", "Status", "State", "Image", "Ports")
        if not isinstance(row, dict) or not all(isinstance(row.get(k, ""), str) for k in fields):
            raise MalformedFact(f"`docker ps` line {number} is not a container record: {line[:120]!r}")
        labels = dict(kv.split("=", 1) for kv in row.get("Labels", "").split(",") if "=" in kv)
        service = labels.get("com.docker.compose.service")
        if service:
            states[service] = ServiceState(
                row.get("State", ""),
                _health(row.get("Status", "")),
                str(row.get("ID", "")),
                str(row.get("CreatedAt", "")),
                row.get("Image", ""),
                published(row.get("Ports", "")),
            )
    return states


def unhealthy(states: dict[str, ServiceState], expected: list[str]) -> list[str]:
    """The expected services that are missing, not running, or not healthy, described."""
    return [f"{name} ({states[name] if name in states else 'missing'})" for name in expected if not _ok(states, name)]


def _ok(states: dict[str, ServiceState], name: str) -> bool:
    return name in states and states[name].ok


def read(ex: Executor, project: str) -> dict[str, ServiceState]:
    """The project's containers; {} when Docker does not answer."""
    out = ex.run(command(project), check=False)
    return parse(out.stdout) if out.ok else {}


def moved(states: dict[str, ServiceState], expected: list[str]) -> list[str]:
    """The expected services whose image reference now points at another image than the
    one their container runs (a mutable tag moved): not "unchanged" any more."""
    return [n for n in expected if n in states and images.moved(states[n].image)]
