"""health.watch beside the stack (TORRUST_WATCH_BESIDE_STACK): a real watch loop on this
machine serves its metrics on the Docker bridge gateway; the stack's real Prometheus
scrapes it through `host.docker.internal` (compose `extra_hosts: host-gateway`) and holds
the watch's series (issue 12: an existing Prometheus/Alertmanager/Grafana can use it)."""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import subprocess
import sys
import time

from tests.conftest import ROOT, clean_environ
from tests.integration.conftest import docker, free_port, local_env


def bridge_gateway() -> str:
    """The default bridge's gateway (docker0's address): where host-gateway points."""
    config = json.loads(docker("network", "inspect", "bridge", "--format", "{{json .IPAM.Config}}").stdout)[0]
    return config.get("Gateway") or str(next(ipaddress.ip_network(config["Subnet"]).hosts()))


def prometheus_query(project: str, path: str) -> dict:
    out = docker(
        "exec", f"{project}-prometheus-1", "wget", "-q", "-O", "-", f"http://127.0.0.1:9090{path}", check=False
    )
    return json.loads(out.stdout) if out.returncode == 0 and out.stdout.strip() else {}


def test_the_stacks_prometheus_scrapes_a_watch_beside_it(images, tmp_path, workdir, cli):
    project = "wbs" + os.urandom(3).hex()
    port = free_port()
    env = local_env(
        tmp_path / "root",
        project,
        TORRUST_PROMETHEUS="true",
        TORRUST_PROMETHEUS_PORT=str(free_port()),
        TORRUST_WATCH_BESIDE_STACK="true",
        TORRUST_WATCH_METRICS_PORT=str(port),
        TORRUST_WATCH_METRICS_BIND=bridge_gateway(),
        TORRUST_WATCH_STORE=str(tmp_path / "watch.sqlite"),
    )
    watch = None
    try:
        res = cli("app.deploy", "--env", "local", "--json", env=env)
        assert res.returncode == 0, res.stderr
        watch = subprocess.Popen(
            [sys.executable, str(ROOT / "tasks.py"), "health.watch", "--env", "local", "--interval", "5"],
            cwd=workdir,
            env=clean_environ(**env),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 120
        up, series = {}, []
        while time.monotonic() < deadline:  # Prometheus scrapes every 15 s; the watch's first round must be in
            targets = prometheus_query(project, "/api/v1/targets").get("data", {}).get("activeTargets", [])
            up = {t["labels"]["job"]: t["health"] for t in targets}
            query = prometheus_query(project, "/api/v1/query?query=torrust_watch_probe_up")
            series = query.get("data", {}).get("result", [])
            if up.get("torrust_watch") == "up" and series:
                break
            assert watch.poll() is None, watch.stderr.read()
            time.sleep(2)
        assert up.get("torrust_watch") == "up", up
        assert series and all(s["value"][1] == "1" for s in series), series
        assert {"udp", "http", "api"} <= {s["metric"]["probe"] for s in series}
        assert {s["metric"]["family"] for s in series} == {"4", "6"}
    finally:
        if watch is not None:
            watch.send_signal(signal.SIGTERM)
            watch.wait(timeout=60)
        cli("app.down", "--env", "local", env=env)
