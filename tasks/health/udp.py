"""A BEP 15 UDP tracker client: connect, announce, scrape; transaction ids checked."""

from __future__ import annotations

import os
import socket
import struct
from dataclasses import dataclass

PROTOCOL_ID = 0x41727101980
CONNECT, ANNOUNCE, SCRAPE, ERROR = 0, 1, 2, 3
EVENTS = {"none": 0, "completed": 1, "started": 2, "stopped": 3}


class UDPTrackerError(Exception):
    pass


@dataclass(frozen=True)
class AnnounceReply:
    interval: int
    leechers: int
    seeders: int
    peers: list[tuple[str, int]]


class UDPTrackerClient:
    def __init__(self, host: str, port: int, *, timeout: float = 3.0, attempts: int = 2):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.addr = (host, port)
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.settimeout(timeout)
        self.attempts = attempts
        self.connection_id: int | None = None

    def close(self) -> None:
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _exchange(self, payload_after_tid: bytes, action: int, prefix: bytes, min_len: int) -> bytes:
        last: Exception | None = None
        for _ in range(self.attempts):
            tid = struct.unpack("!I", os.urandom(4))[0]
            self.sock.sendto(prefix + struct.pack("!iI", action, tid) + payload_after_tid, self.addr)
            try:
                data, _ = self.sock.recvfrom(65535)
            except TimeoutError as exc:
                last = exc
                continue
            if len(data) < 8:
                raise UDPTrackerError(f"truncated reply ({len(data)} bytes)")
            got_action, got_tid = struct.unpack("!iI", data[:8])
            if got_tid != tid:
                raise UDPTrackerError(f"transaction id mismatch (sent {tid}, got {got_tid})")
            if got_action == ERROR:
                raise UDPTrackerError("tracker error: " + data[8:].decode("utf-8", "replace"))
            if got_action != action:
                raise UDPTrackerError(f"unexpected action {got_action} (expected {action})")
            if len(data) < min_len:
                raise UDPTrackerError(f"truncated reply ({len(data)} bytes, expected at least {min_len})")
            return data
        raise UDPTrackerError(f"no reply from {self.addr[0]}:{self.addr[1]} after {self.attempts} attempts") from last

    def connect(self) -> int:
        data = self._exchange(b"", CONNECT, struct.pack("!q", PROTOCOL_ID), 16)
        self.connection_id = struct.unpack("!q", data[8:16])[0]
        return self.connection_id

    def announce(
        self, info_hash: bytes, peer_id: bytes, port: int, *, event: str = "started", left: int = 0, numwant: int = 50
    ) -> AnnounceReply:
        if self.connection_id is None:
            self.connect()
        key = struct.unpack("!I", os.urandom(4))[0]
        body = info_hash + peer_id + struct.pack("!qqqiIIiH", 0, left, 0, EVENTS[event], 0, key, numwant, port)
        data = self._exchange(body, ANNOUNCE, struct.pack("!q", self.connection_id), 20)
        interval, leechers, seeders = struct.unpack("!iii", data[8:20])
        peers_raw = data[20:]
        size = 18 if self.sock.family == socket.AF_INET6 else 6
        peers = []
        for i in range(0, len(peers_raw) - len(peers_raw) % size, size):
            chunk = peers_raw[i : i + size]
            ip = socket.inet_ntop(self.sock.family, chunk[:-2])
            peers.append((ip, struct.unpack("!H", chunk[-2:])[0]))
        return AnnounceReply(interval, leechers, seeders, peers)

    def scrape(self, info_hashes: list[bytes]) -> list[tuple[int, int, int]]:
        if self.connection_id is None:
            self.connect()
        data = self._exchange(
            b"".join(info_hashes), SCRAPE, struct.pack("!q", self.connection_id), 8 + 12 * len(info_hashes)
        )
        return [struct.unpack("!iii", data[8 + 12 * i : 20 + 12 * i]) for i in range(len(info_hashes))]
