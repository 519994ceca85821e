"""Network command lines as data (issue #13): the facts script, the host-side UDP probe,
the re-apply of the network settings. Pure: nothing here runs anything.

Longer scripts live as files beside this module (tasks/commands/scripts/), shellchecked;
the builders return the argv and the bytes fed on stdin, so one round trip runs them
(`Executor.feed`).
"""

from __future__ import annotations

from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent / "scripts"
FACTS_SCRIPT = SCRIPTS / "network-facts.sh"
UDP_PROBE_SCRIPT = SCRIPTS / "udp-probe.py"
HARDEN = "/usr/local/sbin/torrust-harden"  # installed by the hardening script itself
HARDEN_ENV = "/etc/torrust/harden.env"


def facts_script() -> bytes:
    return FACTS_SCRIPT.read_bytes()


def facts(state_file: str = "") -> list[str]:
    """`sh -s` reading network-facts.sh from stdin; `state_file` keeps the counters between
    checks (empty: ~/.cache/torrust-deploy/network-counters; a leading ~/ is the home of
    the user the command runs as)."""
    return ["sh", "-s", "--", state_file]


def udp_probe_script() -> bytes:
    return UDP_PROBE_SCRIPT.read_bytes()


def udp_probe(address: str, port: int, timeout: float) -> list[str]:
    """python3 on the host, reading udp-probe.py from stdin: a BEP 15 connect + announce to
    `address` from the host itself; prints one JSON line."""
    return ["python3", "-", address, str(int(port)), f"{float(timeout):g}"]


def reapply(env_file: str = HARDEN_ENV) -> list[str]:
    """Re-apply the runtime network settings torrust-harden installed (sysctls, RPS/RFS,
    public addresses): idempotent, root; what its boot and restart hooks run."""
    return ["sudo", "-n", HARDEN, env_file, "reapply"]
