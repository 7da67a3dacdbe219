# Benchmarks (bench/README.md): every contender side by side in one run.
#   make bench         the full run, medians of 3; writes bench/results.md
#   make bench-quick   reduced sizes, one run each, under a minute; writes
#                      build/bench-quick.md (CI runs it to keep the harness
#                      working; it asserts nothing about speed)
.PHONY: bench bench-quick

BENCH_CFLAGS = -std=c99 -Wall -Wextra -D_GNU_SOURCE $(WERROR) -O2 -g -Icore/include

$(B)/bench/raw_rocksdb: bench/raw_rocksdb.c bench/bench_util.h
	@mkdir -p $(dir $@)
	$(CC) $(BENCH_CFLAGS) -o $@ $< -lrocksdb

$(B)/bench/core_bench: bench/core_bench.c bench/bench_util.h $(B)/libeventrocks.a
	@mkdir -p $(dir $@)
	$(CC) $(BENCH_CFLAGS) -o $@ $< $(B)/libeventrocks.a $(LIBS)

# The raw JetStream publish baseline of issue 8 (needs a nats-server: see
# the top of bench/nats_pub.c and tools/nats.sh).
$(B)/bench/nats_pub: bench/nats_pub.c bench/bench_util.h
	@mkdir -p $(dir $@)
	$(CC) $(BENCH_CFLAGS) -o $@ $< -lnats

BENCH_DEPS = all $(B)/bench/raw_rocksdb $(B)/bench/raw_layout $(B)/bench/core_bench
BENCH_ENV = LUA_PATH='lua/?.lua;lua/?/init.lua;bench/?.lua;;' LUA_CPATH='$(B)/?.so;;' \
  BENCH_BIN=$(B)/bench BENCH_TMP=$(B)/bench-tmp LUA=$(LUA)

bench: $(BENCH_DEPS)
	$(BENCH_ENV) $(LUA) bench/run.lua

bench-quick: $(BENCH_DEPS)
	$(BENCH_ENV) BENCH_OUT=$(B)/bench-quick.md $(LUA) bench/run.lua quick

$(B)/bench/raw_layout: bench/raw_rocksdb.c bench/bench_util.h
	@mkdir -p $(dir $@)
	$(CC) $(BENCH_CFLAGS) -DSAME_KEYS -o $@ $< -lrocksdb
