#!/bin/sh
# Unpack a release archive (on stdin) into place, in one round trip: a 0700 staging dir,
# modes exactly as rendered (secrets 0600), the backup cron entry installed or removed,
# the group of files a container reads through its group, storage directories with the
# owner their container needs, then an atomic rename into releases/<id>.
#
# usage: unpack.sh RELEASES STAGING TARGET CRONFILE BACKUPS STORAGE [FILE GID]... -- [SUBDIR UID|-]...
# (SUBDIR relative to STORAGE)
set -e
releases=$1; staging=$2; target=$3; cronfile=$4; backups=$5; storage=$6; shift 6
mkdir -p -- "$releases"
rm -rf -- "$releases"/.upload-*
mkdir -m 0700 -- "$staging"
mkdir -- "$staging/tree"
tar -xzf - -C "$staging/tree" --no-same-owner --preserve-permissions
sudo=; [ "$(id -u)" = 0 ] || sudo="sudo -n"
# the scheduled backup (cron.d wants root-owned files): installed when backups are on
# ($backups is their directory), removed when off; nothing when $cronfile is empty
if [ -n "$backups" ]; then
  mkdir -p -- "$backups"
  src=$staging/tree/cron/torrust-backup
  if ! cmp -s "$src" "$cronfile"; then $sudo install -m 0644 -o root -g root "$src" "$cronfile"; fi
elif [ -n "$cronfile" ] && [ -e "$cronfile" ]; then
  rm -f -- "$cronfile" 2>/dev/null || $sudo rm -f -- "$cronfile"
fi
# files a container reads through its group: FILE GID pairs until "--"
while [ "$1" != -- ]; do
  f=$staging/tree/$1; g=$2; shift 2
  chgrp -h "$g" "$f" 2>/dev/null || $sudo chgrp -h "$g" "$f"
done
shift
# storage directories with the owner their container needs: SUBDIR UID|- pairs. A container
# can write into storage: a symlink planted there must never redirect a chown (run with
# sudo) to a file outside; every component below storage/ must be a real directory.
mkdir -p -- "$storage"
while [ "$#" -gt 0 ]; do
  rel=$1; o=$2; shift 2
  d=$storage/$rel
  path=$storage
  for part in $(printf '%s' "$rel" | tr '/' ' '); do
    path=$path/$part
    if [ -L "$path" ]; then echo "unpack: $path is a symbolic link; refusing to use it" >&2; exit 3; fi
    [ -d "$path" ] || mkdir -- "$path"
  done
  if [ "$o" != - ] && [ "$(stat -c %u -- "$d")" != "$o" ]; then
    chown -h "$o:$o" -- "$d" 2>/dev/null || $sudo chown -h "$o:$o" -- "$d"
  fi
done
chmod 0755 -- "$staging/tree"
mv -T -- "$staging/tree" "$target"
rm -rf -- "$staging"
