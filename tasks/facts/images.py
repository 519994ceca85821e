"""Which of a release's images the target lacks."""

from __future__ import annotations

from tasks.commands import docker
from tasks.runner.executor import Executor


def missing(ex: Executor, images: list[str]) -> list[str]:
    if not images or ex.run(docker.images_present(images), check=False).ok:
        return []  # all present: one round trip
    return [img for img in images if not ex.run(docker.image_present(img), check=False).ok]
