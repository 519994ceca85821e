"""The table of tracker releases: lookup of image references, capabilities, combinations,
and what rendering makes of them (tasks/config/trackers.py)."""

from __future__ import annotations

import dataclasses
import tomllib

import pytest
import yaml

from tasks.config import trackers as t
from tasks.config.settings import load
from tasks.errors import ConfigError, SettingsError
from tasks.release import render as r
from tasks.release.validate import _release_check, tracker_toml_problems
from tests.unit.config.test_settings import DEVELOP_IMAGE, prod_env

V3 = "torrust/tracker:v3.0.0"
HYDRANOS = "torrust/tracker@sha256:5801a73010692b820da0d33ecd5505922a41b4c9df3060c89de100bcaa89aa68"
DIGEST = "sha256:" + "ab" * 32


# ---------------------------------------------------------------------------- lookup
@pytest.mark.parametrize(
    ("image", "key", "how"),
    [
        (V3, "v3.0.0", "image"),
        ("docker.io/torrust/tracker:v3.0.0", "v3.0.0", "image"),
        ("index.docker.io/torrust/tracker:v3.0.0", "v3.0.0", "image"),
        (f"torrust/tracker:v3.0.0@{DIGEST}", "v3.0.0", "image"),  # the tag names it, the digest pins it
        ("registry.example:5000/torrust/tracker:v3.0.0", "v3.0.0", "registry copy"),
        ("localhost:5999/torrust/tracker:v3.0.0", "v3.0.0", "registry copy"),
        ("torrust-test/tracker-standin:v3.0.0", "v3.0.0", "standin"),
        (DEVELOP_IMAGE, "develop-02c33f69", "standin"),
    ],
)
def test_known_references_resolve_to_their_release(image, key, how):
    found = t.resolve(image)
    assert (found.release.key, found.how, found.warning) == (key, how, "")


@pytest.mark.parametrize(
    ("image", "words"),
    [
        ("torrust/tracker:develop", ["not a known tracker release", "the tag 'develop' moves: pin a digest"]),
        (f"torrust/tracker@{DIGEST}", ["not a known tracker release"]),
        ("ghcr.io/someone/tracker:v3.0.0", ["not a known tracker release"]),
        ("ghcr.io/x/torrust/tracker:v3.0.0", ["not a known tracker release"]),  # another repository
        ("torrust/tracker:v3.0.1", ["not a known tracker release"]),
        ("torrust-test/tracker-standin:1", ["not a known tracker release"]),
    ],
)
def test_an_unknown_reference_is_refused_outside_local(image, words):
    with pytest.raises(ConfigError) as err:
        t.resolve(image, local=False)
    for w in words:
        assert w in err.value.message
    assert "v3.0.0" in err.value.hint and "torrust/tracker:v3.0.0" in err.value.hint
    assert "name its release with TORRUST_TRACKER_RELEASE" in err.value.hint


def test_an_unknown_reference_in_local_assumes_the_most_limited_release_and_says_so():
    found = t.resolve("ghcr.io/someone/tracker:main", local=True)
    assert found.release is t.BASELINE and found.how == "assumed"
    assert "not a known release" in found.warning and "no Prometheus endpoint" in found.warning


def test_a_known_unsupported_digest_is_refused_even_in_local():
    with pytest.raises(ConfigError) as err:
        t.resolve(HYDRANOS, local=True)
    assert "is not supported" in err.value.message and "schema 3.0.0" in err.value.message
    assert "Hydranos" in err.value.message  # where that digest was seen


def test_a_named_profile_selects_a_release_for_an_unlisted_digest():
    found = t.resolve(f"torrust/tracker@{DIGEST}", profile="develop-02c33f69")
    assert (found.release, found.how) == (t.DEVELOP, "profile")
    with pytest.raises(ConfigError, match="is not a supported release"):
        t.resolve(f"torrust/tracker@{DIGEST}", profile="v9")
    with pytest.raises(ConfigError, match=r"is release v3\.0\.0, but"):
        t.resolve(V3, profile="develop-02c33f69")


def test_not_an_image_reference():
    with pytest.raises(ConfigError, match="not an image reference"):
        t.normalise("torrust/tracker@sha256:short")


# ---------------------------------------------------------------------- capabilities
def test_v3_capabilities_match_its_source():
    v3 = t.V3_0_0
    assert (v3.stats_route, v3.stats_formats, v3.metrics_route, v3.token_auth) == (
        "/api/v1/stats",
        ("json",),
        None,
        t.QUERY,
    )
    assert v3.scrape_jobs == () and not v3.has_metrics and t.dashboards(v3) == ()
    assert v3.tables == ("whitelist", "torrents", "keys")
    assert v3.mandatory_options == ("metadata.schema_version", "logging.threshold", "core.private", "core.listed")
    assert v3.enum("logging.threshold") == ("off", "error", "warn", "info", "debug", "trace")
    assert not v3.udp_in_private_mode
    assert "850e95e357d6e4bc9d4237392165a8e4b6b2fbb6" in v3.source


def test_develop_capabilities():
    dev = t.DEVELOP
    assert [(j.name, j.path, j.params) for j in dev.scrape_jobs] == [
        ("tracker_stats", "/api/v1/stats", (("format", "prometheus"),)),
        ("tracker_metrics", "/api/v1/metrics", (("format", "prometheus"),)),
    ]
    assert dev.header_token and t.dashboards(dev) == ("stats.json", "metrics.json")
    assert "torrent_aggregate_metrics" in dev.tables
    assert dev.images == ()  # no published digest: a digest-pinned image names the profile


def _choice(**over) -> t.StackChoice:
    base = dict(prometheus=True, grafana=True, private=False, listed=False, log_level="info", udp_trackers=1)
    return t.StackChoice(**{**base, **over})


def test_grafana_without_metrics_cannot_work():
    problems = t.problems(t.V3_0_0, _choice())
    assert len(problems) == 1 and problems[0].startswith("TORRUST_GRAFANA=true: tracker release v3.0.0 has no")
    assert "develop-02c33f69" in problems[0]  # the way out
    assert t.problems(t.DEVELOP, _choice()) == []
    assert t.problems(t.V3_0_0, _choice(grafana=False)) == []


def test_prometheus_without_metrics_and_udp_in_private_mode_are_said_not_refused():
    said = t.notes(t.V3_0_0, _choice(grafana=False, private=True))
    assert said == [
        "Prometheus runs without tracker metrics: release v3.0.0 has no Prometheus endpoint",
        "release v3.0.0 does not start UDP trackers in private mode: only the HTTP trackers serve",
    ]
    assert t.notes(t.DEVELOP, _choice()) == []


# ------------------------------------------------------------------------- rendering
def _render(workdir, env: str = "prod", **over):
    return r.render(load(env, root=workdir, environ=prod_env(**over) if env == "prod" else over))


def test_v3_stack_renders_no_tracker_scrape_job_and_says_why(workdir):
    rel = _render(workdir, TORRUST_TRACKER_IMAGE=V3, TORRUST_GRAFANA="false")
    text = rel.file("prometheus/prometheus.yml").content.decode()
    assert yaml.safe_load(text)["scrape_configs"] == []
    assert "has no Prometheus endpoint" in text and "token" not in yaml.safe_dump(yaml.safe_load(text))
    assert not [p for p in rel.paths if p.startswith("grafana/")]


def test_develop_stack_scrapes_with_the_token_in_a_header(workdir):
    rel = _render(workdir)
    jobs = yaml.safe_load(rel.file("prometheus/prometheus.yml").content)["scrape_configs"]
    assert [j["job_name"] for j in jobs] == ["tracker_stats", "tracker_metrics"]
    for job in jobs:
        assert job["authorization"] == {"type": "Bearer", "credentials": prod_env()["TORRUST_TRACKER_ADMIN_TOKEN"]}
        assert job["params"] == {"format": ["prometheus"]}  # no token in the URL
    assert {"grafana/dashboards/stats.json", "grafana/dashboards/metrics.json"} <= set(rel.paths)


def test_grafana_on_a_release_without_metrics_is_refused_with_the_settings(workdir):
    """Refused when the settings load (app.settings says so too, with where the value came
    from), so nothing is ever rendered; render refuses on its own as well."""
    with pytest.raises(SettingsError) as err:
        _render(workdir, TORRUST_TRACKER_IMAGE=V3)
    (problem,) = err.value.problems
    assert problem.startswith("TORRUST_GRAFANA = 'true' (environment): TORRUST_GRAFANA=true: tracker release v3.0.0")
    s = load("prod", root=workdir, environ=prod_env())
    with pytest.raises(ConfigError) as err:
        t.require_workable(t.V3_0_0, t.choice_of(s))
    assert err.value.hint == "nothing was rendered or changed"


def test_the_release_setting_names_an_unlisted_digest(workdir):
    s = load(
        "prod",
        root=workdir,
        environ=prod_env(TORRUST_TRACKER_IMAGE=f"torrust/tracker@{DIGEST}", TORRUST_TRACKER_RELEASE="develop-02c33f69"),
    )
    assert t.release_of(s).release is t.DEVELOP
    with pytest.raises(SettingsError) as err:
        load("prod", root=workdir, environ=prod_env(TORRUST_TRACKER_IMAGE=f"torrust/tracker@{DIGEST}"))
    assert err.value.problems[0].startswith("TORRUST_TRACKER_IMAGE = ")
    with pytest.raises(SettingsError) as err:
        load("prod", root=workdir, environ=prod_env(TORRUST_TRACKER_RELEASE="v9"))
    assert (
        "TORRUST_TRACKER_RELEASE = 'v9'" in err.value.problems[0] and "not one of the allowed" in err.value.problems[0]
    )


def test_tracker_toml_private_mode_table_only_when_private(workdir):
    public = tomllib.loads(_render(workdir, "local").file("tracker/tracker.toml").content.decode())
    private = tomllib.loads(
        _render(workdir, "local", TORRUST_TRACKER_PRIVATE="true").file("tracker/tracker.toml").content.decode()
    )
    assert "private_mode" not in public["core"]
    assert private["core"]["private"] is True and private["core"]["private_mode"] == {"check_keys_expiration": True}
    for data in (public, private):
        assert data["metadata"] == {"app": "torrust-tracker", "purpose": "configuration", "schema_version": "2.0.0"}


def test_tracker_toml_is_what_each_release_loads(workdir):
    for image in (V3, DEVELOP_IMAGE):
        for extra in ({}, {"TORRUST_TRACKER_PRIVATE": "true", "TORRUST_TRACKER_LISTED": "true"}):
            s = load("local", root=workdir, environ={"TORRUST_TRACKER_IMAGE": image, **extra})
            text = r.render(s).file("tracker/tracker.toml").content.decode()
            assert tracker_toml_problems(text, t.release_of(s).release) == [], (image, extra)


def test_loader_rules_catch_what_the_release_refuses():
    good = (
        '[metadata]\nschema_version = "2.0.0"\n[logging]\nthreshold = "info"\n[core]\nlisted = false\nprivate = false\n'
    )
    assert tracker_toml_problems(good) == []
    assert tracker_toml_problems(good.replace('"info"', '"verbose"')) == [
        "logging.threshold = 'verbose': allowed off, error, warn, info, debug, trace"
    ]
    assert tracker_toml_problems(good + "[core.private_mode]\ncheck_keys_expiration = true\n") == [
        "[core.private_mode] without core.private = true (the tracker refuses it)"
    ]
    assert tracker_toml_problems(good.replace("listed = false\n", "")) == [
        "mandatory option core.listed is missing (release v3.0.0 refuses to start)"
    ]
    develop_key = good + "[core.announce_policy]\nmax_peers_per_announce = 10\n"
    assert tracker_toml_problems(develop_key, t.DEVELOP) == []
    assert tracker_toml_problems(develop_key) == [
        "unknown key 'core.announce_policy.max_peers_per_announce' (not in schema 2.0.0 of v3.0.0)"
    ]


def test_validate_reports_the_release_and_refuses_an_impossible_combination(workdir):
    ok = _release_check(load("local", root=workdir, environ={"TORRUST_PROMETHEUS": "true"}))
    assert ok == (
        "ok",
        "v3.0.0 (image): scrape jobs none; token query; "
        "Prometheus runs without tracker metrics: release v3.0.0 has no Prometheus endpoint",
    )
    good = load("prod", root=workdir, environ=prod_env())
    bad = _release_check(dataclasses.replace(good, images={**good.images, "tracker": V3}))
    assert bad[0] == "failed" and bad[1].startswith("TORRUST_GRAFANA=true: tracker release v3.0.0")
    unknown = _release_check(dataclasses.replace(good, images={**good.images, "tracker": "x/y:1"}))
    assert unknown == ("failed", "tracker image x/y:1 is not a known tracker release")
