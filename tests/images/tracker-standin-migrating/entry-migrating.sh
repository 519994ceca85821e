#!/bin/sh
# TEST STAND-IN: migrate the tracker's schema to "v2" (migrate.py), then start the tracker
# stand-in exactly as its own entry does.
set -e
/usr/bin/python3 /usr/lib/torrust-tracker-standin/migrate.py
exec /usr/local/bin/entry.sh "$@"
