#!/bin/bash
# Entrypoint of torrust-test/tracker-standin, a TEST STAND-IN for torrust/tracker.
# Does what the real image's entry script does before starting the tracker:
#   - creates the user "torrust" with uid/gid $USER_ID (default 1000),
#   - creates and hands to that user /var/lib/torrust, /var/log/torrust, /etc/torrust
#     (chown -R, chmod -R 2770; failures on read-only mounts are ignored, as there),
#   - refuses to start unless TORRUST_TRACKER_CONFIG_OVERRIDE_CORE__DATABASE__DRIVER is
#     set to sqlite3 or mysql (the real image exits there too),
# then runs the command ("$@", default /usr/bin/torrust-tracker) as that user.
# Unlike the real image it never installs a default tracker.toml: a missing
# configuration is an error of the stand-in (see README.md).
set -euo pipefail

say() { printf 'tracker stand-in (opentracker) %s\n' "$*"; }
die() { printf 'tracker stand-in (opentracker) ERROR: %s\n' "$*" >&2; exit 1; }

USER_ID=${USER_ID:-1000}
[[ "$USER_ID" =~ ^[0-9]+$ ]] || die "USER_ID must be a number, got '$USER_ID'"

if [ "$(id -u)" = 0 ]; then
    if ! getent group torrust >/dev/null; then
        groupadd --gid "$USER_ID" torrust
    elif [ "$(getent group torrust | cut -d: -f3)" != "$USER_ID" ]; then
        groupmod --gid "$USER_ID" torrust
    fi
    if ! id torrust >/dev/null 2>&1; then
        useradd --uid "$USER_ID" --gid "$USER_ID" --home-dir /home/torrust --create-home \
            --shell /bin/sh torrust
    elif [ "$(id -u torrust)" != "$USER_ID" ]; then
        usermod --uid "$USER_ID" torrust
    fi
    mkdir -p /var/lib/torrust/tracker/database/ /var/log/torrust/tracker/ /etc/torrust/tracker/
    chown -R "$USER_ID:$USER_ID" /var/lib/torrust /var/log/torrust /etc/torrust 2>/dev/null \
        || say "warning: could not chown everything under /var/lib/torrust /var/log/torrust /etc/torrust"
    chmod -R 2770 /var/lib/torrust /var/log/torrust /etc/torrust 2>/dev/null \
        || say "warning: could not chmod everything under /var/lib/torrust /var/log/torrust /etc/torrust"
fi

driver=${TORRUST_TRACKER_CONFIG_OVERRIDE_CORE__DATABASE__DRIVER:-}
if [ -z "$driver" ]; then
    die "\"\$TORRUST_TRACKER_CONFIG_OVERRIDE_CORE__DATABASE__DRIVER\" was not set! (the torrust/tracker image requires it: sqlite3 or mysql)"
fi
case "$(printf '%s' "$driver" | tr -d -c 'a-zA-Z0-9-' | tr '[:upper:]' '[:lower:]')" in
    sqlite3|mysql) ;;
    *) die "Unsupported Database Type: \"$driver\". Supported Database Types: \"sqlite3\", \"mysql\"." ;;
esac

cd /home/torrust 2>/dev/null || cd /
if [ "$(id -u)" = 0 ]; then
    exec setpriv --reuid="$USER_ID" --regid="$USER_ID" --init-groups -- "$@"
fi
exec "$@"
