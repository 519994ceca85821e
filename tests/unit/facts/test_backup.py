"""Backup facts on recorded documents: manifests (a real one and hostile ones), the host
script's listing and results. The tool (tasks/facts/backup.py) and the host script
(application/bin/torrust-backup) accept and refuse the same manifests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tasks.errors import ExitCode, ManifestRefused
from tasks.facts import backup as facts
from tasks.facts.text import host_text
from tests.unit.operations.test_backup import _script

RECORDED = Path(__file__).parent / "recorded"
MANIFESTS = RECORDED / "backup-manifest"
NORMAL_ID = "20261129T100433Z-5aa8"

# recorded manifest -> what the refusal says (every file in the folder is listed here)
REFUSED = {
    "not-json.json": "is not JSON",
    "empty.json": "is not JSON",
    "a-list.json": "is a JSON list, not an object",
    "files-not-a-list.json": "files is a dict, not a list",
    "files-missing.json": "files is missing, not a list",
    "files-empty.json": "files is empty",
    "entry-not-an-object.json": "files[1] is a str, not an object",
    "path-not-a-string.json": "files[1].path ['release.tar.gz'] is a list, not a string",
    "path-absolute.json": "files[1].path '/home/torrust/.ssh/authorized_keys' contains '/'",
    "path-dotdot.json": "files[1].path '../../.ssh/authorized_keys' contains '/'",
    "path-is-dotdot.json": "files[1].path '..' is '.' or '..'",
    "path-leading-dash.json": "files[1].path '--checkpoint-action=exec=sh' starts with '-'",
    "path-terminal-escape.json": "contains a control or non-printable character",
    "path-nul.json": "contains a NUL byte",
    "path-reserved.json": "files[1].path 'manifest.json' is reserved",
    "path-too-long.json": "is longer than 255 bytes",
    "path-duplicate.json": "files lists 'release.tar.gz' twice",
    "size-missing.json": "files[1] has no size",
    "size-negative.json": "files[1].size -1 is not an integer >= 0",
    "size-a-bool.json": "files[1].size True is not an integer >= 0",
    "size-a-string.json": "files[1].size '15392' is not an integer >= 0",
    "sha256-short.json": "files[1].sha256 '35fdc253' is not 64 lowercase hex digits",
    "sha256-missing.json": "files[1].sha256 None is not 64 lowercase hex digits",
    "database-missing.json": "database is missing, not an object",
    "database-file-not-checksummed.json": "database.file 'unlisted.sqlite3.zst' is not one of the checksummed files",
    "database-file-escapes.json": "database.file '../../storage/tracker/lib/database/sqlite3.db' is not one of the",
    "database-driver-unknown.json": "database.driver 'postgres' is not one of mysql, sqlite3",
    "id-not-a-backup-id.json": "id '../../../etc' is not a backup id",
    "id-missing.json": "id None is not a backup id",
}


def test_every_recorded_manifest_has_an_expectation():
    assert {p.name for p in MANIFESTS.iterdir()} == {*REFUSED, "normal-sqlite.json", "normal-mysql.json"}


def test_a_real_manifest_parses_into_the_typed_shape():
    m = facts.parse_manifest((MANIFESTS / "normal-sqlite.json").read_bytes(), source="m", expect_id=NORMAL_ID)
    assert m.id == NORMAL_ID
    assert [(f.path, f.size) for f in m.files] == [("database.sqlite3.zst", 533), ("release.tar.gz", 15392)]
    assert m.files[0].sha256 == "0c96561b94e516019c63a244473b9d7f99a4e7cae97a4687940cf94603294530"
    assert m.database == facts.Database("sqlite3", "database.sqlite3.zst", "zstd")
    assert m.size == 15925 and m.raw == (MANIFESTS / "normal-sqlite.json").read_bytes()
    assert _script().manifest_problems(json.loads(m.raw), NORMAL_ID) == []


def test_a_real_mysql_manifest_parses():
    """Recorded from a run of tests/integration/test_backup.py (the MariaDB stand-in for
    MySQL, zstd, the proxy's certificate store included)."""
    data = (MANIFESTS / "normal-mysql.json").read_bytes()
    m = facts.parse_manifest(data, source="m", expect_id="20261129T101944Z-ca47")
    assert [f.path for f in m.files] == ["database.sql.zst", "release.tar.gz", "proxy-data.tar.gz"]
    assert m.database == facts.Database("mysql", "database.sql.zst", "zstd") and m.size == 99486 + 15819 + 211
    assert _script().manifest_problems(json.loads(data), "20261129T101944Z-ca47") == []


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_hostile_manifests_are_refused_by_name_on_both_sides(name):
    data = (MANIFESTS / name).read_bytes()
    with pytest.raises(ManifestRefused) as info:
        facts.parse_manifest(data, source=f"host:/b/{name}")
    err = info.value
    assert err.code == ExitCode.UNTRUSTED
    assert err.message.startswith(f"host:/b/{name} ")
    assert REFUSED[name] in err.message
    assert "\x1b" not in err.message and "\x00" not in err.message  # repr() shows them escaped
    try:
        doc = json.loads(data)
    except ValueError:
        return  # the script refuses non-JSON in load_manifest (its own test below)
    assert _script().manifest_problems(doc, NORMAL_ID), name


def test_every_problem_is_named_at_once():
    doc = json.loads((MANIFESTS / "normal-sqlite.json").read_text())
    doc["files"][0]["size"] = -5
    doc["files"][1]["path"] = "/etc/passwd"
    doc["database"]["driver"] = "oracle"
    with pytest.raises(ManifestRefused) as info:
        facts.parse_manifest(json.dumps(doc).encode(), source="m")
    assert info.value.message.count(";") == 3  # size, path, driver, and database.file (now unlisted)


def test_the_id_must_be_the_one_asked_for():
    data = (MANIFESTS / "normal-sqlite.json").read_bytes()
    with pytest.raises(ManifestRefused, match=r"is not the backup asked for \(20200101T000000Z-0000\)"):
        facts.parse_manifest(data, source="m", expect_id="20200101T000000Z-0000")
    assert _script().manifest_problems(json.loads(data), "20200101T000000Z-0000")


def test_an_oversized_manifest_is_refused_before_parsing():
    with pytest.raises(ManifestRefused, match=r"is 1048577 bytes \(at most 1048576\)"):
        facts.parse_manifest(b" " * (facts.MAX_BYTES + 1), source="m")


def test_too_many_files_are_refused():
    doc = json.loads((MANIFESTS / "normal-sqlite.json").read_text())
    doc["files"] = [dict(doc["files"][1], path=f"f{n}") for n in range(facts.MAX_FILES + 1)]
    with pytest.raises(ManifestRefused, match="files has 65 entries"):
        facts.parse_manifest(json.dumps(doc).encode(), source="m")


def test_the_script_refuses_a_manifest_that_is_not_json(tmp_path):
    script = _script()
    b = tmp_path / NORMAL_ID
    b.mkdir()
    (b / "manifest.json").write_bytes((MANIFESTS / "not-json.json").read_bytes())
    with pytest.raises(script.Failure) as info:
        script.load_manifest(b)
    assert info.value.code == script.EXIT_UNTRUSTED and "not valid JSON" in info.value.message


# ------------------------------------------------------------------------ listing, results
def test_a_real_listing_parses():
    doc = json.loads((RECORDED / "backup-listing/normal.json").read_text())
    rows = facts.parse_listing(doc, source="host")
    assert [r["id"] for r in rows] == [NORMAL_ID] and rows[0]["size"] == 15925 and rows[0]["verified"] is None
    assert set(rows[0]) <= {"id", *facts.LISTING_FIELDS}


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("row-with-a-bad-id.json", "backups[0] has no backup id"),
        ("size-a-string.json", "backups[0].size '15925' has the wrong type"),
        ("backups-not-a-list.json", "the backup listing has no list of backups"),
    ],
)
def test_hostile_listings_are_refused(name, problem):
    doc = json.loads((RECORDED / "backup-listing" / name).read_text())
    with pytest.raises(ManifestRefused) as info:
        facts.parse_listing(doc, source="host")
    assert info.value.message == f"host: {problem}"


def test_a_real_backup_result_parses_and_hostile_ones_are_refused():
    ok = json.loads((RECORDED / "backup-result/backup.json").read_text())
    assert facts.parse_result("backup", ok, source="host")["tables"] == {"torrents": 20}
    for name, field in (("backup-without-size.json", "size"), ("backup-skipped-without-reason.json", "skipped")):
        doc = json.loads((RECORDED / "backup-result" / name).read_text())
        with pytest.raises(ManifestRefused, match=f"torrust-backup backup lacks or mistypes {field}$"):
            facts.parse_result("backup", doc, source="host")


def test_host_text_shows_no_control_characters_and_is_bounded():
    assert host_text("\x1b]0;owned\x07ok\r\nnext") == "?]0;owned?ok??next"
    assert host_text(["a"]) == "['a']"
    assert host_text("x" * 5000) == "x" * 2000 + "..."


def test_failure_text():
    assert facts.failure_text({"error": "disk \x1b[2J full"}, "last line") == "disk ?[2J full"
    assert facts.failure_text({"error": ["not", "text"]}, "last line") == "last line"
    drill = {"id": NORMAL_ID, "problems": ["table t: 1 rows restored, manifest says 2"]}
    assert facts.failure_text(drill, "x", drill=True) == (
        f"backup {NORMAL_ID} did not restore as recorded: table t: 1 rows restored, manifest says 2"
    )
    assert facts.failure_text({"problems": [1, 2]}, "fallback", drill=True) == "fallback"
