"""tasks/facts/releases.py: release.json, the inventory, the current link, as untrusted input."""

from __future__ import annotations

import pytest

from tasks.errors import ExitCode, MalformedFact
from tasks.facts import releases
from tests.unit.facts.recorded import recorded


def test_a_manifest_the_tool_wrote():
    m = releases.parse_manifest(recorded("releases/release.json"), "release.json")
    assert m.services == ("tracker", "proxy") and m.env == "local" and m.project == "smoke"
    assert m.file(".env").secret and m.file(".env").mode == "0600" and m.file("compose.yaml") is not None
    assert m.images["tracker"] == "torrust-test/tracker-standin:1"


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("hostile-absolute-path", "file path '/etc/shadow' is not a release path"),
        ("hostile-dotdot-path", "file path '../../.ssh/authorized_keys' is not a release path"),
        ("hostile-services-not-a-list", "services is not a list of service names"),
        ("hostile-service-option", "services is not a list of service names"),
        ("bad-sha", "content_sha256 is not a SHA-256"),
        ("files-not-a-list", "files is not a list"),
        ("truncated", "not a JSON object"),
        ("not-an-object", "not a JSON object"),
    ],
)
def test_a_hostile_or_damaged_manifest_is_refused_with_a_name(name, why):
    with pytest.raises(MalformedFact) as info:
        releases.parse_manifest(recorded(f"releases/{name}.json"), "releases/x/release.json on host")
    assert info.value.code == ExitCode.UNTRUSTED
    assert info.value.message == f"releases/x/release.json on host: {why}"


def test_inventory_keeps_release_ids_only():
    assert releases.parse_inventory(recorded("releases/inventory.txt")) == (
        ["20261129T101004Z-be922269", "20261129T101009Z-be922269"],
        set(),
    )
    ids, failed = releases.parse_inventory(recorded("releases/inventory-with-strays.txt"))
    assert ids == ["20261129T101004Z-be922269", "20261129T101009Z-be922269"]
    assert failed == {"20261129T101004Z-be922269"}


@pytest.mark.parametrize(
    "link", ["/etc", "releases/../../etc", "releases/x", "/opt/torrust/releases/20261129T101004Z-be922269"]
)
def test_current_must_point_at_a_release(link):
    with pytest.raises(MalformedFact):
        releases.parse_current(link)


def test_current():
    assert releases.parse_current("releases/20261129T101004Z-be922269\n") == "20261129T101004Z-be922269"
    assert releases.parse_current("") is None


@pytest.mark.parametrize("raw", ["[]", '{"services": "tracker"}', '{"services": ["../x"]}', "\udcff"])
def test_what_cannot_be_a_release_manifest_is_refused(raw):
    with pytest.raises(MalformedFact):
        releases.parse_manifest(raw, "host:/opt/torrust/current/release.json")
