"""Alerts: the state machine (K, certificates, a silent watch), grouping, and the two
channels against real servers on loopback (an HTTP receiver, aiosmtpd with STARTTLS and
AUTH), with retries and back-off from the store's outbox."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import pytest

from tasks.config.secrets import Secret
from tasks.watch import alerts as al
from tasks.watch.config import WatchConfig
from tasks.watch.records import SeriesKey
from tasks.watch.store import Store
from tests.watchservers import SMTP_PASSWORD, SMTP_USER, Receiver, SMTPServer, free_port, make_ca_and_leaf

UDP4 = SeriesKey("berlin", "udp", "udp://tracker.example.org:6969", 4, "203.0.113.10")
UDP6 = SeriesKey("berlin", "udp", "udp://tracker.example.org:6969", 6, "2001:db8::10")
TLS = SeriesKey("berlin", "tls", "tracker.example.org", 4, "203.0.113.10")
HOOK_TOKEN = "B07Xk4Lp8Yv3Nb6Hc1Jd5Fs0G"
T0 = 1_795_000_000_000


def cfg(tmp_path: Path, **kw) -> WatchConfig:
    return replace(WatchConfig(store_path=tmp_path / "w.sqlite", vantage="berlin", down_after=3), **kw)


def obs(key: SeriesKey, ok: bool, value: float | None = None) -> al.Observation:
    return al.Observation(key, ok, 10 if ok else 5000, "ok" if ok else "timed out", None if ok else "timeout", value)


def run_rounds(c: WatchConfig, pattern: list[list[al.Observation]], start: int = T0) -> list[list[al.Event]]:
    """Feed rounds through evaluate() as the loop does; the events of each round."""
    states: dict = {}
    out = []
    for i, observations in enumerate(pattern):
        t = start + i * 60_000
        updates, events = al.evaluate(states, observations, c, t, {"berlin": t - 60_000})
        states.update(updates)
        out.append(events)
    return out


def test_down_after_k_failed_rounds_once_then_recovered_once(tmp_path):
    c = cfg(tmp_path)
    marks = "..x.xxxxx.."  # one blip, then five failures
    events = run_rounds(c, [[obs(UDP4, m == ".")] for m in marks])
    kinds = [[e.kind for e in ev] for ev in events]
    assert kinds == [[], [], [], [], [], [], ["down"], [], [], ["recovered"], []]
    down = events[6][0]
    assert down.since == T0 + 4 * 60_000 and down.detail == "timed out"  # since the first failure of the run
    assert events[9][0].detail == "down for 5m00s"


@pytest.mark.parametrize("k", [1, 2, 5])
def test_k_is_the_number_of_consecutive_failures(tmp_path, k):
    events = run_rounds(cfg(tmp_path, down_after=k), [[obs(UDP4, False)]] * 6)
    assert [i for i, ev in enumerate(events) if ev] == [k - 1]


def test_certificate_expiring_alerts_once_and_again_only_after_a_renewal(tmp_path):
    c = cfg(tmp_path, cert_days=14)
    day = 86400
    soon, renewed = T0 / 1000 + 5 * day, T0 / 1000 + 80 * day
    values = [soon, soon, renewed, renewed, soon]
    events = run_rounds(c, [[obs(TLS, True, v)] for v in values])
    assert [[e.kind for e in ev] for ev in events] == [["cert_expiring"], [], [], [], ["cert_expiring"]]
    assert events[0][0].detail.startswith("expires in 5.0 days (")


def test_a_silent_watch_is_reported(tmp_path):
    c = cfg(tmp_path, silent_after=600)
    # this vantage's own gap: noticed when it runs again
    _, events = al.evaluate({}, [], c, T0, {"berlin": T0 - 3600_000})
    assert [(e.kind, e.subject, e.detail) for e in events] == [
        ("watch_silent", "berlin", "no round for 1h00m, resumed now")
    ]
    # another vantage (an imported store): once while it stays silent, reset when it is back
    states: dict = {}
    updates, events = al.evaluate(states, [], c, T0, {"berlin": T0 - 60_000, "sydney": T0 - 1200_000})
    assert [(e.kind, e.subject) for e in events] == [("watch_silent", "sydney")]
    states.update(updates)
    _, events = al.evaluate(states, [], c, T0 + 60_000, {"sydney": T0 - 1200_000})
    assert events == []
    updates, events = al.evaluate(states, [], c, T0 + 120_000, {"sydney": T0 + 100_000})
    assert events == [] and updates["silent:sydney"][0] == "ok"


def test_events_of_one_round_are_one_alert_per_kind():
    events = [
        al.Event("down", UDP4.label, T0, "timed out"),
        al.Event("down", UDP6.label, T0, "timed out"),
        al.Event("cert_expiring", TLS.label, None, "expires in 3.0 days"),
    ]
    alerts = al.compose(events, "berlin", "prod", T0, 3)
    assert [a.kind for a in alerts] == ["down", "cert_expiring"]
    down = alerts[0]
    assert down.subject == f"[torrust prod watch berlin] DOWN: {UDP4.label} (+1 more)"
    assert down.text.splitlines()[0] == "DOWN [prod] 2 probe(s) failed 3 rounds in a row, seen from berlin:"
    assert [e["subject"] for e in down.body["events"]] == [UDP4.label, UDP6.label]


# ---------------------------------------------------------------------- channels
@pytest.fixture
def receiver():
    r = Receiver().start()
    yield r
    r.stop()


@pytest.fixture
def tls_files(tmp_path):
    return make_ca_and_leaf(tmp_path / "pki")


@pytest.fixture
def smtp(tls_files):
    server = SMTPServer(tls_files[1], tls_files[2]).start()
    yield server
    server.stop()


def smtp_cfg(tmp_path, server: SMTPServer, ca: Path, password: str = SMTP_PASSWORD) -> WatchConfig:
    return cfg(
        tmp_path,
        smtp_host="127.0.0.1",
        smtp_port=server.port,
        smtp_user=SMTP_USER,
        smtp_password=Secret(password),
        smtp_from="watch@example.org",
        smtp_to=("ops@example.org",),
        smtp_cafile=str(ca),
    )


def test_the_webhook_posts_json_with_a_text_field(tmp_path, receiver):
    url = f"http://127.0.0.1:{receiver.port}/hooks/{HOOK_TOKEN}"
    ch = al.WebhookChannel(cfg(tmp_path, webhook_url=Secret(url)))
    (alert,) = al.compose([al.Event("down", UDP4.label, T0, "timed out")], "berlin", "prod", T0, 3)
    ch.send(alert.subject, alert.text, alert.body)
    (body,) = receiver.bodies
    assert receiver.paths == [f"/hooks/{HOOK_TOKEN}"]
    assert body["text"] == alert.text and body["kind"] == "down" and body["vantage"] == "berlin"
    assert HOOK_TOKEN not in ch.describe()


def test_webhook_failures_are_named_without_the_token(tmp_path, receiver):
    receiver.status = 500
    ch = al.WebhookChannel(cfg(tmp_path, webhook_url=Secret(f"http://127.0.0.1:{receiver.port}/h/{HOOK_TOKEN}")))
    with pytest.raises(al.ChannelError) as err:
        ch.send("s", "t", {})
    assert (
        str(err.value)
        == "webhook http://127.0.0.1:%d/******** : HTTP 500 Internal Server Error".replace(" :", ":") % receiver.port
    )
    dead = al.WebhookChannel(cfg(tmp_path, webhook_url=Secret(f"http://127.0.0.1:{free_port()}/h/{HOOK_TOKEN}")))
    with pytest.raises(al.ChannelError) as err:
        dead.send("s", "t", {})
    assert "Connection refused" in str(err.value) and HOOK_TOKEN not in str(err.value)


def test_smtp_with_starttls_and_auth_delivers(tmp_path, smtp, tls_files):
    ch = al.SmtpChannel(smtp_cfg(tmp_path, smtp, tls_files[0]))
    (alert,) = al.compose([al.Event("down", UDP4.label, T0, "timed out")], "berlin", "prod", T0, 3)
    ch.send(alert.subject, alert.text, alert.body)
    (msg,) = smtp.mailbox.messages
    assert msg.mail_from == "watch@example.org" and msg.rcpt_tos == ["ops@example.org"]
    assert smtp.mailbox.subjects() == [alert.subject]
    assert "DOWN [prod] 1 probe(s) failed 3 rounds in a row" in msg.content.decode()


def test_smtp_refused_auth_and_an_untrusted_certificate_are_named(tmp_path, smtp, tls_files):
    wrong = "Wr0-Ng9Tk8Ex7Yz6Ab5Cd4"
    ch = al.SmtpChannel(smtp_cfg(tmp_path, smtp, tls_files[0], password=wrong))
    with pytest.raises(al.ChannelError) as err:
        ch.send("s", "t", {})
    assert str(err.value) == f"smtp {SMTP_USER}@127.0.0.1:{smtp.port}: authentication refused (535)"
    untrusted = al.SmtpChannel(replace(smtp_cfg(tmp_path, smtp, tls_files[0]), smtp_cafile=""))
    with pytest.raises(al.ChannelError) as err:
        untrusted.send("s", "t", {})
    assert "CERTIFICATE_VERIFY_FAILED" in str(err.value) and SMTP_PASSWORD not in str(err.value)
    assert smtp.mailbox.messages == []


def test_a_failing_delivery_is_retried_with_back_off_then_delivered(tmp_path, caplog):
    port = free_port()
    c = cfg(tmp_path, webhook_url=Secret(f"http://127.0.0.1:{port}/h/{HOOK_TOKEN}"), retry_base=10, retry_max=25)
    channels = al.channels_from(c)
    with Store.open(c.store_path, create=True) as st:
        with st.transaction():
            st.add_alert(T0, "berlin", "down", "subj", "text", {"kind": "down"}, channels)
        caplog.set_level(logging.WARNING, "torrust.watch")
        assert al.deliver_due(st, channels, c, T0) == {"sent": 0, "failed": 1, "gave_up": 0}
        assert al.deliver_due(st, channels, c, T0 + 9_999) == {"sent": 0, "failed": 0, "gave_up": 0}  # not yet due
        assert al.deliver_due(st, channels, c, T0 + 10_000) == {"sent": 0, "failed": 1, "gave_up": 0}
        assert st.next_delivery_time() == T0 + 10_000 + 20_000  # doubled
        assert al.deliver_due(st, channels, c, T0 + 30_000)["failed"] == 1
        assert st.next_delivery_time() == T0 + 30_000 + 25_000  # capped at retry_max
        assert "try 1 failed" in caplog.text and "try 3 failed" in caplog.text and HOOK_TOKEN not in caplog.text
        receiver = Receiver(port).start()
        try:
            assert al.deliver_due(st, channels, c, T0 + 55_000) == {"sent": 1, "failed": 0, "gave_up": 0}
        finally:
            receiver.stop()
        assert receiver.kinds() == ["down"]
        (d,) = st.deliveries()
        assert (d["attempts"], d["done_at"], d["last_error"]) == (4, T0 + 55_000, None)


def test_a_delivery_is_abandoned_after_retry_give_up(tmp_path, caplog):
    c = cfg(tmp_path, webhook_url=Secret(f"http://127.0.0.1:{free_port()}/h"), retry_give_up=60)
    channels = al.channels_from(c)
    with Store.open(c.store_path, create=True) as st:
        with st.transaction():
            st.add_alert(T0, "berlin", "down", "subj", "text", {}, channels)
        al.deliver_due(st, channels, c, T0)
        assert al.deliver_due(st, channels, c, T0 + 61_000) == {"sent": 0, "failed": 0, "gave_up": 1}
        assert st.next_delivery_time() is None
        assert "gave up after 2 tries" in caplog.text


def test_backoff_doubles_up_to_the_cap():
    assert [al.backoff(n, 5, 60) for n in range(1, 7)] == [5, 10, 20, 40, 60, 60]
