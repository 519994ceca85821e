"""A real ACME server and a real DNS server for the certificate tests (issue 14).

- Pebble (Let's Encrypt's RFC 8555 test server, Debian's package, image torrust-test/pebble)
  on the host network, listening on the docker0 gateway address only, so the proxy
  container of a test stack (on its own bridge network) reaches
  https://<gateway>:<port>/dir and this process reaches it too. Its own HTTPS certificate
  is made here (a test CA and a leaf with the gateway's IP SAN). Its validation ports are
  the proxy's published HTTP and HTTPS ports, so HTTP-01 and TLS-ALPN-01 validations
  reach the stack's Caddy through 127.0.0.1 like Let's Encrypt reaches port 80/443.
- dnsmasq (image torrust-test/dns) on the host network at 127.0.0.1:<port>: Pebble's
  validation lookups (`-dnsserver`) and the tool's DNS preflight (TORRUST_DNS_RESOLVER)
  ask it. A/AAAA records come from a watched hosts directory (changed while it runs);
  CAA and TXT records from its configuration, written before it starts.

The issued certificates chain to Pebble's issuance root (GET /roots/0 on the management
port), a different root than the test CA of Pebble's HTTPS: `trust_bundle` writes both
into one PEM file, which is what TORRUST_ACME_CA_ROOT takes (docs/guides/certificates.md).
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import re
import socket
import ssl
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from tests.integration.conftest import docker, free_port

ZONE = "acme.example"  # RFC 2606 reserved; not an internal suffix, so the tool uses ACME


def bridge_gateway() -> str:
    """The host's address on Docker's default bridge (docker0): containers on any bridge
    network reach the host there."""
    subnet = json.loads(docker("network", "inspect", "bridge", "-f", "{{json .IPAM.Config}}").stdout)[0]["Subnet"]
    return str(ipaddress.ip_network(subnet)[1])


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _key():
    return ec.generate_private_key(ec.SECP256R1())


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def make_server_certificate(ip: str, directory: Path) -> tuple[Path, Path, bytes]:
    """A test CA and a leaf for `ip` (and 127.0.0.1): (cert file, key file, CA PEM)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key, leaf_key = _key(), _key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "torrust-test pebble HTTPS CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    sans = [x509.IPAddress(ipaddress.ip_address(a)) for a in dict.fromkeys((ip, "127.0.0.1"))]
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ip)]))
        .issuer_name(ca_name)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    cert_file, key_file = directory / "pebble.crt", directory / "pebble.key"
    cert_file.write_bytes(_pem(leaf))
    key_file.write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    key_file.chmod(0o644)  # read by pebble in its container; a throw-away test key
    return cert_file, key_file, _pem(ca)


@dataclass
class Records:
    """What the DNS server answers: {name: [addresses]} (hosts directory, changeable while
    it runs), CAA {name: [(flags, tag, value)]} and TXT {name: [text]} (fixed at start)."""

    hosts: dict[str, list[str]] = field(default_factory=dict)
    caa: dict[str, list[tuple[int, str, str]]] = field(default_factory=dict)
    txt: dict[str, list[str]] = field(default_factory=dict)


def _caa_rdata(flags: int, tag: str, value: str) -> str:
    """CAA RDATA (RFC 8659) as the hex dnsmasq's dns-rr takes."""
    return (bytes([flags, len(tag)]) + tag.encode() + value.encode()).hex()


class DNSServer:
    def __init__(self, name: str, image: str, workdir: Path, records: Records):
        self.name, self.image, self.dir = name, image, workdir / "dns"
        (self.dir / "hosts.d").mkdir(parents=True)
        self.port = free_port(socket.SOCK_DGRAM)
        lines = [
            f"port={self.port}",
            "listen-address=127.0.0.1",
            "bind-interfaces",
            "no-resolv",
            "no-hosts",
            "user=root",
            "log-queries",
            f"local=/{ZONE}/",
            "hostsdir=/etc/dns/hosts.d",
        ]
        for host, texts in records.txt.items():
            lines += [f'txt-record={host},"{t}"' for t in texts]
        for host, entries in records.caa.items():
            lines += [f"dns-rr={host},257,{_caa_rdata(*e)}" for e in entries]
        (self.dir / "dnsmasq.conf").write_text("\n".join(lines) + "\n")
        self.set_hosts(records.hosts)

    def set_hosts(self, hosts: dict[str, list[str]]) -> None:
        """Replace the A/AAAA records (dnsmasq rereads the watched directory)."""
        text = "".join(f"{addr} {host}\n" for host, addrs in hosts.items() for addr in addrs)
        tmp = self.dir / "hosts.d" / ".records.tmp"
        tmp.write_text(text)
        tmp.replace(self.dir / "hosts.d" / "records")

    def start(self) -> None:
        docker(
            "run", "-d", "--name", self.name, "--network", "host",
            "-v", f"{self.dir}:/etc/dns:ro", self.image,
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while not self.answers():
            if time.monotonic() > deadline:
                raise AssertionError(f"dnsmasq did not answer: {self.logs()}")
            time.sleep(0.2)

    def answers(self) -> bool:
        import dns.exception
        import dns.message
        import dns.query

        try:
            dns.query.udp(dns.message.make_query(f"probe.{ZONE}", "A"), "127.0.0.1", timeout=0.5, port=self.port)
        except (dns.exception.Timeout, OSError):
            return False
        return True

    def logs(self) -> str:
        r = docker("logs", self.name, check=False)
        return r.stdout + r.stderr

    def stop(self) -> None:
        docker("rm", "-f", self.name, check=False)


class Pebble:
    """Pebble on the host network at <gateway>:<acme port>, management at <gateway>:<mgmt port>."""

    def __init__(self, name: str, image: str, workdir: Path, http_port: int, https_port: int, dns_port: int):
        self.name, self.image, self.dir = name, image, workdir / "pebble"
        self.dir.mkdir()
        self.host = bridge_gateway()
        self.port, self.mgmt_port = free_port(), free_port()
        self.http_port, self.https_port, self.dns_port = http_port, https_port, dns_port
        cert, key, self.https_ca_pem = make_server_certificate(self.host, self.dir)
        config = {
            "pebble": {
                "listenAddress": f"{self.host}:{self.port}",
                "managementListenAddress": f"{self.host}:{self.mgmt_port}",
                "certificate": f"/etc/pebble/{cert.name}",
                "privateKey": f"/etc/pebble/{key.name}",
                "httpPort": http_port,
                "tlsPort": https_port,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": False,
            }
        }
        (self.dir / "pebble-config.json").write_text(json.dumps(config, indent=2))
        self.context = ssl.create_default_context(cadata=self.https_ca_pem.decode())

    @property
    def directory(self) -> str:
        return f"https://{self.host}:{self.port}/dir"

    def start(self, **env: str) -> None:
        settings = {"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0", "PEBBLE_AUTHZREUSE": "0", **env}
        args = ["run", "-d", "--name", self.name, "--network", "host", "-v", f"{self.dir}:/etc/pebble:ro"]
        for k, v in settings.items():
            args += ["-e", f"{k}={v}"]
        docker(*args, self.image, "pebble", "-config", "/etc/pebble/pebble-config.json",
               "-dnsserver", f"127.0.0.1:{self.dns_port}")  # fmt: skip
        deadline = time.monotonic() + 30
        while True:
            try:
                self.get(self.directory)
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"pebble did not start: {self.logs()}") from None
                time.sleep(0.2)

    def restart(self, **env: str) -> None:
        """A fresh Pebble (new issuance root, no accounts or orders) with other settings."""
        self.stop()
        self.start(**env)

    def get(self, url: str) -> bytes:
        with urllib.request.urlopen(url, context=self.context, timeout=5) as r:
            return r.read()

    def account_for_key(self, key_pem: bytes) -> str | None:
        """The URL of the account Pebble holds for this P-256 account key, or None: a
        newAccount request with onlyReturnExisting (RFC 8555 7.3.1), signed with the key."""
        key = serialization.load_pem_private_key(key_pem, None)
        assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1", type(key)
        numbers = key.public_key().public_numbers()
        jwk = {"crv": "P-256", "kty": "EC", "x": _b64(numbers.x.to_bytes(32, "big")),
               "y": _b64(numbers.y.to_bytes(32, "big"))}  # fmt: skip
        directory = json.loads(self.get(self.directory))
        head = urllib.request.Request(directory["newNonce"], method="HEAD")
        with urllib.request.urlopen(head, context=self.context, timeout=5) as r:
            nonce = r.headers["Replay-Nonce"]
        header = {"alg": "ES256", "jwk": jwk, "nonce": nonce, "url": directory["newAccount"]}
        protected = _b64(json.dumps(header).encode())
        payload = _b64(json.dumps({"onlyReturnExisting": True}).encode())
        r_, s_ = decode_dss_signature(key.sign(f"{protected}.{payload}".encode(), ec.ECDSA(hashes.SHA256())))
        signature = _b64(r_.to_bytes(32, "big") + s_.to_bytes(32, "big"))
        body = json.dumps({"protected": protected, "payload": payload, "signature": signature}).encode()
        post = urllib.request.Request(directory["newAccount"], data=body, method="POST",
                                      headers={"Content-Type": "application/jose+json"})  # fmt: skip
        try:
            with urllib.request.urlopen(post, context=self.context, timeout=5) as r:
                return r.headers["Location"]
        except urllib.error.HTTPError as exc:
            problem = exc.read().decode(errors="replace")
            if "accountDoesNotExist" in problem:
                return None
            raise AssertionError(f"newAccount (onlyReturnExisting): HTTP {exc.code}: {problem}") from None

    def issuance_root_pem(self) -> bytes:
        return self.get(f"https://{self.host}:{self.mgmt_port}/roots/0")

    def trust_bundle(self, path: Path) -> Path:
        """One PEM file with Pebble's HTTPS CA (Caddy talks to the ACME server) and its
        issuance root (the tool verifies the certificates Caddy obtained)."""
        path.write_bytes(self.https_ca_pem + self.issuance_root_pem())
        return path

    def logs(self) -> str:
        r = docker("logs", self.name, check=False)
        return r.stdout + r.stderr

    def issued(self) -> int:
        """Certificates Pebble issued since it started (one per finalized order)."""
        return len(re.findall(r"Issued certificate serial", self.logs()))

    def orders(self) -> int:
        """Orders Pebble accepted since it started (new-order requests that succeeded)."""
        return len(re.findall(r"Added order", self.logs()))

    def stop(self) -> None:
        docker("rm", "-f", self.name, check=False)
