"""The release cache: a no-op deploy may skip rendering only when every input is the same."""

from __future__ import annotations

import json
import stat

import pytest

from tasks.config.settings import load
from tasks.release import cache
from tasks.release import render as r
from tests.unit.config.test_settings import prod_env

ANOTHER_STRONG = "Wm3-Ka9Pz2Rt6Yb8Qn1Xs4Dv7Hc0Jf5E"


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def test_a_stored_render_is_found_again_with_the_same_inputs(workdir):
    s = load("prod", root=workdir, environ=prod_env())
    assert cache.lookup(s) is None
    release = r.render(s)
    cache.store(s, release.content_sha256, r.services(s))
    again = load("prod", root=workdir, environ=prod_env())
    assert cache.lookup(again) == (release.content_sha256, r.services(s))


@pytest.mark.parametrize(
    "change",
    [
        {"TORRUST_ANNOUNCE_INTERVAL": "300"},  # a plain setting
        {"TORRUST_MYSQL_PASSWORD": ANOTHER_STRONG},  # a secret: rendered into .env
    ],
)
def test_any_changed_setting_misses(workdir, change):
    s = load("prod", root=workdir, environ=prod_env())
    cache.store(s, r.render(s).content_sha256, r.services(s))
    assert cache.lookup(load("prod", root=workdir, environ=prod_env(**change))) is None


def test_another_environment_or_checkout_misses(workdir, tmp_path):
    s = load("prod", root=workdir, environ=prod_env())
    cache.store(s, r.render(s).content_sha256, r.services(s))
    assert cache.lookup(load("prod2", root=workdir, environ=prod_env())) is None
    other = tmp_path / "other"
    other.mkdir()
    assert cache.lookup(load("prod", root=other, environ=prod_env())) is None


def test_a_changed_template_misses(workdir, tmp_path, monkeypatch):
    app = tmp_path / "application"
    app.mkdir()
    (app / "compose.yaml.j2").write_text("services: {}\n")
    (tmp_path / "requirements.txt").write_text("jinja2==3.1.6\n")
    monkeypatch.setattr(cache, "ROOT", tmp_path)
    monkeypatch.setattr(cache, "PINS", tmp_path / "requirements.txt")
    monkeypatch.setattr(cache, "SOURCES", (app,))
    s = load("prod", root=workdir, environ=prod_env())
    cache.store(s, "a" * 64, ["tracker"])
    assert cache.lookup(s) == ("a" * 64, ["tracker"])
    (app / "compose.yaml.j2").write_text("services: {tracker: {}}\n")
    assert cache.lookup(s) is None
    (app / "compose.yaml.j2").write_text("services: {}\n")
    (tmp_path / "requirements.txt").write_text("jinja2==3.1.7\n")  # another Jinja2 may render otherwise
    assert cache.lookup(s) is None


def test_entries_hold_no_secret_and_are_private(workdir):
    s = load("prod", root=workdir, environ=prod_env())
    cache.store(s, r.render(s).content_sha256, r.services(s))
    (entry,) = [p for p in cache.cache_dir().iterdir() if not p.name.startswith(".")]
    text = entry.read_text()
    assert set(json.loads(text)) == {"content_sha256", "services"}
    for name in ("TORRUST_MYSQL_PASSWORD", "TORRUST_TRACKER_ADMIN_TOKEN"):
        assert s.raw[name] not in text and s.raw[name] not in entry.name
    assert stat.S_IMODE(entry.stat().st_mode) == 0o600
    assert stat.S_IMODE(cache.cache_dir().stat().st_mode) == 0o700


@pytest.mark.parametrize("garbage", ["", "{", '{"content_sha256": "short", "services": ["tracker"]}', "[]"])
def test_a_damaged_entry_is_a_miss(workdir, garbage):
    s = load("prod", root=workdir, environ=prod_env())
    cache.cache_dir().mkdir(parents=True)
    (cache.cache_dir() / cache.fingerprint(s)).write_text(garbage)
    assert cache.lookup(s) is None


def test_the_cache_keeps_a_bounded_number_of_entries(workdir, monkeypatch):
    monkeypatch.setattr(cache, "KEEP", 3)
    for interval in range(120, 126):
        s = load("prod", root=workdir, environ=prod_env(TORRUST_ANNOUNCE_INTERVAL=str(interval)))
        cache.store(s, "b" * 64, ["tracker"])
    assert len([p for p in cache.cache_dir().iterdir() if not p.name.startswith(".")]) == 3
    assert cache.lookup(s) == ("b" * 64, ["tracker"])  # the newest stays


def test_stores_from_several_threads_at_once(workdir):
    """A fleet rollout renders and stores from one thread per host: every entry lands whole
    and no temporary file is left (they once shared one name per process)."""
    import threading

    envs = [
        load("prod", root=workdir, environ={**prod_env(), "TORRUST_ANNOUNCE_INTERVAL": str(200 + i)}) for i in range(8)
    ]
    start = threading.Barrier(len(envs), timeout=10)

    def store(s):
        start.wait()
        for n in range(20):
            cache.store(s, f"{n:064x}", ["tracker", "proxy"])

    threads = [threading.Thread(target=store, args=(s,)) for s in envs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [cache.lookup(s) for s in envs] == [(f"{19:064x}", ["tracker", "proxy"])] * len(envs)
    assert sorted(p.name for p in cache.cache_dir().iterdir() if p.name.startswith(".")) == []
