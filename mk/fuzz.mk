# mk/fuzz.mk -- libFuzzer targets (fuzz/), included by the Makefile.
#
#   make fuzz              build every target into build-fuzz/ and run each
#                          for FUZZ_TIME seconds (default 60); fails when one
#                          finds a crash
#   make fuzz-build        only build them
#   make fuzz-seeds        regenerate the seed files of fuzz/corpus/ (they are
#                          committed; a run's own corpus stays in build-fuzz/)
#   FUZZ_TARGETS="ops"     run only some targets
#
# Needs clang and its libFuzzer runtime: `tools/deps.sh fuzz`.  The core and
# the value codec are compiled with clang, -fsanitize=fuzzer-no-link (coverage
# for the fuzzer), address and undefined; the Lua library and RocksDB are the
# system's, not instrumented.

FUZZ_CC ?= clang
FUZZ_TIME ?= 60
FUZZ_TARGETS ?= record_decode msgpack_decode jsonl_import ops
FZ := build-fuzz
FUZZ_SAN := -fsanitize=address,undefined -fno-sanitize-recover=all
FUZZ_OPT := -O1 -g -fno-omit-frame-pointer
LUA_LIBS ?= $(shell pkg-config --libs lua5.4 2>/dev/null || echo -llua5.4)
FUZZ_CFLAGS = -std=c99 -D_GNU_SOURCE -Wall -Wextra $(WERROR) $(FUZZ_OPT) \
  -Icore/include -Icore/src -Ilua $(LUA_CFLAGS) -DER_SOURCE_DIR='"$(CURDIR)"'
FUZZ_LINK = $(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer $(FUZZ_SAN)

.PHONY: fuzz fuzz-build fuzz-objs fuzz-seeds

# The core and the binding through the Makefile's own rules, in build-fuzz/.
fuzz-objs:
	@$(MAKE) --no-print-directory B=$(FZ) CC=$(FUZZ_CC) OPT="$(FUZZ_OPT)" \
	  SAN="-fsanitize=fuzzer-no-link $(FUZZ_SAN)" \
	  $(FZ)/libeventrocks.a $(FZ)/lua/er_value.o $(FZ)/lua/er_aux.o $(FZ)/lua/eventrocks_core.o

$(FZ)/record_decode: fuzz/record_decode.c fuzz-objs
	$(FUZZ_LINK) -o $@ $< $(FZ)/libeventrocks.a $(LIBS)

$(FZ)/msgpack_decode: fuzz/msgpack_decode.c fuzz-objs
	$(FUZZ_LINK) -o $@ $< $(FZ)/lua/er_value.o $(LUA_LIBS) -lm

$(FZ)/jsonl_import: fuzz/jsonl_import.c fuzz/jsonl_import.lua fuzz-objs
	$(FUZZ_LINK) -o $@ $< $(FZ)/lua/eventrocks_core.o $(FZ)/lua/er_value.o $(FZ)/lua/er_aux.o \
	  $(FZ)/libeventrocks.a $(LIBS) $(LUA_LIBS) -lm

$(FZ)/ops: fuzz/ops.c fuzz-objs
	$(FUZZ_LINK) -o $@ $< $(FZ)/libeventrocks.a $(LIBS)

fuzz-build: $(FUZZ_TARGETS:%=$(FZ)/%)

# Each target runs on a scratch corpus in build-fuzz/corpus/ that starts
# from the committed seeds; crash files go to build-fuzz/artifacts/.
fuzz: fuzz-build
	@FUZZ_TIME=$(FUZZ_TIME) FZ=$(FZ) sh fuzz/run.sh $(FUZZ_TARGETS)

# Seeds: real records, real MessagePack and real export lines made by the
# code itself, and a few hand-made operation sequences.
$(FZ)/seeds: fuzz/seeds.c fuzz-objs
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_SAN) -fsanitize=fuzzer-no-link -o $@ $< \
	  $(FZ)/lua/er_value.o $(FZ)/libeventrocks.a $(LIBS) $(LUA_LIBS) -lm

fuzz-seeds: $(FZ)/seeds
	$(FZ)/seeds fuzz/corpus
