"""app.validate with the real validators, and the CLI's behaviour on bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tasks.config.settings import load
from tasks.release import render as r
from tasks.release.validate import FAILED, OK, validate
from tasks.runner.executor import local
from tests.conftest import snapshot
from tests.integration.conftest import DEVELOP_TRACKER, TEST_IMAGES

PROD_SET = {"TORRUST_DOMAIN": "tracker-ops.net", "TORRUST_ACME_EMAIL": "ops@tracker-ops.net"}


@pytest.mark.parametrize(
    ("extra", "grafana"),
    [({}, False), ({"TORRUST_GRAFANA": "true", "TORRUST_TRACKER_IMAGE": DEVELOP_TRACKER}, True)],
    ids=["as-written", "grafana-with-a-metrics-release"],
)
def test_fresh_environment_validates_production_profile(cli, workdir, images, extra, grafana):
    """The issue's 'done when': app.config --env prod, a domain and an email, app.validate.
    app.config leaves Grafana off (the default tracker v3.0.0 has no metrics to show); with
    a release that has metrics it is validated too."""
    done = cli("app.config", "--env", "prod")
    assert done.returncode == 0, done.stderr
    res = cli("app.validate", "--env", "prod", "--strict", "--json", env={**PROD_SET, **TEST_IMAGES, **extra})
    assert res.returncode == 0, res.stdout + res.stderr
    checks = {c["name"]: c for c in json.loads(res.stdout)["checks"]}
    assert {c["status"] for c in checks.values()} == {OK}, checks
    assert set(checks) == {
        "tracker release",
        "compose config",
        "tracker.toml schema",
        "compose policy",
        "caddy validate",
        "promtool check config",
        *(["grafana provisioning"] if grafana else []),
        "host scripts",
        "cron entry",
    }
    assert "torrust-test/caddy:2.6" in checks["caddy validate"]["detail"]


def test_local_profile_validates_strictly(cli, images):
    res = cli("app.validate", "--env", "local", "--strict", "--json", env=TEST_IMAGES)
    assert res.returncode == 0, res.stdout + res.stderr
    names = [c["name"] for c in json.loads(res.stdout)["checks"]]
    assert "promtool check config" not in names and "caddy validate" in names


def test_missing_validator_image_is_skipped_not_passed(cli):
    env = {**TEST_IMAGES, "TORRUST_CADDY_IMAGE": "torrust-test/no-such-caddy:0"}
    res = cli("app.validate", "--env", "local", "--json", env=env)
    assert res.returncode == 0
    caddy = next(c for c in json.loads(res.stdout)["checks"] if c["name"] == "caddy validate")
    assert caddy["status"] == "skipped" and "not available" in caddy["detail"]
    strict = cli("app.validate", "--env", "local", "--strict", env=env)
    assert strict.returncode == 3 and "skipped under --strict" in strict.stderr


@pytest.fixture
def prod_release(workdir, tmp_path) -> tuple[Path, object]:
    from tests.unit.config.test_settings import prod_env

    # Grafana on: the develop build's stand-in (v3.0.0 has no metrics for the dashboards)
    s = load("prod", root=workdir, environ={**prod_env(), **TEST_IMAGES, "TORRUST_TRACKER_IMAGE": DEVELOP_TRACKER})
    return r.write(r.render(s), tmp_path / "release"), s


@pytest.mark.parametrize(
    ("path", "corrupt", "check", "message"),
    [
        (
            "proxy/Caddyfile",
            lambda t: t.replace("\treverse_proxy", "\treverse_proxxy", 1),
            "caddy validate",
            "reverse_proxxy",
        ),
        (
            "prometheus/prometheus.yml",
            lambda t: t.replace("scrape_interval: 15s", "scrape_interval: often"),
            "promtool check config",
            "often",
        ),
        (
            "compose.yaml",
            lambda t: t.replace("restart: unless-stopped", "restarts: unless-stopped", 1),
            "compose config",
            "restarts",
        ),
        (
            "bin/torrust-backup",
            lambda t: t.replace("def prune(h: Host)", "def prune(h: Host"),
            "host scripts",
            "SyntaxError",
        ),
        ("tracker/tracker.toml", lambda t: t + "\n[extra]\nkey = 1\n", "tracker.toml schema", "unknown key 'extra'"),
        (
            "compose.yaml",
            lambda t: t.replace(
                "    networks:\n      - database\n",
                '    ports:\n      - "3306:3306"\n    networks:\n      - database\n',
            ),
            "compose policy",
            "mysql publishes 3306:3306",
        ),
    ],
    ids=["caddy", "promtool", "compose", "python", "toml", "policy"],
)
def test_each_validator_catches_a_broken_artifact(images, prod_release, path, corrupt, check, message):
    d, s = prod_release
    f = d / path
    mode = f.stat().st_mode
    f.write_text(corrupt(f.read_text()))
    f.chmod(mode)
    results = {c.name: c for c in validate(d, s, local())}
    assert results[check].status == FAILED, results[check]
    assert message in results[check].detail, results[check].detail
    others = [c for c in results.values() if c.name != check and c.status != OK]
    assert not others, others


def test_bad_settings_exit_2_and_write_nothing(cli, workdir):
    (workdir / ".env.prod").write_text("TORRUST_DB_DRIVER=postgres\nTORRUST_TRACKER_ADMIN_TOKEN=MyAccessToken\n")
    before = snapshot(workdir)
    for task in ("app.render", "app.validate", "app.settings"):
        res = cli(task, "--env", "prod", "--json")
        assert res.returncode == 2, (task, res.stderr)
        doc = json.loads(res.stdout)
        assert doc["ok"] is False and doc["code"] == 2
        assert any(p.startswith("TORRUST_DB_DRIVER = 'postgres' (.env.prod:1)") for p in doc["problems"])
        assert "MyAccessToken" not in res.stdout + res.stderr
        assert "Traceback" not in res.stderr
    assert snapshot(workdir) == before


def test_render_cli_writes_a_release(cli, workdir):
    res = cli("app.render", "--env", "local", "--json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    out = Path(doc["path"])
    assert out == workdir / ".torrust" / "local" / "release"
    assert (out / "release.json").is_file() and oct((out / ".env").stat().st_mode)[-3:] == "600"
    again = json.loads(cli("app.render", "--env", "local", "--json").stdout)
    assert again["content_sha256"] == doc["content_sha256"]
    foreign = workdir / "elsewhere"
    foreign.mkdir()
    (foreign / "keep").write_text("x")
    refused = cli("app.render", "--env", "local", "--out", str(foreign))
    assert refused.returncode == 2 and "not empty" in refused.stderr and (foreign / "keep").exists()


def test_config_cli_refuses_overwrite(cli, workdir):
    assert cli("app.config", "--env", "staging").returncode == 0
    before = (workdir / ".env.staging").read_bytes()
    res = cli("app.config", "--env", "staging")
    assert res.returncode == 2 and "already exists" in res.stderr
    assert (workdir / ".env.staging").read_bytes() == before
