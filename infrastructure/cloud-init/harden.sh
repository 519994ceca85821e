#!/bin/bash
# torrust-harden: prepare an Ubuntu 24.04 (or Debian) host for the Torrust stack.
#
# One source of truth for the host's hardening: cloud-init runs it at first boot
# (user-data.yaml.j2 embeds it) and `infra.bootstrap` uploads and runs it on a server
# you already own. Every step checks before it changes, so re-running it is safe.
#
#   torrust-harden CONFIG_FILE            (as root) every step
#   torrust-harden CONFIG_FILE reapply    (as root) only re-apply the runtime network
#                                         settings (sysctls, RPS/RFS, public addresses):
#                                         what boot and the docker/ufw/nftables restart
#                                         hooks run (docs/guides/network.md#drift-boot-and-restarts)
#
# CONFIG_FILE (written by the tool, no secrets) sets: DEPLOY_USER, DEPLOY_ROOT,
# SSH_PORT, TCP_PORTS, UDP_PORTS (space-separated), CONNTRACK_MAX, DATA_DEVICE (a glob,
# empty: no data volume), SKIP (space-separated step names) and MARKER; optionally
# UDP_TIMEOUT and UDP_TIMEOUT_STREAM (conntrack, seconds), RPS_FLOW_ENTRIES and
# PUBLIC_ADDRESSES (extra public addresses of this host, e.g. floating IPs).
#
# Output: one line per step, "STEP <name> <ok|changed|skipped> <detail>".
set -euo pipefail

config=${1:?usage: torrust-harden CONFIG_FILE [reapply]}
mode=${2:-all}
case "$mode" in all|reapply) ;; *) echo "torrust-harden: unknown mode '$mode' (allowed: reapply)" >&2; exit 2;; esac
[ "$(id -u)" = 0 ] || { echo "torrust-harden: must run as root" >&2; exit 2; }
# shellcheck source=/dev/null
. "$config"
: "${DEPLOY_USER:?}" "${DEPLOY_ROOT:?}" "${SSH_PORT:?}" "${CONNTRACK_MAX:?}" "${MARKER:?}"
TCP_PORTS=${TCP_PORTS:-}
UDP_PORTS=${UDP_PORTS:-}
DATA_DEVICE=${DATA_DEVICE:-}
SKIP=${SKIP:-}
UDP_TIMEOUT=${UDP_TIMEOUT:-10}
UDP_TIMEOUT_STREAM=${UDP_TIMEOUT_STREAM:-15}
RPS_FLOW_ENTRIES=${RPS_FLOW_ENTRIES:-32768}
PUBLIC_ADDRESSES=${PUBLIC_ADDRESSES:-}
for addr in $PUBLIC_ADDRESSES; do
    [[ "$addr" =~ ^[0-9a-fA-F:.]+$ ]] || { echo "torrust-harden: PUBLIC_ADDRESSES: '$addr' is not an address" >&2; exit 2; }
done
FLOAT_CHAIN=TORRUST-FLOATING
FLOAT_BASE=7470  # fwmark and routing table of the first public address (then +1, +2, ...)
export DEBIAN_FRONTEND=noninteractive

report() { printf 'STEP %s %s %s\n' "$1" "$2" "${3:-}"; }
skipped() { case " $SKIP " in *" $1 "*) report "$1" skipped "by request"; return 0;; esac; return 1; }
have_systemd() { [ -d /run/systemd/system ]; }
# write_if_changed PATH MODE: stdin becomes PATH's content; returns 0 when it changed
write_if_changed() {
    local path=$1 mode=$2 tmp
    tmp=$(mktemp)
    cat >"$tmp"
    if [ -f "$path" ] && cmp -s "$tmp" "$path"; then rm -f "$tmp"; return 1; fi
    install -D -m "$mode" "$tmp" "$path"
    rm -f "$tmp"
    return 0
}

step_self() {
    local changed=no
    if [ "$(readlink -f "$0")" != /usr/local/sbin/torrust-harden ]; then
        write_if_changed /usr/local/sbin/torrust-harden 0755 <"$0" && changed=yes
    fi
    if [ "$(readlink -f "$config")" != /etc/torrust/harden.env ]; then
        write_if_changed /etc/torrust/harden.env 0644 <"$config" && changed=yes
    fi
    report self "$([ $changed = yes ] && echo changed || echo ok)" "/usr/local/sbin/torrust-harden /etc/torrust/harden.env"
}

step_packages() {
    skipped packages && return 0
    local want=() missing=()
    docker version >/dev/null 2>&1 || want+=(docker.io)
    docker compose version 2>/dev/null | grep -q 'v\?2\.' || want+=(docker-compose-v2)
    skipped_quiet() { case " $SKIP " in *" $1 "*) return 0;; esac; return 1; }
    skipped_quiet firewall || want+=(ufw)
    skipped_quiet upgrades || want+=(unattended-upgrades)
    want+=(python3 zstd cron)  # the backup script and its schedule (application/bin/torrust-backup)
    for p in "${want[@]}"; do
        dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    if [ ${#missing[@]} -eq 0 ]; then report packages ok "docker, compose v2 and tools present"; return 0; fi
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    report packages changed "installed ${missing[*]}"
}

step_user() {
    skipped user && return 0
    local changed=no
    getent group docker >/dev/null || { groupadd --system docker; changed=yes; }
    id "$DEPLOY_USER" >/dev/null 2>&1 || { echo "torrust-harden: user $DEPLOY_USER does not exist" >&2; exit 3; }
    for g in docker sudo; do
        getent group "$g" >/dev/null || continue
        id -nG "$DEPLOY_USER" | tr ' ' '\n' | grep -qx "$g" || { usermod -aG "$g" "$DEPLOY_USER"; changed=yes; }
    done
    if printf '%s ALL=(ALL) NOPASSWD:ALL\n' "$DEPLOY_USER" | write_if_changed /etc/sudoers.d/90-torrust-deploy 0440; then
        changed=yes
        if command -v visudo >/dev/null && ! visudo -cqf /etc/sudoers.d/90-torrust-deploy; then
            rm -f /etc/sudoers.d/90-torrust-deploy
            echo "torrust-harden: the sudoers drop-in did not validate" >&2; exit 3
        fi
    fi
    # the deploy root belongs to the deploy user (releases/, current, storage/)
    if [ ! -d "$DEPLOY_ROOT" ] || [ "$(stat -c %U "$DEPLOY_ROOT")" != "$DEPLOY_USER" ]; then
        install -d -o "$DEPLOY_USER" -g "$DEPLOY_USER" -m 0755 "$DEPLOY_ROOT"; changed=yes
    fi
    report user "$([ $changed = yes ] && echo changed || echo ok)" "$DEPLOY_USER in docker and sudo, owns $DEPLOY_ROOT"
}

step_docker() {
    skipped docker && return 0
    local major experimental=""
    major=$(docker version --format '{{.Server.Version}}' 2>/dev/null | cut -d. -f1)
    # ip6tables is experimental before Engine 27: without it Docker publishes IPv6 UDP
    # with no ip6tables rules and a default-deny firewall drops it (stack.md lesson 1).
    if [ -n "$major" ] && [ "$major" -lt 27 ] 2>/dev/null; then experimental='"experimental": true, '; fi
    if printf '{%s"ip6tables": true, "log-driver": "json-file", "log-opts": {"max-size": "10m", "max-file": "3"}}\n' \
        "$experimental" | write_if_changed /etc/docker/daemon.json 0644; then
        if have_systemd; then systemctl restart docker; report docker changed "daemon.json written, docker restarted"
        else report docker changed "daemon.json written (no systemd: restart docker yourself)"; fi
    else
        report docker ok "daemon.json has ip6tables"
    fi
    if have_systemd; then systemctl enable --now docker >/dev/null 2>&1 || true; fi
}

step_sshd() {
    skipped sshd && return 0
    local conf=/etc/ssh/sshd_config.d/00-torrust.conf
    {
        echo "# Written by torrust-harden: key-only logins, no root."
        [ "$SSH_PORT" = 22 ] || echo "Port $SSH_PORT"
        echo "PermitRootLogin no"
        echo "PasswordAuthentication no"
        echo "KbdInteractiveAuthentication no"
        echo "PubkeyAuthentication yes"
    } | write_if_changed "$conf" 0644 || { report sshd ok "$conf"; return 0; }
    # sshd -t needs /run/sshd, which exists only while sshd runs (on Ubuntu 24.04 ssh.socket
    # starts sshd at the first connection, so early in cloud-init it may not exist yet)
    install -d -m 0755 /run/sshd
    if ! sshd -t; then rm -f "$conf"; echo "torrust-harden: sshd rejected $conf" >&2; exit 3; fi
    if have_systemd; then
        # Ubuntu 24.04 starts sshd from ssh.socket: a new Port needs the generator re-run
        systemctl daemon-reload
        if systemctl is-active --quiet ssh.socket; then systemctl restart ssh.socket; fi
        systemctl reload-or-restart ssh
        report sshd changed "$conf, sshd reloaded"
    else
        report sshd changed "$conf (no systemd: reload sshd yourself)"
    fi
}

step_firewall() {
    skipped firewall && return 0
    local before after p
    command -v ufw >/dev/null || { echo "torrust-harden: ufw is not installed" >&2; exit 3; }
    before=$(ufw status verbose 2>/dev/null)  # every rule of both families, and the state
    sed -i 's/^IPV6=.*/IPV6=yes/' /etc/default/ufw
    ufw default deny incoming >/dev/null
    ufw default allow outgoing >/dev/null
    # rules for both families; they live in ufw's own chains, which Docker never rewrites
    ufw allow "$SSH_PORT/tcp" >/dev/null
    for p in $TCP_PORTS; do ufw allow "$p/tcp" >/dev/null; done
    for p in $UDP_PORTS; do ufw allow "$p/udp" >/dev/null; done
    ufw --force enable >/dev/null
    after=$(ufw status verbose 2>/dev/null)
    report firewall "$([ "$before" = "$after" ] && echo ok || echo changed)" \
        "ssh $SSH_PORT/tcp, tcp: ${TCP_PORTS:-none}, udp: ${UDP_PORTS:-none} (IPv4 and IPv6)"
}

step_sysctl() {
    skipped sysctl && return 0
    local changed=no applied
    echo nf_conntrack | write_if_changed /etc/modules-load.d/torrust-conntrack.conf 0644 && changed=yes
    echo "options nf_conntrack hashsize=$((CONNTRACK_MAX / 4))" \
        | write_if_changed /etc/modprobe.d/torrust-conntrack.conf 0644 && changed=yes
    cat <<CONF | write_if_changed /etc/sysctl.d/90-torrust.conf 0644 && changed=yes
# Written by torrust-harden. The UDP tracker behind Docker's NAT needs a large conntrack
# table and short UDP timeouts (docs/guides/network.md#conntrack); nf_conntrack is
# preloaded at boot (modules-load.d) so these apply, and torrust-harden re-applies them
# after docker/ufw/nftables restarts.
net.netfilter.nf_conntrack_max = $CONNTRACK_MAX
net.netfilter.nf_conntrack_udp_timeout = $UDP_TIMEOUT
net.netfilter.nf_conntrack_udp_timeout_stream = $UDP_TIMEOUT_STREAM
net.core.rmem_max = 26214400
net.core.wmem_max = 26214400
net.core.rmem_default = 1048576
net.core.wmem_default = 1048576
net.core.netdev_max_backlog = 5000
net.core.somaxconn = 4096
CONF
    applied=$(apply_sysctl)
    [ "${applied%%:*}" = changed ] && changed=yes
    report sysctl "$([ $changed = yes ] && echo changed || echo ok)" "${applied#*: }"
}

# ----------------------------------------------- runtime settings (also `reapply` mode)
CHANGED=0
REFUSED=()
# set_value PATH VALUE: write a /proc/sys or /sys value when it differs; a value this
# kernel or network namespace refuses (a container, a key that is global) is listed in
# REFUSED, never fatal
set_value() {
    local path=$1 value=$2 have
    local name=${path#/proc/sys/}
    [ "$name" = "$path" ] || name=${name//\//.}  # a sysctl by its dotted name
    if [ ! -e "$path" ]; then REFUSED+=("$name (absent)"); return 0; fi
    have=$(tr -d ',' <"$path" 2>/dev/null | sed 's/^0*//')
    [ "$have" = "$(printf '%s' "$value" | tr -d ',' | sed 's/^0*//')" ] && return 0
    if (printf '%s\n' "$value" >"$path") 2>/dev/null; then CHANGED=$((CHANGED + 1)); else REFUSED+=("$name"); fi
}
summary() {  # "changed: N values set[, not writable here: ...]" or "ok: ..."
    local what=$1 text
    text="$what"
    [ ${#REFUSED[@]} -eq 0 ] || text="$text; not writable here: ${REFUSED[*]}"
    if [ "$CHANGED" -gt 0 ]; then echo "changed: $CHANGED value(s) set, $text"; else echo "ok: $text"; fi
    CHANGED=0; REFUSED=()
}

apply_sysctl() {
    local key value
    modprobe nf_conntrack 2>/dev/null || true
    while IFS='=' read -r key value; do
        key=${key//[[:space:]]/}
        case "$key" in ''|'#'*) continue;; esac
        value=${value#"${value%%[![:space:]]*}"}; value=${value%"${value##*[![:space:]]}"}
        set_value "/proc/sys/${key//.//}" "$value"
    done </etc/sysctl.d/90-torrust.conf
    summary "conntrack max $CONNTRACK_MAX, UDP timeouts $UDP_TIMEOUT/$UDP_TIMEOUT_STREAM s, buffers"
}

# all CPUs as the hex mask sysfs expects (a comma every 32 CPUs, highest group first)
cpu_mask() {
    local n=$1 mask="" bits chunk
    while [ "$n" -gt 0 ]; do
        bits=$(( n > 32 ? 32 : n )); n=$(( n - bits ))
        if [ "$bits" = 32 ]; then chunk=ffffffff; else chunk=$(printf '%x' $(( (1 << bits) - 1 ))); fi
        mask="$chunk${mask:+,$mask}"
    done
    echo "$mask"
}
# the interfaces of the default routes: where public traffic arrives
default_ifaces() {
    { ip -4 route show default; ip -6 route show default; } 2>/dev/null \
        | sed -n 's/.* dev \([^ ]*\).*/\1/p' | sort -u
}
# RPS spreads receive processing of single-queue NICs over every CPU, RFS steers each
# flow to the CPU its socket's reader runs on (docs/guides/network.md#softirq-rps-and-rfs)
apply_rps() {
    local ncpu mask dev queues q
    ncpu=$(nproc)
    if [ "$ncpu" -le 1 ]; then echo "ok: one CPU, nothing to spread"; return 0; fi
    mask=$(cpu_mask "$ncpu")
    set_value /proc/sys/net/core/rps_sock_flow_entries "$RPS_FLOW_ENTRIES"
    for dev in $(default_ifaces); do
        queues=(/sys/class/net/"$dev"/queues/rx-*)
        [ -d "${queues[0]}" ] || continue
        for q in "${queues[@]}"; do
            set_value "$q/rps_cpus" "$mask"
            set_value "$q/rps_flow_cnt" $(( RPS_FLOW_ENTRIES / ${#queues[@]} ))
        done
    done
    summary "RPS mask $mask on $(default_ifaces | tr '\n' ' ' | sed 's/ $//')"
}

ipt() { if [ "$1" = 6 ]; then shift; ip6tables -w "$@"; else shift; iptables -w "$@"; fi; }
# must COMMAND...: run it; a failure is listed (with the command), not fatal
must() { local err; err=$("$@" 2>&1) || REFUSED+=("'$*' failed: ${err:-exit $?}"); }
# Several public addresses (floating IPs): each address is held by the interface of its
# family's default route, connections that arrive on it are marked, and their replies are
# routed by that mark through its own table, out of the interface and gateway of that
# address. Docker's DNAT makes conntrack restore the arrival address as the replies'
# source (docs/guides/network.md#several-public-addresses-floating-ips).
apply_addresses() {
    local i=0 fam addr mark table dev gw before after prefix
    if [ -z "$PUBLIC_ADDRESSES" ]; then  # none (any more): nothing of ours may stay
        for fam in 4 6; do ipt "$fam" -t mangle -F "$FLOAT_CHAIN" 2>/dev/null || true; done
        prune_rules 0
        echo "ok: no extra public addresses"
        return 0
    fi
    before=$(for fam in 4 6; do ipt "$fam" -t mangle -S "$FLOAT_CHAIN" 2>/dev/null; done; ip -4 rule; ip -6 rule)
    for fam in 4 6; do
        ipt "$fam" -t mangle -N "$FLOAT_CHAIN" 2>/dev/null || true
        must ipt "$fam" -t mangle -F "$FLOAT_CHAIN"
        for hook in PREROUTING OUTPUT; do
            ipt "$fam" -t mangle -C "$hook" -j "$FLOAT_CHAIN" 2>/dev/null || must ipt "$fam" -t mangle -I "$hook" 1 -j "$FLOAT_CHAIN"
        done
    done
    for addr in $PUBLIC_ADDRESSES; do
        mark=$((FLOAT_BASE + i)); table=$((FLOAT_BASE + i)); i=$((i + 1))
        if [[ "$addr" == *:* ]]; then fam=6; prefix=128; else fam=4; prefix=32; fi
        dev=$(ip -"$fam" route show default | sed -n 's/.* dev \([^ ]*\).*/\1/p' | head -n 1)
        gw=$(ip -"$fam" route show default | sed -n 's/.* via \([^ ]*\).*/\1/p' | head -n 1)
        if [ -z "$dev" ]; then REFUSED+=("$addr (no IPv$fam default route)"); continue; fi
        if ! ip -"$fam" -o addr show to "$addr/$prefix" | grep -q .; then
            if [ "$fam" = 6 ]; then must ip -6 addr add "$addr/128" dev "$dev" nodad; else must ip -4 addr add "$addr/32" dev "$dev"; fi
            CHANGED=$((CHANGED + 1))
        fi
        must ipt "$fam" -t mangle -A "$FLOAT_CHAIN" -d "$addr" -m conntrack --ctstate NEW -j CONNMARK --set-mark "$mark"
        ip -"$fam" rule show | grep -q "fwmark $(printf '0x%x' "$mark") lookup $table" \
            || must ip -"$fam" rule add fwmark "$mark" lookup "$table" priority "$table"
        if [ -n "$gw" ]; then must ip -"$fam" route replace default via "$gw" dev "$dev" table "$table"
        else must ip -"$fam" route replace default dev "$dev" table "$table"; fi
    done
    # only the replies carry the mark (the queries must still reach the containers by the
    # main table)
    for fam in 4 6; do
        must ipt "$fam" -t mangle -A "$FLOAT_CHAIN" -m conntrack --ctdir REPLY -m connmark ! --mark 0 \
            -j CONNMARK --restore-mark
    done
    prune_rules "$i"
    after=$(for fam in 4 6; do ipt "$fam" -t mangle -S "$FLOAT_CHAIN" 2>/dev/null; done; ip -4 rule; ip -6 rule)
    [ "$before" = "$after" ] || CHANGED=$((CHANGED + 1))
    summary "$i public address(es): $PUBLIC_ADDRESSES"
}
# drop our routing rules beyond the first N (addresses removed from the configuration)
prune_rules() {
    local keep=$1 fam table
    for fam in 4 6; do
        for table in $(ip -"$fam" rule show | sed -n 's/.*lookup \(74[7-9][0-9]\).*/\1/p' | sort -u); do
            [ "$table" -lt $((FLOAT_BASE + keep)) ] && continue
            while ip -"$fam" rule del lookup "$table" 2>/dev/null; do :; done
            ip -"$fam" route flush table "$table" 2>/dev/null || true
        done
    done
}

reapply_network() {
    local rps addrs
    rps=$(apply_rps)
    addrs=$(apply_addresses)
    if [ "${rps%%:*}" = changed ] || [ "${addrs%%:*}" = changed ]; then echo -n changed; else echo -n ok; fi
    echo ": ${rps#*: }; ${addrs#*: }"
}

# Boot and restarts: a unit at boot, and ExecStartPost drop-ins on the services whose
# restart rewrites or flushes rules (Docker rewrites its chains; ufw and nftables reload
# theirs), all running `torrust-harden CONFIG reapply`.
step_network() {
    skipped network && return 0
    local changed=no hook="/usr/local/sbin/torrust-harden /etc/torrust/harden.env reapply" svc result
    printf '%s\n' "[Unit]" "Description=torrust-harden: re-apply the network settings (conntrack, RPS/RFS, public addresses)" \
        "After=network-online.target docker.service ufw.service nftables.service" "Wants=network-online.target" "" \
        "[Service]" "Type=oneshot" "ExecStart=$hook" "RemainAfterExit=yes" "" "[Install]" "WantedBy=multi-user.target" \
        | write_if_changed /etc/systemd/system/torrust-network.service 0644 && changed=yes
    for svc in docker ufw nftables; do
        printf '%s\n' "# Written by torrust-harden: after $svc (re)starts, re-apply the network settings" \
            "[Service]" "ExecStartPost=-$hook" \
            | write_if_changed "/etc/systemd/system/$svc.service.d/torrust-network.conf" 0644 && changed=yes
    done
    if have_systemd && [ $changed = yes ]; then
        systemctl daemon-reload
        systemctl enable torrust-network.service >/dev/null 2>&1 || true
    fi
    result=$(reapply_network)
    [ "${result%%:*}" = changed ] && changed=yes
    report network "$([ $changed = yes ] && echo changed || echo ok)" "hooks at boot and after docker/ufw/nftables restarts; ${result#*: }"
}

step_upgrades() {
    skipped upgrades && return 0
    local changed=no
    printf 'APT::Periodic::Update-Package-Lists "1";\nAPT::Periodic::Unattended-Upgrade "1";\n' \
        | write_if_changed /etc/apt/apt.conf.d/20auto-upgrades 0644 && changed=yes
    printf 'Unattended-Upgrade::Automatic-Reboot "false";\n' \
        | write_if_changed /etc/apt/apt.conf.d/52torrust-unattended-upgrades 0644 && changed=yes
    if have_systemd; then systemctl enable --now unattended-upgrades >/dev/null 2>&1 || true; fi
    report upgrades "$([ $changed = yes ] && echo changed || echo ok)" "unattended security upgrades on, no automatic reboot"
}

step_storage() {
    skipped storage && return 0
    local mountpoint="$DEPLOY_ROOT/storage" dev="" uuid
    if [ -z "$DATA_DEVICE" ]; then report storage ok "no data volume: storage on the system disk"; return 0; fi
    for _ in $(seq 1 60); do  # a volume may be attached a little after the first boot
        # shellcheck disable=SC2086,SC2012
        dev=$(ls -1 $DATA_DEVICE 2>/dev/null | head -n 1 || true)
        [ -n "$dev" ] && break
        sleep 2
    done
    [ -n "$dev" ] || { echo "torrust-harden: no data volume matches $DATA_DEVICE" >&2; exit 3; }
    if mountpoint -q "$mountpoint"; then report storage ok "$dev mounted at $mountpoint"; return 0; fi
    blkid "$dev" >/dev/null 2>&1 || mkfs.ext4 -q -L torrust-data "$dev"
    uuid=$(blkid -s UUID -o value "$dev")
    grep -q "UUID=$uuid" /etc/fstab || echo "UUID=$uuid $mountpoint ext4 defaults,nofail 0 2" >>/etc/fstab
    install -d "$mountpoint"
    mount "$mountpoint"
    chown "$DEPLOY_USER:$DEPLOY_USER" "$mountpoint"
    report storage changed "$dev mounted at $mountpoint"
}

step_marker() {
    local digest
    digest=$(cat "$0" "$config" | sha256sum | cut -d' ' -f1)
    if printf 'torrust-harden %s\n' "$digest" | write_if_changed "$MARKER" 0644; then
        report marker changed "$MARKER"
    else
        report marker ok "$MARKER"
    fi
}

if [ "$mode" = reapply ]; then
    applied=$(apply_sysctl)
    report sysctl "${applied%%:*}" "${applied#*: }"
    applied=$(reapply_network)
    report network "${applied%%:*}" "${applied#*: }"
    exit 0
fi
step_self
step_packages
step_user
step_docker
step_sshd
step_firewall
step_sysctl
step_network
step_upgrades
step_storage
step_marker
