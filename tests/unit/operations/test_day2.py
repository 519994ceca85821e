"""Day-2 operations (tasks/operations/day2.py) against a fake target: hostile or damaged
documents from the host are named errors, never tracebacks; --service is checked."""

from __future__ import annotations

import contextlib

import pytest

from tasks.config.settings import load
from tasks.errors import ConfigError, ExitCode, MalformedFact
from tasks.operations import day2
from tests.unit.facts.recorded import recorded
from tests.unit.operations.fake_target import FakeTarget

CURRENT = (0, "releases/20261129T101009Z-be922269\n")
INVENTORY = (0, recorded("releases/inventory.txt"))


@pytest.fixture
def s(workdir):
    return load("local", root=workdir, environ={})


def manifests(by_release: dict[str, str]):
    def answer(argv):
        release = argv[-1].split("/")[-2]
        return (0, recorded(by_release.get(release, by_release.get("*"))))

    return answer


def test_releases_with_a_corrupt_release_json_is_a_named_error(s):
    target = FakeTarget(
        {"readlink": CURRENT, "inventory": INVENTORY, "cat": manifests({"*": "releases/truncated.json"})}
    )
    with pytest.raises(MalformedFact) as info:
        day2.releases(target, s)
    assert (
        info.value.code == ExitCode.UNTRUSTED and "release.json on fake-host: not a JSON object" in info.value.message
    )


def test_rollback_to_a_release_whose_manifest_names_hostile_services_is_refused_before_any_change(s):
    target = FakeTarget(
        {
            "lock": (0, ""),
            "readlink": CURRENT,
            "inventory": INVENTORY,
            "cat": manifests(
                {
                    "current": "releases/release.json",
                    "20261129T101004Z-be922269": "releases/hostile-service-option.json",
                }
            ),
            "release-lock": (0, ""),
        }
    )
    target.spawn_guard = lambda: __import__("tasks.runner.executor", fromlist=["Guard"]).Guard(1, lambda: None)
    with pytest.raises(MalformedFact, match="services is not a list of service names"):
        day2.rollback(
            target,
            s,
            "20261129T101004Z-be922269",
            wait_timeout=5,
            step=lambda t: contextlib.nullcontext(),
            force_unlock=False,
        )
    assert "switch" not in target.calls and target.calls[-1] == "release-lock"


@pytest.mark.parametrize("service", ["--since=1s", "grafana", "tracker;id"])
def test_a_service_must_be_one_of_the_release(s, service):
    """Issue 11, finding 10: `--service=--since=1s` reached compose as an option."""
    target = FakeTarget({"readlink": CURRENT, "cat": (0, recorded("releases/release.json"))})
    with pytest.raises(ConfigError, match=r"not a service of the current release \(tracker, proxy\)"):
        day2.logs(target, s, service=service)
    assert "compose logs" not in target.calls
