"""tasks/health/trust.py: which trust verifies each name, and a certificate's facts."""

from __future__ import annotations

import datetime
import ssl

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from tasks.config.settings import load
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
