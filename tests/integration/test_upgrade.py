"""Upgrades that know about the data (issue #15, items 1 and 2), end to end: real MariaDB,
the SSH test host, and a tracker image under a tag that moves (`v3`, re-pointed as a
registry would on a new minor release; `develop` and `latest` are refused outside local).

The tag first names the tracker stand-in; then it is moved to the stand-in that migrates
the schema on start (tests/images/tracker-standin-migrating: a table and a column more).
The module's tests share one deployment and run in order: the dry run reports the moved
tag, the deploy backs the data up before the upgrade, a never-healthy image is rolled back
without touching the data (and the tag is pointed back), `app.rollback --with-data`
restores the rows exactly, and a rollback without a pre-upgrade backup is refused.
"""

from __future__ import annotations

import json
import os

import pytest

from tests.integration.conftest import SSHHost, docker, free_port
from tests.integration.test_backup import TABLES_SQL, BackupDeployment
from tests.integration.test_deploy import unhealthy_image  # noqa: F401 - a fixture: a never-healthy image


def image_id(ref: str) -> str:
    return docker("image", "inspect", "--format", "{{.Id}}", ref).stdout.strip()


class UpgradeDeployment(BackupDeployment):
    tag = ""

    def move_tag(self, image: str) -> None:
        docker("tag", image, self.tag)

    def tracker_image(self) -> str:
        cid = self.containers()["tracker"][0]
        return docker("inspect", "--format", "{{.Image}}", cid).stdout.strip()

    def tables(self) -> list[str]:
        return sorted(self.sql("SHOW TABLES;").split())

    def last(self, event: str) -> dict:
        return [x for x in self.audit() if x.get("event") == event][-1]

    def record(self, release: str) -> dict:
        return json.loads((self.root / "releases" / release / "images.json").read_text())


@pytest.fixture(scope="module")
def udep(images, tmp_path_factory):
    work = tmp_path_factory.mktemp("upgrade")
    (work / "cwd").mkdir()
    project = "up" + os.urandom(3).hex()
    host = SSHHost(f"{project}-sshhost", free_port(), work, images["sshhost"])
    d = UpgradeDeployment(host, work / "cwd", project)
    d.tag = f"torrust-test/upgrade-{project}:v3"  # a tag that moves (like v3 -> v3.1)
    d.move_tag(images["tracker-standin"])
    # a tag the tool cannot map to a release by its name: TORRUST_TRACKER_RELEASE says which
    d.env.update({"TORRUST_PROMETHEUS": "false", "TORRUST_TRACKER_IMAGE": d.tag, "TORRUST_TRACKER_RELEASE": "v3.0.0"})
    try:
        host.start()
        assert d.cli("app.preflight", "--accept-new-host-key").returncode == 0
        code, out = d.deploy()
        assert code == 0, out["_stderr"]
        assert out["images"]["tracker"]["id"] == image_id(images["tracker-standin"])
        assert out["images"]["tracker"]["digest"] == out["images"]["tracker"]["id"]  # built here: no repo digest
        d.sql(TABLES_SQL)
        d.first = out["release"]
        yield d
    finally:
        d.remove()
        docker("rmi", d.tag, check=False)


@pytest.fixture(scope="module")
def before(udep):
    """The rows and tables of before the upgrade."""
    return udep.rows(), udep.tables()


def test_dry_run_reports_the_moved_tag_and_the_backup_it_would_take(udep, images, before):
    running = udep.containers()
    udep.move_tag(images["tracker-standin-migrating"])
    code, plan, err = udep.json_cli("app.deploy", "--dry-run")
    assert code == 0, err
    assert plan["unchanged"] is False and plan["changes"] == []  # same files, another image
    tracker = next(i for i in plan["images"] if i["service"] == "tracker")
    assert tracker["ref"] == udep.tag and tracker["change"] is True
    assert tracker["new"] == image_id(images["tracker-standin-migrating"])
    assert image_id(images["tracker-standin"]).removeprefix("sha256:").startswith(tracker["running"])
    assert [i["service"] for i in plan["images"] if i["change"]] == ["tracker"]
    assert plan["upgrade_backup"] is True and plan["removals"] == []
    assert udep.containers() == running and udep.current() == udep.first


def test_the_upgrade_backs_the_data_up_first_then_migrates(udep, images, before):
    tables = before[1]
    code, out = udep.deploy()
    assert code == 0, out["_stderr"]
    assert out["status"] == "deployed" and out["previous"] == udep.first
    assert [c["service"] for c in out["image_changes"]] == ["tracker"]
    backup = out["pre_upgrade_backup"]
    assert backup and out["recreated"] == ["tracker"]
    assert udep.tracker_image() == image_id(images["tracker-standin-migrating"])
    assert "schema_migrations" in udep.tables() and "schema_migrations" not in tables  # the new image migrated
    listed = {r["id"]: r for r in udep.listed()}
    assert listed[backup]["reason"] == "before-upgrade" and listed[backup]["release"] == udep.first
    manifest = json.loads((udep.backups_dir / backup / "manifest.json").read_text())
    assert sorted(manifest["database"]["tables"]) == tables  # the data of before the migration
    rec = udep.record(out["release"])
    assert rec["pre_upgrade_backup"] == {"id": backup, "from_release": udep.first, "changed": ["tracker"]}
    assert rec["images"]["tracker"]["id"] == image_id(images["tracker-standin-migrating"])
    line = udep.last("deploy")
    assert line["pre_upgrade_backup"] == backup and line["image_changes"] == ["tracker"]
    assert line["images"]["tracker"] == image_id(images["tracker-standin-migrating"])
    assert udep.last("backup")["reason"] == "before-upgrade"
    # app.releases shows the digests and the backup; app.status the images running
    code, doc, err = udep.json_cli("app.releases")
    assert code == 0, err
    row = next(r for r in doc["releases"] if r["release"] == out["release"])
    assert (
        row["images"]["tracker"] == image_id(images["tracker-standin-migrating"])
        and row["pre_upgrade_backup"] == backup
    )
    code, st, err = udep.json_cli("app.status")
    tracker = next(x for x in st["services"] if x["service"] == "tracker")
    assert tracker["ref"] == udep.tag and tracker["digest"] == image_id(images["tracker-standin-migrating"])
    assert tracker["tag_moved"] is False
    udep.upgraded = out["release"]
    udep.upgrade_backup = backup


@pytest.mark.usefixtures("unhealthy_image")
def test_a_never_healthy_upgrade_is_rolled_back_without_touching_the_data(udep, images):
    udep.sql("INSERT INTO whitelist (info_hash) VALUES (SHA1('written after the upgrade'));")
    rows, tables = udep.rows(), udep.tables()
    udep.move_tag("torrust-test/never-healthy:1")
    code, out = udep.deploy("--wait-timeout", "15")
    assert code == 31, out["_stderr"]
    assert udep.current() == udep.upgraded
    assert udep.rows() == rows and udep.tables() == tables  # no restore on an automatic rollback
    # the moved tag was pointed back at the image the release ran
    assert image_id(udep.tag) == image_id(images["tracker-standin-migrating"])
    assert udep.tracker_image() == image_id(images["tracker-standin-migrating"])
    assert udep.announce_udp().interval == 120
    udep.rows_after_upgrade = rows


def test_rollback_with_data_restores_the_rows_of_before_the_upgrade(udep, images, before):
    rows, tables = before
    code, doc, err = udep.json_cli("app.rollback", "--with-data", "--yes")
    assert code == 0, err
    assert doc["release"] == udep.first and doc["restored_backup"] == udep.upgrade_backup
    assert udep.current() == udep.first
    assert udep.rows() == rows and udep.tables() == tables  # exactly: no column, no table of the migration
    assert udep.tracker_image() == image_id(images["tracker-standin"])  # the tag pointed back at it
    safety = json.loads((udep.backups_dir / doc["safety_backup"] / "manifest.json").read_text())
    assert "schema_migrations" in safety["database"]["tables"] and safety["reason"] == "before-rollback"
    line = udep.last("rollback")
    assert line["with_data"] is True and line["restored_backup"] == udep.upgrade_backup
    assert line["result"] == "rolled_back" and udep.announce_udp().interval == 120
    assert b"interval" in udep.announce_http()


def test_rollback_with_data_needs_confirmation_and_a_pre_upgrade_backup(udep):
    code, doc, err = udep.json_cli("app.rollback", "--with-data", env={"CI": "1"})
    assert code == 5 and "--yes" in err
    code, out = udep.deploy(env={"TORRUST_ANNOUNCE_INTERVAL": "300"})  # no image change: no backup
    assert code == 0 and out["pre_upgrade_backup"] is None, out["_stderr"]
    rows, current = udep.rows(), udep.current()
    code, doc, err = udep.json_cli("app.rollback", "--with-data", "--yes")  # to the upgrade release
    assert code == 2 and "recorded a pre-upgrade backup" in doc["message"], err
    assert udep.current() == current and udep.rows() == rows
