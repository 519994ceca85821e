"""The status page in a real browser: Debian's Chromium, headless, offline. It loads,
logs nothing on the console, requests nothing but its own file, and renders (DOM
dumped, screenshot saved in the test's directory; docs/images/watch-report.png is one).

Console: Chromium's `--enable-logging=stderr` prints every console message of the page
as `INFO:CONSOLE`; the page has no script, so any such line is a failure. Requests:
`--log-net-log` records every URL the page asks for; every host resolves to nothing
(`--host-resolver-rules`), so no request leaves this machine. Both checks are proven
able to fail on a control page first.
"""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from tasks.watch.records import DAY_MS, HOUR_MS, SeriesKey
from tasks.watch.report import ReportInput, render
from tasks.watch.store import Store
from tests.watchsim import Outage, simulate, twenty_probes

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(autouse=True)
def _browser():
    """Debian's chromium is installed by .ci/install.sh: a missing browser fails, never skips."""
    if not CHROMIUM:
        pytest.fail("Debian's chromium is required (apt-get install chromium; .ci/install.sh installs it)")


FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--enable-logging=stderr",
    "--v=0",
]
# Chromium's own background services (blocked by the resolver rule like everything else)
BROWSER_HOSTS = re.compile(r"^https?://([a-z0-9-]+\.)*(google\.com|googleapis\.com|gstatic\.com)(/|$)")


def browse(page: Path, workdir: Path, *extra: str) -> tuple[list[str], list[str], str]:
    """(console lines, URLs the page requested, stdout) of one headless load."""
    netlog = workdir / "net.json"
    profile = workdir / "profile"
    r = subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", f"--log-net-log={netlog}", *extra, page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    console = [line for line in r.stderr.splitlines() if ":CONSOLE" in line]
    urls = set(re.findall(r'"url":"([^"]+)"', netlog.read_text()))
    requested = sorted(
        u for u in urls if not u.startswith(("file:", "data:", "chrome:")) and not BROWSER_HOSTS.match(u)
    )
    return console, requested, r.stdout


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def status_page(path: Path) -> Path:
    """A month of two vantages with the outages an operator meets (the docs' screenshot)."""
    now = 1_795_000_000_000 // HOUR_MS * HOUR_MS
    berlin, sydney = path.parent / "berlin.sqlite", path.parent / "sydney.sqlite"
    outages = (
        Outage(now - 9 * DAY_MS + 2 * HOUR_MS, now - 9 * DAY_MS + 2 * HOUR_MS + 38 * 60_000, "udp", 6),
        Outage(now - 3 * DAY_MS + 20 * HOUR_MS, now - 3 * DAY_MS + 20 * HOUR_MS + 7 * 60_000, "all"),
    )
    cert = now / 1000 + 10.4 * 86400  # renewal is overdue: the page shows it in amber

    def keys(vantage: str) -> list[SeriesKey]:
        one = [k for k in twenty_probes(vantage) if k.address in ("203.0.113.10", "2001:db8::10")]
        tls = [SeriesKey(vantage, "tls", "tracker.example.org", k.family, k.address) for k in (one[0], one[-1])]
        return one + tls

    month = {"flaky": 0.00002, "maintain": (7, 400), "cert_not_after": cert}
    with Store.open(berlin, create=True) as a, Store.open(sydney, create=True) as b:
        simulate(a, keys("berlin"), now - 30 * DAY_MS, 30 * 1440, outages=outages, **month)
        simulate(b, keys("sydney"), now - 30 * DAY_MS, 30 * 1440, outages=outages[1:], seed=7, **month)
        a.import_from(sydney, now, 7)
        page = render(ReportInput("prod", [a], now))
    path.write_text(page)
    return path


def test_the_checks_can_fail_on_a_control_page(tmp_path):
    bad = tmp_path / "bad.html"
    bad.write_text(
        '<!DOCTYPE html><html><head><link rel="stylesheet" href="https://cdn.example.org/x.css"></head>'
        '<body><img src="https://cdn.example.org/x.png"><script>console.error("boom")</script></body></html>'
    )
    console, requested, _ = browse(bad, tmp_path, "--screenshot=" + str(tmp_path / "bad.png"))
    assert any('"boom"' in line for line in console)
    assert requested == ["https://cdn.example.org/x.css", "https://cdn.example.org/x.png"]


def test_the_status_page_renders_offline_without_console_messages(tmp_path):
    page = status_page(tmp_path / "report.html")
    shot = tmp_path / "watch-report.png"
    console, requested, _ = browse(page, tmp_path, "--window-size=1280,3000", f"--screenshot={shot}")
    assert console == []
    assert requested == []
    assert png_size(shot) == (1280, 3000) and shot.stat().st_size > 100_000
    _, _, dom = browse(page, tmp_path / "dom", "--dump-dom")
    assert "<h1>Torrust tracker status: prod</h1>" in dom
    assert dom.count("<svg") == 16 and dom.count("<polyline") >= 16  # udp, http, api, tls x 2 families, twice
    assert "berlin: " in dom and "sydney: " in dom
    print(json.dumps({"screenshot": str(shot)}))
