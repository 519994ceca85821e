#!/bin/bash
# nethost-dockerd start|stop|restart|status: the test host's own dockerd (no systemd in
# the container: this script is its service manager). Once dockerd answers, it runs the
# ExecStartPost= lines of /etc/systemd/system/docker.service.d/*.conf as systemd would
# (a leading '-' ignores the command's failure), so the drop-ins the hardening script
# writes are exercised as written. Their output goes to /var/log/docker-exec-start-post.log.
set -euo pipefail

PIDFILE=/run/nethost-dockerd.pid
LOG=/var/log/dockerd.log
DROPINS=/etc/systemd/system/docker.service.d
POST_LOG=/var/log/docker-exec-start-post.log

running() { [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

start() {
    running && return 0
    setsid dockerd >>"$LOG" 2>&1 </dev/null &
    echo $! >"$PIDFILE"
    for _ in $(seq 1 300); do
        docker info >/dev/null 2>&1 && break
        running || { tail -n 30 "$LOG" >&2; exit 1; }
        sleep 0.1
    done
    docker info >/dev/null 2>&1 || { echo "nethost-dockerd: dockerd not ready" >&2; tail -n 30 "$LOG" >&2; exit 1; }
    exec_start_post
}

exec_start_post() {
    local conf line ignore
    for conf in "$DROPINS"/*.conf; do
        [ -f "$conf" ] || continue
        while IFS= read -r line; do
            case "$line" in ExecStartPost=*) ;; *) continue ;; esac
            line=${line#ExecStartPost=}
            ignore=no
            case "$line" in -*) ignore=yes; line=${line#-} ;; esac
            echo "== $(date -u +%FT%TZ) $conf: $line" >>"$POST_LOG"
            # word splitting of the command line, as systemd does for a simple command
            # shellcheck disable=SC2086
            if ! $line >>"$POST_LOG" 2>&1 && [ "$ignore" = no ]; then
                echo "nethost-dockerd: ExecStartPost failed: $line" >&2; exit 1
            fi
        done <"$conf"
    done
}

stop() {
    running || return 0
    local pid
    pid=$(cat "$PIDFILE")
    kill "$pid"
    for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    rm -f "$PIDFILE"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    restart) stop; start ;;
    status) running ;;
    *) echo "usage: nethost-dockerd start|stop|restart|status" >&2; exit 2 ;;
esac
