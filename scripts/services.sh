#!/usr/bin/env bash
# Throw-away PostgreSQL 15 + PostGIS and Redis for the test suite, on free
# loopback ports, with all their state in one temporary directory.
#
# Two ways to use it:
#   * sourced (what scripts/test.sh does):
#       source scripts/services.sh
#       sigueme_services_start   # exports SIGUEME_TEST_POSTGRES_DSN, SIGUEME_TEST_REDIS_URL,
#                                # SIGUEME_SERVICES_DIR
#       sigueme_services_stop    # stops both servers and removes the directory
#   * run directly, for a long-lived local session:
#       eval "$(scripts/services.sh start)"
#       ...                      # run tests, psql "$SIGUEME_TEST_POSTGRES_DSN", ...
#       scripts/services.sh stop # uses $SIGUEME_SERVICES_DIR (or pass the directory)
#
# Settings (environment): SIGUEME_SERVICES_TIMEOUT (seconds to wait for each
# server, default 60), SIGUEME_PG_BINDIR (default /usr/lib/postgresql/15/bin).
# Messages go to stderr; in "start" mode stdout carries only the export lines.

set -euo pipefail

SIGUEME_PG_BINDIR="${SIGUEME_PG_BINDIR:-/usr/lib/postgresql/15/bin}"
SIGUEME_SERVICES_TIMEOUT="${SIGUEME_SERVICES_TIMEOUT:-60}"
_SIGUEME_MARKER=".sigueme-services"

_svc_log() { printf 'services: %s\n' "$*" >&2; }

_svc_die() {
    _svc_log "ERROR: $*"
    return 1
}

# Print the last lines of a server log, to explain a failure.
_svc_log_tail() {
    local file="$1"
    if [[ -f "$file" ]]; then
        printf -- '----- last lines of %s -----\n' "$file" >&2
        tail -n 40 "$file" >&2 || true
        printf -- '----- end of %s -----\n' "$file" >&2
    else
        _svc_log "(no log file at $file)"
    fi
}

# Run a PostgreSQL server binary as the data directory's owner: initdb and the
# server refuse to run as root, so as root they run as the "postgres" user.
_svc_pg() {
    if [[ $(id -u) -eq 0 ]]; then
        (cd "$SIGUEME_SERVICES_DIR" && runuser -u postgres -- "$@")
    else
        "$@"
    fi
}

# Two distinct free TCP ports on 127.0.0.1 (bind port 0, read, close).
_svc_free_ports() {
    python3 - <<'PY'
import socket

socks = []
for _ in range(2):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks:
    s.close()
PY
}

_svc_check_tools() {
    local missing=()
    local tool
    for tool in "$SIGUEME_PG_BINDIR/initdb" "$SIGUEME_PG_BINDIR/pg_ctl" \
        "$SIGUEME_PG_BINDIR/pg_isready" "$SIGUEME_PG_BINDIR/psql"; do
        [[ -x "$tool" ]] || missing+=("$tool")
    done
    command -v redis-server >/dev/null || missing+=("redis-server")
    command -v redis-cli >/dev/null || missing+=("redis-cli")
    command -v python3 >/dev/null || missing+=("python3")
    if ((${#missing[@]})); then
        _svc_die "missing: ${missing[*]} — run scripts/setup.sh (as root it installs postgresql, postgresql-15-postgis-3 and redis-server)"
        return 1
    fi
    if [[ $(id -u) -eq 0 ]] && ! id postgres >/dev/null 2>&1; then
        _svc_die "running as root but there is no 'postgres' system user to run PostgreSQL as (install the Debian package postgresql: scripts/setup.sh)"
        return 1
    fi
}

_svc_start_postgres() {
    local dir="$SIGUEME_SERVICES_DIR/pg"
    local data="$dir/data" sock="$dir/socket" log="$dir/postgres.log"
    local bin="$SIGUEME_PG_BINDIR"
    mkdir -p "$dir" "$sock"
    if [[ $(id -u) -eq 0 ]]; then
        chown -R postgres: "$dir"
    fi

    _svc_log "PostgreSQL: initdb in $data"
    if ! _svc_pg "$bin/initdb" -D "$data" -U postgres --auth=trust --no-locale -E UTF8 \
        --no-sync >"$dir/initdb.log" 2>&1; then
        _svc_log_tail "$dir/initdb.log"
        _svc_die "PostgreSQL initdb failed"
        return 1
    fi

    # Appended settings override initdb's defaults (the last one wins).
    cat >>"$data/postgresql.conf" <<CONF

# --- throw-away test server (scripts/services.sh) ---
listen_addresses = '127.0.0.1'
port = $SIGUEME_PG_PORT
unix_socket_directories = '$sock'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
CONF
    cat >"$data/pg_hba.conf" <<'HBA'
# throw-away test server: trust on the unix socket and on loopback only
local   all   all                  trust
host    all   all   127.0.0.1/32   trust
HBA

    _svc_log "PostgreSQL: starting on 127.0.0.1:$SIGUEME_PG_PORT"
    if ! _svc_pg "$bin/pg_ctl" -D "$data" -l "$log" -w -t "$SIGUEME_SERVICES_TIMEOUT" start \
        >"$dir/pg_ctl.log" 2>&1; then
        cat "$dir/pg_ctl.log" >&2 || true
        _svc_log_tail "$log"
        _svc_die "PostgreSQL did not start"
        return 1
    fi

    local deadline=$((SECONDS + SIGUEME_SERVICES_TIMEOUT))
    until "$bin/pg_isready" -q -h 127.0.0.1 -p "$SIGUEME_PG_PORT" -U postgres -d postgres; do
        if ((SECONDS >= deadline)); then
            _svc_log_tail "$log"
            _svc_die "PostgreSQL did not answer pg_isready on 127.0.0.1:$SIGUEME_PG_PORT within ${SIGUEME_SERVICES_TIMEOUT}s"
            return 1
        fi
        sleep 0.2
    done

    local psql=("$bin/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$SIGUEME_PG_PORT" -U postgres)
    if ! "${psql[@]}" -d postgres -c "CREATE DATABASE sigueme_test" >"$dir/psql.log" 2>&1 ||
        ! "${psql[@]}" -d sigueme_test -c "CREATE EXTENSION postgis" >>"$dir/psql.log" 2>&1; then
        cat "$dir/psql.log" >&2 || true
        _svc_log_tail "$log"
        _svc_die "could not create database sigueme_test with the postgis extension (is postgresql-15-postgis-3 installed? scripts/setup.sh)"
        return 1
    fi
    _svc_log "PostgreSQL: ready, database sigueme_test with PostGIS"
}

_svc_start_redis() {
    local dir="$SIGUEME_SERVICES_DIR/redis"
    local log="$dir/redis.log"
    mkdir -p "$dir"
    _svc_log "Redis: starting on 127.0.0.1:$SIGUEME_REDIS_PORT"
    if ! redis-server --port "$SIGUEME_REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
        --daemonize yes --pidfile "$dir/redis.pid" --logfile "$log" --dir "$dir" \
        >"$dir/start.log" 2>&1; then
        cat "$dir/start.log" >&2 || true
        _svc_log_tail "$log"
        _svc_die "redis-server did not start"
        return 1
    fi
    local deadline=$((SECONDS + SIGUEME_SERVICES_TIMEOUT))
    until [[ "$(redis-cli -h 127.0.0.1 -p "$SIGUEME_REDIS_PORT" ping 2>/dev/null || true)" == "PONG" ]]; do
        if ((SECONDS >= deadline)); then
            _svc_log_tail "$log"
            _svc_die "Redis did not answer PING on 127.0.0.1:$SIGUEME_REDIS_PORT within ${SIGUEME_SERVICES_TIMEOUT}s"
            return 1
        fi
        sleep 0.1
    done
    _svc_log "Redis: ready"
}

# Start both servers; export their URLs. SIGUEME_SERVICES_DIR is set before
# anything starts, so sigueme_services_stop can clean up after a partial start.
sigueme_services_start() {
    _svc_check_tools || return 1
    local ports
    ports="$(_svc_free_ports)"
    read -r SIGUEME_PG_PORT SIGUEME_REDIS_PORT <<<"$ports"
    SIGUEME_SERVICES_DIR="$(mktemp -d "${TMPDIR:-/tmp}/sigueme-services.XXXXXX")"
    export SIGUEME_SERVICES_DIR SIGUEME_PG_PORT SIGUEME_REDIS_PORT
    chmod 755 "$SIGUEME_SERVICES_DIR"  # the postgres user must reach pg/ inside it
    printf 'SIGUEME_PG_PORT=%s\nSIGUEME_REDIS_PORT=%s\n' "$SIGUEME_PG_PORT" "$SIGUEME_REDIS_PORT" \
        >"$SIGUEME_SERVICES_DIR/$_SIGUEME_MARKER"
    _svc_log "state directory $SIGUEME_SERVICES_DIR"

    _svc_start_postgres || return 1
    _svc_start_redis || return 1

    export SIGUEME_TEST_POSTGRES_DSN="postgresql://postgres@127.0.0.1:$SIGUEME_PG_PORT/sigueme_test"
    export SIGUEME_TEST_REDIS_URL="redis://127.0.0.1:$SIGUEME_REDIS_PORT/0"
    _svc_log "SIGUEME_TEST_POSTGRES_DSN=$SIGUEME_TEST_POSTGRES_DSN"
    _svc_log "SIGUEME_TEST_REDIS_URL=$SIGUEME_TEST_REDIS_URL"
}

# Is process $1 running? A zombie is not: where PID 1 reaps late (as in some
# containers) a stopped server lingers as a zombie for a while.
_svc_alive() {
    local pid="$1" state=""
    kill -0 "$pid" 2>/dev/null || return 1
    if [[ -r "/proc/$pid/status" ]]; then
        state="$(sed -n 's/^State:[[:space:]]*//p' "/proc/$pid/status" 2>/dev/null || true)"
        [[ "$state" == Z* || "$state" == X* ]] && return 1
    fi
    return 0
}

# Wait up to $2 seconds for process $1 to be gone.
_svc_wait_gone() {
    local pid="$1" limit="$2" waited=0
    while _svc_alive "$pid"; do
        ((waited >= limit * 10)) && return 1
        sleep 0.1
        waited=$((waited + 1))
    done
    return 0
}

_svc_stop_postgres() {
    local dir="$1/pg"
    local data="$dir/data"
    [[ -f "$data/postmaster.pid" ]] || return 0
    local pid
    pid="$(head -n 1 "$data/postmaster.pid" 2>/dev/null || true)"
    _svc_log "PostgreSQL: stopping"
    SIGUEME_SERVICES_DIR="$1" _svc_pg "$SIGUEME_PG_BINDIR/pg_ctl" -D "$data" -m fast -w -t 30 stop \
        >/dev/null 2>&1 || true
    if [[ -n "$pid" ]] && ! _svc_wait_gone "$pid" 5; then
        _svc_log "PostgreSQL: pg_ctl stop did not finish; sending SIGQUIT, then SIGKILL"
        kill -QUIT "$pid" 2>/dev/null || true
        _svc_wait_gone "$pid" 5 || kill -KILL "$pid" 2>/dev/null || true
        _svc_wait_gone "$pid" 5 || true
    fi
}

_svc_stop_redis() {
    local dir="$1/redis"
    [[ -f "$dir/redis.pid" ]] || return 0
    local pid
    pid="$(cat "$dir/redis.pid" 2>/dev/null || true)"
    [[ -n "$pid" ]] || return 0
    _svc_log "Redis: stopping"
    kill -TERM "$pid" 2>/dev/null || true
    if ! _svc_wait_gone "$pid" 10; then
        _svc_log "Redis: still running; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        _svc_wait_gone "$pid" 5 || true
    fi
}

# Stop both servers and remove the state directory (only one this script made).
# Never fails: it runs from EXIT traps.
sigueme_services_stop() {
    local dir="${1:-${SIGUEME_SERVICES_DIR:-}}"
    [[ -n "$dir" && -d "$dir" ]] || return 0
    if [[ ! -f "$dir/$_SIGUEME_MARKER" ]]; then
        _svc_log "not removing $dir: it has no $_SIGUEME_MARKER marker"
        return 0
    fi
    _svc_stop_redis "$dir" || true
    _svc_stop_postgres "$dir" || true
    rm -rf -- "$dir" || true
    _svc_log "stopped; removed $dir"
    return 0
}

_svc_main() {
    case "${1:-}" in
    start)
        sigueme_services_start || {
            sigueme_services_stop
            exit 1
        }
        printf 'export SIGUEME_SERVICES_DIR=%q\n' "$SIGUEME_SERVICES_DIR"
        printf 'export SIGUEME_TEST_POSTGRES_DSN=%q\n' "$SIGUEME_TEST_POSTGRES_DSN"
        printf 'export SIGUEME_TEST_REDIS_URL=%q\n' "$SIGUEME_TEST_REDIS_URL"
        ;;
    stop)
        if [[ -z "${2:-${SIGUEME_SERVICES_DIR:-}}" ]]; then
            _svc_log "stop: no directory given and SIGUEME_SERVICES_DIR is not set"
            exit 2
        fi
        sigueme_services_stop "${2:-}"
        ;;
    *)
        echo "usage: eval \"\$($0 start)\"   |   $0 stop [DIR]   (DIR defaults to \$SIGUEME_SERVICES_DIR)" >&2
        exit 2
        ;;
    esac
}

# Run main only when executed, not when sourced.
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    _svc_main "$@"
fi
