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


def test_rollback_re_tags_moved_tags_and_audits(workdir):
    """app.rollback (without data): the target's recorded images whose tags moved are
    pointed back at them before `up`, then the audit line."""
    import contextlib
    import json

    from tasks.config.settings import load
    from tasks.operations import day2
    from tests.unit.facts.recorded import recorded
    from tests.unit.operations.fake_target import FakeTarget

    s = load("local", root=workdir, environ={})
    old, new = "20261129T100000Z-aaaaaaaa", "20261129T110000Z-bbbbbbbb"
    rec = recorded("record/plain.json")  # tracker torrust-test/upgrade-up1a2b3c:v3, mariadb, caddy
    moved = "sha256:" + "e" * 64

    ids = {img["ref"]: img["id"] for img in json.loads(rec)["images"].values()}

    def inspect(argv):  # the tracker's tag now names another image; the others their recorded one
        return 0, "".join(f"{moved if 'upgrade' in r else ids[r]}|[]\n" for r in argv[5:])

    manifest = recorded("releases/release.json")
    target = FakeTarget(
        {
            "guard": (0, ""),
            "lock": (0, ""),
            "readlink": (0, f"releases/{new}\n"),
            "cat": (0, manifest),
            "inventory": (0, f"{old}\n{new}\n---\n"),
            "records": (0, f"=== {old}\n{rec}"),
            "docker image": inspect,
            "retag": (0, ""),
            "switch": (0, ""),
            "compose up": (0, ""),
            "docker ps": (0, recorded("services/healthy.txt")),
            "append": (0, ""),
            "release-lock": (0, ""),
        }
    )
    out = day2.rollback(target, s, None, wait_timeout=30, step=lambda t: contextlib.nullcontext(), force_unlock=False)
    assert out["release"] == old
    retag = target.argvs[target.calls.index("retag")]
    assert retag[4:] == [
        "sha256:a4898aa174cad3426ef0a5484c8964d8424b37222578845bb18004d1f973ef29",
        "torrust-test/upgrade-up1a2b3c:v3",
    ]
    assert target.calls.index("retag") < target.calls.index("compose up")
    assert json.loads(target.argvs[target.calls.index("append")][5])["result"] == "rolled_back"
