#!/usr/bin/env python3
"""BEP 15 probe with the reply's source checked: connect, announce, stopped.

Standard library only, so the same file runs on the deploy target (sent to `python3 -c`
by tasks.commands.network.udp_probe, e.g. to probe the host's public IPv6 address from
the host when the operator's machine has no IPv6 route) and on this machine (loaded by
tasks.health.network for the reply-source probes).

    python3 udp-probe.py ADDRESS PORT TIMEOUT

Prints one JSON line: {"ok": bool, "detail": str, "source": str|null, "latency": s}.
Exits 0 whatever the verdict (the verdict is in the JSON); 2 on bad arguments.

The socket is not connected, so a reply from another address than the one asked is
still seen and reported: a client with a connected socket (most BitTorrent clients)
would drop it, which is how a host with several public addresses loses announces.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import socket
import struct
import sys
import time

PROTOCOL_ID = 0x41727101980
CONNECT, ANNOUNCE, ERROR = 0, 1, 3
INFO_HASH = hashlib.sha1(b"torrust-deploy health canary").digest()  # noqa: S324 - an identifier


class ProbeError(Exception):
    pass


def _exchange(sock: socket.socket, addr: tuple, packet: bytes, tid: int, action: int, deadline: float):
    """Send, then wait for the reply with our transaction id; (data, source address)."""
    sock.sendto(packet, addr)
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise ProbeError(f"no reply from {addr[0]} port {addr[1]} (timed out)")
        sock.settimeout(left)
        try:
            data, source = sock.recvfrom(2048)
        except TimeoutError:
            continue
        if len(data) < 8 or struct.unpack("!I", data[4:8])[0] != tid:
            continue  # not ours (a late reply to an earlier probe)
        got = struct.unpack("!i", data[:4])[0]
        if got == ERROR:
            raise ProbeError("tracker error: " + data[8:200].decode("utf-8", "replace"))
        if got != action or len(data) < (16 if action == CONNECT else 20):
            raise ProbeError(f"unexpected reply (action {got}, {len(data)} bytes)")
        return data, source[0]


def probe(address: str, port: int, timeout: float) -> dict:
    asked = ipaddress.ip_address(address)
    family = socket.AF_INET6 if asked.version == 6 else socket.AF_INET
    started = time.monotonic()
    deadline = started + timeout
    source = None
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            tid = struct.unpack("!I", os.urandom(4))[0]
            data, source = _exchange(
                sock, (address, port), struct.pack("!qiI", PROTOCOL_ID, CONNECT, tid), tid, CONNECT, deadline
            )
            if ipaddress.ip_address(source.split("%")[0]) != asked:
                return _result(False, f"reply came from {source}, not {address}: clients drop it", source, started)
            conn = data[8:16]
            peer = b"-TD0100-" + os.urandom(6).hex().encode()
            for event in (2, 3):  # started, stopped (the canary leaves no peer behind)
                tid = struct.unpack("!I", os.urandom(4))[0]
                body = INFO_HASH + peer + struct.pack("!qqqiIIiH", 0, 0, 0, event, 0, tid, 10, 6881)
                data, source = _exchange(
                    sock, (address, port), conn + struct.pack("!iI", ANNOUNCE, tid) + body, tid, ANNOUNCE, deadline
                )
            interval = struct.unpack("!i", data[8:12])[0]
    except (OSError, ProbeError) as exc:
        return _result(False, str(exc) or type(exc).__name__, source, started)
    return _result(True, f"connect, announce interval={interval}, stopped; reply from {source}", source, started)


def _result(ok: bool, detail: str, source: str | None, started: float) -> dict:
    return {"ok": ok, "detail": detail, "source": source, "latency": round(time.monotonic() - started, 4)}


def main(argv: list[str]) -> int:
    try:
        address, port, timeout = argv[0], int(argv[1]), float(argv[2])
        ipaddress.ip_address(address)
    except (IndexError, ValueError):
        print("usage: udp-probe.py ADDRESS PORT TIMEOUT", file=sys.stderr)
        return 2
    print(json.dumps(probe(address, port, timeout)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
