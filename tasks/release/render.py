"""Render a release: every file the host needs, from the settings and `application/`.

Pure apart from writing the output directory: the same settings give byte-identical
files (no timestamps, sorted keys), so a release's content hash tells whether anything
changed. Undefined template variables are errors. Secrets are revealed only into the
files that need them, and those files are written with mode 0600.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from tasks.config import trackers
from tasks.config.settings import PART_TYPES, Settings
from tasks.config.variables import VARIABLES
from tasks.errors import ConfigError, ToolError
from tasks.release.cache import user_cache
from tasks.release.layout import MANIFEST

APPLICATION = Path(__file__).resolve().parents[2] / "application"
MANIFEST_FORMAT = 1
ACME_CA_ROOT = "proxy/acme-ca-root.pem"  # TORRUST_ACME_CA_ROOT, shipped with the release
ACME_CA_ROOT_PATH = "/etc/caddy/acme-ca-root.pem"  # where the proxy reads it

if TYPE_CHECKING:  # Jinja2 is imported when rendering: a no-op deploy never needs it
    import jinja2


@dataclass(frozen=True)
class RenderedFile:
    path: str  # relative to the release directory, POSIX separators
    content: bytes
    mode: int
    secret: bool = False
    group: int | None = None  # a container's group that must read it (set on the host by the deploy)
    key: bytes = field(default=b"", repr=False, compare=False)  # for a secret file's digest

    @property
    def sha256(self) -> str:
        """The file's digest as recorded in release.json and in the services' config labels:
        SHA-256 of the content, or for a secret file an HMAC-SHA256 keyed by the release's
        secrets, so the world-readable manifest is no offline oracle for guessing a weak
        secret (issue 11, finding 9)."""
        if self.secret:
            return hmac.new(self.key, self.content, hashlib.sha256).hexdigest()
        return hashlib.sha256(self.content).hexdigest()


@dataclass(frozen=True)
class Release:
    files: tuple[RenderedFile, ...]
    content_sha256: str
    storage_dirs: tuple[tuple[str, int | None], ...]  # (path under storage/, owner uid or None)

    def file(self, path: str) -> RenderedFile:
        return next(f for f in self.files if f.path == path)

    @property
    def paths(self) -> list[str]:
        return [f.path for f in self.files]


def _bytecode_cache() -> jinja2.BytecodeCache | None:
    """Compiled templates cached per user (keyed by each template's checksum): saves
    compiling them on every run. Output is unaffected; an unusable cache dir is skipped."""
    import jinja2

    path = user_cache("jinja2")
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError:
        return None
    return jinja2.FileSystemBytecodeCache(str(path))


def environment(templates: Path = APPLICATION) -> jinja2.Environment:
    """The Jinja2 environment for the tool's templates: undefined variables are errors,
    output byte-exact (no autoescape, trailing newlines kept)."""
    import jinja2

    return jinja2.Environment(
        bytecode_cache=_bytecode_cache(),
        loader=jinja2.FileSystemLoader(str(templates)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )


def context(s: Settings) -> dict:
    """Everything the templates may use: every setting by its field name (the parts `ssh`,
    `infra`, `images` as objects), secrets revealed only under `secrets`, and what is
    derived from several settings."""
    ctx = {v.field: getattr(s, v.field) for v in VARIABLES if not v.part and not v.secret}
    ctx.update({part: getattr(s, part) for part in PART_TYPES})
    secrets = {v.field: getattr(s, v.field).reveal() for v in VARIABLES if v.secret and not v.part}
    secrets["database_url"] = (
        f"mysql://{s.mysql_user}:{quote(s.mysql_password.reveal(), safe='')}@mysql:3306/{s.mysql_database}"
    )
    sites = [
        _site(s, name, f"tracker:{bind.port}", f"HTTP tracker on {bind}", tracker=True)
        for name, bind in zip(s.http_tracker_domains, s.http_trackers, strict=False)
    ]
    sites.append(_site(s, s.api_domain, f"tracker:{s.api_bind.port}", "REST API"))
    if s.grafana:
        sites.append(_site(s, s.grafana_domain, "grafana:3000", "Grafana"))
    return {
        **ctx,
        "env": s.env,
        "project": s.compose_project,
        "storage": f"{s.deploy_root}/storage",
        "release": f"{s.deploy_root}/current",
        "mysql": s.mysql,
        "sites": sites,
        "internal_names": any(site["internal_ca"] for site in sites),
        "acme_directory": s.acme_directory,
        "acme_names": s.acme_names,
        "acme_ca_root_path": ACME_CA_ROOT_PATH,
        "cron_user": s.ssh.user,
        "secrets": secrets,
        "tracker": trackers.capabilities_for(s),  # the release's capabilities (tasks/config/trackers.py)
    }


def _site(s: Settings, name: str, upstream: str, comment: str, *, tracker: bool = False) -> dict:
    return {
        "address": name if s.tls else f"http://{name}",
        "upstream": upstream,
        "comment": comment,
        "tracker": tracker,
        "internal_ca": s.tls and s.uses_internal_ca(name),
    }


# (template or static file under application/, output path, mode, secret, condition)
def _plan(s: Settings) -> list[tuple[str, str, int, bool, bool]]:
    boards = trackers.dashboards(trackers.release_of(s).release)  # only what the tracker can feed
    plan = [
        ("env.j2", ".env", 0o600, True, True),
        ("tracker/tracker.toml.j2", "tracker/tracker.toml", 0o644, False, True),
        ("proxy/Caddyfile.j2", "proxy/Caddyfile", 0o644, False, True),
        ("prometheus/prometheus.yml.j2", "prometheus/prometheus.yml", 0o640, True, s.prometheus),
        (
            "grafana/provisioning/datasources/prometheus.yml.j2",
            "grafana/provisioning/datasources/prometheus.yml",
            0o644,
            False,
            s.grafana,
        ),
        (
            "grafana/provisioning/dashboards/torrust.yml",
            "grafana/provisioning/dashboards/torrust.yml",
            0o644,
            False,
            s.grafana,
        ),
        (
            "grafana/dashboards/stats.json",
            "grafana/dashboards/stats.json",
            0o644,
            False,
            s.grafana and "stats.json" in boards,
        ),
        (
            "grafana/dashboards/metrics.json",
            "grafana/dashboards/metrics.json",
            0o644,
            False,
            s.grafana and "metrics.json" in boards,
        ),
        (
            "grafana/dashboards/watch.json",
            "grafana/dashboards/watch.json",
            0o644,
            False,
            s.grafana and s.watch.beside_stack,
        ),
        ("bin/torrust-backup", "bin/torrust-backup", 0o755, False, True),
        ("bin/backup.conf.j2", "bin/backup.conf", 0o644, False, True),
        ("cron/torrust-backup.j2", "cron/torrust-backup", 0o644, False, True),
    ]
    return [p for p in plan if p[4]]


# Secret files a container reads as another user: owner stays the deploy user (0640),
# the group becomes the container's (Prometheus runs as nobody:nogroup, 65534).
FILE_GROUPS = {"prometheus/prometheus.yml": 65534}

SERVICE_FILES = {
    "tracker": ("tracker/",),
    "proxy": ("proxy/",),
    "prometheus": ("prometheus/",),
    "grafana": ("grafana/",),
}


def render(s: Settings) -> Release:
    """Render every file in memory. Raises ToolError on a template problem."""
    import jinja2

    env = environment()
    ctx = context(s)
    files: list[RenderedFile] = []
    try:
        for source, target, mode, secret, _ in _plan(s):
            if source.endswith(".j2"):
                text = env.get_template(source).render(ctx)
                content = text.encode("utf-8")
            else:
                content = (APPLICATION / source).read_bytes()
            key = _digest_key(ctx["secrets"], content) if secret else b""
            files.append(RenderedFile(target, content, mode, secret, FILE_GROUPS.get(target), key))
        if s.acme_ca_root is not None:  # a file of this machine, carried as it is (public certificates)
            files.append(RenderedFile(ACME_CA_ROOT, s.acme_ca_root.read_bytes(), 0o644))
        hashes = {
            svc: hashlib.sha256(
                "".join(f"{f.path}\0{f.sha256}\n" for f in files if f.path.startswith(prefixes)).encode()
            ).hexdigest()
            for svc, prefixes in SERVICE_FILES.items()
        }
        compose = env.get_template("compose.yaml.j2").render({**ctx, "hashes": hashes})
    except jinja2.TemplateError as exc:  # a bug in a template, not in the settings
        raise ToolError(f"template error: {exc}") from exc
    files.append(RenderedFile("compose.yaml", compose.encode("utf-8"), 0o644))
    files.sort(key=lambda f: f.path)
    content_sha = _content_hash(files)
    storage = [
        ("tracker/lib/database", s.tracker_uid),
        ("tracker/log", s.tracker_uid),
        ("proxy/data", None),
        ("proxy/config", None),
    ]
    if s.mysql:
        storage.append(("mysql/data", None))  # the MySQL entrypoint owns its data directory
    if s.prometheus:
        storage.append(("prometheus/data", 65534))
    if s.grafana:
        storage.append(("grafana/data", 472))
    manifest = {
        "format": MANIFEST_FORMAT,
        "env": s.env,
        "project": s.compose_project,
        "content_sha256": content_sha,
        "services": services(s),
        "images": {k: v for k, v in sorted(s.images.items()) if k in services(s) or k == "caddy"},
        "storage": [{"path": p, "owner": o} for p, o in storage],
        "files": [
            {"path": f.path, "sha256": f.sha256, "mode": f"{f.mode:04o}", "secret": f.secret, "group": f.group}
            for f in files
        ],
    }
    files.append(RenderedFile(MANIFEST, (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode(), 0o644))
    return Release(tuple(files), content_sha, tuple(storage))


def _digest_key(secrets: dict[str, str], content: bytes) -> bytes:
    """The key of a secret file's digest: derived from the secrets the file holds (as
    written or URL-encoded), so it changes when one of them does and only then (a file
    without the rotated secret keeps its digest and its service is not recreated)."""
    held = sorted(
        (k, v) for k, v in secrets.items() if v and (v.encode() in content or quote(v, safe="").encode() in content)
    )
    material = "\0".join(f"{k}={v}" for k, v in held)
    return hashlib.sha256(b"torrust-deploy secret file digest\0" + material.encode()).digest()


def services(s: Settings) -> list[str]:
    return [
        "tracker",
        *(["mysql"] if s.mysql else []),
        "proxy",
        *(["prometheus"] if s.prometheus else []),
        *(["grafana"] if s.grafana else []),
    ]


def _content_hash(files: list[RenderedFile]) -> str:
    h = hashlib.sha256()
    for f in files:
        h.update(f"{f.path}\0{f.mode:o}\0{f.sha256}\n".encode())
    return h.hexdigest()


def write(release: Release, out: Path, *, replace: bool = False) -> Path:
    """Write the release into `out` atomically: a sibling temp dir renamed into place.

    An existing non-empty `out` is refused unless `replace`; it is replaced only when
    it holds a previous rendering (a release.json), never an unrelated directory. A place
    that cannot be written (below a file, a read-only or virtual file system) is a
    ConfigError naming it; nothing is left behind.
    """
    try:
        return _write(release, out.resolve(), replace)
    except OSError as exc:
        raise ConfigError(
            f"cannot write the release to {out}: {exc.strerror or exc}", hint="choose another --out directory"
        ) from None


def _write(release: Release, out: Path, replace: bool) -> Path:
    if out.exists():
        if not out.is_dir():
            raise ConfigError(f"{out} exists and is not a directory")
        if any(out.iterdir()):
            if not replace:
                raise ConfigError(f"{out} is not empty", hint="pass --force to replace a previous rendering")
            if not (out / MANIFEST).is_file():
                raise ConfigError(f"{out} is not empty and holds no {MANIFEST}: refusing to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        os.chmod(tmp, 0o755)
        for f in release.files:
            path = tmp / f.path
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, f.mode)
            with os.fdopen(fd, "wb") as fh:
                fh.write(f.content)
            os.chmod(path, f.mode)  # not subject to the umask
        if out.exists():
            old = out.with_name(f".{out.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
