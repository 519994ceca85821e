"""cloud-init user-data and the hardening script's configuration, from the settings.

One hardening script (infrastructure/cloud-init/harden.sh) is the source of truth:
cloud-init embeds and runs it at first boot; infra.bootstrap uploads and runs it on a
server you already own. Rendering is pure: the same settings give the same bytes.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from tasks.config.settings import Settings
from tasks.errors import ConfigError
from tasks.infra import hostkeys
from tasks.release import render

INFRASTRUCTURE = Path(__file__).resolve().parents[2] / "infrastructure"
CLOUD_INIT = INFRASTRUCTURE / "cloud-init"
HARDEN_SCRIPT = CLOUD_INIT / "harden.sh"
TEMPLATE = "user-data.yaml.j2"
MARKER = "/var/lib/torrust/host-ready"
PACKAGES = (
    "ca-certificates",
    "docker.io",
    "docker-compose-v2",
    "ufw",
    "unattended-upgrades",
    *("python3", "zstd", "cron"),  # the backup script and its schedule (ADR 0008)
)
STEPS = ("packages", "user", "docker", "sshd", "firewall", "sysctl", "network", "upgrades", "storage")
# conntrack UDP timeouts (seconds) the live demo settled on (docs/guides/network.md#conntrack)
UDP_TIMEOUT, UDP_TIMEOUT_STREAM = 10, 15
RPS_FLOW_ENTRIES = 32768
# The data volume as the guest sees it (empty: no volume).
DATA_DEVICES = {"hetzner": "/dev/disk/by-id/scsi-0HC_Volume_*", "libvirt": "/dev/vdb"}
# Top-level keys the template may use. cloud-init's schema validation does not flag an
# unknown top-level key (a typo is silently ignored at boot), so rendering refuses one;
# tests/integration/test_cloudinit.py checks each name against cloud-init's own schema.
TOP_LEVEL_KEYS = frozenset(
    {
        "hostname", "fqdn", "timezone", "locale", "disable_root", "ssh_pwauth", "users", "package_update",
        "package_upgrade", "package_reboot_if_required", "packages", "write_files", "runcmd", "final_message",
        "ssh_deletekeys", "ssh_keys",
    }
)  # fmt: skip
_GENERATE = object()  # render_user_data's default: the environment's generated host key
PUBLIC_KEY_RE = re.compile(
    r"(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com) [A-Za-z0-9+/=]+( [^\n]*)?"
)


def public_ports(s: Settings) -> tuple[list[int], list[int]]:
    """(TCP, UDP) ports the stack publishes to the world (Prometheus stays on loopback)."""
    tcp = [s.http_port] + ([s.https_port] if s.tls else [])
    udp = [b.port for b in s.udp_trackers] + ([s.https_port] if s.tls else [])
    return sorted(set(tcp)), sorted(set(udp))


def read_public_key(s: Settings) -> str:
    path = s.infra.ssh_public_key
    if path is None:
        raise ConfigError(
            "no public key to install for the deploy user",
            hint="set TORRUST_SSH_KEY (its .pub file is used) or TORRUST_SSH_PUBLIC_KEY",
        )
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"TORRUST_SSH_PUBLIC_KEY: cannot read {path}: {exc}") from None
    if "\n" in text or not PUBLIC_KEY_RE.fullmatch(text):
        raise ConfigError(f"{path} is not one OpenSSH public key line (ssh-ed25519 AAAA... comment)")
    if "PRIVATE KEY" in text:  # pragma: no cover - the regex already refuses it
        raise ConfigError(f"{path} is a private key")
    return text


def harden_env(
    s: Settings, provider: str, skip: tuple[str, ...] = (), public_addresses: tuple[str, ...] | None = None
) -> str:
    """The hardening script's configuration (shell variables, no secrets). `public_addresses`:
    the host's extra public addresses (floating IPs; default TORRUST_PUBLIC_ADDRESSES),
    validated by the settings."""
    if public_addresses is None:
        public_addresses = s.public_addresses
    unknown = sorted(set(skip) - set(STEPS))
    if unknown:
        raise ConfigError(f"unknown hardening step(s) {unknown}; known: {', '.join(STEPS)}")
    tcp, udp = public_ports(s)
    device = DATA_DEVICES.get(provider, "") if s.infra.data_volume_size > 0 else ""
    values = {
        "DEPLOY_USER": s.ssh.user,
        "DEPLOY_ROOT": s.deploy_root,
        "SSH_PORT": str(s.ssh.port),
        "TCP_PORTS": " ".join(map(str, tcp)),
        "UDP_PORTS": " ".join(map(str, udp)),
        "CONNTRACK_MAX": str(s.infra.conntrack_max),
        "UDP_TIMEOUT": str(UDP_TIMEOUT),
        "UDP_TIMEOUT_STREAM": str(UDP_TIMEOUT_STREAM),
        "RPS_FLOW_ENTRIES": str(RPS_FLOW_ENTRIES),
        "PUBLIC_ADDRESSES": " ".join(public_addresses),
        "DATA_DEVICE": device,
        "SKIP": " ".join(skip),
        "MARKER": MARKER,
    }
    # every value is validated by the settings (names, paths, numbers): single quotes suffice
    assert all("'" not in v for v in values.values())
    return "".join(f"{k}='{v}'\n" for k, v in values.items())


def render_user_data(s: Settings, provider: str, public_key: str, host_key=_GENERATE) -> str:
    """The user-data for a server the tool creates. It carries the server's SSH host key
    (tasks/infra/hostkeys.py; by default the environment's, generated on first use), so
    the text is SECRET: written 0600, never printed."""
    if host_key is _GENERATE:
        host_key = hostkeys.for_server(s) if provider in hostkeys.PROVIDERS else None
    text = (
        render.environment(CLOUD_INIT)
        .get_template(TEMPLATE)
        .render(
            env=s.env,
            provider=provider,
            hostname=s.infra.server_name,
            user=s.ssh.user,
            public_key=public_key,
            packages=PACKAGES,
            harden_env=harden_env(s, provider).rstrip("\n"),
            harden_script=HARDEN_SCRIPT.read_text().rstrip("\n"),
            marker=MARKER,
            host_key=host_key,
        )
    )
    check_user_data(text)
    return text


def check_user_data(text: str) -> dict:
    """What `cloud-init schema` misses: the header, unknown top-level keys."""
    if not text.startswith("#cloud-config\n"):
        raise ConfigError("cloud-init user-data must start with '#cloud-config' (PoC bug 001)")
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"the rendered cloud-init user-data is not YAML: {exc}") from None
    unknown = sorted(set(doc or {}) - TOP_LEVEL_KEYS) if isinstance(doc, dict) else ["(not a mapping)"]
    if unknown:
        raise ConfigError(f"cloud-init user-data has unknown top-level keys {unknown} (cloud-init would ignore them)")
    return doc
