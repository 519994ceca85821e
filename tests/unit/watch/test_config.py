"""WatchConfig: one table of rules, every problem named by its variable with what is allowed."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from tasks.config.secrets import Secret
from tasks.errors import ConfigError, ExitCode, SettingsError
from tasks.watch.config import FIELD_NAMES, WatchConfig, parse_duration, problems, validate

TOKEN_URL = "https://hooks.example.org/services/T000/B000/Xk4Lp8Yv3Nb6Hc1Jd5Fs0G"


# The names the settings layer will pass (the variables table entries in NOTES-watch.md).
VARIABLES = {f: f"TORRUST_WATCH_{f.upper()}" for f in FIELD_NAMES} | {
    "store_path": "TORRUST_WATCH_STORE",
    "probe_timeout": "TORRUST_PROBE_TIMEOUT",
    "probe_attempts": "TORRUST_PROBE_ATTEMPTS",
}


def problems_named(cfg: WatchConfig) -> list[str]:
    return problems(cfg, VARIABLES)


def base(**kw) -> WatchConfig:
    return replace(WatchConfig(store_path=Path("/var/lib/torrust-watch/prod.sqlite")), **kw)


def test_the_defaults_are_valid():
    assert problems_named(base()) == []
    smtp = base(
        smtp_host="mail.example.org",
        smtp_user="alerts",
        smtp_password=Secret("Sm7-Pq2Xz9Lk4Wv8"),
        smtp_from="watch@example.org",
        smtp_to=("ops@example.org", "oncall@example.org"),
        webhook_url=Secret(TOKEN_URL),
    )
    assert problems_named(smtp) == []
    assert smtp.channels == ("webhook", "smtp")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"interval": 0}, "TORRUST_WATCH_INTERVAL = '0': out of range (allowed: seconds from 1 to 86400)"),
        ({"interval": "60"}, "TORRUST_WATCH_INTERVAL = '60': not a number (allowed: seconds from 1 to 86400)"),
        ({"jitter": 31}, "TORRUST_WATCH_JITTER = '31': more than half the interval (60 s)"),
        ({"down_after": 0}, "TORRUST_WATCH_DOWN_AFTER = '0': out of range (allowed: a whole number of rounds"),
        ({"down_after": 2.5}, "TORRUST_WATCH_DOWN_AFTER = '2.5': not a whole number"),
        ({"cert_days": 400}, "TORRUST_WATCH_CERT_DAYS = '400': out of range"),
        ({"silent_after": 100}, "TORRUST_WATCH_SILENT_AFTER = '100': less than twice the interval (120 s)"),
        ({"retention_raw_days": 30, "retention_hourly_days": 10}, "TORRUST_WATCH_RETENTION_HOURLY_DAYS = '10': less"),
        ({"vantage": "Berlin 1"}, "TORRUST_WATCH_VANTAGE = 'Berlin 1': not a valid vantage name"),
        (
            {"webhook_url": Secret("ftp://hooks.example.org/x")},
            "TORRUST_WATCH_WEBHOOK_URL = '********': not an http(s)",
        ),
        (
            {"webhook_url": Secret("https://hooks.example.org:99999/x")},
            "TORRUST_WATCH_WEBHOOK_URL = '********': has an",
        ),
        (
            {"smtp_host": "mail server", "smtp_from": "w@example.org", "smtp_to": ("o@example.org",)},
            "TORRUST_WATCH_SMTP_HOST = 'mail server': not a host name or IP address",
        ),
        ({"smtp_port": 0}, "TORRUST_WATCH_SMTP_PORT = '0': out of range"),
        ({"metrics_port": 70000}, "TORRUST_WATCH_METRICS_PORT = '70000': out of range (allowed: 0 (off)"),
        ({"metrics_bind": "localhost"}, "TORRUST_WATCH_METRICS_BIND = 'localhost': not an IP address"),
        ({"smtp_cafile": "/nonexistent/ca.pem"}, "TORRUST_WATCH_SMTP_CAFILE = '/nonexistent/ca.pem': file not found"),
        ({"retry_base": 60, "retry_max": 30}, "TORRUST_WATCH_RETRY_MAX = '30': less than the first retry (60 s)"),
        ({"smtp_user": "alerts"}, "TORRUST_WATCH_SMTP_HOST = '': empty, but other SMTP settings are set"),
    ],
)
def test_each_bad_value_is_named_with_what_is_allowed(change, expected):
    found = problems_named(base(**change))
    assert len(found) == 1, found
    assert found[0].startswith(expected), found[0]


def test_smtp_rules_between_fields():
    cfg = base(smtp_host="mail.example.org", smtp_user="alerts")
    found = problems_named(cfg)
    assert any(p.startswith("TORRUST_WATCH_SMTP_FROM = '': required when an SMTP host is set") for p in found)
    assert any(p.startswith("TORRUST_WATCH_SMTP_TO = '': required") for p in found)
    assert any(p.startswith("TORRUST_WATCH_SMTP_PASSWORD = '': user and password go together") for p in found)
    clear = base(
        smtp_host="mail.example.org",
        smtp_user="alerts",
        smtp_password=Secret("Sm7-Pq2Xz9Lk4Wv8"),
        smtp_from="w@example.org",
        smtp_to=("o@example.org",),
        smtp_starttls=False,
    )
    assert problems_named(clear) == [
        "TORRUST_WATCH_SMTP_STARTTLS = 'False': off, but a password would then cross the network in clear text"
    ]
    assert problems_named(replace(clear, smtp_host="127.0.0.1")) == []  # a relay on this host
    bad_to = replace(clear, smtp_starttls=True, smtp_to=("ops@example.org", "not-an-address"))
    assert problems_named(bad_to) == [
        "TORRUST_WATCH_SMTP_TO = 'ops@example.org,not-an-address': not an email address: 'not-an-address' "
        "(allowed: email addresses, comma-separated)"
    ]


def test_secrets_never_show_in_problems_or_the_redacted_view():
    creds = "https://user:Pa55-w0rd-Kx9@hooks.example.org/x"
    cfg = base(webhook_url=Secret(creds), smtp_password=Secret("Sm7-Pq2Xz9Lk4Wv8"))
    text = "\n".join(problems_named(cfg))
    assert "must not hold a user or password" in text
    assert "Pa55-w0rd" not in text and "Sm7-Pq2" not in text
    shown = repr(base(webhook_url=Secret(TOKEN_URL)).redacted())
    assert "Xk4Lp8" not in shown and "'webhook_url': '********'" in shown


def test_validate_lists_every_problem_at_once_with_exit_code_2():
    with pytest.raises(SettingsError) as err:
        validate(base(interval=0, down_after=0, vantage="X"), "prod", VARIABLES)
    assert err.value.code == ExitCode.CONFIG
    assert len(err.value.problems) == 3
    assert "configuration for environment 'prod' has 3 problems" in err.value.message
    flags = {**VARIABLES, "interval": "--interval"}
    with pytest.raises(SettingsError) as err:
        validate(base(interval=0), "prod", flags)
    assert err.value.problems[0].startswith("--interval = '0': out of range")


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90), ("10m", 600), ("24h", 86400), ("7d", 604800)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "10", "1w", "-5m", "0s", "1.5h", "10 m"])
def test_bad_durations_are_named(text):
    with pytest.raises(ConfigError) as err:
        parse_duration(text, "--for")
    assert err.value.message.startswith(f"--for {text!r}: not a duration (allowed:")


@pytest.mark.parametrize(
    ("host", "name"),
    [("monitor-1.example.org", "monitor-1"), ("Berlin_Box", "berlin_box"), ("", "local"), ("--", "local")],
)
def test_default_vantage(host, name):
    from tasks.watch.config import default_vantage

    assert default_vantage(host) == name
