"""health.watch against a real stack (the test images on loopback ports): rounds are
recorded; the tracker's UDP is blocked by a firewall rule inside its container's network
namespace (HTTP, served by the same tracker through the proxy, keeps working); after K
rounds exactly one "down" webhook reaches a real HTTP receiver and one e-mail a real
SMTP server (aiosmtpd, STARTTLS + AUTH); lifting the rule gives one "recovered"; uptime
shows the outage with its duration and the report shows it.

Why a rule in the container's namespace: `docker pause` would stop HTTP too (one tracker
process serves both), and a rule on this machine's INPUT chain would touch a firewall
shared with other tests. `nsenter -t PID -n iptables` changes only the tracker
container's own namespace, and goes away with the container.
"""

from __future__ import annotations

import subprocess
import threading
import time
from dataclasses import replace

from tasks.config.secrets import Secret
from tasks.watch.config import WatchConfig
from tasks.watch.loop import Watch
from tasks.watch.report import ReportInput, render
from tasks.watch.targets import round_probes, spec_from_settings
from tasks.watch.uptime import summarize
from tests.integration.conftest import docker
from tests.watchservers import (
    SMTP_PASSWORD,
    SMTP_USER,
    Receiver,
    SMTPServer,
    make_ca_and_leaf,
    open_when_ready,
    wait_for,
)

# nsenter (util-linux) and iptables come with the machine and docker.io (.ci/install.sh): no skip

HOOK = "hooks/T01/B02/Xk4Lp8Yv3Nb6Hc1Jd5Fs0G"


class UDPBlock:
    """DROP the tracker's UDP port inside its container's network namespace."""

    def __init__(self, container: str, port: int):
        pid = docker("inspect", "--format", "{{.State.Pid}}", container).stdout.strip()
        self.argv = ["nsenter", "-t", pid, "-n", "iptables"]
        self.rule = ["INPUT", "-p", "udp", "--dport", str(port), "-j", "DROP"]
        self.on = False

    def __enter__(self) -> UDPBlock:
        subprocess.run([*self.argv, "-I", *self.rule], check=True, capture_output=True)
        self.on = True
        return self

    def lift(self) -> None:
        if self.on:
            subprocess.run([*self.argv, "-D", *self.rule], check=True, capture_output=True)
            self.on = False

    def __exit__(self, *exc) -> None:
        self.lift()


def test_udp_outage_alerts_once_recovers_once_and_shows_in_uptime_and_report(rendered_stack, tmp_path, unique):
    stack = rendered_stack
    spec = spec_from_settings(stack.settings)
    pki = make_ca_and_leaf(tmp_path / "pki")
    receiver = Receiver().start()
    smtp = SMTPServer(pki[1], pki[2]).start()
    cfg = WatchConfig(
        store_path=tmp_path / "watch.sqlite",
        vantage="ci",
        interval=1,
        jitter=0.2,
        probe_timeout=2,  # generous: this machine is shared, a slow answer is not the outage
        probe_attempts=1,
        down_after=3,
        silent_after=60,
        retry_base=0.5,
        retry_max=2,
        webhook_url=Secret(f"http://127.0.0.1:{receiver.port}/{HOOK}"),
        smtp_host="127.0.0.1",
        smtp_port=smtp.port,
        smtp_user=SMTP_USER,
        smtp_password=Secret(SMTP_PASSWORD),
        smtp_from="watch@torrust.local",
        smtp_to=("ops@torrust.local",),
        smtp_cafile=str(pki[0]),
    )
    stop = threading.Event()
    failures: list[BaseException] = []

    def watch() -> None:
        try:
            w = Watch(cfg, lambda: round_probes(spec, cfg.probe_timeout, cfg.probe_attempts), "local")
            try:
                w.run(stop, duration=600)
            finally:
                w.close()
        except BaseException as exc:  # surfaced by the test below
            failures.append(exc)

    thread = threading.Thread(target=watch)
    thread.start()
    store = None
    try:
        store = open_when_ready(cfg.store_path)

        def clean_rounds() -> int:
            return store.conn.execute("SELECT count(*) FROM rounds WHERE failed = 0").fetchone()[0]

        wait_for(lambda: clean_rounds() >= 3, 120)
        kinds = {k.kind for k in store.series().values()}
        assert kinds == {"udp", "http", "api"}  # local target: loopback, both families, no dns
        with UDPBlock(f"{unique}-tracker-1", stack.udp_port) as block:
            blocked_at = time.time()
            wait_for(lambda: receiver.kinds() == ["down"], 120)
            rounds_at_alert = store.round_count()
            wait_for(lambda: store.round_count() >= rounds_at_alert + 3, 30)  # still down: no second alert
            wait_for(lambda: len(smtp.mailbox.messages) == 1, 30)
            assert receiver.kinds() == ["down"]
            block.lift()
            lifted_at = time.time()
        wait_for(lambda: receiver.kinds() == ["down", "recovered"], 120)
        wait_for(lambda: len(smtp.mailbox.messages) == 2, 30)
    finally:
        stop.set()
        thread.join(60)
        receiver.stop()
        smtp.stop()
    assert not failures, failures
    down, recovered = receiver.bodies
    assert sorted(e["subject"] for e in down["events"]) == [
        f"udp udp://torrust.local:{stack.udp_port} IPv4 via 127.0.0.1",
        f"udp udp://torrust.local:{stack.udp_port} IPv6 via ::1",
    ]
    assert down["text"].startswith("DOWN [local] 2 probe(s) failed 3 rounds in a row, seen from ci:")
    assert receiver.paths == [f"/{HOOK}", f"/{HOOK}"]
    assert [e["subject"] for e in recovered["events"]] == [e["subject"] for e in down["events"]]
    subjects = smtp.mailbox.subjects()
    assert subjects[0].startswith("[torrust local watch ci] DOWN: udp udp://torrust.local:")
    assert subjects[1].startswith("[torrust local watch ci] RECOVERED: udp udp://torrust.local:")
    # HTTP and the API never failed: only UDP did, and only while blocked
    failed_kinds = store.conn.execute(
        "SELECT DISTINCT s.kind FROM results r JOIN series s ON s.id = r.series WHERE r.ok = 0"
    ).fetchall()
    assert failed_kinds == [("udp",)]
    now = int(time.time() * 1000)
    summary = summarize([store], "24h", now)
    (incident,) = summary.incidents
    assert len(incident.probes) == 2 and all(p.startswith("udp ") for p in incident.probes)
    outage = lifted_at - blocked_at
    # measured from the start of the first failed round to that of the first passing one:
    # each end is off by at most one slot (interval + jitter) plus a round in progress
    tolerance = cfg.interval + cfg.jitter + cfg.round_deadline
    assert abs(incident.duration_s(now) - outage) <= tolerance, (incident.duration_s(now), outage, tolerance)
    udp4 = next(x for x in summary.lines if x.kind == "udp" and x.family == 4)
    assert udp4.ok < udp4.results and udp4.uptime < 100
    http4 = next(x for x in summary.lines if x.kind == "http" and x.family == 4)
    assert http4.uptime == 100.0 and http4.p50_ms is not None
    deliveries = store.deliveries()
    assert len(deliveries) == 4 and all(d["done_at"] for d in deliveries)
    html = render(ReportInput("local", [store], now))
    (tmp_path / "report.html").write_text(html)
    assert f"udp udp://torrust.local:{stack.udp_port} IPv4 via 127.0.0.1" in html
    assert "1 incident(s)." in html and f"{udp4.uptime:.2f}%" in html
    store.close()


def test_a_stopped_tracker_fails_every_probe_without_stopping_the_watch(rendered_stack, tmp_path):
    """`--once` against the stack, then with the tracker stopped: exit status semantics
    (failed probes listed, each with its error class), nothing raised."""
    spec = spec_from_settings(rendered_stack.settings)
    cfg = replace(WatchConfig(store_path=tmp_path / "w.sqlite"), probe_timeout=1, probe_attempts=1)
    w = Watch(cfg, lambda: round_probes(spec, 1, 1), "local")
    try:
        assert w.once().failed == []
        project = rendered_stack.settings.compose_project
        docker("stop", "--time", "5", f"{project}-tracker-1")
        res = w.once()
        assert {o.key.kind for o in res.failed} == {"udp", "http", "api"}
        assert {o.error for o in res.failed if o.key.kind == "udp"} == {"timeout"}
        assert {o.error for o in res.failed if o.key.kind != "udp"} <= {"http-status", "refused", "reset", "timeout"}
    finally:
        w.close()
