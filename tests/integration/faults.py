"""Small loopback servers for fault tests: a UDP responder, HTTP(S) servers, a forwarding proxy.

Each binds 127.0.0.1 on a free port, serves from daemon threads, and stops on `close()`
(tests call it from a finalizer). Traffic never leaves the loopback interface unless a
test points the proxy at a Docker-published port on 127.0.0.1.
"""

from __future__ import annotations

import http.client
import http.server
import socket
import ssl
import threading
from collections.abc import Callable

# (status, body, content type) for a request path
Reply = tuple[int, bytes, str]
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"}


class UDPResponder:
    """A UDP socket on 127.0.0.1: `respond(packet)` gives the reply, or None for silence."""

    def __init__(self, respond: Callable[[bytes], bytes | None]):
        self.respond = respond
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.received: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name=f"udp-fault-{self.port}", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            self.received.append(data)
            reply = self.respond(data)
            if reply is not None:
                self.sock.sendto(reply, peer)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address) -> None:
        pass  # a client that rejects our certificate or hangs up is what some tests are about


class HTTPServer:
    """An HTTP (or HTTPS, with `tls`) server on 127.0.0.1 answering GETs (and POSTs, DELETEs)
    with `reply(path, headers)`."""

    def __init__(self, reply: Callable[[str, dict[str, str]], Reply], tls: ssl.SSLContext | None = None):
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.calls: list[tuple[str, str, dict[str, str], bytes]] = []  # (method, path, headers, body)
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"
            timeout = 5

            def do_GET(self) -> None:
                headers = {k.lower(): v for k, v in self.headers.items()}
                body = self.rfile.read(int(headers.get("content-length") or 0))
                outer.requests.append((self.path, headers))
                outer.calls.append((self.command, self.path, headers, body))
                status, body, ctype = reply(self.path, headers)
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(body)

            do_POST = do_DELETE = do_GET  # `reply` sees the path; `calls` records the method and body

            def log_message(self, *args) -> None:
                pass

        self.server = _Server(("127.0.0.1", 0), Handler)
        if tls is not None:
            # the handshake happens lazily in the request's thread, never in the accept loop
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True, do_handshake_on_connect=False)
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, name=f"http-fault-{self.port}", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=2)


class ForwardingProxy(HTTPServer):
    """Forwards GETs to 127.0.0.1:upstream_port: drops the headers in `drop`, sets those in `set_headers`."""

    def __init__(self, upstream_port: int, *, set_headers: dict[str, str] | None = None, drop: tuple[str, ...] = ()):
        self.upstream_port = upstream_port
        self.set_headers = set_headers or {}
        self.drop = {d.lower() for d in drop} | {k.lower() for k in self.set_headers}
        self.forwarded: list[dict[str, str]] = []  # the headers sent upstream, per request
        super().__init__(self._forward)

    def _forward(self, path: str, headers: dict[str, str]) -> Reply:
        out = {k: v for k, v in headers.items() if k not in HOP_BY_HOP and k not in self.drop}
        out.update(self.set_headers)
        out["connection"] = "close"
        self.forwarded.append({k.lower(): v for k, v in out.items()})
        conn = http.client.HTTPConnection("127.0.0.1", self.upstream_port, timeout=10)
        try:
            conn.request("GET", path, headers=out)
            resp = conn.getresponse()
            return resp.status, resp.read(), resp.getheader("Content-Type", "application/octet-stream")
        except OSError as exc:
            return 502, f"forwarding proxy: upstream failed: {exc}".encode(), "text/plain"
        finally:
            conn.close()
