"""tasks/facts/certificate_store.py: a backup's certificate store archive, judged before a restore."""

from __future__ import annotations

import io
import tarfile

import pytest

from tasks.errors import Untrusted
from tasks.facts import certificate_store


def archive(*members: tuple[str, bytes | str | None]) -> bytes:
    """(name, bytes) a file, (name, None) a directory, (name, "->target") a symlink."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif isinstance(data, str):
                info.type, info.linkname = tarfile.SYMTYPE, data[2:]
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


CERTS = "./caddy/certificates/acme-v02.api.letsencrypt.org-directory/tracker.torrust-demo.net"
STORE = archive(
    (".", None),
    (CERTS, None),
    (f"{CERTS}/tracker.torrust-demo.net.crt", b"PEM"),
    (f"{CERTS}/tracker.torrust-demo.net.key", b"KEY"),
)


def test_a_caddy_store():
    store = certificate_store.parse(STORE, source="x")
    assert store.names == ("tracker.torrust-demo.net",) and store.files == 2 and store.bytes == 6


@pytest.mark.parametrize(
    ("members", "why"),
    [
        ((("./caddy/../../etc/cron.d/x", b"x"),), "has a part '..' that is '.' or '..'"),
        ((("/etc/passwd", b"x"),), "is an absolute path"),
        ((("./caddy/link", "->/etc"),), "is not a directory or a regular file"),
        ((("./caddy/\x1b[31mred", b"x"),), "contains a control or non-printable character"),
    ],
    ids=["dotdot", "absolute", "symlink", "control"],
)
def test_crafted_members_are_refused(members, why):
    with pytest.raises(Untrusted) as info:
        certificate_store.parse(archive(*members), source="backup B: proxy-data.tar.gz")
    assert why in info.value.message and info.value.code == 14


def test_not_an_archive():
    with pytest.raises(Untrusted, match="is not a gzip'd tar archive"):
        certificate_store.parse(b"plain text", source="x")
