#!/bin/sh
# The deploy's first look, in one round trip: lock, current release, its manifest, the
# project's containers, whether the backup cron entry exists and whether any backup does.
# Prints "KEY value" lines, then the manifest and the `docker ps` lines (format given as
# $6) after separator lines (parsed by tasks/facts/snapshot.py).
#
# Unchanged fast path: when $3 (a content hash) is given, no lock is held, the manifest has
# that hash and every service named after $6 runs healthy on the image its reference still
# names (docker ps shows a short image ID once a tag moved), the audit line $4 is appended
# here, saving a round trip. Python re-checks the same facts and stays authoritative; this
# condition is at least as strict as Python's. Shell builtins only: no process per service.
root=$1; project=$2; want=$3; line=$4; backups=$5; format=$6; shift 6
if [ -d "$root/deploy.lock" ]; then locked=yes; else locked=no; fi
echo "LOCKED $locked"
printf 'CURRENT %s\n' "$(readlink -- "$root/current" 2>/dev/null)"
manifest=$(cat -- "$root/current/release.json" 2>/dev/null)
ps=$(docker ps --all --filter "label=com.docker.compose.project=$project" \
  --filter label=com.docker.compose.oneoff=False --format "$format" 2>/dev/null)
docker_status=$?
same=no
if [ -n "$want" ] && [ "$locked" = no ]; then
  case $manifest in *"\"content_sha256\": \"$want\""*) same=yes ;; esac
fi
for svc in "$@"; do
  [ "$same" = yes ] || break
  found=no
  while IFS='|' read -r name state status image _; do
    [ "$name" = "$svc" ] || continue
    found=yes
    [ "$state" = running ] || same=no
    case $status in *"(unhealthy)"* | *"health: starting"*) same=no ;; esac
    case $image in *[!0-9a-f]*) ;; *) same=no ;; esac
  done <<PS
$ps
PS
  [ "$found" = yes ] || same=no
done
if [ "$same" = yes ]; then printf '%s\n' "$line" >> "$root/audit.log"; fi
echo "RECORDED $same"
echo "DOCKER $docker_status"
if [ -e "/etc/cron.d/torrust-backup-$project" ]; then echo "CRON yes"; else echo "CRON no"; fi
backup=no
if [ -n "$backups" ]; then
  for m in "$backups"/2*/manifest.json; do
    if [ -f "$m" ]; then backup=yes; break; fi
  done
fi
echo "BACKUPS $backup"
echo '--- manifest'
printf '%s\n' "$manifest"
echo '--- ps'
printf '%s\n' "$ps"
