"""Uptime, percentiles and incidents on crafted rows (exact expected values)."""

from __future__ import annotations

import pytest

from tasks.errors import ConfigError
from tasks.watch.records import Row, SeriesKey
from tasks.watch.store import Store
from tasks.watch.uptime import exact_quantile, hist_quantile, merge_runs, summarize, window_seconds

NOW = 1_795_000_000_000
A = SeriesKey("berlin", "udp", "udp://t.example:6969", 4, "203.0.113.10")
B = SeriesKey("berlin", "udp", "udp://t.example:6969", 6, "2001:db8::10")
M = 60_000


def rows(key: SeriesKey, pattern: str, start: int, latency: int = 20) -> list[Row]:
    """'.' passes, 'x' fails, one per minute from `start`."""
    return [
        Row(key, start + i * M, c == ".", latency + i if c == "." else 5000, None if c == "." else "timeout")
        for i, c in enumerate(pattern)
    ]


@pytest.fixture
def store(tmp_path):
    with Store.open(tmp_path / "w.sqlite", create=True) as st:
        yield st


def test_quantiles():
    assert exact_quantile([], 0.5) is None
    assert exact_quantile([30, 10, 20, 40], 0.5) == 20
    assert exact_quantile(list(range(1, 101)), 0.95) == 95
    hist = [0, 0, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0]  # ten answers between 10 and 25 ms
    assert hist_quantile(hist, 0.5, 24) == pytest.approx(10 + 14 * 0.5)
    assert hist_quantile([0] * 12, 0.5, 0) is None
    assert hist_quantile([0] * 11 + [4], 0.5, 30000) == pytest.approx(10000 + 20000 * 0.5)  # overflow bucket


def test_uptime_and_overlapping_failures_make_one_incident(store):
    start = NOW - 20 * M
    with store.transaction():
        store.add_results(rows(A, "...xxx....", start))
        store.add_results(rows(B, ".....xxx..", start))
        store.add_round("berlin", start, 10, 2, 0)
    s = summarize([store], "24h", NOW)
    assert [(x.family, x.results, x.ok, x.uptime) for x in s.lines] == [(4, 10, 7, 70.0), (6, 10, 7, 70.0)]
    # answers 20, 21, 22, 26, 27, 28, 29 ms: nearest rank 4 of 7 and 7 of 7
    assert (s.lines[0].p50_ms, s.lines[0].p95_ms, s.lines[0].exact) == (26, 29, True)
    (inc,) = s.incidents
    assert (inc.start, inc.end) == (start + 3 * M, start + 8 * M)
    assert inc.duration_s(NOW) == 300 and len(inc.probes) == 2 and inc.vantages == ["berlin"]
    doc = s.as_dict()
    assert doc["incidents"][0]["duration_s"] == 300.0 and doc["incidents"][0]["ongoing"] is False


def test_an_incident_without_a_later_success_is_ongoing(store):
    with store.transaction():
        store.add_results(rows(A, "..xxxx", NOW - 6 * M))
    (inc,) = summarize([store], "24h", NOW).incidents
    assert inc.end is None and inc.duration_s(NOW) == 4 * 60


def test_separate_failures_are_separate_incidents_and_the_window_limits_them(store):
    with store.transaction():
        store.add_results(rows(A, ".x..x.", NOW - 6 * M))
        store.add_results(rows(A, "x.", NOW - 3 * 86_400_000))
    assert len(summarize([store], "24h", NOW).incidents) == 2
    assert len(summarize([store], "7d", NOW).incidents) == 3


def test_merge_runs_joins_touching_and_keeps_ongoing():
    from tasks.watch.uptime import Incident

    runs = [Incident(10, 20, ["a"], ["v"]), Incident(20, 30, ["b"], ["v"]), Incident(40, None, ["c"], ["w"])]
    merged = merge_runs(runs)
    assert [(i.start, i.end, i.probes) for i in merged] == [(10, 30, ["a", "b"]), (40, None, ["c"])]


@pytest.mark.parametrize("text", ["30m", "5000d", "week", ""])
def test_bad_windows_are_named(text):
    with pytest.raises(ConfigError) as err:
        window_seconds(text)
    assert "--window" in err.value.message


def test_exact_percentiles_from_sqlite_match_the_nearest_rank_definition(store):
    import random

    rng = random.Random(3)
    lat = [rng.randint(1, 900) for _ in range(997)]
    with store.transaction():
        store.add_results(Row(A, NOW - 10**7 + i * 1000, True, v) for i, v in enumerate(lat))
        store.add_results(Row(B, NOW - 10**7 + i * 1000, i % 3 != 0, v) for i, v in enumerate(lat))
    lines = {x.family: x for x in summarize([store], "24h", NOW).lines}
    assert (lines[4].p50_ms, lines[4].p95_ms) == (exact_quantile(lat, 0.5), exact_quantile(lat, 0.95))
    answered = [v for i, v in enumerate(lat) if i % 3 != 0]
    assert (lines[6].p50_ms, lines[6].p95_ms) == (exact_quantile(answered, 0.5), exact_quantile(answered, 0.95))
