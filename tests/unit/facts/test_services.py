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


def test_published_ports_and_the_image_shown():
    from tasks.facts.services import moved, published

    assert published("443/tcp, 0.0.0.0:18080->80/tcp, [::]:18080->80/tcp") == ("18080/tcp",)
    assert published("127.0.0.1:9090->9090/tcp, 6969/udp") == ("9090/tcp",) and published("") == ()
    states = services.parse(recorded("services/healthy.txt"))
    assert states["tracker"].image == "torrust-test/tracker-standin:1" and not moved(states, ["tracker", "proxy"])
