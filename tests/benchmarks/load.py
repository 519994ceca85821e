#!/usr/bin/env python3
"""Benchmark health.load (issue #13): two tables of medians.

1. The generator's own ceiling on this machine: health.load's UDP generator (one process
   pinned to one core) against the minimal BEP 15 responder stand-in (its own process on
   the other core), offered rates stepped up; the ceiling is the highest rate the
   generator still sends on schedule (>= 97% of offered). Raw baseline in the same run:
   the simplest correct client (one blocking socket per transaction, connect then
   announce, one in flight) as fast as it goes on the same core.
2. Announces/s with under 0.1% loss through the deployed stack's published port (the
   network test host: its own dockerd with ip6tables, Docker NAT, conntrack, ufw) against
   the same tracker process reached directly (its container address, from inside the
   host's network namespace: no NAT, no FORWARD). Target: published >= 0.8x direct.

    .venv/bin/python tests/benchmarks/load.py [--runs 3] [--seconds 2] [--only ceiling|stack]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tasks.config.settings import load as load_settings  # noqa: E402
from tasks.health import load as hl  # noqa: E402
from tasks.health import loadgen  # noqa: E402
from tasks.infra import cloudinit  # noqa: E402
from tests.integration.conftest import _load_builder  # noqa: E402
from tests.integration.nethost import NetHost, unique_prefix  # noqa: E402

CEILING_RATES = (2000, 4000, 8000, 12000, 16000, 20000, 24000, 28000, 32000, 40000)
STACK_RATES = (250, 500, 750, 1000, 1500, 2000, 3000, 4000, 6000, 8000)
# The tracker stand-in whitelists each new info-hash in opentracker (a file write and a
# reload): a stand-in artifact the real tracker has not. A few torrents, warmed up first.
STACK_TORRENTS = 20
LOSS_TARGET = 0.1  # percent
SKIP = ("packages", "user", "sshd", "upgrades", "storage")


def pin(cpu: int) -> None:
    if hasattr(os, "sched_setaffinity") and os.cpu_count() and os.cpu_count() > cpu:
        os.sched_setaffinity(0, {cpu})


def med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def run_load(address: str, port: int, rate: int, seconds: float, torrents: int = 1000) -> hl.LoadReport:
    return hl.run(
        hl.LoadParams("udp", address, port, rate=rate, duration=seconds, timeout=1.0, yes=True, torrents=torrents)
    )


# ------------------------------------------------------------------ 1. the ceiling
def raw_baseline(port: int, seconds: float) -> float:
    """Transactions/s of the simplest correct client: blocking, one in flight."""
    done, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(1.0)
            s.connect(("127.0.0.1", port))
            s.send(struct.pack("!qiI", loadgen.PROTOCOL_ID, 0, done))
            conn = s.recv(64)[8:16]
            s.send(conn + struct.pack("!iI", 1, done) + b"i" * 20 + b"p" * 20 + b"\0" * 42)
            s.recv(2048)
        done += 1
    return done / seconds


def ceiling(runs: int, seconds: float) -> None:
    responder = subprocess.Popen(
        [sys.executable, str(ROOT / "tests/standins/bep15.py")], stdout=subprocess.PIPE, text=True
    )
    try:
        port = int(responder.stdout.readline().split()[1])
        if hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(responder.pid, {1 % os.cpu_count()})
        pin(0)
        rows, best = [], None
        for rate in CEILING_RATES:
            reps = [run_load("127.0.0.1", port, rate, seconds) for _ in range(runs)]
            sent = med([r.sent_rate for r in reps])
            late = med([100 * r.late / max(1, r.sent) for r in reps])
            row = (rate, sent, late, med([r.achieved_rate for r in reps]), med([r.loss_pct for r in reps]))
            rows.append((*row, med([r.p50_ms or 0 for r in reps]), med([r.p99_ms or 0 for r in reps])))
            if sum(r.generator_limited for r in reps) * 2 > len(reps):
                break
            best = rate
        raw = med([raw_baseline(port, seconds) for _ in range(runs)])
    finally:
        responder.terminate()
        responder.wait(5)
    print(f"\n### 1. Generator ceiling (UDP, one core), median of {runs} runs of {seconds:g} s\n")
    print("| offered/s | sent/s | sent late % | answered/s | loss % | p50 ms | p99 ms |")
    print("|---|---|---|---|---|---|---|")
    for rate, sent, late, got, loss, p50, p99 in rows:
        print(f"| {rate:,} | {sent:,.0f} | {late:.1f} | {got:,.0f} | {loss:.2f} | {p50:.2f} | {p99:.2f} |")
    print(
        f"\ngenerator ceiling (on schedule: <= {hl.LATE_SHARE:.0%} sent over {loadgen.LATE * 1000:.0f} ms late): "
        f"{best or 0:,} transactions/s (connect + announce each)"
    )
    print(f"raw baseline (blocking, one in flight, same core): {raw:,.0f} transactions/s")
    if best:
        print(f"ceiling / raw = {best / raw:.2f}x")


# ---------------------------------------------------------------- 2. the stack
def max_clean_rate(measure, runs: int, seconds: float) -> tuple[int, list[tuple]]:
    """The highest rate of the ladder whose median loss stays under LOSS_TARGET."""
    best, rows = 0, []
    for rate in STACK_RATES:
        reps = [measure(rate) for _ in range(runs)]
        loss = med([r["loss_pct"] for r in reps])
        rows.append((rate, med([r["achieved_rate"] for r in reps]), loss, med([r["p99_ms"] or 0 for r in reps])))
        if loss >= LOSS_TARGET or med([r["sent_rate"] for r in reps]) < hl.LIMITED * rate:
            break
        best = rate
    return best, rows


INSIDE = """
import json, sys
sys.path.insert(0, {root!r})
from tasks.health import load as hl
p = hl.LoadParams("udp", {addr!r}, 6969, rate={rate}, duration={seconds}, timeout=1.0, yes=True, torrents={torrents})
r = hl.run(p)
print(json.dumps(r.as_dict()))
"""


def ready(host: NetHost, seconds: float = 90) -> None:
    """Until the tracker answers again (a stand-in overwhelmed by the previous ladder may
    be restarting): polled, not slept."""
    deadline = time.monotonic() + seconds
    while True:
        rep = run_load(host.v4, 6969, 20, 0.5, STACK_TORRENTS)
        if rep.replies == rep.sent:
            return
        if time.monotonic() > deadline:
            raise SystemExit("the tracker on the test host does not answer")


def stack(runs: int, seconds: float) -> None:
    _load_builder().build_images(["tracker-standin", "caddy", "nethost"], log=lambda m: None)
    work = Path(tempfile.mkdtemp(prefix="torrust-lbench-"))
    (work / "cwd").mkdir()
    host = NetHost(unique_prefix(), work)
    try:
        host.start()
        host.load_images()
        env = host.settings_env(work / "cwd")
        s = load_settings("net", root=work / "cwd", environ=env)
        host.harden(cloudinit.harden_env(s, "existing", SKIP))
        host.restart_dockerd()
        for args in (("app.preflight", "--accept-new-host-key"), ("app.deploy",)):
            res = host.cli(work / "cwd", env, *args)
            if res.returncode != 0:
                raise SystemExit(res.stdout + res.stderr)
        inner = host.sh(
            "docker inspect --format '{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}' "
            "$(docker ps -q --filter label=com.docker.compose.service=tracker)"
        ).stdout.split()[0]

        def published(rate: int) -> dict:
            return run_load(host.v4, 6969, rate, seconds, STACK_TORRENTS).as_dict()

        def published6(rate: int) -> dict:
            return run_load(host.v6, 6969, rate, seconds, STACK_TORRENTS).as_dict()

        def direct(rate: int) -> dict:
            code = INSIDE.format(root=str(ROOT), addr=inner, rate=rate, seconds=seconds, torrents=STACK_TORRENTS)
            res = host.nsenter([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
            if res.returncode != 0:
                raise SystemExit(res.stderr)
            return json.loads(res.stdout)

        paths = {
            "published port, IPv4 (Docker NAT, conntrack, ufw)": published,
            "published port, IPv6 (ip6tables NAT, conntrack, ufw)": published6,
            f"the same tracker directly ({inner}, from the host's namespace)": direct,
        }
        results = {}
        for name, measure in paths.items():
            ready(host)
            measure(100)  # warm-up: the stand-in's whitelist holds the torrents
            results[name] = max_clean_rate(measure, runs, seconds)
    finally:
        host.remove()
        subprocess.run(["rm", "-rf", str(work)])
    print(f"\n### 2. Announces/s with < {LOSS_TARGET}% loss, median of {runs} runs of {seconds:g} s per rate\n")
    print("| path | offered/s | answered/s | loss % | p99 ms |")
    print("|---|---|---|---|---|")
    for path, (_best, rows) in results.items():
        for rate, got, loss, p99 in rows:
            print(f"| {path} | {rate:,} | {got:,.0f} | {loss:.2f} | {p99:.1f} |")
    print("\n| path | highest rate with < 0.1% loss |\n|---|---|")
    for path, (best, _rows) in results.items():
        print(f"| {path} | {best:,}/s |")
    bests = [best for best, _rows in results.values()]
    pub, dir_ = bests[0], bests[2]
    if dir_:
        verdict = "met" if pub / dir_ >= 0.8 else "MISSED"
        print(f"\npublished IPv4 / direct = {pub / dir_:.2f}x (target >= 0.8x: {verdict})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--only", choices=("ceiling", "stack"), default=None)
    args = parser.parse_args()
    if args.only in (None, "ceiling"):
        ceiling(args.runs, args.seconds)
    if args.only in (None, "stack"):
        stack(args.runs, args.seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
