#!/bin/sh
# The releases on the host and those marked failed, one round trip (parsed by
# tasks/facts/releases.py); first appends an audit line ($3, when given) to $4 (0600).
# usage: inventory.sh RELEASES MARKER [AUDIT_LINE AUDIT_FILE]
releases=$1; marker=$2; line=$3; audit=$4
if [ -n "$line" ]; then (umask 077; printf '%s\n' "$line" >> "$audit") || exit 1; fi
ls -1 -- "$releases"
echo ---
find "$releases" -mindepth 2 -maxdepth 2 -name "$marker"
