#!/bin/sh
# Remove the host lock ($1) only if it is ours (its info.json carries our token, $2) and no
# host-side worker (a backup script that outlived our connection) still runs under it;
# that worker releases the lock itself when it ends.
lock=$1; token=$2
w=$(sed -n 's/.*"worker_pid": \([0-9]*\).*/\1/p' "$lock/info.json" 2>/dev/null)
if [ -n "$w" ] && [ -d "/proc/$w" ]; then exit 0; fi
if [ ! -e "$lock/info.json" ] || grep -q -- "$token" "$lock/info.json"; then rm -rf -- "$lock"; fi
