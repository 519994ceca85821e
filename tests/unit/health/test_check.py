"""Probe selection of health.check (tasks/health/check.py)."""

from __future__ import annotations

import pytest

from tasks.errors import ConfigError
from tasks.health import check


@pytest.mark.parametrize(
    ("only", "skip", "public"),
    [
        ("", "", True),
        ("host", "", False),
        ("", "host", True),
        ("", "udp,http,api,tls", False),
        ("udp,host", "udp", False),
        ("tls", "", True),
        (" api , host ", "", True),
        ("network", "", False),
        ("host,network", "", False),
        ("", "udp,http,api,tls", False),
    ],
)
def test_wants_public_is_true_when_a_group_probed_from_outside_is_left(only, skip, public):
    assert check.wants_public(only, skip) is public


def test_an_unknown_group_is_a_named_error():
    with pytest.raises(ConfigError, match=r"unknown probe group\(s\) dns; allowed: udp, http, api, tls, host, network"):
        check.wants_public("dns", "")
