"""Readiness waits (tasks/infra/wait.py): how connection failures are classified."""

from __future__ import annotations

import errno

from tasks.errors import AuthFailed, ConnectionFailed
from tasks.infra import wait


def test_connection_failures_are_classified():
    refused = ConnectionFailed("x")
    refused.cause = ConnectionRefusedError(errno.ECONNREFUSED, "refused")
    timeout = ConnectionFailed("x")
    timeout.cause = TimeoutError("timed out")
    assert wait.classify(refused) == "refused"
    assert wait.classify(timeout) == "unreachable"
    assert wait.classify(AuthFailed("no")) == "auth"
