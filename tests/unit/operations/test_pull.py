"""A failed pull (tasks/operations/deploy.py `pull`, tasks/facts/images.py
`registry_unreachable`): a registry nobody can reach is named with the way to deploy
without one (the test images), a registry that refused the image is not.

Recorded outputs of `docker pull --quiet` (tests/unit/facts/recorded/images/pull-*.txt):
`pull-refused.txt` and `pull-answered-404.txt` were captured on this machine (a registry
port on 127.0.0.1 with nothing listening; a plain HTTP server on 127.0.0.1 answering 404);
the DNS, timeout and unknown-manifest ones are written in Docker's words (this machine
sends no traffic to a real registry)."""

from __future__ import annotations

import pytest

from tasks.errors import CommandFailed, DeployFailed, ExitCode
from tasks.facts import images
from tasks.operations import deploy as d
from tests.unit.facts.recorded import recorded
from tests.unit.operations.fake_target import FakeTarget, key_of
from tests.unit.operations.test_deploy import FIRST, answers, candidate, opts, settings, step  # noqa: F401

UNREACHABLE = ("pull-refused.txt", "pull-no-such-host.txt", "pull-timeout.txt")
PROXY_IMAGE = "torrust-test/caddy:2.6"  # RECORDED_STACK of test_deploy
ANSWERED = ("pull-manifest-unknown.txt", "pull-answered-404.txt")


@pytest.mark.parametrize("name", UNREACHABLE)
def test_a_registry_nobody_reaches_is_recognised(name):
    assert images.registry_unreachable(recorded(f"images/{name}"))


@pytest.mark.parametrize("name", ANSWERED)
def test_a_registry_that_answered_is_not_unreachable(name):
    assert not images.registry_unreachable(recorded(f"images/{name}"))


class PullFails(FakeTarget):
    """The fake target, but a failing `docker pull` fails the way the real executor
    reports it: the command, its exit status and the tail of its output."""

    def __init__(self, answers, pull_output: str):
        super().__init__(answers)
        self.pull_output = pull_output

    def run(self, argv, *, timeout=None, check=True, stdin=None, cwd=None):
        if key_of(list(argv)) != "docker pull":
            return super().run(argv, timeout=timeout, check=check, stdin=stdin, cwd=cwd)
        self.calls.append("docker pull")
        self.argvs.append(list(argv))
        raise CommandFailed(
            f"fake-host: `{' '.join(argv)}` exited with 1\n    {self.pull_output.strip()}",
            exit_status=1,
            output=self.pull_output,
        )


def first_deploy_without_the_proxy_image(settings, candidate, pull_output: str):  # noqa: F811
    """A first deploy on a host that lacks the proxy's image, whose pull fails."""
    absent = PROXY_IMAGE

    def inspect(argv):
        refs = argv[5:]
        if absent in refs:
            return 1, ""
        return 0, "".join(f"sha256:{'a' * 64}|[]\n" for _ in refs)

    target = PullFails(answers(FIRST, **{"docker image": inspect}, rm=(0, "")), pull_output)
    with pytest.raises(DeployFailed) as info:
        d.deploy(target, settings, candidate, opts(), step)
    return target, info.value


def test_no_registry_the_deploy_says_how_to_deploy_without_one(settings, candidate):  # noqa: F811
    target, err = first_deploy_without_the_proxy_image(settings, candidate, recorded("images/pull-no-such-host.txt"))
    assert err.code == ExitCode.DEPLOY_FAILED == 30
    assert ["docker", "pull", "--quiet", PROXY_IMAGE] in target.argvs
    assert "switch" not in target.calls and "compose up" not in target.calls  # nothing started
    assert "no such host" in err.message  # Docker's own words stay in the message
    assert "the running release was not touched" in err.hint
    assert f"no container registry could be reached from the target to pull {PROXY_IMAGE}" in err.hint
    assert "./tasks.py test.images && cp tests/images/images.env .env.local" in err.hint
    assert "test stand-ins, never for production" in err.hint


def test_a_registry_that_refused_the_image_gets_no_test_image_hint(settings, candidate):  # noqa: F811
    _, err = first_deploy_without_the_proxy_image(settings, candidate, recorded("images/pull-manifest-unknown.txt"))
    assert err.code == ExitCode.DEPLOY_FAILED
    assert "manifest unknown" in err.message
    assert "test.images" not in err.hint and "check the image reference and the registry" in err.hint
