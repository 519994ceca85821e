"""The protocol probes of a deploy's (and a restore's) health gate.

UDP, HTTP through the proxy and the API, without the certificate probe: ACME may still
be issuing the certificate when the gate runs (health.check judges it). So requests that
carry no credential accept whatever certificate the proxy shows. Requests that carry the
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
from tasks.health import probes as pr
from tasks.runner.executor import Executor


def _lax_context() -> ssl.SSLContext:
    """For requests without a credential only: any certificate (it may not be issued yet)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    return ctx


def credential_trust(s: Settings, ex: Executor | None) -> tuple[ssl.SSLContext | None, str]:
    """(verifying context for the API's name, "") or (None, why it cannot be verified)."""
    if not s.uses_internal_ca(s.api_domain):
        return pr.tls_context(), ""
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
    `ex`: an executor on the target, to read the proxy's internal CA (optional)."""
    reach = gate_reach(s, ex)
    probes = [
        x
        for x in pr.public_probes(s, reach, sorted(reach.addresses), s.probe_timeout, s.probe_attempts)
        if x.name != "tls certificate"
    ]
    return lambda: pr.run(probes)
