"""The tracker's REST API as the probes use it, with the admin token.

The token goes in an `Authorization: Bearer` header where the release accepts one, and in
the query string only where it does not (v3.0.0). Either way it is sent only on a path
where it cannot leak (reach.credential_refusal): verified TLS, or plain HTTP to this
machine itself. A certificate that fails verification stops the request during the
handshake, before the token is sent: the call is then skipped with the reason.
"""

from __future__ import annotations

import json
import ssl
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field

from tasks.config.trackers import TrackerRelease
from tasks.health import http as h
from tasks.health.reach import ProbeFailed, ProbeSkipped, Reach, credential_refusal

KEY_SECONDS = 300  # lifetime of a probe's announce key (deleted after use anyway)


def mask(text: str, secret: str) -> str:
    """Hide a secret in any form a server might echo it: raw or URL-encoded."""
    for form in {secret, urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret)}:
        text = text.replace(form, "********")
    return text


@dataclass(frozen=True)
class Api:
    reach: Reach
    family: int
    name: str  # the API's public name (Host, SNI)
    token: str
    release: TrackerRelease
    timeout: float

    def call(self, method: str, path: str, payload: dict | None = None) -> h.Response:
        refusal = credential_refusal(self.reach, self.family, self.name)
        if refusal:
            raise ProbeSkipped(f"{refusal}; the admin token was not sent")
        headers = {"Content-Type": "application/json"} if payload is not None else {}
        if self.release.header_token:
            headers["Authorization"] = f"Bearer {self.token}"
        else:
            sep = "&" if "?" in path else "?"
            path = f"{path}{sep}{urllib.parse.urlencode({'token': self.token})}"
        body = json.dumps(payload).encode() if payload is not None else None
        try:
            return h.request(
                method,
                self.reach.addresses[self.family],
                self.reach.port,
                self.name,
                path,
                tls=self.reach.tls,
                context=self.reach.secure_context(self.name),
                timeout=self.timeout,
                headers=headers,
                body=body,
            )
        except ssl.SSLCertVerificationError as exc:
            raise ProbeSkipped(
                f"the certificate of {self.name} is not trusted ({exc.verify_message}); the admin token was not sent"
            ) from None

    def error(self, r: h.Response, what: str) -> ProbeFailed:
        text = mask(r.body.decode("utf-8", "replace"), self.token)[:160]  # mask first, then cut
        hint = " (is the admin token right?)" if r.status in (401, 403, 500) else ""
        return ProbeFailed(f"{what}: HTTP {r.status}: {text}{hint}")

    def ok_status(self, r: h.Response, what: str) -> dict:
        if r.status != 200:
            raise self.error(r, what)
        return json.loads(r.body)


@dataclass
class AdminSetup:
    """Admin actions the tracker probes of one run share: whitelisting the canary
    (listed mode) once, and a short-lived key per HTTP announce (private mode)."""

    api_for: Callable[[int], Api]  # family -> client
    info_hash_hex: str
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _whitelisted: bool = False

    def whitelist(self, family: int) -> str | None:
        """Whitelist the canary (idempotent in the tracker). None when done, else why not."""
        with self._lock:
            if self._whitelisted:
                return None
            api = self.api_for(family)
            try:
                api.ok_status(
                    api.call("POST", api.release.whitelist_route.format(info_hash=self.info_hash_hex)), "whitelist"
                )
            except (ProbeSkipped, ProbeFailed) as exc:
                return f"whitelisting the canary failed: {exc}"
            self._whitelisted = True
            return None

    def new_key(self, family: int) -> tuple[str | None, str]:
        """(key, "") or (None, why not)."""
        api = self.api_for(family)
        try:
            reply = api.ok_status(
                api.call("POST", api.release.key_route, {"key": None, "seconds_valid": KEY_SECONDS}), "key"
            )
        except (ProbeSkipped, ProbeFailed) as exc:
            return None, f"no key: {exc}"
        key = reply.get("key") if isinstance(reply, dict) else None
        if not isinstance(key, str) or not key.isalnum():
            return None, f"no key: unexpected reply {str(reply)[:80]!r}"
        return key, ""

    def delete_key(self, family: int, key: str) -> None:
        api = self.api_for(family)
        try:
            api.call("DELETE", api.release.key_delete_route.format(key=key))
        except (ProbeSkipped, OSError, ValueError):
            pass  # the key expires by itself (KEY_SECONDS)
