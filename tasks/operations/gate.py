"""The health gate of a deploy, rollback or restore: Compose's view of the services, then
the protocol probes from outside, retried for a few rounds."""

from __future__ import annotations

import time
from collections.abc import Callable

from tasks.config.settings import Settings
from tasks.errors import ToolError
from tasks.facts import services
from tasks.runner.executor import Executor

ProbeRunner = Callable[[], list]  # returns health ProbeResults (tasks.health.probes)


class HealthGateFailed(ToolError):
    pass


def probe_gate(
    run_probes: ProbeRunner,
    rounds: int = 5,
    pause: float = 2.0,
    give_up: Callable[[], bool] = lambda: False,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """Protocol probes after Compose health: retried a few rounds (the proxy may need a
    moment after the tracker turns healthy), unless `give_up()` says the gate failed
    anyway; raises HealthGateFailed with the failures of the last round."""
    failed: list = []
    for attempt in range(rounds):
        results = run_probes()
        failed = [r for r in results if r.required and not r.ok]
        if not failed:
            return f"{len(results)} probes passed"
        if give_up():
            break
        if attempt + 1 < rounds:
            sleep(pause)
    raise HealthGateFailed("probes failed: " + "; ".join(f"{r.name} {r.target}: {r.detail}" for r in failed[:4]))


def compose_health(ex: Executor, s: Settings, expected: list[str]) -> dict[str, services.ServiceState]:
    """Every service running, and healthy where it has a healthcheck. (The protocol probes
    that follow are the second look that catches a service without a healthcheck.)"""
    states = services.read(ex, s.compose_project)
    bad = services.unhealthy(states, expected)
    if bad:
        raise HealthGateFailed("services not healthy: " + ", ".join(bad))
    return states


def wait_healthy(
    ex: Executor, s: Settings, expected: list[str], timeout: float, sleep: Callable[[float], None] = time.sleep
) -> None:
    """Poll Compose's view until every service is healthy, or HealthGateFailed at `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        bad = services.unhealthy(services.read(ex, s.compose_project), expected)
        if not bad:
            return
        if time.monotonic() > deadline:
            raise HealthGateFailed("services not healthy: " + ", ".join(bad))
        sleep(1)
