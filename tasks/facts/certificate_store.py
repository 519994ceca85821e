"""The proxy's certificate store in a backup (`proxy-data.tar.gz`), judged before it is
restored: every member a directory or a regular file whose path is made of flat names
(tasks/facts/paths.py: no '..', no absolute path, no control characters), no links or
devices, a bounded size. The archive comes from a backup copy, so it crosses the trust
boundary like a manifest does (docs/threat-model.md): refused (exit 14) before anything is
uploaded or extracted.
"""

from __future__ import annotations

import io
import tarfile
from dataclasses import dataclass

from tasks.errors import Untrusted
from tasks.facts import paths

ARCHIVE = "proxy-data.tar.gz"  # the name application/bin/torrust-backup gives it
MAX_BYTES = 256 << 20  # unpacked; a certificate store is a few hundred KiB
HINT = "do not restore this archive: it was damaged or crafted; nothing was uploaded or extracted"


@dataclass(frozen=True)
class Store:
    files: int
    bytes: int
    names: tuple[str, ...]  # the certificates' names found in it (certificates/<ca>/<name>/)


def member_problem(member: tarfile.TarInfo) -> str | None:
    parts = [p for p in member.name.split("/") if p not in ("", ".")]
    if member.name.startswith("/"):
        return "is an absolute path"
    for part in parts:
        why = paths.name_problem(part)
        if why:
            return f"has a part {part!r} that {why}"
    if not (member.isdir() or member.isreg()):
        return "is not a directory or a regular file (a link or a device)"
    return None


def parse(data: bytes, *, source: str) -> Store:
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            members = tar.getmembers()
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise Untrusted(f"{source} is not a gzip'd tar archive: {exc}", hint=HINT) from None
    total = 0
    for m in members:
        why = member_problem(m)
        if why:
            raise Untrusted(f"{source}: member {m.name[:120]!r} {why}", hint=HINT)
        total += m.size
        if total > MAX_BYTES:
            raise Untrusted(f"{source} unpacks to more than {MAX_BYTES} bytes", hint=HINT)
    names = sorted(
        {m.name.split("/")[-2] for m in members if m.isreg() and m.name.endswith(".crt") and "/certificates/" in m.name}
    )
    return Store(sum(m.isreg() for m in members), total, tuple(names))
