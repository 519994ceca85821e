"""What the hardening script reports: one `STEP name result detail` line per step."""

from __future__ import annotations


def parse(text: str) -> list[dict]:
    """[{step, result, detail}] from the script's output; other lines are its log."""
    steps = []
    for line in text.splitlines():
        if line.startswith("STEP "):
            parts = line.split(" ", 3)
            if len(parts) >= 3:
                steps.append({"step": parts[1], "result": parts[2], "detail": parts[3] if len(parts) > 3 else ""})
    return steps
