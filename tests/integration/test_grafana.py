"""Grafana, provisioned by the release, behind the proxy, probed by health.check.

Grafana itself cannot run here: `torrust-test/grafana-standin` stands in for it
(tests/images/grafana-standin/README.md). It refuses to start unless the deployment gives
it what Grafana needs (user 472, admin credentials, one default Prometheus datasource,
dashboards whose panels use it, a writable data dir), and it queries Prometheus through
the provisioned datasource URL, so a wiring mistake fails here.
"""

from __future__ import annotations

import json
import os
import time

import pytest
import requests

from tests.integration.conftest import DEVELOP_TRACKER, docker, free_port, local_env


@pytest.fixture
def local_stack_with_grafana(images, tmp_path, cli):
    env = local_env(
        tmp_path / "root",
        "graf" + os.urandom(3).hex(),
        TORRUST_PROMETHEUS="true",
        TORRUST_PROMETHEUS_PORT=str(free_port()),
        TORRUST_GRAFANA="true",
        TORRUST_TRACKER_IMAGE=DEVELOP_TRACKER,  # dashboards need a tracker with metrics
    )
    res = cli("app.deploy", "--env", "local", "--json", env=env)
    try:
        assert res.returncode == 0, res.stderr
        yield env, int(env["TORRUST_HTTP_PORT"])
    finally:
        cli("app.down", "--env", "local", env=env)


def test_grafana_is_provisioned_reachable_through_the_proxy_and_probed(local_stack_with_grafana, cli):
    env, http_port = local_stack_with_grafana
    via_proxy = f"http://127.0.0.1:{http_port}"
    host = {"Host": "grafana.torrust.local"}
    health = requests.get(f"{via_proxy}/api/health", headers=host, timeout=5)
    assert health.status_code == 200 and health.json()["database"] == "ok"
    # the provisioned datasource reaches Prometheus over the metrics network
    deadline = time.monotonic() + 180  # a hang guard only
    while True:
        ds = requests.get(f"{via_proxy}/standin/datasource", headers=host, timeout=5)
        if ds.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert ds.status_code == 200, ds.text
    assert ds.json()["detail"]["status"] == "success"

    check = cli("health.check", "--env", "local", "--json", env=env)
    assert check.returncode == 0, check.stdout + check.stderr
    grafana = [p for p in json.loads(check.stdout)["probes"] if p["name"] == "grafana"]
    assert grafana and grafana[0]["ok"] is True and grafana[0]["detail"] == "database ok"


# What the rendered compose file gives Grafana, in the shape the stand-in accepts.
GOOD_GF_ENV = {
    "GF_SECURITY_ADMIN_USER": "admin",
    "GF_SECURITY_ADMIN_PASSWORD": "a-long-enough-password",
    "GF_USERS_ALLOW_SIGN_UP": "false",
    "GF_USERS_ALLOW_ORG_CREATE": "false",
    "GF_AUTH_ANONYMOUS_ENABLED": "false",
    "GF_SERVER_ROOT_URL": "http://grafana.test/",
}


@pytest.mark.parametrize(
    "env, reason",
    [
        ({"GF_SECURITY_ADMIN_PASSWORD": "admin"}, "GF_SECURITY_ADMIN_PASSWORD"),
        ({"GF_AUTH_ANONYMOUS_ENABLED": "true"}, "GF_AUTH_ANONYMOUS_ENABLED"),
    ],
)
def test_the_grafana_standin_refuses_what_grafana_should_not_get(images, env, reason):
    args = [x for k, v in {**GOOD_GF_ENV, **env}.items() for x in ("-e", f"{k}={v}")]
    res = docker("run", "--rm", *args, images["grafana-standin"], check=False, timeout=60)
    assert res.returncode == 1 and "refusing to start" in res.stderr and reason in res.stderr


def test_the_grafana_standin_refuses_a_dashboard_on_an_unknown_datasource(images, tmp_path):
    prov = tmp_path / "provisioning"
    (prov / "datasources").mkdir(parents=True)
    (prov / "dashboards").mkdir()
    boards = tmp_path / "boards"
    boards.mkdir()
    (prov / "datasources" / "p.yml").write_text(
        "apiVersion: 1\ndatasources:\n"
        "  - {name: P, uid: good, type: prometheus, url: 'http://p:9090', isDefault: true}\n"
    )
    (prov / "dashboards" / "d.yml").write_text(
        "apiVersion: 1\nproviders:\n  - {name: t, type: file, options: {path: /boards}}\n"
    )
    (boards / "b.json").write_text(json.dumps({"title": "B", "uid": "b", "panels": [{"datasource": {"uid": "other"}}]}))
    for p in [prov, *prov.rglob("*"), boards, *boards.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    res = docker(
        "run",
        "--rm",
        *[x for k, v in GOOD_GF_ENV.items() for x in ("-e", f"{k}={v}")],
        "-v",
        f"{prov}:/etc/grafana/provisioning:ro",
        "-v",
        f"{boards}:/boards:ro",
        images["grafana-standin"],
        check=False,
        timeout=60,
    )
    assert res.returncode == 1 and "not provisioned" in res.stderr and "other" in res.stderr, res.stderr
