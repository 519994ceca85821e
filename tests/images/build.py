#!/usr/bin/env python3
"""Build the test images (``torrust-test/*``) from Debian packages only.

No container registry is reachable on the development and CI machines, so every image
the tests need is built here: a Debian bookworm base made with debootstrap and
``docker import``, then one ``docker build`` per image FROM that base with
``apt-get install`` inside.

Builds are cached: each image carries a label with a hash of its recipe (the files of
its build context, its base image's id and this module's build parameters); an image
whose label matches is not built again.

    python3 tests/images/build.py              # all images
    python3 tests/images/build.py mariadb      # one image (and the base)
    python3 tests/images/build.py --force caddy

Library use::

    from build import build_images
    refs = build_images()            # {"base": "torrust-test/base:bookworm", ...}

Standard library only (Python 3.11).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import fcntl
import hashlib
import inspect
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent

LABEL_KEY = "org.torrust.test-image"
LABEL_RECIPE = "org.torrust.test-image.recipe"

SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_SECURITY_MIRROR = "http://deb.debian.org/debian-security"
PARALLEL_BUILDS = 3

# Where the host's Compose v2 plugin may be (copied into the sshhost image).
COMPOSE_PLUGIN_CANDIDATES = (
    "/usr/libexec/docker/cli-plugins/docker-compose",
    "/usr/lib/docker/cli-plugins/docker-compose",
    "/usr/local/libexec/docker/cli-plugins/docker-compose",
    "/usr/local/lib/docker/cli-plugins/docker-compose",
)


@dataclass(frozen=True)
class ImageSpec:
    key: str
    ref: str
    context: str | None = None  # directory under tests/images/ (None: the debootstrap base)
    labels: dict[str, str] = field(default_factory=dict)
    build_args: dict[str, str] = field(default_factory=dict)  # one recipe, several images
    # file name in the build context -> function returning the host path to copy there
    extras: dict[str, Callable[[], Path]] = field(default_factory=dict)
    # the key of the image it is built FROM, when that is not the base (built first; its
    # image id is part of this one's recipe)
    parent: str | None = None


def compose_plugin_path() -> Path:
    """The host's Compose v2 CLI plugin binary (symlinks resolved)."""
    candidates = list(COMPOSE_PLUGIN_CANDIDATES)
    docker_config = os.environ.get("DOCKER_CONFIG", str(Path.home() / ".docker"))
    candidates.insert(0, str(Path(docker_config) / "cli-plugins" / "docker-compose"))
    for candidate in candidates:
        path = Path(candidate)
        if path.exists():
            return path.resolve()
    raise BuildError(
        "no Compose v2 plugin found on this machine (looked in " + ", ".join(candidates) + "); run .ci/install.sh first"
    )


BASE = ImageSpec("base", "torrust-test/base:bookworm")
IMAGES: dict[str, ImageSpec] = {
    spec.key: spec
    for spec in (
        BASE,
        ImageSpec("mariadb", "torrust-test/mariadb:10.11", "mariadb"),
        ImageSpec("caddy", "torrust-test/caddy:2.6", "caddy"),
        ImageSpec("prometheus", "torrust-test/prometheus:2.42", "prometheus"),
        ImageSpec(
            "sshhost",
            "torrust-test/sshhost:1",
            "sshhost",
            extras={"docker-compose": compose_plugin_path},
        ),
        ImageSpec(
            "nethost",
            "torrust-test/nethost:1",
            "nethost",
            extras={
                "docker-compose": compose_plugin_path,
                "sshhost-entrypoint.sh": lambda: HERE / "sshhost" / "entrypoint.sh",
            },
        ),
        ImageSpec("cloudinit", "torrust-test/cloudinit:1", "cloudinit"),
        ImageSpec("pebble", "torrust-test/pebble:2.4", "pebble"),
        ImageSpec("dns", "torrust-test/dns:dnsmasq-2.90", "dns"),
        # One recipe, one image per tracker release it behaves like (tracker-standin/README.md);
        # the tags name the release, as tasks/config/trackers.py lists them.
        ImageSpec(
            "tracker-standin",
            "torrust-test/tracker-standin:v3.0.0",
            "tracker-standin",
            labels={"org.torrust.stand-in-for": "torrust/tracker:v3.0.0"},
            build_args={"STANDIN_PROFILE": "v3.0.0"},
        ),
        ImageSpec(
            "tracker-standin-develop",
            "torrust-test/tracker-standin:develop-02c33f69",
            "tracker-standin",
            labels={"org.torrust.stand-in-for": "torrust/tracker develop (02c33f69)"},
            build_args={"STANDIN_PROFILE": "develop-02c33f69"},
        ),
        ImageSpec(
            "tracker-standin-migrating",
            "torrust-test/tracker-standin-migrating:1",
            "tracker-standin-migrating",
            labels={"org.torrust.stand-in-for": "torrust/tracker (a newer release that migrates its schema on start)"},
            parent="tracker-standin",
        ),
        ImageSpec(
            "grafana-standin",
            "torrust-test/grafana-standin:1",
            "grafana-standin",
            labels={"org.torrust.stand-in-for": "grafana/grafana"},
        ),
    )
}


class BuildError(RuntimeError):
    pass


# --------------------------------------------------------------------------- helpers


def _docker_env() -> dict[str, str]:
    env = dict(os.environ)
    # The classic builder: works with both the Debian 20.10 client and newer clients
    # that have no buildx plugin, and never tries to pull the local base image.
    env["DOCKER_BUILDKIT"] = "0"
    env.setdefault("DOCKER_CLI_HINTS", "false")
    return env


def _run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=_docker_env(), **kwargs)


def _image_labels(ref: str) -> dict[str, str] | None:
    """Labels of a local image, or None when the image does not exist."""
    proc = _run(
        ["docker", "image", "inspect", "--format", "{{json .Config.Labels}}", ref],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        return None
    return json.loads(proc.stdout.strip() or "null") or {}


def _image_id(ref: str) -> str:
    proc = _run(
        ["docker", "image", "inspect", "--format", "{{.Id}}", ref],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise BuildError(f"image {ref} not found: {proc.stderr.strip()}")
    return proc.stdout.strip()


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _hash_tree(h: hashlib._Hash, root: Path) -> None:
    for path in sorted(p for p in root.rglob("*") if p.is_file() or p.is_symlink()):
        rel = path.relative_to(root).as_posix()
        if "__pycache__" in rel.split("/"):
            continue
        h.update(b"\0file\0" + rel.encode())
        if path.is_symlink():
            h.update(b"\0link\0" + os.readlink(path).encode())
            continue
        # only the executable bit: the rest of the mode depends on the umask of a checkout
        h.update(b"\0exec\0" + (b"1" if path.stat().st_mode & 0o111 else b"0"))
        h.update(b"\0data\0" + path.read_bytes())


def _fingerprint_file(h: hashlib._Hash, name: str, path: Path) -> None:
    """Large binaries: size and mtime are enough to notice a change."""
    st = path.stat()
    h.update(f"\0extra\0{name}\0{path}\0{st.st_size}\0{st.st_mtime_ns}".encode())


def _apt_sources() -> tuple[str, str | None]:
    """The machine's own Debian mirror and security mirror (deb822 or one-line)."""
    mirror = security = None
    paragraphs: list[dict[str, str]] = []
    for path in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        for block in path.read_text(errors="replace").split("\n\n"):
            fields: dict[str, str] = {}
            for line in block.splitlines():
                if ":" in line and not line.startswith((" ", "#")):
                    k, v = line.split(":", 1)
                    fields[k.strip().lower()] = v.strip()
            if fields.get("enabled", "yes").lower() != "no":
                paragraphs.append(fields)
    for line_path in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*.list"))]:
        if not line_path.exists():
            continue
        for line in line_path.read_text(errors="replace").splitlines():
            parts = [p for p in line.split() if not p.startswith("[")]
            if len(parts) >= 3 and parts[0] == "deb":
                paragraphs.append({"uris": parts[1], "suites": parts[2], "types": "deb"})
    for para in paragraphs:
        uri = para.get("uris", "").split()[0] if para.get("uris") else ""
        suites = para.get("suites", "")
        if not uri or SUITE not in suites:
            continue
        if "security" in suites:
            security = security or uri
        elif uri.rstrip("/").endswith("/debian"):
            mirror = mirror or uri
    return mirror or DEFAULT_MIRROR, security


def _umount_below(root: Path) -> None:
    """Lazy-unmount whatever debootstrap left mounted under root (on failure)."""
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return
    targets = sorted(
        (line.split()[1] for line in mounts if line.split()[1].startswith(str(root) + "/")),
        key=len,
        reverse=True,
    )
    for target in targets:
        subprocess.run(["umount", "-l", target], check=False)


# ---------------------------------------------------------------------------- base


def _base_recipe() -> tuple[str, str, str | None]:
    mirror, security = _apt_sources()
    h = hashlib.sha256()
    h.update(f"suite={SUITE}\0mirror={mirror}\0security={security}\0".encode())
    h.update(inspect.getsource(_build_base).encode())
    _hash_tree(h, HERE / "base")
    return h.hexdigest()[:32], mirror, security


def _build_base(recipe: str, mirror: str, security: str | None, log_path: Path) -> None:
    if shutil.which("debootstrap") is None:
        raise BuildError("debootstrap is not installed; run .ci/install.sh first")
    with tempfile.TemporaryDirectory(prefix="torrust-test-base-", dir="/var/tmp") as tmp:
        root = Path(tmp) / "rootfs"
        try:
            with open(log_path, "ab") as log:
                subprocess.run(
                    ["debootstrap", "--variant=minbase", "--components=main", SUITE, str(root), mirror],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    check=True,
                )
        except subprocess.CalledProcessError as exc:
            _umount_below(root)
            raise BuildError(f"debootstrap failed ({exc.returncode}):\n{_tail(log_path)}") from exc
        _umount_below(root)

        # Overlay: apt/dpkg configuration for small images, policy-rc.d.
        shutil.copytree(HERE / "base" / "rootfs", root, dirs_exist_ok=True, symlinks=True)

        # deb822 sources: the machine's mirror, with updates and security.
        (root / "etc/apt/sources.list").unlink(missing_ok=True)
        sources = (
            f"Types: deb\nURIs: {mirror}\nSuites: {SUITE} {SUITE}-updates\nComponents: main\n"
            "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
        )
        if security:
            sources += (
                f"\nTypes: deb\nURIs: {security}\nSuites: {SUITE}-security\nComponents: main\n"
                "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
            )
        (root / "etc/apt/sources.list.d").mkdir(parents=True, exist_ok=True)
        (root / "etc/apt/sources.list.d/debian.sources").write_text(sources)

        # Trim: apt lists and caches, docs, manual pages, translations, logs.
        trim = [
            "var/lib/apt/lists",
            "var/cache/apt",
            "var/cache/debconf/templates.dat-old",
            "var/log",
            "usr/share/doc",
            "usr/share/man",
            "usr/share/info",
            "usr/share/locale",
            "usr/share/lintian",
            "var/cache/man",
        ]
        for rel in trim:
            path = root / rel
            if path.is_dir() and not path.is_symlink():
                for child in path.iterdir():
                    if rel == "usr/share/doc" and child.is_dir():
                        # keep the copyright files, as dpkg's path-include does
                        for f in child.iterdir():
                            if f.name != "copyright":
                                shutil.rmtree(f) if f.is_dir() and not f.is_symlink() else f.unlink()
                        continue
                    if rel == "usr/share/locale" and child.name == "locale.alias":
                        continue
                    shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
            elif path.exists():
                path.unlink()
        for rel in ("var/lib/apt/lists/partial", "var/cache/apt/archives/partial", "var/log/apt"):
            (root / rel).mkdir(parents=True, exist_ok=True)
        # Docker provides these at run time; do not ship the build machine's.
        for rel in ("etc/resolv.conf", "etc/hostname"):
            p = root / rel
            if p.exists() or p.is_symlink():
                p.unlink()
            p.write_text("")
        (root / "etc/machine-id").write_text("")

        changes = [
            f"LABEL {LABEL_KEY}=base",
            f"LABEL {LABEL_RECIPE}={recipe}",
            "LABEL org.opencontainers.image.description=Debian-bookworm-minbase-for-torrust-tests",
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "ENV LANG=C.UTF-8",
            'CMD ["bash"]',
        ]
        cmd = ["docker", "import"]
        for change in changes:
            cmd += ["--change", change]
        cmd += ["-", BASE.ref]
        with open(log_path, "ab") as log:
            tar = subprocess.Popen(
                ["tar", "-C", str(root), "--numeric-owner", "-c", "."],
                stdout=subprocess.PIPE,
                stderr=log,
            )
            imp = _run(cmd, stdin=tar.stdout, stdout=log, stderr=subprocess.STDOUT)
            assert tar.stdout is not None
            tar.stdout.close()
            tar_rc = tar.wait()
        if tar_rc != 0 or imp.returncode != 0:
            raise BuildError(f"tar | docker import failed:\n{_tail(log_path)}")


def _ensure_base(force: bool, log: Callable[[str], None], logdir: Path) -> bool:
    """Build the base image unless it is up to date. Returns True when cached."""
    recipe, mirror, security = _base_recipe()
    labels = _image_labels(BASE.ref)
    if not force and labels and labels.get(LABEL_RECIPE) == recipe:
        return True
    old_id = _image_id(BASE.ref) if labels is not None else None
    _build_base(recipe, mirror, security, logdir / "base.log")
    _remove_replaced(old_id, BASE.ref)
    return False


# ------------------------------------------------------------------- derived images


def _recipe(spec: ImageSpec, base_id: str) -> tuple[str, dict[str, Path]]:
    assert spec.context is not None
    h = hashlib.sha256()
    h.update(f"key={spec.key}\0ref={spec.ref}\0base={base_id}\0".encode())
    h.update(json.dumps(spec.labels, sort_keys=True).encode())
    if spec.build_args:  # (only then: the other images keep the recipes they had)
        h.update(json.dumps(spec.build_args, sort_keys=True).encode())
    _hash_tree(h, HERE / spec.context)
    extras: dict[str, Path] = {}
    for name, locate in sorted(spec.extras.items()):
        path = locate()
        extras[name] = path
        _fingerprint_file(h, name, path)
    return h.hexdigest()[:32], extras


def _build_image(spec: ImageSpec, base_id: str, force: bool, logdir: Path) -> bool:
    """docker build one image unless its recipe label matches. Returns True when cached."""
    recipe, extras = _recipe(spec, base_id)
    labels = _image_labels(spec.ref)
    if not force and labels and labels.get(LABEL_RECIPE) == recipe:
        return True
    old_id = _image_id(spec.ref) if labels is not None else None
    log_path = logdir / f"{spec.key}.log"
    with tempfile.TemporaryDirectory(prefix=f"torrust-test-{spec.key}-") as tmp:
        ctx = Path(tmp) / "context"
        shutil.copytree(
            HERE / spec.context,
            ctx,
            symlinks=True,
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
        )
        for name, path in extras.items():
            try:
                os.link(path, ctx / name)  # same filesystem: no 60 MB copy
            except OSError:
                shutil.copy2(path, ctx / name)
        cmd = [
            "docker",
            "build",
            "--label",
            f"{LABEL_KEY}={spec.key}",
            "--label",
            f"{LABEL_RECIPE}={recipe}",
        ]
        for k, v in sorted(spec.labels.items()):
            cmd += ["--label", f"{k}={v}"]
        for k, v in sorted(spec.build_args.items()):
            cmd += ["--build-arg", f"{k}={v}"]
        cmd += ["-t", spec.ref, str(ctx)]
        with open(log_path, "wb") as log:
            proc = _run(cmd, stdout=log, stderr=subprocess.STDOUT)
        if proc.returncode != 0:
            raise BuildError(f"docker build of {spec.ref} failed (log {log_path}):\n{_tail(log_path)}")
    _remove_replaced(old_id, spec.ref)
    return False


def _remove_replaced(old_id: str | None, ref: str) -> None:
    """Drop the image a rebuild replaced (now untagged), unless something still uses it."""
    if old_id and old_id != _image_id(ref):
        _run(["docker", "image", "rm", old_id], capture_output=True)


# ----------------------------------------------------------------------------- API

_build_lock = threading.Lock()


def build_images(
    names: list[str] | None = None,
    log: Callable[[str], None] = print,
    force: bool = False,
) -> dict[str, str]:
    """Build (or reuse) the test images; return {key: image reference}.

    ``names``: image keys (see IMAGES); None means all. The base is always included.
    Raises BuildError when a build fails (with the tail of its log).
    """
    wanted = list(IMAGES) if not names else list(dict.fromkeys(names))
    unknown = [n for n in wanted if n not in IMAGES]
    if unknown:
        raise BuildError(f"unknown image(s) {unknown}; known: {', '.join(IMAGES)}")
    if shutil.which("docker") is None:
        raise BuildError("docker is not installed; run .ci/install.sh first")
    if _run(["docker", "info"], capture_output=True).returncode != 0:
        raise BuildError("the Docker daemon is not reachable; run .ci/install.sh first")

    logdir = Path(tempfile.gettempdir()) / "torrust-test-images-logs"
    logdir.mkdir(exist_ok=True)
    # One builder at a time, across threads and processes (parallel test sessions).
    with _build_lock, open(logdir / ".lock", "w") as lock_file:
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log("[images] another build of the test images is running; waiting for it")
            fcntl.flock(lock_file, fcntl.LOCK_EX)
        t_all = time.monotonic()

        t0 = time.monotonic()
        cached = _ensure_base(force, log, logdir)
        log(f"[images] {'base':16} {BASE.ref:32} {'cached' if cached else 'built '} {time.monotonic() - t0:6.1f}s")
        base_id = _image_id(BASE.ref)

        parents = [IMAGES[n].parent for n in wanted if IMAGES[n].parent]  # a child needs its parent
        wanted += [p for p in dict.fromkeys(parents) if p not in wanted]
        derived = [IMAGES[n] for n in wanted if n != "base"]

        def one(spec: ImageSpec) -> tuple[ImageSpec, bool, float]:
            t = time.monotonic()
            parent_id = _image_id(IMAGES[spec.parent].ref) if spec.parent else base_id
            was_cached = _build_image(spec, parent_id, force, logdir)
            return spec, was_cached, time.monotonic() - t

        errors: list[str] = []
        # two waves: the images built FROM the base, then those built FROM one of them
        for wave in ([s for s in derived if not s.parent], [s for s in derived if s.parent]):
            with concurrent.futures.ThreadPoolExecutor(max_workers=PARALLEL_BUILDS) as pool:
                futures = [pool.submit(one, spec) for spec in wave]
                for fut in concurrent.futures.as_completed(futures):
                    try:
                        spec, was_cached, secs = fut.result()
                    except BuildError as exc:
                        errors.append(str(exc))
                        continue
                    log(f"[images] {spec.key:16} {spec.ref:32} {'cached' if was_cached else 'built '} {secs:6.1f}s")
            if errors:
                raise BuildError("\n\n".join(errors))
        log(f"[images] all done in {time.monotonic() - t_all:.1f}s")

    result = {"base": BASE.ref}
    result.update({n: IMAGES[n].ref for n in wanted})
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"images to build: {', '.join(IMAGES)}")
    parser.add_argument("--force", action="store_true", help="rebuild even when the recipe label matches")
    args = parser.parse_args(argv)
    try:
        refs = build_images(args.names or None, force=args.force)
    except BuildError as exc:
        print(f"[images] ERROR: {exc}", file=sys.stderr)
        return 1
    for key, ref in refs.items():
        print(f"{key}={ref}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
