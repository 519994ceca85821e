"""tasks/operations/removals.py: what a deploy would remove from the running release, and
when it may (issue #15, item 3)."""

from __future__ import annotations

import dataclasses

import pytest

from tasks.errors import ExitCode, RemovalRefused
from tasks.facts import snapshot
from tasks.operations import removals
from tests.unit.facts.recorded import recorded

RUNNING = snapshot.parse(recorded("snapshot/moved-tag.txt"))  # tracker + proxy, cron on, 16969/udp + 18080/tcp
PORTS = {"16969/udp", "18080/tcp"}


def with_services(*names: str):
    manifest = dataclasses.replace(RUNNING.manifest, services=names)
    return dataclasses.replace(RUNNING, manifest=manifest)


def test_nothing_removed():
    assert removals.removals(RUNNING, ["tracker", "proxy"], True, PORTS) == []


def test_every_kind_of_removal_is_named():
    snap = with_services("tracker", "mysql", "proxy", "grafana")
    found = removals.removals(snap, ["tracker", "proxy"], False, {"18080/tcp"})
    assert [r.token for r in found] == ["database-driver", "grafana", "backup-cron", "16969/udp"]
    assert str(found[0]) == "the database driver would switch from mysql to sqlite3"


def test_a_first_deploy_removes_nothing():
    first = dataclasses.replace(RUNNING, manifest=None, cron=True)
    assert removals.removals(first, ["tracker"], False, set()) == []


def test_compose_ports_of_a_rendered_file():
    text = 'services:\n  a:\n    ports:\n      - "6969:6969/udp"\n      - "127.0.0.1:9090:9090"\n      - "80:80"\n'
    assert removals.compose_ports(text) == {"6969/udp", "9090/tcp", "80/tcp"}


def test_refused_unless_allowed_by_the_flag_or_the_setting():
    found = removals.removals(with_services("tracker", "proxy", "grafana"), ["tracker", "proxy"], False, PORTS)
    with pytest.raises(RemovalRefused) as info:
        removals.check(found, allow_flag=False, setting="", env="prod")
    err = info.value
    assert err.code == ExitCode.REMOVAL_REFUSED == 6 and err.removals == ["grafana", "backup-cron"]
    assert "service grafana; the scheduled backup (cron job)" in err.message
    assert "TORRUST_ALLOW_REMOVAL=grafana, backup-cron" in err.hint
    assert err.as_dict()["removals"] == ["grafana", "backup-cron"]
    with pytest.raises(RemovalRefused) as info:  # one allowed, one not
        removals.check(found, allow_flag=False, setting="grafana", env="prod")
    assert info.value.removals == ["backup-cron"]
    assert removals.check(found, allow_flag=True, setting="", env="prod") == (
        ["grafana", "backup-cron"],
        "--allow-removal",
    )
    assert (
        removals.check(found, allow_flag=False, setting="backup-cron, grafana", env="p")[1] == "TORRUST_ALLOW_REMOVAL"
    )
    assert removals.check(found, allow_flag=False, setting="all", env="p")[0] == ["grafana", "backup-cron"]
    assert removals.check([], allow_flag=False, setting="", env="p") == ([], "")
