#!/usr/bin/env python3
"""Benchmark health.watch (issue #12): medians, each next to a raw baseline of the same run.

1. One round of every probe against the local test stack (deployed by the tool), against
   the slowest single probe of that round (target: at most 1.5x) and the same probes one
   after another.
2. A store holding a simulated year of one-minute rounds of 20 probes, written through the
   real store with the watch's hourly retention (7 days raw, then hourly): its size
   (target under 50 MB); uptime over 30 days in-process and as a process (the runner's
   `uptime --window 30d`, what health.uptime does; target under 1 s) against the raw SQL
   reading the same rows; the status page (target under 2 s) against reading its rows.
3. Resident memory of a simulated 24 h loop: 1,440 rounds of the real probes against the
   stack with a clock advancing one minute per round (retention runs every simulated
   hour), sampled along the way (target under 80 MB and not growing), against the
   process before the loop.

    .venv/bin/python tests/benchmarks/watch.py [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tasks.config.settings import load  # noqa: E402
from tasks.health import probes as pr  # noqa: E402
from tasks.watch import runner  # noqa: E402
from tasks.watch.config import WatchConfig  # noqa: E402
from tasks.watch.loop import Watch, run_probes  # noqa: E402
from tasks.watch.records import DAY_MS  # noqa: E402
from tasks.watch.report import ReportInput, render  # noqa: E402
from tasks.watch.store import Store  # noqa: E402
from tasks.watch.targets import round_probes, spec_from_settings  # noqa: E402
from tasks.watch.uptime import summarize  # noqa: E402
from tests.conftest import clean_environ  # noqa: E402
from tests.integration.conftest import _load_builder  # noqa: E402
from tests.integration.test_health import probed_stack_env  # noqa: E402
from tests.watchsim import Outage, simulate, twenty_probes, year_start  # noqa: E402


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def timed(fn, runs: int) -> float:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def rounds_table(spec, runs: int) -> list[tuple[str, float]]:
    probes = round_probes(spec, 5, 2)
    run_probes(probes, "bench", 15)  # warm up
    walls, slowest, sequential = [], [], []
    for _ in range(runs):
        probes = round_probes(spec, 5, 2)
        started = time.perf_counter()
        observations = run_probes(probes, "bench", 15)
        walls.append(time.perf_counter() - started)
        slowest.append(max(o.latency_ms for o in observations) / 1000)
        started = time.perf_counter()
        for wp in round_probes(spec, 5, 2):
            pr._attempt(wp.probe)
        sequential.append(time.perf_counter() - started)
    n = len(probes)
    wall, slow, seq = statistics.median(walls), statistics.median(slowest), statistics.median(sequential)
    print(f"\n1. One round against the local test stack ({n} probes), median of {runs}\n")
    print("| measure | seconds |\n|---|---|")
    print(f"| one round, every probe in parallel (wall) | {wall:.3f} |")
    print(f"| slowest single probe of the round (raw baseline) | {slow:.3f} |")
    print(f"| the same probes one after another | {seq:.3f} |")
    print(f"\nround / slowest probe = {wall / slow:.2f}x (target <= 1.5x: {'met' if wall / slow <= 1.5 else 'MISSED'})")
    return probes


def year_store(path: Path, now: int) -> float:
    started = time.perf_counter()
    with Store.open(path, create=True) as st:
        outages = (
            Outage(now - 200 * DAY_MS, now - 200 * DAY_MS + 3_600_000, "udp", 6),
            Outage(now - 12 * DAY_MS, now - 12 * DAY_MS + 25 * 60_000, "all"),
            Outage(now - 2 * DAY_MS, now - 2 * DAY_MS + 9 * 60_000, "http", 4),
        )
        simulate(st, twenty_probes("bench"), year_start(now), 365 * 1440, outages=outages, maintain=(7, 400))
        st.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        st.vacuum()
    return time.perf_counter() - started


def store_table(work: Path, runs: int) -> None:
    now = int(time.time() * 1000)
    path = work / "year.sqlite"
    took = year_store(path, now)
    size = path.stat().st_size / 1e6
    since = now - 30 * DAY_MS
    with Store.open(path, readonly=True) as st:
        raw_counts = st.raw_counts(0, 2**62)
        rows = sum(n for _sid, n, _ok in raw_counts)
        hours = st.conn.execute("SELECT count(*) FROM hourly").fetchone()[0]

        def raw_uptime_sql() -> None:  # the rows uptime reads, without any processing
            st.conn.execute(
                "SELECT series, count(*), sum(ok) FROM results WHERE t >= ? GROUP BY series", (since,)
            ).fetchall()
            st.conn.execute("SELECT series, latency_ms FROM results WHERE ok = 1 AND t >= ?", (since,)).fetchall()
            st.conn.execute("SELECT * FROM hourly WHERE hour >= ?", (since,)).fetchall()

        def raw_report_sql() -> None:  # every row the page draws from, read once
            st.conn.execute("SELECT * FROM results WHERE t >= ?", (since,)).fetchall()
            st.conn.execute("SELECT * FROM hourly WHERE hour >= ?", (since,)).fetchall()

        uptime_in = timed(lambda: summarize([st], "30d", now), runs)
        report = timed(lambda: render(ReportInput("bench", [st], now)), runs)
        base_uptime = timed(raw_uptime_sql, runs)
        base_report = timed(raw_report_sql, runs)
    settings = work / "watch.json"
    spec = spec_from_settings(load("local", root=work, environ=clean_environ()))
    settings.write_text(json.dumps(runner.settings_document(WatchConfig(store_path=path), spec, "bench")))
    argv = [sys.executable, "-m", "tasks.watch.runner", "--config", str(settings), "uptime", "--window", "30d"]
    uptime_proc = timed(lambda: subprocess.run(argv, cwd=ROOT, check=True, capture_output=True), runs)
    noop = [sys.executable, "-c", "import tasks.watch.runner"]
    start_proc = timed(lambda: subprocess.run(noop, cwd=ROOT, check=True, capture_output=True), runs)
    print(f"\n2. A simulated year of one-minute rounds of 20 probes (written in {took:.0f} s), median of {runs}\n")
    print(
        f"store: {size:.1f} MB (target < 50 MB: {'met' if size < 50 else 'MISSED'}); "
        f"{rows:,} raw rows (7 days), {hours:,} hourly rows\n"
    )
    print("| measure | seconds | raw baseline | seconds |\n|---|---|---|---|")
    print(f"| uptime --window 30d, in-process | {uptime_in:.3f} | the same rows by plain SQL | {base_uptime:.3f} |")
    proc = (
        f"| uptime --window 30d, as a process | {uptime_proc:.3f} | a process importing the runner | {start_proc:.3f} |"
    )
    print(proc)
    print(f"| status page (24 h / 7 d / 30 d, charts) | {report:.3f} | its rows by plain SQL | {base_report:.3f} |")
    met = uptime_proc < 1 and report < 2
    print(f"\ntargets: uptime < 1 s, page < 2 s: {'met' if met else 'MISSED'}")


def memory_table(spec, work: Path) -> None:
    clock = [time.time() - 86400]
    cfg = WatchConfig(store_path=work / "day.sqlite", probe_timeout=5, probe_attempts=2)
    before = rss_mb()
    watch = Watch(cfg, lambda: round_probes(spec, 5, 2), "bench", clock=lambda: clock[0])
    samples = {}
    started = time.perf_counter()
    for i in range(1, 1441):
        watch.round()
        clock[0] += 60
        if i in (60, 360, 720, 1080, 1440):
            samples[i] = rss_mb()
    took = time.perf_counter() - started
    rounds = watch.store.round_count()
    watch.close()
    print(f"\n3. Memory of a simulated 24 h loop: 1,440 rounds of the real probes ({took:.0f} s, {rounds} recorded)\n")
    print("| after round | RSS MB |\n|---|---|")
    print(f"| (before the loop: raw baseline) | {before:.1f} |")
    for i, mb in samples.items():
        print(f"| {i} | {mb:.1f} |")
    growth = samples[1440] - samples[360]
    steady = samples[1440] < 80 and growth < 5
    print(
        f"\nsteady state {samples[1440]:.1f} MB, {growth:+.1f} MB from round 360 to 1,440 "
        f"(target < 80 MB, not growing: {'met' if steady else 'MISSED'})"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--skip-stack", action="store_true", help="only the store measures (no Docker)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="torrust-wbench-"))
    try:
        if not args.skip_stack:
            _load_builder().build_images(log=lambda m: None)
            project = "wbench" + os.urandom(2).hex()
            env = probed_stack_env(work / "root", project)
            cli = [sys.executable, str(ROOT / "tasks.py")]
            deployed = subprocess.run(
                [*cli, "app.deploy"], cwd=work, env=clean_environ(**env), capture_output=True, text=True
            )
            if deployed.returncode != 0:
                raise SystemExit(deployed.stderr)
            try:
                spec = spec_from_settings(load("local", root=work, environ=clean_environ(**env)))
                rounds_table(spec, args.runs)
                memory_table(spec, work)
            finally:
                subprocess.run([*cli, "app.down"], cwd=work, env=clean_environ(**env), capture_output=True)
        store_table(work, args.runs)
    finally:
        subprocess.run(["rm", "-rf", str(work)])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
