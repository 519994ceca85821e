"""The rendered release runs: Compose brings it up on the test images and it tracks.

The tracker stand-in reads the rendered tracker.toml and the admin-token override the
real image uses, so a wiring mistake in the renderer (token, bind addresses, database
path, proxy headers, storage ownership) fails here.
"""

from __future__ import annotations

import subprocess
import urllib.parse

import pytest
import requests

from tasks.health import bencode
from tasks.health.udp import UDPTrackerClient

INFO_HASH = bytes.fromhex("c0ffee00" * 5)


@pytest.fixture
def stack(rendered_stack):
    st = rendered_stack
    return st.settings, st.root, st.udp_port, st.http_port


def test_local_release_serves_api_http_and_udp(stack):
    s, root, udp_port, http_port = stack
    base = f"http://127.0.0.1:{http_port}"
    token = s.admin_token.reveal()
    api = {"Host": s.api_domain}

    health = requests.get(f"{base}/api/health_check", headers=api, timeout=10)
    assert health.status_code == 200 and health.json() == {"status": "Ok"}
    assert (
        requests.get(f"{base}/api/v1/stats", params={"token": "wrong-token"}, headers=api, timeout=10).status_code
        == 500
    )

    # HTTP announce through the proxy, which must add X-Forwarded-For for the tracker
    query = urllib.parse.urlencode(
        {
            "info_hash": INFO_HASH,
            "peer_id": b"-TD0001-aaaaaaaaaaaa",
            "port": 6881,
            "uploaded": 0,
            "downloaded": 0,
            "left": 0,
            "compact": 1,
            "event": "started",
        },
        quote_via=urllib.parse.quote,  # '+' would be a literal byte to the tracker
    )
    reply = requests.get(f"{base}/announce?{query}", headers={"Host": s.http_tracker_domains[0]}, timeout=10)
    assert reply.status_code == 200, reply.text
    decoded = bencode.decode(reply.content)
    assert b"failure reason" not in decoded, decoded
    assert "interval" in {k.decode() for k in decoded}

    # UDP (BEP 15) on the published port
    with UDPTrackerClient("127.0.0.1", udp_port) as udp:
        udp.connect()
        ann = udp.announce(INFO_HASH, b"-TD0001-bbbbbbbbbbbb", 6882, event="started", left=100)
        assert ann.interval == s.announce_interval
        assert ann.seeders + ann.leechers >= 2  # the HTTP peer and this one share the torrent
        ((seeders, _completed, leechers),) = udp.scrape([INFO_HASH])
        assert seeders + leechers >= 2

    stats = requests.get(f"{base}/api/v1/stats", params={"token": token}, headers=api, timeout=10).json()
    assert (
        stats["udp4_announces_handled"] >= 1 and stats["tcp4_announces_handled"] + stats["tcp6_announces_handled"] >= 1
    )
    assert stats["torrents"] >= 1

    # the SQLite database lives in storage, outside the release, owned by the tracker's user
    db = root / "storage/tracker/lib/database/sqlite3.db"
    assert db.is_file() and db.stat().st_uid == s.tracker_uid


def test_only_udp_trackers_and_the_proxy_are_published(stack, unique):
    _s, _root, udp_port, http_port = stack
    out = subprocess.run(
        [
            "docker",
            "ps",
            "--filter",
            f"label=com.docker.compose.project={unique}",
            "--format",
            '{{.Label "com.docker.compose.service"}} {{.Ports}}',
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    published = {}
    for line in out.strip().splitlines():
        service, _, ports = line.partition(" ")
        published[service] = sorted(
            {p.split("->")[0].rsplit(":", 1)[1] + "/" + p.split("/")[-1] for p in ports.split(", ") if "->" in p}
        )
    assert published == {"tracker": [f"{udp_port}/udp"], "proxy": [f"{http_port}/tcp"]}
