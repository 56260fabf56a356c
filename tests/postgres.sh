#!/usr/bin/env bash
# A throwaway PostgreSQL server for the tests, from Debian's packages:
#
#   tests/postgres.sh start        -> prints the server's folder; its admin
#                                     URL is in <folder>/url
#   tests/postgres.sh stop FOLDER  -> stops it and removes the folder
#
# It listens on 127.0.0.1 only, on a free port, with its socket and data in
# a temporary folder, and runs as its own user (`ironclaw-pg`, made if
# missing) when started as root: never as root itself. Password login
# (scram) with a random password; fsync off (throwaway data).
set -euo pipefail

PG_USER=ironclaw-pg
DB_ROLE=ironclaw

bin_dir() {
    local d
    for d in /usr/lib/postgresql/*/bin; do
        [ -x "$d/initdb" ] && { echo "$d"; return; }
    done
    echo "tests/postgres.sh: PostgreSQL is not installed (make test-deps installs it)" >&2
    exit 1
}

as_owner() { # command...
    if [ "$(id -u)" = 0 ]; then
        runuser -u "$PG_USER" -- "$@"
    else
        "$@"
    fi
}

start() {
    local bin dir port password
    bin="$(bin_dir)"
    if [ "$(id -u)" = 0 ] && ! id "$PG_USER" >/dev/null 2>&1; then
        useradd --system --no-create-home --shell /usr/sbin/nologin "$PG_USER"
    fi
    dir="$(mktemp -d /tmp/ironclaw-pg.XXXXXX)"
    chmod 0700 "$dir"
    [ "$(id -u)" = 0 ] && chown "$PG_USER" "$dir"
    port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    password="$(head -c 18 /dev/urandom | base64 | tr -d '/+=')"
    printf '%s\n' "$password" > "$dir/pwfile"
    [ "$(id -u)" = 0 ] && chown "$PG_USER" "$dir/pwfile"
    as_owner "$bin/initdb" -D "$dir/data" -U "$DB_ROLE" --pwfile="$dir/pwfile" \
        --auth-local=scram-sha-256 --auth-host=scram-sha-256 -E UTF8 --no-instructions >"$dir/initdb.log" 2>&1 \
        || { cat "$dir/initdb.log" >&2; exit 1; }
    rm -f "$dir/pwfile"
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$dir -c max_connections=300 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
        start >/dev/null || { cat "$dir/server.log" >&2; exit 1; }
    printf 'postgres://%s:%s@127.0.0.1:%s/postgres\n' "$DB_ROLE" "$password" "$port" > "$dir/url"
    chmod 0600 "$dir/url"
    echo "$dir"
}

stop() {
    local dir="${1:?usage: tests/postgres.sh stop FOLDER}" bin
    bin="$(bin_dir)"
    case "$dir" in /tmp/ironclaw-pg.*) ;; *) echo "not a test server folder: $dir" >&2; exit 1 ;; esac
    if [ -d "$dir/data" ]; then
        as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$dir"
}

case "${1:-}" in
    start) start ;;
    stop) stop "${2:-}" ;;
    *) echo "usage: tests/postgres.sh start | stop FOLDER" >&2; exit 2 ;;
esac
