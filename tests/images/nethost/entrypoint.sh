#!/bin/bash
# Entrypoint of torrust-test/nethost: IPv6 forwarding on, this host's own dockerd
# started (daemon.json as mounted or written before; see nethost-dockerd), then the
# sshhost entrypoint (deploy user, host keys, sshd in the foreground).
set -euo pipefail
sysctl -q -w net.ipv6.conf.all.forwarding=1 || true
if [ "${NETHOST_DOCKERD:-1}" = 1 ]; then
    /usr/local/sbin/nethost-dockerd start
    echo "nethost: dockerd running"
fi
exec /usr/local/sbin/sshhost-entrypoint
