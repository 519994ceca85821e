"""Text from a host shown to the operator: printable characters only, bounded.

A message the host sends (an error line, a problem list) reaches the operator's terminal
and CI log. A compromised host could send terminal escape sequences (rewrite the screen,
set the window title, hide lines) or megabytes; `host_text` keeps what a person can read.
"""

from __future__ import annotations

LIMIT = 2000


def host_text(value: object, limit: int = LIMIT) -> str:
    """`value` as text with every non-printable character (ESC, CR, ...) shown as '?',
    cut to `limit` characters; a non-string becomes its repr."""
    text = value if isinstance(value, str) else repr(value)
    clean = "".join(ch if ch.isprintable() else "?" for ch in text[: limit + 1])
    return clean if len(clean) <= limit else clean[:limit] + "..."
