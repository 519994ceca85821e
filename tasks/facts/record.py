"""A release's record on the host (`<release>/images.json`): the image each service runs
(reference, image ID, registry digest when there is one), resolved on the host after the
pull, and the pre-upgrade backup taken before the switch, if one was.

The deploy writes it beside the rendered files (so release.json and its content hash stay
a pure function of the settings). It is read back from the host, so it is untrusted: any
other shape is refused with `MalformedFact`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from tasks.commands import releases as cmd
from tasks.errors import MalformedFact
from tasks.facts import images
from tasks.facts.backup import ID_RE as BACKUP_ID_RE
from tasks.facts.images import ID_RE, REPO_DIGEST_RE, ImageFact
from tasks.facts.releases import SERVICE_RE
from tasks.release.layout import RECORD, Layout, is_release_id
from tasks.runner.executor import Executor

FORMAT = 1
REF_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/:@-]{0,254}")


@dataclass(frozen=True)
class RecordedImage:
    ref: str
    id: str
    digest: str  # name@sha256:... or, for a locally built image, the image ID

    def as_dict(self) -> dict:
        return {"ref": self.ref, "id": self.id, "digest": self.digest}


@dataclass(frozen=True)
class PreUpgradeBackup:
    id: str  # the backup taken of the data before this release started
    from_release: str  # the release that ran when it was taken
    changed: tuple[str, ...]  # the services whose image changed (tracker, mysql)


@dataclass(frozen=True)
class ReleaseRecord:
    images: dict[str, RecordedImage]
    pre_upgrade_backup: PreUpgradeBackup | None = None

    def as_dict(self) -> dict:
        b = self.pre_upgrade_backup
        return {
            "images": {k: v.as_dict() for k, v in sorted(self.images.items())},
            "pre_upgrade_backup": None
            if b is None
            else {"id": b.id, "from_release": b.from_release, "changed": list(b.changed)},
        }


def text(images: dict[str, ImageFact], backup: PreUpgradeBackup | None) -> str:
    """The file's content for `images` (service -> what its reference resolved to)."""
    record = ReleaseRecord({k: RecordedImage(v.ref, v.id, v.digest) for k, v in images.items()}, backup)
    return json.dumps({"format": FORMAT, **record.as_dict()}, indent=2, sort_keys=True) + "\n"


def _fail(where: str, what: str) -> None:
    raise MalformedFact(f"{where}: {what}", hint="the file was not written by this tool, or was changed on the host")


def _image(service: object, entry: object, where: str) -> RecordedImage:
    if not (isinstance(service, str) and SERVICE_RE.fullmatch(service)) or not isinstance(entry, dict):
        _fail(where, f"images entry {str(service)[:40]!r} is not a service's image")
    ref, image_id, digest = entry.get("ref"), entry.get("id"), entry.get("digest")
    if not (isinstance(ref, str) and REF_RE.fullmatch(ref)):
        _fail(where, f"{service}: ref is not an image reference")
    if not (isinstance(image_id, str) and ID_RE.fullmatch(image_id)):
        _fail(where, f"{service}: id is not sha256:<64 hex>")
    if not (isinstance(digest, str) and (digest == image_id or REPO_DIGEST_RE.fullmatch(digest))):
        _fail(where, f"{service}: digest is neither a repo digest nor the image id")
    return RecordedImage(ref, image_id, digest)


def _backup(value: object, where: str) -> PreUpgradeBackup | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        _fail(where, "pre_upgrade_backup is not an object")
    bid, origin, changed = value.get("id"), value.get("from_release"), value.get("changed", [])
    if not (isinstance(bid, str) and BACKUP_ID_RE.fullmatch(bid)):
        _fail(where, "pre_upgrade_backup.id is not a backup id")
    if not (isinstance(origin, str) and is_release_id(origin)):
        _fail(where, "pre_upgrade_backup.from_release is not a release id")
    if not (isinstance(changed, list) and all(isinstance(x, str) and SERVICE_RE.fullmatch(x) for x in changed)):
        _fail(where, "pre_upgrade_backup.changed is not a list of services")
    return PreUpgradeBackup(bid, origin, tuple(changed))


def parse(text_: str, where: str) -> ReleaseRecord:
    try:
        doc = json.loads(text_)
    except ValueError:
        doc = None
    if not isinstance(doc, dict) or not isinstance(doc.get("images"), dict):
        _fail(where, "not a JSON object with images")
    images = {k: _image(k, v, where) for k, v in doc["images"].items()}
    return ReleaseRecord(images, _backup(doc.get("pre_upgrade_backup"), where))


def parse_many(out: str, where: str) -> dict[str, ReleaseRecord | None]:
    """{release id: its record, or None when it has none} from `release_records` output."""
    records: dict[str, ReleaseRecord | None] = {}
    for chunk in out.split("=== ")[1:]:
        release_id, _, body = chunk.partition("\n")
        if not is_release_id(release_id.strip()):
            _fail(where, f"{release_id[:40]!r} is not a release id")
        body = body.strip()
        records[release_id.strip()] = parse(body, f"{where}/{release_id.strip()}/{RECORD}") if body else None
    return records


def read_many(ex: Executor, lay: Layout, ids: list[str]) -> dict[str, ReleaseRecord | None]:
    if not ids:
        return {}
    out = ex.run(cmd.release_records(lay.releases, RECORD, ids))
    return parse_many(out.stdout, f"{ex.where}:{lay.releases}")


def tags_to_restore(ex: Executor, lay: Layout, release_id: str) -> list[tuple[str, str]]:
    """(image ID, reference) for each image recorded in `release_id`'s images.json whose
    reference now resolves to another image on the target (none without a record)."""
    rec = read_many(ex, lay, [release_id]).get(release_id)
    if rec is None:
        return []
    wanted = {img.ref: img.id for img in rec.images.values() if not images.is_digest_pinned(img.ref)}
    resolved, _ = images.resolve(ex, sorted(wanted))
    return [(i, ref) for ref, i in sorted(wanted.items()) if ref not in resolved or resolved[ref].id != i]
