"""How a raw setting string becomes a typed value: one converter per kind, in a table.

A converter gets the variable, the stripped raw value and a `Check` (which collects
problems and knows whether the environment is strict, i.e. not `local`). It returns the
typed value, or a fallback after reporting a problem: every problem is collected, none
stops the others. The kind also says the Python type of the value and the "allowed"
wording that errors, `.env.example` and the README share.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from tasks.config import secrets as sec
from tasks.config.secrets import Secret

MOVING_TAGS = frozenset({"latest", "develop", "main", "master", "nightly", "edge", "dev"})
DOC_DOMAINS = ("example.com", "example.net", "example.org")
MAX_LENGTH = 4096  # no value needs more; a longer one is refused before any other check
LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
# An absolute path the host's shell and cron handle without quoting surprises.
ABSPATH_RE = re.compile(r"/[A-Za-z0-9._/-]*[A-Za-z0-9._-]")


@dataclass(frozen=True)
class Bind:
    host: str  # as written, without brackets: "::", "0.0.0.0", "127.0.0.1"
    port: int

    @property
    def family(self) -> int:
        return 6 if ":" in self.host else 4

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if self.family == 6 else f"{self.host}:{self.port}"


class Check(Protocol):
    strict: bool

    def fail(self, name: str, message: str, *, show: str | None = None) -> None: ...


@dataclass(frozen=True)
class Kind:
    name: str
    type: Any
    convert: Callable[[Check, Any, str], Any]  # (check, var, value) -> typed value
    fallback: Any
    allowed: Callable[[Any], str] = lambda var: ""


# ------------------------------------------------------------------------ converters
def _str(check: Check, var, value: str) -> str:
    if var.pattern and not re.fullmatch(var.pattern, value):
        check.fail(var.name, var.pattern_message or "not in the allowed form")
    return value


def _int(check: Check, var, value: str) -> int:
    if not re.fullmatch(r"[0-9]{1,10}", value):
        check.fail(var.name, "not a whole number")
        return int(var.default or 0)
    number = int(value)
    if (var.minimum is not None and number < var.minimum) or (var.maximum is not None and number > var.maximum):
        check.fail(var.name, "out of range")
    return number


TRUE, FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


def _bool(check: Check, var, value: str) -> bool:
    low = value.lower()
    if low in TRUE or low in FALSE:
        return low in TRUE
    check.fail(var.name, "not a boolean")
    return False


def _enum(check: Check, var, value: str) -> str:
    if value not in var.choices:
        check.fail(var.name, "not one of the allowed values")
        return var.default
    return value


def _secret(check: Check, var, value: str) -> Secret:
    if value == "":
        return Secret("")  # required-ness depends on other settings: a section rule decides
    bad = sec.bad_characters(value)
    if bad:
        check.fail(var.name, f"contains characters that are not allowed ({len(bad)} kinds)")
    elif check.strict and sec.looks_like_placeholder(value):
        check.fail(var.name, "still a placeholder; run app.config or set a real secret")
    elif check.strict and (why := sec.weakness(value)):
        check.fail(var.name, f"weak secret: {why}")
    return Secret(value)


def _credential(check: Check, var, value: str) -> Secret:
    """A secret someone else issued (an SMTP password): kept secret, not judged for strength."""
    if sec.bad_characters(value):
        check.fail(var.name, "contains characters that are not allowed")
    return Secret(value)


URL_RE = re.compile(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~!&'()*+,;=:@%/?-]*)?")


def _secret_url(check: Check, var, value: str) -> Secret:
    """A URL whose path holds a token (a webhook): http(s), kept secret."""
    if not URL_RE.fullmatch(value):
        check.fail(var.name, "not an http(s) URL")
    elif check.strict and value.startswith("http://"):
        check.fail(var.name, "sends its token unencrypted: use https")
    return Secret(value)


BIND_RE = re.compile(r"\[([0-9A-Fa-f:.]+)\]:([0-9]{1,5})|([0-9.]+):([0-9]{1,5})")


def _bind(check: Check, var, item: str) -> Bind | None:
    m = BIND_RE.fullmatch(item)
    host = (m.group(1) or m.group(3)) if m else ""
    port = int(m.group(2) or m.group(4)) if m else 0
    try:
        ip = ipaddress.ip_address(host)
        if (ip.version == 6) != bool(m and m.group(1)):
            raise ValueError
    except ValueError:
        check.fail(var.name, f"{item!r} is not HOST:PORT with an IP address (IPv6 in brackets)")
        return None
    if not 1 <= port <= 65535:
        check.fail(var.name, f"port {port} out of range 1-65535")
        return None
    return Bind(host, port)


def _binds(check: Check, var, value: str) -> tuple[Bind, ...]:
    items = [i.strip() for i in value.split(",")] if value else []
    if not items:
        check.fail(var.name, "expected at least one address")
        return ()
    binds = [b for b in (_bind(check, var, i) for i in items) if b]
    ports = [b.port for b in binds]
    dupes = sorted({p for p in ports if ports.count(p) > 1})
    if dupes:
        check.fail(var.name, f"port {dupes[0]} is used twice")
    return tuple(binds)


def _single_bind(check: Check, var, value: str) -> Bind:
    if not value or "," in value:
        check.fail(var.name, "expected exactly one address")
        return Bind("0.0.0.0", 1)
    return _bind(check, var, value) or Bind("0.0.0.0", 1)


def domain_name(check: Check, var, value: str, whole: str) -> str:
    name = value.lower().rstrip(".")
    if not re.fullmatch(rf"{LABEL}(\.{LABEL})+", name) or len(name) > 253:
        check.fail(var.name, f"{value[:80]!r} is not a fully qualified domain name", show=whole)
        return name
    if check.strict and (name in DOC_DOMAINS or name.endswith(tuple("." + d for d in DOC_DOMAINS))):
        check.fail(var.name, f"{value!r} is reserved for documentation; use your own domain", show=whole)
    return name


def _domain(check: Check, var, value: str) -> str:
    return domain_name(check, var, value, value)


def _domains(check: Check, var, value: str) -> tuple[str, ...]:
    return tuple(domain_name(check, var, d.strip(), value) for d in value.split(","))


def _email(check: Check, var, value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}", value):
        check.fail(var.name, "not an email address")
    return value


IMAGE_RE = re.compile(
    r"((?:[A-Za-z0-9.-]+(?::[0-9]+)?/)?[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*)"
    r"(?::([A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?(?:@(sha256:[0-9a-f]{64}))?"
)
# Registry hosts that are Docker Hub: a name there is the same image as without the host.
DOCKER_HUB = ("docker.io", "index.docker.io", "registry-1.docker.io")


@dataclass(frozen=True)
class ImageRef:
    """An image reference split as Docker splits it: NAME[:TAG][@DIGEST]."""

    name: str  # as written, with its registry host and port if any
    tag: str | None = None
    digest: str | None = None

    @property
    def repository(self) -> str:
        """Docker's familiar name: Docker Hub's host and its `library/` namespace dropped,
        so `docker.io/library/caddy`, `index.docker.io/caddy` and `caddy` are one repository
        (`docker image inspect` names RepoDigests this way); another registry's name is kept."""
        host, _, rest = self.name.partition("/")
        name = rest if rest and host in DOCKER_HUB else self.name
        return name.removeprefix("library/") if name.startswith("library/") and name.count("/") == 1 else name


def image_ref(value: str) -> ImageRef | None:
    """The parts of an image reference, or None when `value` is not one. The one parser of
    image references: settings validation, release lookup and digest records use it."""
    m = IMAGE_RE.fullmatch(value.strip())
    return ImageRef(*m.groups()) if m else None


def _image(check: Check, var, value: str) -> str:
    ref = image_ref(value)
    if ref is None:
        check.fail(var.name, "not an image reference")
        return var.default
    tag, digest = ref.tag, ref.digest
    if not tag and not digest:
        check.fail(var.name, "has no tag: pin a release tag or a digest")
    elif tag in MOVING_TAGS and not digest and check.strict:
        check.fail(var.name, f"tag '{tag}' moves; pin a release tag or a digest")
    return value


CRON_SHORTHANDS = ("@hourly", "@daily", "@midnight", "@weekly", "@monthly", "@yearly", "@annually")
CRON_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12), ("day of week", 0, 7))
CRON_PART = re.compile(r"(\*|([0-9]+)(?:-([0-9]+))?)(?:/([0-9]+))?")


def _cron(check: Check, var, value: str) -> str:
    if value in CRON_SHORTHANDS:
        return value
    fields = value.split()
    if len(fields) != 5 or re.search(r"[^\S ]", value):
        check.fail(var.name, f"has {len(fields)} fields, cron needs 5 separated by spaces")
        return var.default
    for text, (label, lo, hi) in zip(fields, CRON_FIELDS, strict=True):
        for part in text.split(","):
            m = CRON_PART.fullmatch(part)
            nums = [int(n) for n in (m.group(2), m.group(3)) if n] if m else []
            step = int(m.group(4)) if m and m.group(4) else None
            if not m or any(not lo <= n <= hi for n in nums) or step == 0 or (len(nums) == 2 and nums[0] > nums[1]):
                check.fail(var.name, f"{label} field {text!r} is invalid (range {lo}-{hi})")
                return var.default
    return value


def _file(check: Check, var, value: str) -> Path:
    """A file on this machine (a key, known_hosts): a path, never a directory."""
    path = Path(value).expanduser()
    if path.is_dir():
        check.fail(var.name, "is a directory; name a file")
    elif var.must_exist and not path.is_file():
        check.fail(var.name, "file not found")
    return path


def _abspath(check: Check, var, value: str) -> str:
    """An absolute directory on the target: safe for shell, cron and Compose unquoted."""
    if not ABSPATH_RE.fullmatch(value) or ".." in value.split("/") or "//" in value:
        check.fail(var.name, "must be an absolute path of letters, digits, '.', '_', '-' and '/', without '..'")
    return value


def _subnet6(check: Check, var, value: str) -> str:
    try:
        net = ipaddress.IPv6Network(value, strict=True)
    except ValueError as exc:
        check.fail(var.name, f"not an IPv6 network ({exc})")
        return var.default
    if not 48 <= net.prefixlen <= 112:
        check.fail(var.name, f"prefix /{net.prefixlen} out of range")
    return str(net)


def _duration(check: Check, var, value: str) -> str:
    if not re.fullmatch(r"[1-9][0-9]{0,5}[hdwy]", value):
        check.fail(var.name, "not a duration")
    return value


HOSTNAME_RE = re.compile(rf"{LABEL}(\.{LABEL})*", re.IGNORECASE)


def _host(check: Check, var, value: str) -> str:
    """A host name or an IP address: what ssh, known_hosts and URLs accept unquoted."""
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        pass
    if len(value) > 253 or not HOSTNAME_RE.fullmatch(value):
        check.fail(var.name, "not a host name or IP address")
    return value


def _address(version: int) -> Callable[[Check, Any, str], str]:
    def convert(check: Check, var, value: str) -> str:
        if value == "none":
            return value
        try:
            if ipaddress.ip_address(value).version != version:
                raise ValueError
        except ValueError:
            check.fail(var.name, f"not an IPv{version} address")
        return value

    return convert


def _ip(check: Check, var, value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        check.fail(var.name, "not an IP address")
        return value


# ACME directories known by name; any other directory is given as its https URL.
ACME_DIRECTORIES = {
    "letsencrypt": "https://acme-v02.api.letsencrypt.org/directory",
    "letsencrypt-staging": "https://acme-staging-v02.api.letsencrypt.org/directory",
}
# An https URL the Caddyfile holds unquoted: a host name, IPv4 or [IPv6], a port, a path.
ACME_URL_RE = re.compile(r"https://(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?(?:/[A-Za-z0-9._~%/-]*)?")


def _acme_ca(check: Check, var, value: str) -> str:
    if value in ACME_DIRECTORIES or ACME_URL_RE.fullmatch(value):
        return value
    why = "an ACME directory must be an https URL" if value.startswith("http://") else "not a known CA or an https URL"
    check.fail(var.name, why)
    return var.default


def _subset(check: Check, var, value: str) -> tuple[str, ...]:
    """A comma-separated, non-empty subset of `var.choices`, in the table's order."""
    items = [i.strip().lower() for i in value.split(",") if i.strip()]
    unknown = [i for i in items if i not in var.choices]
    if unknown or not items:
        check.fail(var.name, f"{unknown[0]!r} is not an allowed value" if unknown else "name at least one")
        return tuple(var.default.split(","))
    return tuple(c for c in var.choices if c in items)


def _resolver(check: Check, var, value: str) -> str:
    """A DNS server: an IP address, or IP:PORT ([IPv6]:PORT)."""
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        pass
    bind = _bind(check, var, value)
    return str(bind) if bind else value


def _public_ips(check: Check, var, value: str) -> tuple[str, ...]:
    """Comma-separated public IP addresses: no loopback, unspecified, multicast or
    link-local address, no duplicate (normalised)."""
    found: list[str] = []
    for item in (i.strip() for i in value.split(",")):
        try:
            ip = ipaddress.ip_address(item)
        except ValueError:
            check.fail(var.name, f"{item[:60]!r} is not an IP address")
            continue
        if ip.is_loopback or ip.is_unspecified or ip.is_multicast or ip.is_link_local:
            check.fail(var.name, f"{ip} is not a public address (loopback, unspecified, multicast or link-local)")
        elif str(ip) in found:
            check.fail(var.name, f"{ip} is listed twice")
        else:
            found.append(str(ip))
    return tuple(found)


def _range(var) -> str:
    return f"a whole number from {var.minimum} to {var.maximum}"


DOMAIN_ALLOWED = "a fully qualified domain name such as tracker.torrust.example"
KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind("str", str, _str, ""),
        Kind("int", int, _int, 0, _range),
        Kind("bool", bool, _bool, False, lambda v: "true or false"),
        Kind("enum", str, _enum, "", lambda v: ", ".join(v.choices)),
        Kind("secret", Secret, _secret, Secret(""), lambda v: sec.ALLOWED),
        Kind("credential", Secret, _credential, Secret(""), lambda v: "printable characters without spaces or quotes"),
        Kind("secret_url", Secret, _secret_url, Secret(""), lambda v: "an https URL"),
        Kind("binds", tuple, _binds, ()),
        Kind("bind", Bind, _single_bind, Bind("0.0.0.0", 1)),
        Kind("domain", str, _domain, "", lambda v: DOMAIN_ALLOWED),
        Kind("domains", tuple, _domains, (), lambda v: DOMAIN_ALLOWED),
        Kind("email", str, _email, "", lambda v: "an email address"),
        Kind("image", str, _image, ""),
        Kind("cron", str, _cron, ""),
        Kind("file", Path, _file, None),
        Kind("abspath", str, _abspath, "", lambda v: "an absolute path without '..'"),
        Kind("subnet6", str, _subnet6, ""),
        Kind("duration", str, _duration, ""),
        Kind("host", str, _host, "", lambda v: "a host name or an IP address"),
        Kind("ipv4", str, _address(4), "", lambda v: "an IPv4 address, or none"),
        Kind("ipv6", str, _address(6), "", lambda v: "an IPv6 address, or none"),
        Kind("ip", str, _ip, "", lambda v: "an IP address"),
        Kind("public_ips", tuple, _public_ips, (), lambda v: "IPv4 or IPv6 addresses, comma-separated"),
        Kind("acme_ca", str, _acme_ca, "", lambda v: ", ".join(ACME_DIRECTORIES) + ", or an https:// directory URL"),
        Kind("subset", tuple, _subset, (), lambda v: "one or more of " + ", ".join(v.choices) + ", comma-separated"),
        Kind("resolver", str, _resolver, "", lambda v: "an IP address, or IP:PORT ([IPv6]:PORT)"),
    )
}
