"""OpenTofu (or Terraform) commands for one environment, and running them.

Every command runs with `-chdir=<the provider's module>`, `TF_DATA_DIR` in the
environment's own directory and a local backend whose path is that environment's state
file (set at init): the module is shared, the state never is (docs/adr/0009). Variables
come from a JSON file there. HCLOUD_TOKEN is only inherited from the process
environment: never on a command line, in a file or in output (it is redacted). The
server's private host key travels in the user-data variable: the modules declare it
sensitive, and its lines are redacted from the output too (tasks/infra/hostkeys.py).
"""

from __future__ import annotations

import json
import os

from tasks.commands import tofu as tofu_cmd
from tasks.config.settings import Settings
from tasks.errors import ConfigError, InfraFailed, InfraMissing, PrerequisiteError
from tasks.infra import hostkeys, state
from tasks.runner.executor import Executor, Redactor, local

TOKEN_VAR = "HCLOUD_TOKEN"  # noqa: S105 - the name of the variable, not a token
NEEDS_TOKEN = ("plan", "apply", "destroy", "refresh")


def require_module(s: Settings) -> None:
    if s.provider not in state.PROVIDERS:
        hint = (
            "a server you already own is recorded with infra.register, not provisioned"
            if s.provider == "existing"
            else "set TORRUST_PROVIDER=libvirt or hetzner (and TORRUST_DEPLOY_TARGET=ssh)"
        )
        raise InfraMissing(
            f"environment '{s.env}' has provider '{s.provider}': there is no OpenTofu module for it", hint=hint
        )


def command(s: Settings, sub: str, *args: str) -> list[str]:
    """argv of one OpenTofu command for the environment (pure)."""
    return tofu_cmd.command(
        s.infra.binary,
        str(state.module_dir(s.provider)),
        str(state.data_dir(s)),
        str(state.vars_file(s)),
        str(state.state_file(s)),
        sub,
        *args,
    )


def secrets(s: Settings) -> list[str]:
    """What OpenTofu's output must never show: the provider token, the host key's lines."""
    token = os.environ.get(TOKEN_VAR, "")
    key = hostkeys.for_server(s) if s.provider in hostkeys.PROVIDERS else None
    return ([token] if token else []) + (key.secret_lines() if key else [])


def executor(s: Settings) -> Executor:
    return local(Redactor(secrets(s)), timeout=max(s.command_timeout, 1800))


def check_token(s: Settings, sub: str) -> None:
    if s.provider == "hetzner" and sub in NEEDS_TOKEN and not os.environ.get(TOKEN_VAR):
        raise ConfigError(
            f"{TOKEN_VAR} is not set in the environment",
            hint=f"export {TOKEN_VAR} (a Hetzner Cloud API token with read/write access); "
            "it is never written to a file",
        )


def initialized(s: Settings) -> bool:
    # init records the backend (our state path) in TF_DATA_DIR/terraform.tfstate
    return (state.data_dir(s) / "terraform.tfstate").is_file()


def run(ex: Executor, s: Settings, sub: str, *args: str, timeout: int | None = None) -> str:
    require_module(s)
    check_token(s, sub)
    argv = command(s, sub, *args)
    if sub != "init" and sub != "version" and not initialized(s):
        raise InfraMissing(
            f"OpenTofu is not initialized for '{s.env}' ({s.provider})", hint=f"run infra.init --env {s.env}"
        )
    try:
        result = ex.run(argv, check=False, timeout=timeout)
    except FileNotFoundError:  # pragma: no cover - `env` reports a missing binary itself
        raise PrerequisiteError(f"{s.infra.binary} is not installed") from None
    if result.exit_status == 127:
        raise PrerequisiteError(
            f"{s.infra.binary} is not installed (or not on PATH)",
            hint="install OpenTofu (https://opentofu.org/docs/intro/install/) or set TORRUST_INFRA_BINARY",
        )
    if not result.ok:
        tail = (result.stderr.strip() or result.stdout.strip()).splitlines()[-20:]
        raise InfraFailed(
            f"`{s.infra.binary} {sub}` failed for '{s.env}' ({s.provider}) with exit {result.exit_status}:\n    "
            + "\n    ".join(tail),
            hint="fix the cause above and re-run: the state is kept, so the task continues where it stopped",
        )
    return result.stdout


def ensure_init(ex: Executor, s: Settings) -> bool:
    """Run init unless done; True when it ran."""
    if initialized(s):
        return False
    state.private_dir(state.infra_dir(s))
    run(ex, s, "init")
    return True


def outputs(ex: Executor, s: Settings) -> dict:
    """`output -json` as plain values; InfraMissing when nothing has been applied."""
    text = run(ex, s, "output")
    try:
        doc = json.loads(text or "{}")
    except ValueError as exc:
        raise InfraFailed(f"`{s.infra.binary} output -json` printed no JSON: {exc}") from None
    values = {k: v.get("value") for k, v in doc.items()}
    missing = [k for k in state.OUTPUTS if k not in values]
    if not values:
        raise InfraMissing(
            f"nothing is provisioned for '{s.env}' ({s.provider})", hint=f"run infra.apply --env {s.env}"
        )
    if missing:
        raise InfraFailed(f"the {s.provider} module's outputs lack {missing}")
    return values


def host_from_outputs(values: dict) -> tuple[str, int, str]:
    host = values.get("ipv4") or values.get("ipv6") or ""
    if not host:
        raise InfraFailed("the server has no IP address yet", hint="run infra.refresh (libvirt: DHCP may take a while)")
    return str(host), int(values["ssh_port"]), str(values["ssh_user"])
