"""The protocol probes of a deploy's (and a restore's) health gate.

UDP, HTTP through the proxy and the API, without the certificate probe: the gate verifies
every certificate first, waiting for ACME issuance (tasks/operations/issuance.py, wired in
tasks/cli/app.py `certificate_wait`), so requests that carry no credential accept whatever
certificate the proxy shows. Requests that carry the
admin token (api stats; keys and whitelisting in private/listed mode) verify it: the
system trust store, plus the proxy's internal CA for internal (.local/.test) names when an
executor on the target can read it. When it cannot be verified, those requests are
skipped with the reason, never sent blind.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable

from tasks.config.settings import Settings
from tasks.errors import ConfigError
from tasks.health import check as hc
from tasks.health import network as hn
from tasks.health import probes as pr
from tasks.health import trust
from tasks.runner.executor import Executor


def _lax_context() -> ssl.SSLContext:
    """For requests without a credential only: any certificate (it may not be issued yet)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    return ctx


def credential_trust(s: Settings, ex: Executor | None) -> tuple[ssl.SSLContext | None, str]:
    """(verifying context for the API's name, "") or (None, why it cannot be verified): the
    trust that applies to it (tasks/health/trust.py)."""
    if not s.uses_internal_ca(s.api_domain):
        return trust.contexts(s)[s.api_domain], ""
    if ex is None:
        return None, f"{s.api_domain} has a certificate from the proxy's internal CA, which the gate cannot read"
    try:
        return pr.tls_context(hc.internal_ca(ex, s)), ""
    except ConfigError as exc:
        return None, exc.message


def gate_reach(s: Settings, ex: Executor | None = None) -> pr.Reach:
    base = hc.reach(s, "both", None)
    if not s.tls:
        return base
    trusted, why = credential_trust(s, ex)
    return pr.Reach(
        base.addresses,
        True,
        base.port,
        _lax_context(),
        credential_context=trusted,
        credential_note=why,
    )


def gate_probes(s: Settings, ex: Executor | None = None) -> Callable[[], list[pr.ProbeResult]]:
    """The gate's probes as one callable (what DeployOptions.probes and restore take).
    `ex`: an executor on the target, to read the proxy's internal CA, to probe IPv6 from the
    host when this machine has no IPv6 route, and (SSH targets) to read the network path.
    The network findings are reported, never required: they describe the host, and rolling
    the release back would not change them (a broken path still fails the UDP probes)."""
    reach = gate_reach(s, ex)
    vantage = hn.ipv6_vantage(reach.addresses[6], s.probe_ipv6_from) if 6 in reach.addresses else None
    probes = [x for x in hn.public_probes_with_vantage(ex, s, reach, vantage) if x.name != "tls certificate"]
    if ex is not None and s.target == "ssh":
        probes += hn.network_probes(ex, hn.expectations(s), s.probe_timeout, required=frozenset())
    return lambda: pr.run(probes)
