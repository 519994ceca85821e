#!/bin/sh
# What a deploy needs from its target, read-only, one round trip: "KEY value" lines
# (parsed by tasks/facts/target.py).
root=$1
printf 'docker %s\n' "$(docker version --format '{{.Server.Version}}' 2>&1 | tail -n 1)"
printf 'compose %s\n' "$(docker compose version --short 2>/dev/null)"
if [ -e "$root" ]; then echo 'exists yes'; probe=$root; else echo 'exists no'; probe=$(dirname -- "$root"); fi
if [ -w "$probe" ]; then echo 'writable yes'; else echo 'writable no'; fi
printf 'probe %s\n' "$probe"
printf 'current %s\n' "$(readlink -- "$root/current" 2>/dev/null)"
