"""Prometheus exposition on a real port, scraped over HTTP."""

from __future__ import annotations

import socket
import urllib.request

import pytest

from tasks.errors import ConfigError
from tasks.watch.alerts import Observation
from tasks.watch.metrics import WatchMetrics
from tasks.watch.records import SeriesKey

UDP6 = SeriesKey("berlin", "udp", "udp://tracker.example.org:6969", 6, "2001:db8::10")
API4 = SeriesKey("berlin", "api", "api.example.org", 4, "203.0.113.10")


def test_metrics_are_served_per_probe_and_family():
    m = WatchMetrics()
    m.observe(
        [Observation(UDP6, True, 42, "ok"), Observation(API4, False, 5000, "timed out", "timeout")],
        1_795_000_000_000,
        1.25,
        "berlin",
    )
    m.observe([Observation(UDP6, False, 5000, "timed out", "timeout")], 1_795_000_060_000, 5.1, "berlin")
    port = m.serve(0, "127.0.0.1")
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    finally:
        m.close()
    labels = 'address="2001:db8::10",family="6",probe="udp",target="udp://tracker.example.org:6969",vantage="berlin"'
    assert f"torrust_watch_probe_up{{{labels}}} 0.0" in text
    assert f"torrust_watch_probe_latency_seconds{{{labels}}} 5.0" in text
    assert f"torrust_watch_probe_last_success_timestamp_seconds{{{labels}}} 1.795e+09" in text
    api = 'address="203.0.113.10",family="4",probe="api",target="api.example.org",vantage="berlin"'
    assert f"torrust_watch_probe_up{{{api}}} 0.0" in text
    assert f"torrust_watch_probe_last_success_timestamp_seconds{{{api}}}" not in text  # never passed
    assert 'torrust_watch_last_round_timestamp_seconds{vantage="berlin"} 1.79500006e+09' in text
    assert 'torrust_watch_round_duration_seconds{vantage="berlin"} 5.1' in text


def test_a_port_in_use_is_a_named_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(ConfigError, match=rf"--metrics-port {port}: cannot listen on 127.0.0.1:{port}"):
            WatchMetrics().serve(port, "127.0.0.1")


def test_the_grafana_dashboard_uses_only_metrics_the_watch_exposes():
    import json
    import re

    from tests.conftest import ROOT

    dashboard = json.loads((ROOT / "application/grafana/dashboards/watch.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {m for e in exprs for m in re.findall(r"\btorrust_watch_[a-z_]+", e)}
    m = WatchMetrics()
    m.observe([Observation(UDP6, True, 42, "ok")], 1_795_000_000_000, 1.0, "berlin")
    exposed = set(re.findall(r"^(torrust_watch_[a-z_]+?)(?:_total)?[{ ]", m.exposition().decode(), re.M))
    assert used and used <= exposed, used - exposed
