"""TEST STAND-IN schema migration (tracker-standin-migrating): what a newer tracker image
may do when it starts. Idempotent: schema version 2 adds the table `schema_migrations`
(version 2) and the column `torrents.downloads_v2`, once. The database is the one the
tracker is configured with: MySQL from the URL in the environment override the real
image reads, SQLite from tracker.toml. A database without the tracker's tables yet (a
first start) is left alone: the stand-in creates them, the next start migrates."""

from __future__ import annotations

import os
import sys
import time
import tomllib
import urllib.parse

STATEMENTS = (
    "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY)",
    "ALTER TABLE torrents ADD COLUMN downloads_v2 INTEGER NOT NULL DEFAULT 0",
    "INSERT INTO schema_migrations (version) VALUES (2)",
)


def say(message: str) -> None:
    print(f"tracker stand-in (schema v2) {message}", flush=True)


def migrate(conn, placeholder_tables: str) -> None:
    cur = conn.cursor()
    cur.execute(placeholder_tables)
    names = {row[0] for row in cur.fetchall()}
    if "torrents" not in names:
        say("no tracker tables yet: nothing to migrate")
        return
    if "schema_migrations" in names:
        cur.execute("SELECT COUNT(*) FROM schema_migrations WHERE version = 2")
        if cur.fetchone()[0]:
            say("schema is at version 2 already")
            return
    for statement in STATEMENTS:
        cur.execute(statement)
    conn.commit()
    say("migrated the schema to version 2 (schema_migrations, torrents.downloads_v2)")


def mysql(url: str) -> None:
    import pymysql

    parts = urllib.parse.urlsplit(url)
    deadline = time.monotonic() + 60
    while True:
        try:
            conn = pymysql.connect(
                host=parts.hostname,
                port=parts.port or 3306,
                user=urllib.parse.unquote(parts.username or ""),
                password=urllib.parse.unquote(parts.password or ""),
                database=urllib.parse.unquote(parts.path.lstrip("/")),
                connect_timeout=5,
            )
            break
        except pymysql.err.OperationalError as exc:
            if time.monotonic() > deadline:
                raise SystemExit(f"schema migration: cannot connect to MySQL: {exc}") from None
            time.sleep(1)
    try:
        migrate(conn, "SHOW TABLES")
    finally:
        conn.close()


def sqlite(path: str) -> None:
    import sqlite3

    if not os.path.exists(path):
        say("no SQLite database yet: nothing to migrate")
        return
    conn = sqlite3.connect(path)
    try:
        migrate(conn, "SELECT name FROM sqlite_master WHERE type = 'table'")
    finally:
        conn.close()


def main() -> int:
    driver = os.environ.get("TORRUST_TRACKER_CONFIG_OVERRIDE_CORE__DATABASE__DRIVER", "")
    if driver == "mysql":
        mysql(os.environ["TORRUST_TRACKER_CONFIG_OVERRIDE_CORE__DATABASE__PATH"])
    else:
        with open(os.environ.get("TORRUST_TRACKER_CONFIG_TOML_PATH", "/etc/torrust/tracker/tracker.toml"), "rb") as fh:
            config = tomllib.load(fh)
        sqlite(config.get("core", {}).get("database", {}).get("path", ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
