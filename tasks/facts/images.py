"""Images on the target: which of a release's images it lacks, and what each reference
resolves to there (its image ID and registry digests), read after the pull.

`docker image inspect` prints one line per image found, in the order asked; a reference
the host does not have prints nothing (and the command fails). Digests:

- `RepoDigests` (`name@sha256:...`) name the image as the registry serves it: the
  digest to pin a release to. A locally built or imported image has none (the test
  images are such), and then the image ID (`sha256:...` of its configuration) is the
  record: it identifies the content on that host but is no registry digest. `digest`
  says which one a record holds.
- `docker ps` shows a container's image as the reference it was created from while
  that reference still resolves to the container's image, and as the short image ID once
  the reference points elsewhere (a mutable tag moved, e.g. `develop` after a pull):
  `moved()` reads that (tasks/facts/services.py keeps the field), at no extra cost.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from tasks.commands import docker
from tasks.config.kinds import image_ref
from tasks.errors import MalformedFact
from tasks.runner.executor import Executor

ID_RE = re.compile(r"sha256:[0-9a-f]{64}")
SHORT_ID_RE = re.compile(r"(?:sha256:)?[0-9a-f]{12,64}")
REPO_DIGEST_RE = re.compile(r"[a-z0-9][a-z0-9._/:-]{0,254}@sha256:[0-9a-f]{64}")
FORMAT = "{{.Id}}|{{json .RepoDigests}}"
# Docker's words when the daemon could not reach a registry at all (no DNS, no route, a
# firewall or proxy in the way), as opposed to a registry that answered and refused
# (an unknown tag: "manifest unknown"; "pull access denied").
UNREACHABLE_RE = re.compile(
    r"no such host|server misbehaving|temporary failure in name resolution|network is unreachable"
    r"|no route to host|i/o timeout|TLS handshake timeout|Client\.Timeout exceeded|connection refused",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class ImageFact:
    ref: str  # the reference the release names (NAME:TAG or NAME@sha256:...)
    id: str  # sha256:<64 hex>, the image ID on this host
    repo_digests: tuple[str, ...] = ()

    @property
    def digest(self) -> str:
        """The registry digest of the reference's repository when the host knows one,
        else the image ID (a locally built image has no registry digest)."""
        repo = repository(self.ref)
        same = [d for d in self.repo_digests if repository(d) == repo]
        return (same or list(self.repo_digests) or [self.id])[0]

    @property
    def kind(self) -> str:
        return "repo-digest" if self.repo_digests else "image-id"

    def as_dict(self) -> dict:
        return {"ref": self.ref, "id": self.id, "digest": self.digest, "kind": self.kind}


def repository(ref: str) -> str:
    """The repository of `name:tag` or `name@sha256:...` in Docker's familiar form, as
    RepoDigests name it (`docker.io/library/caddy:2.10.2` -> `caddy`); a reference that
    does not parse is kept whole, so it matches nothing."""
    parsed = image_ref(ref)
    return parsed.repository if parsed else ref


def is_digest_pinned(ref: str) -> bool:
    return bool(re.fullmatch(r".+@sha256:[0-9a-f]{64}", ref))


def command(refs: list[str]) -> list[str]:
    return docker.image_inspect(refs, FORMAT)


def parse(text: str, refs: list[str]) -> dict[str, ImageFact]:
    """{ref: ImageFact} from `docker image inspect --format FORMAT refs` when every ref was
    found (one line each, in order); MalformedFact for anything else."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if len(lines) != len(refs):
        raise MalformedFact(f"`docker image inspect` printed {len(lines)} lines for {len(refs)} images")
    facts = {}
    for ref, line in zip(refs, lines, strict=True):
        image_id, _, digests_json = line.partition("|")
        try:
            digests = json.loads(digests_json) if digests_json.strip() not in ("", "null") else []
        except ValueError:
            digests = None
        if not ID_RE.fullmatch(image_id) or not isinstance(digests, list):
            raise MalformedFact(f"`docker image inspect` line for {ref} is not an image record: {line[:120]!r}")
        if not all(isinstance(d, str) and REPO_DIGEST_RE.fullmatch(d) for d in digests):
            raise MalformedFact(f"`docker image inspect` gave {ref} a repo digest that is not name@sha256:<64 hex>")
        facts[ref] = ImageFact(ref, image_id, tuple(digests))
    return facts


def resolve(ex: Executor, refs: list[str]) -> tuple[dict[str, ImageFact], list[str]]:
    """What `refs` resolve to on the target, and the refs it lacks: one round trip when
    it has them all (the usual case), one per ref otherwise."""
    refs = sorted(set(refs))
    if not refs:
        return {}, []
    out = ex.run(command(refs), check=False)
    if out.ok:
        return parse(out.stdout, refs), []
    found, missing = {}, []
    for ref in refs:
        one = ex.run(command([ref]), check=False)
        if one.ok:
            found.update(parse(one.stdout, [ref]))
        else:
            missing.append(ref)
    return found, missing


def missing(ex: Executor, images: list[str]) -> list[str]:
    return resolve(ex, images)[1]


def moved(shown: str) -> bool:
    """Whether `docker ps` showed a container's image as an ID: the reference it was
    created from now points at another image (or is gone)."""
    return bool(SHORT_ID_RE.fullmatch(shown))


def same_image(running: str, new_id: str) -> bool:
    """Whether a running image (a full or short ID) is the image `new_id`."""
    short = running.removeprefix("sha256:")
    return bool(short) and new_id.removeprefix("sha256:").startswith(short)


def registry_unreachable(pull_output: str) -> bool:
    """Whether a failed `docker pull` says no registry could be reached (rather than that
    the registry refused the image)."""
    return bool(UNREACHABLE_RE.search(pull_output))
