"""OpenTofu (or Terraform) command lines (pure): one environment's module, data dir,
variables file and state file, given as paths."""

from __future__ import annotations

SUBCOMMANDS = ("init", "plan", "apply", "destroy", "refresh", "output", "providers", "version")


def command(
    binary: str, module: str, data_dir: str, vars_file: str, state_file: str, sub: str, *args: str
) -> list[str]:
    """argv of one OpenTofu command: `-chdir=<module>`, TF_DATA_DIR per environment, the
    local backend's path set at init, variables from a JSON file."""
    assert sub in SUBCOMMANDS, sub
    env = ["env", f"TF_DATA_DIR={data_dir}", "TF_IN_AUTOMATION=1", "TF_INPUT=0"]
    base = [*env, binary, f"-chdir={module}", sub]
    var_file = f"-var-file={vars_file}"
    locked = ["-input=false", "-no-color", "-lock-timeout=60s"]
    flags: dict[str, list[str]] = {
        "init": ["-input=false", "-no-color", f"-backend-config=path={state_file}"],
        "plan": [*locked, var_file],
        "apply": [*locked, "-auto-approve", var_file],
        "destroy": [*locked, "-auto-approve", var_file],
        "refresh": [*locked, var_file],
        "output": ["-no-color", "-json"],
        "providers": ["-no-color"],
        "version": ["-json"],
    }
    return [*base, *flags[sub], *args]
