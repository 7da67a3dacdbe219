#!/bin/sh
# A throwaway nats-server with JetStream on a loopback port, for the specs
# and CI (the JetStream relay and source).
#
#   tools/nats.sh start DIR   starts `nats-server -js -a 127.0.0.1 -p PORT
#                             -sd DIR/js` on a free port (random, below the
#                             kernel's ephemeral range; another one is tried
#                             when the port is taken), PID in DIR/pid, log in
#                             DIR/log; waits until the log says "Server is
#                             ready" (JetStream is up by then), then prints
#                               EVENTROCKS_NATS_URL=nats://127.0.0.1:PORT
#                             (also kept in DIR/url).  DIR is created if
#                             missing; a store left in DIR/js is reused.
#   tools/nats.sh stop DIR    SIGTERM, waits for the exit (SIGKILL after
#                             5 s); exits 0 when the server was not running.
#
# Use it as
#
#   dir=$(mktemp -d)
#   export "$(tools/nats.sh start "$dir")"
#   busted --lua=lua5.4 ...
#   tools/nats.sh stop "$dir"; rm -rf "$dir"
#
# The server is an orphan once this script exits, and PID 1 in some
# containers does not reap orphans: a server that has exited can stay a
# zombie, which `kill -0` still finds.  So "running" here means: /proc/PID
# exists, is not a zombie, and its command line is nats-server with DIR/js
# (which also keeps a stale DIR/pid from naming someone else's process).
set -eu

die() { echo "nats.sh: $*" >&2; exit 1; }

# alive PID: the process exists and is not a zombie
alive() {
  if [ -d /proc/self ]; then
    [ -r "/proc/$1/stat" ] || return 1
    st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -c1) || return 1
    case $st in '' | Z | X | x) return 1 ;; esac
    return 0
  fi
  kill -0 "$1" 2>/dev/null
}

# ours PID DIR: a running nats-server on DIR/js
ours() {
  alive "$1" || return 1
  [ -d /proc/self ] || return 0
  cmd=$(tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null) || return 1
  case $cmd in *nats-server*" $2/js"*) return 0 ;; esac
  return 1
}

# the bytes of $1 from offset $2 (0-based)
log_from() { tail -c +"$(($2 + 1))" "$1" 2>/dev/null || true; }

start() {
  command -v nats-server >/dev/null 2>&1 || die "nats-server is not installed (tools/deps.sh)"
  mkdir -p "$1"
  dir=$(cd "$1" && pwd)
  if [ -f "$dir/pid" ] && ours "$(cat "$dir/pid")" "$dir"; then
    die "a server already runs on $dir (pid $(cat "$dir/pid"))"
  fi
  lo=20000 hi=60000
  if [ -r /proc/sys/net/ipv4/ip_local_port_range ]; then
    elo=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range | tr -dc 0-9)
    [ -n "$elo" ] && [ $((elo - 1 - lo)) -ge 1000 ] && hi=$((elo - 1))
  fi
  tries=0
  while [ $tries -lt 30 ]; do
    tries=$((tries + 1))
    r=$(od -An -N4 -tu4 /dev/urandom | tr -dc 0-9)
    port=$((lo + r % (hi - lo + 1)))
    from=0
    [ -f "$dir/log" ] && from=$(wc -c <"$dir/log")
    # no sanitizer runtime in the Go server, should the caller preload one
    env -u LD_PRELOAD nats-server -js -a 127.0.0.1 -p "$port" -sd "$dir/js" \
      >>"$dir/log" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$dir/pid"
    n=0
    while :; do
      if log_from "$dir/log" "$from" | grep -q "^\[$pid\] .*Server is ready"; then
        echo "nats://127.0.0.1:$port" >"$dir/url"
        echo "EVENTROCKS_NATS_URL=nats://127.0.0.1:$port"
        return 0
      fi
      if ! alive "$pid"; then
        rm -f "$dir/pid"
        if log_from "$dir/log" "$from" | grep -q "address already in use"; then
          continue 2
        fi
        log_from "$dir/log" "$from" | tail -n 20 >&2
        die "nats-server ended before it was ready (log: $dir/log)"
      fi
      n=$((n + 1))
      if [ $n -ge 600 ]; then
        kill -KILL "$pid" 2>/dev/null || true
        rm -f "$dir/pid"
        log_from "$dir/log" "$from" | tail -n 20 >&2
        die "nats-server not ready after 30 s (log: $dir/log)"
      fi
      sleep 0.05
    done
  done
  die "no free port after 30 tries"
}

stop() {
  [ -d "$1" ] || return 0
  dir=$(cd "$1" && pwd)
  [ -f "$dir/pid" ] || return 0
  pid=$(cat "$dir/pid")
  if ours "$pid" "$dir"; then
    kill -TERM "$pid" 2>/dev/null || true
    n=0
    while alive "$pid"; do
      n=$((n + 1))
      [ $n -eq 100 ] && { kill -KILL "$pid" 2>/dev/null || true; }
      [ $n -ge 300 ] && die "nats-server $pid survives SIGKILL"
      sleep 0.05
    done
  fi
  rm -f "$dir/pid" "$dir/url"
}

case ${1:-} in
start | stop)
  [ $# -eq 2 ] || die "usage: tools/nats.sh start|stop DIR"
  "$1" "$2"
  ;;
*) die "usage: tools/nats.sh start|stop DIR" ;;
esac
