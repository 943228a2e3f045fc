#!/bin/bash
# First start (PGDATA has no PG_VERSION): initdb with the password from the environment,
# scram-sha-256 for network clients, apply the schema, then move the finished cluster into
# place. Every start: exec postgres listening on all container interfaces.
set -euo pipefail

: "${PGDATA:?PGDATA must be set}"
: "${POSTGRES_USER:=phoenix}"
: "${POSTGRES_DB:=phoenix}"
: "${PHOENIX_DB_SOCKET_DIR:=/tmp}"
: "${PHOENIX_DB_SCHEMA:=/etc/phoenix/db/schema.sql}"

log() { echo "phoenix-db: $*" >&2; }

if [ "$(id -u)" = 0 ]; then
    log "refusing to run as root; run as uid 999"
    exit 1
fi

init_cluster() {
    if [ -z "${POSTGRES_PASSWORD:-}" ]; then
        log "POSTGRES_PASSWORD is empty; set it in the env file"
        exit 1
    fi
    local staging="${PGDATA}.init"
    rm -rf "$staging"
    log "initialising a new cluster for user '$POSTGRES_USER', database '$POSTGRES_DB'"
    initdb --pgdata="$staging" --username="$POSTGRES_USER" --encoding=UTF8 --locale=C.UTF-8 \
        --auth-local=trust --auth-host=scram-sha-256 \
        --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") >/dev/null
    # Local socket: trust (only reachable inside this container). Network: password (scram).
    cat > "$staging/pg_hba.conf" <<HBA
local   all   all                 trust
host    all   all   0.0.0.0/0     scram-sha-256
host    all   all   ::/0          scram-sha-256
HBA
    # Temporary server without TCP: nobody outside can connect before the schema is in.
    pg_ctl -D "$staging" -w -t 60 -o "-c listen_addresses='' -c unix_socket_directories=$PHOENIX_DB_SOCKET_DIR" start >/dev/null
    local psql=(psql -v ON_ERROR_STOP=1 --no-psqlrc -q -h "$PHOENIX_DB_SOCKET_DIR" -U "$POSTGRES_USER")
    if [ "$POSTGRES_DB" != postgres ]; then
        "${psql[@]}" -d postgres -v db="$POSTGRES_DB" <<<'CREATE DATABASE :"db";'
    fi
    if [ -f "$PHOENIX_DB_SCHEMA" ]; then
        log "applying $PHOENIX_DB_SCHEMA"
        "${psql[@]}" -d "$POSTGRES_DB" -1 -f "$PHOENIX_DB_SCHEMA"
    else
        log "no schema at $PHOENIX_DB_SCHEMA; starting with an empty database"
    fi
    pg_ctl -D "$staging" -w -t 60 -m fast stop >/dev/null
    mv "$staging" "$PGDATA"
    log "initialisation complete"
}

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    if [ -e "$PGDATA" ] && [ -n "$(ls -A "$PGDATA" 2>/dev/null)" ]; then
        log "$PGDATA is not empty but has no PG_VERSION; refusing to touch it"
        exit 1
    fi
    rmdir "$PGDATA" 2>/dev/null || true
    init_cluster
fi

exec postgres -D "$PGDATA" \
    -c listen_addresses='*' \
    -c unix_socket_directories="$PHOENIX_DB_SOCKET_DIR" \
    -c password_encryption=scram-sha-256 \
    -c log_line_prefix='%m [%p] %q%u@%d ' \
    "$@"
