"""HTTP(S) requests to a chosen address with the public name as Host and TLS SNI.

Probes connect to an address of one family (the deployed host's IPv4 or IPv6) while
speaking to the public name, so they work before DNS points at a new host and prove each
family separately. Responses are capped (1 MB) and never follow redirects.
"""

from __future__ import annotations

import http.client
import socket
import ssl
from dataclasses import dataclass

MAX_BODY = 1 << 20


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    headers: dict[str, str]


class _Conn(http.client.HTTPConnection):
    def __init__(self, address: str, port: int, timeout: float):
        super().__init__(address, port, timeout=timeout)


class _TLSConn(http.client.HTTPSConnection):
    def __init__(self, address: str, port: int, name: str, context: ssl.SSLContext, timeout: float):
        super().__init__(address, port, timeout=timeout, context=context)
        self._sni = name

    def connect(self) -> None:
        sock = socket.create_connection((self.host, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self._sni)


def get(
    address: str,
    port: int,
    name: str,
    path: str,
    *,
    tls: bool = False,
    context: ssl.SSLContext | None = None,
    timeout: float = 5.0,
    headers: dict[str, str] | None = None,
) -> Response:
    return request("GET", address, port, name, path, tls=tls, context=context, timeout=timeout, headers=headers)


def request(
    method: str,
    address: str,
    port: int,
    name: str,
    path: str,
    *,
    tls: bool = False,
    context: ssl.SSLContext | None = None,
    timeout: float = 5.0,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
) -> Response:
    """One request; with TLS the certificate is checked by `context` (a verifying default
    when None) during the handshake, before anything of the request is sent."""
    if tls:
        conn: http.client.HTTPConnection = _TLSConn(
            address, port, name, context or ssl.create_default_context(), timeout
        )
    else:
        conn = _Conn(address, port, timeout)
    try:
        default_port = 443 if tls else 80
        host_header = name if port == default_port else f"{name}:{port}"
        conn.request(
            method,
            path,
            body=body,
            headers={
                "Host": host_header,
                "User-Agent": "torrust-deploy-health/0.1",
                "Connection": "close",
                **(headers or {}),
            },
        )
        resp = conn.getresponse()
        data = resp.read(MAX_BODY + 1)
        if len(data) > MAX_BODY:
            raise ValueError("response larger than 1 MB")
        return Response(resp.status, data, {k.lower(): v for k, v in resp.getheaders()})
    finally:
        conn.close()


def peer_certificate(address: str, port: int, name: str, context: ssl.SSLContext, timeout: float = 5.0) -> bytes:
    """The server's certificate (DER) after a verified handshake with SNI `name`."""
    with socket.create_connection((address, port), timeout) as sock:
        with context.wrap_socket(sock, server_hostname=name) as tls:
            return tls.getpeercert(binary_form=True)


def peer_certificate_dates(
    address: str, port: int, name: str, context: ssl.SSLContext, timeout: float = 5.0
) -> tuple[float, float]:
    """(notBefore, notAfter) in epoch seconds of the server's certificate after a verified
    handshake with SNI `name` (standard library only: the watch's vantage bundle uses it)."""
    with socket.create_connection((address, port), timeout) as sock:
        with context.wrap_socket(sock, server_hostname=name) as tls:
            cert = tls.getpeercert()
    return ssl.cert_time_to_seconds(cert["notBefore"]), ssl.cert_time_to_seconds(cert["notAfter"])
