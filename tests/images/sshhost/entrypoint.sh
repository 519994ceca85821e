#!/bin/bash
# Entrypoint of torrust-test/sshhost: configures sshd and a deploy user from the
# environment, then runs sshd in the foreground.
#
#   SSH_PORT      port sshd listens on (default 22)
#   SSH_LISTEN    address sshd listens on (default 0.0.0.0)
#   DEPLOY_USER   login user (default torrust), DEPLOY_UID its uid (default 1000)
#   SSHHOST_CRON  start cron (default 1)
#
#   /run/deploy/authorized_keys   the deploy user's authorized_keys (mount it)
#   /run/deploy/host_keys/        ssh_host_*_key (+ .pub) to use as host keys (optional;
#                                 without them fresh keys are generated)
#   /var/run/docker.sock          if mounted, the deploy user joins a group with the
#                                 socket's GID so it can run docker without sudo
set -euo pipefail

log() { printf 'sshhost: %s\n' "$*"; }
die() { printf 'sshhost: ERROR: %s\n' "$*" >&2; exit 1; }

SSH_PORT=${SSH_PORT:-22}
SSH_LISTEN=${SSH_LISTEN:-0.0.0.0}
DEPLOY_USER=${DEPLOY_USER:-torrust}
DEPLOY_UID=${DEPLOY_UID:-1000}
SSHHOST_CRON=${SSHHOST_CRON:-1}
KEYS_FILE=/run/deploy/authorized_keys
HOST_KEYS_DIR=/run/deploy/host_keys

[[ "$SSH_PORT" =~ ^[0-9]+$ ]] || die "SSH_PORT must be a number, got '$SSH_PORT'"
[[ "$DEPLOY_UID" =~ ^[0-9]+$ ]] || die "DEPLOY_UID must be a number, got '$DEPLOY_UID'"
[[ "$DEPLOY_USER" =~ ^[a-z_][a-z0-9_-]*$ ]] || die "DEPLOY_USER '$DEPLOY_USER' is not a valid user name"
[ "$DEPLOY_USER" != root ] || die "DEPLOY_USER must not be root (PermitRootLogin is no)"

# --- deploy user --------------------------------------------------------------
if ! id "$DEPLOY_USER" >/dev/null 2>&1; then
    useradd --create-home --uid "$DEPLOY_UID" --user-group --shell /bin/bash "$DEPLOY_USER"
fi
# '*' (not '!'): no password login, but the account is not "locked" for sshd.
usermod -p '*' "$DEPLOY_USER"
home=$(getent passwd "$DEPLOY_USER" | cut -d: -f6)
install -d -m 0700 -o "$DEPLOY_USER" -g "$DEPLOY_USER" "$home/.ssh"
if [ -f "$KEYS_FILE" ]; then
    install -m 0600 -o "$DEPLOY_USER" -g "$DEPLOY_USER" "$KEYS_FILE" "$home/.ssh/authorized_keys"
    log "authorized_keys for $DEPLOY_USER: $(grep -c -v -e '^#' -e '^$' "$home/.ssh/authorized_keys" || true) key(s)"
else
    log "WARNING: $KEYS_FILE is not mounted: nobody can log in"
fi
printf '%s ALL=(ALL) NOPASSWD:ALL\n' "$DEPLOY_USER" > /etc/sudoers.d/90-deploy-user
chmod 0440 /etc/sudoers.d/90-deploy-user

# --- docker socket group ------------------------------------------------------
if [ -S /var/run/docker.sock ]; then
    gid=$(stat -c %g /var/run/docker.sock)
    group=$(getent group "$gid" | cut -d: -f1 || true)
    if [ -z "$group" ]; then
        group=docker-host
        if getent group "$group" >/dev/null; then
            groupmod -g "$gid" "$group"
        else
            groupadd -g "$gid" "$group"
        fi
    fi
    usermod -aG "$group" "$DEPLOY_USER"
    log "$DEPLOY_USER joins group $group (gid $gid) of /var/run/docker.sock"
fi

# --- host keys ----------------------------------------------------------------
rm -f /etc/ssh/ssh_host_*
shopt -s nullglob
mounted_keys=("$HOST_KEYS_DIR"/ssh_host_*_key)
shopt -u nullglob
if [ "${#mounted_keys[@]}" -gt 0 ]; then
    for key in "${mounted_keys[@]}"; do
        install -m 0600 -o root -g root "$key" "/etc/ssh/$(basename "$key")"
        if [ -f "$key.pub" ]; then
            install -m 0644 -o root -g root "$key.pub" "/etc/ssh/$(basename "$key").pub"
        fi
    done
    log "host keys from $HOST_KEYS_DIR: ${#mounted_keys[@]}"
else
    # ed25519 and ECDSA only: an RSA key takes a second or two to generate.
    ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/ssh_host_ed25519_key
    ssh-keygen -q -t ecdsa -N '' -f /etc/ssh/ssh_host_ecdsa_key
    log "host keys generated (ed25519, ecdsa)"
fi

# --- sshd configuration -------------------------------------------------------
{
    echo "# Written by the sshhost entrypoint at container start."
    echo "Port $SSH_PORT"
    echo "ListenAddress $SSH_LISTEN"
    for key in /etc/ssh/ssh_host_*_key; do echo "HostKey $key"; done
    echo "PermitRootLogin no"
    echo "PasswordAuthentication no"
    echo "KbdInteractiveAuthentication no"
    echo "PubkeyAuthentication yes"
    echo "AuthorizedKeysFile .ssh/authorized_keys"
    echo "PrintMotd no"
    echo "UseDNS no"
} > /etc/ssh/sshd_config.d/10-sshhost.conf
mkdir -p /run/sshd
chmod 0755 /run/sshd
/usr/sbin/sshd -t

if [ "$SSHHOST_CRON" = 1 ]; then
    cron
    log "cron started"
fi

log "sshd listening on $SSH_LISTEN:$SSH_PORT for $DEPLOY_USER"
exec /usr/sbin/sshd -D -e
