"""The proxy's certificate story, from its log: which names got a certificate, and why
the others did not (the challenge that failed and the CA's problem, as Caddy logs them).

Caddy writes one JSON object per line. The lines that matter (Caddy 2.6, checked against
Pebble on this machine; recorded under tests/unit/facts/recorded/proxy-log/):

- `certificate obtained successfully` (logger tls.obtain): the name has one now;
- `challenge failed` (http.acme_client): identifier, challenge_type, problem_type, error;
- `could not get certificate from issuer` (tls.obtain): the order failed before or
  without a challenge (a refused account, a bad nonce, a rate limit).

Anything else (other messages, lines that are not JSON objects, fields of the wrong
type) is skipped: a log is evidence to show, never a document the tool acts on. Texts are
cut and stripped of control characters before anyone prints them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from tasks.commands import docker
from tasks.config.variables import BY_NAME
from tasks.runner.executor import Executor

OBTAINED = "certificate obtained successfully"
CHALLENGE_FAILED = "challenge failed"
ISSUER_FAILED = "could not get certificate from issuer"
MAX_DETAIL = 300
ACME_ERROR = "urn:ietf:params:acme:error:"
# The CA could not verify the account's signature: the stored registration belongs to
# another key. Caddy before 2.9 can store its account so when it registers for several
# names at once (caddyserver/certmagic#293); every order of that account fails from then on.
ACCOUNT_MISMATCH = "JWS verification error"
ACCOUNT_HINT = (
    "the proxy's stored ACME account does not match its key (Caddy before 2.9 can store it so: "
    f"caddyserver/certmagic#293); use {BY_NAME['TORRUST_CADDY_IMAGE'].default} or later, "
    "move storage/proxy/data/caddy/acme/*/users "
    "aside and restart the proxy: it registers a new account"
)


@dataclass(frozen=True)
class Failure:
    name: str
    challenge: str  # http-01, tls-alpn-01, or "" when the order failed before a challenge
    problem: str  # the ACME problem type without its URN prefix ("connection", "badNonce", ...)
    detail: str

    def __str__(self) -> str:
        what = f"{self.challenge} challenge failed" if self.challenge else "the CA refused the order"
        text = f"{self.name}: {what}" + (f" ({self.problem})" if self.problem else "") + f": {self.detail}"
        return text + (f"; {ACCOUNT_HINT}" if ACCOUNT_MISMATCH in self.detail else "")


@dataclass(frozen=True)
class CertificateLog:
    obtained: tuple[str, ...]  # names with a certificate obtained, in log order
    failures: dict[str, Failure]  # name -> its last failure (a challenge failure wins over a later summary)

    def failure(self, name: str) -> Failure | None:
        return None if name in self.obtained else self.failures.get(name)


def command(project: str, release_dir: str, since: str) -> list[str]:
    return docker.compose(project, release_dir, "logs", "--no-color", "--no-log-prefix", "--since", since, "proxy")


def _clean(text: object) -> str:
    s = "".join(c if c.isprintable() else " " for c in str(text))
    s = " ".join(s.split())
    return s if len(s) <= MAX_DETAIL else s[: MAX_DETAIL - 3] + "..."


def _problem(entry: dict) -> str:
    kind = entry.get("problem_type")
    if isinstance(kind, str) and kind:
        return _clean(kind.removeprefix(ACME_ERROR))
    error = entry.get("error")
    if isinstance(error, str) and ACME_ERROR in error:
        return _clean(error.split(ACME_ERROR, 1)[1].split()[0])
    return ""


def _entries(text: str):
    for line in text.splitlines():
        try:  # `compose logs` may put a terminal control sequence (ESC [2K) before the JSON
            entry = json.loads(line[line.find("{") :])
        except ValueError:
            continue
        if isinstance(entry, dict) and isinstance(entry.get("identifier"), str) and entry["identifier"]:
            yield entry


def parse(text: str) -> CertificateLog:
    obtained: list[str] = []
    failures: dict[str, Failure] = {}
    for entry in _entries(text):
        name, msg = _clean(entry["identifier"]), entry.get("msg")
        if msg == OBTAINED:
            obtained.append(name)
            failures.pop(name, None)
        elif msg == CHALLENGE_FAILED:
            challenge = entry.get("challenge_type")
            failures[name] = Failure(
                name,
                _clean(challenge) if isinstance(challenge, str) else "",
                _problem(entry),
                _clean(entry.get("error", "")),
            )
        elif msg == ISSUER_FAILED and (name not in failures or not failures[name].challenge):
            failures[name] = Failure(name, "", _problem(entry), _clean(entry.get("error", "")))
    return CertificateLog(tuple(dict.fromkeys(obtained)), failures)


def read(ex: Executor, project: str, release_dir: str, since: str) -> CertificateLog:
    """The proxy's log since `since` (RFC 3339 or a Docker duration such as 10m); an
    unreadable log is an empty story, not an error (the caller is already failing)."""
    r = ex.run(command(project, release_dir, since), check=False, timeout=60)
    return parse(r.stdout + "\n" + r.stderr)
