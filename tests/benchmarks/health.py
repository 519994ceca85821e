#!/usr/bin/env python3
"""Benchmark health.check: do the probes really run in parallel?

Deploys the local test stack (MySQL, Prometheus, two UDP trackers) with the tool, then
runs every probe N times and prints, per run, the wall time of the whole check next to the
slowest single probe. Target (issue #4): wall time at most 1.5x the slowest probe (median).
The same probes run one after another give the sequential baseline in the same run.

    .venv/bin/python tests/benchmarks/health.py [--runs 7]
"""

from __future__ import annotations

import argparse
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
from tasks.health import check as hc  # noqa: E402
from tasks.health import probes as pr  # noqa: E402
from tasks.runner.target import open_target  # noqa: E402
from tests.conftest import clean_environ  # noqa: E402
from tests.integration.conftest import _load_builder  # noqa: E402
from tests.integration.test_health import probed_stack_env  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    _load_builder().build_images(log=lambda m: None)
    work = Path(tempfile.mkdtemp(prefix="torrust-hbench-"))
    project = "hbench" + os.urandom(2).hex()
    env = probed_stack_env(work / "root", project)
    cli = [sys.executable, str(ROOT / "tasks.py")]
    deployed = subprocess.run([*cli, "app.deploy"], cwd=work, env=clean_environ(**env), capture_output=True, text=True)
    if deployed.returncode != 0:
        raise SystemExit(deployed.stderr)
    walls, slowest, sequential, counts = [], [], [], []
    try:
        s = load("local", root=work, environ=clean_environ(**env))
        with open_target(s) as ex:
            reach = hc.reach(s, "both", None)
            probes = pr.public_probes(s, reach, sorted(reach.addresses), s.probe_timeout, s.probe_attempts)
            probes += hc.host_probes(ex, s, s.probe_timeout)
            pr.run(probes)  # warm up
            for _ in range(args.runs):
                started = time.monotonic()
                results = pr.run(probes)
                walls.append(time.monotonic() - started)
                slowest.append(max(r.latency for r in results))
                counts.append(sum(r.ok for r in results))
                started = time.monotonic()
                for p in probes:
                    pr._attempt(p)
                sequential.append(time.monotonic() - started)
    finally:
        subprocess.run([*cli, "app.down"], cwd=work, env=clean_environ(**env), capture_output=True)
        subprocess.run(["rm", "-rf", str(work)])
    wall, slow, seq = statistics.median(walls), statistics.median(slowest), statistics.median(sequential)
    print(
        f"\nhealth.check probes against the local test stack, median of {args.runs} runs "
        f"({len(probes)} probes, {min(counts)}-{max(counts)} passed per run)\n"
    )
    print("| measure | seconds |")
    print("|---|---|")
    print(f"| all probes in parallel (wall) | {wall:.3f} |")
    print(f"| slowest single probe | {slow:.3f} |")
    print(f"| the same probes one after another | {seq:.3f} |")
    verdict = "met" if wall / slow <= 1.5 else "MISSED"
    print(
        f"\nwall / slowest probe = {wall / slow:.2f}x (target <= 1.5x: {verdict}); "
        f"speed-up over sequential {seq / wall:.1f}x"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
