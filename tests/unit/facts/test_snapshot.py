"""tasks/facts/snapshot.py: the deploy's one-round-trip look at the target."""

from __future__ import annotations

import pytest

from tasks.errors import MalformedFact
from tasks.facts import snapshot
from tests.unit.facts.recorded import recorded


def test_a_running_release():
    snap = snapshot.parse(recorded("snapshot/running.txt"))
    assert (snap.locked, snap.current, snap.recorded, snap.docker_ok) == (
        False,
        "20261129T101009Z-be922269",
        False,
        True,
    )
    assert snap.manifest.content_sha256.startswith("be922269") and snap.manifest.services == ("tracker", "proxy")
    assert sorted(snap.states) == ["proxy", "tracker"] and snap.problem == ""


def test_a_first_deploy_sees_nothing():
    snap = snapshot.parse(recorded("snapshot/first-deploy.txt"))
    assert (snap.locked, snap.current, snap.manifest, snap.states, snap.docker_ok) == (False, None, None, {}, True)


def test_a_held_lock():
    assert snapshot.parse(recorded("snapshot/locked.txt")).locked


def test_a_corrupt_manifest_is_named_and_not_used():
    """A new release replaces a release whose manifest is damaged: the deploy may go on."""
    snap = snapshot.parse(recorded("snapshot/corrupt-manifest.txt"))
    assert snap.manifest is None and "not a JSON object" in snap.problem and snap.current


def test_a_current_link_that_leaves_releases_is_refused():
    with pytest.raises(MalformedFact, match="not at releases/<id>"):
        snapshot.parse(recorded("snapshot/hostile-current.txt"))


def test_the_cron_entry_the_backups_and_a_moved_tag():
    snap = snapshot.parse(recorded("snapshot/moved-tag.txt"))
    assert snap.cron and snap.backups
    assert snap.states["tracker"].image == "46b1e8e2f1c3" and snap.states["proxy"].image == "torrust-test/caddy:2.6"
    assert snap.states["tracker"].ports == ("16969/udp",) and snap.states["proxy"].ports == ("18080/tcp",)


def test_an_older_snapshot_has_no_cron_or_backups():
    snap = snapshot.parse(recorded("snapshot/running.txt"))
    assert not snap.cron and not snap.backups
