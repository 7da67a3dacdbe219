#!/bin/sh
# Screenshots of the web explorer's main pages into doc/ui-*.png: the
# examples' store (products.lua and order_flow.lua) served by
# `eventrocks ui --aggregates examples/ui_aggregates.lua`, shot by headless
# Chromium (tools/deps.sh browser).  Run from the checkout: make ui-screenshots
set -eu
B=${B:-build}
tmp=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$tmp"' EXIT
export LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH="$B/?.so;;"
lua5.4 examples/products.lua "$tmp/shop" >/dev/null
lua5.4 examples/order_flow.lua "$tmp/shop" >/dev/null
lua5.4 bin/eventrocks ui --store "$tmp/shop" --port 0 --aggregates examples/ui_aggregates.lua >"$tmp/out" 2>&1 &
pid=$!
url=
for _ in $(seq 100); do
  url=$(grep -o 'http://[^ ]*' "$tmp/out" || true)
  [ -n "$url" ] && break
  sleep 0.05
done
[ -n "$url" ] || { cat "$tmp/out"; exit 1; }
shot() { # NAME PATH
  chromium --headless --no-sandbox --disable-gpu --no-first-run --hide-scrollbars \
    --window-size=1100,640 --virtual-time-budget=2000 --screenshot="doc/ui-$1.png" "$url$2" 2>/dev/null
  echo "doc/ui-$1.png"
}
shot streams streams
shot stream "stream?id=order-1001"
shot aggregate "aggregate?name=order&id=1001&v=2"
shot stats stats
