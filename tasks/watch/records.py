"""The watch's rows as values: a series' key, one probe result, an hour's aggregate, and
the latency histogram's buckets. Plain data (no SQLite): the store reads and writes them,
the uptime and report pages compute with them.
"""

from __future__ import annotations

import bisect
import json
from dataclasses import dataclass

HOUR_MS = 3_600_000
DAY_MS = 86_400_000
# Upper bounds (ms) of the latency histogram's buckets; one more bucket holds the rest.
BUCKETS_MS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)


@dataclass(frozen=True, order=True)
class SeriesKey:
    vantage: str
    kind: str  # udp, http, api, tls, dns
    target: str  # udp://tracker.example:6969, tracker.example, ...
    family: int  # 4, 6, or 0 (dns: either)
    address: str

    @property
    def label(self) -> str:
        fam = f" IPv{self.family}" if self.family else ""
        via = f" via {self.address}" if self.address else ""
        return f"{self.kind} {self.target}{fam}{via}"


@dataclass(frozen=True)
class Row:
    key: SeriesKey
    t: int  # milliseconds since the epoch
    ok: bool
    latency_ms: int
    error: str | None = None  # error class when not ok
    value: float | None = None  # tls: the certificate's notAfter (epoch seconds)


@dataclass
class HourAgg:
    """One probe's hour: counts, a latency histogram of the answers, error classes, and
    where its failures lie (first, last, longest run) so incidents survive the folding."""

    n: int = 0
    ok: int = 0
    lat_sum: int = 0
    lat_max: int = 0
    hist: list[int] | None = None
    errors: dict[str, int] | None = None
    value_min: float | None = None
    fail_first: int | None = None
    fail_last: int | None = None
    streak: int = 0  # the longest run of consecutive failed results (rows added in time order)
    run: int = 0

    def add(self, ok: bool, latency_ms: int, error: str | None, value: float | None, t: int | None = None) -> None:
        self.n += 1
        self.ok += int(ok)
        if ok:  # latency statistics describe answers, not timeouts
            self.lat_sum += latency_ms
            self.lat_max = max(self.lat_max, latency_ms)
            hist = self.hist if self.hist is not None else [0] * (len(BUCKETS_MS) + 1)
            hist[bucket(latency_ms)] += 1
            self.hist = hist
            self.run = 0
        else:
            self.run += 1
            self.streak = max(self.streak, self.run)
            if t is not None:
                self.fail_first = t if self.fail_first is None else min(self.fail_first, t)
                self.fail_last = t if self.fail_last is None else max(self.fail_last, t)
        if error:
            errors = self.errors if self.errors is not None else {}
            errors[error] = errors.get(error, 0) + 1
            self.errors = errors
        if value is not None:
            self.value_min = value if self.value_min is None else min(self.value_min, value)

    def merge(self, other: HourAgg) -> None:
        self.n += other.n
        self.ok += other.ok
        self.lat_sum += other.lat_sum
        self.lat_max = max(self.lat_max, other.lat_max)
        self.hist = [a + b for a, b in zip(self.histogram(), other.histogram(), strict=True)]
        errors = dict(self.errors or {})
        for k, v in (other.errors or {}).items():
            errors[k] = errors.get(k, 0) + v
        self.errors = errors
        self.value_min = _min(self.value_min, other.value_min)
        self.fail_first = _min(self.fail_first, other.fail_first)
        self.fail_last = (
            None
            if self.fail_last is None and other.fail_last is None
            else max(x for x in (self.fail_last, other.fail_last) if x is not None)
        )
        self.streak = max(self.streak, other.streak)

    def histogram(self) -> list[int]:
        return list(self.hist) if self.hist is not None else [0] * (len(BUCKETS_MS) + 1)


def _min(a, b):
    return b if a is None else a if b is None else min(a, b)


def bucket(latency_ms: int) -> int:
    return bisect.bisect_left(BUCKETS_MS, latency_ms)


def agg_from_row(n, ok, lat_sum, lat_max, hist, errors, value_min, fail_first, fail_last, streak) -> HourAgg:
    hist_list = [int(x) for x in hist.split(",")]
    return HourAgg(n, ok, lat_sum, lat_max, hist_list, json.loads(errors), value_min, fail_first, fail_last, streak)


def agg_values(agg: HourAgg) -> tuple:
    return (
        agg.n,
        agg.ok,
        agg.lat_sum,
        agg.lat_max,
        ",".join(map(str, agg.histogram())),
        json.dumps(agg.errors or {}, sort_keys=True),
        agg.value_min,
        agg.fail_first,
        agg.fail_last,
        agg.streak,
    )
