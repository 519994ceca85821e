#!/bin/sh
# Put a checked certificate store archive in place of the proxy's (app.restore --certificates).
# $1 the proxy's storage directory (<root>/storage/proxy), $2 the uploaded archive,
# $3 its sha256, $4 the Compose project, $5 the current release directory ("" when none).
# The proxy (when it runs) is stopped first and started again whatever happens; the store
# it had is kept beside the new one as data.before-<time>.
set -eu
proxy=$1 archive=$2 sha=$3 project=$4 release=$5
compose() {
	docker compose --project-name "$project" --project-directory "$release" --file "$release/compose.yaml" \
		--env-file "$release/.env" "$@"
}
echo "$sha  $archive" | sha256sum -c --status - || { echo "the uploaded archive does not match its checksum" >&2; exit 5; }
running=""
if [ -n "$release" ] && [ -n "$(compose ps -q --status running proxy 2>/dev/null)" ]; then
	running=yes
	compose stop proxy >/dev/null
fi
status=0
stamp=$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p -- "$proxy"
rm -rf -- "$proxy/.data-restore"
mkdir -m 0700 -- "$proxy/.data-restore"
if tar -xzf "$archive" -C "$proxy/.data-restore" --no-same-owner --no-overwrite-dir; then
	if [ -e "$proxy/data" ]; then mv -T -- "$proxy/data" "$proxy/data.before-$stamp"; fi
	mv -T -- "$proxy/.data-restore" "$proxy/data"
	echo "restored; the previous store is $proxy/data.before-$stamp"
else
	status=7
	rm -rf -- "$proxy/.data-restore"
	echo "extracting the archive failed; the store was not changed" >&2
fi
rm -f -- "$archive"
if [ -n "$running" ]; then compose start proxy >/dev/null || status=7; fi
exit "$status"
