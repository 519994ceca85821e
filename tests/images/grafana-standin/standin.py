"""TEST STAND-IN for grafana/grafana: strict provisioning checks, /api/health, and a real
query through the provisioned datasource. See README.md."""

from __future__ import annotations

import glob
import json
import os
import sys
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import yaml

PROVISIONING = "/etc/grafana/provisioning"
DATA = "/var/lib/grafana"
DATASOURCE = {"ok": False, "detail": "not queried yet"}


def fail(message: str) -> None:
    print(f"grafana-standin: refusing to start: {message}", file=sys.stderr, flush=True)
    sys.exit(1)


def check_environment() -> None:
    if os.getuid() != 472:
        fail(f'running as uid {os.getuid()}, expected 472 (compose `user: "472"`)')
    user = os.environ.get("GF_SECURITY_ADMIN_USER", "")
    password = os.environ.get("GF_SECURITY_ADMIN_PASSWORD", "")
    if not user:
        fail("GF_SECURITY_ADMIN_USER is not set")
    if not password or password == "admin" or len(password) < 16:
        fail("GF_SECURITY_ADMIN_PASSWORD is missing, Grafana's default, or shorter than 16 characters")
    for name, want in (
        ("GF_USERS_ALLOW_SIGN_UP", "false"),
        ("GF_USERS_ALLOW_ORG_CREATE", "false"),
        ("GF_AUTH_ANONYMOUS_ENABLED", "false"),
    ):
        if os.environ.get(name) != want:
            fail(f"{name}={os.environ.get(name)!r}, expected {want!r}")
    root = urllib.parse.urlparse(os.environ.get("GF_SERVER_ROOT_URL", ""))
    if root.scheme not in ("http", "https") or not root.hostname:
        fail(f"GF_SERVER_ROOT_URL={os.environ.get('GF_SERVER_ROOT_URL')!r} is not an http(s) URL")


def load_yaml_files(kind: str) -> list[dict]:
    files = sorted(glob.glob(f"{PROVISIONING}/{kind}/*.yml") + glob.glob(f"{PROVISIONING}/{kind}/*.yaml"))
    if not files:
        fail(f"no provisioning files in {PROVISIONING}/{kind}")
    docs = []
    for path in files:
        try:
            doc = yaml.safe_load(open(path, encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            fail(f"{path}: {exc}")
        if not isinstance(doc, dict) or doc.get("apiVersion") != 1:
            fail(f"{path}: apiVersion must be 1")
        docs.append(doc)
    return docs


def check_datasources() -> dict:
    sources = [d for doc in load_yaml_files("datasources") for d in doc.get("datasources") or []]
    prometheus = [d for d in sources if d.get("type") == "prometheus"]
    if len(prometheus) != 1:
        fail(f"expected exactly one prometheus datasource, found {len(prometheus)}")
    ds = prometheus[0]
    if not ds.get("uid") or not ds.get("isDefault"):
        fail("the prometheus datasource needs a uid and isDefault: true")
    if urllib.parse.urlparse(str(ds.get("url", ""))).scheme not in ("http", "https"):
        fail(f"datasource url {ds.get('url')!r} is not http(s)")
    return ds


def panel_uids(node) -> set[str]:
    found = set()
    if isinstance(node, dict):
        ds = node.get("datasource")
        if isinstance(ds, dict) and ds.get("uid") and not str(ds["uid"]).startswith("$"):
            found.add(ds["uid"])
        for value in node.values():
            found |= panel_uids(value)
    elif isinstance(node, list):
        for value in node:
            found |= panel_uids(value)
    return found


def check_dashboards(known_uids: set[str]) -> int:
    providers = [p for doc in load_yaml_files("dashboards") for p in doc.get("providers") or []]
    if not providers:
        fail("no dashboard providers")
    count = 0
    for provider in providers:
        path = (provider.get("options") or {}).get("path", "")
        if provider.get("type") != "file" or not os.path.isdir(path):
            fail(f"dashboard provider {provider.get('name')!r}: path {path!r} is not a directory")
        for file in sorted(glob.glob(f"{path}/*.json")):
            try:
                board = json.load(open(file, encoding="utf-8"))
            except (OSError, ValueError) as exc:
                fail(f"{file}: {exc}")
            if not board.get("title") or not board.get("uid"):
                fail(f"{file}: a dashboard needs a title and a uid")
            unknown = panel_uids(board) - known_uids
            if unknown:
                fail(f"{file}: panels use datasource uid(s) {sorted(unknown)} that are not provisioned")
            count += 1
    if not count:
        fail("the dashboard providers hold no dashboards")
    return count


def query_datasource(ds: dict) -> None:
    url = str(ds["url"]).rstrip("/") + "/api/v1/query?query=up"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(url, timeout=3) as reply:
                body = json.loads(reply.read())
            DATASOURCE.update(ok=body.get("status") == "success", detail=body)
            if DATASOURCE["ok"] or time.monotonic() > deadline:
                return
        except (OSError, ValueError) as exc:
            DATASOURCE.update(ok=False, detail=f"{url}: {exc}")
            if time.monotonic() > deadline:
                return
        time.sleep(1)


class Handler(BaseHTTPRequestHandler):
    def _json(self, status: int, doc: dict) -> None:
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # the http.server API names it so
        if self.path == "/api/health":
            self._json(200, {"database": "ok", "version": "stand-in"})
        elif self.path == "/standin/datasource":
            self._json(200 if DATASOURCE["ok"] else 503, DATASOURCE)
        else:
            self._json(404, {"message": "Not found (grafana-standin serves /api/health only)"})

    def log_message(self, fmt, *args):
        print("grafana-standin: " + fmt % args, flush=True)


def main() -> None:
    check_environment()
    ds = check_datasources()
    boards = check_dashboards({ds["uid"]})
    try:
        with open(f"{DATA}/grafana.db", "a", encoding="utf-8") as fh:
            fh.write("")
    except OSError as exc:
        fail(f"{DATA} is not writable: {exc}")
    print(f"grafana-standin: provisioning ok (datasource {ds['uid']}, {boards} dashboards)", flush=True)
    threading.Thread(target=query_datasource, args=(ds,), daemon=True).start()
    ThreadingHTTPServer(("0.0.0.0", 3000), Handler).serve_forever()  # all interfaces of its container


if __name__ == "__main__":
    main()
