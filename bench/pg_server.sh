#!/bin/sh
# A throwaway PostgreSQL server for bench/postgres.lua.
#
#   bench/pg_server.sh start [DIR] initdb + start in DIR (created; it must be
#                                  absent or empty, and reachable by the
#                                  postgres user), by default in a new
#                                  temporary directory; prints KEY=VALUE lines
#                                  on stdout:
#                                    PGHOST=<dir>        (the unix socket directory)
#                                    PGPORT=<port>       (also listening on 127.0.0.1:<port>)
#                                    PGUSER=postgres
#                                    PGDATABASE=postgres
#                                    PG_BENCH_DIR=<dir>  (what to give to stop)
#   bench/pg_server.sh stop DIR    pg_ctl stop -m fast, then removes DIR
#
# Use it as
#
#   set -a; eval "$(bench/pg_server.sh start)"; set +a
#   lua5.4 bench/postgres.lua append1 10000 "$(mktemp -d)" 0
#   bench/pg_server.sh stop "$PG_BENCH_DIR"
#
# (PGHOST=127.0.0.1 instead of the socket directory connects over TCP.)
#
# PostgreSQL refuses to run as root: when run as root, initdb and pg_ctl run as
# the `postgres` user, which owns the directory.  The binaries come from
# PG_BIN (default: the newest /usr/lib/postgresql/*/bin, Debian's layout).
#
# Settings: everything is PostgreSQL's default except what a private loopback
# server needs (listen_addresses, port, unix_socket_directories, trust
# authentication for local connections) and the cluster's locale, C with
# UTF8 encoding (--no-locale), so text keys sort by bytes as in eventrocks.
# initdb --no-sync only skips initdb's final fsync of the fresh cluster.
# Durability (synchronous_commit) is set per session by bench/postgres.lua.
set -eu

die() { echo "pg_server.sh: $*" >&2; exit 1; }

if [ -z "${PG_BIN:-}" ]; then
  PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
fi
[ -n "$PG_BIN" ] && [ -x "$PG_BIN/initdb" ] || die "no PostgreSQL binaries (install postgresql or set PG_BIN)"

if [ "$(id -u)" = 0 ]; then
  id postgres >/dev/null 2>&1 || die "running as root and there is no postgres user"
  OWNER=postgres
  as_owner() { runuser -u postgres -- "$@"; }
else
  OWNER=$(id -un)
  as_owner() { "$@"; }
fi

start() {
  if [ -n "${1:-}" ]; then
    mkdir -p "$1"
    [ -z "$(ls -A "$1")" ] || die "$1 is not empty"
    dir=$(cd "$1" && pwd)               # PGHOST must be an absolute path
  else
    dir=$(mktemp -d "${TMPDIR:-/tmp}/eventrocks-pg.XXXXXX")
  fi
  # a unix socket path is at most 107 bytes: $dir/.s.PGSQL.NNNNN
  [ "${#dir}" -le 90 ] || die "$dir is too long a path for the server's socket"
  touch "$dir/.eventrocks-pg"           # marks the directory as ours for stop
  chown "$OWNER" "$dir"
  chmod 711 "$dir"                      # the socket is reachable by any local user
  as_owner test -w "$dir" || { rm -rf "$dir"; die "$OWNER cannot write to $dir"; }
  if ! as_owner "$PG_BIN/initdb" -D "$dir/data" -U postgres --auth=trust \
        --no-locale -E UTF8 --no-sync >"$dir/initdb.log" 2>&1; then
    cat "$dir/initdb.log" >&2
    rm -rf "$dir"
    die "initdb failed"
  fi
  tries=0
  while :; do
    tries=$((tries + 1))
    port=$(shuf -i 20000-60000 -n 1)
    if [ "$tries" -lt 20 ] && ss -ltnH 2>/dev/null | awk '{print $4}' | grep -q ":$port\$"; then
      continue                          # taken already, pick another
    fi
    cat >>"$dir/data/postgresql.conf" <<EOF
# bench/pg_server.sh
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
EOF
    if as_owner "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
          start >/dev/null 2>&1; then
      break
    fi
    if [ "$tries" -ge 20 ]; then
      cat "$dir/server.log" >&2 || true
      rm -rf "$dir"
      die "the server did not start"
    fi
  done
  echo "PGHOST=$dir"
  echo "PGPORT=$port"
  echo "PGUSER=postgres"
  echo "PGDATABASE=postgres"
  echo "PG_BENCH_DIR=$dir"
}

stop() {
  dir=${1:-}
  [ -n "$dir" ] || die "usage: pg_server.sh stop DIR"
  [ -f "$dir/.eventrocks-pg" ] || die "$dir was not made by pg_server.sh start"
  if [ -f "$dir/data/postmaster.pid" ]; then
    as_owner "$PG_BIN/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
  fi
  rm -rf "$dir"
}

case "${1:-}" in
  start) start "${2:-}" ;;
  stop) stop "${2:-}" ;;
  *) echo "usage: pg_server.sh start [DIR] | stop DIR" >&2; exit 2 ;;
esac
