#!/bin/bash
# torrust-harden: prepare an Ubuntu 24.04 (or Debian) host for the Torrust stack.
#
# One source of truth for the host's hardening: cloud-init runs it at first boot
# (user-data.yaml.j2 embeds it) and `infra.bootstrap` uploads and runs it on a server
# you already own. Every step checks before it changes, so re-running it is safe.
#
#   torrust-harden CONFIG_FILE        (as root)
#
# CONFIG_FILE (written by the tool, no secrets) sets: DEPLOY_USER, DEPLOY_ROOT,
# SSH_PORT, TCP_PORTS, UDP_PORTS (space-separated), CONNTRACK_MAX, DATA_DEVICE (a glob,
# empty: no data volume), SKIP (space-separated step names) and MARKER.
#
# Output: one line per step, "STEP <name> <ok|changed|skipped> <detail>".
set -euo pipefail

config=${1:?usage: torrust-harden CONFIG_FILE}
[ "$(id -u)" = 0 ] || { echo "torrust-harden: must run as root" >&2; exit 2; }
# shellcheck source=/dev/null
. "$config"
: "${DEPLOY_USER:?}" "${DEPLOY_ROOT:?}" "${SSH_PORT:?}" "${CONNTRACK_MAX:?}" "${MARKER:?}"
TCP_PORTS=${TCP_PORTS:-}
UDP_PORTS=${UDP_PORTS:-}
DATA_DEVICE=${DATA_DEVICE:-}
SKIP=${SKIP:-}
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
    before=$(ufw show added 2>/dev/null; ufw status 2>/dev/null | head -n 1)
    sed -i 's/^IPV6=.*/IPV6=yes/' /etc/default/ufw
    ufw default deny incoming >/dev/null
    ufw default allow outgoing >/dev/null
    # rules for both families; they live in ufw's own chains, which Docker never rewrites
    ufw allow "$SSH_PORT/tcp" >/dev/null
    for p in $TCP_PORTS; do ufw allow "$p/tcp" >/dev/null; done
    for p in $UDP_PORTS; do ufw allow "$p/udp" >/dev/null; done
    ufw --force enable >/dev/null
    after=$(ufw show added 2>/dev/null; ufw status 2>/dev/null | head -n 1)
    report firewall "$([ "$before" = "$after" ] && echo ok || echo changed)" \
        "ssh $SSH_PORT/tcp, tcp: ${TCP_PORTS:-none}, udp: ${UDP_PORTS:-none} (IPv4 and IPv6)"
}

step_sysctl() {
    skipped sysctl && return 0
    local changed=no
    echo nf_conntrack | write_if_changed /etc/modules-load.d/torrust-conntrack.conf 0644 && changed=yes
    echo "options nf_conntrack hashsize=$((CONNTRACK_MAX / 4))" \
        | write_if_changed /etc/modprobe.d/torrust-conntrack.conf 0644 && changed=yes
    cat <<CONF | write_if_changed /etc/sysctl.d/90-torrust.conf 0644 && changed=yes
# Written by torrust-harden. The UDP tracker behind Docker's NAT needs a large conntrack
# table and short UDP timeouts (stack.md lesson 3); nf_conntrack is preloaded at boot
# (modules-load.d) so these apply.
net.netfilter.nf_conntrack_max = $CONNTRACK_MAX
net.netfilter.nf_conntrack_udp_timeout = 10
net.netfilter.nf_conntrack_udp_timeout_stream = 30
net.core.rmem_max = 26214400
net.core.wmem_max = 26214400
net.core.rmem_default = 1048576
net.core.wmem_default = 1048576
net.core.netdev_max_backlog = 5000
net.core.somaxconn = 4096
CONF
    if [ ! -w /proc/sys/net/core/rmem_max ]; then
        report sysctl "$([ $changed = yes ] && echo changed || echo ok)" "files written; /proc/sys is read-only here (a container?): not applied"
        return 0
    fi
    modprobe nf_conntrack 2>/dev/null || true
    sysctl -q -p /etc/sysctl.d/90-torrust.conf
    report sysctl "$([ $changed = yes ] && echo changed || echo ok)" "conntrack max $CONNTRACK_MAX, UDP timeouts, buffers"
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

step_self
step_packages
step_user
step_docker
step_sshd
step_firewall
step_sysctl
step_upgrades
step_storage
step_marker
