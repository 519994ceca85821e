"""One environment's deploy from start to end: what `app.deploy --env NAME` runs, and what a
fleet rollout runs for each of its hosts (tasks/fleet/rollout.py).

    the candidate  (the release cache says what these exact inputs render to; else render)
    connect        (one executor: this machine, or one SSH connection)
    deploy         (the transaction of deploy.py) or its dry run (plan.py)
    close          (the connection, and the second one a rollback may have opened)

`step` prints (or records) a step line; the caller chooses: the CLI's `output.step`, or a
fleet host's prefixed, thread-safe one.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

from tasks.config.settings import Settings
from tasks.facts import target
from tasks.operations import deploy as deploy_mod
from tasks.operations import gate, plan
from tasks.release import cache
from tasks.release import render as render_mod
from tasks.runner.executor import Executor
from tasks.runner.target import connect_executor

# What the CLI passes in (tasks/cli/app.py; the health layer sits above this one):
# the health gate's protocol probes, settings -> (executor -> probe runner), as
# DeployOptions.probes takes them;
GateProbes = Callable[[Settings], Callable[[Executor], gate.ProbeRunner]]
# the gate's wait for the proxy's certificates, (settings, when the deploy began) -> the
# wait, or None without TLS, as DeployOptions.certificates takes it;
CertificateWait = Callable[[Settings, float], Callable[[Executor], str] | None]
# a look after the transaction, on its connection: (executor, settings, the outcome's
# document, step) -> keys added to the result (e.g. the host's network path).
After = Callable[[Executor, Settings, dict, deploy_mod.Step], dict]


@dataclass(frozen=True)
class DeployRequest:
    """The flags of one deploy, the same for every host of a fleet."""

    pull: bool = True
    force_unlock: bool = False
    accept_new_host_key: bool = False
    wait_timeout: int = 300
    probes: GateProbes | None = None  # None: gate on Compose health only (--no-probes)
    certificates: CertificateWait | None = None
    after: After | None = None
    allow_removal: bool = False  # --allow-removal (TORRUST_ALLOW_REMOVAL is read from the settings)
    upgrade_backup: bool = True  # False: --no-upgrade-backup (TORRUST_UPGRADE_BACKUP=false also skips it)


def candidate(s: Settings, step: deploy_mod.Step, *, use_cache: bool = True) -> deploy_mod.Candidate:
    """The release to deploy: known from the release cache (rendered later, and only if the
    host differs), or rendered now and remembered."""

    def render_and_remember():
        release = render_mod.render(s)
        cache.store(s, release.content_sha256, render_mod.services(s))
        return release

    known = cache.lookup(s) if use_cache else None
    if known:
        return deploy_mod.Candidate(*known, render_and_remember)
    with step(f"render release for '{s.env}'"):
        return deploy_mod.Candidate.of(render_and_remember())


def expected_content(s: Settings) -> str:
    """The content hash `app.deploy` would deploy for these settings now (no host needed)."""
    known = cache.lookup(s)
    return known[0] if known else candidate(s, _quiet).content_sha256


def deploy(s: Settings, req: DeployRequest, step: deploy_mod.Step) -> dict:
    """Deploy one environment: locked, health-gated, rolled back on failure (deploy.py).
    Returns the outcome's document, with what `req.after` adds."""
    started = time.monotonic()
    chosen = candidate(s, step)
    opts = deploy_mod.DeployOptions(
        pull=req.pull,
        force_unlock=req.force_unlock,
        wait_timeout=int(req.wait_timeout),
        probes=None if req.probes is None else req.probes(s),
        preflight=lambda e: deploy_mod.check_target(target.read(e, s.deploy_root)),
        certificates=None if req.certificates is None else req.certificates(s, started),
        allow_removal=req.allow_removal,
        upgrade_backup=s.upgrade_backup and req.upgrade_backup,
    )
    opened: list[Executor] = []

    def connect(**kwargs) -> Executor:
        ex = connect_executor(s, **kwargs)
        opened.append(ex)
        return ex

    try:
        with step(f"connect to the '{s.env}' target"):
            ex = connect(accept_new_host_key=req.accept_new_host_key)
        result = deploy_mod.deploy(ex, s, chosen, opts, step, reconnect=connect).as_dict()
        if req.after is not None:
            result.update(req.after(opened[-1], s, result, step))  # the connection the deploy ended on
        return result
    finally:
        _close(opened)


def dry_run(s: Settings, req: DeployRequest, step: deploy_mod.Step) -> dict:
    """What a deploy of one environment would change, read-only (plan.py)."""
    release = candidate(s, step, use_cache=False).release()
    opened: list[Executor] = []
    try:
        with step(f"connect to the '{s.env}' target"):
            opened.append(connect_executor(s, accept_new_host_key=req.accept_new_host_key))
        with step("check the target"):
            deploy_mod.check_target(target.read(opened[0], s.deploy_root))
        return plan.plan(opened[0], s, release)
    finally:
        _close(opened)


def _close(executors: list[Executor]) -> None:
    for ex in executors:
        if ex.remote:
            ex.ctx.close()


def _quiet(title: str) -> contextlib.nullcontext:
    return contextlib.nullcontext()
