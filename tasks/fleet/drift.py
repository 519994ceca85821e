"""Drift: which hosts of a fleet differ, and in what (pure; the views read the facts).

Each environment renders its own release (its own ports, names, project), so content
hashes are never compared across hosts. A host drifts when:

- `content`: the release it runs is not what its own settings render now (`app.deploy
  --env NAME` would change it), e.g. after a rollout that stopped before it;
- `image:NAME`: it runs another image reference for NAME than most hosts (a tie goes to
  the host listed first);
- `digest:NAME`: the same for image digests, when the view has them;
- `nothing deployed`: it has no current release.
"""

from __future__ import annotations

from collections import Counter

# What is compared across hosts: (field of the host's row, the mark's prefix)
ACROSS = (("images", "image"), ("digests", "digest"))


def majority(rows: list[dict], key: str) -> dict[str, str]:
    """{name: the value most hosts have} for the mapping `key` of each row."""
    counts: dict[str, Counter] = {}
    for row in rows:
        for name, value in (row.get(key) or {}).items():
            counts.setdefault(name, Counter())[value] += 1
    return {name: c.most_common(1)[0][0] for name, c in counts.items()}


def compare(rows: dict[str, dict]) -> dict[str, list[str]]:
    """{env: the marks of what differs} for the hosts that answered (rows in fleet order:
    each with current, content_sha256, expected_sha256, images and digests)."""
    reference = {key: majority(list(rows.values()), key) for key, _ in ACROSS}
    marks: dict[str, list[str]] = {}
    for env, row in rows.items():
        found = []
        if not row.get("current"):
            found.append("nothing deployed")
        elif row.get("content_sha256") != row.get("expected_sha256"):
            found.append("content")
        for key, prefix in ACROSS:
            found += [
                f"{prefix}:{name}"
                for name, value in sorted((row.get(key) or {}).items())
                if value != reference[key][name]
            ]
        marks[env] = found
    return marks
