#!/bin/sh
# Install or remove one block of the calling user's crontab, between marker lines,
# leaving every other line as it was (torrust-deploy's remote health.watch).
#
#   watch-cron.sh install MARK LINE     the block holds LINE (replaces an earlier block)
#   watch-cron.sh remove MARK           the block is removed
#   watch-cron.sh show MARK             prints the block's line (exit 1 when absent)
set -eu

action=${1:-}
mark=${2:-}
[ -n "$mark" ] || { echo "usage: watch-cron.sh install|remove|show MARK [LINE]" >&2; exit 2; }
begin="# >>> $mark (torrust-deploy, do not edit)"
end="# <<< $mark"

current=$(crontab -l 2>/dev/null || true)
kept=$(printf '%s\n' "$current" | awk -v b="$begin" -v e="$end" '$0 == b { skip = 1; next } $0 == e { skip = 0; next } !skip')

case $action in
    install)
        line=${3:-}
        [ -n "$line" ] || { echo "watch-cron.sh install: no LINE" >&2; exit 2; }
        printf '%s\n%s\n%s\n%s\n' "$kept" "$begin" "$line" "$end" | sed '/./,$!d' | crontab -
        ;;
    remove)
        printf '%s\n' "$kept" | sed '/./,$!d' | crontab -
        ;;
    show)
        printf '%s\n' "$current" | awk -v b="$begin" -v e="$end" '$0 == b { on = 1; next } $0 == e { on = 0; found = 1; next } on { print } END { exit !found }'
        ;;
    *)
        echo "watch-cron.sh: unknown action '$action' (install, remove, show)" >&2
        exit 2
        ;;
esac
