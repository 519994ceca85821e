"""Where the public probes connect, which TLS they trust, and the two verdicts a probe
can give besides success (tasks/health/probes.py re-exports all of it)."""

from __future__ import annotations

import ipaddress
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field


class ProbeFailed(Exception):
    """A probe's verdict (not a crash): the message is the probe's detail."""


class ProbeSkipped(Exception):
    """The probe did not run (or only partly): it could not be done safely here, or it
    does not apply to this tracker release. Not a failure; the message says why."""


def tls_context(extra_ca_pem: str | None = None) -> ssl.SSLContext:
    """A verifying context: the system trust store, plus `extra_ca_pem` (e.g. the proxy's
    internal CA) when given."""
    ctx = ssl.create_default_context()
    if extra_ca_pem:
        ctx.load_verify_locations(cadata=extra_ca_pem)
    return ctx


def verifies(ctx: ssl.SSLContext | None) -> bool:
    return ctx is not None and ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname


@dataclass(frozen=True)
class Reach:
    """Where public probes connect: one address per family, the ports, TLS trust."""

    addresses: dict[int, str]  # {4: "203.0.113.10", 6: "2001:db8::10"}
    tls: bool
    port: int  # the proxy's HTTP or HTTPS port
    context: ssl.SSLContext | None = None  # for requests without a credential (TLS on)
    # For requests that carry the admin token: a verifying context. None: `context` when it
    # verifies, else no credential is sent (the probe is skipped with `credential_note`).
    credential_context: ssl.SSLContext | None = None
    credential_note: str = ""
    # per public name, the verifying context of the trust that applies to it
    # (tasks/health/trust.py: system store, TORRUST_ACME_CA_ROOT, the proxy's internal CA)
    contexts: Mapping[str, ssl.SSLContext] = field(default_factory=dict)

    def context_for(self, name: str) -> ssl.SSLContext | None:
        return self.contexts.get(name) or self.context

    def secure_context(self, name: str = "") -> ssl.SSLContext | None:
        if self.credential_context is not None:
            return self.credential_context if verifies(self.credential_context) else None
        named = self.contexts.get(name) if name else None
        if named is not None:
            return named if verifies(named) else None
        if self.context is None:
            return tls_context()  # h.get's default: the system trust store
        return self.context if verifies(self.context) else None


def is_this_machine(address: str) -> bool:
    """Loopback, or an address of this machine (it can be bound here): traffic to it never
    crosses a network."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if ip.is_loopback:
        return True
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.bind((address, 0))
        return True
    except OSError:
        return False


def credential_refusal(reach: Reach, family: int, name: str = "") -> str | None:
    """Why the admin token must not be sent on this path, or None when it may: over TLS
    only with a verified certificate; over plain HTTP only to this machine itself."""
    address = reach.addresses[family]
    if reach.tls:
        if reach.secure_context(name) is None:
            return reach.credential_note or "the proxy's certificate cannot be verified here"
        return None
    if is_this_machine(address):
        return None
    return (
        f"plain HTTP to {address} would carry the admin token unencrypted across the network "
        "(turn TLS on, or probe from the host itself)"
    )
