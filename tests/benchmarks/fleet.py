#!/usr/bin/env python3
"""Benchmark app.deploy --fleet against single-host deploys and a raw compose up.

Three or six SSH test hosts (tests/integration/fleet.py: each its own sshd, deploy root,
Compose project and ports) as the fleets `one`, `three` and `six`, running the production
profile of tests/benchmarks/deploy.py (MySQL, Prometheus, proxy, tracker: the targets are
judged on it, as app.deploy's are) or the light one (SQLite, tracker and proxy: six hosts
of it fit the 2-core machine).
Every deploy timed is the whole `./tasks.py` process (interpreter start included) and a
one-setting change (TORRUST_ANNOUNCE_INTERVAL, a new value each time: every host of the
fleet recreates its tracker), except the no-op. Per run, in the same run:

    single        `app.deploy --env fa|fb|fc`, one after another: the slowest is the baseline
    parallel      `app.deploy --fleet three --parallel 3`            (target <= 1.3x the slowest single)
    no-op         `app.deploy --fleet three --parallel 3`, nothing changed
    raw           `ssh host docker compose up -d --wait` of the same stack, nothing changed
                                                                      (target: no-op <= 0.5x raw)
    growth        --fleet one/three/six, all at once (--parallel N) and --canary 1 (then the
                  rest at once)

and the SSH connections each fleet deploy opened per host (sshd's "Accepted publickey"
lines; target 1). Medians of --runs.

    .venv/bin/python tests/benchmarks/fleet.py [--runs 3] [--hosts 3|6] [--profile production|light]

`test.bench --only fleet` runs it twice: the defaults (production, 3 hosts: the targets),
then `--profile light --hosts 6` (the growth to six hosts).
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
sys.path.insert(0, str(ROOT / "tests" / "benchmarks"))

from deploy import Bench  # noqa: E402

from tests.integration.conftest import ADMIN_TOKEN, TEST_IMAGES, _load_builder  # noqa: E402
from tests.integration.fleet import Fleet  # noqa: E402
from tests.integration.test_deploy import STRONG  # noqa: E402

# The stacks measured: "light" (SQLite, tracker and proxy) or "production", the profile of
# tests/benchmarks/deploy.py (MySQL, Prometheus, proxy, tracker), whose raw no-op the
# single-host target N2 is measured against.
PROFILES = {
    "light": {},
    "production": {"TORRUST_DB_DRIVER": "mysql", "TORRUST_PROMETHEUS": "true", **STRONG},
}


class FleetBench:
    def __init__(self, fleet: Fleet, runs: int, profile: dict[str, str]):
        self.fleet, self.runs, self.profile = fleet, runs, profile
        self.interval = 200  # a new value per deploy: every host deployed recreates its tracker
        self.connections: list[int] = []

    def change(self) -> None:
        self.interval += 1
        self.fleet.shared({**self.profile, "TORRUST_ANNOUNCE_INTERVAL": str(self.interval)})

    def timed(self, *args: str, count: list[str] = ()) -> float:
        before = {n: self.fleet.by_name[n].connections() for n in count}
        started = time.monotonic()
        res = self.fleet.cli(*args)
        elapsed = time.monotonic() - started
        if res.returncode != 0:
            raise SystemExit(f"benchmark command failed ({res.returncode}): {args}\n{res.stdout}\n{res.stderr}")
        self.connections += [self.fleet.by_name[n].connections() - before[n] for n in count]
        return elapsed

    def deploy(self, fleet: str, *flags: str, hosts: list[str]) -> float:
        return self.timed("app.deploy", "--fleet", fleet, *flags, "--json", count=hosts)  # errors whole


def declare(fleet: Fleet, size: int) -> None:
    names = [m.env for m in fleet.members]
    text = ""
    for label, n in (("one", 1), ("three", 3), ("six", 6)):
        if n <= size:
            text += f"[fleet.{label}]\nenvironments = [{', '.join(repr(x) for x in names[:n])}]\n".replace("'", '"')
    (fleet.cwd / "fleets.toml").write_text(text)


def raw_baseline(fleet: Fleet, work: Path, profile: dict[str, str]) -> Bench:
    """A raw stack (same profile as the fleet's) under a second root and project on fa."""
    fa = fleet.members[0]
    (work / "known_hosts").write_text(fa.pinned_key())
    bench = Bench(fa.host, work, prefix=fa.project)  # projects of its own: <fa's project>raw
    bench.base_env = {
        **fa.host.settings_env(work / "known_hosts"),
        **TEST_IMAGES,
        "TORRUST_TRACKER_ADMIN_TOKEN": ADMIN_TOKEN,
        **profile,
    }
    bench.down("raw")
    bench.raw(120)  # up once; the timed runs find it running
    return bench


def median(values: list[float]) -> float:
    return statistics.median(values)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--hosts", type=int, default=3, choices=(3, 6))
    parser.add_argument("--profile", default="production", choices=tuple(PROFILES))
    args = parser.parse_args()
    images = _load_builder().build_images(log=lambda m: None)
    work = Path(tempfile.mkdtemp(prefix="torrust-bench-fleet-"))
    (work / "fleet").mkdir()
    fleet = Fleet(work / "fleet", images, "bfl" + os.urandom(2).hex(), size=args.hosts)
    fleet.start()
    declare(fleet, args.hosts)
    (work / "raw").mkdir()
    bench = FleetBench(fleet, args.runs, PROFILES[args.profile])
    sizes = [("one", 1), ("three", 3), ("six", 6)][: 2 if args.hosts == 3 else 3]
    three = ["fa", "fb", "fc"]
    t: dict[str, list[float]] = {
        k: [] for k in ("single", "parallel", "noop", "raw", *(f"{n}-{m}" for n, _ in sizes for m in ("par", "can")))
    }
    raw = None
    try:
        bench.change()
        bench.deploy(sizes[-1][0], "--parallel", str(sizes[-1][1]), hosts=[])  # first deploy, not timed
        raw = raw_baseline(fleet, work / "raw", PROFILES[args.profile])
        for i in range(args.runs):
            bench.change()
            t["single"].append(max(bench.timed("app.deploy", "--env", n) for n in three))
            bench.change()
            t["parallel"].append(bench.deploy("three", "--parallel", "3", hosts=three))
            t["noop"].append(bench.deploy("three", "--parallel", "3", hosts=three))
            t["raw"].append(raw.raw(120))
            for name, n in sizes:
                bench.change()
                t[f"{name}-par"].append(bench.deploy(name, "--parallel", str(n), hosts=[]))
                bench.change()
                t[f"{name}-can"].append(bench.deploy(name, "--canary", "1", "--parallel", str(n), hosts=[]))
            print(f"run {i + 1}/{args.runs} done", file=sys.stderr)
    finally:
        if raw is not None:
            raw.down("raw")
        fleet.remove()
        subprocess.run(["rm", "-rf", str(work)])
    report(t, bench, sizes, args.runs, args.profile)
    return 0


def report(t: dict, bench: FleetBench, sizes: list, runs: int, profile: str) -> None:
    m = {k: median(v) for k, v in t.items()}
    rows = [
        (
            "parallel rollout, 3 hosts (one-setting change)",
            m["parallel"],
            "slowest single-host deploy",
            m["single"],
            1.3,
        ),
        ("no-op fleet deploy, 3 hosts", m["noop"], "raw `ssh host docker compose up -d --wait`", m["raw"], 0.5),
    ]
    print(f"\napp.deploy --fleet, profile {profile}, median of {runs} runs\n")
    print("| scenario | fleet (s) | baseline | baseline (s) | ratio | target |")
    print("|---|---|---|---|---|---|")
    for label, tool, base_label, base, target in rows:
        verdict = "met" if tool / base <= target else "MISSED"
        print(f"| {label} | {tool:.2f} | {base_label} | {base:.2f} | {tool / base:.2f}x | <= {target}x {verdict} |")
    conns = bench.connections
    print(f"\nSSH connections per host per fleet deploy: max {max(conns)}, all {sorted(set(conns))} (target 1)")
    print(f"\nWall time by fleet size (one-setting change on every host), median of {runs} runs\n")
    print("| hosts | all at once (s) | per host (s) | canary 1, then the rest at once (s) | vs 1 host |")
    print("|---|---|---|---|---|")
    for name, n in sizes:
        par, can = m[f"{name}-par"], m[f"{name}-can"]
        print(
            f"| {n} | {par:.2f} | {par / n:.2f} | {can:.2f} | {par / m['one-par']:.2f}x / {can / m['one-can']:.2f}x |"
        )


if __name__ == "__main__":
    raise SystemExit(main())
