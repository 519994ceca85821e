"""Probe rules that need no server: where the admin token may go, the gate's trust, and
what the Prometheus probe expects of each release (fault servers: tests/integration/
test_health_faults.py)."""

from __future__ import annotations

import ssl

import pytest

from tasks.config import trackers as t
from tasks.config.settings import load
from tasks.health import gate_probes as gate
from tasks.health import probes as p
from tasks.health.reach import Reach, credential_refusal, is_this_machine, tls_context


def test_the_token_goes_over_plain_http_only_to_this_machine():
    assert is_this_machine("127.0.0.1") and is_this_machine("::1")
    assert not is_this_machine("192.0.2.10") and not is_this_machine("not-an-ip")
    assert credential_refusal(Reach({4: "127.0.0.1"}, False, 80), 4) is None
    why = credential_refusal(Reach({4: "192.0.2.10"}, False, 80), 4)
    assert why and "plain HTTP to 192.0.2.10" in why


def test_the_token_goes_over_tls_only_when_it_is_verified():
    lax = ssl.create_default_context()
    lax.check_hostname, lax.verify_mode = False, ssl.CERT_NONE
    assert credential_refusal(Reach({4: "192.0.2.10"}, True, 443), 4) is None  # system store
    assert credential_refusal(Reach({4: "192.0.2.10"}, True, 443, tls_context()), 4) is None
    assert credential_refusal(Reach({4: "192.0.2.10"}, True, 443, lax), 4)
    # an explicit credential context must verify too, whatever the other context is
    assert credential_refusal(Reach({4: "192.0.2.10"}, True, 443, lax, credential_context=lax), 4)
    assert credential_refusal(Reach({4: "192.0.2.10"}, True, 443, lax, credential_context=tls_context()), 4) is None
    assert credential_refusal(Reach({4: "x"}, True, 443, lax, credential_note="why"), 4) == "why"


def test_the_gate_accepts_any_certificate_without_a_credential_and_verifies_with_one(workdir):
    internal = load("local", root=workdir, environ={"TORRUST_TLS": "true"})  # *.torrust.local: internal CA
    reach = gate.gate_reach(internal)
    assert reach.context.verify_mode == ssl.CERT_NONE and reach.secure_context() is None
    assert "internal CA, which the gate cannot read" in credential_refusal(reach, 4)
    public = load(
        "local",
        root=workdir,
        environ={"TORRUST_TLS": "true", "TORRUST_DOMAIN": "tracker.example.org", "TORRUST_ACME_EMAIL": "a@b.org"},
    )
    reach = gate.gate_reach(public)
    assert reach.context.verify_mode == ssl.CERT_NONE
    assert reach.secure_context().verify_mode == ssl.CERT_REQUIRED and credential_refusal(reach, 4) is None


def _target(job: str, health: str = "up") -> dict:
    return {"labels": {"job": job}, "health": health}


def test_prometheus_expects_exactly_the_jobs_the_release_serves():
    none = "no tracker scrape job: release v3.0.0 has no Prometheus endpoint"
    assert p.prometheus_targets([], t.V3_0_0) == ([], none)
    with pytest.raises(p.ProbeFailed, match=r"configured, but release v3\.0\.0 has no Prometheus endpoint"):
        p.prometheus_targets([_target("tracker_stats")], t.V3_0_0)
    both = [_target("tracker_stats"), _target("tracker_metrics", "down")]
    assert p.prometheus_targets(both, t.DEVELOP) == (both, "")  # judged by the caller (down, grace)
    with pytest.raises(p.ProbeFailed, match="tracker scrape jobs missing: tracker_metrics"):
        p.prometheus_targets([_target("tracker_stats")], t.DEVELOP)
