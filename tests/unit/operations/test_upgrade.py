"""tasks/operations/upgrade.py: image changes from facts, the tags a rollback restores, and
which pre-upgrade backup app.rollback --with-data restores."""

from __future__ import annotations

import pytest

from tasks.errors import ConfigError
from tasks.facts import images, record, services
from tasks.facts.images import ImageFact
from tasks.operations import upgrade
from tests.unit.facts.recorded import recorded

HEALTHY = services.parse(recorded("services/healthy.txt"))  # tracker-standin:1 and caddy:2.6, not moved
MOVED = services.parse(recorded("snapshot/moved-tag.txt").split("--- ps\n")[1])  # the tracker's tag moved
OLD, NEW = "sha256:46b1e8e2f1c3" + "0" * 52, "sha256:" + "9" * 64
CADDY = ImageFact("torrust-test/caddy:2.6", "sha256:" + "c" * 64)


def test_same_reference_same_image_is_no_change():
    resolved = {"torrust-test/tracker-standin:1": ImageFact("torrust-test/tracker-standin:1", OLD), CADDY.ref: CADDY}
    wanted = {"tracker": "torrust-test/tracker-standin:1", "proxy": CADDY.ref}
    assert upgrade.image_changes(HEALTHY, wanted, resolved) == []


def test_another_reference_is_a_change_and_a_data_change_for_the_tracker():
    resolved = {
        "torrust-test/tracker-standin:1": ImageFact("torrust-test/tracker-standin:1", OLD),
        "t:2": ImageFact("t:2", NEW),
        CADDY.ref: CADDY,
    }
    changes = upgrade.image_changes(HEALTHY, {"tracker": "t:2", "proxy": CADDY.ref, "grafana": "g:1"}, resolved)
    assert [(c.service, c.running, c.new.id) for c in changes] == [("tracker", OLD, NEW)]
    assert upgrade.data_changes(changes) == ["tracker"]
    assert changes[0].as_dict() == {"service": "tracker", "ref": "t:2", "running": OLD, "new": NEW}


def test_a_moved_tag_is_a_change_and_the_rollback_points_it_back():
    resolved = {"torrust-test/tracker-standin:1": ImageFact("torrust-test/tracker-standin:1", NEW), CADDY.ref: CADDY}
    wanted = {"tracker": "torrust-test/tracker-standin:1", "proxy": CADDY.ref}
    assert upgrade.running_refs(MOVED) == [CADDY.ref]  # a moved tag needs no lookup: ps shows the id
    changes = upgrade.image_changes(MOVED, wanted, resolved)
    assert [(c.service, c.running) for c in changes] == [("tracker", "46b1e8e2f1c3")]
    assert upgrade.tags_to_restore(wanted, MOVED, resolved) == [("46b1e8e2f1c3", "torrust-test/tracker-standin:1")]
    pinned = {"tracker": "t@sha256:" + "1" * 64}
    assert upgrade.tags_to_restore(pinned, MOVED, resolved) == []  # a digest never moves


def test_the_backup_of_the_oldest_upgrade_after_the_target():
    rec = record.parse(recorded("record/upgrade.json"), "x")
    plain = record.parse(recorded("record/plain.json"), "x")
    r0, r1, r2, r3 = "20261129T100000Z-00000000", "20261129T110000Z-11111111", "20261129T120000Z-22", "20261129T13"
    records = {r0: None, r1: rec, r2: plain}
    assert upgrade.data_backup_for(records, r0, r2) == ("20261129T111502Z-3f2a", r1)
    with pytest.raises(ConfigError, match="no release between"):
        upgrade.data_backup_for(records, r1, r2)
    assert r3 > r2 and images.is_digest_pinned("a@sha256:" + "f" * 64)
