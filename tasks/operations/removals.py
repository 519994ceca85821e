"""No silent removals (issue #15, item 3): what a deploy would take away from the running
release, decided from facts before anything is touched.

A deploy from a machine whose settings miss a value production has (a CI workflow
without TORRUST_GRAFANA, TORRUST_BACKUP or a port) would remove that service, the backup
cron job or the published port without a word. `removals()` compares the running release
(the snapshot: its services, the cron entry, the ports its containers publish) with the
candidate (its services, the cron setting, the ports its compose file publishes); each
item has a token (`grafana`, `backup-cron`, `9090/tcp`, `database-driver`). A deploy goes
on only when every item is allowed: `--allow-removal` (all of them), or the token (or
`all`) in TORRUST_ALLOW_REMOVAL, committed with the settings so the decision is recorded.
The audit line names what went and what allowed it.
"""

from __future__ import annotations

from dataclasses import dataclass

import yaml

from tasks.errors import RemovalRefused
from tasks.facts.snapshot import Snapshot

ALL = "all"
DRIVER = "database-driver"
CRON = "backup-cron"


@dataclass(frozen=True)
class Removal:
    token: str  # what TORRUST_ALLOW_REMOVAL names to allow it
    text: str  # for people

    def __str__(self) -> str:
        return self.text


def driver_of(services: list[str] | tuple[str, ...]) -> str:
    return "mysql" if "mysql" in services else "sqlite3"


def compose_ports(compose_yaml: bytes | str) -> set[str]:
    """The host ports a rendered compose file publishes ("PORT/PROTO")."""
    doc = yaml.safe_load(compose_yaml) or {}
    found = set()
    for svc in (doc.get("services") or {}).values():
        for entry in svc.get("ports") or []:
            spec, _, proto = str(entry).partition("/")
            parts = spec.split(":")
            if len(parts) >= 2:
                found.add(f"{parts[-2]}/{proto or 'tcp'}")
    return found


def removals(snap: Snapshot, services: list[str], cron: bool, ports: set[str]) -> list[Removal]:
    """What the running release has that the candidate (its `services`, whether it
    installs the backup cron entry, the host `ports` it publishes) would remove."""
    if snap.manifest is None:
        return []
    old = list(snap.manifest.services)
    found = []
    if driver_of(old) != driver_of(services):
        switch = f"{driver_of(old)} to {driver_of(services)}"
        found.append(Removal(DRIVER, f"the database driver would switch from {switch}"))
    found += [Removal(n, f"service {n}") for n in old if n not in services and n != "mysql"]
    if snap.cron and not cron:
        found.append(Removal(CRON, "the scheduled backup (cron job)"))
    running = {p for n, st in snap.states.items() if n in old and st.state == "running" for p in st.ports}
    found += [Removal(p, f"published port {p}") for p in sorted(running - ports)]
    return found


def allowed_tokens(setting: str) -> set[str]:
    return {t.strip() for t in setting.split(",") if t.strip()}


def check(found: list[Removal], *, allow_flag: bool, setting: str, env: str) -> tuple[list[str], str]:
    """(the removals, what allowed them) or RemovalRefused naming every item not allowed."""
    if not found:
        return [], ""
    if allow_flag:
        return [r.token for r in found], "--allow-removal"
    tokens = allowed_tokens(setting)
    refused = [r for r in found if ALL not in tokens and r.token not in tokens]
    if not refused:
        return [r.token for r in found], "TORRUST_ALLOW_REMOVAL"
    names = ", ".join(r.token for r in refused)
    raise RemovalRefused(
        f"the deploy to '{env}' would remove what the running release has: "
        + "; ".join(str(r) for r in refused)
        + ". Nothing was changed",
        removals=[r.token for r in refused],
        hint=f"if this is wanted, re-run with --allow-removal, or set TORRUST_ALLOW_REMOVAL={names} in the "
        "environment's settings file (recorded with them); otherwise add the missing settings (a CI workflow "
        "must carry every setting production has: docs/guides/ci.md)",
    )
