"""tasks/health/load.py against local stand-ins on loopback: a strict BEP 15 responder
(tests/standins/bep15.py) and a small keep-alive HTTP tracker front. Real sockets, real
kernel; only the tracker is a stand-in."""

from __future__ import annotations

import dataclasses
import http.server
import socket
import threading
from pathlib import Path
from typing import ClassVar

import pytest

from tasks.errors import ConfigError, ConfirmationRequired, ExitCode
from tasks.facts import network as nf
from tasks.health import load as L
from tests.standins.bep15 import Responder

RECORDED = Path(__file__).parents[1] / "facts" / "recorded" / "network"


def udp(port: int, **kw) -> L.LoadParams:
    return L.LoadParams("udp", "127.0.0.1", port, **{"rate": 400, "duration": 1.0, **kw})


def test_udp_run_at_a_moderate_rate_is_exact():
    with Responder() as r:
        rep = L.run(udp(r.port, rate=800, duration=0.5, torrents=50, peers=300))
    assert (rep.sent, rep.replies, rep.errors, rep.lost, rep.not_sent) == (400, 400, 0, 0, 0)
    assert rep.loss_pct == 0.0  # (generator_limited depends on this machine's load: tested on report())
    assert rep.sent_rate == pytest.approx(800, rel=0.02) and rep.achieved_rate == pytest.approx(800, rel=0.02)
    assert 0 < rep.p50_ms <= rep.p99_ms
    # what the responder saw: one connect per announce, a fresh socket for (nearly) each
    # transaction (the kernel may hand out a freed port again), many ids
    assert (r.seen.connects, r.seen.announces, r.seen.errors) == (400, 400, 0)
    assert len(r.seen.ports) > 360
    assert (len(r.seen.info_hashes), len(r.seen.peer_ids)) == (50, 300)


def test_dropped_announces_are_loss():
    with Responder(drop_every=10) as r:
        rep = L.run(udp(r.port, duration=0.25, timeout=0.5))
    assert (rep.sent, rep.replies, rep.lost, rep.errors) == (100, 90, 10, 0)
    assert rep.loss_pct == 10.0


def test_tracker_errors_are_counted_with_a_sample():
    with Responder(error_every=4) as r:
        rep = L.run(udp(r.port, duration=0.25))
    assert (rep.sent, rep.replies, rep.errors, rep.lost) == (100, 75, 25, 0)
    assert rep.error_samples[0] == "tracker error: stand-in refuses this one"
    assert rep.loss_pct == 25.0  # an error is not an answer to the announce


def test_nothing_listening_is_refused_not_a_hang():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rep = L.run(udp(port, rate=50, duration=0.2, timeout=0.5))
    assert (rep.sent, rep.replies, rep.errors) == (10, 0, 10)
    assert rep.error_samples[0] == "recv: Connection refused"
    assert rep.p50_ms is None and rep.loss_pct == 100.0


def test_a_slow_server_with_a_tiny_socket_buffer_loses_announces():
    with Responder(rcvbuf=2048, delay=0.002) as r:
        rep = L.run(udp(r.port, rate=2000, duration=0.25, timeout=0.25))
    assert rep.sent == 500 and rep.lost > 100, rep
    assert rep.loss_pct == pytest.approx(100 * rep.lost / rep.sent)


def test_ipv6_loopback():
    with Responder("::1") as r:
        rep = L.run(L.LoadParams("udp", "::1", r.port, rate=200, duration=0.25))
    assert (rep.sent, rep.replies) == (50, 50)


# ----------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"protocol": "tcp"}, "--protocol 'tcp': allowed udp, http"),
        ({"rate": 0}, "--rate 0: allowed 1 to 200,000"),
        ({"duration": -1}, "--duration -1: allowed 0.1 to 3,600"),
        ({"address": "tracker.example"}, "address 'tracker.example' is not an IP address"),
        ({"port": 70000}, "port 70000: allowed 1 to 65,535"),
        ({"rate": 300_000, "yes": True}, "--rate 300000: allowed 1 to 200,000"),
    ],
)
def test_bad_parameters_are_named_and_nothing_is_sent(change, message):
    with Responder() as r:
        params = dataclasses.replace(udp(r.port), **change)
        with pytest.raises(ConfigError) as exc:
            L.run(params)
        assert message in exc.value.message
        assert exc.value.code == ExitCode.CONFIG and exc.value.hint == "nothing was sent"
        assert r.seen.connects == 0


def test_caps_need_yes():
    with Responder() as r:
        with pytest.raises(ConfirmationRequired) as exc:
            L.run(udp(r.port, rate=5001, duration=61))
        assert exc.value.message == (
            "health.load: --rate 5,001/s is past the cap of 5,000/s and --duration 61 s is past the cap of 60 s"
        )
        assert exc.value.code == ExitCode.CONFIRMATION and "--yes" in exc.value.hint
        assert r.seen.connects == 0
        rep = L.run(udp(r.port, rate=5001, duration=0.1, yes=True))
    assert rep.sent == 500  # round(5001 * 0.1)


# ---------------------------------------------------------------------------- report
def test_generator_limited_when_the_schedule_was_not_kept():
    p = udp(1, rate=1000, duration=1.0)
    r = L.WorkerResult(sent=900, replies=900, not_sent=100, send_seconds=1.0, latencies=[0.001] * 900)
    rep = L.report(p, r)
    assert rep.generator_limited and rep.not_sent == 100 and rep.loss_pct == 0.0
    assert not L.report(p, L.WorkerResult(sent=1000, replies=990, send_seconds=1.0)).generator_limited


def test_percentiles_are_nearest_rank():
    values = sorted(float(i) for i in range(1, 101))
    assert (L.percentile(values, 50), L.percentile(values, 99), L.percentile(values, 100)) == (50.0, 99.0, 100.0)
    assert L.percentile([], 50) is None
    assert L.percentile([3.0], 99) == 3.0


def test_host_before_and_after_come_from_the_network_facts():
    facts = nf.parse((RECORDED / "udp-errors.txt").read_text())
    calls = []

    def host() -> nf.NetworkFacts:
        calls.append(1)
        return facts

    with Responder() as r:
        rep = L.run(udp(r.port, rate=50, duration=0.2), host=host)
    assert len(calls) == 2
    assert rep.host_before == L.HostLoad(5, 262144, 20, 9996, 9996)
    assert rep.host_before.fill == pytest.approx(5 / 262144)
    d = rep.as_dict()
    assert d["host_after"]["conntrack_max"] == 262144 and d["sent"] == 10


# ------------------------------------------------------------------------------ HTTP
class _Tracker(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    seen: ClassVar[list[str]] = []
    mode = "ok"

    def do_GET(self):
        _Tracker.seen.append(self.path)
        body = b"d8:intervali120e5:peers0:e" if _Tracker.mode != "fail" else b"d14:failure reason4:nopee"
        self.send_response(200)
        if _Tracker.mode == "chunked":
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
            return
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def tracker():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Tracker)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    _Tracker.seen, _Tracker.mode = [], "ok"
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("mode", ["ok", "chunked"])
def test_http_announces(tracker, mode):
    _Tracker.mode = mode
    p = L.LoadParams("http", "127.0.0.1", tracker.server_address[1], 400, 0.25, host="tracker.example", peers=40)
    rep = L.run(p)
    assert (rep.sent, rep.replies, rep.errors, rep.lost) == (100, 100, 0, 0)
    assert rep.target == f"http://tracker.example:{tracker.server_address[1]} via 127.0.0.1"
    assert len(_Tracker.seen) == 100 and all(s.startswith("/announce?info_hash=") for s in _Tracker.seen)
    assert len({s.split("peer_id=")[1].split("&")[0] for s in _Tracker.seen}) == 40


def test_http_failure_reasons_are_errors(tracker):
    _Tracker.mode = "fail"
    rep = L.run(L.LoadParams("http", "127.0.0.1", tracker.server_address[1], 200, 0.15))
    assert (rep.sent, rep.replies, rep.errors) == (30, 0, 30)
    assert rep.error_samples[0] == "HTTP 200: d14:failure reason4:nopee"
