#!/bin/sh
# Install the Debian packages eventrocks needs to build, test and run.
# Installs only what is missing; uses sudo when not run as root.
#
#   tools/deps.sh              build, test and run
#   tools/deps.sh bench fuzz   also what `make bench` / `make fuzz` need
set -eu
PKGS="make gcc libc6-dev pkg-config lua5.4 liblua5.4-dev librocksdb-dev
libmsgpuck-dev libxxhash-dev libcmocka-dev lua-busted luarocks valgrind jq python3
lua-system lua-filesystem lua-argparse lua-dkjson lua-readline lua-luv nats-server libnats-dev openssl
tmux"
for group in "$@"; do
  case $group in
  bench) PKGS="$PKGS lua-sql-sqlite3 lua-sql-postgres lua-cjson postgresql" ;;
  fuzz) PKGS="$PKGS clang libclang-rt-14-dev" ;;
  *) echo "tools/deps.sh: unknown group '$group' (bench, fuzz)" >&2; exit 2 ;;
  esac
done
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
    missing="$missing $p"
done
[ -z "$missing" ] && exit 0
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "installing:$missing" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
