"""tasks/health/trust.py: which trust verifies each name, and a certificate's facts."""

from __future__ import annotations

import dataclasses
import datetime
import ssl

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from tasks.config.settings import load
from tasks.errors import SettingsError
from tasks.health import trust
from tests.unit.release.test_render_acme import ca_pem


def test_trust_per_name(workdir):
    root = workdir / "ca.pem"
    root.write_bytes(ca_pem())
    s = load(
        "local",
        root=workdir,
        environ={
            "TORRUST_TLS": "true",
            "TORRUST_DOMAIN": "acme.example",
            "TORRUST_API_DOMAIN": "api.torrust.local",
            "TORRUST_ACME_CA": "https://acme.example:14000/dir",
            "TORRUST_ACME_CA_ROOT": str(root),
        },
    )
    assert trust.kind_for(s, "tracker.acme.example") == trust.ACME_ROOT
    assert trust.kind_for(s, "api.torrust.local") == trust.INTERNAL
    asked = []

    def internal():
        asked.append(1)
        return None if len(asked) == 1 else ca_pem().decode()

    contexts = trust.contexts(s, internal)
    assert set(contexts) == {"tracker.acme.example", "api.torrust.local"}
    acme = contexts["tracker.acme.example"]
    assert [c["subject"] for c in acme.get_ca_certs()] == [((("commonName", "private ACME root"),),)]
    assert contexts["api.torrust.local"].verify_mode == ssl.CERT_REQUIRED
    contexts["api.torrust.local"]
    assert len(asked) == 2  # not had the first time: asked again, then kept
    contexts["api.torrust.local"]
    assert len(asked) == 2


def test_system_store_for_lets_encrypt(workdir):
    s = load("local", root=workdir, environ={"TORRUST_TLS": "true", "TORRUST_DOMAIN": "acme.example"})
    assert trust.kind_for(s, "tracker.acme.example") == trust.SYSTEM


def test_certificate_facts_and_renewal_window():
    key = ec.generate_private_key(ec.SECP256R1())
    issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Pebble Intermediate CA 4e2f")])
    start = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(x509.Name([])).issuer_name(issuer).public_key(key.public_key())
        .serial_number(7).not_valid_before(start).not_valid_after(start + datetime.timedelta(days=90))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("tracker.acme.example")]), critical=False)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    facts = trust.parse(cert.public_bytes(Encoding.DER))
    assert facts.names == ("tracker.acme.example",) and facts.issuer == "Pebble Intermediate CA 4e2f"
    assert facts.renewal_from == start + datetime.timedelta(days=60)  # the last third of 90 days
    assert facts.as_dict()["renewal_from"] == "2026-03-02T00:00:00+00:00"


def _leaf(issuer_cn: str, names: list[str]) -> tuple[bytes, bytes]:
    """A leaf certificate and its key (PEM), issued in the name of `issuer_cn`."""
    from cryptography.hazmat.primitives.serialization import NoEncryption, PrivateFormat

    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(x509.Name([]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_cn)]))
        .public_key(key.public_key()).serial_number(9)
        .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=89))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    return cert.public_bytes(Encoding.PEM), key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())


def _serve_once(workdir, issuer_cn: str, names: list[str]) -> int:
    """A TLS server on loopback answering one handshake with that certificate."""
    import socket
    import threading

    cert, key = _leaf(issuer_cn, names)
    (workdir / "leaf.pem").write_bytes(cert + key)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(workdir / "leaf.pem")
    listener = socket.create_server(("127.0.0.1", 0))

    def serve():
        with listener:
            conn, _ = listener.accept()
            try:
                with ctx.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(1)
            except (OSError, ssl.SSLError):
                pass

    threading.Thread(target=serve, daemon=True).start()
    return listener.getsockname()[1]


STAGING_ENV = {
    "TORRUST_TLS": "true",
    "TORRUST_DOMAIN": "acme.example",
    "TORRUST_ACME_CA": "letsencrypt-staging",
    "TORRUST_ACME_EMAIL": "ops@acme.example",
}


def test_staging_certificates_are_checked_for_name_and_issuer_and_never_carry_a_credential(workdir):
    from tasks.health import check as hc
    from tasks.health import probes as p
    from tasks.health.reach import credential_refusal

    s = load("local", root=workdir, environ=STAGING_ENV)
    name = "tracker.acme.example"
    assert trust.kind_for(s, name) == trust.STAGING
    reach = hc.reach(s, "both", None)
    assert isinstance(reach.context_for(name), trust.IssuerOnly)
    assert credential_refusal(reach, 4, name)  # no chain verified: no token is sent

    def probe(issuer: str, names: list[str]) -> str:
        port = _serve_once(workdir, issuer, names)
        return p.certificate(dataclasses.replace(reach, addresses={4: "127.0.0.1"}, port=port), 4, name, 5)

    ok = probe("(STAGING) Ersatz Edamame E1", [name])
    assert ok.startswith("valid, issued by (STAGING) Ersatz Edamame E1") and "staging: name and issuer checked" in ok
    assert probe("(STAGING) Ersatz Edamame E1", ["*.acme.example"]).startswith("valid")
    with pytest.raises(p.ProbeFailed, match=r"not valid for tracker\.acme\.example \(it names other\.example\)"):
        probe("(STAGING) Ersatz Edamame E1", ["other.example"])
    with pytest.raises(p.ProbeFailed, match=r"issued by 'Evil CA', not by the staging CA"):
        probe("Evil CA", [name])


def test_a_root_bundle_with_lets_encrypt_is_refused(workdir):
    """Caddy's trusted_roots would replace the system store for the directory's HTTPS too."""
    root = workdir / "staging-roots.pem"
    root.write_bytes(ca_pem())
    for ca in ("letsencrypt-staging", "letsencrypt"):
        with pytest.raises(SettingsError) as info:
            load(
                "local", root=workdir, environ={**STAGING_ENV, "TORRUST_ACME_CA": ca, "TORRUST_ACME_CA_ROOT": str(root)}
            )
        assert any(
            x.startswith("TORRUST_ACME_CA_ROOT") and "is for a private ACME server" in x for x in info.value.problems
        ), info.value.problems


def test_a_wildcard_covers_one_label():
    assert trust.covers(("*.acme.example",), "tracker.acme.example")
    assert trust.covers(("Tracker.ACME.example.",), "tracker.acme.example")
    assert not trust.covers(("*.acme.example",), "a.b.acme.example")
    assert not trust.covers(("*.acme.example",), "acme.example")
    assert not trust.covers((), "acme.example")
