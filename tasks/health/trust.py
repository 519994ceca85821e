"""Which trust verifies a public name's certificate, and what a certificate says.

Three trusts, chosen per name from the settings (issue 14):

- `system`: a public ACME CA (Let's Encrypt): the system's trust store.
- `acme-root`: a private ACME server (TORRUST_ACME_CA is a URL with TORRUST_ACME_CA_ROOT):
  the configured root bundle, and only it.
- `internal`: names the proxy's internal CA serves (.local, .test, ... or
  TORRUST_TLS_INTERNAL=always): that CA's root, read from the host when it is known;
  without it the name is checked against the system store (and fails, naming the flag
  that fetches it).

`contexts()` gives an `ssl.SSLContext` per name, built on first use (the internal CA may
only exist once the proxy has started). `parse()` turns a DER certificate into the facts
the probes report: names, issuer, validity, and the renewal window (the proxy renews
when a third of the lifetime is left, Caddy's default).
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509

from tasks.config.settings import Settings

SYSTEM, ACME_ROOT, INTERNAL = "system", "acme-root", "internal"
RENEWAL_RATIO = 1 / 3  # Caddy (certmagic) renews when this share of the lifetime is left
TRUST_NAMES = {
    SYSTEM: "the system trust store",
    ACME_ROOT: "TORRUST_ACME_CA_ROOT",
    INTERNAL: "the proxy's internal CA",
}


def kind_for(s: Settings, name: str) -> str:
    """The trust that applies to a public name."""
    if s.uses_internal_ca(name):
        return INTERNAL
    return ACME_ROOT if s.acme_ca_root is not None else SYSTEM


def context(kind: str, pem: str | None) -> ssl.SSLContext:
    """A verifying context: the system store, or only the given CA certificates."""
    if kind == SYSTEM or pem is None:
        return ssl.create_default_context()
    return ssl.create_default_context(cadata=pem)


class Contexts(Mapping):
    """{public name: verifying SSLContext}, each built on first use and kept; a trust
    whose CA cannot be had yet (the internal CA before the proxy made it) is asked again
    next time."""

    def __init__(self, s: Settings, internal_ca: Callable[[], str | None] = lambda: None):
        self._s, self._internal_ca = s, internal_ca
        self._names = tuple(s.public_names)
        self._built: dict[str, ssl.SSLContext] = {}
        self._lock = threading.Lock()

    def __getitem__(self, name: str) -> ssl.SSLContext:
        if name not in self._names:
            raise KeyError(name)
        with self._lock:
            if name in self._built:
                return self._built[name]
            kind = kind_for(self._s, name)
            pem = self._pem(kind)
            ctx = context(kind, pem)
            if kind == SYSTEM or pem is not None:  # an internal CA not had yet is asked again
                self._built[name] = ctx
            return ctx

    def _pem(self, kind: str) -> str | None:
        if kind == ACME_ROOT:
            return self._s.acme_ca_root.read_text()
        return self._internal_ca() if kind == INTERNAL else None

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


def contexts(s: Settings, internal_ca: Callable[[], str | None] = lambda: None) -> Contexts:
    return Contexts(s, internal_ca)


# ------------------------------------------------------------------------ certificate facts
@dataclass(frozen=True)
class CertificateFacts:
    names: tuple[str, ...]  # DNS names of the subject alternative names
    issuer: str  # the issuer's common name (or its whole name)
    not_before: datetime
    not_after: datetime

    @property
    def lifetime(self) -> timedelta:
        return self.not_after - self.not_before

    @property
    def renewal_from(self) -> datetime:
        """When the proxy starts renewing it."""
        return self.not_after - self.lifetime * RENEWAL_RATIO

    def remaining(self, now: datetime | None = None) -> timedelta:
        return self.not_after - (now or datetime.now(UTC))

    def as_dict(self) -> dict:
        return {
            "names": list(self.names),
            "issuer": self.issuer,
            "not_before": self.not_before.isoformat(),
            "not_after": self.not_after.isoformat(),
            "renewal_from": self.renewal_from.isoformat(),
        }


def parse(der: bytes) -> CertificateFacts:
    """The facts of a DER certificate (raises ValueError when it is not one)."""
    cert = x509.load_der_x509_certificate(der)
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = tuple(sans.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        names = ()
    cn = cert.issuer.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    issuer = str(cn[0].value) if cn else cert.issuer.rfc4514_string()
    return CertificateFacts(names, issuer, cert.not_valid_before_utc, cert.not_valid_after_utc)
