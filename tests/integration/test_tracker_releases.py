"""Each supported tracker release deployed by the tool and proved by health.check.

The tracker is the stand-in of that release (tests/images/tracker-standin, one image per
release profile), deployed with `app.deploy --env local` (the local target: real Compose
on this machine) and probed with `health.check`. A stack follows what its release can do:
v3.0.0 has no Prometheus endpoint (no scrape job, no Grafana), the develop build is scraped
with the token in a header; private mode announces with a key made through the API and
has no UDP tracker; listed mode whitelists the probes' canary first.
"""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from tests.integration.conftest import DEVELOP_TRACKER, free_port, local_env

V3_TRACKER = "torrust-test/tracker-standin:v3.0.0"


@pytest.fixture
def deployed(images, tmp_path, cli):
    """deploy(**settings) -> (env, health.check JSON); every stack is taken down afterwards."""
    stacks: list[dict] = []

    def deploy(**extra: str) -> tuple[dict, dict]:
        env = local_env(tmp_path / f"root{len(stacks)}", "rel" + os.urandom(3).hex(), **extra)
        stacks.append(env)
        res = cli("app.deploy", "--env", "local", "--json", env=env)
        assert res.returncode == 0, res.stdout + res.stderr
        assert json.loads(res.stdout)["status"] == "deployed"
        # the network group judges this shared machine's kernel counters, not the release
        # (tests/integration/test_network_host.py is its test)
        check = cli("health.check", "--env", "local", "--skip", "network", "--json", env=env)
        assert check.returncode == 0, check.stdout + check.stderr
        return env, json.loads(check.stdout)

    yield deploy
    for env in stacks:
        cli("app.down", "--env", "local", env=env)


def probes_named(doc: dict, name: str) -> list[dict]:
    found = [p for p in doc["probes"] if p["name"] == name]
    assert found, f"no {name} probe in {doc['probes']}"
    return found


def prometheus_targets(env: dict) -> list[dict]:
    out = subprocess.run(
        ["docker", "compose", "--project-name", env["TORRUST_COMPOSE_PROJECT"], "--project-directory",
         f"{env['TORRUST_DEPLOY_ROOT']}/current", "exec", "-T", "prometheus",
         "wget", "-q", "-O", "-", "http://127.0.0.1:9090/api/v1/targets"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    return [t for t in json.loads(out)["data"]["activeTargets"] if t["labels"]["job"].startswith("tracker")]


def test_v3_stack_runs_prometheus_without_a_tracker_job_and_is_healthy(deployed):
    env, doc = deployed(
        TORRUST_TRACKER_IMAGE=V3_TRACKER, TORRUST_PROMETHEUS="true", TORRUST_PROMETHEUS_PORT=str(free_port())
    )
    assert all(p["status"] == "ok" for p in doc["probes"]), doc["probes"]
    (stats,) = [p for p in probes_named(doc, "api stats") if p["family"] == 4]
    assert stats["detail"].endswith("(query token)")  # v3.0.0 reads the token from the query only
    (prom,) = probes_named(doc, "prometheus")
    assert prom["detail"] == "healthy; no tracker scrape job: release v3.0.0 has no Prometheus endpoint"
    assert prometheus_targets(env) == []


def test_develop_stack_with_grafana_in_listed_mode(deployed):
    env, doc = deployed(
        TORRUST_TRACKER_IMAGE=DEVELOP_TRACKER,
        TORRUST_TRACKER_LISTED="true",
        TORRUST_PROMETHEUS="true",
        TORRUST_PROMETHEUS_PORT=str(free_port()),
        TORRUST_GRAFANA="true",
    )
    assert all(p["status"] == "ok" for p in doc["probes"]), doc["probes"]
    for probe in probes_named(doc, "http tracker"):
        assert probe["detail"].startswith("listed, announce interval=120"), probe  # the canary was whitelisted
    for probe in probes_named(doc, "udp tracker"):
        assert probe["detail"].startswith("listed, connect, announce"), probe
    assert all(p["detail"].endswith("(Bearer header)") for p in probes_named(doc, "api stats"))
    assert probes_named(doc, "grafana")[0]["detail"] == "database ok"
    # both rendered jobs (Bearer header, format=prometheus) scrape the develop build
    deadline = time.monotonic() + 90
    while True:
        targets = prometheus_targets(env)
        if {t["labels"]["job"]: t["health"] for t in targets} == {"tracker_stats": "up", "tracker_metrics": "up"}:
            break
        assert time.monotonic() < deadline, targets
        time.sleep(2)


def test_v3_private_stack_announces_with_a_key_and_has_no_udp_tracker(deployed):
    _env, doc = deployed(TORRUST_TRACKER_IMAGE=V3_TRACKER, TORRUST_TRACKER_PRIVATE="true")
    for probe in probes_named(doc, "http tracker"):
        assert probe["status"] == "ok" and probe["detail"].startswith("private, with a key: announce"), probe
    for probe in probes_named(doc, "udp tracker"):
        assert probe["status"] == "skipped", probe
        assert probe["detail"] == "skipped: release v3.0.0 does not start UDP trackers in private mode"
    failed = [p for p in doc["probes"] if p["status"] == "failed"]
    assert failed == [] and doc["ok"] is True


def test_validate_refuses_grafana_on_a_release_without_metrics(cli):
    res = cli(
        "app.validate", "--env", "local", "--json",
        env={"TORRUST_TRACKER_IMAGE": V3_TRACKER, "TORRUST_PROMETHEUS": "true", "TORRUST_GRAFANA": "true"},
    )  # fmt: skip
    assert res.returncode == 2, res.stdout + res.stderr
    assert "TORRUST_GRAFANA=true: tracker release v3.0.0 has no Prometheus endpoint" in res.stderr
    assert "Traceback" not in res.stderr
