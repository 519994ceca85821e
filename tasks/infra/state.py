"""Where an environment's infrastructure lives on this machine, and the recorded host.

    .torrust/<env>/infra/<provider>/terraform.tfvars.json   variables (0600: the user-data holds the host key)
    .torrust/<env>/infra/<provider>/ssh_host_ed25519_key    the server's host key (0600; tasks/infra/hostkeys.py)
    .torrust/<env>/infra/<provider>/terraform.tfstate       OpenTofu state (local backend; the user-data too)
    .torrust/<env>/infra/<provider>/.terraform/             TF_DATA_DIR: providers, backend
    .torrust/<env>/host.env                                 the recorded host (read by settings)
    .torrust/<env>/host.json                                how it was recorded (apply/register)
    .torrust/<env>/known_hosts                              its host key (the default path)

`.torrust/` is gitignored; nothing here is shared between environments or providers. The
environment's directories are 0700: the variables and the state hold the host key.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from tasks.config.settings import HOST_RECORD_KEYS, Settings, host_record_file
from tasks.infra import hostkeys
from tasks.infra.cloudinit import INFRASTRUCTURE, public_ports
from tasks.runner.ssh import known_hosts_name

PROVIDERS = ("libvirt", "hetzner")  # the providers with an OpenTofu module
OUTPUTS = ("ipv4", "ipv6", "ssh_user", "ssh_port")  # what every module must expose


def module_dir(provider: str) -> Path:
    return INFRASTRUCTURE / provider


def infra_dir(s: Settings) -> Path:
    return s.root / ".torrust" / s.env / "infra" / s.provider


def vars_file(s: Settings) -> Path:
    return infra_dir(s) / "terraform.tfvars.json"


def state_file(s: Settings) -> Path:
    return infra_dir(s) / "terraform.tfstate"


def data_dir(s: Settings) -> Path:
    return infra_dir(s) / ".terraform"


def host_json(s: Settings) -> Path:
    return s.root / ".torrust" / s.env / "host.json"


def private_dir(path: Path) -> Path:
    """`path` created if needed and made 0700 (the infra directory holds secrets)."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


def tf_variables(s: Settings, user_data: str, public_key: str) -> dict:
    """The module's input variables. HCLOUD_TOKEN stays in the environment; `user_data`
    holds the server's private host key (the modules declare it sensitive)."""
    tcp, udp = public_ports(s)
    common = {
        "server_name": s.infra.server_name,
        "environment": s.env,
        "ssh_user": s.ssh.user,
        "ssh_port": s.ssh.port,
        "ssh_public_key": public_key,
        "user_data": user_data,
        "data_volume_size": s.infra.data_volume_size,
    }
    if s.provider == "hetzner":
        return {
            **common,
            "server_type": s.infra.hetzner_server_type,
            "location": s.infra.hetzner_location,
            "image": s.infra.hetzner_image,
            "deletion_protection": s.infra.deletion_protection,
            "firewall_tcp_ports": tcp,
            "firewall_udp_ports": udp,
        }
    if s.provider == "libvirt":
        return {
            **common,
            "libvirt_uri": s.infra.libvirt_uri,
            "pool": s.infra.libvirt_pool,
            "network": s.infra.libvirt_network,
            "base_image_url": s.infra.libvirt_image_url,
            "memory_mb": s.infra.vm_memory,
            "vcpus": s.infra.vm_vcpus,
            "disk_size_gb": s.infra.vm_disk_size,
        }
    raise AssertionError(s.provider)


def write_variables(s: Settings, variables: dict) -> Path:
    path = vars_file(s)
    private_dir(infra_dir(s))
    _write_private(path, json.dumps(variables, indent=2, sort_keys=True) + "\n")
    return path


def record_host(s: Settings, *, host: str, port: int, user: str, source: str, ready: bool = True) -> Path:
    """Write the host the environment deploys to; settings.load reads it (ADR 0009)."""
    path, _ = host_record_file(s.root, s.env)
    values = dict(zip(HOST_RECORD_KEYS, (host, str(port), user), strict=True))
    lines = [f"# Recorded by infra.{source} for environment '{s.env}'. Do not edit: re-run infra.{source}."]
    lines += [f"{k}={v}" for k, v in values.items()]
    _write_private(path, "\n".join(lines) + "\n")
    pinned = _pin_generated_key(s, host, port) if source == "apply" else None
    info = {
        "source": source,
        "provider": s.provider,
        "host": host,
        "port": port,
        "user": user,
        "ready": ready,
        "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "host_key": pinned,
    }
    _write_private(host_json(s), json.dumps(info, indent=2, sort_keys=True) + "\n")
    return path


def _pin_generated_key(s: Settings, host: str, port: int) -> str | None:
    """A server the tool created: its generated host key becomes the one known for its
    address before anything connects (tasks/infra/hostkeys.py). None for a server created
    before the tool generated keys (infra.wait then needs --accept-new-host-key once)."""
    key = hostkeys.load(s)
    if key is None:
        return None
    hostkeys.pin(s.ssh.known_hosts, host, port, key.public)
    return hostkeys.fingerprint(key.public)


def recorded(s: Settings) -> dict | None:
    try:
        return json.loads(host_json(s).read_text())
    except (OSError, ValueError):
        return None


def forget_host(s: Settings) -> None:
    """After a destroy: drop the recorded host, its known_hosts line and the generated host
    key (a new server gets a new key)."""
    info = recorded(s)
    if info:
        forget_host_key(s.ssh.known_hosts, info["host"], int(info["port"]))
    for p in (host_record_file(s.root, s.env)[0], host_json(s)):
        p.unlink(missing_ok=True)
    hostkeys.forget(s)


def forget_host_key(known_hosts: Path, host: str, port: int) -> bool:
    if not known_hosts.is_file():
        return False
    name = known_hosts_name(host, port)
    lines = known_hosts.read_text().splitlines(keepends=True)
    kept = [ln for ln in lines if ln.split(" ", 1)[0] != name]
    if kept != lines:
        _write_private(known_hosts, "".join(kept))
    return kept != lines
