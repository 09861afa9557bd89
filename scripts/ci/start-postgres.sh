#!/usr/bin/env bash
# Start (idempotently) a throwaway PostgreSQL server for hearth-ledger's tests.
#
# Usage:
#   eval "$(scripts/ci/start-postgres.sh)"        # exports HEARTH_TEST_PG_URL
#   scripts/ci/start-postgres.sh stop             # stop the server again
#
# stdout carries exactly one line, `export HEARTH_TEST_PG_URL=...`; every
# progress message goes to stderr, so the `eval` form is safe.
#
# What it does, on a fresh Debian machine with apt access (as root) or on a
# machine that already has PostgreSQL's server binaries (as any user):
#   1. finds the newest /usr/lib/postgresql/<ver>/bin (or pg_config --bindir);
#      if there is none and we are root, `apt-get install -y postgresql`;
#   2. creates a cluster with initdb in $HEARTH_PG_DIR (default
#      /tmp/hearth-pg) unless one is already there; as root the cluster is
#      owned by the `postgres` system user, because the server refuses to run
#      as root;
#   3. starts it, unless it is already running, listening on 127.0.0.1 only,
#      port $HEARTH_PG_PORT (default 54329), socket in the cluster directory;
#      authentication is `trust`: this is a loopback-only test server holding
#      nothing but test data;
#   4. creates the database `hearth_test` if it is missing.
# Running it twice is harmless: each step checks before it acts.
set -euo pipefail

PORT="${HEARTH_PG_PORT:-54329}"
BASE="${HEARTH_PG_DIR:-/tmp/hearth-pg}"
DATA="$BASE/data"
LOG="$BASE/server.log"
DB="hearth_test"
SUPERUSER="postgres"

log() { echo "start-postgres: $*" >&2; }

find_bindir() {
    local d
    if command -v pg_config >/dev/null 2>&1; then
        d="$(pg_config --bindir 2>/dev/null || true)"
        if [ -n "$d" ] && [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then
            echo "$d"
            return 0
        fi
    fi
    # Debian puts the server binaries outside $PATH, one directory per major
    # version; take the newest.
    d="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
    if [ -n "$d" ] && [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then
        echo "$d"
        return 0
    fi
    return 1
}

BIN="$(find_bindir || true)"
if [ -z "$BIN" ]; then
    if [ "$(id -u)" -ne 0 ]; then
        log "no PostgreSQL server binaries found and not root: install the 'postgresql' package first"
        exit 1
    fi
    log "installing postgresql with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq postgresql >&2
    BIN="$(find_bindir || true)"
    if [ -z "$BIN" ]; then
        log "postgresql installed but initdb/pg_ctl not found"
        exit 1
    fi
fi
log "server binaries: $BIN"

# Who runs the server: never root (postgres refuses), so as root use the
# `postgres` system account that the Debian package creates.
if [ "$(id -u)" -eq 0 ]; then
    if ! id "$SUPERUSER" >/dev/null 2>&1; then
        useradd --system --home-dir "$BASE" --shell /usr/sbin/nologin "$SUPERUSER"
    fi
    as_owner() { runuser -u "$SUPERUSER" -- "$@"; }
    mkdir -p "$BASE"
    chown "$SUPERUSER" "$BASE"
    chmod 700 "$BASE"
else
    as_owner() { "$@"; }
    mkdir -p "$BASE"
    chmod 700 "$BASE"
fi
# The server user may not be able to read the caller's working directory.
cd "$BASE"

if [ "${1:-}" = "stop" ]; then
    if [ -f "$DATA/PG_VERSION" ] && as_owner "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
        as_owner "$BIN/pg_ctl" -D "$DATA" -m fast -w stop >&2
    else
        log "not running"
    fi
    exit 0
fi

if [ ! -f "$DATA/PG_VERSION" ]; then
    log "initdb in $DATA"
    as_owner "$BIN/initdb" -D "$DATA" -U "$SUPERUSER" --auth=trust -E UTF8 --no-locale >&2
fi

if as_owner "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
    log "already running"
else
    log "starting on 127.0.0.1:$PORT (log: $LOG)"
    as_owner "$BIN/pg_ctl" -D "$DATA" -l "$LOG" -w -t 60 \
        -o "-p $PORT -c listen_addresses=127.0.0.1 -k $BASE" start >&2 || {
        log "server did not start; last lines of $LOG:"
        tail -n 20 "$LOG" >&2 || true
        exit 1
    }
fi

PSQL=("$BIN/psql" -X -q -h 127.0.0.1 -p "$PORT" -U "$SUPERUSER" -d postgres -v ON_ERROR_STOP=1)
if [ "$("${PSQL[@]}" -tAc "SELECT 1 FROM pg_database WHERE datname = '$DB'")" != "1" ]; then
    log "creating database $DB"
    "${PSQL[@]}" -c "CREATE DATABASE $DB" >&2
fi

echo "export HEARTH_TEST_PG_URL=postgresql://$SUPERUSER@127.0.0.1:$PORT/$DB"
