"""tasks/operations/issuance.py: the gate's wait for certificates, on a fake clock."""

from __future__ import annotations

import pytest

from tasks.facts.proxy_log import CertificateLog, Failure
from tasks.operations import issuance
from tasks.operations.gate import HealthGateFailed


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


NOTHING = CertificateLog((), {})


def run(states, story=NOTHING, timeout=30.0):
    clock, lines, rounds = Clock(), [], iter(states)
    last = {}

    def check():
        nonlocal last
        last = next(rounds, last)
        return last

    result = issuance.wait(check, lambda: story, timeout, lines.append, sleep=clock.sleep, clock=clock)
    return result, lines, clock.now


def test_passes_as_soon_as_every_name_verifies():
    result, lines, waited = run([{"a": "pending", "b": None}, {"a": None, "b": None}])
    assert result == "2 certificates verified after 1s" and lines == [] and waited == 1.0


def test_progress_then_failure_names_the_challenge_from_the_log():
    story = CertificateLog(
        ("b",), {"a": Failure("a", "http-01", "connection", "dial tcp 127.0.0.1:80: connect: connection refused")}
    )
    with pytest.raises(HealthGateFailed) as info:
        run([{"a": "IPv4: handshake failed", "b": None}], story, timeout=25)
    assert info.value.message == (
        "no valid certificate after 25s for a: a: http-01 challenge failed (connection): "
        "dial tcp 127.0.0.1:80: connect: connection refused"
    )


def test_progress_lines_every_ten_seconds():
    lines = []
    clock = Clock()
    with pytest.raises(HealthGateFailed, match="no ACME error in the proxy's log"):
        issuance.wait(
            lambda: {"a": "IPv4: timed out"},
            lambda: CertificateLog((), {}),
            25,
            lines.append,
            sleep=clock.sleep,
            clock=clock,
        )
    assert lines == [
        "waiting for certificates (10s): 0/1 verified; pending: a",
        "waiting for certificates (20s): 0/1 verified; pending: a",
    ]


def test_an_issued_certificate_that_does_not_verify_fails_without_waiting_out_the_timeout():
    story = CertificateLog(("a",), {})
    with pytest.raises(HealthGateFailed) as info:
        run([{"a": "IPv4: certificate not trusted: unable to get local issuer certificate"}], story, timeout=300)
    assert "after 10s" in info.value.message
    assert (
        "a: the proxy obtained a certificate that does not verify: IPv4: certificate not trusted" in info.value.message
    )
