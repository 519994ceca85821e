"""One deploy = one locked transaction on the target.

    lock -> compare with `current` (unchanged and healthy: stop) -> upload one archive
    -> storage directories -> `compose config -q` on the host -> pull missing images
    -> switch `current` -> `up -d --wait --remove-orphans` -> health gate
    -> audit + prune            (or, after the switch: switch back, `up` again, audit)

Before the switch nothing the running release uses is touched. After it, any failure
(a command, the health gate, a dropped connection, Ctrl-C) switches back and brings the
previous release up again; a dropped connection is reopened once for that.
"""

from __future__ import annotations

import io
import json
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

import paramiko

from tasks.commands import docker, host
from tasks.config.settings import Settings
from tasks.errors import CommandFailed, DeployFailed, PrerequisiteError, RollbackFailed, RolledBack, ToolError
from tasks.operations import lock as lock_mod
from tasks.operations.layout import Layout, is_release_id, new_release_id
from tasks.release.render import MANIFEST, Release
from tasks.runner.executor import Executor

Step = Callable[[str], object]  # a context-manager factory printing a step line
CONNECTION_ERRORS = (paramiko.SSHException, EOFError, OSError, socket.timeout)


class HealthGateFailed(ToolError):
    pass


@dataclass
class Outcome:
    status: str  # deployed | unchanged | rolled_back
    release: str
    previous: str | None
    content_sha256: str
    duration: float = 0.0
    recreated: list[str] = field(default_factory=list)
    steps: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"ok": self.status in ("deployed", "unchanged"), **self.__dict__}


# ------------------------------------------------------------------------ host facts
def compose_for(s: Settings, release_dir: str, *args: str) -> list[str]:
    return docker.compose(s.compose_project, release_dir, *args)


def ps_command(project: str) -> list[str]:
    """`docker ps` of the project's containers: the docker CLI is much faster than compose."""
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


# "service|state|status|{json}": the prefix lets the snapshot script judge health with
# shell builtins only; parse_ps reads the JSON.
PS_FORMAT = '{{.Label "com.docker.compose.service"}}|{{.State}}|{{.Status}}|{{json .}}'


def parse_ps(text: str) -> dict[str, dict]:
    """{service: {"state", "health", "id", "created"}} from `docker ps --format PS_FORMAT` lines."""
    states: dict[str, dict] = {}
    for line in text.splitlines():
        line = line.strip()
        if "{" not in line:
            continue
        row = json.loads(line[line.index("{") :])
        labels = dict(kv.split("=", 1) for kv in row.get("Labels", "").split(",") if "=" in kv)
        service = labels.get("com.docker.compose.service")
        if not service:
            continue
        status = row.get("Status", "")
        health = (
            "unhealthy"
            if "(unhealthy)" in status
            else "healthy"
            if "(healthy)" in status
            else "starting"
            if "health: starting" in status
            else ""
        )
        states[service] = {
            "state": row.get("State", ""),
            "health": health,
            "id": row.get("ID", ""),
            "created": row.get("CreatedAt", ""),
        }
    return states


def service_states(ex: Executor, s: Settings, release_dir: str = "") -> dict[str, dict]:
    out = ex.run(ps_command(s.compose_project), check=False)
    return parse_ps(out.stdout) if out.ok else {}


@dataclass
class Snapshot:
    locked: bool
    current: str | None
    manifest: dict | None
    states: dict[str, dict]
    recorded: bool = False  # the host already appended an "unchanged" audit line
    docker_ok: bool = False  # the Docker engine answered for the deploy user


SNAPSHOT_SCRIPT = r"""
root=$1; project=$2; want=$3; line=$4; format=$5; shift 5
if [ -d "$root/deploy.lock" ]; then locked=yes; else locked=no; fi
echo "LOCKED $locked"
printf 'CURRENT %s\n' "$(readlink "$root/current" 2>/dev/null)"
manifest=$(cat "$root/current/release.json" 2>/dev/null)
ps=$(docker ps --all --filter "label=com.docker.compose.project=$project" \
  --filter label=com.docker.compose.oneoff=False --format "$format" 2>/dev/null)
docker_status=$?
# Unchanged fast path: record it here, saving a round trip. Python re-checks the same
# facts and stays authoritative; this condition is at least as strict as Python's.
# Shell builtins only: no process per service.
same=no
if [ -n "$want" ] && [ "$locked" = no ]; then
  case $manifest in *"\"content_sha256\": \"$want\""*) same=yes ;; esac
fi
for svc in "$@"; do
  [ "$same" = yes ] || break
  found=no
  while IFS='|' read -r name state status _; do
    [ "$name" = "$svc" ] || continue
    found=yes
    [ "$state" = running ] || same=no
    case $status in *"(unhealthy)"* | *"health: starting"*) same=no ;; esac
  done <<EOF
$ps
EOF
  [ "$found" = yes ] || same=no
done
if [ "$same" = yes ]; then printf '%s\n' "$line" >> "$root/audit.log"; fi
echo "RECORDED $same"
echo "DOCKER $docker_status"
echo '--- manifest'
printf '%s\n' "$manifest"
echo '--- ps'
printf '%s\n' "$ps"
"""


def audit_line(record: dict) -> str:
    return json.dumps(
        {"time": datetime.now(UTC).isoformat(timespec="seconds"), "who": lock_mod.who(), **record}, sort_keys=True
    )


def snapshot_command(
    s: Settings, lay: Layout, unchanged_record: dict | None = None, services: list[str] = ()
) -> list[str]:
    want = (unchanged_record or {}).get("content_sha256", "")
    line = audit_line(unchanged_record) if unchanged_record else ""
    return ["sh", "-c", SNAPSHOT_SCRIPT, "snapshot", lay.root, s.compose_project, want, line, PS_FORMAT, *services]


def parse_snapshot(out: str) -> Snapshot:
    head, _, rest = out.partition("--- manifest\n")
    manifest_text, _, ps_text = rest.partition("--- ps\n")
    fields = dict(line.split(" ", 1) if " " in line else (line, "") for line in head.splitlines() if line)
    link = fields.get("CURRENT", "").strip().rstrip("/")
    try:
        manifest = json.loads(manifest_text) if manifest_text.strip() else None
    except json.JSONDecodeError:
        manifest = None
    return Snapshot(
        fields.get("LOCKED") == "yes",
        link.split("/")[-1] if link else None,
        manifest,
        parse_ps(ps_text),
        fields.get("RECORDED") == "yes",
        fields.get("DOCKER") == "0",
    )


def snapshot(
    ex: Executor, s: Settings, lay: Layout, unchanged_record: dict | None = None, services: list[str] = ()
) -> Snapshot:
    """Lock, current release, its manifest and the containers: one round trip. With
    `unchanged_record`, the host appends it to the audit log when the running release has
    that content hash, every service runs healthy and no lock is held."""
    return parse_snapshot(ex.run(snapshot_command(s, lay, unchanged_record, services), check=False).stdout)


def unhealthy(states: dict[str, dict], expected: list[str]) -> list[str]:
    bad = []
    for name in expected:
        st = states.get(name)
        if not st or st["state"] != "running" or st["health"] not in ("", "healthy"):
            bad.append(
                f"{name} ({'missing' if not st else st['state'] + ('/' + st['health'] if st['health'] else '')})"
            )
    return bad


def current_release(ex: Executor, lay: Layout) -> tuple[str | None, dict | None]:
    link = ex.run(host.read_link(lay.current), check=False)
    if not link.ok:
        return None, None
    release_id = link.stdout.strip().rstrip("/").split("/")[-1]
    manifest = ex.run(host.cat(f"{lay.current}/{MANIFEST}"), check=False)
    try:
        return release_id, json.loads(manifest.stdout) if manifest.ok else None
    except json.JSONDecodeError:
        return release_id, None


def inventory(ex: Executor, lay: Layout, audit_record: dict | None = None) -> tuple[list[str], set[str]]:
    """The releases on the host, oldest first, and those marked failed: one round trip
    (which first appends `audit_record` to the audit log, when given)."""
    out = ex.run(
        [
            "sh",
            "-c",
            'if [ -n "$3" ]; then (umask 077; printf "%s\n" "$3" >> "$4"); fi; '
            'ls -1 -- "$1"; echo ---; find "$1" -mindepth 2 -maxdepth 2 -name "$2"',
            "inventory",
            lay.releases,
            FAILED_MARKER,
            audit_line(audit_record) if audit_record else "",
            lay.audit,
        ],
        check=not audit_record,  # an audit line must not be lost silently
    ).stdout
    names, _, markers = out.partition("---\n")
    return sorted(n for n in names.split() if is_release_id(n)), {ln.split("/")[-2] for ln in markers.split()}


def archive(release: Release) -> bytes:
    """The release as one tar.gz: deterministic member order, modes as rendered."""
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=6) as tar:
        dirs = sorted({"/".join(f.path.split("/")[:i]) for f in release.files for i in range(1, f.path.count("/") + 1)})
        for d in dirs:
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for f in release.files:
            info = tarfile.TarInfo(f.path)
            info.size, info.mode = len(f.content), f.mode
            tar.addfile(info, io.BytesIO(f.content))
    return buf.getvalue()


# ------------------------------------------------------------------------ the steps
UNPACK_SCRIPT = r"""
set -e
releases=$1; staging=$2; target=$3; cronfile=$4; backups=$5; shift 5
mkdir -p "$releases"
rm -rf -- "$releases"/.upload-*
mkdir -m 0700 "$staging"
mkdir "$staging/tree"
# the archive arrives on stdin; modes exactly as rendered (secrets 0600), whatever the umask
tar -xzf - -C "$staging/tree" --no-same-owner --preserve-permissions
# the scheduled backup (cron.d wants root-owned files): installed when backups are on
# ($backups is their directory), removed when off; nothing when $cronfile is empty
if [ -n "$backups" ]; then mkdir -p "$backups"; src=$staging/tree/cron/torrust-backup
  if ! cmp -s "$src" "$cronfile"; then sudo=; [ "$(id -u)" = 0 ] || sudo="sudo -n"
    $sudo install -m 0644 -o root -g root "$src" "$cronfile"; fi
elif [ -n "$cronfile" ] && [ -e "$cronfile" ]; then rm -f "$cronfile" 2>/dev/null || sudo -n rm -f "$cronfile"; fi
# files a container reads through its group: FILE GID pairs until "--"
while [ "$1" != -- ]; do f=$staging/tree/$1; g=$2; shift 2
  chgrp "$g" "$f" 2>/dev/null || sudo -n chgrp "$g" "$f"; done
shift
# storage directories with the owner their container needs: DIR UID|- pairs
while [ "$#" -gt 0 ]; do d=$1; o=$2; shift 2; mkdir -p "$d"
  if [ "$o" != - ] && [ "$(stat -c %u "$d")" != "$o" ]; then
    chown "$o:$o" "$d" 2>/dev/null || sudo -n chown "$o:$o" "$d"; fi; done
chmod 0755 "$staging/tree"
mv -T -- "$staging/tree" "$target"
rm -rf -- "$staging"
"""


def cron_args(s: Settings) -> list[str]:
    """UNPACK_SCRIPT's cron arguments: the cron.d file, and the backup directory when
    backups are on (empty: remove the entry)."""
    return [f"/etc/cron.d/torrust-backup-{s.compose_project}", s.backup_dir if s.backup else ""]


def upload(ex: Executor, lay: Layout, release: Release, release_id: str, cron: list[str] = ("", "")) -> str:
    """One round trip: the archive streamed into a 0700 staging dir, unpacked (modes as
    rendered, secrets 0600), storage prepared, the backup cron entry installed or removed,
    renamed into place."""
    staging = lay.upload_dir(release_id)
    target = lay.release(release_id)
    groups = [x for f in release.files if f.group is not None for x in (f.path, str(f.group))]
    storage = [x for p, o in release.storage_dirs for x in (f"{lay.storage}/{p}", "-" if o is None else str(o))]
    argv = ["sh", "-c", UNPACK_SCRIPT, "unpack", lay.releases, staging, target, *cron, *groups, "--", *storage]
    ex.feed(argv, archive(release))
    return target


def missing_images(ex: Executor, images: list[str]) -> list[str]:
    if not images or ex.run(["docker", "image", "inspect", "--format", "{{.Id}}", *images], check=False).ok:
        return []  # all present: one round trip
    return [img for img in images if not ex.run(docker.image_present(img), check=False).ok]


def release_images(release: Release) -> list[str]:
    manifest = json.loads(release.file(MANIFEST).content)
    return sorted(set(manifest["images"].values()))


def switch(ex: Executor, lay: Layout, release_id: str | None) -> None:
    if release_id is None:
        ex.run(host.remove_link(lay.current))
    else:
        ex.run(host.symlink_atomic(f"releases/{release_id}", lay.current))


def bring_up(
    ex: Executor, s: Settings, lay: Layout, wait_timeout: int, *, pull: bool, switch_to: str | None = None
) -> None:
    """`up -d --wait` on `current`; with `switch_to`, switch `current` first in the same
    round trip (the switch is atomic and happens only if nothing before it failed)."""
    up = compose_for(
        s,
        lay.current,
        "up",
        "-d",
        "--wait",
        "--wait-timeout",
        str(wait_timeout),
        "--remove-orphans",
        "--pull",
        "missing" if pull else "never",
    )
    if switch_to is not None:
        link = lay.current
        up = [
            "sh",
            "-c",
            'ln -sfn "$1" "$2" && mv -T "$2" "$3" && shift 3 && exec "$@"',
            "switch",
            f"releases/{switch_to}",
            f"{link}.new",
            link,
            *up,
        ]
    ex.run(up, timeout=wait_timeout + 120)


ProbeRunner = Callable[[], list]  # returns health ProbeResults (tasks.health.probes)


def probe_gate(
    run_probes: ProbeRunner, rounds: int = 5, pause: float = 2.0, give_up: Callable[[], bool] = lambda: False
) -> str:
    """Protocol probes after Compose health: retried a few rounds (the proxy may need a
    moment after the tracker turns healthy), unless `give_up()` says the gate failed
    anyway; raises HealthGateFailed with the failures."""
    failed: list = []
    for attempt in range(rounds):
        results = run_probes()
        failed = [r for r in results if r.required and not r.ok]
        if not failed:
            return f"{len(results)} probes passed"
        if give_up():
            break
        if attempt + 1 < rounds:
            time.sleep(pause)
    raise HealthGateFailed("probes failed: " + "; ".join(f"{r.name} {r.target}: {r.detail}" for r in failed[:4]))


def health_gate(ex: Executor, s: Settings, lay: Layout, services: list[str]) -> dict[str, dict]:
    """Every service running, and healthy where it has a healthcheck. (The protocol probes
    that follow are the second look that catches a service without a healthcheck.)"""
    states = service_states(ex, s)
    bad = unhealthy(states, services)
    if bad:
        raise HealthGateFailed("services not healthy: " + ", ".join(bad))
    return states


def audit(ex: Executor, lay: Layout, record: dict) -> None:
    ex.run(host.append_line(lay.audit, audit_line(record)))


def prune(ex: Executor, lay: Layout, keep: int, protect: set[str], audit_record: dict | None = None) -> list[str]:
    """Keep the newest `keep` good releases; failed ones go first; never `protect`.
    `audit_record` is appended to the audit log in the same round trip as the listing."""
    releases, failed = inventory(ex, lay, audit_record)
    good = [r for r in releases if r not in failed]
    doomed = [r for r in failed if r not in protect]
    doomed += [r for r in good[:-keep] if r not in protect] if len(good) > keep else []
    if doomed:
        ex.run(["rm", "-rf", "--", *(lay.release(r) for r in doomed)])
    return doomed


# ------------------------------------------------------------------------ the transaction
@dataclass
class DeployOptions:
    pull: bool = True
    force_unlock: bool = False
    wait_timeout: int = 300
    command: str = "app.deploy"
    probes: Callable[[], ProbeRunner] | None = None  # builds the health gate's protocol probes
    preflight: Callable[[Executor], None] | None = None  # target checks before the first change


class Candidate:
    """The release to deploy. Its content hash and services may be known before it is
    rendered (tasks/release/cache.py), so a no-op deploy never renders; `release()`
    renders once, when the files are needed."""

    def __init__(self, content_sha256: str, services: list[str], render: Callable[[], Release]):
        self.content_sha256, self.services, self._render = content_sha256, services, render
        self._release: Release | None = None

    @classmethod
    def of(cls, release: Release) -> Candidate:
        c = cls(release.content_sha256, json.loads(release.file(MANIFEST).content)["services"], lambda: release)
        c._release = release
        return c

    @property
    def rendered(self) -> bool:
        return self._release is not None

    def release(self) -> Release:
        if self._release is None:
            self._release = self._render()
            self.content_sha256 = self._release.content_sha256
            self.services = json.loads(self._release.file(MANIFEST).content)["services"]
        return self._release


def deploy(
    ex: Executor,
    s: Settings,
    candidate: Candidate,
    opts: DeployOptions,
    step: Step,
    reconnect: Callable[[], Executor] | None = None,
) -> Outcome:
    started = time.monotonic()
    lay = Layout(s.deploy_root)

    def unchanged(snap: Snapshot) -> bool:
        same = bool(snap.manifest) and snap.manifest.get("content_sha256") == candidate.content_sha256
        return same and not unhealthy(snap.states, candidate.services)

    def unchanged_record() -> dict:
        return {"event": "deploy", "env": s.env, "result": "unchanged", "content_sha256": candidate.content_sha256}

    def record_unchanged(snap: Snapshot) -> Outcome:
        if not snap.recorded:
            audit(ex, lay, {**unchanged_record(), "release": snap.current})
        return Outcome("unchanged", snap.current, snap.current, candidate.content_sha256, time.monotonic() - started)

    # Fast path, one round trip: nothing changed, everything healthy, no lock held.
    with step("compare with the running release"):
        snap = snapshot(ex, s, lay, unchanged_record(), candidate.services)
    if not snap.locked and unchanged(snap):
        return record_unchanged(snap)
    if not candidate.rendered:
        with step("render release"):
            candidate.release()
    release = candidate.release()
    services = candidate.services
    # A target already running a release, whose engine just answered, needs no separate
    # preflight: the host-side `compose config` below proves Compose v2 again.
    if opts.preflight is not None and not (snap.current and snap.docker_ok):
        with step("check the target"):
            opts.preflight(ex)
    with lock_mod.HostLock(
        ex, lay, env=s.env, command=opts.command, force_unlock=opts.force_unlock, then=snapshot_command(s, lay)
    ) as held:
        snap = parse_snapshot(held.then_output)  # again, under the lock (same round trip)
        previous, before = snap.current, snap.states
        if unchanged(snap):
            return record_unchanged(snap)
        release_id = new_release_id(release.content_sha256)
        try:
            with step(f"upload release {release_id} and prepare storage"):
                upload(ex, lay, release, release_id, cron_args(s))
            with step("validate on the host (compose config) and check images"):
                with ThreadPoolExecutor(max_workers=3) as pool:  # two channels of one connection
                    config = pool.submit(ex.run, compose_for(s, lay.release(release_id), "config", "--quiet"))
                    missing = pool.submit(missing_images, ex, release_images(release)) if opts.pull else None
                    # the gate's probes are prepared meanwhile (imports, addresses): a problem
                    # with them stops the deploy here, before the switch
                    probes = pool.submit(opts.probes) if opts.probes is not None else None
                    config.result()
                    to_pull = missing.result() if missing else []
                    run_probes = probes.result() if probes else None
            for image in to_pull:
                with step(f"pull {image}"):
                    ex.run(docker.image_pull(image), timeout=opts.wait_timeout)
        except ToolError as exc:
            ex.run(host.remove_tree(lay.release(release_id)), check=False)
            if not isinstance(exc, CommandFailed):
                raise
            audit(
                ex,
                lay,
                {
                    "event": "deploy",
                    "env": s.env,
                    "result": "failed",
                    "release": release_id,
                    "previous": previous,
                    "content_sha256": release.content_sha256,
                    "error": exc.message.splitlines()[0],
                },
            )
            raise DeployFailed(
                f"deploy of {release_id} failed before the switch: {exc.message}",
                hint="the running release was not touched",
            ) from None

        try:
            with step(f"switch current to {release_id} and start"):
                bring_up(ex, s, lay, opts.wait_timeout, pull=opts.pull, switch_to=release_id)
            with step("health gate"), ThreadPoolExecutor(max_workers=1) as pool:
                states = pool.submit(health_gate, ex, s, lay, services)  # Compose's view, meanwhile
                if run_probes is not None:
                    probe_gate(run_probes, give_up=lambda: states.done() and states.exception() is not None)
                after = states.result()
        except (CommandFailed, HealthGateFailed, KeyboardInterrupt, *CONNECTION_ERRORS) as exc:
            reason = exc.message.splitlines()[0] if isinstance(exc, ToolError) else f"{type(exc).__name__}: {exc}"
            if reconnect is not None and (isinstance(exc, CONNECTION_ERRORS) or not ex.connected):
                ex = reconnect()  # explicitly: host key check, keepalive, back-off (the 2nd connection)
            _roll_back(ex, s, lay, previous, release_id, opts, step, reason)
            if isinstance(exc, KeyboardInterrupt):
                raise
            raise RolledBack(
                f"release {release_id} failed ({reason}); rolled back to {previous or 'nothing (first deploy)'}",
                hint=f"the failed release stays in {lay.release(release_id)} for inspection; "
                "`app.logs` shows why it failed",
            ) from None

        recreated = sorted(n for n in services if before.get(n, {}).get("id") != after.get(n, {}).get("id"))
        with step("record and prune"):
            record = {
                "event": "deploy",
                "env": s.env,
                "result": "deployed",
                "release": release_id,
                "previous": previous,
                "content_sha256": release.content_sha256,
                "recreated": recreated,
                "duration": round(time.monotonic() - started, 2),
            }
            prune(ex, lay, s.releases_keep, {release_id, previous} - {None}, audit_record=record)
    return Outcome("deployed", release_id, previous, release.content_sha256, time.monotonic() - started, recreated)


FAILED_MARKER = "FAILED"


def mark_failed(ex: Executor, lay: Layout, release_id: str, reason: str) -> None:
    """Keep a failed release for inspection, marked so rollbacks never pick it."""
    ex.run(host.write_marker(f"{lay.release(release_id)}/{FAILED_MARKER}", reason), check=False)


def _roll_back(ex, s, lay, previous, failed_id, opts, step, reason) -> None:
    mark_failed(ex, lay, failed_id, reason)
    try:
        with step(f"roll back to {previous or 'nothing'}"):
            switch(ex, lay, previous)
            if previous:
                bring_up(ex, s, lay, opts.wait_timeout, pull=False)
            else:  # first deploy: stop what was started, keep every volume and file
                ex.run(compose_for(s, lay.release(failed_id), "down", "--remove-orphans"), check=False)
    except (CommandFailed, *CONNECTION_ERRORS) as exc:
        detail = exc.message if isinstance(exc, ToolError) else str(exc)
        try:
            audit(
                ex,
                lay,
                {
                    "event": "deploy",
                    "env": s.env,
                    "result": "rollback_failed",
                    "release": failed_id,
                    "previous": previous,
                    "error": reason,
                },
            )
        finally:
            raise RollbackFailed(
                f"release {failed_id} failed ({reason}) and bringing back {previous} failed too: {detail}",
                hint=f"inspect with app.status; `app.rollback --to {previous}` retries" if previous else None,
            ) from None
    audit(
        ex,
        lay,
        {
            "event": "deploy",
            "env": s.env,
            "result": "rolled_back",
            "release": failed_id,
            "previous": previous,
            "error": reason,
        },
    )


def check_target(facts: dict) -> None:
    if facts["problems"]:
        raise PrerequisiteError("the target is not ready: " + "; ".join(facts["problems"]))
