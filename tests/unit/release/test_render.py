"""Rendering: complete, deterministic, secrets only where needed, policy as designed."""

from __future__ import annotations

import stat
import tomllib
from pathlib import Path

import jinja2
import pytest
import yaml

from tasks.config.settings import load
from tasks.errors import ConfigError, ToolError
from tasks.release import render as r
from tasks.release.validate import policy_problems, tracker_toml_problems
from tests.conftest import snapshot
from tests.unit.config.test_settings import STRONG, STRONG2, STRONG3, prod_env


@pytest.fixture
def prod(workdir):
    return load("prod", root=workdir, environ=prod_env())


@pytest.fixture
def local(workdir):
    return load("local", root=workdir, environ={})


def test_rendering_is_deterministic(prod, tmp_path):
    a, b = r.render(prod), r.render(prod)
    assert a == b and a.content_sha256 == b.content_sha256
    r.write(a, tmp_path / "one")
    r.write(b, tmp_path / "two")
    assert snapshot(tmp_path / "one") == snapshot(tmp_path / "two")


def test_a_changed_setting_changes_the_hash_and_only_that_service_label(workdir):
    one = r.render(load("prod", root=workdir, environ=prod_env()))
    two = r.render(load("prod", root=workdir, environ=prod_env(TORRUST_ANNOUNCE_INTERVAL="300")))
    assert one.content_sha256 != two.content_sha256
    labels = [
        {
            n: s.get("labels", {}).get("org.torrust.config-sha256")
            for n, s in yaml.safe_load(x.file("compose.yaml").content)["services"].items()
        }
        for x in (one, two)
    ]
    changed = {n for n in labels[0] if labels[0][n] != labels[1][n]}
    assert changed == {"tracker"}


def test_production_release_has_every_artifact(prod):
    rel = r.render(prod)
    assert set(rel.paths) == {
        ".env",
        "compose.yaml",
        "tracker/tracker.toml",
        "proxy/Caddyfile",
        "prometheus/prometheus.yml",
        "grafana/provisioning/datasources/prometheus.yml",
        "grafana/provisioning/dashboards/torrust.yml",
        "grafana/dashboards/stats.json",
        "grafana/dashboards/metrics.json",
        "bin/torrust-backup",
        "bin/backup.conf",
        "cron/torrust-backup",
        "release.json",
    }
    assert rel.file(".env").mode == 0o600
    prom = rel.file("prometheus/prometheus.yml")  # Prometheus (nobody:nogroup) reads it through its group
    assert prom.mode == 0o640 and prom.group == 65534 and prom.secret
    assert rel.file("bin/torrust-backup").mode == 0o755


def test_local_release_has_no_monitoring_or_database_service(local):
    rel = r.render(local)
    services = yaml.safe_load(rel.file("compose.yaml").content)["services"]
    assert sorted(services) == ["proxy", "tracker"]
    assert "prometheus/prometheus.yml" not in rel.paths


def test_secrets_only_in_secret_files(prod):
    rel = r.render(prod)
    for f in rel.files:
        holds = any(x.encode() in f.content for x in (STRONG, STRONG2, STRONG3, STRONG[::-1]))
        assert holds == f.secret, f.path
    assert STRONG.encode() in rel.file("prometheus/prometheus.yml").content  # one source for the token
    assert STRONG.encode() in rel.file(".env").content


def test_tracker_toml_uses_schema_keys_and_settings(prod):
    text = r.render(prod).file("tracker/tracker.toml").content.decode()
    assert tracker_toml_problems(text) == []
    data = tomllib.loads(text)
    assert data["core"]["net"]["on_reverse_proxy"] is True
    assert data["core"]["database"] == {"driver": "mysql"}  # the URL comes from the override
    assert [u["bind_address"] for u in data["udp_trackers"]] == ["[::]:6969"]
    assert data["health_check_api"]["bind_address"] == "127.0.0.1:1313"


def test_compose_wires_secrets_through_tracker_overrides(prod):
    rel = r.render(prod)
    tracker = yaml.safe_load(rel.file("compose.yaml").content)["services"]["tracker"]
    env = tracker["environment"]
    assert env["TORRUST_TRACKER_CONFIG_OVERRIDE_HTTP_API__ACCESS_TOKENS__ADMIN"].startswith("${TRACKER_ADMIN_TOKEN")
    assert env["TORRUST_TRACKER_CONFIG_OVERRIDE_CORE__DATABASE__PATH"].startswith("${TRACKER_DATABASE_URL")
    assert tracker["depends_on"] == {"mysql": {"condition": "service_healthy"}}


def test_mysql_url_percent_encodes_the_password(workdir):
    pw = "Pa:ss/w@rd#Q9x-Lm2Zk7Yb4"
    s = load("prod", root=workdir, environ=prod_env(TORRUST_MYSQL_PASSWORD=pw))
    env = r.render(s).file(".env").content.decode()
    assert "TRACKER_DATABASE_URL='mysql://torrust:Pa%3Ass%2Fw%40rd%23Q9x-Lm2Zk7Yb4@mysql:3306/torrust_tracker'" in env


def test_publishing_policy_holds_for_both_profiles(prod, local):
    for s in (prod, local):
        assert policy_problems(r.render(s).file("compose.yaml").content.decode(), s) == []
    ports = yaml.safe_load(r.render(prod).file("compose.yaml").content)["services"]
    assert ports["prometheus"]["ports"] == ["127.0.0.1:9090:9090"]
    assert "ports" not in ports["mysql"] and "ports" not in ports["grafana"]


def test_policy_check_catches_a_published_database(prod):
    model = yaml.safe_load(r.render(prod).file("compose.yaml").content)
    model["services"]["mysql"]["ports"] = ["3306:3306"]
    model["services"]["grafana"]["networks"].append("database")
    problems = policy_problems(yaml.safe_dump(model), prod)
    assert any("mysql publishes 3306:3306" in p for p in problems)
    assert any("database network is shared" in p for p in problems)


def test_tracker_schema_check_catches_unknown_keys():
    problems = tracker_toml_problems(
        '[metadata]\nschema_version = "2.0.0"\n[core]\nfoo = 1\n[core.database]\ndriver = "x"\n'
    )
    assert "unknown key 'core.foo' (not in schema 2.0.0 of v3.0.0)" in problems
    assert "core.database.driver = 'x': allowed sqlite3, mysql" in problems
    assert "mandatory option logging.threshold is missing (release v3.0.0 refuses to start)" in problems


def test_caddy_sites_follow_tls_settings(prod, local):
    tls = r.render(prod).file("proxy/Caddyfile").content.decode()
    assert "email ops@torrust-demo.net" in tls and "\ntracker.torrust-demo.net {" in tls and "tls internal" not in tls
    assert "reverse_proxy tracker:7070" in tls and "X-Forwarded-For" in tls
    plain = r.render(local).file("proxy/Caddyfile").content.decode()
    assert "auto_https off" in plain and "\nhttp://tracker.torrust.local {" in plain


def test_internal_ca_for_local_names(workdir):
    s = load("local", root=workdir, environ={"TORRUST_TLS": "true"})
    caddy = r.render(s).file("proxy/Caddyfile").content.decode()
    assert caddy.count("tls internal") == 2


def test_staging_acme(workdir):
    s = load("prod", root=workdir, environ=prod_env(TORRUST_ACME_STAGING="true"))
    assert "acme-staging-v02" in r.render(s).file("proxy/Caddyfile").content.decode()


def test_undefined_template_variable_is_an_error():
    env = r.environment()
    with pytest.raises(jinja2.UndefinedError):
        env.from_string("{{ nope }}").render({})


def test_write_is_atomic_and_refuses_foreign_directories(local, tmp_path):
    rel = r.render(local)
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(ToolError, match="not empty"):
        r.write(rel, foreign)
    with pytest.raises(ToolError, match=r"holds no release\.json"):
        r.write(rel, foreign, replace=True)
    assert (foreign / "notes.txt").read_text() == "keep me"
    out = r.write(rel, tmp_path / "out")
    assert stat.S_IMODE((out / ".env").stat().st_mode) == 0o600
    r.write(rel, out, replace=True)  # a previous rendering may be replaced
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp dirs left


def test_cron_and_backup_conf(prod):
    rel = r.render(prod)
    cron = rel.file("cron/torrust-backup").content.decode()
    assert "0 3 * * * torrust /opt/torrust/current/bin/torrust-backup" in cron
    conf = rel.file("bin/backup.conf").content.decode()
    assert "TORRUST_DB_DRIVER=mysql" in conf and STRONG3 not in conf


@pytest.mark.parametrize("where", ["/proc/torrust-release", "a-file/release"])
def test_an_unwritable_out_is_a_named_error_and_leaves_nothing(local, tmp_path, where):
    """Issue 11: `app.render --out` under /proc or below a file was a traceback."""
    (tmp_path / "a-file").write_text("x")
    out = Path(where) if where.startswith("/") else tmp_path / where
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(ConfigError, match=f"cannot write the release to {out}"):
        r.write(r.render(local), out)
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_no_plain_digest_of_a_secret_file_is_published(prod):
    """Issue 11, finding 9: release.json (world-readable) and the compose labels carried the
    plain SHA-256 of .env and prometheus.yml, an offline oracle for guessing a weak secret."""
    import hashlib
    import json

    release = r.render(prod)
    public = release.file("release.json").content.decode() + release.file("compose.yaml").content.decode()
    for f in release.files:
        if f.secret:
            plain = hashlib.sha256(f.content).hexdigest()
            assert plain not in public, f.path
            assert f.sha256 in public  # the keyed digest is what is recorded
    entries = {e["path"]: e for e in json.loads(release.file("release.json").content)["files"]}
    assert entries[".env"]["secret"] and entries["prometheus/prometheus.yml"]["secret"]


def test_the_keyed_digest_follows_the_secrets(workdir):
    a = r.render(load("prod", root=workdir, environ=prod_env()))
    b = r.render(load("prod", root=workdir, environ=prod_env(TORRUST_GRAFANA_ADMIN_PASSWORD=STRONG3[::-1])))
    assert a.file(".env").sha256 != b.file(".env").sha256
    assert a.file("tracker/tracker.toml").sha256 == b.file("tracker/tracker.toml").sha256


def test_a_secret_files_digest_changes_only_with_the_secrets_it_holds(workdir):
    """Rotating the admin token must not recreate a service whose files do not hold it."""
    env = prod_env(TORRUST_TRACKER_IMAGE="torrust/tracker:v3.0.0", TORRUST_GRAFANA="false")
    a = r.render(load("prod", root=workdir, environ=env))
    b = r.render(load("prod", root=workdir, environ={**env, "TORRUST_TRACKER_ADMIN_TOKEN": STRONG3[::-1]}))
    assert a.file(".env").sha256 != b.file(".env").sha256
    assert a.file("prometheus/prometheus.yml").sha256 == b.file("prometheus/prometheus.yml").sha256
