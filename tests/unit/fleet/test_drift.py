"""Drift (tasks/fleet/drift.py): each host against its own rendering, and image references
and digests against what most hosts run."""

from __future__ import annotations

from tasks.fleet import drift

A, B = "a" * 64, "b" * 64
IMAGES = {"tracker": "torrust/tracker:v3.0.0", "caddy": "caddy:2.8.4"}


def row(current="r1", content=A, expected=A, images=IMAGES, digests=None):
    return {
        "current": current,
        "content_sha256": content,
        "expected_sha256": expected,
        "images": images,
        "digests": digests,
    }


def test_every_host_in_step():
    assert drift.compare({"a": row(), "b": row(content=B, expected=B), "c": row()}) == {"a": [], "b": [], "c": []}


def test_a_host_behind_its_own_settings():
    assert drift.compare({"a": row(), "b": row(content=A, expected=B)}) == {"a": [], "b": ["content"]}


def test_the_odd_image_out_is_marked():
    odd = {**IMAGES, "tracker": "torrust/tracker:v3.1.0"}
    marks = drift.compare({"a": row(), "b": row(images=odd), "c": row()})
    assert marks == {"a": [], "b": ["image:tracker"], "c": []}


def test_a_tie_goes_to_the_host_listed_first():
    odd = {**IMAGES, "caddy": "caddy:2.9"}
    assert drift.compare({"a": row(images=odd), "b": row()}) == {"a": [], "b": ["image:caddy"]}


def test_digests_are_compared_when_read():
    same, moved = {"tracker": "sha256:" + "1" * 64}, {"tracker": "sha256:" + "2" * 64}
    marks = drift.compare({"a": row(digests=same), "b": row(digests=moved), "c": row(digests=same)})
    assert marks == {"a": [], "b": ["digest:tracker"], "c": []}


def test_nothing_deployed_and_several_marks():
    odd = {**IMAGES, "tracker": "torrust/tracker:develop"}
    marks = drift.compare(
        {"a": row(current=None, content=None, images={}), "b": row(content=B, images=odd), "c": row(), "d": row()}
    )
    assert marks == {"a": ["nothing deployed"], "b": ["content", "image:tracker"], "c": [], "d": []}


def test_a_service_only_one_host_runs_is_its_own_majority():
    extra = {**IMAGES, "grafana": "grafana/grafana:11.4.0"}
    assert drift.compare({"a": row(images=extra), "b": row()}) == {"a": [], "b": []}
