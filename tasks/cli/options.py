"""What the tasks share: the help of common flags and loading an environment's settings."""

from __future__ import annotations

from pathlib import Path

from tasks.cli.output import note
from tasks.config import settings as settings_mod

ENV_HELP = "environment name: reads .env then .env.NAME (default: local)"
JSON_HELP = "print one machine-readable JSON result on stdout"
FORCE_UNLOCK_HELP = "take over a stale lock (its process is gone); a live lock is never taken over"
WAIT_TIMEOUT_HELP = "seconds to wait for the services to become healthy (default 300)"
NO_PROBES_HELP = "gate on Compose health only, without the UDP/HTTP/API probes from this machine"
FLEET_HELP = "a fleet of fleets.toml instead of --env: every environment of it (docs/guides/fleet.md)"
FLEET_VIEW_HELP = "every host of this fleet (fleets.toml) at once, one table, instead of --env"
PARALLEL_HELP = "with --fleet: hosts at a time (default: the fleet's `parallel`, else 1)"
CONTINUE_HELP = "with --fleet: go on with the other hosts after a host fails (never after a failed canary)"


def load(env: str) -> settings_mod.Settings:
    s = settings_mod.load(env, root=Path.cwd())
    for w in s.warnings:
        note(f"warning: {w}")
    return s
