-- eventrocks: an embedded event store for Lua 5.4 with a C core on RocksDB.
-- Build from a checkout:  luarocks --lua-version=5.4 make rockspec/eventrocks-scm-1.rockspec
-- System packages (Debian): liblua5.4-dev librocksdb-dev libmsgpuck-dev libxxhash-dev libnats-dev,
-- and for the eventrocks command lua-argparse lua-dkjson lua-readline (tools/deps.sh).
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
  MSGPUCK = { header = "msgpuck.h" },
  NATS = { header = "nats/nats.h", library = "nats" },
}
build = {
  type = "builtin",
  modules = {
    ["eventrocks"] = "lua/eventrocks/init.lua",
    ["eventrocks.pretty"] = "lua/eventrocks/pretty.lua",
    ["eventrocks.aggregate"] = "lua/eventrocks/aggregate.lua",
    ["eventrocks.projection"] = "lua/eventrocks/projection.lua",
    ["eventrocks.jsonl"] = "lua/eventrocks/jsonl.lua",
    ["eventrocks.progress"] = "lua/eventrocks/progress.lua",
    ["eventrocks.options"] = "lua/eventrocks/options.lua",
    ["eventrocks.cli"] = "lua/eventrocks/cli.lua",
    ["eventrocks.repl"] = "lua/eventrocks/repl.lua",
    ["eventrocks.jetstream"] = "lua/eventrocks/jetstream.lua",
    ["eventrocks.nats"] = {
      sources = { "lua/eventrocks_nats.c" },
      incdirs = { "$(NATS_INCDIR)" },
      libdirs = { "$(NATS_LIBDIR)" },
      libraries = { "nats", "pthread" },
    },
    ["eventrocks.core"] = {
      sources = {
        "lua/eventrocks_core.c",
        "lua/er_value.c",
        "core/src/append.c",
        "core/src/check.c",
        "core/src/errors.c",
        "core/src/heads.c",
        "core/src/iter.c",
        "core/src/kv.c",
        "core/src/names.c",
        "core/src/read.c",
        "core/src/record.c",
        "core/src/store.c",
        "core/src/txn.c",
        "core/src/uuid.c",
      },
      incdirs = { "core/include", "lua", "$(ROCKSDB_INCDIR)", "$(XXHASH_INCDIR)",
                  "$(MSGPUCK_INCDIR)" },
      libdirs = { "$(ROCKSDB_LIBDIR)", "$(XXHASH_LIBDIR)" },
      libraries = { "rocksdb", "xxhash", "pthread" },
    },
  },
  install = {
    bin = { eventrocks = "bin/eventrocks" },
  },
}
