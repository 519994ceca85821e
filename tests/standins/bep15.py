"""STAND-IN: a minimal BEP 15 UDP responder for the load generator's tests and benchmark.

Not a tracker: it keeps no peers. It answers connect, announce and scrape the way a tracker must,
and is strict about it (a wrong protocol id, an unknown connection id or a short announce
gets a BEP 15 error reply), so a generator that sends nonsense fails its tests. It also
records what it saw (source ports, info-hashes, peer ids) so tests can assert that the
generator really used many. Faults for the tests: drop every Nth announce, answer every
Nth with an error, a tiny socket receive buffer, a delay per datagram.

    python tests/standins/bep15.py PORT       # a process for the benchmark (prints READY)
"""

from __future__ import annotations

import os
import socket
import struct
import sys
import threading
import time
from dataclasses import dataclass, field

PROTOCOL_ID = 0x41727101980
CONNECT, ANNOUNCE, SCRAPE, ERROR = 0, 1, 2, 3


@dataclass
class Seen:
    connects: int = 0
    announces: int = 0
    errors: int = 0
    dropped: int = 0
    ports: set = field(default_factory=set)
    info_hashes: set = field(default_factory=set)
    peer_ids: set = field(default_factory=set)


class Responder:
    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        record: bool = True,
        drop_every: int = 0,
        error_every: int = 0,
        rcvbuf: int | None = None,
        delay: float = 0.0,
    ):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.bind((host, port))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.record, self.drop_every, self.error_every, self.delay = record, drop_every, error_every, delay
        self.seen = Seen()
        self.conn_id = struct.unpack("!q", os.urandom(8))[0]
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _error(self, tid: int, message: bytes, addr) -> None:
        self.seen.errors += 1
        self.sock.sendto(struct.pack("!iI", ERROR, tid) + message, addr)

    def handle(self, data: bytes, addr) -> None:
        seen = self.seen
        if len(data) < 16:
            return
        conn, action, tid = struct.unpack("!qiI", data[:16])
        if action == CONNECT:
            if conn != PROTOCOL_ID:
                return self._error(tid, b"bad protocol id", addr)
            seen.connects += 1
            self.sock.sendto(struct.pack("!iIq", CONNECT, tid, self.conn_id), addr)
            return
        if action not in (ANNOUNCE, SCRAPE):
            return self._error(tid, b"unsupported action", addr)
        if conn != self.conn_id:
            return self._error(tid, b"unknown connection id", addr)
        if action == SCRAPE:
            hashes = (len(data) - 16) // 20
            if hashes < 1:
                return self._error(tid, b"scrape without info-hash", addr)
            self.sock.sendto(struct.pack("!iI", SCRAPE, tid) + struct.pack("!iii", 1, 0, 0) * hashes, addr)
            return
        if len(data) < 98:
            return self._error(tid, b"announce too short", addr)
        seen.announces += 1
        if self.record:
            seen.ports.add(addr[1])
            seen.info_hashes.add(data[16:36])
            seen.peer_ids.add(data[36:56])
        if self.drop_every and seen.announces % self.drop_every == 0:
            seen.dropped += 1
            return
        if self.error_every and seen.announces % self.error_every == 0:
            return self._error(tid, b"stand-in refuses this one", addr)
        self.sock.sendto(struct.pack("!iIiii", ANNOUNCE, tid, 120, 1, 0), addr)

    def serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, addr = self.sock.recvfrom(2048)
            except TimeoutError:
                continue
            except OSError:
                break
            if self.delay:
                time.sleep(self.delay)
            self.handle(data, addr)

    def start(self) -> Responder:
        self._thread = threading.Thread(target=self.serve, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            with socket.socket(self.sock.family, socket.SOCK_DGRAM) as wake:  # ends the wait in recvfrom now
                wake.sendto(b"", self.sock.getsockname())
            self._thread.join(2)
        self.sock.close()

    def __enter__(self) -> Responder:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


if __name__ == "__main__":
    r = Responder("127.0.0.1", int(sys.argv[1]) if len(sys.argv) > 1 else 0, record=False)
    print(f"READY {r.port}", flush=True)
    try:
        r.serve()
    except KeyboardInterrupt:
        pass
