-- eventrocks-jetstream: the NATS JetStream relay and source of eventrocks
-- (the modules eventrocks.jetstream and eventrocks.nats, a binding to the
-- NATS C client).
-- Build from a checkout, after the eventrocks rock and into the same tree:
--   luarocks --lua-version=5.4 make rockspec/eventrocks-scm-1.rockspec
--   luarocks --lua-version=5.4 make rockspec/eventrocks-jetstream-scm-1.rockspec
-- System packages (Debian): libnats-dev besides those of eventrocks (tools/deps.sh jetstream).
--
-- Built by the Makefile (`make rock-jetstream`), like the eventrocks rock.
rockspec_format = "3.0"
package = "eventrocks-jetstream"
version = "scm-1"
source = {
  url = "git+https://github.com/eventrocks/eventrocks.git",
}
description = {
  summary = "NATS JetStream relay and source for the eventrocks event store",
  detailed = [[
Publishes an eventrocks store's global log to NATS JetStream exactly once
(store:relay, `eventrocks relay`) and feeds projections and mirrors on
other machines from it (er.jetstream_source, `eventrocks consume`).
]],
  license = "MIT",
  labels = { "database", "event-sourcing", "nats", "jetstream" },
}
dependencies = {
  "lua >= 5.4, < 5.5",
  "eventrocks == scm-1",
}
external_dependencies = {
  NATS = { header = "nats/nats.h", library = "nats" },
}
build = {
  type = "make",
  build_pass = false,
  install_target = "rock-jetstream",
  variables = {
    CFLAGS = "$(CFLAGS)",
    CPPFLAGS = "-I$(NATS_INCDIR)",
    LDFLAGS = "-L$(NATS_LIBDIR)",
    LUA_CFLAGS = "-I$(LUA_INCDIR)",
    LUADIR = "$(LUADIR)",
    LIBDIR = "$(LIBDIR)",
  },
  copy_directories = {},
}
