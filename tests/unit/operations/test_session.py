"""One environment's deploy from start to end (tasks/operations/session.py): the release
cache or a render, one connection (the strict fake target stands in for it), the
transaction or its dry run, every connection closed."""

from __future__ import annotations

import contextlib

import pytest

from tasks.config.settings import load
from tasks.errors import ConnectionFailed
from tasks.operations import session
from tasks.release import cache
from tasks.release import render as r
from tests.unit.operations.fake_target import FakeTarget
from tests.unit.operations.test_deploy import RUNNING, RUNNING_SHA


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


@pytest.fixture
def settings(workdir):
    return load("local", root=workdir, environ={})


class Steps:
    def __init__(self):
        self.titles: list[str] = []

    def __call__(self, title):
        self.titles.append(title)
        return contextlib.nullcontext()


class Closing(FakeTarget):
    """The fake target, counted as a remote connection that must be closed."""

    closed = 0

    @property
    def remote(self) -> bool:
        return True

    def __init__(self, answers):
        super().__init__(answers)
        self.ctx.close = self._close

    def _close(self):
        Closing.closed += 1


def test_an_unknown_input_is_rendered_and_remembered(settings):
    steps = Steps()
    chosen = session.candidate(settings, steps)
    assert chosen.rendered and steps.titles == ["render release for 'local'"]
    assert cache.lookup(settings) == (chosen.content_sha256, r.services(settings))


def test_a_known_input_is_not_rendered(settings):
    cache.store(settings, RUNNING_SHA, ["tracker", "proxy"])
    steps = Steps()
    chosen = session.candidate(settings, steps)
    assert not chosen.rendered and steps.titles == [] and chosen.content_sha256 == RUNNING_SHA


def test_expected_content_is_what_a_deploy_would_ship(settings):
    expected = r.render(settings).content_sha256
    assert session.expected_content(settings) == expected  # rendered
    assert session.expected_content(settings) == expected  # then from the cache


def test_a_deploy_that_finds_its_release_running_changes_nothing_and_closes(settings, monkeypatch):
    cache.store(settings, RUNNING_SHA, ["tracker", "proxy"])
    target = Closing({"snapshot": (0, RUNNING.replace("RECORDED no", "RECORDED yes"))})
    opened = []
    monkeypatch.setattr(session, "connect_executor", lambda s, **kw: opened.append(kw) or target)
    Closing.closed = 0
    steps = Steps()
    out = session.deploy(settings, session.DeployRequest(accept_new_host_key=True), steps)
    assert out["status"] == "unchanged" and target.calls == ["snapshot"]
    assert steps.titles == ["connect to the 'local' target", "compare with the running release"]
    assert opened == [{"accept_new_host_key": True}] and Closing.closed == 1


def test_a_failed_connection_is_the_deploy_error(settings, monkeypatch):
    def refuse(s, **kw):
        raise ConnectionFailed("cannot connect to torrust@192.0.2.1 after 4 attempts")

    monkeypatch.setattr(session, "connect_executor", refuse)
    with pytest.raises(ConnectionFailed):
        session.deploy(settings, session.DeployRequest(), Steps())


def test_the_look_after_runs_on_the_deploys_connection_and_adds_to_the_result(settings, monkeypatch):
    cache.store(settings, RUNNING_SHA, ["tracker", "proxy"])
    target = Closing({"snapshot": (0, RUNNING.replace("RECORDED no", "RECORDED yes"))})
    monkeypatch.setattr(session, "connect_executor", lambda s, **kw: target)
    seen = []

    def after(ex, s, result, step):
        seen.append((ex, s.env, result["status"]))
        return {"network": []}

    def certificates(s, started):
        seen.append(("certificates for", s.env))
        return None  # no TLS: no wait

    out = session.deploy(settings, session.DeployRequest(after=after, certificates=certificates), Steps())
    assert out["network"] == [] and out["status"] == "unchanged"
    assert seen == [("certificates for", "local"), (target, "local", "unchanged")]
