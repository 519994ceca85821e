#!/bin/sh
# network-facts: everything the network checks read on the host, in one round trip.
#
#   sh -c "$(cat network-facts.sh)" network-facts [STATE_FILE]
#                                  (as the deploy user; sudo -n where root is needed)
#
# Prints a header line "@@torrust-network-facts 1 TOKEN", then sections, each opened by
# "@@TOKEN NAME STATUS" (STATUS: the exit status of what produced it). TOKEN is random per
# run, so no file content can forge a section. Parsed by tasks/facts/network.py.
# STATE_FILE (default ~/.cache/torrust-deploy/network-counters; a leading ~/ is the
# user's home) keeps the UDP counters and NET_RX softirqs of this run, so the next run
# reports what changed since (the file is the deploy user's; nothing else is written).
# Read-only otherwise.
set -u
# Debian gives a non-root login no sbin in PATH; the tools (iptables-save, ufw, ip) live there
PATH=$PATH:/usr/sbin:/sbin
state=${1:-'~/.cache/torrust-deploy/network-counters'}
# shellcheck disable=SC2088 # a literal ~/ from the caller, expanded here on purpose
case "$state" in '~/'*) state=${HOME:-/tmp}/${state#'~/'} ;; esac
umask 077
token=$(tr -d '-' </proc/sys/kernel/random/uuid 2>/dev/null)
[ -n "$token" ] || token=$$$(date +%s%N)

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo -n "$@"; fi
}
# section NAME COMMAND...: COMMAND's output (stderr folded in) under its own header
section() {
    name=$1; shift
    out=$("$@" 2>&1); rc=$?
    printf '@@%s %s %s\n' "$token" "$name" "$rc"
    [ -n "$out" ] && printf '%s\n' "$out"
    return 0
}
meta() {
    printf 'ncpu=%s\nuid=%s\n' "$(nproc 2>/dev/null || getconf _NPROCESSORS_ONLN)" "$(id -u)"
}
have() { command -v "$1" >/dev/null 2>&1; }
missing() { echo "not installed: $1"; return 127; }

sysctls() {
    for name in nf_conntrack_count nf_conntrack_max nf_conntrack_buckets \
        nf_conntrack_udp_timeout nf_conntrack_udp_timeout_stream; do
        f=/proc/sys/net/netfilter/$name
        [ -r "$f" ] && printf '%s=%s\n' "$name" "$(cat "$f")"
    done
    for name in rps_sock_flow_entries rmem_max rmem_default netdev_max_backlog; do
        f=/proc/sys/net/core/$name
        [ -r "$f" ] && printf '%s=%s\n' "$name" "$(cat "$f")"
    done
    return 0
}
modules() {
    if [ -d /sys/module/nf_conntrack ]; then echo "loaded nf_conntrack"; fi
    for f in /etc/modules-load.d/*.conf /etc/modules; do
        [ -r "$f" ] && grep -qx 'nf_conntrack' "$f" && echo "preload $f"
    done
    return 0
}
counters() {
    grep -E '^Udp: ' /proc/net/snmp
    grep -E '^Udp6(InDatagrams|InErrors|RcvbufErrors|SndbufErrors|NoPorts|MemErrors) ' /proc/net/snmp6
    grep -E '^ *(CPU|NET_RX:)' /proc/softirqs
    printf 'now %s\nboot %s\n' "$(date +%s)" "$(cat /proc/sys/kernel/random/boot_id 2>/dev/null)"
}
# the interfaces of the default routes (both families): where public traffic arrives
default_ifaces() {
    { ip -4 route show default; ip -6 route show default; } 2>/dev/null \
        | sed -n 's/.* dev \([^ ]*\).*/\1/p' | sort -u
}
rps() {
    for dev in $(default_ifaces); do
        for q in /sys/class/net/"$dev"/queues/rx-*; do
            [ -d "$q" ] || continue
            printf '%s %s %s %s\n' "$dev" "${q##*/}" "$(cat "$q/rps_cpus" 2>/dev/null || echo -)" \
                "$(cat "$q/rps_flow_cnt" 2>/dev/null || echo -)"
        done
    done
    return 0
}
policy_routing() {
    ip -4 rule show; ip -6 rule show
    for table in $( { ip -4 rule show; ip -6 rule show; } | sed -n 's/.*lookup \(74[0-9][0-9]\).*/\1/p' | sort -u); do
        ip -4 route show table "$table" | sed "s/^/table $table /"
        ip -6 route show table "$table" | sed "s/^/table $table /"
    done
    return 0
}
# the re-apply hooks torrust-harden installs (boot, and after docker/ufw/nftables restarts)
hooks() {
    for f in /usr/local/sbin/torrust-harden /etc/torrust/harden.env /etc/systemd/system/torrust-network.service \
        /etc/systemd/system/docker.service.d/torrust-network.conf \
        /etc/systemd/system/ufw.service.d/torrust-network.conf \
        /etc/systemd/system/nftables.service.d/torrust-network.conf; do
        [ -e "$f" ] && echo "$f"
    done
    return 0
}
previous() {
    cat -- "$state" 2>/dev/null || true
}
remember() {
    mkdir -p -- "$(dirname -- "$state")" && counters >"$state.tmp" && mv -f -- "$state.tmp" "$state"
}

printf '@@torrust-network-facts 1 %s\n' "$token"
section meta meta
section daemon_json cat /etc/docker/daemon.json
if have docker; then section docker_version docker version --format '{{.Server.Version}}'
else section docker_version missing docker; fi
for tool in iptables-save ip6tables-save; do
    if have "$tool"; then section "$tool" as_root "$tool"; else section "$tool" missing "$tool"; fi
done
if have nft; then section nft as_root nft list ruleset; else section nft missing nft; fi
if have ufw; then section ufw as_root ufw status; else section ufw missing ufw; fi
section sysctl sysctls
section modules modules
section counters counters
section hooks hooks
section previous previous
section rps rps
section addresses ip -o addr show scope global
section policy_routing policy_routing
remember >/dev/null 2>&1 || true
