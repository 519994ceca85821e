"""app.rotate-secrets (issue #15, item 4): new strong secrets, applied in one transaction.

Under the host lock: the new database passwords are set inside the running database
container (ALTER USER, the passwords on stdin), then the release rendered with the new
secrets is deployed (the deploy transaction, under this lock), whose gate also proves the
new secrets work and the old ones are refused. Any failure puts everything back: the
deploy's own rollback runs `restore_db` after switching back and before the previous
release starts (so it never meets a database with the new passwords); a failure before
the switch, or a dropped connection, restores the passwords here. The CLI writes the new
values into .env.NAME first (the old file kept as a 0600 backup) and puts the old file
back when the rotation is undone. Nothing secret is ever on a command line, in the audit
line or in the result: variable names only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from tasks.commands import docker
from tasks.commands import secrets as cmd
from tasks.config.settings import Settings
from tasks.errors import (
    CommandFailed,
    ConfigError,
    RollbackFailed,
    RolledBack,
    RotationFailed,
    RotationRolledBack,
    ToolError,
)
from tasks.facts import services
from tasks.operations import day2
from tasks.operations import deploy as deploy_mod
from tasks.operations import lock as lock_mod
from tasks.operations import releases as store
from tasks.release.layout import Layout
from tasks.runner.executor import Executor
from tasks.runner.ssh import CONNECTION_ERRORS

# --only NAME -> (variable, Settings field, what uses it)
ROTATABLE = {
    "admin-token": ("TORRUST_TRACKER_ADMIN_TOKEN", "admin_token", "tracker"),
    "mysql-password": ("TORRUST_MYSQL_PASSWORD", "mysql_password", "mysql"),
    "mysql-root-password": ("TORRUST_MYSQL_ROOT_PASSWORD", "mysql_root_password", "mysql"),
    "grafana-admin-password": ("TORRUST_GRAFANA_ADMIN_PASSWORD", "grafana_admin_password", "grafana"),
}


def applicable(s: Settings) -> list[str]:
    used = {"tracker"} | ({"mysql"} if s.mysql else set()) | ({"grafana"} if s.grafana else set())
    return [name for name, (_, _, user) in ROTATABLE.items() if user in used]


def choose(s: Settings, only: list[str]) -> list[str]:
    """The secrets to rotate: every one the environment uses, or those `--only` names
    (by short name or variable); ConfigError naming what is allowed otherwise."""
    names = applicable(s)
    if not only:
        return names
    by_var = {var: name for name, (var, _, _) in ROTATABLE.items()}
    chosen = []
    for item in only:
        name = by_var.get(item, item)
        if name not in names:
            raise ConfigError(
                f"--only {item[:60]!r}: not a secret this environment uses",
                hint="allowed: " + ", ".join(names) + " (or their variable names)",
            )
        chosen.append(name)
    return list(dict.fromkeys(chosen))


def check_sources(s: Settings, names: list[str]) -> None:
    """A secret set in the process environment (a CI secret store) wins over .env.NAME: the
    rotation could not take effect there. Refused, nothing written."""
    from_env = [ROTATABLE[n][0] for n in names if str(s.origins.get(ROTATABLE[n][0], "")) == "environment"]
    if from_env:
        raise ConfigError(
            f"{', '.join(from_env)} come(s) from the process environment, which wins over .env.{s.env}",
            hint="rotate them in the secret store that sets them (and deploy), or unset them here to rotate the file",
        )


def variables(names: list[str]) -> list[str]:
    return [ROTATABLE[n][0] for n in names]


# ------------------------------------------------------------------------ the database
def set_db_passwords(ex: Executor, s_auth: list[str], s: Settings, root: str | None, user: str | None) -> None:
    """ALTER USER inside the running database container, as root authenticated with the
    first of `s_auth` that works; `root`/`user`: the new passwords (None: unchanged)."""
    lay = Layout(s.deploy_root)
    sql = cmd.alter_users_sql(s.mysql_user, root, user)
    ex.feed(cmd.mysql_root(s.compose_project, lay.current), cmd.root_input(s_auth[0], s_auth[1], sql))


def can_log_in(ex: Executor, s: Settings, user: str, password: str) -> bool:
    """Whether MySQL lets `user` in over TCP with `password` (refused: False)."""
    argv = cmd.mysql_login(s.compose_project, Layout(s.deploy_root).current, user)
    r = ex.feed(argv, password.encode() + b"\n", check=False)
    if r.exit_status not in (0, 3):
        raise ToolError(f"checking the MySQL login of {user} failed: {(r.stderr or r.stdout).strip()[:200]}")
    return r.exit_status == 0


def db_checks(ex: Executor, old: Settings, new: Settings, names: list[str]) -> list[tuple[str, bool, str]]:
    """(check, passed, detail): the new database passwords work and the old ones are refused."""
    results = []
    for name, user in (("mysql-root-password", "root"), ("mysql-password", new.mysql_user)):
        if name not in names:
            continue
        field = ROTATABLE[name][1]
        works = can_log_in(ex, new, user, getattr(new, field).reveal())
        refused = not can_log_in(ex, new, user, getattr(old, field).reveal())
        results.append((f"mysql {user}: new password works", works, "logged in" if works else "refused"))
        results.append((f"mysql {user}: old password refused", refused, "refused" if refused else "STILL ACCEPTED"))
    return results


# ------------------------------------------------------------------------ the transaction
@dataclass
class Rotation:
    old: Settings
    new: Settings
    names: list[str]

    @property
    def db(self) -> bool:
        return any(n in self.names for n in ("mysql-password", "mysql-root-password"))

    def value(self, s: Settings, name: str) -> str | None:
        return getattr(s, ROTATABLE[name][1]).reveal() if name in self.names else None

    def apply_db(self, ex: Executor) -> None:
        """The new passwords (root authenticated with the old one, or the new if a lost
        connection already applied them)."""
        old_root, new_root = self.old.mysql_root_password.reveal(), self.new.mysql_root_password.reveal()
        root, user = self.value(self.new, "mysql-root-password"), self.value(self.new, "mysql-password")
        set_db_passwords(ex, [old_root, new_root], self.old, root, user)

    def reset_grafana(self, ex: Executor) -> None:
        """Grafana keeps the admin password in its database: set the new one there."""
        argv = cmd.grafana_reset(self.new.compose_project, Layout(self.new.deploy_root).current)
        ex.feed(argv, self.new.grafana_admin_password.reveal().encode() + b"\n")

    def restore_db(self, ex: Executor) -> None:
        """The old passwords again (root authenticated with the new one, or the old). The
        database is started first: a deploy cut off mid-`up` (a dropped connection) can
        leave its container created but not running."""
        lay = Layout(self.old.deploy_root)
        up = ("up", "-d", "--wait", "--no-deps", "mysql")
        ex.run(docker.compose(self.old.compose_project, lay.current, *up), timeout=300)
        old_root, new_root = self.old.mysql_root_password.reveal(), self.new.mysql_root_password.reveal()
        root, user = self.value(self.old, "mysql-root-password"), self.value(self.old, "mysql-password")
        set_db_passwords(ex, [new_root, old_root], self.old, root, user)


def rotate(
    ex: Executor,
    rot: Rotation,
    candidate: deploy_mod.Candidate,
    opts: deploy_mod.DeployOptions,
    step,
    reconnect: Callable[[], Executor],
) -> dict:
    """The rotation transaction (module docstring). Returns the deploy's outcome as a dict
    with `rotated` (variable names); RotationRolledBack (34) when it was undone,
    RotationFailed (35) when undoing failed too."""
    lay = Layout(rot.new.deploy_root)
    state = {"db": False, "restored": False}
    outcome = None

    def restore_db(e: Executor) -> None:
        if state["db"] and not state["restored"]:
            rot.restore_db(e)
            state["restored"] = True

    with lock_mod.HostLock(ex, lay, env=rot.new.env, command="app.rotate-secrets") as held:
        _require_healthy(ex, rot.old, lay)
        opts = dataclasses.replace(opts, lock=held, on_rollback=restore_db, command="app.rotate-secrets")
        try:
            if rot.db:
                state["db"] = True  # from here on the passwords may be the new ones (even if the call fails)
                with step("new database passwords (ALTER USER inside the database container)"):
                    try:
                        rot.apply_db(ex)
                    except CommandFailed as exc:
                        if exc.exit_status == 3:  # root refused with both passwords: nothing was changed
                            state["db"] = False
                        raise
            outcome = deploy_mod.deploy(ex, rot.new, candidate, opts, step, reconnect=reconnect)
            if "grafana-admin-password" in rot.names:
                with step("new Grafana admin password (grafana cli, on stdin)"):
                    rot.reset_grafana(ex)
        except RolledBack as exc:  # the deploy switched back; restore_db ran before the old release started
            _audit(ex, rot, "rolled_back", exc.message)
            raise RotationRolledBack(
                f"the rotation was undone: {exc.message}",
                hint="the stack runs on the old secrets again; .env." + rot.new.env + " holds them again",
            ) from None
        except RollbackFailed as exc:
            raise RotationFailed(_mixed(rot, exc.message, state), hint=exc.hint) from None
        except (ToolError, KeyboardInterrupt, *CONNECTION_ERRORS) as exc:
            reason = _reason(exc)
            target = ex if ex.connected else reconnect()
            _undo_before_or_after_switch(target, rot, lay, restore_db, step, outcome)
            _audit(target, rot, "rolled_back", reason.splitlines()[0])
            if isinstance(exc, KeyboardInterrupt):
                raise
            raise RotationRolledBack(
                f"the rotation was undone: {reason.splitlines()[0]}",
                hint="the stack runs on the old secrets again; .env." + rot.new.env + " holds them again",
            ) from None
        _audit(ex, rot, "ok", "", outcome.release)
    return {**outcome.as_dict(), "rotated": variables(rot.names)}


def _require_healthy(ex: Executor, s: Settings, lay: Layout) -> None:
    _, manifest = day2.require_current(ex, lay)
    bad = services.unhealthy(services.read(ex, s.compose_project), list(manifest.services) if manifest else [])
    if bad:
        raise ConfigError(
            "secrets are rotated on a healthy stack only; not healthy: " + ", ".join(bad),
            hint="`app.status`, `app.logs`; nothing was changed",
        )


def _undo_before_or_after_switch(ex, rot: Rotation, lay: Layout, restore_db, step, outcome) -> None:
    """Put the old secrets back after a failure outside the deploy's own rollback: the
    database passwords, and the previous release when the new one had been deployed
    (the Grafana reset failed)."""
    try:
        with step("put the old secrets back"):
            if outcome is not None and outcome.previous:
                store.switch(ex, lay, outcome.previous)
                restore_db(ex)
                store.bring_up(ex, rot.old, lay, 300, pull=False)
            else:
                restore_db(ex)
    except (ToolError, *CONNECTION_ERRORS) as exc:
        detail = _reason(exc)
        raise RotationFailed(
            _mixed(rot, detail, {"db": rot.db, "restored": False}),
            hint="`app.status`; the audit log on the host; .env." + rot.new.env + " and its backup hold both sets",
        ) from None


def _reason(exc: BaseException) -> str:
    """One line: what a command printed last when it failed, else the error's first line."""
    if isinstance(exc, CommandFailed):
        return exc.brief()
    if isinstance(exc, ToolError):
        return exc.message.splitlines()[0]
    return f"{type(exc).__name__}: {exc}"


def _mixed(rot: Rotation, detail: str, state: dict) -> str:
    db = "may hold the NEW database passwords" if state.get("db") and not state.get("restored") else "holds the old"
    return (
        f"the rotation failed and putting the old secrets back failed too ({detail.splitlines()[0]}); the database "
        f"{db}; .env.{rot.new.env} holds the NEW secrets and .env.{rot.new.env}.bak-* the old ones"
    )


def _audit(ex: Executor, rot: Rotation, result: str, error: str, release: str | None = None) -> None:
    line = {"event": "rotate-secrets", "env": rot.new.env, "result": result, "rotated": variables(rot.names)}
    if error:
        line["error"] = error
    if release:
        line["release"] = release
    try:
        store.audit(ex, Layout(rot.new.deploy_root), line)
    except (ToolError, *CONNECTION_ERRORS):
        pass  # the outcome is reported to the operator either way
