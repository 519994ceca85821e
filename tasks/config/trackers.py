"""The Torrust tracker releases this tool supports, as data, and what each can do.

Rendering (tracker.toml, Prometheus jobs, Grafana dashboards), the health probes and
validation follow the capabilities of the configured tracker image instead of assuming
one tracker. Every fact below was read from the tracker's source (file and commit named
in `source`), never remembered; docs/guides/tracker-releases.md has the table in prose.

Lookup of an image reference (`resolve`):

- a reference listed for a release (`torrust/tracker:v3.0.0`, a stand-in tag, a digest)
  is that release, also when copied to another registry (`registry.example/torrust/tracker:
  v3.0.0`: the same tag of the same repository);
- a reference known NOT to work with this tool (KNOWN_UNSUPPORTED) is refused, with why;
- anything else is unknown: outside the `local` environment it is refused unless a
  profile is named (TORRUST_TRACKER_RELEASE);
  in `local` the most limited supported release (v3.0.0) is assumed, with a warning, so
  nothing is rendered that such an image might not serve.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tasks.config.kinds import MOVING_TAGS, image_ref
from tasks.errors import ConfigError

TRACKER_REPOSITORY = "torrust/tracker"
STANDIN_REPOSITORY = "torrust-test/tracker-standin"
TRACKER_SOURCE = "https://github.com/torrust/torrust-tracker"

# Token styles of the REST API.
QUERY = "query"  # ?token=T only
BEARER = "bearer"  # Authorization: Bearer T (the query token still works)

THRESHOLDS = ("off", "error", "warn", "info", "debug", "trace")

# Schema 2.0.0: every table and the keys it may hold ("" is the top level).
_SCHEMA_2_0_0: dict[str, frozenset[str]] = {
    "": frozenset({"metadata", "logging", "core", "udp_trackers", "http_trackers", "http_api", "health_check_api"}),
    "metadata": frozenset({"app", "purpose", "schema_version"}),
    "logging": frozenset({"threshold"}),
    "core": frozenset(
        {
            "listed",
            "private",
            "inactive_peer_cleanup_interval",
            "tracker_usage_statistics",
            "private_mode",
            "announce_policy",
            "database",
            "net",
            "tracker_policy",
        }
    ),
    "core.private_mode": frozenset({"check_keys_expiration"}),
    "core.announce_policy": frozenset({"interval", "interval_min"}),
    "core.database": frozenset({"driver", "path"}),
    "core.net": frozenset({"external_ip", "on_reverse_proxy"}),
    "core.tracker_policy": frozenset(
        {"max_peer_timeout", "persistent_torrent_completed_stat", "remove_peerless_torrents"}
    ),
    "udp_trackers": frozenset({"bind_address"}),
    "http_trackers": frozenset({"bind_address", "tsl_config"}),
    "http_trackers.tsl_config": frozenset({"ssl_cert_path", "ssl_key_path"}),
    "http_api": frozenset({"bind_address", "tsl_config", "access_tokens"}),
    "http_api.tsl_config": frozenset({"ssl_cert_path", "ssl_key_path"}),
    "health_check_api": frozenset({"bind_address"}),
}
# develop added core.announce_policy.max_peers_per_announce (v2_0_0/mod.rs default config).
_SCHEMA_2_0_0_DEVELOP = {
    **_SCHEMA_2_0_0,
    "core.announce_policy": _SCHEMA_2_0_0["core.announce_policy"] | {"max_peers_per_announce"},
}
_ENUMS_2_0_0 = (
    ("metadata.app", ("torrust-tracker",)),
    ("metadata.purpose", ("configuration",)),
    ("logging.threshold", THRESHOLDS),
    ("core.database.driver", ("sqlite3", "mysql")),
)
_MANDATORY_2_0_0 = ("metadata.schema_version", "logging.threshold", "core.private", "core.listed")


@dataclass(frozen=True)
class ScrapeJob:
    """One Prometheus job the release can serve: `name` is what dashboards select on."""

    name: str
    path: str
    params: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class TrackerRelease:
    key: str  # what the profile setting names
    title: str
    images: tuple[str, ...]  # references known to be this release (normalised)
    standins: tuple[str, ...]  # test stand-ins built to behave like it (tests/images/tracker-standin)
    source: str  # where the facts below were read
    # REST API
    stats_route: str
    stats_formats: tuple[str, ...]  # "json", "prometheus" (format=prometheus)
    metrics_route: str | None  # labelled metrics, format=prometheus; None: absent (404 after auth)
    token_auth: str  # QUERY or BEARER
    unauthorized_reply: str  # body of the HTTP 500 when the token is missing
    key_route: str  # POST {"key": null, "seconds_valid": N} -> {"key": ...}
    key_delete_route: str  # DELETE .../{key}
    whitelist_route: str  # POST .../{info_hash}: whitelist (idempotent)
    # configuration
    schema_version: str
    mandatory_options: tuple[str, ...]
    config_tables: dict[str, frozenset[str]] = field(repr=False)
    enums: tuple[tuple[str, tuple[str, ...]], ...] = ()
    # modes
    udp_in_private_mode: bool = False  # v3.0.0 and develop do not start UDP trackers when private
    listed_refusal: str = ""  # HTTP failure reason for a torrent not whitelisted ({info_hash})
    private_refusal: str = ""  # HTTP failure reason for an announce without a key
    udp_listed_refusal: str = ""
    # database
    tables: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def stats_prometheus(self) -> bool:
        return "prometheus" in self.stats_formats

    @property
    def has_metrics(self) -> bool:
        """Anything Prometheus can scrape."""
        return bool(self.scrape_jobs)

    @property
    def scrape_jobs(self) -> tuple[ScrapeJob, ...]:
        jobs = []
        if self.stats_prometheus:
            jobs.append(ScrapeJob("tracker_stats", self.stats_route, (("format", "prometheus"),)))
        if self.metrics_route:
            jobs.append(ScrapeJob("tracker_metrics", self.metrics_route, (("format", "prometheus"),)))
        return tuple(jobs)

    @property
    def header_token(self) -> bool:
        return self.token_auth == BEARER

    def enum(self, option: str) -> tuple[str, ...]:
        return dict(self.enums).get(option, ())

    def as_context(self) -> dict[str, Any]:
        """What templates may use, under the key `tracker`."""
        return {
            "release": self.key,
            "title": self.title,
            "schema_version": self.schema_version,
            "scrape_jobs": [{"name": j.name, "path": j.path, "params": dict(j.params)} for j in self.scrape_jobs],
            "header_token": self.header_token,
            "has_metrics": self.has_metrics,
            "dashboards": list(dashboards(self)),
        }


V3_0_0 = TrackerRelease(
    key="v3.0.0",
    title="Torrust Tracker v3.0.0 (release, 2024-10-02)",
    images=("torrust/tracker:v3.0.0",),
    standins=(f"{STANDIN_REPOSITORY}:v3.0.0",),
    source=(
        f"{TRACKER_SOURCE} tag v3.0.0 (commit 850e95e357d6e4bc9d4237392165a8e4b6b2fbb6): "
        "src/servers/apis/routes.rs, v1/routes.rs, v1/context/{stats,auth_key,whitelist}/, "
        "v1/middlewares/auth.rs, packages/configuration/src/v2_0_0/, src/core/databases/{sqlite,mysql}.rs, "
        "src/app.rs, src/servers/{http/v1,udp}/handlers"
    ),
    stats_route="/api/v1/stats",
    stats_formats=("json",),
    metrics_route=None,
    token_auth=QUERY,
    unauthorized_reply='Unhandled rejection: Err { reason: "unauthorized" }',
    key_route="/api/v1/keys",
    key_delete_route="/api/v1/key/{key}",
    whitelist_route="/api/v1/whitelist/{info_hash}",
    schema_version="2.0.0",
    mandatory_options=_MANDATORY_2_0_0,
    config_tables=_SCHEMA_2_0_0,
    enums=_ENUMS_2_0_0,
    listed_refusal="Tracker error: The torrent: {info_hash}, is not whitelisted",
    private_refusal="Authentication error: Missing authentication key param for private tracker",
    udp_listed_refusal="tracker server error: The torrent: {info_hash}, is not whitelisted",
    tables=("whitelist", "torrents", "keys"),
    notes=(
        "no Prometheus endpoint: /api/v1/stats answers JSON only and /api/v1/metrics does not exist",
        "the REST API reads the admin token from the query string only",
    ),
)

DEVELOP_COMMIT = "02c33f6972eef36058afee9f0ee7180b51b5d072"
DEVELOP = TrackerRelease(
    key="develop-02c33f69",
    title="Torrust Tracker development build (develop, configuration schema 2.0.0, with metrics)",
    images=(),  # no digest of such a build is published: a digest-pinned image names this profile
    standins=(f"{STANDIN_REPOSITORY}:develop-02c33f69",),
    source=(
        f"{TRACKER_SOURCE} develop: packages/axum-rest-tracker-api-server/src/v1/context/stats/"
        f"{{routes,handlers}}.rs @ {DEVELOP_COMMIT[:8]}, stats/resources.rs @ 144a338b, stats/responses.rs "
        "@ 35d248ae, v1/middlewares/auth.rs (PR #1367, 2025-03-10: Bearer header), "
        "packages/configuration/src/v2_0_0/mod.rs @ 0723daaf, migration 20250527093000 "
        "(torrent_aggregate_metrics); the official demo's live API (torrust-tracker-demo "
        "docs/security/reviews/2026-04/02-tracker-api.md) confirms Bearer and the 500 replies"
    ),
    stats_route="/api/v1/stats",
    stats_formats=("json", "prometheus"),
    metrics_route="/api/v1/metrics",
    token_auth=BEARER,
    unauthorized_reply='Unhandled rejection: Err { reason: "unauthorized" }',
    key_route="/api/v1/keys",
    key_delete_route="/api/v1/key/{key}",
    whitelist_route="/api/v1/whitelist/{info_hash}",
    schema_version="2.0.0",
    mandatory_options=_MANDATORY_2_0_0,
    config_tables=_SCHEMA_2_0_0_DEVELOP,
    enums=_ENUMS_2_0_0,
    listed_refusal="Tracker error: The torrent: {info_hash}, is not whitelisted",
    private_refusal="Authentication error: Missing authentication key param for private tracker",
    udp_listed_refusal="tracker server error: The torrent: {info_hash}, is not whitelisted",
    tables=("whitelist", "torrents", "keys", "torrent_aggregate_metrics"),
    notes=(
        "a moving branch: pin the image by digest and name this profile (the profile setting)",
        "no official digest of a develop build is published (the demo runs the mutable develop tag)",
    ),
)

RELEASES: dict[str, TrackerRelease] = {r.key: r for r in (V3_0_0, DEVELOP)}
BASELINE = V3_0_0  # assumed for an unknown image in `local`: the fewest capabilities

# Real references that do not work with this tool, and why.
KNOWN_UNSUPPORTED: dict[str, str] = {
    "torrust/tracker@sha256:5801a73010692b820da0d33ecd5505922a41b4c9df3060c89de100bcaa89aa68": (
        "a development build that reads configuration schema 3.0.0 (logging.trace_filter), "
        "as used in github.com/Kheopsian/Hydranos tools/interop/run.sh and torrust.toml; this tool "
        "renders schema 2.0.0"
    ),
}

# The setting that names the release of an image the table does not list (a digest-pinned
# development build, a private registry's name).
PROFILE_SETTING = "TORRUST_TRACKER_RELEASE"


def _name_profile() -> str:
    return f"name its release with {PROFILE_SETTING}"


def dashboards(release: TrackerRelease) -> tuple[str, ...]:
    """The shipped Grafana dashboards whose queries this release can answer."""
    jobs = {j.name for j in release.scrape_jobs}
    table = (("stats.json", {"tracker_stats"}), ("metrics.json", {"tracker_stats", "tracker_metrics"}))
    return tuple(name for name, needs in table if needs <= jobs)


# --------------------------------------------------------------------------- lookup
def normalise(image: str) -> tuple[str, str | None, str | None]:
    """(repository, tag, digest), the repository in Docker's familiar form."""
    ref = image_ref(image)
    if ref is None:
        raise ConfigError(f"tracker image {image!r} is not an image reference")
    return ref.repository, ref.tag, ref.digest


@dataclass(frozen=True)
class Resolution:
    release: TrackerRelease
    how: str  # "image", "registry copy", "standin", "profile", "assumed"
    warning: str = ""


def _registry_copy(name: str) -> str | None:
    """`registry.example:5000/torrust/tracker` -> `torrust/tracker`: the release's own
    repository copied to another registry (a mirror, a private registry)."""
    host, _, rest = name.partition("/")
    is_registry = "." in host or ":" in host or host == "localhost"
    return rest if is_registry and rest == TRACKER_REPOSITORY else None


def _by_image(image: str) -> tuple[TrackerRelease | None, str]:
    name, tag, digest = normalise(image)
    copied = _registry_copy(name)
    name = copied or name
    forms = {f"{name}@{digest}"} if digest else set()
    if tag:
        forms.add(f"{name}:{tag}")
    for release in RELEASES.values():
        if forms & set(release.images):
            return release, "registry copy" if copied else "image"
        if forms & set(release.standins):
            return release, "standin"
    return None, ""


def _refuse_unsupported(image: str) -> None:
    name, _tag, digest = normalise(image)
    why = KNOWN_UNSUPPORTED.get(f"{name}@{digest}") if digest else None
    if why:
        raise ConfigError(f"tracker image {image} is not supported: {why}", hint=_known_hint())


def _known_hint() -> str:
    refs = [ref for r in RELEASES.values() for ref in (*r.images, *r.standins)]
    return (
        "supported releases: "
        + ", ".join(f"{r.key} ({r.title})" for r in RELEASES.values())
        + "; known references: "
        + ", ".join(refs)
        + "; for another image of a supported release: "
        + _name_profile()
    )


def resolve(image: str, *, profile: str | None = None, local: bool = False) -> Resolution:
    """The release an image reference runs. Raises ConfigError when it cannot be known."""
    _refuse_unsupported(image)
    found, how = _by_image(image)
    if profile:
        named = RELEASES.get(profile)
        if named is None:
            raise ConfigError(
                f"{PROFILE_SETTING} {profile!r} is not a supported release (allowed: {', '.join(RELEASES)})"
            )
        if found is not None and found is not named:
            raise ConfigError(f"tracker image {image} is release {found.key}, but {PROFILE_SETTING} names {named.key}")
        return Resolution(named, how or "profile")
    if found is not None:
        return Resolution(found, how)
    _name, tag, digest = normalise(image)
    moving = f" (the tag '{tag}' moves: pin a digest)" if tag in MOVING_TAGS and not digest else ""
    if local:
        return Resolution(
            BASELINE,
            "assumed",
            f"tracker image {image} is not a known release{moving}: assuming the capabilities of "
            f"{BASELINE.key} (no Prometheus endpoint); {_name_profile()}",
        )
    raise ConfigError(f"tracker image {image} is not a known tracker release{moving}", hint=_known_hint())


def release_of(s: Any) -> Resolution:
    """The release of a Settings object's tracker image (TORRUST_TRACKER_RELEASE names it
    when the image reference does not say)."""
    return resolve(s.images["tracker"], profile=s.tracker_release or None, local=s.is_local_env)


# ------------------------------------------------------------------ combinations
@dataclass(frozen=True)
class StackChoice:
    """The settings that depend on the tracker's capabilities."""

    prometheus: bool
    grafana: bool
    private: bool
    listed: bool
    log_level: str
    udp_trackers: int


def problems(release: TrackerRelease, choice: StackChoice) -> list[str]:
    """Combinations that cannot work with this release (each names the setting)."""
    found = []
    if choice.grafana and not dashboards(release):
        found.append(
            f"TORRUST_GRAFANA=true: tracker release {release.key} has no Prometheus endpoint, so the Torrust "
            "dashboards would stay empty; set TORRUST_GRAFANA=false or deploy a release with metrics "
            f"({', '.join(r.key for r in RELEASES.values() if dashboards(r))})"
        )
    if choice.log_level not in release.enum("logging.threshold"):
        found.append(
            f"TORRUST_LOG_LEVEL={choice.log_level}: tracker release {release.key} accepts "
            + ", ".join(release.enum("logging.threshold"))
        )
    return found


def notes(release: TrackerRelease, choice: StackChoice) -> list[str]:
    """What a workable stack gets differently with this release (said, not refused)."""
    found = []
    if choice.prometheus and not release.has_metrics:
        found.append(f"Prometheus runs without tracker metrics: release {release.key} has no Prometheus endpoint")
    if choice.private and choice.udp_trackers and not release.udp_in_private_mode:
        found.append(f"release {release.key} does not start UDP trackers in private mode: only the HTTP trackers serve")
    return found


def require_workable(release: TrackerRelease, choice: StackChoice) -> None:
    found = problems(release, choice)
    if found:
        raise ConfigError(
            "the settings cannot work with the tracker image:\n" + "\n".join(f"  - {p}" for p in found),
            hint="nothing was rendered or changed",
        )


def choice_of(s: Any) -> StackChoice:
    return StackChoice(
        prometheus=s.prometheus,
        grafana=s.grafana,
        private=s.private,
        listed=s.listed,
        log_level=s.log_level,
        udp_trackers=len(s.udp_trackers),
    )


def capabilities_for(s: Any) -> dict[str, Any]:
    """The `tracker` template context: the release's capabilities. Refuses an unknown
    image (outside local) and a combination that cannot work (ConfigError, exit 2)."""
    resolution = release_of(s)
    choice = choice_of(s)
    require_workable(resolution.release, choice)
    ctx = resolution.release.as_context()
    ctx["notes"] = [n for n in (resolution.warning, *notes(resolution.release, choice)) if n]
    return ctx
