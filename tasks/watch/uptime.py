"""Uptime, latency percentiles and incidents from one or several stores.

Uptime is the share of successful results per probe, family and vantage (the addresses
of a family pooled) over the window; counts come from raw rows and from hourly aggregates
alike, so downsampling does not change it. Latency p50/p95 describe successful probes:
exact (nearest rank) while the window lies in raw rows, interpolated in the hourly
histograms' buckets once it reaches further back.

An incident is a stretch of time in which at least one probe failed: from a probe's first
failed result to its next success, stretches of several probes merged when they overlap.
Before the raw retention only hours are known: such incidents are marked approximate.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

from tasks.errors import ConfigError
from tasks.watch.config import parse_duration
from tasks.watch.records import BUCKETS_MS, HOUR_MS, HourAgg, SeriesKey
from tasks.watch.store import Store

WINDOWS = ("24h", "7d", "30d")
JOIN_GAP_MS = 5 * 60_000  # failures of one probe in consecutive folded hours this close are one incident
MAX_WINDOW_S = 3650 * 86400


def window_seconds(text: str) -> int:
    seconds = int(parse_duration(text, "--window"))
    if not 3600 <= seconds <= MAX_WINDOW_S:
        raise ConfigError(f"--window {text!r}: out of range (allowed: from 1h to 3650d, e.g. {', '.join(WINDOWS)})")
    return seconds


@dataclass
class Line:
    vantage: str
    kind: str
    target: str
    family: int
    addresses: list[str]
    results: int
    ok: int
    uptime: float | None  # percent
    p50_ms: float | None
    p95_ms: float | None
    exact: bool  # percentiles from raw rows (True) or from hourly histograms

    @property
    def label(self) -> str:
        fam = f" IPv{self.family}" if self.family else ""
        return f"{self.kind} {self.target}{fam}"


@dataclass
class Incident:
    start: int  # ms
    end: int | None  # ms; None while it goes on
    probes: list[str]
    vantages: list[str]
    approximate: bool = False

    def duration_s(self, now: int) -> float:
        return ((self.end if self.end is not None else now) - self.start) / 1000


@dataclass
class Certificate:
    vantage: str
    name: str
    family: int
    address: str
    not_after: float | None  # epoch seconds
    checked: int  # ms
    ok: bool
    error: str | None

    def days_left(self, now_ms: int) -> float | None:
        return None if self.not_after is None else (self.not_after - now_ms / 1000) / 86400


@dataclass
class Summary:
    window: str
    since: int
    until: int
    lines: list[Line]
    incidents: list[Incident]
    certificates: list[Certificate]
    last_rounds: dict[str, int]
    rounds: int
    raw_since: int | None  # oldest raw row: percentiles/incidents before it are approximate
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        def when(ms: int | None) -> str | None:
            return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")

        return {
            "window": self.window,
            "since": when(self.since),
            "until": when(self.until),
            "rounds": self.rounds,
            "vantages": {v: when(t) for v, t in sorted(self.last_rounds.items())},
            "probes": [{**asdict(x), "uptime": None if x.uptime is None else round(x.uptime, 3)} for x in self.lines],
            "incidents": [
                {
                    "start": when(i.start),
                    "end": when(i.end),
                    "duration_s": round(i.duration_s(self.until), 1),
                    "ongoing": i.end is None,
                    "probes": i.probes,
                    "vantages": i.vantages,
                    "approximate": i.approximate,
                }
                for i in self.incidents
            ],
            "certificates": [
                {
                    "vantage": c.vantage,
                    "name": c.name,
                    "family": c.family,
                    "address": c.address,
                    "not_after": None if c.not_after is None else when(int(c.not_after * 1000)),
                    "days_left": None if c.not_after is None else round(c.days_left(self.until), 1),
                    "ok": c.ok,
                    "error": c.error,
                }
                for c in self.certificates
            ],
        }


# ---------------------------------------------------------------------- percentiles
def exact_quantile(values: list[int], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return float(ordered[max(0, math.ceil(q * len(ordered)) - 1)])


def hist_quantile(hist: list[int], q: float, lat_max: int) -> float | None:
    total = sum(hist)
    if not total:
        return None
    rank = q * total
    seen = 0
    for i, count in enumerate(hist):
        if count and seen + count >= rank:
            lo = BUCKETS_MS[i - 1] if i > 0 else 0
            hi = BUCKETS_MS[i] if i < len(BUCKETS_MS) else max(lat_max, lo)
            return lo + (min(hi, max(lat_max, lo)) - lo) * (rank - seen) / count
        seen += count
    return float(lat_max)


# ---------------------------------------------------------------------- summary
def _owners(stores: list[Store]) -> dict[str, int]:
    """The store each vantage is read from: the one with its newest round (a vantage
    found in two stores, e.g. imported and also pointed at, is counted once)."""
    owner: dict[str, tuple[int, int]] = {}
    for i, st in enumerate(stores):
        for vantage, t in st.last_rounds().items():
            if vantage not in owner or t > owner[vantage][0]:
                owner[vantage] = (t, i)
    return {v: i for v, (_t, i) in owner.items()}


def _line_key(k: SeriesKey) -> tuple[str, str, str, int]:
    return (k.vantage, k.kind, k.target, k.family)


@dataclass
class _Acc:
    addresses: set[str] = field(default_factory=set)
    n: int = 0
    ok: int = 0
    exact: list[int | None] | None = None  # exact p50, p95 (all raw in the window)
    hours: HourAgg = field(default_factory=HourAgg)


def summarize(stores: list[Store], window: str, now: int, *, latency: bool = True, incidents: bool = True) -> Summary:
    """Uptime per probe line over `window`; latency percentiles and incidents unless turned
    off (the status page asks for them once, not for every window)."""
    since = now - window_seconds(window) * 1000
    owners = _owners(stores)
    acc: dict[tuple[str, str, str, int], _Acc] = {}
    runs: list[Incident] = []
    certs: list[Certificate] = []
    raw_since: int | None = None
    for i, st in enumerate(stores):
        series = {sid: k for sid, k in st.series().items() if owners.get(k.vantage, i) == i}
        start = st.raw_start()
        raw_since = start if raw_since is None or (start is not None and start < raw_since) else raw_since
        folded: set[tuple[str, str, str, int]] = set()
        hour_start = since // HOUR_MS * HOUR_MS
        for sid, (n, ok) in st.hourly_totals(hour_start, now + 1).items():
            if sid in series:
                a = acc.setdefault(_line_key(series[sid]), _Acc())
                a.addresses.add(series[sid].address)
                a.n, a.ok = a.n + n, a.ok + ok
                folded.add(_line_key(series[sid]))
        if latency and folded:  # percentiles from the folded hours' histograms
            for (sid, _hour), agg in st.hourly(hour_start, now + 1).items():
                if sid in series:
                    acc[_line_key(series[sid])].hours.merge(agg)
        for (sid, _h), agg in st.raw_summary(since, now + 1).items():
            if sid in series:
                key = _line_key(series[sid])
                a = acc.setdefault(key, _Acc())
                a.addresses.add(series[sid].address)
                a.n, a.ok = a.n + agg.n, a.ok + agg.ok
                if latency and key in folded:  # the window reaches hourly data: latency from buckets
                    a.hours.merge(agg)
        if latency:  # exact (nearest rank) for lines that are all raw in the window
            ids: dict[tuple[str, str, str, int], list[int]] = {}
            for sid, k in series.items():
                ids.setdefault(_line_key(k), []).append(sid)
            for key, sids in ids.items():
                a = acc.get(key)
                if a and key not in folded and a.ok:
                    ranks = [math.ceil(0.5 * a.ok), math.ceil(0.95 * a.ok)]
                    a.exact = st.raw_ranked(sids, since, now + 1, ranks)
        if incidents:
            runs += _raw_runs(st, series, since, now)
            runs += _hourly_runs(st, series, since, now)
            certs += _certificates(st, series)
    lines = [_line(key, a, latency) for key, a in sorted(acc.items())]
    last = {}
    for st in stores:
        for v, t in st.last_rounds().items():
            last[v] = max(t, last.get(v, 0))
    rounds = sum(st.round_count() for st in stores)
    return Summary(window, since, now, lines, merge_runs(runs), sorted(certs, key=_cert_order), last, rounds, raw_since)


def _cert_order(c: Certificate) -> tuple:
    return (c.name, c.vantage, c.family, c.address)


def _line(key: tuple[str, str, str, int], a: _Acc, latency: bool = True) -> Line:
    hist = a.hours.histogram()
    if not latency:
        p50 = p95 = None
        exact = False
    elif sum(hist):
        p50, p95, exact = hist_quantile(hist, 0.5, a.hours.lat_max), hist_quantile(hist, 0.95, a.hours.lat_max), False
    elif a.exact:
        p50, p95 = (float(v) if v is not None else None for v in a.exact)
        exact = True
    else:
        p50 = p95 = None
        exact = True
    vantage, kind, target, family = key
    uptime = 100.0 * a.ok / a.n if a.n else None
    return Line(vantage, kind, target, family, sorted(a.addresses), a.n, a.ok, uptime, p50, p95, exact)


def _raw_runs(st: Store, series: dict[int, SeriesKey], since: int, now: int) -> list[Incident]:
    """Each probe's stretches of failure: first failed result to the next success."""
    runs: list[Incident] = []
    skip_until: dict[int, float] = {}
    for sid, t, _error in st.failures(since, now + 1):
        if sid not in series or t < skip_until.get(sid, -1):
            continue
        end = st.next_ok(sid, t)
        skip_until[sid] = end if end is not None else math.inf
        key = series[sid]
        runs.append(Incident(t, end, [key.label], [key.vantage]))
    return runs


def _hourly_runs(st: Store, series: dict[int, SeriesKey], since: int, now: int) -> list[Incident]:
    """Before the raw retention: each probe's hours with a run of two or more failed results
    (a lone failure is noise), from the hour's first failure to its last, joined across
    hours; marked approximate (the folded hour keeps no order of its other results)."""
    hours = st.hourly(since // HOUR_MS * HOUR_MS, now + 1, failing=True)
    bad = sorted((sid, agg.fail_first, agg.fail_last) for (sid, _h), agg in hours.items())
    runs: list[Incident] = []
    last_sid = None
    for sid, first, last in bad:
        if sid not in series or first is None:
            continue
        key = series[sid]
        cur = runs[-1] if runs and last_sid == sid else None
        if cur and first - cur.end <= JOIN_GAP_MS:
            cur.end = last
        else:
            runs.append(Incident(first, last, [key.label], [key.vantage], approximate=True))
        last_sid = sid
    return runs


def merge_runs(runs: list[Incident]) -> list[Incident]:
    """Overlapping stretches (of any probes) as one incident, oldest first."""
    out: list[Incident] = []
    for run in sorted(runs, key=lambda r: r.start):
        cur = out[-1] if out else None
        if cur and (cur.end is None or run.start <= cur.end):
            cur.end = None if cur.end is None or run.end is None else max(cur.end, run.end)
            cur.probes = sorted(set(cur.probes) | set(run.probes))
            cur.vantages = sorted(set(cur.vantages) | set(run.vantages))
            cur.approximate = cur.approximate or run.approximate
        else:
            out.append(Incident(run.start, run.end, list(run.probes), list(run.vantages), run.approximate))
    return out


def _certificates(st: Store, series: dict[int, SeriesKey]) -> list[Certificate]:
    out = []
    for sid, (t, ok, value, error) in st.latest("tls").items():
        if sid in series:
            k = series[sid]
            out.append(Certificate(k.vantage, k.target, k.family, k.address, value, t, bool(ok), error))
    return out


def hour_view(stores: list[Store], since: int, now: int) -> dict[tuple[str, str, str, int], dict[int, HourAgg]]:
    """Per probe line and hour: counts and latency histogram of every result (raw rows
    aggregated by SQLite, hourly rows as stored): what the report's charts draw."""
    owners = _owners(stores)
    out: dict[tuple[str, str, str, int], dict[int, HourAgg]] = {}
    start = since // HOUR_MS * HOUR_MS
    for i, st in enumerate(stores):
        series = {sid: k for sid, k in st.series().items() if owners.get(k.vantage, i) == i}
        for source in (st.hourly(start, now + 1), st.raw_summary(start, now + 1, hourly=True)):
            for (sid, hour), agg in source.items():
                if sid in series:
                    out.setdefault(_line_key(series[sid]), {}).setdefault(hour, HourAgg()).merge(agg)
    return out
