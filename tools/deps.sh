#!/bin/sh
# Install the Debian packages eventrocks needs to build, test and run.
# Installs only what is missing; uses sudo when not run as root.
#
#   tools/deps.sh              everything to build, test and run the three rocks
#   tools/deps.sh base         only what the eventrocks rock needs to build and run
#   tools/deps.sh jetstream    that and libnats-dev, for the eventrocks-jetstream rock
#   tools/deps.sh ui           that and libmicrohttpd-dev, for the eventrocks-ui rock
#   tools/deps.sh browser      also headless Chromium, for the web explorer's browser spec
#   tools/deps.sh bench fuzz   also what `make bench` / `make fuzz` need
set -eu
# the eventrocks rock and its command (lua-system: clock and sleep; luv and
# LuaFileSystem: eventrocks.sys, and Ctrl-C at the REPL's prompt)
BASE="make gcc libc6-dev pkg-config lua5.4 liblua5.4-dev librocksdb-dev libmsgpuck-dev uthash-dev
libxxhash-dev libsodium-dev luarocks lua-system lua-filesystem lua-argparse lua-dkjson lua-readline lua-luv"
# the eventrocks-jetstream rock
JETSTREAM="libnats-dev"
# the eventrocks-ui rock (the web explorer's HTTP server)
UI="libmicrohttpd-dev"
# the tests (C tests, specs, valgrind, the JetStream specs' nats-server)
TEST="libcmocka-dev lua-busted valgrind jq python3 nats-server openssl tmux curl"
# a rock group alone is that rock's packages only
case " $* " in
*" base "* | *" jetstream "* | *" ui "*) PKGS=$BASE ;;
*) PKGS="$BASE $JETSTREAM $UI $TEST" ;;
esac
for group in "$@"; do
  case $group in
  base) ;;
  jetstream) PKGS="$PKGS $JETSTREAM" ;;
  ui) PKGS="$PKGS $UI" ;;
  browser) PKGS="$PKGS chromium chromium-driver" ;;
  bench) PKGS="$PKGS lua-sql-sqlite3 lua-sql-postgres lua-cjson postgresql" ;;
  fuzz) PKGS="$PKGS clang libclang-rt-14-dev" ;;
  *) echo "tools/deps.sh: unknown group '$group' (base, jetstream, ui, browser, bench, fuzz)" >&2; exit 2 ;;
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
