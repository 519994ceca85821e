#!/bin/bash
# Entrypoint of torrust-test/mariadb: Debian's MariaDB with the official MySQL image's
# contract. On first start with an empty datadir it initialises the server from
#   MYSQL_ROOT_PASSWORD (or MYSQL_ALLOW_EMPTY_PASSWORD=yes / MYSQL_RANDOM_ROOT_PASSWORD=yes)
#   MYSQL_DATABASE, MYSQL_USER, MYSQL_PASSWORD (each also as *_FILE)
#   MYSQL_ROOT_HOST (default %)
# and runs /docker-entrypoint-initdb.d/*.{sh,sql,sql.gz,sql.xz,sql.zst}.
# Passwords never appear on a command line: SQL goes through stdin and the client
# reads the root password from a mode-0600 defaults file that is removed afterwards.
set -Eeuo pipefail

log()  { printf '%s [Note] [Entrypoint]: %s\n' "$(date --rfc-3339=seconds)" "$*"; }
warn() { printf '%s [Warn] [Entrypoint]: %s\n' "$(date --rfc-3339=seconds)" "$*" >&2; }
die()  { printf '%s [ERROR] [Entrypoint]: %s\n' "$(date --rfc-3339=seconds)" "$*" >&2; exit 1; }

# file_env VAR [DEFAULT]: VAR from the environment or from the file named by VAR_FILE.
file_env() {
    local var=$1 file_var="${1}_FILE" def=${2:-}
    if [ -n "${!var:-}" ] && [ -n "${!file_var:-}" ]; then
        die "both $var and $file_var are set (but are exclusive)"
    fi
    local val=$def
    if [ -n "${!var:-}" ]; then
        val=${!var}
    elif [ -n "${!file_var:-}" ]; then
        val=$(< "${!file_var}")
    fi
    export "$var"="$val"
    unset "$file_var"
}

# SQL string literal / identifier escaping.
sql_string() { local s=${1//\\/\\\\}; s=${s//\'/\\\'}; printf "'%s'" "$s"; }
# shellcheck disable=SC2016
sql_ident()  { local s=${1//\`/\`\`}; printf '`%s`' "$s"; }

# A server option's effective value ("$@" are the server command and its args).
server_option() {
    local name=$1; shift
    "$@" --verbose --help 2>/dev/null | awk -v n="$name" '$1 == n { print $2; exit }'
}

if [ "${1:0:1}" = '-' ]; then
    set -- mariadbd "$@"
fi

case "$1" in
    mariadbd|mysqld|/usr/sbin/mariadbd|/usr/sbin/mysqld) ;;
    *) exec "$@" ;;
esac
for arg in "${@:2}"; do
    case "$arg" in
        -'?'|--help|--print-defaults|-V|--version) exec "$@" ;;
    esac
done

AS_ROOT=0
[ "$(id -u)" = 0 ] && AS_ROOT=1
user_args=()
[ "$AS_ROOT" = 1 ] && user_args=(--user=mysql)

DATADIR=$(server_option datadir "$@")
SOCKET=$(server_option socket "$@")
DATADIR=${DATADIR:-/var/lib/mysql}
DATADIR=${DATADIR%/}
SOCKET=${SOCKET:-/run/mysqld/mysqld.sock}

if [ "$AS_ROOT" = 1 ]; then
    mkdir -p "$DATADIR" "$(dirname "$SOCKET")"
    find "$DATADIR" \! -user mysql -exec chown mysql: '{}' +
    chown mysql: "$(dirname "$SOCKET")"
fi

if [ ! -d "$DATADIR/mysql" ]; then
    file_env MYSQL_ROOT_PASSWORD
    file_env MYSQL_DATABASE
    file_env MYSQL_USER
    file_env MYSQL_PASSWORD
    file_env MYSQL_ROOT_HOST '%'
    MYSQL_ALLOW_EMPTY_PASSWORD=${MYSQL_ALLOW_EMPTY_PASSWORD:-}
    MYSQL_RANDOM_ROOT_PASSWORD=${MYSQL_RANDOM_ROOT_PASSWORD:-}

    if [ -z "$MYSQL_ROOT_PASSWORD" ] && [ -z "$MYSQL_ALLOW_EMPTY_PASSWORD" ] && [ -z "$MYSQL_RANDOM_ROOT_PASSWORD" ]; then
        die "Database is uninitialized and password option is not specified
    You need to specify one of the following as an environment variable:
    - MYSQL_ROOT_PASSWORD
    - MYSQL_ALLOW_EMPTY_PASSWORD
    - MYSQL_RANDOM_ROOT_PASSWORD"
    fi
    if [ "$MYSQL_USER" = root ]; then
        die 'MYSQL_USER="root", MYSQL_USER and MYSQL_PASSWORD are for configuring a regular user and cannot be used for the root user
    Remove MYSQL_USER="root" and use one of the following to control the root user password:
    - MYSQL_ROOT_PASSWORD
    - MYSQL_ALLOW_EMPTY_PASSWORD
    - MYSQL_RANDOM_ROOT_PASSWORD'
    fi
    if [ -n "$MYSQL_USER" ] && [ -z "$MYSQL_PASSWORD" ]; then
        warn "MYSQL_USER specified, but missing MYSQL_PASSWORD; MYSQL_USER will not be created"
    elif [ -z "$MYSQL_USER" ] && [ -n "$MYSQL_PASSWORD" ]; then
        warn "MYSQL_PASSWORD specified, but missing MYSQL_USER; MYSQL_PASSWORD will be ignored"
    fi
    if [ -n "$MYSQL_RANDOM_ROOT_PASSWORD" ] && [ -z "$MYSQL_ROOT_PASSWORD" ]; then
        MYSQL_ROOT_PASSWORD=$(tr -dc 'A-Za-z0-9' < /dev/urandom | head -c 32)
        log "GENERATED ROOT PASSWORD: $MYSQL_ROOT_PASSWORD"
    fi

    log "Initializing database files in $DATADIR"
    mariadb-install-db "${user_args[@]}" --datadir="$DATADIR" --rpm \
        --auth-root-authentication-method=normal --skip-test-db \
        --skip-log-bin --default-time-zone=SYSTEM "${@:2}" >/dev/null
    log "Database files initialized"

    # The temporary server: socket only, no network.
    TMPDIR_INIT=$(mktemp -d)
    chmod 0700 "$TMPDIR_INIT"
    CLIENT_CNF="$TMPDIR_INIT/client.cnf"
    (umask 077; printf '[client]\nuser=root\nsocket=%s\n' "$SOCKET" > "$CLIENT_CNF")
    "$@" "${user_args[@]}" --skip-networking --skip-log-bin --socket="$SOCKET" &
    TMP_SERVER_PID=$!
    cleanup_init() {
        if [ -n "${TMP_SERVER_PID:-}" ] && kill -0 "$TMP_SERVER_PID" 2>/dev/null; then
            kill "$TMP_SERVER_PID" 2>/dev/null || true
            wait "$TMP_SERVER_PID" 2>/dev/null || true
        fi
        rm -rf "$TMPDIR_INIT"
    }
    trap cleanup_init EXIT

    sql() { mariadb --defaults-extra-file="$CLIENT_CNF" --protocol=socket "$@"; }

    log "Waiting for the temporary server"
    for _ in $(seq 1 300); do
        if sql --database=mysql -e 'SELECT 1' >/dev/null 2>&1; then break; fi
        kill -0 "$TMP_SERVER_PID" 2>/dev/null || die "the temporary server exited during initialisation"
        sleep 0.1
    done
    sql --database=mysql -e 'SELECT 1' >/dev/null || die "the temporary server did not start"
    log "Temporary server started"

    root_pw=$(sql_string "$MYSQL_ROOT_PASSWORD")
    root_host=$(sql_string "$MYSQL_ROOT_HOST")
    {
        echo "SET @@SESSION.SQL_LOG_BIN=0;"
        echo "DROP USER IF EXISTS 'root'@'127.0.0.1', 'root'@'::1';"
        # mariadb-install-db also creates root@<build hostname>: useless here.
        printf '%s\n' "EXECUTE IMMEDIATE CONCAT('DROP USER IF EXISTS root@\\'', @@hostname, '\\'');"
        echo "ALTER USER 'root'@'localhost' IDENTIFIED BY $root_pw;"
        if [ -n "$MYSQL_ROOT_HOST" ] && [ "$MYSQL_ROOT_HOST" != localhost ]; then
            echo "CREATE USER $(sql_string root)@$root_host IDENTIFIED BY $root_pw;"
            echo "GRANT ALL ON *.* TO 'root'@$root_host WITH GRANT OPTION;"
        fi
        if [ -n "$MYSQL_DATABASE" ]; then
            echo "CREATE DATABASE IF NOT EXISTS $(sql_ident "$MYSQL_DATABASE");"
        fi
        if [ -n "$MYSQL_USER" ] && [ -n "$MYSQL_PASSWORD" ]; then
            echo "CREATE USER $(sql_string "$MYSQL_USER")@'%' IDENTIFIED BY $(sql_string "$MYSQL_PASSWORD");"
            if [ -n "$MYSQL_DATABASE" ]; then
                echo "GRANT ALL ON $(sql_ident "$MYSQL_DATABASE").* TO $(sql_string "$MYSQL_USER")@'%';"
            fi
        fi
        echo "FLUSH PRIVILEGES;"
    } | sql --database=mysql
    log "Root password set; database ${MYSQL_DATABASE:-(none)} and user ${MYSQL_USER:-(none)} created"

    # From here on the client needs the root password: the defaults file (mode 0600).
    (umask 077; printf '[client]\nuser=root\npassword="%s"\nsocket=%s\n' \
        "$(printf '%s' "$MYSQL_ROOT_PASSWORD" | sed 's/\\/\\\\/g; s/"/\\"/g')" "$SOCKET" > "$CLIENT_CNF")

    db_args=()
    [ -n "$MYSQL_DATABASE" ] && db_args=(--database="$MYSQL_DATABASE")
    shopt -s nullglob
    for f in /docker-entrypoint-initdb.d/*; do
        case "$f" in
            *.sh)
                if [ -x "$f" ]; then log "running $f"; "$f"
                else log "sourcing $f"; # shellcheck disable=SC1090
                    . "$f"; fi ;;
            *.sql)     log "running $f"; sql "${db_args[@]}" < "$f" ;;
            *.sql.gz)  log "running $f"; gunzip -c "$f" | sql "${db_args[@]}" ;;
            *.sql.xz)  log "running $f"; xzcat "$f" | sql "${db_args[@]}" ;;
            *.sql.zst) log "running $f"; zstd -dc "$f" | sql "${db_args[@]}" ;;
            *)         log "ignoring $f" ;;
        esac
    done
    shopt -u nullglob

    log "Stopping the temporary server"
    mariadb-admin --defaults-extra-file="$CLIENT_CNF" --protocol=socket shutdown
    wait "$TMP_SERVER_PID" || true
    TMP_SERVER_PID=
    cleanup_init
    trap - EXIT
    unset MYSQL_ROOT_PASSWORD MYSQL_PASSWORD root_pw
    log "MariaDB init process done. Ready for start up."
fi

log "Starting $1 (bind-address *, port 3306)"
exec "$@" "${user_args[@]}"
