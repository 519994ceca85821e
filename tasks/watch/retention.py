"""The store's retention and merging (a mixin of `Store`): raw rows older than the raw
retention folded into hourly aggregates, hours past the hourly retention dropped, another
vantage's store imported (idempotent), a consistent copy exported.
"""

from __future__ import annotations

from pathlib import Path

from tasks.errors import StoreCorrupt
from tasks.watch.records import DAY_MS, HOUR_MS, HourAgg, agg_from_row, agg_values


class Retention:
    """Needs `conn`, `path`, `transaction()`, `guard()`, `series()`, `series_id()`,
    `raw_rows()`, `hourly_full()` and the `open()` class method (Store has them)."""

    def maintain(self, now: int, raw_days: int, hourly_days: int) -> dict[str, int]:
        """Fold raw rows older than `raw_days` (whole hours) into hourly aggregates and drop
        what is older than `hourly_days`. One transaction: an hour is either raw or hourly."""
        cutoff = (now - raw_days * DAY_MS) // HOUR_MS * HOUR_MS
        hourly_cutoff = (now - hourly_days * DAY_MS) // HOUR_MS * HOUR_MS
        with self.transaction():
            aggs: dict[tuple[int, int], HourAgg] = {}
            folded = dropped = 0
            sids = [sid for (sid,) in self.conn.execute("SELECT id FROM series").fetchall()]
            for sid in sids:  # per series: the primary key's range, never a scan of the table
                for t, ok, lat, error, value in self.conn.execute(
                    "SELECT t, ok, latency_ms, error, value FROM results WHERE series = ? AND t < ?", (sid, cutoff)
                ):
                    hour = t // HOUR_MS * HOUR_MS
                    if hour >= hourly_cutoff:
                        aggs.setdefault((sid, hour), HourAgg()).add(bool(ok), lat, error, value, t)
                folded += self.conn.execute("DELETE FROM results WHERE series = ? AND t < ?", (sid, cutoff)).rowcount
            self._merge_hourly(aggs)
            for sid in sids:
                dropped += self.conn.execute(
                    "DELETE FROM hourly WHERE series = ? AND hour < ?", (sid, hourly_cutoff)
                ).rowcount
            self.conn.execute("DELETE FROM rounds WHERE t < ?", (cutoff,))
            self.conn.execute(
                "DELETE FROM deliveries WHERE alert IN (SELECT id FROM alerts WHERE t < ?)", (hourly_cutoff,)
            )
            self.conn.execute("DELETE FROM alerts WHERE t < ?", (hourly_cutoff,))
        return {"folded": folded, "hours": len(aggs), "dropped_hours": dropped}

    def _merge_hourly(self, aggs: dict[tuple[int, int], HourAgg], only_new: bool = False) -> None:
        for (sid, hour), agg in aggs.items():
            row = self.conn.execute(
                "SELECT n, ok, lat_sum, lat_max, hist, errors, value_min, fail_first, fail_last, streak FROM hourly "
                "WHERE series = ? AND hour = ?",
                (sid, hour),
            ).fetchone()
            if row and only_new:
                continue
            if row:
                merged = agg_from_row(*row)
                merged.merge(agg)
                agg = merged
            self.conn.execute(
                "INSERT OR REPLACE INTO hourly VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", (sid, hour, *agg_values(agg))
            )

    def vacuum(self) -> None:
        with self.guard():
            self.conn.execute("VACUUM")

    # ------------------------------------------------------------------ merging
    def import_from(self, other_path: Path | str, now: int, raw_days: int) -> dict[str, int]:
        """Copy another store's rows in (another vantage's, fetched or shared). Idempotent:
        raw rows are keyed by series and time; hours already folded here are not added twice."""
        with type(self).open(other_path, readonly=True) as other:
            if Path(other_path).resolve() == self.path.resolve():
                raise StoreCorrupt(f"cannot import watch store {self.path} into itself")
            theirs = other.series()
            cutoff = (now - raw_days * DAY_MS) // HOUR_MS * HOUR_MS
            counts = {"results": 0, "hours": 0, "rounds": 0, "alerts": 0}
            with self.transaction():
                ids = {sid: self.series_id(key) for sid, key in theirs.items()}
                old: dict[tuple[int, int], HourAgg] = {}
                recent = []
                for sid, t, ok, lat, error, value in other.raw_rows(0, 2**62):
                    if t >= cutoff:
                        recent.append((ids[sid], t, ok, lat, error, value))
                    else:
                        old.setdefault((ids[sid], t // HOUR_MS * HOUR_MS), HourAgg()).add(
                            bool(ok), lat, error, value, t
                        )
                before = self.conn.total_changes
                self.conn.executemany("INSERT OR IGNORE INTO results VALUES (?,?,?,?,?,?)", recent)
                counts["results"] = self.conn.total_changes - before
                hours = {(ids[sid], hour): agg for (sid, hour), agg in other.hourly_full().items()}
                for key, agg in old.items():
                    hours.setdefault(key, HourAgg()).merge(agg)
                before = self.conn.total_changes
                self._merge_hourly(hours, only_new=True)
                counts["hours"] = self.conn.total_changes - before
                before = self.conn.total_changes
                self.conn.executemany(
                    "INSERT OR IGNORE INTO rounds VALUES (?,?,?,?,?)",
                    other.conn.execute("SELECT vantage, t, duration_ms, probes, failed FROM rounds").fetchall(),
                )
                counts["rounds"] = self.conn.total_changes - before
                before = self.conn.total_changes
                self.conn.executemany(
                    "INSERT OR IGNORE INTO alerts (t, vantage, kind, subject, text, body) VALUES (?,?,?,?,?,?)",
                    other.conn.execute("SELECT t, vantage, kind, subject, text, body FROM alerts").fetchall(),
                )
                counts["alerts"] = self.conn.total_changes - before
        return counts

    def export_to(self, dest: Path | str) -> None:
        """A consistent copy (while the watch writes) in one file, for reading elsewhere."""
        dest = Path(dest)
        if dest.exists():
            dest.unlink()
        with self.guard():
            self.conn.execute("VACUUM INTO ?", (str(dest),))
