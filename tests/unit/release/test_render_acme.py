"""The proxy's ACME configuration as rendered (issue 14): directory, challenges, the CA root."""

from __future__ import annotations

import datetime

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from tasks.config.settings import load
from tasks.errors import SettingsError
from tasks.release import render as r
from tests.unit.config.test_settings import prod_env


def ca_pem(ca: bool = True) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "private ACME root")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    return cert.public_bytes(Encoding.PEM)


def caddyfile(s) -> str:
    return r.render(s).file("proxy/Caddyfile").content.decode()


def test_lets_encrypt_by_default_with_both_challenges(workdir):
    text = caddyfile(load("prod", root=workdir, environ=prod_env()))
    assert "\tcert_issuer acme {\n\t\tdir https://acme-v02.api.letsencrypt.org/directory\n\t}\n" in text
    assert "disable_" not in text and "trusted_roots" not in text


@pytest.mark.parametrize(
    ("challenges", "disabled"),
    [("http-01", "disable_tlsalpn_challenge"), ("tls-alpn-01", "disable_http_challenge")],
)
def test_one_challenge_disables_the_other(workdir, challenges, disabled):
    text = caddyfile(load("prod", root=workdir, environ=prod_env(TORRUST_ACME_CHALLENGES=challenges)))
    assert f"\t\t{disabled}\n" in text and text.count("disable_") == 1


def test_staging_by_name_and_by_the_deprecated_switch(workdir):
    for extra in ({"TORRUST_ACME_CA": "letsencrypt-staging"}, {"TORRUST_ACME_STAGING": "true"}):
        s = load("prod", root=workdir, environ=prod_env(**extra))
        assert s.acme_ca == "letsencrypt-staging"
        assert "dir https://acme-staging-v02.api.letsencrypt.org/directory" in caddyfile(s)


def test_a_private_acme_server_ships_its_root_and_mounts_it(workdir):
    root = workdir / "ca.pem"
    root.write_bytes(ca_pem())
    env = prod_env(TORRUST_ACME_CA="https://acme.internal.example:14000/dir", TORRUST_ACME_CA_ROOT=str(root))
    s = load("prod", root=workdir, environ=env)
    release = r.render(s)
    assert release.file("proxy/acme-ca-root.pem").content == root.read_bytes()
    text = release.file("proxy/Caddyfile").content.decode()
    assert "dir https://acme.internal.example:14000/dir\n\t\ttrusted_roots /etc/caddy/acme-ca-root.pem\n" in text
    proxy = yaml.safe_load(release.file("compose.yaml").content)["services"]["proxy"]
    assert "/opt/torrust/current/proxy/acme-ca-root.pem:/etc/caddy/acme-ca-root.pem:ro" in proxy["volumes"]
    assert s.acme_caa == ""  # no CAA identity is known for another CA unless given


def test_internal_names_only_need_no_acme_issuer(workdir):
    text = caddyfile(load("local", root=workdir, environ={"TORRUST_TLS": "true"}))
    assert "cert_issuer" not in text and text.count("tls internal") == 2


@pytest.mark.parametrize(
    ("extra", "variable", "why"),
    [
        ({"TORRUST_ACME_CA": "http://acme.example/dir"}, "TORRUST_ACME_CA", "an ACME directory must be an https URL"),
        ({"TORRUST_ACME_CA": "https://x/dir\n\tadmin 0.0.0.0:2019"}, "TORRUST_ACME_CA", "not a known CA"),
        ({"TORRUST_ACME_CA": "zerossl"}, "TORRUST_ACME_CA", "not a known CA or an https URL"),
        ({"TORRUST_ACME_CHALLENGES": "dns-01"}, "TORRUST_ACME_CHALLENGES", "'dns-01' is not an allowed value"),
        ({"TORRUST_ACME_CHALLENGES": ","}, "TORRUST_ACME_CHALLENGES", "name at least one"),
        (
            {"TORRUST_ACME_STAGING": "true", "TORRUST_ACME_CA": "letsencrypt"},
            "TORRUST_ACME_CA",
            "contradicts TORRUST_ACME_STAGING=true",
        ),
        (
            {"TORRUST_HTTP_PORT": "8080", "TORRUST_ACME_CHALLENGES": "http-01"},
            "TORRUST_ACME_CHALLENGES",
            "Let's Encrypt validates http-01 on port 80",
        ),
        ({"TORRUST_DNS_RESOLVER": "dns.google"}, "TORRUST_DNS_RESOLVER", "is not HOST:PORT with an IP address"),
        ({"TORRUST_ISSUANCE_TIMEOUT": "5"}, "TORRUST_ISSUANCE_TIMEOUT", "out of range"),
    ],
    ids=["http", "injection", "unknown", "dns-01", "empty", "staging-conflict", "port", "resolver", "timeout"],
)
def test_bad_acme_settings_are_named(workdir, extra, variable, why):
    with pytest.raises(SettingsError) as info:
        load("prod", root=workdir, environ=prod_env(**extra))
    assert any(p.startswith(variable) and why in p for p in info.value.problems), info.value.problems


def test_ca_root_must_be_pem_ca_certificates(workdir):
    for content, why in ((b"not a certificate", "holds no PEM certificate"), (ca_pem(ca=False), "not a CA")):
        path = workdir / "root.pem"
        path.write_bytes(content)
        with pytest.raises(SettingsError) as info:
            load("prod", root=workdir, environ=prod_env(TORRUST_ACME_CA_ROOT=str(path)))
        assert any(p.startswith("TORRUST_ACME_CA_ROOT") and why in p for p in info.value.problems)
    with pytest.raises(SettingsError, match=r"TORRUST_ACME_CA_ROOT.*file not found"):
        load("prod", root=workdir, environ=prod_env(TORRUST_ACME_CA_ROOT=str(workdir / "missing.pem")))


def test_a_nonstandard_https_port_is_fine_while_http01_reaches_port_80(workdir):
    s = load("prod", root=workdir, environ=prod_env(TORRUST_HTTPS_PORT="8443"))
    assert s.acme_challenges == ("http-01", "tls-alpn-01")
