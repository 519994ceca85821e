"""The history store: real SQLite files; retention keeps the figures; merging; a bad,
locked or newer store is a named error and is never overwritten."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

from tasks.errors import ExitCode, StoreCorrupt, StoreLocked, StoreMissing
from tasks.watch.records import DAY_MS, HOUR_MS, Row, SeriesKey
from tasks.watch.store import Store
from tasks.watch.uptime import summarize
from tests.watchsim import Outage, simulate, twenty_probes

NOW = 1_795_000_000_000 // HOUR_MS * HOUR_MS + 17 * 60_000  # a fixed "now", 17 minutes past an hour
KEY = SeriesKey("berlin", "udp", "udp://tracker.example.org:6969", 4, "203.0.113.10")


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_new_store_is_versioned_wal_and_keeps_rows(tmp_path):
    path = tmp_path / "w.sqlite"
    with Store.open(path, create=True) as st:
        with st.transaction():
            assert st.add_results([Row(KEY, 1000, True, 12), Row(KEY, 61_000, False, 5000, "timeout")]) == 2
            assert st.add_results([Row(KEY, 1000, True, 99)]) == 0  # same series and time: ignored
            st.add_round("berlin", 1000, 80, 1, 0)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("SELECT value FROM meta WHERE key = 'application'").fetchone()[0] == "torrust-watch"
    conn.close()
    with Store.open(path, readonly=True) as st:
        assert st.series() == {1: KEY}
        assert st.raw_counts(0, 10**6) == [(1, 2, 1)]
        assert st.failures(0, 10**6) == [(1, 61_000, "timeout")]
        assert st.last_rounds() == {"berlin": 1000}


def test_a_missing_store_is_named(tmp_path):
    with pytest.raises(StoreMissing) as err:
        Store.open(tmp_path / "nope.sqlite", readonly=True)
    assert err.value.code == ExitCode.WATCH_STORE_MISSING and "no watch store at" in err.value.message
    assert not (tmp_path / "nope.sqlite").exists()


@pytest.mark.parametrize("create", [True, False])
def test_a_file_that_is_not_a_database_is_refused_and_left_as_it_was(tmp_path, create):
    path = tmp_path / "w.sqlite"
    path.write_bytes(b"this is a text file, not SQLite\n" * 200)
    before = digest(path)
    with pytest.raises(StoreCorrupt) as err:
        Store.open(path, create=create)
    assert err.value.code == ExitCode.WATCH_STORE_CORRUPT
    assert "left untouched" in err.value.message and str(path) in err.value.message
    assert digest(path) == before


def test_another_sqlite_file_and_a_newer_schema_are_refused(tmp_path):
    other = tmp_path / "other.sqlite"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE peers (id INTEGER)")
    conn.commit()
    conn.close()
    before = digest(other)
    with pytest.raises(StoreCorrupt, match="not a store of the watch"):
        Store.open(other, create=True)
    assert digest(other) == before
    newer = tmp_path / "newer.sqlite"
    Store.open(newer, create=True).close()
    conn = sqlite3.connect(newer)
    conn.execute("PRAGMA user_version = 7")
    conn.commit()
    conn.close()
    with pytest.raises(StoreCorrupt, match=r"newer version of the tool \(schema 7, this one reads 1\)"):
        Store.open(newer, create=True)


def test_damaged_pages_are_a_named_error_when_read(tmp_path):
    path = tmp_path / "w.sqlite"
    with Store.open(path, create=True) as st:
        simulate(st, twenty_probes(), NOW - DAY_MS, 600)
        st.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = bytearray(path.read_bytes())
    page = 4096
    for offset in range(3 * page, len(data) - page, 7 * page):  # scribble over many pages, not the header
        data[offset : offset + 200] = b"\xff" * 200
    path.write_bytes(bytes(data))
    before = digest(path)
    with pytest.raises(StoreCorrupt) as err:
        with Store.open(path) as st:
            summarize([st], "24h", NOW)
    assert "unreadable" in err.value.message
    assert digest(path) == before


def test_a_write_lock_held_too_long_is_named_and_loses_nothing(tmp_path):
    path = tmp_path / "w.sqlite"
    Store.open(path, create=True).close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    st = Store.open(path, wait=0.2)
    with pytest.raises(StoreLocked) as err:
        with st.transaction():
            st.add_results([Row(KEY, 1000, True, 12)])
    assert err.value.code == ExitCode.WATCH_STORE_LOCKED and "another process holds its write lock" in err.value.message
    holder.execute("ROLLBACK")
    holder.close()
    with st.transaction():
        st.add_results([Row(KEY, 1000, True, 12)])
    assert st.raw_counts(0, 10**6) == [(1, 1, 1)]
    st.close()


def _uptimes(st: Store, window: str) -> dict:
    return {(x.vantage, x.kind, x.target, x.family): (x.uptime, x.results) for x in summarize([st], window, NOW).lines}


def test_downsampling_keeps_uptime_within_a_tenth_of_a_point(tmp_path):
    start = NOW - 30 * DAY_MS
    outages = (
        Outage(NOW - 20 * DAY_MS + 5 * 60_000, NOW - 20 * DAY_MS + 47 * 60_000, "udp", 6),  # folded later
        Outage(NOW - 2 * DAY_MS, NOW - 2 * DAY_MS + 13 * 60_000, "http"),  # stays raw
    )
    # one UDP and one HTTP series per family at one address (the year-long, 20-probe store
    # is the benchmark's, tests/benchmarks/watch.py): the same rule, a unit test's size
    keys = [
        k
        for k in twenty_probes()
        if k.address in ("203.0.113.10", "2001:db8::10") and k.target.endswith(("6969", "tracker.example.org"))
    ]
    with Store.open(tmp_path / "w.sqlite", create=True) as st:
        simulate(st, keys, start, 30 * 1440, outages=outages, flaky=0.002)
        before = {w: _uptimes(st, w) for w in ("24h", "7d", "30d")}
        inc_before = summarize([st], "30d", NOW).incidents
        counts = st.maintain(NOW, 7, 400)
        n = len(keys)
        assert n == 4 and counts["folded"] == n * 1440 * 23 - n * 17  # whole hours before the cutoff, 17 min kept raw
        after = {w: _uptimes(st, w) for w in ("24h", "7d", "30d")}
        inc_after = summarize([st], "30d", NOW).incidents
    for window in before:
        assert before[window].keys() == after[window].keys()
        for key, (up, count) in before[window].items():
            assert abs(up - after[window][key][0]) < 0.1, (window, key, up, after[window][key])
            assert abs(count - after[window][key][1]) <= 60, (window, key)  # at most the window's first hour
    udp6 = [(k, v) for k, v in after["30d"].items() if k[1] == "udp" and k[3] == 6]
    assert all(v[0] < 99.95 for _k, v in udp6)  # the folded outage still counts
    # the folded outage is approximate (first to last failure); the recent one is exact
    folded = [(i.start, i.end) for i in inc_after if i.approximate and any("IPv6" in p for p in i.probes)]
    assert (outages[0].start, outages[0].end - 60_000) in folded
    recent = [i for i in inc_after if i.start == outages[1].start]
    assert recent and recent[0].end == outages[1].end and not recent[0].approximate
    assert any(i.start == outages[0].start and i.end == outages[0].end for i in inc_before)


def test_retention_drops_hourly_rows_past_their_time_and_old_alerts(tmp_path):
    with Store.open(tmp_path / "w.sqlite", create=True) as st:
        simulate(st, twenty_probes()[:2], NOW - 10 * DAY_MS, 10 * 1440, flaky=0)
        with st.transaction():
            st.add_alert(NOW - 9 * DAY_MS, "sim", "down", "s", "t", {}, ["webhook"])
            st.add_alert(NOW - DAY_MS, "sim", "down", "s2", "t", {}, ["webhook"])
        st.maintain(NOW, 2, 5)
        hours = {h for (_sid, h) in st.hourly(0, NOW)}
        assert min(hours) >= (NOW - 5 * DAY_MS) // HOUR_MS * HOUR_MS
        assert max(hours) < (NOW - 2 * DAY_MS) // HOUR_MS * HOUR_MS
        assert st.raw_start() >= (NOW - 2 * DAY_MS) // HOUR_MS * HOUR_MS
        assert [a["subject"] for a in st.alerts()] == ["s2"]
        assert len(st.deliveries()) == 1


def test_two_vantages_merge_and_reimport_adds_nothing(tmp_path):
    a_path, b_path = tmp_path / "a.sqlite", tmp_path / "b.sqlite"
    with Store.open(a_path, create=True) as a, Store.open(b_path, create=True) as b:
        simulate(a, twenty_probes("berlin"), NOW - 3 * DAY_MS, 3 * 1440, seed=1)
        simulate(
            b,
            twenty_probes("sydney"),
            NOW - 3 * DAY_MS,
            3 * 1440,
            seed=2,
            outages=(Outage(NOW - DAY_MS, NOW - DAY_MS + 30 * 60_000, "all", 4),),
        )
        with b.transaction():
            b.add_alert(NOW - DAY_MS + 3 * 60_000, "sydney", "down", "udp ...", "text", {"kind": "down"}, [])
        b.maintain(NOW, 1, 400)  # b keeps one day raw: its older hours arrive as aggregates
        alone = {w: _uptimes(b, w) for w in ("24h", "7d")}
        counts = a.import_from(b_path, NOW, 7)
        assert counts["results"] > 0 and counts["hours"] > 0 and counts["alerts"] == 1
        assert a.import_from(b_path, NOW, 7) == {"results": 0, "hours": 0, "rounds": 0, "alerts": 0}
        merged = {w: _uptimes(a, w) for w in ("24h", "7d")}
        for w in alone:
            for key, value in alone[w].items():
                assert merged[w][key] == value
        assert {k[0] for k in merged["7d"]} == {"berlin", "sydney"}
        summary = summarize([a], "7d", NOW)
        assert set(summary.last_rounds) == {"berlin", "sydney"}
        assert any(i.vantages == ["sydney"] and len(i.probes) == 10 for i in summary.incidents)
        with pytest.raises(StoreCorrupt, match="into itself"):
            a.import_from(a_path, NOW, 7)


def test_pointing_at_several_stores_counts_a_vantage_once(tmp_path):
    a_path, b_path = tmp_path / "a.sqlite", tmp_path / "b.sqlite"
    with Store.open(a_path, create=True) as a, Store.open(b_path, create=True) as b:
        simulate(a, twenty_probes("berlin"), NOW - DAY_MS, 1440)
        simulate(b, twenty_probes("sydney"), NOW - DAY_MS, 1440)
        a.import_from(b_path, NOW, 7)  # a holds sydney's rows too
        both = summarize([a, b], "24h", NOW)
        assert {x.vantage for x in both.lines} == {"berlin", "sydney"}
        assert all(x.results == 1440 * 2 for x in both.lines)  # 2 addresses per family, counted once


def test_export_is_a_consistent_readable_copy(tmp_path):
    with Store.open(tmp_path / "w.sqlite", create=True) as st:
        simulate(st, twenty_probes(), NOW - DAY_MS, 100)
        st.export_to(tmp_path / "copy.sqlite")
        with Store.open(tmp_path / "copy.sqlite", readonly=True) as copy:
            assert copy.raw_counts(0, NOW * 2) == st.raw_counts(0, NOW * 2)


def test_an_empty_file_becomes_a_store(tmp_path):
    path = tmp_path / "w.sqlite"
    path.touch()
    with Store.open(path, create=True) as st:
        assert st.series() == {}
