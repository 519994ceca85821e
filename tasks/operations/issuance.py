"""Wait for the proxy's certificates in a deploy's health gate (issue 14).

On a first deploy (or a new name) the proxy asks the ACME server for certificates when it
starts; the protocol probes can only pass once they are issued. So the gate first polls
the certificate checks (a verified handshake per name and family) until every name has
a valid certificate, printing progress while it waits, bounded by TORRUST_ISSUANCE_TIMEOUT.
When time is up, the failure names each name without a certificate and why, as far as
the proxy's log tells (tasks/facts/proxy_log.py): the challenge that failed and the CA's
problem, or that the CA refused the order; the transaction then rolls back as for any
failed gate.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from tasks.facts.proxy_log import CertificateLog
from tasks.operations.gate import HealthGateFailed

# {public name: None when its certificate verified, else why not} for every name
CertificateCheck = Callable[[], dict[str, str | None]]
POLL = 1.0  # seconds between two rounds of checks
PROGRESS_EVERY = 10.0  # seconds between two progress lines (each reads the proxy's log)


def wait(
    check: CertificateCheck,
    proxy_log: Callable[[], CertificateLog],
    timeout: float,
    progress: Callable[[str], None],
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> str:
    """Return a summary once every certificate verifies; HealthGateFailed at `timeout`."""
    started = clock()
    next_progress = started + PROGRESS_EVERY
    while True:
        state = check()
        pending = sorted(n for n, why in state.items() if why is not None)
        if not pending:
            waited = clock() - started
            return f"{len(state)} certificates verified" + (f" after {waited:.0f}s" if waited >= 1 else "")
        now = clock()
        if now - started >= timeout:
            break
        if now >= next_progress:
            story = proxy_log()
            if all(n in story.obtained for n in pending):  # issued, yet not verified: waiting changes nothing
                raise HealthGateFailed(failure_message(state, pending, story, now - started))
            progress(_progress_line(state, pending, story, now - started))
            next_progress = now + PROGRESS_EVERY
        sleep(POLL)
    raise HealthGateFailed(failure_message(state, pending, proxy_log(), timeout))


def _progress_line(state: dict[str, str | None], pending: list[str], story: CertificateLog, waited: float) -> str:
    line = f"waiting for certificates ({waited:.0f}s): {len(state) - len(pending)}/{len(state)} verified"
    failed = [story.failure(n) for n in pending if story.failure(n) is not None]
    return line + (f"; last error: {failed[0]}" if failed else f"; pending: {', '.join(pending)}")


def failure_message(state: dict[str, str | None], pending: list[str], story: CertificateLog, waited: float) -> str:
    """One reason per name without a valid certificate: the proxy's log first (why the CA
    did not issue), else what the check saw (a certificate that does not verify)."""
    reasons = []
    for name in pending:
        failure = story.failure(name)
        if failure is not None:
            reasons.append(str(failure))
        elif name in story.obtained:
            reasons.append(f"{name}: the proxy obtained a certificate that does not verify: {state[name]}")
        else:
            reasons.append(f"{name}: {state[name]} (no ACME error in the proxy's log)")
    return f"no valid certificate after {waited:.0f}s for {', '.join(pending)}: " + "; ".join(reasons)
