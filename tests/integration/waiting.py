"""Poll for a condition instead of sleeping for a guessed time.

The deadline only stops a test that would otherwise hang; it is never what a test checks
(benchmarks measure time). When it passes, the failure says what was awaited and the
last value seen.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(check: Callable[[], T], what: str, *, timeout: float = 180, pause: float = 0.1) -> T:
    """Call `check` until it returns something truthy; return that."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"still waiting for {what} after {timeout:.0f} s (last: {value!r})")
        time.sleep(pause)
