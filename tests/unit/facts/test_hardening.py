"""tasks/facts/hardening.py: the hardening script's step lines."""

from __future__ import annotations

from tasks.facts import hardening


def test_steps_and_log_lines():
    out = "STEP packages changed installed 6\nlog line\nSTEP user ok\nSTEP\nSTEP sshd skipped by request\n"
    assert hardening.parse(out) == [
        {"step": "packages", "result": "changed", "detail": "installed 6"},
        {"step": "user", "result": "ok", "detail": ""},
        {"step": "sshd", "result": "skipped", "detail": "by request"},
    ]
