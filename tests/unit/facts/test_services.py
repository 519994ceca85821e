"""tasks/facts/services.py: `docker ps` lines into service states."""

from __future__ import annotations

import pytest

from tasks.errors import ExitCode, MalformedFact
from tasks.facts import services
from tests.unit.facts.recorded import recorded


def test_a_healthy_stack():
    states = services.parse(recorded("services/healthy.txt"))
    assert sorted(states) == ["proxy", "tracker"]
    assert (states["tracker"].state, states["tracker"].health) == ("running", "healthy")
    assert (states["proxy"].state, states["proxy"].health) == ("running", "")  # no healthcheck
    assert len(states["tracker"].id) == 12 and states["tracker"].created.startswith("2026-11-29 10:10")
    assert services.unhealthy(states, ["tracker", "proxy"]) == []


def test_starting_unhealthy_exited_and_missing_are_named():
    states = services.parse(recorded("services/unhealthy.txt"))
    assert services.unhealthy(states, ["tracker", "proxy", "mysql", "grafana"]) == [
        "tracker (running/unhealthy)",
        "proxy (running/starting)",
        "mysql (exited)",
        "grafana (missing)",
    ]
    assert services.parse(recorded("services/starting.txt"))["proxy"].health == "starting"


def test_no_containers():
    assert services.parse(recorded("services/empty.txt")) == {}
    assert services.unhealthy({}, ["tracker"]) == ["tracker (missing)"]


@pytest.mark.parametrize("name", ["services/garbage.txt", "services/not-an-object.txt"])
def test_a_line_that_is_not_a_container_record_is_refused(name):
    with pytest.raises(MalformedFact) as info:
        services.parse(recorded(name))
    assert info.value.code == ExitCode.UNTRUSTED and "`docker ps` line 1" in info.value.message
