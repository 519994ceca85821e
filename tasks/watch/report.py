"""The status page: one self-contained HTML file (inline CSS and SVG, no script, no
external asset), readable offline and attachable to an e-mail or a CI artifact.

Sections: the state now (every probe's last result, per vantage), uptime per probe and
family over 24 h / 7 d / 30 d with latency p50/p95, latency charts (hourly p50 and p95 per
probe kind and family over 7 days), daily uptime over 30 days, incidents (30 days),
certificates and their expiry, and the alerts sent.

Charts are hand-written SVG polylines and bars (about 100 lines) rather than a plotting
library: matplotlib would add numpy and some 60 MB to every vantage and take about a
second to import (the page must render in under two), and pygal's default page loads its
script from the network.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import UTC, datetime

from tasks.watch.records import DAY_MS, HOUR_MS, HourAgg
from tasks.watch.store import Store
from tasks.watch.uptime import Summary, hist_quantile, hour_view, summarize

INCIDENTS_SHOWN = 50
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2")
CSS = """
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:24px auto;max-width:1180px;
color:#1d2330;padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #dde2ea;padding-bottom:4px}
.muted{color:#667085}table{border-collapse:collapse;width:100%;margin:6px 0}
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #eef1f5;vertical-align:top}
th{background:#f6f8fb;font-weight:600}td.num{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:#137333;font-weight:600}.bad{color:#b3261e;font-weight:600}.warn{color:#a35f00;font-weight:600}
.pill{display:inline-block;border-radius:10px;padding:1px 9px;font-size:12px;font-weight:600}
.pill.ok{background:#e6f4ea}.pill.bad{background:#fce8e6}.pill.warn{background:#fef7e0}
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(360px,1fr));gap:14px}
.chart{border:1px solid #e3e7ee;border-radius:6px;padding:8px}.chart h3{font-size:13px;margin:0 0 4px}
svg text{font:11px system-ui,sans-serif;fill:#667085}
"""


@dataclass(frozen=True)
class ReportInput:
    env: str
    stores: list[Store]
    now: int  # ms
    silent_after: float = 600.0


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _when(ms: int | float | None) -> str:
    return "-" if ms is None else datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _pct(value: float | None) -> str:
    if value is None:
        return '<td class="num muted">-</td>'
    cls = "ok" if value >= 99.9 else "warn" if value >= 95 else "bad"
    return f'<td class="num {cls}">{value:.2f}%</td>'


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms"


def _span(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    if seconds < 172800:
        return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d {seconds % 86400 // 3600}h"


def _fam(family: int) -> str:
    return f"IPv{family}" if family else "any"


# ---------------------------------------------------------------------- SVG
def line_chart(lines: dict[str, list[tuple[int, float]]], t0: int, t1: int, unit: str = "ms") -> str:
    """Polylines over time: {legend: [(t ms, value)]}; gaps (no point for an hour) break lines."""
    w, h, left, bottom, top, right = 360, 170, 44, 22, 8, 8
    values = [v for pts in lines.values() for _, v in pts]
    vmax = max(values, default=1.0) * 1.1 or 1.0
    sx = (w - left - right) / max(1, t1 - t0)
    sy = (h - top - bottom) / vmax
    out = [f'<svg viewBox="0 0 {w} {h}" width="100%" role="img" xmlns="http://www.w3.org/2000/svg">']
    for i in range(5):
        v = vmax * i / 4
        y = h - bottom - v * sy
        out.append(f'<line x1="{left}" x2="{w - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eef1f5"/>')
        out.append(f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end">{v:.0f}</text>')
    for frac in (0, 0.5, 1):
        t = t0 + (t1 - t0) * frac
        x = left + (t - t0) * sx
        label = datetime.fromtimestamp(t / 1000, UTC).strftime("%m-%d %H:%M")
        anchor = "start" if frac == 0 else "end" if frac == 1 else "middle"
        out.append(f'<text x="{x:.1f}" y="{h - 6}" text-anchor="{anchor}">{label}</text>')
    out.append(f'<text x="{left - 4}" y="{h - bottom + 14}" text-anchor="end">{_esc(unit)}</text>')
    for n, (legend, pts) in enumerate(lines.items()):
        color = PALETTE[n % len(PALETTE)]
        for segment in _segments(sorted(pts)):
            coords = " ".join(f"{left + (t - t0) * sx:.1f},{h - bottom - v * sy:.1f}" for t, v in segment)
            if len(segment) == 1:
                x, y = coords.split(",")
                out.append(f'<circle cx="{x}" cy="{y}" r="1.6" fill="{color}"/>')
            else:
                out.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.4" points="{coords}"/>')
        out.append(
            f'<rect x="{left + 8 + n * 110}" y="{top}" width="10" height="3" fill="{color}"/>'
            f'<text x="{left + 22 + n * 110}" y="{top + 5}">{_esc(legend)}</text>'
        )
    out.append("</svg>")
    return "".join(out)


def _segments(points: list[tuple[int, float]]) -> list[list[tuple[int, float]]]:
    segments: list[list[tuple[int, float]]] = []
    for t, v in points:
        if segments and t - segments[-1][-1][0] <= HOUR_MS:
            segments[-1].append((t, v))
        else:
            segments.append([(t, v)])
    return segments


def bar_chart(days: list[tuple[int, float | None]]) -> str:
    """Daily uptime bars (0-100 %), red below 99 %, grey without data."""
    w, h, left, bottom = 360, 90, 44, 18
    bw = (w - left - 4) / max(1, len(days))
    out = [f'<svg viewBox="0 0 {w} {h}" width="100%" role="img" xmlns="http://www.w3.org/2000/svg">']
    for i, (day, up) in enumerate(days):
        x = left + i * bw
        if up is None:
            out.append(f'<rect x="{x:.1f}" y="{h - bottom - 4}" width="{bw - 1:.1f}" height="4" fill="#d0d5dd"/>')
            continue
        height = max(2.0, (h - bottom - 6) * up / 100)
        color = "#2ca02c" if up >= 99.9 else "#f0a030" if up >= 99 else "#d62728"
        label = f"{_when(day)[:10]}: {up:.2f}%"
        out.append(
            f'<rect x="{x:.1f}" y="{h - bottom - height:.1f}" width="{bw - 1:.1f}" height="{height:.1f}" '
            f'fill="{color}"><title>{_esc(label)}</title></rect>'
        )
    out.append(f'<text x="{left - 4}" y="12" text-anchor="end">100%</text>')
    if days:
        out.append(f'<text x="{left}" y="{h - 4}">{_when(days[0][0])[:10]}</text>')
        out.append(f'<text x="{w - 4}" y="{h - 4}" text-anchor="end">{_when(days[-1][0])[:10]}</text>')
    out.append("</svg>")
    return "".join(out)


# ---------------------------------------------------------------------- sections
def _state_now(inp: ReportInput) -> str:
    """One row per probe and family (its addresses pooled): up, or which addresses fail."""
    groups: dict[tuple[str, str, str, int], list[tuple[str, int, int, str | None]]] = {}
    for st in inp.stores:
        series = st.series()
        for sid, (t, ok, _value, error) in st.latest().items():
            k = series[sid]
            groups.setdefault((k.vantage, k.kind, k.target, k.family), []).append((k.address, t, ok, error))
    rows = []
    for (vantage, kind, target, family), found in sorted(groups.items()):
        bad = [f"{a or target}: {e}" for a, _t, ok, e in sorted(found) if not ok]
        state = (
            f'<span class="pill bad">failing</span> {_esc("; ".join(bad))}'
            if bad
            else '<span class="pill ok">up</span>'
        )
        addresses = ", ".join(a for a, *_ in sorted(found) if a) or "-"
        rows.append(
            f"<tr><td>{_esc(vantage)}</td><td>{_esc(kind)}</td><td>{_esc(target)}</td><td>{_fam(family)}</td>"
            f"<td>{_esc(addresses)}</td><td>{state}</td><td>{_when(max(t for _a, t, *_ in found))}</td></tr>"
        )
    head = (
        "<tr><th>vantage</th><th>probe</th><th>target</th><th>family</th><th>addresses</th><th>state</th>"
        "<th>checked</th></tr>"
    )
    return f"<table>{head}{''.join(rows)}</table>" if rows else '<p class="muted">No results recorded yet.</p>'


def _vantages(inp: ReportInput, summary: Summary) -> str:
    parts = []
    for v, t in sorted(summary.last_rounds.items()):
        silent = inp.now - t > inp.silent_after * 1000
        cls, word = ("bad", "silent") if silent else ("ok", "running")
        parts.append(f'<span class="pill {cls}">{_esc(v)}: {word}, last round {_when(t)}</span>')
    return " ".join(parts) or '<span class="muted">no vantage has recorded a round</span>'


def _uptime_table(summaries: dict[str, Summary]) -> str:
    keys = sorted({(x.vantage, x.kind, x.target, x.family) for s in summaries.values() for x in s.lines})
    by = {w: {(x.vantage, x.kind, x.target, x.family): x for x in s.lines} for w, s in summaries.items()}
    rows = []
    for key in keys:
        vantage, kind, target, family = key
        day = by["24h"].get(key)
        cells = "".join(_pct(by[w][key].uptime if key in by[w] else None) for w in ("24h", "7d", "30d"))
        lat = f"{_ms(day.p50_ms)} / {_ms(day.p95_ms)}" if day else "-"
        rows.append(
            f"<tr><td>{_esc(vantage)}</td><td>{_esc(kind)}</td><td>{_esc(target)}</td><td>{_fam(family)}</td>"
            f'{cells}<td class="num">{lat}</td></tr>'
        )
    head = (
        "<tr><th>vantage</th><th>probe</th><th>target</th><th>family</th><th>24 h</th><th>7 d</th><th>30 d</th>"
        "<th>latency p50 / p95 (24 h)</th></tr>"
    )
    return f"<table>{head}{''.join(rows)}</table>"


def _charts(view: dict, since: int, now: int) -> str:
    groups: dict[tuple[str, int], dict[int, HourAgg]] = {}
    for (_vantage, kind, _target, family), hours in view.items():
        g = groups.setdefault((kind, family), {})
        for hour, agg in hours.items():
            if hour >= since:
                g.setdefault(hour, HourAgg()).merge(agg)
    out = []
    for (kind, family), hours in sorted(groups.items()):
        if kind == "dns":
            continue
        lines: dict[str, list[tuple[int, float]]] = {"p50": [], "p95": []}
        for hour, agg in sorted(hours.items()):
            hist = agg.histogram()
            if sum(hist):
                lines["p50"].append((hour, hist_quantile(hist, 0.5, agg.lat_max)))
                lines["p95"].append((hour, hist_quantile(hist, 0.95, agg.lat_max)))
        out.append(
            f'<div class="chart"><h3>{_esc(kind)} {_fam(family)}: latency, hourly (7 days)</h3>'
            f"{line_chart(lines, since, now)}</div>"
        )
    return f'<div class="charts">{"".join(out)}</div>' if out else '<p class="muted">No latency recorded yet.</p>'


def _daily(view: dict, now: int) -> str:
    first_day = (now - 29 * DAY_MS) // DAY_MS * DAY_MS
    groups: dict[tuple[str, int], dict[int, list[int]]] = {}
    for (_vantage, kind, _target, family), hours in view.items():
        g = groups.setdefault((kind, family), {})
        for hour, agg in hours.items():
            day = hour // DAY_MS * DAY_MS
            if day >= first_day:
                acc = g.setdefault(day, [0, 0])
                acc[0] += agg.ok
                acc[1] += agg.n
    out = []
    for (kind, family), days in sorted(groups.items()):
        series = [
            (d, 100 * days[d][0] / days[d][1] if d in days and days[d][1] else None)
            for d in range(first_day, now + 1, DAY_MS)
        ]
        out.append(f'<div class="chart"><h3>{_esc(kind)} {_fam(family)}: uptime per day</h3>{bar_chart(series)}</div>')
    return f'<div class="charts">{"".join(out)}</div>'


def _incidents(summary: Summary) -> str:
    if not summary.incidents:
        return '<p class="ok">No incident in the last 30 days.</p>'
    rows = []
    shown = list(reversed(summary.incidents))[:INCIDENTS_SHOWN]
    for inc in shown:
        end = '<span class="bad">ongoing</span>' if inc.end is None else _when(inc.end)
        approx = " (hourly data: approximate)" if inc.approximate else ""
        probes = "<br>".join(_esc(p) for p in inc.probes)
        rows.append(
            f"<tr><td>{_when(inc.start)}</td><td>{end}</td><td class='num'>{_span(inc.duration_s(summary.until))}"
            f"{approx}</td><td>{probes}</td><td>{_esc(', '.join(inc.vantages))}</td></tr>"
        )
    head = "<tr><th>start</th><th>end</th><th>duration</th><th>probes</th><th>seen from</th></tr>"
    more = len(summary.incidents) - len(shown)
    tail = f'<p class="muted">{more} older incident(s) not shown (health.uptime --json lists all).</p>' if more else ""
    return f"<p>{len(summary.incidents)} incident(s).</p><table>{head}{''.join(rows)}</table>{tail}"


def _certificates(summary: Summary) -> str:
    if not summary.certificates:
        return '<p class="muted">No TLS certificate probed (TLS off, or no result yet).</p>'
    rows = []
    for c in summary.certificates:
        left = c.days_left(summary.until)
        cls = "bad" if left is None or left < 7 else "warn" if left < 21 else "ok"
        shown = "-" if left is None else f"{left:.1f} days"
        expiry = "-" if c.not_after is None else _when(c.not_after * 1000)
        rows.append(
            f"<tr><td>{_esc(c.name)}</td><td>{_fam(c.family)} {_esc(c.address)}</td><td>{_esc(c.vantage)}</td>"
            f'<td>{expiry}</td><td class="num {cls}">{shown}</td><td>{_esc(c.error or "")}</td></tr>'
        )
    head = "<tr><th>name</th><th>address</th><th>vantage</th><th>expires</th><th>left</th><th>last error</th></tr>"
    return f"<table>{head}{''.join(rows)}</table>"


def _alerts(inp: ReportInput) -> str:
    rows = []
    for st in inp.stores:
        for a in st.alerts(inp.now - 30 * DAY_MS):
            rows.append((a["t"], a["vantage"], a["kind"], a["text"]))
    if not rows:
        return '<p class="muted">No alert in the last 30 days.</p>'
    body = "".join(
        f"<tr><td>{_when(t)}</td><td>{_esc(v)}</td><td>{_esc(k)}</td><td><pre>{_esc(text)}</pre></td></tr>"
        for t, v, k, text in sorted(rows, reverse=True)[:200]
    )
    return f"<table><tr><th>time</th><th>vantage</th><th>alert</th><th>text</th></tr>{body}</table>"


def render(inp: ReportInput) -> str:
    summaries = {
        "24h": summarize(inp.stores, "24h", inp.now, incidents=False),
        "7d": summarize(inp.stores, "7d", inp.now, latency=False, incidents=False),
        "30d": summarize(inp.stores, "30d", inp.now, latency=False),
    }
    view = hour_view(inp.stores, inp.now - 30 * DAY_MS, inp.now)
    month = summaries["30d"]
    week_start = (inp.now - 7 * DAY_MS) // HOUR_MS * HOUR_MS
    sections = [
        ("State now", _state_now(inp)),
        ("Uptime", _uptime_table(summaries)),
        ("Latency", _charts(view, week_start, inp.now)),
        ("Uptime per day", _daily(view, inp.now)),
        ("Incidents (30 days)", _incidents(month)),
        ("Certificates", _certificates(month)),
        ("Alerts (30 days)", _alerts(inp)),
    ]
    body = "".join(f"<h2>{_esc(title)}</h2>{content}" for title, content in sections)
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>Torrust tracker status: {_esc(inp.env)}</title><style>{CSS}</style></head><body>"
        f"<h1>Torrust tracker status: {_esc(inp.env)}</h1>"
        f'<p class="muted">Generated {_when(inp.now)} by torrust-deploy health.report from '
        f"{month.rounds} recorded rounds. Uptime is the share of passing probe results.</p>"
        f"<p>{_vantages(inp, month)}</p>{body}</body></html>\n"
    )
