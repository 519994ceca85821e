"""Fabric connections to the deploy target, made safe.

Fabric's default client trusts any host key (`AutoAddPolicy`). Here the client is
replaced by one that knows only the environment's own known_hosts file and rejects an
unknown key (unless the caller asked to accept a new one, which is then recorded) and a
changed key (with the exact command that re-keys). Connection attempts are retried with
back-off on network errors only; authentication and host-key failures are final.
A passphrase-protected key without an agent is detected before connecting.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from pathlib import Path

import fabric
import paramiko

from tasks.config.settings import Settings
from tasks.errors import AuthFailed, ConfigError, ConnectionFailed, HostKeyError

KEEPALIVE_SECONDS = 15
# What a dropped or broken connection raises while a command runs.
CONNECTION_ERRORS = (paramiko.SSHException, EOFError, OSError, socket.timeout)
# paramiko logs a traceback (through logging's last-resort handler, on stderr) when a
# peer sends no SSH banner; the failure is reported as a ConnectionFailed instead.
logging.getLogger("paramiko").addHandler(logging.NullHandler())


class _AcceptNewPolicy(paramiko.MissingHostKeyPolicy):
    """Record an unknown key in the environment's known_hosts (never a changed one)."""

    def __init__(self, path: Path):
        self.path = path

    def missing_host_key(self, client, hostname, key):
        client.get_host_keys().add(hostname, key.get_name(), key)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="ascii") as fh:
            fh.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")
        os.chmod(self.path, 0o600)


def known_hosts_name(host: str, port: int) -> str:
    return host if port == 22 else f"[{host}]:{port}"


def check_key_usable(key: Path | None) -> None:
    """A passphrase-protected key is usable only through an agent: say so up front."""
    if key is None:
        return
    try:
        paramiko.PKey.from_path(str(key))
    except (paramiko.PasswordRequiredException, TypeError) as exc:
        # paramiko raises TypeError("Key is password-protected, ...") for OpenSSH-format keys
        if isinstance(exc, TypeError) and "password" not in str(exc):
            raise
        if not os.environ.get("SSH_AUTH_SOCK"):
            raise AuthFailed(
                f"the SSH key {key} is protected by a passphrase and no SSH agent is running",
                hint=f"start an agent and add the key (eval $(ssh-agent); ssh-add {key}), "
                "or use a key without a passphrase stored as a CI secret",
            ) from None
    except (paramiko.SSHException, OSError, ValueError) as exc:
        raise ConfigError(f"TORRUST_SSH_KEY: cannot read the key {key}: {exc}") from None


def _tcp(host: str, port: int, timeout: int) -> socket.socket:
    """The TCP connection for paramiko, with Nagle's algorithm off: SSH sends small
    request/reply messages, and Nagle plus delayed ACKs added ~40 ms to each of them
    (opening a channel: 40 ms -> 1 ms; a remote `true`: 50 ms -> 15 ms, measured)."""
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def connection(s: Settings, *, accept_new_host_key: bool = False) -> fabric.Connection:
    """The Fabric connection to the target, not yet opened: the environment's key only (no
    agent identities or default keys tried when a key is set), no agent forwarding, no
    settings from fabric.yaml/invoke.yaml/ssh_config files, and a client that knows only
    the environment's known_hosts."""
    t = s.ssh
    connect_kwargs: dict = {  # the TCP connect timeout is Connection(connect_timeout=...)
        "banner_timeout": t.connect_timeout,
        "auth_timeout": t.connect_timeout,
    }
    if t.key:
        connect_kwargs.update(key_filename=str(t.key), allow_agent=False, look_for_keys=False)
    # lazy: no /etc/fabric.yaml, ~/.fabric.yaml, ~/.invoke.yaml or ssh_config reach the
    # connection (a stray `forward_agent: true` or run.env there would follow every deploy)
    config = fabric.Config(lazy=True, overrides={"load_ssh_configs": False, "forward_agent": False})
    conn = fabric.Connection(
        t.host,
        user=t.user,
        port=t.port,
        config=config,
        connect_timeout=t.connect_timeout,
        connect_kwargs=connect_kwargs,
    )
    client = paramiko.SSHClient()
    if t.known_hosts.is_file():
        try:
            client.load_host_keys(str(t.known_hosts))
        except (paramiko.SSHException, paramiko.hostkeys.InvalidHostKey, OSError, ValueError) as exc:
            raise ConfigError(
                f"the known_hosts file {t.known_hosts} cannot be read: {exc}",
                hint="fix or remove the damaged line (ssh-keygen -f FILE -R HOST removes a host's lines)",
            ) from None
    client.set_missing_host_key_policy(
        _AcceptNewPolicy(t.known_hosts) if accept_new_host_key else paramiko.RejectPolicy()
    )
    conn.client = client
    return conn


def connect(s: Settings, *, accept_new_host_key: bool = False, attempts: int = 4) -> fabric.Connection:
    """Open one connection to the target; reuse it for the whole operation."""
    t = s.ssh
    if s.target != "ssh":
        raise ConfigError(f"environment '{s.env}' deploys to this machine (TORRUST_DEPLOY_TARGET=local), not over SSH")
    if not t.host:
        raise ConfigError(
            f"TORRUST_SSH_HOST is empty for environment '{s.env}'",
            hint="run infra.apply or infra.register, or set TORRUST_SSH_HOST in .env." + s.env,
        )
    check_key_usable(t.key)
    conn = connection(s, accept_new_host_key=accept_new_host_key)
    name = known_hosts_name(t.host, t.port)
    delay = 0.5
    for attempt in range(1, attempts + 1):
        try:
            conn.connect_kwargs["sock"] = _tcp(t.host, t.port, t.connect_timeout)
            conn.open()
            break
        except paramiko.BadHostKeyException:
            raise HostKeyError(
                f"the host key of {name} changed since it was recorded in {t.known_hosts}",
                hint="if the server was rebuilt on purpose, remove the old key with "
                f"`ssh-keygen -f {t.known_hosts} -R '{name}'` and connect again with "
                "--accept-new-host-key; otherwise do not connect: someone may be in between",
            ) from None
        except paramiko.SSHException as exc:
            text = str(exc)
            if "not found in known_hosts" in text:
                raise HostKeyError(
                    f"the host key of {name} is unknown (not in {t.known_hosts})",
                    hint="verify the server's fingerprint out of band, then pass --accept-new-host-key once",
                ) from None
            if isinstance(exc, paramiko.AuthenticationException):
                raise AuthFailed(
                    f"{t.user}@{name} refused our SSH credentials ({text})",
                    hint="check TORRUST_SSH_USER and TORRUST_SSH_KEY, and that the public key is in "
                    "the user's authorized_keys",
                ) from None
            last = exc
        except (TimeoutError, OSError, EOFError) as exc:
            last = exc
        stale = conn.connect_kwargs.pop("sock", None)
        if stale is not None:
            stale.close()
        if attempt < attempts:
            time.sleep(delay)
            delay *= 2
    else:
        err = ConnectionFailed(
            f"cannot connect to {t.user}@{name} after {attempts} attempts: {last}",
            hint="check TORRUST_SSH_HOST/TORRUST_SSH_PORT, that the server is up and that sshd listens",
        )
        err.cause = last  # infra.wait tells "refused" from "unreachable" by it
        raise err
    conn.connect_kwargs.pop("sock", None)  # used up: never hand a closed socket to a re-open
    conn.transport.set_keepalive(KEEPALIVE_SECONDS)
    return conn
