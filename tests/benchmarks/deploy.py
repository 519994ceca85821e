#!/usr/bin/env python3
"""Benchmark app.deploy against a raw `ssh host docker compose up -d --wait`.

Deploys through the SSH test host several times and prints, per scenario, the median
wall time of `./tasks.py app.deploy` next to the raw baseline measured in the same run
on the same files (a second deploy root and project on the same host):

    first deploy        empty host -> running stack
    no-op redeploy      nothing changed (the tool must skip the work)
    one-setting change  TORRUST_ANNOUNCE_INTERVAL flips (the tracker is recreated)

and the SSH connections each deploy opened (sshd's "Accepted publickey" lines).
Targets (issue #3): no-op <= 0.5x raw, one-setting <= 1.3x raw, <= 2 connections.

    .venv/bin/python tests/benchmarks/deploy.py [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tasks.config.settings import load  # noqa: E402
from tasks.release import render as r  # noqa: E402
from tests.conftest import clean_environ  # noqa: E402
from tests.integration.conftest import (  # noqa: E402
    TEST_IMAGES,
    SSHHost,
    _load_builder,
    docker,
    free_port,
    prepare_storage,
)
from tests.integration.test_deploy import STRONG  # noqa: E402


def timed(argv: list[str], **kw) -> float:
    started = time.monotonic()
    res = subprocess.run(argv, capture_output=True, text=True, **kw)
    elapsed = time.monotonic() - started
    if res.returncode != 0:
        raise SystemExit(f"benchmark command failed ({res.returncode}): {argv}\n{res.stdout}\n{res.stderr}")
    return elapsed


class Bench:
    def __init__(self, host: SSHHost, work: Path, prefix: str = "bench"):
        """`prefix` starts the Compose project names (prefix + "tool", prefix + "raw")."""
        self.host, self.work, self.prefix = host, work, prefix
        self.cwd = work / "cwd"
        self.cwd.mkdir()
        self.ports = {n: (free_port(socket.SOCK_DGRAM), free_port(), free_port()) for n in ("tool", "raw")}
        self.ssh = [
            "ssh",
            "-i",
            str(host.client_key),
            "-p",
            str(host.port),
            "-o",
            "BatchMode=yes",
            "-o",
            f"UserKnownHostsFile={work / 'known_hosts'}",
            "torrust@127.0.0.1",
        ]
        self.base_env = {
            **host.settings_env(work / "known_hosts"),
            **TEST_IMAGES,
            **STRONG,
            "TORRUST_DB_DRIVER": "mysql",
            "TORRUST_PROMETHEUS": "true",
        }

    def env(self, name: str, interval: int) -> dict[str, str]:
        ports = self.ports[name]
        return {
            **self.base_env,
            "TORRUST_COMPOSE_PROJECT": f"{self.prefix}{name}",
            "TORRUST_DEPLOY_ROOT": str(self.host.deploy_root / name),
            "TORRUST_UDP_TRACKERS": f"[::]:{ports[0]}",
            "TORRUST_HTTP_PORT": str(ports[1]),
            "TORRUST_PROMETHEUS_PORT": str(ports[2]),
            "TORRUST_ANNOUNCE_INTERVAL": str(interval),
        }

    def tool(self, interval: int) -> float:
        env = clean_environ(**self.env("tool", interval))
        return timed(
            [sys.executable, str(ROOT / "tasks.py"), "app.deploy", "--env", "bench"], cwd=self.cwd, env=env, timeout=600
        )

    def raw_prepare(self, interval: int) -> Path:
        """The same files the tool would ship, placed by hand (not timed)."""
        env = self.env("raw", interval)
        s = load("bench", root=self.cwd, environ=clean_environ(**env))
        root = Path(env["TORRUST_DEPLOY_ROOT"])
        rel = root / "releases" / f"r{interval}"
        if rel.exists():
            shutil.rmtree(rel)
        r.write(r.render(s), rel)
        cur = root / "current"
        if cur.is_symlink():
            cur.unlink()
        cur.symlink_to(rel)
        prepare_storage(root, rel)
        for q in [root, root / "releases", rel, *rel.rglob("*")]:
            os.lchown(q, 1000, 1000)
        for f in json.loads((rel / "release.json").read_text())["files"]:
            if f.get("group") is not None:  # as the deploy does: a container's group may read it
                os.chown(rel / f["path"], 1000, f["group"])
        return root

    def raw(self, interval: int) -> float:
        root = self.raw_prepare(interval)
        cur = root / "current"
        compose = [
            "docker",
            "compose",
            "--project-name",
            f"{self.prefix}raw",
            "--project-directory",
            str(cur),
            "--file",
            f"{cur}/compose.yaml",
            "--env-file",
            f"{cur}/.env",
            "up",
            "-d",
            "--wait",
        ]
        return timed([*self.ssh, *compose], timeout=600)

    def down(self, name: str) -> None:
        subprocess.run(
            [
                "docker",
                "compose",
                "--project-name",
                f"{self.prefix}{name}",
                "down",
                "--remove-orphans",
                "--timeout",
                "5",
            ],
            capture_output=True,
            timeout=120,
        )
        root = self.host.deploy_root / name
        if root.exists():
            subprocess.run(["rm", "-rf", str(root)], check=True)
        root.mkdir()
        os.chown(root, 1000, 1000)

    def connections(self) -> int:
        logs = docker("logs", self.host.name, check=False)
        return (logs.stdout + logs.stderr).count("Accepted publickey")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    images = _load_builder().build_images(log=lambda m: None)
    work = Path(tempfile.mkdtemp(prefix="torrust-bench-"))
    host = SSHHost("torrust-bench-sshhost", free_port(), work, images["sshhost"])
    host.start()
    bench = Bench(host, work)
    subprocess.run(
        [sys.executable, str(ROOT / "tasks.py"), "app.preflight", "--env", "bench", "--accept-new-host-key"],
        cwd=bench.cwd,
        env=clean_environ(**bench.env("tool", 120)),
        capture_output=True,
        check=True,
    )
    subprocess.run(["ssh-keyscan", "-p", str(host.port), "127.0.0.1"], capture_output=True, check=True)
    results: dict[str, dict[str, list[float]]] = {k: {"tool": [], "raw": []} for k in ("first", "noop", "change")}
    conns: list[int] = []
    try:
        for i in range(args.runs):
            for name in ("tool", "raw"):
                bench.down(name)
            c0 = bench.connections()
            results["first"]["tool"].append(bench.tool(120))
            conns.append(bench.connections() - c0)
            results["first"]["raw"].append(bench.raw(120))
            c0 = bench.connections()
            results["noop"]["tool"].append(bench.tool(120))
            conns.append(bench.connections() - c0)
            results["noop"]["raw"].append(bench.raw(120))
            c0 = bench.connections()
            results["change"]["tool"].append(bench.tool(300))
            conns.append(bench.connections() - c0)
            results["change"]["raw"].append(bench.raw(300))
            print(f"run {i + 1}/{args.runs} done", file=sys.stderr)
    finally:
        for name in ("tool", "raw"):
            subprocess.run(
                ["docker", "compose", "--project-name", f"bench{name}", "down", "--remove-orphans", "--timeout", "5"],
                capture_output=True,
                timeout=120,
            )
        host.stop()
        subprocess.run(["rm", "-rf", str(work)])
    targets = {"first": None, "noop": 0.5, "change": 1.3}
    labels = {"first": "first deploy", "noop": "no-op redeploy", "change": "one-setting change"}
    print(f"\napp.deploy vs raw `ssh host docker compose up -d --wait`, median of {args.runs} runs\n")
    print("| scenario | app.deploy (s) | raw (s) | ratio | target |")
    print("|---|---|---|---|---|")
    for key, vals in results.items():
        tool, raw = statistics.median(vals["tool"]), statistics.median(vals["raw"])
        target = f"<= {targets[key]}x" if targets[key] else "-"
        verdict = "" if not targets[key] else (" met" if tool / raw <= targets[key] else " MISSED")
        print(f"| {labels[key]} | {tool:.2f} | {raw:.2f} | {tool / raw:.2f}x | {target}{verdict} |")
    print(f"\nSSH connections per deploy: max {max(conns)}, all runs {conns} (target <= 2)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
