"""The fleet tasks: each runs the single-environment function on every host through the
rollout (rollout.py) and returns the `Rollout` with every host's result.

Changes (deploy, rollback, backup) walk the hosts as the options say; read-only views
(dry run, status, releases, health check) ask every host at once and never stop early.
"""

from __future__ import annotations

from collections.abc import Callable

from tasks.facts import images as image_facts
from tasks.facts import releases as releases_facts
from tasks.fleet import drift, rollout
from tasks.fleet.declaration import Fleet, Member, RolloutOptions
from tasks.operations import backup as backup_mod
from tasks.operations import day2, session
from tasks.release.layout import Layout
from tasks.runner.executor import Executor
from tasks.runner.target import open_target

# Image digests per host, for drift: (executor, {name: image reference}) -> {name: digest}.
# None: not read (the releases view then compares image references and content only).
Digests = Callable[[Executor, dict[str, str]], dict[str, str]]


def everyone(fleet: Fleet) -> RolloutOptions:
    """Read-only views: every host at once, none stops the others."""
    return RolloutOptions(parallel=len(fleet.members), canary=0, continue_on_error=True)


def _quiet(fleet: Fleet) -> rollout.Progress:
    return rollout.Progress(fleet.names, stream=None)


# ------------------------------------------------------------------------ changes
def deploy(fleet: Fleet, req: session.DeployRequest, opts: RolloutOptions, progress=None) -> rollout.Rollout:
    """app.deploy --fleet: every host runs the whole transaction (its lock, gate, rollback)."""

    def work(m: Member, step) -> dict:
        return session.deploy(m.settings, req, step)

    return rollout.run(fleet.name, fleet.members, work, opts, progress, "deploy to")


def rollback(
    fleet: Fleet, opts: RolloutOptions, *, wait_timeout: int, force_unlock: bool, progress=None
) -> rollout.Rollout:
    """app.rollback --fleet: each host back to its own previous good release."""

    def work(m: Member, step) -> dict:
        with open_target(m.settings) as ex:
            return day2.rollback(ex, m.settings, None, wait_timeout=wait_timeout, step=step, force_unlock=force_unlock)

    return rollout.run(fleet.name, fleet.members, work, opts, progress, "roll back")


def backup(
    fleet: Fleet, opts: RolloutOptions, *, stop_tracker: bool, force_unlock: bool, progress=None
) -> rollout.Rollout:
    """app.backup --fleet: a backup on each host (its own lock, its own backup directory)."""

    def work(m: Member, step) -> dict:
        with step("back up on the target"), open_target(m.settings) as ex:
            result = backup_mod.backup(ex, m.settings, stop_tracker=stop_tracker, force_unlock=force_unlock)
        return {**result, "ok": True, "status": "backed_up"}

    return rollout.run(fleet.name, fleet.members, work, opts, progress, "back up")


# ------------------------------------------------------------------------ read-only views
def dry_run(fleet: Fleet, req: session.DeployRequest, progress=None) -> rollout.Rollout:
    """app.deploy --fleet --dry-run: each host's plan (diff, recreated services, pulls)."""

    def work(m: Member, step) -> dict:
        plan = session.dry_run(m.settings, req, step)
        return {**plan, "status": "unchanged" if plan["unchanged"] else "changes"}

    return rollout.run(fleet.name, fleet.members, work, everyone(fleet), progress or _quiet(fleet), "plan for")


def status(fleet: Fleet) -> rollout.Rollout:
    """app.status --fleet: each host's current release, lock and services."""

    def work(m: Member, step) -> dict:
        with open_target(m.settings) as ex:
            st = day2.status(ex, m.settings)
        state = "healthy" if st["ok"] else "unhealthy" if st["current"] else "nothing deployed"
        return {**st, "status": state, "code": 4}

    return rollout.run(fleet.name, fleet.members, work, everyone(fleet), _quiet(fleet))


def image_digests(ex, images: dict[str, str]) -> dict[str, str]:
    """{name: digest} of the images a host's current release names, as the host resolves
    them now (the registry digest, or the image ID of a locally built image)."""
    found, _missing = image_facts.resolve(ex, list(images.values()))
    return {name: found[ref].digest for name, ref in images.items() if ref in found}


def releases(fleet: Fleet, digests: Digests | None = None) -> rollout.Rollout:
    """app.releases --fleet: which host runs which release, and drift (drift.py)."""

    def work(m: Member, step) -> dict:
        with open_target(m.settings) as ex:
            rows = day2.releases(ex, m.settings)
            current = next((r for r in rows if r["current"]), None)
            manifest = releases_facts.manifest(ex, Layout(m.settings.deploy_root)) if current else None
            images = dict(manifest.images) if manifest else {}
            found = digests(ex, images) if digests is not None and images else None
        return {
            "status": "deployed" if current else "nothing deployed",
            "current": current["release"] if current else None,
            "content_sha256": current["content_sha256"] if current else None,
            "expected_sha256": session.expected_content(m.settings),
            "images": images,
            "digests": found,
            "releases": rows,
        }

    result = rollout.run(fleet.name, fleet.members, work, everyone(fleet), _quiet(fleet))
    answered = {h.env: h.detail for h in result.hosts if h.ok}
    for env, marks in drift.compare(answered).items():
        host = next(h for h in result.hosts if h.env == env)
        host.detail["drift"] = marks
        host.status = "drift" if marks else "in step"
    return result


def check(fleet: Fleet, family: str, only: str, skip: str, internal_ca: bool) -> rollout.Rollout:
    """health.check --fleet: every host's probes at once."""
    # lazy: the probes' imports (http.client, ssl, the protocol clients) cost about 70 ms
    # that a fleet deploy, which gates through the CLI's probes only when it changes, does not need
    from tasks.health import check as hc

    def work(m: Member, step) -> dict:
        result = hc.run_check(m.settings, family=family, only=only, skip=skip, trust_internal_ca=internal_ca)
        error = result.error()
        return {
            **result.as_dict(),
            "ok": result.ok,
            "status": "healthy" if result.ok else "failing",
            "code": 40,
            "failure": error.message if error else None,
        }

    return rollout.run(fleet.name, fleet.members, work, everyone(fleet), _quiet(fleet))
