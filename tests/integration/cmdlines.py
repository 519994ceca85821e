"""Watch every process command line on this machine while an operation runs, then look
for secrets in them, raw or in the forms an encoder gives them.

The SSH test host is a container: the deploy user's commands (the Compose CLI, the host
scripts, `docker exec` clients) and the stack's own containers all run in child PID
namespaces of this machine's, so one sampler over this machine's /proc sees all of them.
A sampler can miss a process that lives shorter than one sweep; `canary()` measures that
the watcher catches a short command run on the SSH host through the deploy user's
session, so a watcher that sees nothing is a failure, not a pass.

    with CmdlineWatcher() as seen:
        run the operation
    assert secrets_in(seen.cmdlines, secrets) == []
"""

from __future__ import annotations

import base64
import os
import threading
from urllib.parse import quote, quote_plus


def encoded_forms(secret: str) -> dict[str, str]:
    """The secret as written and as URLs, form bodies and base64 carry it."""
    return {
        "raw": secret,
        "percent-encoded": quote(secret, safe=""),
        "url path": quote(secret),
        "form": quote_plus(secret),
        "base64": base64.b64encode(secret.encode()).decode(),
    }


def secrets_in(cmdlines: set[str], secrets: dict[str, str]) -> list[str]:
    """'NAME (form) in: <command line>' for every secret form found; [] when clean. The
    command line is shown masked, so a failure does not print the secret either."""
    found = []
    for name, secret in secrets.items():
        for form, text in encoded_forms(secret).items():
            for line in sorted(cmdlines):
                if text in line:
                    found.append(f"{name} ({form}) in: {line.replace(text, '<' + name + '>')[:300]}")
    return found


class CmdlineWatcher:
    """A thread that sweeps /proc/*/cmdline until stopped, keeping each distinct line."""

    def __init__(self, proc: str = "/proc"):
        self.proc = proc
        self.cmdlines: set[str] = set()
        self.sweeps = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cmdline-watcher", daemon=True)

    def _sweep(self) -> None:
        for pid in os.listdir(self.proc):
            if not pid.isdigit():
                continue
            try:
                with open(f"{self.proc}/{pid}/cmdline", "rb") as fh:
                    raw = fh.read()
            except OSError:  # the process ended between listdir and open
                continue
            if raw:
                self.cmdlines.add(raw.rstrip(b"\0").replace(b"\0", b" ").decode("utf-8", "replace"))
        self.sweeps += 1

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sweep()
            self._stop.wait(0.002)

    def __enter__(self) -> CmdlineWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def saw(self, marker: str) -> bool:
        return any(marker in line for line in self.cmdlines)
