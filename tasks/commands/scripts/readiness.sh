#!/bin/sh
# infra.wait's probe of a new host, read-only, one round trip (parsed by
# tasks/facts/readiness.py). result.json is written by cloud-init when its last stage
# ends; its "errors" list is empty on success. The marker ($1) is the hardening script's
# last step.
marker=$1
if [ -f "$marker" ]; then echo 'marker yes'; else echo 'marker no'; fi
result=/var/lib/cloud/data/result.json
if [ -f "$result" ]; then
  n=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["v1"]["errors"]))' "$result" 2>/dev/null \
    || { grep -q '"errors": \[\]' "$result" && echo 0 || echo 1; })
  if [ "$n" = 0 ]; then echo 'cloudinit done'; else echo "cloudinit error $n"; fi
elif [ -e /var/lib/cloud/instance ] || [ -e /run/cloud-init ] || command -v cloud-init >/dev/null 2>&1; then
  echo 'cloudinit running'
else
  echo 'cloudinit absent'
fi
echo '--- log'
tail -n 25 /var/log/cloud-init-output.log 2>/dev/null || true
