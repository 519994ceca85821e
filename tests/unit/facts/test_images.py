"""tasks/facts/images.py: what image references resolve to on the host (recorded
`docker image inspect` outputs), and moved tags as `docker ps` shows them."""

from __future__ import annotations

import json

import pytest

from tasks.errors import MalformedFact
from tasks.facts import images
from tests.unit.facts.recorded import recorded
from tests.unit.operations.fake_target import FakeTarget

LOCAL = ["torrust-test/tracker-standin:1", "torrust-test/mariadb:10.11"]


def test_locally_built_images_have_no_repo_digest_and_record_their_id():
    facts = images.parse(recorded("images/local-two.txt"), LOCAL)
    tracker = facts["torrust-test/tracker-standin:1"]
    assert tracker.id == "sha256:eebfce81e6ee95c1b1674b0ee0b1cc2fe78fa07044badfae4112c133c8198aa9"
    assert tracker.digest == tracker.id and tracker.kind == "image-id" and tracker.repo_digests == ()
    assert facts["torrust-test/mariadb:10.11"].id.startswith("sha256:cea90cdacd83")


def test_the_repo_digest_of_the_references_repository_is_the_digest():
    fact = images.parse(recorded("images/repo-digests.txt"), ["caddy:2.8.4"])["caddy:2.8.4"]
    assert fact.kind == "repo-digest" and fact.digest == fact.repo_digests[0]
    mirrored = images.parse(recorded("images/repo-digests.txt"), ["registry.example.org:5000/mirror/caddy:2.8.4"])
    assert next(iter(mirrored.values())).digest == fact.repo_digests[1]
    # Docker names RepoDigests in the familiar form: a Docker Hub spelling of the reference
    # still picks the digest of its own repository, not the mirror's
    # (the mirror's listed first, so the fallback to the first digest would pick the wrong one)
    image_id, _, digests = recorded("images/repo-digests.txt").strip().partition("|")
    mirror_first = f"{image_id}|{json.dumps(list(reversed(json.loads(digests))))}\n"
    hub = images.parse(mirror_first, ["docker.io/library/caddy:2.8.4"])
    assert next(iter(hub.values())).digest == fact.repo_digests[0]


@pytest.mark.parametrize(
    ("name", "refs", "message"),
    [
        ("images/local-two.txt", ["a:1"], "printed 2 lines for 1 images"),
        ("images/hostile-id.txt", ["a:1"], "not an image record"),
        ("images/hostile-digest.txt", ["caddy:1"], "not name@sha256"),
    ],
)
def test_odd_or_hostile_output_is_refused(name, refs, message):
    with pytest.raises(MalformedFact, match=message):
        images.parse(recorded(name), refs)


@pytest.mark.parametrize(
    ("ref", "repo"),
    [
        ("caddy:2.8.4", "caddy"),
        ("registry.example.org:5000/a/b:v3", "registry.example.org:5000/a/b"),
        ("torrust/tracker@sha256:" + "a" * 64, "torrust/tracker"),
        ("registry.example.org:5000/a/b", "registry.example.org:5000/a/b"),
        ("docker.io/library/caddy:2.8.4", "caddy"),
        ("index.docker.io/caddy@sha256:" + "a" * 64, "caddy"),
        ("not a reference", "not a reference"),
    ],
)
def test_repository_of_a_reference(ref, repo):
    assert images.repository(ref) == repo


def test_docker_ps_shows_a_moved_tag_as_a_short_id():
    assert images.moved("14b8f791ed05") and images.moved("sha256:" + "a" * 64)
    assert not images.moved("torrust-test/tracker-standin:1") and not images.moved("")
    assert images.same_image("14b8f791ed05", "sha256:14b8f791ed05" + "0" * 52)
    assert not images.same_image("", "sha256:" + "0" * 64) and not images.same_image("abc", "sha256:def")


def test_resolve_is_one_round_trip_when_every_image_is_there():
    target = FakeTarget({"docker image": (0, recorded("images/local-two.txt"))})
    found, missing = images.resolve(target, LOCAL)
    assert sorted(found) == sorted(LOCAL) and missing == [] and target.calls == ["docker image"]


def test_resolve_names_the_missing_ones():
    lines = recorded("images/local-two.txt").splitlines()

    def answer(argv):
        if len(argv) > 6:
            return 1, lines[0]
        return (0, lines[1]) if argv[-1] == "torrust-test/mariadb:10.11" else (1, "")

    target = FakeTarget({"docker image": answer})
    found, missing = images.resolve(target, ["torrust-test/mariadb:10.11", "nope:1"])
    assert list(found) == ["torrust-test/mariadb:10.11"] and missing == ["nope:1"]
    assert target.calls == ["docker image"] * 3
