"""Image references, parsed once (tasks/config/kinds.py `image_ref`): the settings kind,
the tracker release lookup, the Caddy account-race rule and the digest records use it."""

from __future__ import annotations

import pytest

from tasks.config.kinds import ImageRef, image_ref

DIGEST = "sha256:" + "c" * 64


@pytest.mark.parametrize(
    ("value", "parts", "repository"),
    [
        ("caddy:2.10.2", ("caddy", "2.10.2", None), "caddy"),
        ("library/caddy:2.8.4", ("library/caddy", "2.8.4", None), "caddy"),
        ("docker.io/caddy:2.8.4", ("docker.io/caddy", "2.8.4", None), "caddy"),
        ("docker.io/library/caddy:2.8.4", ("docker.io/library/caddy", "2.8.4", None), "caddy"),
        ("index.docker.io/library/caddy:2.8.4", ("index.docker.io/library/caddy", "2.8.4", None), "caddy"),
        ("registry-1.docker.io/library/caddy:2.8.4", ("registry-1.docker.io/library/caddy", "2.8.4", None), "caddy"),
        (f"caddy:2.10.2@{DIGEST}", ("caddy", "2.10.2", DIGEST), "caddy"),
        (f"torrust/tracker@{DIGEST}", ("torrust/tracker", None, DIGEST), "torrust/tracker"),
        ("docker.io/torrust/tracker:v3.0.0", ("docker.io/torrust/tracker", "v3.0.0", None), "torrust/tracker"),
        # another registry's names are kept whole, its `library/` and port included
        (
            "registry.example.org:5000/library/caddy:2.8.4",
            ("registry.example.org:5000/library/caddy", "2.8.4", None),
            "registry.example.org:5000/library/caddy",
        ),
        ("localhost/caddy:2.8.4", ("localhost/caddy", "2.8.4", None), "localhost/caddy"),
        # `library/` is a namespace only directly under Docker Hub, for a one-part name
        ("library/a/b:1", ("library/a/b", "1", None), "library/a/b"),
        ("my/caddy:2.6", ("my/caddy", "2.6", None), "my/caddy"),
    ],
)
def test_an_image_reference_splits_as_docker_splits_it(value, parts, repository):
    ref = image_ref(value)
    assert ref == ImageRef(*parts)
    assert ref.repository == repository


@pytest.mark.parametrize(
    "value",
    ["", "MySQL 8", "Caddy:2.8.4", "caddy:", "caddy@sha256:short", "caddy:2.8.4 ; rm -rf /", "caddy:-x", "/caddy:1"],
)
def test_what_is_not_an_image_reference_parses_to_none(value):
    assert image_ref(value) is None
