# eventrocks -- build, test and install.
#
#   make            build the C core and the Lua module in place (build/)
#   make test       C tests + busted specs
#   make asan       the same tests built with -fsanitize=address,undefined
#   make valgrind   the C tests under valgrind (leaks are errors)
#   make examples   run every script in examples/
#   make install    luarocks make of the three rocks, eventrocks then eventrocks-jetstream
#                   and eventrocks-ui, into the default 5.4 tree (TREE=dir to choose)
#   make clean
#
# The rocks (rockspec/*.rockspec) build through rock-base and rock-jetstream
# below.  CPPFLAGS, CFLAGS and LDFLAGS are added after the project's flags
# (luarocks passes its own and the include and library directories it found).

CC ?= cc
LUA ?= lua5.4
BUSTED ?= busted
LUAROCKS ?= luarocks --lua-version=5.4
LUA_CFLAGS ?= $(shell pkg-config --cflags lua5.4 2>/dev/null || echo -I/usr/include/lua5.4)

WARN = -std=c99 -Wall -Wextra -pedantic -Wshadow -Wcast-qual \
       -Wmissing-prototypes -Wstrict-prototypes
WERROR ?=
OPT ?= -O2 -g
SAN =
CFLAGS_ALL = $(WARN) $(WERROR) $(OPT) $(SAN) -fPIC -Icore/include $(CPPFLAGS) $(CFLAGS)
LIBS = -lrocksdb -lxxhash -lsodium -lpthread
TEST_LIBS = $(LIBS) -lcmocka

B ?= build
CORE_SRC = $(wildcard core/src/*.c)
CORE_HDR = core/include/eventrocks.h core/src/internal.h
CORE_OBJ = $(CORE_SRC:core/src/%.c=$(B)/core/%.o)
BIND_SRC = lua/eventrocks_core.c lua/er_value.c lua/er_aux.c
BIND_OBJ = $(BIND_SRC:lua/%.c=$(B)/lua/%.o)
C_TESTS = $(patsubst core/test/%.c,$(B)/%,$(wildcard core/test/test_*.c))

.PHONY: all test test-c test-lua asan valgrind examples install rock-base rock-jetstream rock-ui clean

all: $(B)/eventrocks/core.so $(B)/eventrocks/nats.so $(B)/eventrocks/http.so $(B)/libeventrocks.a

$(B)/core/%.o: core/src/%.c $(CORE_HDR)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -c $< -o $@

$(B)/lua/%.o: lua/%.c lua/er_value.h lua/er_aux.h core/include/eventrocks.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -Ilua $(LUA_CFLAGS) -c $< -o $@

$(B)/libeventrocks.a: $(CORE_OBJ)
	ar rcs $@ $^

$(B)/eventrocks/core.so: $(BIND_OBJ) $(CORE_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(SAN) -shared $(LDFLAGS) -o $@ $^ $(LIBS)

# eventrocks.nats: the binding to the NATS C client (JetStream relay/consumer)
$(B)/eventrocks/nats.so: $(B)/lua/eventrocks_nats.o $(B)/lua/er_aux.o
	@mkdir -p $(dir $@)
	$(CC) $(SAN) -shared $(LDFLAGS) -o $@ $^ -lnats -lpthread

# eventrocks.http: the binding to GNU libmicrohttpd (the web explorer's server)
$(B)/eventrocks/http.so: $(B)/lua/eventrocks_http.o $(B)/lua/er_aux.o
	@mkdir -p $(dir $@)
	$(CC) $(SAN) -shared $(LDFLAGS) -o $@ $^ -lmicrohttpd

$(B)/test_%: core/test/test_%.c core/test/test_util.h $(B)/libeventrocks.a
	$(CC) $(CFLAGS_ALL) -D_GNU_SOURCE -o $@ $< $(B)/libeventrocks.a $(TEST_LIBS)

test: test-c test-lua

test-c: $(C_TESTS)
	@set -e; for t in $(C_TESTS); do echo "== $$t"; $$t; done

test-lua: $(B)/eventrocks/core.so $(B)/eventrocks/nats.so $(B)/eventrocks/http.so
	$(BUSTED) --lua=$(LUA) --cpath='$(B)/?.so'

# The sanitizer build lives in build-asan/.  The Lua interpreter is not
# instrumented, so the runtime is preloaded for the specs.
ASAN_RT = $(shell $(CC) -print-file-name=libasan.so)
UBSAN_RT = $(shell $(CC) -print-file-name=libubsan.so)
asan:
	$(MAKE) B=build-asan OPT="-O1 -g -fno-omit-frame-pointer" \
	  SAN="-fsanitize=address,undefined -fno-sanitize-recover=all" test-c
	$(MAKE) B=build-asan OPT="-O1 -g -fno-omit-frame-pointer" \
	  SAN="-fsanitize=address,undefined -fno-sanitize-recover=all" build-asan/eventrocks/core.so build-asan/eventrocks/nats.so build-asan/eventrocks/http.so
	LD_PRELOAD="$(ASAN_RT) $(UBSAN_RT)" ASAN_OPTIONS=detect_leaks=1 \
	  LSAN_OPTIONS=suppressions=$(CURDIR)/spec/lsan.supp,print_suppressions=0 \
	  $(BUSTED) --lua=$(LUA) --cpath='build-asan/?.so'

# valgrind runs one thread at a time: fair scheduling keeps the spinning
# racers of test_threads from starving each other, and the race is smaller
valgrind: $(C_TESTS)
	@set -e; for t in $(C_TESTS); do echo "== valgrind $$t"; \
	  ER_TEST_RACE_TARGET=300 valgrind -q --fair-sched=yes --leak-check=full --show-leak-kinds=definite,indirect \
	    --errors-for-leak-kinds=definite,indirect --error-exitcode=1 $$t; done

examples: all
	@set -e; for f in examples/*.lua; do echo "== $$f"; \
	  LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH='$(B)/?.so;;' $(LUA) $$f; done

TREE ?=
install:
	$(LUAROCKS) make rockspec/eventrocks-scm-1.rockspec $(if $(TREE),--tree=$(TREE))
	$(LUAROCKS) make rockspec/eventrocks-jetstream-scm-1.rockspec $(if $(TREE),--tree=$(TREE))
	$(LUAROCKS) make rockspec/eventrocks-ui-scm-1.rockspec $(if $(TREE),--tree=$(TREE))

# What the rockspecs run (build.type = "make"): `make rock-base LUADIR=dir
# LIBDIR=dir` builds the C module with the rules above in a temporary
# directory outside the tree, installs it into LIBDIR and the rock's Lua
# modules into LUADIR, and removes the temporary directory, whatever
# happens: nothing is left in the source tree.  The base rock has every
# module of lua/eventrocks/ but the JetStream one and the web explorer's.
JETSTREAM_LUA = lua/eventrocks/jetstream.lua
UI_LUA = lua/eventrocks/ui.lua
BASE_LUA = $(filter-out $(JETSTREAM_LUA) $(UI_LUA),$(sort $(shell find lua/eventrocks -name '*.lua')))

# rock_install SO,LUA: $(1) the C module under eventrocks/, $(2) the Lua files
define rock_install
	@test -n '$(LUADIR)' && test -n '$(LIBDIR)' || \
	  { echo 'make $@: give LUADIR=dir LIBDIR=dir (the rockspec does)' >&2; exit 2; }
	@set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; trap 'exit 130' INT TERM; \
	  $(MAKE) --no-print-directory B="$$tmp" "$$tmp/eventrocks/$(1)"; \
	  install -D -m 755 "$$tmp/eventrocks/$(1)" '$(LIBDIR)/eventrocks/$(1)'; \
	  for f in $(2); do install -D -m 644 "$$f" "$(LUADIR)/$${f#lua/}"; done
endef

rock-base:
	$(call rock_install,core.so,$(BASE_LUA))

rock-jetstream:
	$(call rock_install,nats.so,$(JETSTREAM_LUA))

rock-ui:
	$(call rock_install,http.so,$(UI_LUA))

# (the last two lines: what the builtin rockspec of before left in the tree)
clean:
	rm -rf build build-asan build-fuzz
	rm -f core/src/*.o lua/*.o lua/*.so eventrocks/core.so eventrocks/nats.so eventrocks/http.so
	rmdir eventrocks 2>/dev/null || true

# Further targets (bench, fuzz, crash tests) live in their own fragments.
include $(wildcard mk/*.mk)
