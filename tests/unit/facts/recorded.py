"""Recorded outputs of the tool's own commands, kept as files beside the facts tests:
real captures (services/healthy.txt, snapshot/running.txt, ...) and crafted odd or
hostile ones (what a broken or compromised host could print)."""

from __future__ import annotations

from pathlib import Path

RECORDED = Path(__file__).resolve().parent / "recorded"


def recorded(name: str) -> str:
    return (RECORDED / name).read_text()
