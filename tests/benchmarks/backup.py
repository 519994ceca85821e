#!/usr/bin/env python3
"""Benchmark backups: the host script against a raw `mysqldump | gzip` and `gunzip | mysql`.

Deploys the local test stack with MySQL (MariaDB test image) through the tool, fills the
tracker's tables with tracker-like rows (INSERT ... SELECT doubling) until the dump is
at least --min-mb MB, then measures in the same run, --runs times each:

  raw backup      docker exec mysqldump (same flags) | gzip > file
  backup gzip     bin/torrust-backup backup   (TORRUST_BACKUP_COMPRESSION=gzip)
  backup zstd     bin/torrust-backup backup   (zstd -3 -T0)
  raw restore     gunzip -c file | docker exec -i mysql
  restore gzip    bin/torrust-backup restore --no-safety-backup (checksums, tracker stop/start)
  restore zstd    the same from the zstd backup

Throughput is the uncompressed dump size over the wall time; the table shows medians and
the ratio to the raw baseline (target: at least 0.9x raw for both).

    .venv/bin/python tests/benchmarks/backup.py [--runs 3] [--min-mb 500]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.conftest import clean_environ  # noqa: E402
from tests.integration.conftest import _load_builder, local_env  # noqa: E402

TOKEN = "Bm7-Hx2Qk9Wd4Ls8Zt3Nv6Rc1Jp5Fy0G"
ROOT_PW = "Kq4-Xw8Zr2Lm6Tv9Yb3Nc7Hd1Jf5Gs0P"
DUMP_FLAGS = (
    "--single-transaction --quick --routines --triggers --no-tablespaces --add-drop-database --hex-blob "
    "--default-character-set=utf8mb4 --skip-dump-date"
)


def sh(argv, **kw) -> subprocess.CompletedProcess:
    p = subprocess.run(argv, check=False, capture_output=True, **kw)
    if p.returncode != 0:
        err = p.stderr if isinstance(p.stderr, str) else p.stderr.decode(errors="replace")
        raise RuntimeError(f"{argv[:3]}... exited {p.returncode}: {err.strip()[-500:]}")
    return p


class Bench:
    def __init__(self, work: Path, project: str):
        self.work, self.project = work, project
        self.root = work / "root"
        self.path = str(self.root / "current/bin/torrust-backup")
        self.cid = sh(
            [
                "docker",
                "ps",
                "-q",
                "--filter",
                f"label=com.docker.compose.project={project}",
                "--filter",
                "label=com.docker.compose.service=mysql",
            ],
            text=True,
        ).stdout.split()[0]

    def sql(self, statement: str) -> str:
        return sh(
            [
                "docker",
                "exec",
                "-i",
                self.cid,
                "sh",
                "-c",
                'MYSQL_PWD="$MYSQL_ROOT_PASSWORD" exec mysql -uroot -N -B "$MYSQL_DATABASE"',
            ],
            input=statement.encode(),
        ).stdout.decode()

    def fill(self, min_mb: int) -> None:
        # The same server settings for every scenario: a buffer pool that holds the data
        # (the default 128 MiB makes random unique-index inserts disk-bound).
        self.sql("SET GLOBAL innodb_buffer_pool_size = 3221225472;")
        self.sql(
            "INSERT INTO torrents (info_hash, completed) SELECT SHA1(seq), seq % 1000 FROM seq_1_to_4096;"
            "INSERT INTO whitelist (info_hash) SELECT SHA1(CONCAT('w', seq)) FROM seq_1_to_1024;"
            "INSERT INTO `keys` (`key`, valid_until) SELECT MD5(seq), 1700000000 + seq FROM seq_1_to_1024;"
        )
        rnd = 0
        while self.dump_bytes_estimate() < min_mb * 1_000_000:
            rnd += 1
            self.sql(
                "SET SESSION unique_checks = 0;"
                f"INSERT INTO torrents (info_hash, completed) SELECT SHA1(CONCAT(info_hash, '{rnd}')), "
                f"(completed * 7 + {rnd}) % 100000 FROM torrents;"
                + (
                    f"INSERT INTO whitelist (info_hash) SELECT SHA1(CONCAT(info_hash, '{rnd}')) FROM whitelist;"
                    f"INSERT INTO `keys` (`key`, valid_until) SELECT MD5(CONCAT(`key`, '{rnd}')), valid_until + {rnd} "
                    "FROM `keys`;"
                    if rnd < 10
                    else ""
                )
            )

    def dump_bytes_estimate(self) -> int:
        rows = self.sql("SELECT COUNT(*) FROM torrents; SELECT COUNT(*) FROM whitelist; SELECT COUNT(*) FROM `keys`;")
        t, w, k = (int(x) for x in rows.split())
        return t * 56 + w * 46 + k * 50  # bytes per row in an extended-insert dump

    def raw_dump_size(self) -> int:
        p = subprocess.Popen(
            [
                "docker",
                "exec",
                self.cid,
                "sh",
                "-c",
                f'MYSQL_PWD="$MYSQL_ROOT_PASSWORD" exec mysqldump -uroot {DUMP_FLAGS} --databases "$MYSQL_DATABASE"',
            ],
            stdout=subprocess.PIPE,
        )
        n = 0
        while chunk := p.stdout.read(1 << 20):
            n += len(chunk)
        assert p.wait() == 0
        return n

    def raw_backup(self, out: Path) -> float:
        t0 = time.monotonic()
        sh(
            [
                "bash",
                "-c",
                "set -o pipefail; "
                f'docker exec "$1" sh -c \'MYSQL_PWD="$MYSQL_ROOT_PASSWORD" exec mysqldump '
                f'-uroot {DUMP_FLAGS} --databases "$MYSQL_DATABASE"\' | gzip > "$2"',
                "raw",
                self.cid,
                str(out),
            ]
        )
        return time.monotonic() - t0

    def raw_restore(self, dump: Path) -> float:
        # the tracker writes to its tables: stopped, untimed (torrust-backup's own stop and
        # start are inside its time, so the baseline is the stricter one)
        compose = [
            "docker",
            "compose",
            "--project-name",
            self.project,
            "--project-directory",
            str(self.root / "current"),
        ]
        sh([*compose, "stop", "tracker"])
        t0 = time.monotonic()
        try:
            self._raw_restore(dump)
            return time.monotonic() - t0
        finally:
            sh([*compose, "start", "tracker"])

    def _raw_restore(self, dump: Path) -> None:
        sh(
            [
                "bash",
                "-c",
                'set -o pipefail; gunzip -c "$2" | docker exec -i "$1" sh -c '
                "'MYSQL_PWD=\"$MYSQL_ROOT_PASSWORD\" exec mysql -uroot'",
                "raw",
                self.cid,
                str(dump),
            ]
        )

    def set_compression(self, name: str) -> None:
        conf = self.root / "current/bin/backup.conf"
        lines = [ln for ln in conf.read_text().splitlines() if not ln.startswith("TORRUST_BACKUP_COMPRESSION=")]
        conf.write_text("\n".join([*lines, f"TORRUST_BACKUP_COMPRESSION={name}"]) + "\n")

    def script(self, *args: str) -> tuple[float, dict]:
        t0 = time.monotonic()
        out = sh([self.path, *args, "--json", *(["--no-retention"] if args[0] == "backup" else [])])
        return time.monotonic() - t0, json.loads(out.stdout.decode().strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--min-mb", type=int, default=500)
    parser.add_argument("--restore-with", default="gzip,zstd", help="compressors to time restores with")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # clean up on SIGTERM too
    if not shutil.which("zstd"):
        raise SystemExit("zstd is not installed here (Debian package zstd)")
    _load_builder().build_images(log=lambda m: None)
    work = Path(tempfile.mkdtemp(prefix="torrust-bbench-"))
    project = "bbench" + os.urandom(2).hex()
    env = local_env(
        work / "root",
        project,
        TORRUST_DB_DRIVER="mysql",
        TORRUST_PROMETHEUS="false",
        TORRUST_TRACKER_ADMIN_TOKEN=TOKEN,
        TORRUST_MYSQL_ROOT_PASSWORD=ROOT_PW,
    )
    cli = [sys.executable, str(ROOT / "tasks.py")]
    deployed = subprocess.run([*cli, "app.deploy"], cwd=work, env=clean_environ(**env), capture_output=True, text=True)
    if deployed.returncode != 0:
        raise SystemExit(deployed.stderr)
    results: dict[str, list[float]] = {}
    try:
        b = Bench(work, project)
        t0 = time.monotonic()
        b.fill(args.min_mb)
        size = b.raw_dump_size()
        print(f"# generated {size / 1e6:.0f} MB of dump in {time.monotonic() - t0:.0f}s", file=sys.stderr)
        raw_file = work / "raw.sql.gz"
        ids: dict[str, str] = {}
        for run in range(args.runs):
            results.setdefault("backup raw: mysqldump, gzip", []).append(b.raw_backup(raw_file))
            print(f"# backup raw: {results['backup raw: mysqldump, gzip'][-1]:.1f}s", file=sys.stderr, flush=True)
            for comp in ("gzip", "zstd"):
                b.set_compression(comp)
                secs, doc = b.script("backup")
                results.setdefault(f"backup torrust-backup ({comp})", []).append(secs)
                print(f"# backup {comp}: {secs:.1f}s", file=sys.stderr, flush=True)
                if run == 0:
                    ids[comp] = doc["id"]
                else:
                    shutil.rmtree(b.root / "backups" / doc["id"])
            print(f"# backup run {run + 1} done", file=sys.stderr)
        sizes = {}
        for comp, backup_id in ids.items():
            m = json.loads((b.root / "backups" / backup_id / "manifest.json").read_text())
            sizes[comp] = next(f["size"] for f in m["files"] if f["path"].startswith("database"))
        sizes["raw"] = raw_file.stat().st_size
        for run in range(args.runs):
            results.setdefault("restore raw: gunzip, mysql", []).append(b.raw_restore(raw_file))
            print(f"# restore raw: {results['restore raw: gunzip, mysql'][-1]:.1f}s", file=sys.stderr, flush=True)
            for comp in args.restore_with.split(","):
                secs, _ = b.script("restore", ids[comp], "--no-safety-backup")
                results.setdefault(f"restore torrust-backup ({comp})", []).append(secs)
                print(f"# restore {comp}: {secs:.1f}s", file=sys.stderr, flush=True)
            print(f"# restore run {run + 1} done", file=sys.stderr)
    finally:
        subprocess.run([*cli, "app.down"], cwd=work, env=clean_environ(**env), capture_output=True)
        subprocess.run(["rm", "-rf", str(work)], check=False)
    raws = {
        "backup": statistics.median(results["backup raw: mysqldump, gzip"]),
        "restore": statistics.median(results["restore raw: gunzip, mysql"]),
    }
    print(
        f"\nDump: {size / 1e6:.0f} MB uncompressed; compressed: gzip {sizes['gzip'] / 1e6:.0f} MB, "
        f"zstd {sizes['zstd'] / 1e6:.0f} MB, raw gzip {sizes['raw'] / 1e6:.0f} MB; {args.runs} runs, medians.\n"
    )
    print("| Scenario | Median s | Runs (s) | MB/s | vs raw |")
    print("|---|---|---|---|---|")
    for name, values in results.items():
        med = statistics.median(values)
        kind = name.split()[0]
        print(
            f"| {name} | {med:.1f} | {', '.join(f'{v:.1f}' for v in values)} | {size / 1e6 / med:.0f} | "
            f"{raws[kind] / med:.2f}x |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
