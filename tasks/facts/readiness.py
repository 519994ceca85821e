"""A new host's readiness for infra.wait (scripts/readiness.sh): the hardening marker,
cloud-init's state, the tail of its log."""

from __future__ import annotations

from dataclasses import dataclass

from tasks.commands import sh
from tasks.runner.executor import Executor


def command(marker: str) -> list[str]:
    return sh("readiness", marker)


@dataclass(frozen=True)
class Readiness:
    marker: bool
    cloud_init: str  # done | error | running | absent
    log_tail: str


def parse(text: str) -> Readiness:
    head, _, log = text.partition("--- log\n")
    facts = dict(line.split(" ", 1) for line in head.splitlines() if " " in line)
    state = (facts.get("cloudinit", "absent").split() or ["absent"])[0]
    if state not in ("done", "error", "running", "absent"):
        state = "running"  # an unknown answer is not success
    return Readiness(facts.get("marker") == "yes", state, log.rstrip())


def read(ex: Executor, marker: str) -> Readiness:
    return parse(ex.run(command(marker), check=False, timeout=60).stdout)
