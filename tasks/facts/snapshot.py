"""The deploy's first look at the target, in one round trip (scripts/snapshot.sh): the
lock, the current release and its manifest, the project's containers, whether Docker
answered, and whether the host already recorded an "unchanged" audit line."""

from __future__ import annotations

from dataclasses import dataclass

from tasks.commands import releases as cmd
from tasks.errors import MalformedFact
from tasks.facts import services
from tasks.facts.releases import ReleaseManifest, parse_current, parse_manifest
from tasks.release.layout import Layout
from tasks.runner.executor import Executor

command = cmd.snapshot


@dataclass(frozen=True)
class Snapshot:
    locked: bool
    current: str | None
    manifest: ReleaseManifest | None
    states: dict[str, services.ServiceState]
    recorded: bool = False  # the host already appended an "unchanged" audit line
    docker_ok: bool = False  # the Docker engine answered for the deploy user
    problem: str = ""  # why the current manifest could not be used (a new release replaces it)
    cron: bool = False  # the backup cron entry of the project exists
    backups: bool = False  # the backup directory holds at least one complete backup


def parse(out: str) -> Snapshot:
    head, _, rest = out.partition("--- manifest\n")
    manifest_text, _, ps_text = rest.partition("--- ps\n")
    fields = dict(line.split(" ", 1) if " " in line else (line, "") for line in head.splitlines() if line)
    current = parse_current(fields.get("CURRENT", ""))
    manifest, problem = None, ""
    if manifest_text.strip():
        try:
            manifest = parse_manifest(manifest_text, f"release.json of {current}")
        except MalformedFact as exc:
            problem = exc.message
    return Snapshot(
        fields.get("LOCKED") == "yes",
        current,
        manifest,
        services.parse(ps_text),
        fields.get("RECORDED") == "yes",
        fields.get("DOCKER") == "0",
        problem,
        fields.get("CRON") == "yes",
        fields.get("BACKUPS") == "yes",
    )


def read(
    ex: Executor, lay: Layout, project: str, want: str = "", audit_line: str = "", names=(), backup_dir: str = ""
) -> Snapshot:
    return parse(ex.run(command(lay.root, project, want, audit_line, names, backup_dir), check=False).stdout)
