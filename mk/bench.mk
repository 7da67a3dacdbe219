# Benchmarks (bench/README.md): every contender side by side in one run.
#   make bench         the full run, medians of 3; writes bench/results.md
#                      and its chart, bench/results.svg (bench/chart.lua)
#   make bench-quick   reduced sizes, one run each, under a minute; writes
#                      build/bench-quick.md and build/bench-quick.svg (CI
#                      runs it to keep the harness working; it asserts
#                      nothing about speed)
# The JetStream rows need nats-server: bench/run.lua starts one
# with tools/nats.sh in $(B)/bench-tmp/nats (unless EVENTROCKS_NATS_URL is
# set) and stops it after; the trap below stops it too when the run is
# interrupted or dies.
.PHONY: bench bench-quick

BENCH_CFLAGS = -std=c99 -Wall -Wextra -D_GNU_SOURCE $(WERROR) -O2 -g -Icore/include

$(B)/bench/raw_rocksdb: bench/raw_rocksdb.c bench/bench_util.h
	@mkdir -p $(dir $@)
	$(CC) $(BENCH_CFLAGS) -o $@ $< -lrocksdb

$(B)/bench/core_bench: bench/core_bench.c bench/bench_util.h $(B)/libeventrocks.a
	@mkdir -p $(dir $@)
	$(CC) $(BENCH_CFLAGS) -o $@ $< $(B)/libeventrocks.a $(LIBS)

# The raw JetStream publish baseline of the relay (needs a nats-server: see
# the top of bench/nats_pub.c and tools/nats.sh).
$(B)/bench/nats_pub: bench/nats_pub.c bench/bench_util.h
	@mkdir -p $(dir $@)
	$(CC) $(BENCH_CFLAGS) -o $@ $< -lnats

BENCH_DEPS = all $(B)/bench/raw_rocksdb $(B)/bench/raw_layout $(B)/bench/core_bench $(B)/bench/nats_pub
BENCH_ENV = LUA_PATH='lua/?.lua;lua/?/init.lua;bench/?.lua;;' LUA_CPATH='$(B)/?.so;;' \
  BENCH_BIN=$(B)/bench BENCH_TMP=$(B)/bench-tmp LUA=$(LUA)

BENCH_NATS_STOP = trap 'tools/nats.sh stop $(B)/bench-tmp/nats >/dev/null 2>&1' EXIT; trap 'exit 130' INT TERM;

bench: $(BENCH_DEPS)
	$(BENCH_NATS_STOP) $(BENCH_ENV) $(LUA) bench/run.lua

bench-quick: $(BENCH_DEPS)
	$(BENCH_NATS_STOP) $(BENCH_ENV) BENCH_OUT=$(B)/bench-quick.md $(LUA) bench/run.lua quick

$(B)/bench/raw_layout: bench/raw_rocksdb.c bench/bench_util.h
	@mkdir -p $(dir $@)
	$(CC) $(BENCH_CFLAGS) -DSAME_KEYS -o $@ $< -lrocksdb
