"""The watch's history: one SQLite file (standard library), WAL, schema versioned.

One row per probe result (time, vantage, probe, family, address, ok, latency, error
class, and a value such as a certificate's expiry) for `retention_raw_days`; older hours
are folded into per-hour aggregates (count, successes, latency histogram, error classes)
kept for `retention_hourly_days`. A year of one-minute rounds of 20 probes is then about
200,000 raw rows plus 175,000 hourly rows (docs/benchmarks.md has the size).

Several vantages' stores merge: `import_from` copies another store's rows in (idempotent:
importing the same file twice adds nothing). The store is never overwritten or
"repaired": a file that is not a store of this tool, a damaged one or one written by a
newer version raises `StoreCorrupt`; a write lock held too long raises `StoreLocked`.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from tasks.errors import StoreCorrupt, StoreLocked, StoreMissing
from tasks.watch.records import BUCKETS_MS, HOUR_MS, HourAgg, Row, SeriesKey, agg_from_row
from tasks.watch.retention import Retention

SCHEMA_VERSION = 1
APPLICATION = "torrust-watch"

SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE series (
  id INTEGER PRIMARY KEY, vantage TEXT NOT NULL, kind TEXT NOT NULL, target TEXT NOT NULL,
  family INTEGER NOT NULL, address TEXT NOT NULL, UNIQUE (vantage, kind, target, family, address));
CREATE TABLE results (
  series INTEGER NOT NULL, t INTEGER NOT NULL, ok INTEGER NOT NULL, latency_ms INTEGER NOT NULL,
  error TEXT, value REAL, PRIMARY KEY (series, t)) WITHOUT ROWID;
CREATE TABLE hourly (
  series INTEGER NOT NULL, hour INTEGER NOT NULL, n INTEGER NOT NULL, ok INTEGER NOT NULL,
  lat_sum INTEGER NOT NULL, lat_max INTEGER NOT NULL, hist TEXT NOT NULL, errors TEXT NOT NULL,
  value_min REAL, fail_first INTEGER, fail_last INTEGER, streak INTEGER NOT NULL,
  PRIMARY KEY (series, hour)) WITHOUT ROWID;
CREATE TABLE rounds (
  vantage TEXT NOT NULL, t INTEGER NOT NULL, duration_ms INTEGER NOT NULL, probes INTEGER NOT NULL,
  failed INTEGER NOT NULL, PRIMARY KEY (vantage, t)) WITHOUT ROWID;
CREATE TABLE alert_state (
  key TEXT PRIMARY KEY, state TEXT NOT NULL, fails INTEGER NOT NULL, since INTEGER, detail TEXT);
CREATE TABLE alerts (
  id INTEGER PRIMARY KEY, t INTEGER NOT NULL, vantage TEXT NOT NULL, kind TEXT NOT NULL,
  subject TEXT NOT NULL, text TEXT NOT NULL, body TEXT NOT NULL, UNIQUE (t, vantage, kind, subject));
CREATE TABLE deliveries (
  alert INTEGER NOT NULL, channel TEXT NOT NULL, attempts INTEGER NOT NULL, next_try INTEGER NOT NULL,
  done_at INTEGER, gave_up_at INTEGER, last_error TEXT, PRIMARY KEY (alert, channel));
"""


def _classify(exc: sqlite3.Error, path: Path) -> Exception:
    if isinstance(exc, sqlite3.ProgrammingError | sqlite3.InterfaceError):
        raise exc  # a bug in the tool, not a property of the file
    text = str(exc).lower()
    if "locked" in text or "busy" in text:
        return StoreLocked(
            f"watch store {path}: another process holds its write lock ({exc})",
            hint="close the other writer (fuser shows it); a running watch keeps rounds in memory meanwhile",
        )
    if isinstance(exc, sqlite3.OperationalError) and any(w in text for w in ("unable to open", "readonly", "disk")):
        return StoreCorrupt(
            f"watch store {path}: cannot be used ({exc}); it was left untouched",
            hint="check the file's and its directory's permissions and free space",
        )
    return StoreCorrupt(
        f"watch store {path}: unreadable ({exc}); it was left untouched",
        hint="move it aside and let the watch start a new one; `sqlite3 FILE .recover` may save its rows",
    )


class Store(Retention):
    """One open store. Not shared between threads: each thread opens its own."""

    def __init__(self, conn: sqlite3.Connection, path: Path):
        self.conn = conn
        self.path = path
        self._series: dict[SeriesKey, int] = {}

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, path: Path | str, *, create: bool = False, readonly: bool = False, wait: float = 10.0) -> Store:
        path = Path(path)
        if not path.exists() and not create:
            raise StoreMissing(f"no watch store at {path}", hint="run the watch once first, or give the right path")
        try:
            if readonly:
                conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=wait)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(path, timeout=wait, isolation_level=None)
            store = cls(conn, path)
            store._prepare(writable=not readonly, create=create)
            return store
        except sqlite3.Error as exc:
            raise _classify(exc, path) from None

    def _prepare(self, writable: bool, create: bool) -> None:
        c = self.conn
        version = c.execute("PRAGMA user_version").fetchone()[0]
        tables = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if version == 0 and not tables:
            if not (writable and create):
                raise StoreMissing(f"watch store {self.path}: empty, nothing recorded yet")
            if self._create():
                return
            version = c.execute("PRAGMA user_version").fetchone()[0]  # another process created it meanwhile
            tables = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "meta" not in tables or self._meta("application") != APPLICATION:
            raise StoreCorrupt(
                f"watch store {self.path}: an SQLite file, but not a store of the watch; it was left untouched",
                hint="point at the watch's store, or move this file aside",
            )
        if version > SCHEMA_VERSION:
            raise StoreCorrupt(
                f"watch store {self.path}: written by a newer version of the tool (schema {version}, "
                f"this one reads {SCHEMA_VERSION}); it was left untouched",
                hint="use the newer tool, or a store of its own for this one",
            )
        if writable:
            c.execute("PRAGMA journal_mode = WAL")
            c.execute("PRAGMA synchronous = NORMAL")

    def _create(self) -> bool:
        """The schema, unless another process wrote it first (False then)."""
        c = self.conn
        c.execute("PRAGMA journal_mode = WAL")
        c.execute("BEGIN IMMEDIATE")
        if c.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
            c.execute("ROLLBACK")
            return False
        for statement in filter(str.strip, SCHEMA.split(";")):
            c.execute(statement)
        c.execute("INSERT INTO meta VALUES ('application', ?), ('schema', ?)", (APPLICATION, str(SCHEMA_VERSION)))
        c.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        c.execute("COMMIT")
        return True

    def _meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextmanager
    def guard(self) -> Iterator[None]:
        """sqlite3 errors as the tool's named errors."""
        try:
            yield
        except sqlite3.Error as exc:
            raise _classify(exc, self.path) from None

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self.guard():
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")

    # ------------------------------------------------------------------ writing
    def series_id(self, key: SeriesKey) -> int:
        sid = self._series.get(key)
        if sid is None:
            fields = (key.vantage, key.kind, key.target, key.family, key.address)
            self.conn.execute(
                "INSERT OR IGNORE INTO series (vantage, kind, target, family, address) VALUES (?,?,?,?,?)", fields
            )
            sid = self.conn.execute(
                "SELECT id FROM series WHERE vantage=? AND kind=? AND target=? AND family=? AND address=?", fields
            ).fetchone()[0]
            self._series[key] = sid
        return sid

    def add_results(self, rows: Iterable[Row]) -> int:
        """Inside a transaction. Returns how many rows were new."""
        values = [(self.series_id(r.key), r.t, int(r.ok), r.latency_ms, r.error, r.value) for r in rows]
        before = self.conn.total_changes
        self.conn.executemany("INSERT OR IGNORE INTO results VALUES (?,?,?,?,?,?)", values)
        return self.conn.total_changes - before

    def add_round(self, vantage: str, t: int, duration_ms: int, probes: int, failed: int) -> None:
        self.conn.execute("INSERT OR IGNORE INTO rounds VALUES (?,?,?,?,?)", (vantage, t, duration_ms, probes, failed))

    def state(self, key: str) -> tuple[str, int, int | None, str | None] | None:
        with self.guard():
            row = self.conn.execute(
                "SELECT state, fails, since, detail FROM alert_state WHERE key = ?", (key,)
            ).fetchone()
        return tuple(row) if row else None

    def states(self) -> dict[str, tuple[str, int, int | None, str | None]]:
        with self.guard():
            rows = self.conn.execute("SELECT key, state, fails, since, detail FROM alert_state").fetchall()
        return {r[0]: tuple(r[1:]) for r in rows}

    def set_state(self, key: str, state: str, fails: int, since: int | None, detail: str | None) -> None:
        self.conn.execute("INSERT OR REPLACE INTO alert_state VALUES (?,?,?,?,?)", (key, state, fails, since, detail))

    def add_alert(
        self, t: int, vantage: str, kind: str, subject: str, text: str, body: dict, channels: Iterable[str]
    ) -> int:
        cur = self.conn.execute(
            "INSERT INTO alerts (t, vantage, kind, subject, text, body) VALUES (?,?,?,?,?,?)",
            (t, vantage, kind, subject, text, json.dumps(body, sort_keys=True)),
        )
        alert_id = cur.lastrowid
        self.conn.executemany(
            "INSERT INTO deliveries (alert, channel, attempts, next_try) VALUES (?,?,0,?)",
            [(alert_id, ch, t) for ch in channels],
        )
        return alert_id

    # ------------------------------------------------------------------ deliveries
    def due_deliveries(self, now: int) -> list[tuple[int, str, int, int, str, str, str, str]]:
        """(alert id, channel, attempts, alert time, kind, subject, text, body JSON), oldest first."""
        with self.guard():
            return self.conn.execute(
                "SELECT d.alert, d.channel, d.attempts, a.t, a.kind, a.subject, a.text, a.body "
                "FROM deliveries d JOIN alerts a ON a.id = d.alert "
                "WHERE d.done_at IS NULL AND d.gave_up_at IS NULL AND d.next_try <= ? ORDER BY a.t, d.alert",
                (now,),
            ).fetchall()

    def next_delivery_time(self) -> int | None:
        with self.guard():
            row = self.conn.execute(
                "SELECT min(next_try) FROM deliveries WHERE done_at IS NULL AND gave_up_at IS NULL"
            ).fetchone()
        return row[0]

    def delivery_done(self, alert: int, channel: str, now: int) -> None:
        with self.transaction():
            self.conn.execute(
                "UPDATE deliveries SET done_at = ?, attempts = attempts + 1, last_error = NULL "
                "WHERE alert = ? AND channel = ?",
                (now, alert, channel),
            )

    def delivery_failed(self, alert: int, channel: str, now: int, next_try: int | None, error: str) -> None:
        with self.transaction():
            self.conn.execute(
                "UPDATE deliveries SET attempts = attempts + 1, last_error = ?, next_try = coalesce(?, next_try), "
                "gave_up_at = CASE WHEN ? IS NULL THEN ? END WHERE alert = ? AND channel = ?",
                (error, next_try, next_try, now, alert, channel),
            )

    def deliveries(self) -> list[dict]:
        with self.guard():
            rows = self.conn.execute(
                "SELECT d.alert, a.kind, d.channel, d.attempts, d.done_at, d.gave_up_at, d.last_error "
                "FROM deliveries d JOIN alerts a ON a.id = d.alert ORDER BY d.alert, d.channel"
            ).fetchall()
        names = ("alert", "kind", "channel", "attempts", "done_at", "gave_up_at", "last_error")
        return [dict(zip(names, r, strict=True)) for r in rows]

    # ------------------------------------------------------------------ reading
    def _by_key(self) -> tuple[str, list[int]]:
        """`series IN (...)` over every series, so a time window is read through the primary
        key's ranges (series, t) instead of scanning the whole table."""
        ids = [r[0] for r in self.conn.execute("SELECT id FROM series")]
        return f"series IN ({','.join('?' * len(ids))})", ids

    def series(self) -> dict[int, SeriesKey]:
        with self.guard():
            rows = self.conn.execute("SELECT id, vantage, kind, target, family, address FROM series").fetchall()
        return {r[0]: SeriesKey(*r[1:]) for r in rows}

    def raw_counts(self, since: int, until: int) -> list[tuple[int, int, int]]:
        """(series, results, successes) of raw rows in [since, until)."""
        with self.guard():
            return self.conn.execute(
                "SELECT series, count(*), sum(ok) FROM results WHERE t >= ? AND t < ? GROUP BY series", (since, until)
            ).fetchall()

    def raw_ranked(self, series: Iterable[int], since: int, until: int, ranks: Iterable[int]) -> list[int | None]:
        """The latencies at 1-based `ranks` among the successful raw results of `series` in
        [since, until), smallest first (exact percentiles). Each series is read by its key's
        range and sorted here: measured faster than SQLite's ORDER BY ... OFFSET."""
        values: list[int] = []
        with self.guard():
            for sid in series:
                values += [
                    r[0]
                    for r in self.conn.execute(
                        "SELECT latency_ms FROM results WHERE series = ? AND t >= ? AND t < ? AND ok = 1",
                        (sid, since, until),
                    )
                ]
        values.sort()
        return [values[rank - 1] if 0 < rank <= len(values) else None for rank in ranks]

    def raw_summary(self, since: int, until: int, hourly: bool = False) -> dict[tuple[int, int], HourAgg]:
        """One scan of the raw rows in [since, until), aggregated by SQLite: per series (and
        per hour when `hourly`), the counts and the latency histogram of the answers."""
        case = " ".join(f"WHEN latency_ms <= {b} THEN {i}" for i, b in enumerate(BUCKETS_MS))
        hour = f"t / {HOUR_MS} * {HOUR_MS}" if hourly else "0"
        out: dict[tuple[int, int], HourAgg] = {}
        with self.guard():
            by_key, ids = self._by_key()
            sql = (
                f"SELECT series, {hour} AS h, ok, CASE {case} ELSE {len(BUCKETS_MS)} END AS b, count(*), "  # noqa: S608
                f"max(latency_ms) FROM results WHERE {by_key} AND t >= ? AND t < ? GROUP BY series, h, ok, b"
            )
            for sid, h, ok, b, n, top in self.conn.execute(sql, (*ids, since, until)):
                agg = out.get((sid, h))
                if agg is None:
                    agg = out[(sid, h)] = HourAgg(hist=[0] * (len(BUCKETS_MS) + 1))
                agg.n += n
                if ok:
                    agg.ok += n
                    agg.hist[b] += n
                    agg.lat_max = max(agg.lat_max, top)
        return out

    def raw_rows(self, since: int, until: int) -> Iterator[tuple[int, int, int, int, str | None, float | None]]:
        """(series, t, ok, latency_ms, error, value) in [since, until), by series then time."""
        with self.guard():
            yield from self.conn.execute(
                "SELECT series, t, ok, latency_ms, error, value FROM results WHERE t >= ? AND t < ? ORDER BY series, t",
                (since, until),
            )

    def hourly(self, since: int, until: int, *, failing: bool = False) -> dict[tuple[int, int], HourAgg]:
        """Hourly aggregates in [since, until) (only hours with a run of failures when
        `failing`); error classes are left undecoded (`errors` None) except by the import."""
        where = "hour >= ? AND hour < ?" + (" AND streak >= 2" if failing else "")
        sql = (
            "SELECT series, hour, n, ok, lat_sum, lat_max, hist, value_min, fail_first, fail_last, streak "  # noqa: S608
            f"FROM hourly WHERE {where}"
        )
        with self.guard():
            rows = self.conn.execute(sql, (since, until)).fetchall()
        return {
            (r[0], r[1]): HourAgg(r[2], r[3], r[4], r[5], [int(x) for x in r[6].split(",")], None, *r[7:]) for r in rows
        }

    def hourly_full(self) -> dict[tuple[int, int], HourAgg]:
        """Every hourly aggregate with its error classes (what an import copies)."""
        with self.guard():
            rows = self.conn.execute(
                "SELECT series, hour, n, ok, lat_sum, lat_max, hist, errors, value_min, fail_first, fail_last, streak "
                "FROM hourly"
            ).fetchall()
        return {(r[0], r[1]): agg_from_row(*r[2:]) for r in rows}

    def hourly_totals(self, since: int, until: int) -> dict[int, tuple[int, int]]:
        """Per series: (results, successes) of the hours in [since, until), summed by SQLite."""
        with self.guard():
            rows = self.conn.execute(
                "SELECT series, sum(n), sum(ok) FROM hourly WHERE hour >= ? AND hour < ? GROUP BY series",
                (since, until),
            ).fetchall()
        return {r[0]: (r[1], r[2]) for r in rows}

    def failures(self, since: int, until: int) -> list[tuple[int, int, str | None]]:
        with self.guard():
            return self.conn.execute(
                f"SELECT series, t, error FROM results WHERE {self._by_key()[0]} AND ok = 0 AND t >= ? AND t < ? "  # noqa: S608
                "ORDER BY series, t",
                (*self._by_key()[1], since, until),
            ).fetchall()

    def next_ok(self, series: int, after: int) -> int | None:
        with self.guard():
            return self.conn.execute(
                "SELECT min(t) FROM results WHERE series = ? AND t > ? AND ok = 1", (series, after)
            ).fetchone()[0]

    def raw_start(self) -> int | None:
        """Time of the oldest raw row: before it, only hourly aggregates remain."""
        with self.guard():
            ids = [r[0] for r in self.conn.execute("SELECT id FROM series")]
            firsts = [
                self.conn.execute("SELECT min(t) FROM results WHERE series = ?", (sid,)).fetchone()[0] for sid in ids
            ]
        found = [t for t in firsts if t is not None]
        return min(found) if found else None

    def latest(self, kind: str | None = None) -> dict[int, tuple[int, int, float | None, str | None]]:
        """Per series (of `kind`, or all): (t, ok, value, error) of its newest raw row."""
        out = {}
        with self.guard():
            ids = [r[0] for r in self.conn.execute("SELECT id FROM series WHERE ? IS NULL OR kind = ?", (kind, kind))]
            for sid in ids:  # the primary key's last entry per series: no scan of the table
                row = self.conn.execute(
                    "SELECT t, ok, value, error FROM results WHERE series = ? ORDER BY t DESC LIMIT 1", (sid,)
                ).fetchone()
                if row:
                    out[sid] = tuple(row)
        return out

    def last_rounds(self) -> dict[str, int]:
        with self.guard():
            return dict(self.conn.execute("SELECT vantage, max(t) FROM rounds GROUP BY vantage").fetchall())

    def round_count(self, vantage: str | None = None) -> int:
        with self.guard():
            if vantage is None:
                return self.conn.execute("SELECT count(*) FROM rounds").fetchone()[0]
            return self.conn.execute("SELECT count(*) FROM rounds WHERE vantage = ?", (vantage,)).fetchone()[0]

    def alerts(self, since: int = 0) -> list[dict]:
        with self.guard():
            rows = self.conn.execute(
                "SELECT id, t, vantage, kind, subject, text, body FROM alerts WHERE t >= ? ORDER BY t, id", (since,)
            ).fetchall()
        return [
            {
                "id": r[0],
                "t": r[1],
                "vantage": r[2],
                "kind": r[3],
                "subject": r[4],
                "text": r[5],
                "body": json.loads(r[6]),
            }
            for r in rows
        ]
