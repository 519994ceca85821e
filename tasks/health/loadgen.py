"""health.load's traffic: the UDP (BEP 15) and HTTP announce generators one worker process
runs on a fixed schedule, and what a worker counts (`WorkerResult`). tasks/health/load.py
validates the parameters, starts the workers and builds the report.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import ipaddress
import resource
import selectors
import socket
import ssl
import struct
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tasks.health.load import LoadParams

PROTOCOL_ID = 0x41727101980
CONNECT, ANNOUNCE, ERROR = 0, 1, 3
LATE = 0.010  # a transaction sent this long after its due time is late (the schedule slipped)


@dataclass
class WorkerResult:
    sent: int = 0  # transactions started (UDP: connects sent; HTTP: requests written)
    replies: int = 0  # transactions answered correctly in time
    errors: int = 0  # answered with an error (tracker error, HTTP status, refused)
    not_sent: int = 0  # due but never sent (the generator could not keep up)
    late: int = 0  # sent more than LATE after its due time
    send_seconds: float = 0.0  # the sending window
    latencies: list[float] = field(default_factory=list)
    error_samples: list[str] = field(default_factory=list)

    def merge(self, other: WorkerResult) -> None:
        self.sent += other.sent
        self.replies += other.replies
        self.errors += other.errors
        self.not_sent += other.not_sent
        self.late += other.late
        self.send_seconds = max(self.send_seconds, other.send_seconds)
        self.latencies += other.latencies
        self.error_samples = (self.error_samples + other.error_samples)[:5]


# -------------------------------------------------------------------------- identities
def info_hashes(n: int, seed: bytes) -> list[bytes]:
    return [hashlib.sha1(seed + b"ih" + i.to_bytes(4, "big")).digest() for i in range(n)]  # noqa: S324 - ids


def peer_ids(n: int, seed: bytes) -> list[bytes]:
    return [b"-TL0100-" + hashlib.sha1(seed + b"pid" + i.to_bytes(4, "big")).digest()[:12] for i in range(n)]  # noqa: S324


# ------------------------------------------------------------------------------- UDP
class _Tx:
    """One UDP transaction: a fresh socket, connect, announce."""

    __slots__ = ("index", "sock", "started", "state", "tid")

    def __init__(self, sock: socket.socket, tid: int, started: float, index: int):
        self.sock, self.tid, self.started, self.index, self.state = sock, tid, started, index, CONNECT


def _max_open() -> int:
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return max(16, min(8192, soft - 64))


def note(out: WorkerResult, why: str) -> None:
    """An answered-with-an-error transaction, with a few samples for the report."""
    out.errors += 1
    if len(out.error_samples) < 5:
        out.error_samples.append(why)


class _UdpRun:
    """One worker's UDP load: a non-blocking loop over many short-lived sockets."""

    TAIL = struct.pack("!qqqiIIiH", 0, 1000, 0, 0, 0, 0, 50, 6881)  # downloaded, left, uploaded, event none...
    CONNECT_HEAD = struct.pack("!qi", PROTOCOL_ID, CONNECT)

    def __init__(self, p: LoadParams, rate: float, worker: int, seed: bytes):
        self.p, self.rate = p, rate
        self.family = socket.AF_INET6 if ipaddress.ip_address(p.address).version == 6 else socket.AF_INET
        self.hashes, self.pids = info_hashes(p.torrents, seed), peer_ids(p.peers, seed)
        self.sel, self.out, self.inflight = selectors.DefaultSelector(), WorkerResult(), collections.deque()
        self.max_open, self.total = _max_open(), max(1, round(rate * p.duration))
        self.tid_base, self.started = (worker & 0x3F) << 25, 0

    def run(self) -> WorkerResult:
        self.t0 = time.monotonic()
        end = self.t0 + self.p.duration
        last_send = end + self.p.timeout  # a late send still gets `timeout` for its reply
        while True:
            now = time.monotonic()
            self.send_due(now, end, last_send)
            if now >= last_send and self.started < self.total:
                self.out.not_sent += self.total - self.started  # due, never sent: this machine was the limit
                self.started = self.total
            if (self.started >= self.total and not self.sel.get_map()) or now >= last_send + self.p.timeout:
                break
            self.receive()
            self.expire(time.monotonic() - self.p.timeout)
        for key in list(self.sel.get_map().values()):
            key.fileobj.close()
        self.sel.close()
        self.out.send_seconds = min(self.p.duration, time.monotonic() - self.t0)
        return self.out

    def send_due(self, now: float, end: float, last_send: float) -> None:
        """Open and send the connects of every transaction due by now (the schedule); one
        sent after its time counts as late, one not sent by `last_send` as not sent."""
        due = min(self.total, int((now - self.t0) * self.rate) + 1) if now < end else self.total
        while self.started < due and len(self.sel.get_map()) < self.max_open and now < last_send:
            sock = socket.socket(self.family, socket.SOCK_DGRAM)
            sock.setblocking(False)
            tx = _Tx(sock, self.tid_base | (self.started & 0x1FFFFFF), now, self.started)
            self.out.sent += 1
            self.out.late += now - (self.t0 + self.started / self.rate) > LATE
            self.started += 1
            try:
                sock.connect((self.p.address, self.p.port))
                sock.send(self.CONNECT_HEAD + struct.pack("!I", tx.tid))
            except OSError as exc:
                sock.close()
                note(self.out, f"send: {exc.strerror or exc}")
                continue
            self.sel.register(sock, selectors.EVENT_READ, tx)
            self.inflight.append(tx)

    def receive(self) -> None:
        """Wait for replies until the next send is due (at most 5 ms) and handle them."""
        if self.started < self.total:
            wait = max(0.0, min(self.t0 + (self.started + 1) / self.rate - time.monotonic(), 0.005))
        else:
            wait = 0.01
        for key, _ in self.sel.select(wait):
            tx = key.data
            try:
                data = tx.sock.recv(2048)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError as exc:  # ICMP port unreachable: refused
                self.fail(tx, f"recv: {exc.strerror or exc}")
                continue
            if len(data) >= 8 and struct.unpack("!I", data[4:8])[0] == tx.tid:
                self.reply(tx, data)

    def reply(self, tx: _Tx, data: bytes) -> None:
        action = struct.unpack("!i", data[:4])[0]
        if action == ERROR:
            self.fail(tx, "tracker error: " + data[8:120].decode("utf-8", "replace"))
        elif tx.state == CONNECT and action == CONNECT and len(data) >= 16:
            tx.state = ANNOUNCE
            body = self.hashes[tx.index % len(self.hashes)] + self.pids[tx.index % len(self.pids)] + self.TAIL
            try:
                tx.sock.send(data[8:16] + struct.pack("!iI", ANNOUNCE, tx.tid) + body)
            except OSError as exc:
                self.fail(tx, f"send: {exc.strerror or exc}")
        elif tx.state == ANNOUNCE and action == ANNOUNCE and len(data) >= 20:
            self.out.replies += 1
            self.out.latencies.append(time.monotonic() - tx.started)
            self.finish(tx)
        else:
            self.fail(tx, f"unexpected reply: action {action}, {len(data)} bytes")

    def finish(self, tx: _Tx) -> None:
        self.sel.unregister(tx.sock)
        tx.sock.close()
        tx.state = -1

    def fail(self, tx: _Tx, why: str) -> None:
        note(self.out, why)
        self.finish(tx)

    def expire(self, older_than: float) -> None:
        """Drop finished transactions from the front; close the ones past the timeout (lost)."""
        while self.inflight and (self.inflight[0].state == -1 or self.inflight[0].started < older_than):
            tx = self.inflight.popleft()
            if tx.state != -1:
                self.finish(tx)


def udp_worker(p: LoadParams, rate: float, worker: int, seed: bytes) -> WorkerResult:
    """Send `rate` transactions/s for p.duration on one core; collect the replies."""
    return _UdpRun(p, rate, worker, seed).run()


# ------------------------------------------------------------------------------ HTTP
def _http_request(p: LoadParams, ih: bytes, pid: bytes) -> bytes:
    query = urllib.parse.urlencode(
        {"info_hash": ih, "peer_id": pid, "port": 6881, "uploaded": 0, "downloaded": 0, "left": 1000, "compact": 1},
        quote_via=urllib.parse.quote,
    )
    host = p.host or (f"[{p.address}]" if ":" in p.address else p.address)
    return f"GET /announce?{query} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: torrust-deploy-load\r\n\r\n".encode()


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """(status, body, keep-alive) of one HTTP/1.1 response."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = b""
        while size := int((await reader.readline()).split(b";")[0], 16):
            body += await reader.readexactly(size)
            await reader.readexactly(2)
        await reader.readline()
    else:
        body = await reader.readexactly(int(headers.get("content-length", "0")))
    return status, body, headers.get("connection", "").lower() != "close"


class _HttpRun:
    """One worker's HTTP load: a schedule feeding keep-alive connections."""

    def __init__(self, p: LoadParams, rate: float, seed: bytes):
        self.p, self.rate, self.out = p, rate, WorkerResult()
        self.hashes, self.pids = info_hashes(p.torrents, seed), peer_ids(p.peers, seed)
        self.ctx = None
        if p.tls:
            self.ctx = ssl.create_default_context()
            if p.ca_pem:
                self.ctx.load_verify_locations(cadata=p.ca_pem)

    async def run(self) -> WorkerResult:
        loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[int] = asyncio.Queue()
        self.t0 = loop.time()
        workers = [asyncio.create_task(self.connection()) for _ in range(self.p.connections)]
        for i in range(max(1, round(self.rate * self.p.duration))):
            delay = self.t0 + i / self.rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)  # the schedule, not a wait for a condition
            self.queue.put_nowait(i)
        for _ in workers:
            self.queue.put_nowait(-1)
        await asyncio.wait(workers, timeout=self.p.duration + 2 * self.p.timeout + 5)
        self.out.send_seconds = self.p.duration
        return self.out

    async def connection(self) -> None:
        """One keep-alive connection: takes due requests, reconnects after an error."""
        loop = asyncio.get_running_loop()
        conn = None
        while (i := await self.queue.get()) >= 0:
            if loop.time() > self.t0 + self.p.duration + self.p.timeout:  # never written in time: generator-limited
                self.out.not_sent += 1
                continue
            try:
                conn = conn or await asyncio.open_connection(
                    self.p.address,
                    self.p.port,
                    ssl=self.ctx,
                    server_hostname=(self.p.host or None) if self.ctx else None,
                )
                conn = await self.announce(conn, i, loop)
            except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError, IndexError) as exc:
                if not isinstance(exc, TimeoutError):
                    note(self.out, f"{type(exc).__name__}: {exc}"[:120])
                if conn:
                    conn[1].close()
                conn = None
        if conn:
            conn[1].close()

    async def announce(self, conn, i: int, loop) -> tuple | None:
        reader, writer = conn
        sent_at = loop.time()
        self.out.sent += 1
        self.out.late += sent_at - (self.t0 + i / self.rate) > LATE
        writer.write(_http_request(self.p, self.hashes[i % len(self.hashes)], self.pids[i % len(self.pids)]))
        status, body, keep = await asyncio.wait_for(_read_response(reader), self.p.timeout)
        if status != 200 or b"failure reason" in body:
            note(self.out, f"HTTP {status}: {body[:100].decode('utf-8', 'replace')}")
        else:
            self.out.replies += 1
            self.out.latencies.append(loop.time() - sent_at)
        if keep:
            return conn
        writer.close()
        return None


def http_worker(p: LoadParams, rate: float, worker: int, seed: bytes) -> WorkerResult:
    return asyncio.run(_HttpRun(p, rate, seed).run())


WORKERS = {"udp": udp_worker, "http": http_worker}
