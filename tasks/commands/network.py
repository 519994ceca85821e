"""Network command lines as data (issue #13): the facts script, the host-side UDP probe,
the re-apply of the network settings. Pure: nothing here runs anything.

The facts script is scripts/network-facts.sh (shellchecked), sent with `sh()` like every
other script; the probe is scripts/udp-probe.py (standard library only), sent to
`python3 -c` the same way, and also loaded by tasks.health.network to probe from here.
"""

from __future__ import annotations

from tasks.commands import SCRIPTS, sh

UDP_PROBE_SCRIPT = SCRIPTS / "udp-probe.py"
HARDEN = "/usr/local/sbin/torrust-harden"  # installed by the hardening script itself
HARDEN_ENV = "/etc/torrust/harden.env"


def facts(state_file: str = "") -> list[str]:
    """network-facts.sh: everything the network checks read, in one round trip.
    `state_file` keeps the counters between checks (empty: ~/.cache/torrust-deploy/
    network-counters; a leading ~/ is the home of the user the command runs as)."""
    return sh("network-facts", state_file)


def udp_probe(address: str, port: int, timeout: float) -> list[str]:
    """udp-probe.py on the host: a BEP 15 connect + announce to `address` from the host
    itself, the reply's source checked; prints one JSON line."""
    return [
        "python3",
        "-c",
        UDP_PROBE_SCRIPT.read_text(encoding="utf-8"),
        address,
        str(int(port)),
        f"{float(timeout):g}",
    ]


def reapply(env_file: str = HARDEN_ENV) -> list[str]:
    """Re-apply the runtime network settings torrust-harden installed (sysctls, RPS/RFS,
    public addresses): idempotent, root; what its boot and restart hooks run."""
    return ["sudo", "-n", HARDEN, env_file, "reapply"]
