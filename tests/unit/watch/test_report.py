"""The status page: self-contained (no script, no external asset), escaped, and saying
what the store holds (uptime figures, the incident with its times, certificates)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from html.parser import HTMLParser

import pytest

from tasks.watch.records import DAY_MS, HOUR_MS, Row, SeriesKey
from tasks.watch.report import ReportInput, bar_chart, line_chart, render
from tasks.watch.store import Store
from tasks.watch.uptime import summarize
from tests.watchsim import Outage, simulate, twenty_probes

NOW = 1_795_000_000_000 // HOUR_MS * HOUR_MS


class Refs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[str] = []
        self.refs: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.refs += [v for k, v in attrs if k in ("src", "href", "xlink:href", "action", "data") and v]


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    path = tmp_path_factory.mktemp("report") / "w.sqlite"
    with Store.open(path, create=True) as st:
        outage = Outage(NOW - 2 * DAY_MS, NOW - 2 * DAY_MS + 42 * 60_000, "udp", 6)
        simulate(st, twenty_probes("berlin"), NOW - 8 * DAY_MS, 8 * 1440, outages=(outage,), flaky=0, maintain=(3, 400))
        hostile = SeriesKey("berlin", "tls", '<script>alert("x")</script>.example.org', 4, "203.0.113.10")
        with st.transaction():
            st.add_results([Row(hostile, NOW - 60_000, True, 30, None, NOW / 1000 + 9.5 * 86400)])
            st.add_alert(NOW - 2 * DAY_MS + 3 * 60_000, "berlin", "down", "subj", "DOWN [prod] <b>udp</b>", {}, [])
        html = render(ReportInput("prod", [st], NOW))
        summary = summarize([st], "30d", NOW)
    return html, summary, outage


def test_the_page_is_self_contained(page):
    html, _summary, _outage = page
    refs = Refs()
    refs.feed(html)
    assert "script" not in refs.tags and "link" not in refs.tags and "img" not in refs.tags
    assert refs.refs == []
    assert re.findall(r"https?://", html) == ["http://"] * html.count('xmlns="http://www.w3.org/2000/svg"')
    assert "@import" not in html and "url(" not in html


def test_hostile_names_are_escaped(page):
    html, _summary, _outage = page
    assert "<script>alert" not in html and "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    assert "<b>udp</b>" not in html


def test_the_page_shows_uptime_the_incident_and_certificates(page):
    html, summary, outage = page
    line = next(x for x in summary.lines if x.kind == "udp" and x.family == 6)
    assert f"{line.uptime:.2f}%" in html
    (inc,) = summary.incidents
    assert (inc.start, inc.end) == (outage.start, outage.end)
    start = datetime.fromtimestamp(outage.start / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")
    assert f"<tr><td>{start}</td>" in html
    assert "42m 00s" in html  # the incident's duration
    assert "9.5 days" in html  # the certificate's time left
    # latency and daily charts: udp, http, api on both families, tls on IPv4
    assert html.count('<div class="chart">') == 7 + 7


def test_charts_are_svg_with_the_data():
    svg = line_chart({"p50": [(0, 10.0), (HOUR_MS, 20.0)], "p95": [(0, 40.0)]}, 0, HOUR_MS)
    assert svg.startswith("<svg") and svg.count("<polyline") == 1 and svg.count("<circle") == 1
    bars = bar_chart([(0, 100.0), (DAY_MS, 98.5), (2 * DAY_MS, None)])
    assert bars.count("<rect") == 3 and "#d62728" in bars and "98.50%" in bars


def test_an_empty_store_renders(tmp_path):
    with Store.open(tmp_path / "w.sqlite", create=True) as st:
        html = render(ReportInput("prod", [st], NOW))
    assert "No results recorded yet." in html and "No incident in the last 30 days." in html
