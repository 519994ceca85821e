"""SSH host keys: generated here for the servers the tool creates, pinned before the
first connection; scanned and compared for servers the operator registers.

For libvirt and Hetzner (infra.apply) the tool generates the server's ed25519 host key
on this machine, puts it into the cloud-init user-data (`ssh_keys:`; cloud-init installs
it before sshd starts and generates no other key), and writes its public half into the
environment's known_hosts as soon as the server's address is known. infra.wait and every
later connection then check the key strictly: nobody on the path can answer in the
server's place, not even at first contact. The private key lives in
.torrust/<env>/infra/<provider>/ssh_host_ed25519_key (0600, in a 0700 directory), in the
variables file (0600) and in the OpenTofu state; the modules declare `user_data`
sensitive so OpenTofu never prints it, and the OpenTofu executor redacts it.

For a server you own (infra.register) first-use trust is explicit: --accept-new-host-key
records whatever key the server shows; --host-key-fingerprint SHA256:... records it only
when it is the fingerprint the operator verified out of band. docs/threat-model.md.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from tasks.config.settings import Settings
from tasks.errors import ConfigError, ConnectionFailed, HostKeyError
from tasks.runner.ssh import known_hosts_name

KEY_NAME = "ssh_host_ed25519_key"
PROVIDERS = ("libvirt", "hetzner")  # the providers whose servers the tool creates
SCAN_TYPES = ("ssh-ed25519", "ecdsa-sha2-nistp256", "rsa-sha2-512")  # what a registered server may show


@dataclass(frozen=True)
class HostKey:
    private: str  # OpenSSH PEM: a secret
    public: str  # "ssh-ed25519 AAAA..."

    def __repr__(self) -> str:  # never the private half in a log or traceback
        return f"HostKey({fingerprint(self.public)})"

    def secret_lines(self) -> list[str]:
        """The base64 lines of the private key: what a redactor must mask."""
        return [ln for ln in self.private.splitlines() if ln and not ln.startswith("-----")]


def fingerprint(public: str) -> str:
    """'ssh-ed25519 SHA256:...' of an OpenSSH public key line (as ssh-keygen -lf shows it)."""
    kind, blob = public.split()[:2]
    digest = hashlib.sha256(base64.b64decode(blob)).digest()
    return f"{kind} SHA256:{base64.b64encode(digest).decode().rstrip('=')}"


def generate() -> HostKey:
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    ).decode()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    return HostKey(private, public)


def infra_dir(s: Settings) -> Path:
    """The environment's OpenTofu directory (state.infra_dir; a unit test keeps them equal:
    state imports this module, so it cannot import state)."""
    return s.root / ".torrust" / s.env / "infra" / s.provider


def key_file(s: Settings) -> Path:
    return infra_dir(s) / KEY_NAME


def _has_server(s: Settings) -> bool:
    """The environment's OpenTofu state records resources (a server exists)."""
    try:
        doc = json.loads((infra_dir(s) / "terraform.tfstate").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and bool(doc.get("resources"))


def _private_dirs(path: Path) -> None:
    """Create `path`'s directory and make it and .torrust/<env> 0700."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for d in path.parents:
        d.chmod(0o700)
        if d.name == ".torrust":
            break


def _write(path: Path, text: str, mode: int) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(text)
    os.replace(tmp, path)


def load(s: Settings) -> HostKey | None:
    """The environment's generated host key, or None (never generated, or forgotten)."""
    path = key_file(s)
    try:
        private = path.read_text(encoding="ascii")
        public = path.with_suffix(".pub").read_text(encoding="ascii").strip()
        loaded = serialization.load_ssh_private_key(private.encode(), password=None)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"the generated host key {path} cannot be read: {exc}",
            hint="if the server was destroyed, remove the file; otherwise restore it from your backup of .torrust/",
        ) from None
    derived = loaded.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    if derived.decode() != " ".join(public.split()[:2]):
        raise ConfigError(f"{path}.pub is not the public half of {path}")
    return HostKey(private, " ".join(public.split()[:2]))


def load_or_create(s: Settings) -> HostKey:
    """The environment's host key; generated (once) the first time the user-data is rendered."""
    existing = load(s)
    if existing is not None:
        return existing
    key = generate()
    path = key_file(s)
    _private_dirs(path)
    _write(path, key.private, 0o600)
    _write(path.with_suffix(".pub"), key.public + "\n", 0o644)
    return key


def for_server(s: Settings) -> HostKey | None:
    """The host key to give the environment's server: the generated one; a new one while
    no server exists; None for a server created before the tool generated host keys (it
    keeps the key it made itself: infra.wait --accept-new-host-key records it once)."""
    key = load(s)
    if key is not None or _has_server(s):
        return key
    return load_or_create(s)


def forget(s: Settings) -> None:
    """After a destroy: the next server gets a new key."""
    for p in (key_file(s), key_file(s).with_suffix(".pub")):
        p.unlink(missing_ok=True)


def pin(known_hosts: Path, host: str, port: int, public: str) -> str:
    """Make `public` the one key known for host:port (other lines for it removed); 0600."""
    name = known_hosts_name(host, port)
    lines = known_hosts.read_text().splitlines() if known_hosts.is_file() else []
    kept = [ln for ln in lines if ln.split(" ", 1)[0] != name]
    line = f"{name} {' '.join(public.split()[:2])}"
    known_hosts.parent.mkdir(parents=True, exist_ok=True)
    _write(known_hosts, "".join(f"{ln}\n" for ln in [*kept, line]), 0o600)
    return line


# ------------------------------------------------------------------ registered servers
def scan(host: str, port: int, timeout: float, key_type: str) -> paramiko.PKey | None:
    """The host key the server shows for `key_type` (an SSH handshake, no authentication),
    or None when it has no key of that type."""
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        raise ConnectionFailed(f"cannot reach {known_hosts_name(host, port)} to read its host key: {exc}") from None
    transport = paramiko.Transport(sock)
    transport.banner_timeout = timeout
    transport.get_security_options().key_types = [key_type]
    try:
        transport.start_client(timeout=timeout)
        return transport.get_remote_server_key()
    except paramiko.SSHException:
        return None
    finally:
        transport.close()


def shown_keys(host: str, port: int, timeout: float) -> list[str]:
    """The public host keys the server shows, one handshake per type (no authentication)."""
    keys = (scan(host, port, timeout, key_type) for key_type in SCAN_TYPES)
    return [f"{k.get_name()} {k.get_base64()}" for k in keys if k is not None]


def known(known_hosts: Path, host: str, port: int) -> bool:
    """Whether known_hosts holds a key for host:port."""
    if not known_hosts.is_file():
        return False
    try:
        keys = paramiko.HostKeys(str(known_hosts))
    except (OSError, ValueError, paramiko.SSHException, paramiko.hostkeys.InvalidHostKey) as exc:
        raise ConfigError(f"the known_hosts file {known_hosts} cannot be read: {exc}") from None
    return keys.lookup(known_hosts_name(host, port)) is not None


def refuse_unknown(s: Settings, host: str, port: int) -> None:
    """HostKeyError for a server whose key nobody has verified, with what it shows and the
    two ways to go on (raised before any authentication is attempted)."""
    shown = [fingerprint(k) for k in shown_keys(host, port, s.ssh.connect_timeout)]
    raise HostKeyError(
        f"the host key of {known_hosts_name(host, port)} is not known yet (not in {s.ssh.known_hosts}); "
        f"it shows {', '.join(shown) or 'no key'}",
        hint="compare with `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` on the server's console, then "
        "pass --host-key-fingerprint SHA256:... (records only that key), or --accept-new-host-key to trust "
        "whatever it shows at first contact",
    )


def pin_verified(s: Settings, host: str, port: int, expected: str) -> str:
    """Record the server's host key only if its SHA256 fingerprint is `expected` (as
    `ssh-keygen -lf` prints it on the server's console); HostKeyError otherwise."""
    want = expected.split()[-1] if expected.split() else ""
    if not want.startswith("SHA256:"):
        raise ConfigError(f"--host-key-fingerprint {expected!r} is not a SHA256 fingerprint (SHA256:...)")
    shown = shown_keys(host, port, s.ssh.connect_timeout)
    for public in shown:
        if fingerprint(public).split()[1] == want:
            return pin(s.ssh.known_hosts, host, port, public)
    raise HostKeyError(
        f"{known_hosts_name(host, port)} does not show the host key {want}: it shows "
        + (", ".join(fingerprint(k) for k in shown) or "no key"),
        hint="compare with `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` on the server's console; "
        "if they differ, do not connect: someone may be in between",
    )
