"""tasks/facts/record.py: a release's images.json (digests and the pre-upgrade backup),
read back from the host as untrusted input."""

from __future__ import annotations

import pytest

from tasks.errors import MalformedFact
from tasks.facts import record
from tests.unit.facts.recorded import recorded


def test_a_record_with_a_pre_upgrade_backup():
    rec = record.parse(recorded("record/upgrade.json"), "x")
    assert rec.images["tracker"].ref == "torrust-test/upgrade-up1a2b3c:v3"
    assert rec.images["tracker"].digest == rec.images["tracker"].id  # built locally: the id
    assert rec.images["proxy"].digest == "caddy@sha256:" + "2" * 64
    b = rec.pre_upgrade_backup
    assert (b.id, b.from_release, b.changed) == ("20261129T111502Z-3f2a", "20261129T111420Z-be922269", ("tracker",))


def test_a_record_without_a_backup():
    assert record.parse(recorded("record/plain.json"), "x").pre_upgrade_backup is None


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("record/hostile-digest.json", "digest is neither"),
        ("record/hostile-backup-id.json", "not a backup id"),
        ("record/hostile-service.json", "is not a service's image"),
        ("record/not-an-object.json", "not a JSON object"),
    ],
)
def test_hostile_records_are_refused(name, message):
    with pytest.raises(MalformedFact, match=message):
        record.parse(recorded(name), "x")


def test_many_records_in_one_round_trip_output():
    out = "=== 20261129T111420Z-be922269\n\n=== 20261129T111502Z-ca94f1d8\n" + recorded("record/upgrade.json")
    many = record.parse_many(out, "host")
    assert many["20261129T111420Z-be922269"] is None
    assert many["20261129T111502Z-ca94f1d8"].pre_upgrade_backup.id == "20261129T111502Z-3f2a"
    with pytest.raises(MalformedFact, match="not a release id"):
        record.parse_many("=== ../../etc\n{}", "host")
