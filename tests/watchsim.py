"""Simulated watch history: rounds of probe results written through the real store (the
same inserts and retention as the watch), for the store tests, the report's screenshot
and tests/benchmarks/watch.py. Deterministic for a seed."""

from __future__ import annotations

import random
from dataclasses import dataclass

from tasks.watch.records import DAY_MS, HOUR_MS, Row, SeriesKey
from tasks.watch.store import Store


def twenty_probes(vantage: str = "sim") -> list[SeriesKey]:
    """20 series: 2 UDP trackers, 2 HTTP trackers and the API, each at 2 addresses per family."""
    addrs = {4: ("203.0.113.10", "203.0.113.11"), 6: ("2001:db8::10", "2001:db8::11")}
    keys = []
    for fam, pair in addrs.items():
        for addr in pair:
            keys += [SeriesKey(vantage, "udp", f"udp://tracker.example.org:{p}", fam, addr) for p in (6969, 6868)]
            keys += [SeriesKey(vantage, "http", n, fam, addr) for n in ("tracker.example.org", "tracker2.example.org")]
            keys.append(SeriesKey(vantage, "api", "api.example.org", fam, addr))
    return keys


@dataclass(frozen=True)
class Outage:
    start: int  # ms
    end: int
    kind: str  # which probes fail: "udp", "http", ... or "all"
    family: int = 0  # 0: both families


def simulate(
    store: Store,
    keys: list[SeriesKey],
    start: int,
    rounds: int,
    *,
    interval_ms: int = 60_000,
    outages: tuple[Outage, ...] = (),
    seed: int = 1,
    flaky: float = 0.0005,
    maintain: tuple[int, int] | None = None,
    cert_not_after: float | None = None,
) -> None:
    """Write `rounds` rounds from `start`; `maintain=(raw_days, hourly_days)` runs the
    retention once per simulated hour, as the watch does."""
    rng = random.Random(seed)
    base = {k: rng.uniform(8, 60) for k in keys}
    batch: list[Row] = []
    round_rows: list[tuple[int, int]] = []
    vantage = keys[0].vantage

    def flush(now: int) -> None:
        with store.transaction():
            store.add_results(batch)
            for t, failed in round_rows:
                store.add_round(vantage, t, 120, len(keys), failed)
        batch.clear()
        round_rows.clear()
        if maintain:
            store.maintain(now, *maintain)

    # per series, once: its base latency, the outages that hit it, its recorded value
    series = [
        (
            k,
            base[k],
            [(o.start, o.end) for o in outages if o.kind in (k.kind, "all") and o.family in (0, k.family)],
            cert_not_after if k.kind == "tls" else None,
        )
        for k in keys
    ]
    draw, lognormal = rng.random, rng.lognormvariate
    for i in range(rounds):
        t = start + i * interval_ms
        if batch and t // HOUR_MS != batch[-1].t // HOUR_MS:
            flush(t)  # once per hour, as the watch writes and maintains
        failed = 0
        for k, k_base, k_outages, value in series:
            down = bool(k_outages) and any(s <= t < e for s, e in k_outages)
            ok = not down and draw() > flaky
            latency = int(k_base * lognormal(0, 0.35)) if ok else 5000
            batch.append(Row(k, t, ok, latency, None if ok else "timeout", value))
            failed += not ok
        round_rows.append((t, failed))
    flush(start + rounds * interval_ms)


def year_start(now: int, days: int = 365) -> int:
    return (now - days * DAY_MS) // HOUR_MS * HOUR_MS
