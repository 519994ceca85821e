#!/bin/sh
# Wait until no `docker compose` of project $1 runs for this user any more, at most $2
# seconds (exit 1 then). After a dropped connection the `up` it started keeps running on
# the host; a rollback that started its own `up` meanwhile would race it for container
# names. ("[-]" keeps the pattern from matching this script's own command line.)
project=$1; limit=$2; waited=0
while pgrep -u "$(id -u)" -f -- "[-]-project-name $project " >/dev/null 2>&1; do
  if [ "$waited" -ge "$limit" ]; then echo "compose of $project still running after ${limit}s" >&2; exit 1; fi
  sleep 1
  waited=$((waited + 1))
done
