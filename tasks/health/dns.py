"""The DNS preflight of `app.preflight` (issue 14): will the CA find this host?

For every name the proxy gets an ACME certificate for:

- A and AAAA: every address points at this host (the probe addresses: TORRUST_PROBE_IPV4/6,
  the SSH host, or loopback for the local target). A stale AAAA is the classic failure:
  CAs try IPv6 first. A missing AAAA is a warning (IPv6 clients cannot connect), a
  missing A a failure.
- CAA (RFC 8659): the closest CAA record set up the tree must allow the CA's identity
  (TORRUST_ACME_CAA, letsencrypt.org for Let's Encrypt).
- The challenge ports: a TCP connection from here to each host address on the port each
  allowed challenge uses. Refused is fine before a first deploy (nothing listens yet);
  no answer means a firewall drops it, and the CA cannot validate through it.

With TORRUST_DNS_BEP34, the BEP 34 TXT record of TORRUST_DOMAIN must list every UDP
tracker port and the HTTP(S) port ("BITTORRENT UDP:6969 TCP:443"), and not "DENY".

The judgments are pure functions over what a lookup returned (tested on recorded
answers, tests/unit/facts/recorded/dns/); `resolver()` asks real DNS with dnspython.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import asdict, dataclass

import dns.exception
import dns.resolver

from tasks.config.settings import Settings

OK, WARN, FAIL = "ok", "warn", "fail"
CHALLENGE_PORT = {"http-01": "http_port", "tls-alpn-01": "https_port"}


@dataclass(frozen=True)
class Answer:
    """What a lookup of (name, type) gave: records as text, or why there are none."""

    records: tuple[str, ...] = ()
    missing: str = ""  # "" (records or none of this type) | "nxdomain" | "error: ..."


Lookup = Callable[[str, str], Answer]


@dataclass(frozen=True)
class Finding:
    check: str  # "A", "AAAA", "CAA", "port 80/tcp (http-01)", "BEP 34"
    name: str
    status: str  # ok | warn | fail
    detail: str

    def as_dict(self) -> dict:
        return asdict(self)


# ------------------------------------------------------------------------ lookups
def resolver(server: str = "", timeout: float = 5.0) -> Lookup:
    """A lookup through `server` ("IP" or "IP:PORT", [IPv6]:PORT) or the system's resolvers."""
    r = dns.resolver.Resolver(configure=not server)
    if server:
        host, port = _split(server)
        r.nameservers, r.port = [host], port
    r.lifetime = timeout

    def lookup(name: str, rdtype: str) -> Answer:
        try:
            return Answer(tuple(rr.to_text() for rr in r.resolve(name, rdtype)))
        except dns.resolver.NXDOMAIN:
            return Answer(missing="nxdomain")
        except dns.resolver.NoAnswer:
            return Answer()
        except (dns.exception.DNSException, OSError) as exc:
            return Answer(missing=f"error: {type(exc).__name__}: {str(exc)[:160]}")

    return lookup


def _split(server: str) -> tuple[str, int]:
    if server.startswith("["):
        host, _, port = server[1:].partition("]:")
        return host, int(port)
    if server.count(":") == 1:
        host, port = server.split(":")
        return host, int(port)
    return server, 53


# ------------------------------------------------------------------------ judgments (pure)
def expected_addresses(s: Settings, lookup: Lookup) -> dict[int, set[str]]:
    """{4: {...}, 6: {...}}: the addresses this host answers on, as the probes see it."""
    out: dict[int, set[str]] = {4: set(), 6: set()}
    for fam, configured, loopback in ((4, s.probe_ipv4, "127.0.0.1"), (6, s.probe_ipv6, "::1")):
        if configured == "none":
            continue
        if configured:
            out[fam].add(configured)
        elif s.target == "local":
            out[fam].add(loopback)
        else:
            out[fam] |= _host_addresses(s.ssh.host, fam, lookup)
    return out


def _host_addresses(host: str, fam: int, lookup: Lookup) -> set[str]:
    try:
        ip = ipaddress.ip_address(host)
        return {str(ip)} if ip.version == fam else set()
    except ValueError:
        return set(lookup(host, "A" if fam == 4 else "AAAA").records)


def address_findings(name: str, rdtype: str, answer: Answer, expected: set[str]) -> Finding:
    want = ", ".join(sorted(expected)) or "none"
    if answer.missing == "nxdomain":
        return Finding(rdtype, name, FAIL, "the name does not exist (NXDOMAIN): create the record")
    if answer.missing:
        return Finding(rdtype, name, FAIL, f"lookup failed: {answer.missing.removeprefix('error: ')}")
    got = {str(ipaddress.ip_address(r)) for r in answer.records}
    stray = sorted(got - expected)
    if stray:
        where = f"this host is {want}" if expected else f"this host has no IPv{'4' if rdtype == 'A' else '6'} address"
        return Finding(
            rdtype, name, FAIL, f"points at {', '.join(stray)}, but {where}: the CA would validate another machine"
        )
    if not got and expected:
        status = FAIL if rdtype == "A" else WARN
        why = "the CA and IPv4 clients cannot find this host" if rdtype == "A" else "IPv6 clients cannot connect"
        return Finding(rdtype, name, status, f"no {rdtype} record (this host is {want}): {why}")
    return Finding(rdtype, name, OK, ", ".join(sorted(got)) if got else "none (and none expected)")


def caa_finding(name: str, lookup: Lookup, identity: str) -> Finding:
    """RFC 8659: the first CAA set found walking up from `name` decides; `issue` tags list
    the CAs allowed (a value of ';' allows none); no set at all allows every CA."""
    labels = name.rstrip(".").split(".")
    for i in range(len(labels) - 1):
        at = ".".join(labels[i:])
        answer = lookup(at, "CAA")
        if answer.missing.startswith("error"):
            return Finding("CAA", name, FAIL, f"lookup at {at} failed: {answer.missing.removeprefix('error: ')}")
        issuers = [_caa_issuer(r) for r in answer.records if _caa_tag(r) == "issue"]
        if not answer.records:
            continue
        if not issuers:
            return Finding("CAA", name, OK, f"CAA at {at} has no issue tag: any CA may issue")
        if identity in issuers:
            return Finding("CAA", name, OK, f"CAA at {at} allows {identity}")
        allowed = ", ".join(sorted({i for i in issuers if i})) or "no CA at all"
        return Finding(
            "CAA", name, FAIL, f'CAA at {at} allows {allowed}, not {identity}: add `{at}. CAA 0 issue "{identity}"`'
        )
    return Finding("CAA", name, OK, "no CAA records: any CA may issue")


def _caa_tag(record: str) -> str:
    parts = record.split(None, 2)
    return parts[1].lower() if len(parts) == 3 else ""


def _caa_issuer(record: str) -> str:
    value = record.split(None, 2)[2].strip().strip('"')
    return value.split(";", 1)[0].strip().lower()


def bep34_finding(domain: str, answer: Answer, udp_ports: list[int], tcp_port: int) -> Finding:
    """The BEP 34 TXT record: "BITTORRENT" then UDP:port / TCP:port tokens, or DENY."""
    texts = [r.strip('"') for r in answer.records if r.strip('"').upper().startswith("BITTORRENT")]
    want = " ".join([*(f"UDP:{p}" for p in udp_ports), f"TCP:{tcp_port}"])
    if not texts:
        return Finding("BEP 34", domain, FAIL, f'no "BITTORRENT" TXT record: add `{domain}. TXT "BITTORRENT {want}"`')
    tokens = {t.upper() for t in texts[0].split()[1:]}
    if "DENY" in tokens:
        return Finding("BEP 34", domain, FAIL, "the record says DENY: clients are told not to use this tracker")
    missing = [t for t in want.split() if t not in tokens]
    if missing:
        return Finding(
            "BEP 34", domain, FAIL, f'"{texts[0]}" lacks {", ".join(missing)} (expected "BITTORRENT {want}")'
        )
    return Finding("BEP 34", domain, OK, texts[0])


# ------------------------------------------------------------------------ ports
def port_finding(address: str, port: int, challenge: str, timeout: float) -> Finding:
    check = f"port {port}/tcp ({challenge})"
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return Finding(check, address, OK, "open: a server answers (the proxy, once deployed)")
    except ConnectionRefusedError:
        return Finding(check, address, WARN, "refused: nothing listens yet (fine before the first deploy)")
    except TimeoutError:
        return Finding(
            check, address, FAIL, f"no answer in {timeout:.0f}s: a firewall drops it, the CA cannot validate"
        )
    except OSError as exc:
        return Finding(check, address, FAIL, f"unreachable: {exc.strerror or exc}")


# ------------------------------------------------------------------------ the preflight
def preflight(s: Settings, lookup: Lookup, connect=port_finding, timeout: float = 3.0) -> list[Finding]:
    """Every DNS finding for the environment: empty when nothing applies (TLS off or only
    internal names, and no BEP 34 check)."""
    findings: list[Finding] = []
    expected = expected_addresses(s, lookup) if s.acme_names else {4: set(), 6: set()}
    for name in s.acme_names:
        findings.append(address_findings(name, "A", lookup(name, "A"), expected[4]))
        findings.append(address_findings(name, "AAAA", lookup(name, "AAAA"), expected[6]))
        if s.acme_caa:
            findings.append(caa_finding(name, lookup, s.acme_caa))
    if s.acme_names:
        for challenge in s.acme_challenges:
            port = getattr(s, CHALLENGE_PORT[challenge])
            findings += [connect(a, port, challenge, timeout) for fam in (4, 6) for a in sorted(expected[fam])]
    if s.dns_bep34:
        tcp = s.https_port if s.tls else s.http_port
        findings.append(bep34_finding(s.domain, lookup(s.domain, "TXT"), [b.port for b in s.udp_trackers], tcp))
    return findings


def problems(findings: list[Finding], challenges: tuple[str, ...]) -> list[str]:
    """The failures that stop a deploy. A challenge port is one only when every allowed
    challenge is blocked (the CA needs one way in)."""
    ports = [f for f in findings if f.check.startswith("port ")]
    blocked = {c for c in challenges if any(f.status == FAIL and f.check.endswith(f"({c})") for f in ports)}
    port_ok = blocked != set(challenges)
    return [
        f"{f.check} {f.name}: {f.detail}"
        for f in findings
        if f.status == FAIL and (not f.check.startswith("port ") or not port_ok)
    ]
