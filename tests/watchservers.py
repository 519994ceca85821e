"""Real servers the watch's alerts go to in tests, on loopback: an HTTP receiver (the
standard library's server) and an SMTP server with STARTTLS and AUTH (aiosmtpd, the
maintained asyncio SMTP server), with a test CA made by cryptography."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import ipaddress
import json
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from cryptography.x509.oid import NameOID

from tasks.errors import StoreMissing
from tasks.watch.store import Store

SMTP_USER = "watch-alerts"
SMTP_PASSWORD = "Sm7-Pq2Xz9Lk4Wv8Rb3Nc6Hd1"  # a test value, never a real one


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.05):
    """Poll until `predicate()` is truthy; its value, or AssertionError at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


# ---------------------------------------------------------------------- certificates
def make_ca_and_leaf(
    directory: Path, names: tuple[str, ...] = ("localhost",), days: float = 90, ips: tuple[str, ...] = ("127.0.0.1",)
) -> tuple[Path, Path, Path]:
    """(CA PEM, leaf certificate PEM, leaf key PEM) under `directory`; the leaf is valid
    for `days` from now (negative: already expired)."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "torrust watch test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    san = [x509.DNSName(n) for n in names] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=60))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    paths = (directory / "ca.pem", directory / "leaf.pem", directory / "leaf.key")
    paths[0].write_bytes(ca.public_bytes(Encoding.PEM))
    paths[1].write_bytes(leaf.public_bytes(Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    return paths


# ---------------------------------------------------------------------- webhook receiver
class Receiver:
    """An HTTP server recording every POSTed JSON body; `status` sets its answer."""

    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self.bodies: list[dict] = []
        self.paths: list[str] = []
        self.status = 200
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> Receiver:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length))
                if outer.status == 200:
                    outer.bodies.append(body)
                    outer.paths.append(self.path)
                self.send_response(outer.status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        # polled every 20 ms, not 0.5 s: stop() returns at once
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def kinds(self) -> list[str]:
        return [b["kind"] for b in self.bodies]


# ---------------------------------------------------------------------- SMTP server
class Mailbox:
    def __init__(self):
        self.messages: list = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(envelope)
        return "250 Message accepted"

    def subjects(self) -> list[str]:
        return [str(email.message_from_bytes(e.content, policy=email.policy.default)["Subject"]) for e in self.messages]


class SMTPServer:
    """aiosmtpd with STARTTLS required before AUTH, one account."""

    def __init__(self, cert: Path, key: Path, password: str = SMTP_PASSWORD):
        self.port = free_port()
        self.mailbox = Mailbox()
        self.auth_attempts = 0
        self.password = password
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(str(cert), str(key))

        def authenticator(server, session, envelope, mechanism, auth_data):
            self.auth_attempts += 1
            ok = (
                isinstance(auth_data, LoginPassword)
                and auth_data.login == SMTP_USER.encode()
                and auth_data.password == self.password.encode()
            )
            return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535 itself

        self.controller = Controller(
            self.mailbox,
            hostname="127.0.0.1",
            port=self.port,
            tls_context=ctx,
            require_starttls=True,
            authenticator=authenticator,
            auth_required=True,
            auth_require_tls=True,
        )

    def start(self) -> SMTPServer:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()


def open_when_ready(path: Path, timeout: float = 30.0):
    """The watch's store once its schema is written (the watch creates it in its thread)."""

    def attempt():
        try:
            return Store.open(path)
        except StoreMissing:
            return None

    return wait_for(attempt, timeout)
