"""Cross-field rules, one function per section of the variable table.

A rule looks at the assembled settings and reports a problem against the variable the
operator should change (`check.fail(NAME, why)`). Checks of a single value belong to its
kind or its `pattern` in variables.py, not here. `check.strict` is true outside `local`.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from tasks.config import trackers
from tasks.config.kinds import image_ref
from tasks.config.variables import BY_NAME
from tasks.errors import ConfigError

INTERNAL_SUFFIXES = (".local", ".localhost", ".test", ".internal")


def infrastructure(s, check) -> None:
    if s.target == "local" and s.provider != "none":
        check.fail(
            "TORRUST_PROVIDER", "a provider needs TORRUST_DEPLOY_TARGET=ssh (the local target uses this machine)"
        )
    if s.target == "ssh" and s.provider == "none":
        check.fail("TORRUST_PROVIDER", "the ssh target needs a provider: libvirt, hetzner or existing")


def domains(s, check) -> None:
    if s.http_trackers and len(s.http_tracker_domains) != len(s.http_trackers):
        check.fail(
            "TORRUST_HTTP_TRACKER_DOMAINS",
            f"has {len(s.http_tracker_domains)} names for {len(s.http_trackers)} HTTP trackers; give one per tracker",
        )
    names = [*s.http_tracker_domains, s.api_domain] + ([s.grafana_domain] if s.grafana else [])
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        culprit = (
            "TORRUST_API_DOMAIN"
            if s.api_domain in dupes
            else "TORRUST_GRAFANA_DOMAIN"
            if s.grafana_domain in dupes
            else "TORRUST_HTTP_TRACKER_DOMAINS"
        )
        check.fail(culprit, f"public name {dupes[0]} is used for two services")


def tracker(s, check) -> None:
    if s.announce_interval_min > s.announce_interval:
        check.fail("TORRUST_ANNOUNCE_INTERVAL_MIN", f"greater than TORRUST_ANNOUNCE_INTERVAL ({s.announce_interval})")
    internal = [(b.port, "TORRUST_HTTP_TRACKERS") for b in s.http_trackers]
    internal += [(s.api_bind.port, "TORRUST_API_BIND"), (s.health_check_api_bind.port, "TORRUST_HEALTH_CHECK_API_BIND")]
    seen: dict[int, str] = {}
    for port, name in internal:
        if port in seen and seen[port] != name:
            check.fail(name, f"port {port} is already used by {seen[port]} in the tracker container")
        seen[port] = name
    _required(s, check, ["TORRUST_TRACKER_ADMIN_TOKEN"])


def database(s, check) -> None:
    if not s.mysql:
        return
    _required(s, check, ["TORRUST_MYSQL_PASSWORD", "TORRUST_MYSQL_ROOT_PASSWORD"])
    if s.mysql_password and s.mysql_password == s.mysql_root_password:
        check.fail("TORRUST_MYSQL_PASSWORD", "must differ from TORRUST_MYSQL_ROOT_PASSWORD")


def proxy(s, check) -> None:
    if s.acme_staging and s.acme_ca not in ("", "letsencrypt-staging"):  # "": refused by its kind already
        check.fail(
            "TORRUST_ACME_CA",
            "contradicts TORRUST_ACME_STAGING=true (deprecated): remove TORRUST_ACME_STAGING and keep this one",
        )
    if s.acme_ca_root is not None and s.acme_ca in ("letsencrypt", "letsencrypt-staging"):
        check.fail(
            "TORRUST_ACME_CA_ROOT",
            f"is for a private ACME server (TORRUST_ACME_CA=https://...): with {s.acme_ca} the proxy would trust "
            "only this bundle to reach Let's Encrypt's directory and get no certificate (staging certificates are "
            "checked for their names and the staging issuer without it)",
        )
    elif s.acme_ca_root is not None and s.acme_ca_root.is_file():
        _ca_bundle(s, check)
    if not s.tls:
        return
    acme_names = s.acme_names
    if check.strict and acme_names and not s.acme_email:
        check.fail("TORRUST_ACME_EMAIL", f"required with TLS on for public names ({', '.join(acme_names)})")
    if s.tls_internal == "never":
        internal_names = [n for n in s.public_names if n.endswith(INTERNAL_SUFFIXES)]
        if internal_names:
            check.fail("TORRUST_TLS_INTERNAL", f"'never' but {internal_names[0]} cannot get a public certificate")
    if check.strict and acme_names and s.public_acme:
        _challenge_ports(s, check)
    if acme_names:
        _caddy_account_race(s, check)


# Caddy before 2.9 (certmagic before 0.21.4, caddyserver/certmagic#293) registers an ACME
# account per name it obtains at the same time and can store one account's registration
# with another's key: every later order then fails with "JWS verification error", so no
# certificate is ever renewed. A first deploy obtains every public name at once.
CADDY_ACCOUNT_RACE_FIXED = (2, 9)
OFFICIAL_CADDY = "caddy"  # Docker Hub's official image, in any spelling (kinds.ImageRef.repository)


def _caddy_account_race(s, check) -> None:
    written = s.images["caddy"]
    image = image_ref(written)  # the kind accepted it: it parses
    version = re.match(r"v?(\d+)\.(\d+)(?:\D|$)", image.tag or "")
    if image.repository == OFFICIAL_CADDY and version and tuple(map(int, version.groups())) < CADDY_ACCOUNT_RACE_FIXED:
        check.fail(
            "TORRUST_CADDY_IMAGE",
            f"{written} can store a mismatched ACME account when it gets certificates for several names at once "
            "(caddyserver/certmagic#293, fixed in Caddy 2.9): renewals then fail with 'JWS verification error'; "
            f"use {BY_NAME['TORRUST_CADDY_IMAGE'].default} or later",
        )


# The port each challenge reaches on the host (RFC 8555 8.3, RFC 8737 3): fixed by the CA.
CHALLENGE_PORTS = {
    "http-01": ("TORRUST_HTTP_PORT", "http_port", 80),
    "tls-alpn-01": ("TORRUST_HTTPS_PORT", "https_port", 443),
}


def _challenge_ports(s, check) -> None:
    """Let's Encrypt validates on ports 80 and 443 only: at least one allowed challenge must
    find the proxy there."""
    usable = [c for c in s.acme_challenges if getattr(s, CHALLENGE_PORTS[c][1]) == CHALLENGE_PORTS[c][2]]
    if not usable:
        published = ", ".join(f"{CHALLENGE_PORTS[c][0]}={getattr(s, CHALLENGE_PORTS[c][1])}" for c in s.acme_challenges)
        check.fail(
            "TORRUST_ACME_CHALLENGES",
            f"Let's Encrypt validates http-01 on port 80 and tls-alpn-01 on port 443, but {published}: "
            "no allowed challenge can reach the proxy",
        )


def _ca_bundle(s, check) -> None:
    """TORRUST_ACME_CA_ROOT must be a PEM file of CA certificates."""
    from cryptography import x509  # only when the setting is used (a 40 ms import)

    data = s.acme_ca_root.read_bytes()[: 1 << 20]
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        certs = []
    if not certs:
        check.fail("TORRUST_ACME_CA_ROOT", "holds no PEM certificate (expected -----BEGIN CERTIFICATE----- blocks)")
        return
    not_ca = [c.subject.rfc4514_string() for c in certs if not _is_ca(c)]
    if not_ca:
        check.fail("TORRUST_ACME_CA_ROOT", f"holds a certificate that is not a CA: {not_ca[0][:80]}")


def _is_ca(cert) -> bool:
    from cryptography import x509

    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def monitoring(s, check) -> None:
    if s.watch.beside_stack and not (s.prometheus and s.watch.metrics_port):
        check.fail(
            "TORRUST_WATCH_BESIDE_STACK",
            "needs TORRUST_PROMETHEUS=true and a TORRUST_WATCH_METRICS_PORT for Prometheus to scrape",
        )
    if s.grafana and not s.prometheus:
        check.fail("TORRUST_GRAFANA", "Grafana needs Prometheus: set TORRUST_PROMETHEUS=true or TORRUST_GRAFANA=false")
    if s.grafana:
        _required(s, check, ["TORRUST_GRAFANA_ADMIN_PASSWORD"])


def tracker_release(s, check) -> None:
    """The image must be a release the tool knows (or be named by TORRUST_TRACKER_RELEASE),
    and the stack must be one that release can serve (e.g. no dashboards without metrics)."""
    try:
        release = trackers.release_of(s).release
    except ConfigError as exc:
        culprit = "TORRUST_TRACKER_RELEASE" if s.tracker_release else "TORRUST_TRACKER_IMAGE"
        check.fail(culprit, exc.message)
        return
    for problem in trackers.problems(release, trackers.choice_of(s)):
        check.fail(problem.split("=", 1)[0], problem)


def published_ports(s, check) -> None:
    """Ports published on the host must not collide."""
    wanted = [(b.port, "udp", "TORRUST_UDP_TRACKERS") for b in s.udp_trackers]
    wanted.append((s.http_port, "tcp", "TORRUST_HTTP_PORT"))
    if s.tls:
        wanted += [(s.https_port, "tcp", "TORRUST_HTTPS_PORT"), (s.https_port, "udp", "TORRUST_HTTPS_PORT")]
    if s.prometheus:
        wanted.append((s.prometheus_port, "tcp", "TORRUST_PROMETHEUS_PORT"))
    published: dict[tuple[int, str], str] = {}
    for port, proto, name in wanted:
        other = published.get((port, proto))
        if other and other != name:
            check.fail(name, f"host port {port}/{proto} is already used by {other}")
        published[(port, proto)] = name


def _required(s, check, names: list[str]) -> None:
    """Secrets required by what is switched on (outside local, where no dev value applies)."""
    if not check.strict:
        return
    for name in names:
        if not check.values[name].value.strip():
            check.fail(name, f"required; run ./tasks.py app.config --env {s.env} to generate it, or set it")


IMAGE_VARIABLES = {
    "tracker": "TORRUST_TRACKER_IMAGE",
    "mysql": "TORRUST_MYSQL_IMAGE",
    "caddy": "TORRUST_CADDY_IMAGE",
    "prometheus": "TORRUST_PROMETHEUS_IMAGE",
    "grafana": "TORRUST_GRAFANA_IMAGE",
}


def images(s, check) -> None:
    """TORRUST_REQUIRE_IMAGE_DIGESTS: outside local, every image the release uses is pinned
    by digest (a tag can move; a digest names one image for ever)."""
    if not (check.strict and s.require_image_digests):
        return
    used = {"tracker", "caddy"} | ({"mysql"} if s.mysql else set())
    used |= ({"prometheus"} if s.prometheus else set()) | ({"grafana"} if s.grafana else set())
    for key in sorted(used):
        if "@sha256:" not in s.images[key]:
            check.fail(IMAGE_VARIABLES[key], "not pinned by digest (TORRUST_REQUIRE_IMAGE_DIGESTS is on)")


RULES: tuple[Callable, ...] = (
    infrastructure,
    domains,
    tracker,
    tracker_release,
    database,
    proxy,
    monitoring,
    published_ports,
    images,
)


def check_all(s, check) -> None:
    for rule in RULES:
        rule(s, check)
