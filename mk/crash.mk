# make test-crash: the crash harness (spec/crash/run.lua).  A writer is
# killed with SIGKILL at random moments, ROUNDS times with sync = true and
# ROUNDS times with sync = false, and the store is verified after each kill.
# ROUNDS=10 for a short run; SEED=n repeats a run; MODES=sync or nosync for
# one mode only.
ROUNDS ?= 100
MODES ?= both
SEED ?=

.PHONY: test-crash
test-crash: $(B)/eventrocks/core.so
	LUA_PATH='lua/?.lua;lua/?/init.lua;spec/?.lua;;' LUA_CPATH='$(B)/?.so;;' \
	  $(LUA) spec/crash/run.lua $(ROUNDS) $(MODES) $(SEED)
