"""tasks/facts/proxy_log.py: Caddy's certificate story, on recorded logs (Caddy 2.6 and Pebble)."""

from __future__ import annotations

from tasks.facts import proxy_log
from tests.unit.facts.recorded import recorded


def test_issued():
    story = proxy_log.parse(recorded("proxy-log/issued.txt"))
    assert story.obtained == ("tracker.acme.example", "api.acme.example") and story.failures == {}


def test_http01_port_closed_names_the_challenge_and_the_cause():
    story = proxy_log.parse(recorded("proxy-log/http-01-port-closed.txt"))
    failure = story.failure("api.acme.example")
    assert (failure.challenge, failure.problem) == ("http-01", "connection")
    assert failure.detail.endswith("dial tcp 127.0.0.1:34083: connect: connection refused")
    assert str(failure).startswith("api.acme.example: http-01 challenge failed (connection): Get ")


def test_compose_logs_prefix_a_terminal_sequence():
    story = proxy_log.parse(recorded("proxy-log/compose-logs-new-name-port-closed.txt"))
    assert list(story.failures) == ["tracker2.acme.example"]
    assert story.failure("tracker2.acme.example").challenge == "http-01"


def test_a_name_missing_from_dns_and_one_obtained():
    story = proxy_log.parse(recorded("proxy-log/one-name-not-in-dns.txt"))
    assert story.obtained == ("tracker.acme.example",) and story.failure("tracker.acme.example") is None
    missing = story.failure("missing.acme.example")
    assert (missing.challenge, missing.problem, missing.detail) == (
        "tls-alpn-01",
        "malformed",
        'Could not resolve URL "missing.acme.example"',
    )


def test_an_order_refused_before_any_challenge():
    failure = proxy_log.parse(recorded("proxy-log/bad-nonce-errors-only.txt")).failure("tracker.acme.example")
    assert (failure.challenge, failure.problem) == ("", "badNonce")
    assert str(failure).startswith("tracker.acme.example: the CA refused the order (badNonce): HTTP 400")


def test_a_renewal_refused_for_a_mismatched_account_names_the_cause_and_the_way_out():
    """Recorded from Debian's Caddy 2.6 against Pebble after it stored one account's
    registration with another's key (caddyserver/certmagic#293)."""
    story = proxy_log.parse(recorded("proxy-log/account-mismatch-renewal.txt"))
    assert sorted(story.failures) == ["api.acme.example", "tracker.acme.example"]
    failure = story.failure("tracker.acme.example")
    assert (failure.challenge, failure.problem) == ("", "malformed") and "JWS verification error" in failure.detail
    text = str(failure)
    assert text.startswith("tracker.acme.example: the CA refused the order (malformed): HTTP 400")
    assert text.endswith("; " + proxy_log.ACCOUNT_HINT) and "caddy:2.10.2" in text
    other = proxy_log.parse(recorded("proxy-log/bad-nonce-errors-only.txt")).failure("tracker.acme.example")
    assert proxy_log.ACCOUNT_HINT not in str(other)


def test_hostile_lines_are_skipped_or_cleaned():
    story = proxy_log.parse(recorded("proxy-log/hostile.txt"))
    assert story.obtained == ()
    assert set(story.failures) == {"tracker.acme.example", "api.acme.example"}
    tracker = story.failures["tracker.acme.example"]
    assert "\x1b" not in tracker.detail and "\x07" not in tracker.detail and tracker.detail.endswith("refused")
    long = story.failures["api.acme.example"].detail
    assert len(long) == proxy_log.MAX_DETAIL and long.endswith("...")


def test_empty_log():
    assert proxy_log.parse("") == proxy_log.CertificateLog((), {})
