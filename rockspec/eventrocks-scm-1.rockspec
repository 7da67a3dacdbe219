-- eventrocks: an embedded event store for Lua 5.4 with a C core on RocksDB.
-- Build from a checkout:  luarocks --lua-version=5.4 make rockspec/eventrocks-scm-1.rockspec
-- System packages (Debian): liblua5.4-dev librocksdb-dev libmsgpuck-dev libxxhash-dev libsodium-dev,
-- lua-system lua-filesystem lua-luv, and for the eventrocks command lua-argparse lua-dkjson
-- lua-readline (tools/deps.sh base).
-- The NATS JetStream relay and source are the eventrocks-jetstream rock
-- (rockspec/eventrocks-jetstream-scm-1.rockspec), installed after this one.
--
-- Built by the Makefile (`make rock-base`): its list of sources, its flags,
-- and a temporary build directory outside the source tree.  Everything
-- happens in the install pass, which LuaRocks skips with --no-install.
rockspec_format = "3.0"
package = "eventrocks"
version = "scm-1"
source = {
  url = "git+https://github.com/eventrocks/eventrocks.git",
}
description = {
  summary = "Embedded event store for Lua 5.4 on RocksDB",
  detailed = [[
Streams of events appended atomically with optimistic concurrency,
a global log in append order, idempotent retries with UUIDv7 event ids,
and Lua values stored losslessly as MessagePack.
]],
  license = "MIT",
  labels = { "database", "event-sourcing", "rocksdb" },
}
dependencies = {
  "lua >= 5.4, < 5.5",
}
external_dependencies = {
  ROCKSDB = { header = "rocksdb/c.h", library = "rocksdb" },
  XXHASH = { header = "xxhash.h", library = "xxhash" },
  SODIUM = { header = "sodium.h", library = "sodium" },
  MSGPUCK = { header = "msgpuck.h" },
}
build = {
  type = "make",
  build_pass = false,
  install_target = "rock-base",
  variables = {
    CFLAGS = "$(CFLAGS)",
    CPPFLAGS = "-I$(ROCKSDB_INCDIR) -I$(XXHASH_INCDIR) -I$(SODIUM_INCDIR) -I$(MSGPUCK_INCDIR)",
    LDFLAGS = "-L$(ROCKSDB_LIBDIR) -L$(XXHASH_LIBDIR) -L$(SODIUM_LIBDIR)",
    LUA_CFLAGS = "-I$(LUA_INCDIR)",
    LUADIR = "$(LUADIR)",
    LIBDIR = "$(LIBDIR)",
  },
  install = {
    bin = { eventrocks = "bin/eventrocks" },
  },
}
