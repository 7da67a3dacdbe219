-- eventrocks-ui: the web explorer of eventrocks (`eventrocks ui`: the module
-- eventrocks.ui and eventrocks.http, a binding to GNU libmicrohttpd).
-- Build from a checkout, after the eventrocks rock and into the same tree:
--   luarocks --lua-version=5.4 make rockspec/eventrocks-scm-1.rockspec
--   luarocks --lua-version=5.4 make rockspec/eventrocks-ui-scm-1.rockspec
-- System packages (Debian): libmicrohttpd-dev besides those of eventrocks (tools/deps.sh ui).
--
-- Built by the Makefile (`make rock-ui`), like the eventrocks rock.
rockspec_format = "3.0"
package = "eventrocks-ui"
version = "scm-1"
source = {
  url = "git+https://github.com/eventrocks/eventrocks.git",
}
description = {
  summary = "A local, read-only web explorer for eventrocks event stores",
  detailed = [[
`eventrocks ui` serves server-rendered pages on 127.0.0.1: streams, events,
the global log, projections, stats with an events-over-time chart, and an
aggregate's state at every version with what each event changed.
]],
  license = "MIT",
  labels = { "database", "event-sourcing", "http" },
}
dependencies = {
  "lua >= 5.4, < 5.5",
  "eventrocks == scm-1",
}
external_dependencies = {
  MICROHTTPD = { header = "microhttpd.h", library = "microhttpd" },
}
build = {
  type = "make",
  build_pass = false,
  install_target = "rock-ui",
  variables = {
    CFLAGS = "$(CFLAGS)",
    CPPFLAGS = "-I$(MICROHTTPD_INCDIR)",
    LDFLAGS = "-L$(MICROHTTPD_LIBDIR)",
    LUA_CFLAGS = "-I$(LUA_INCDIR)",
    LUADIR = "$(LUADIR)",
    LIBDIR = "$(LIBDIR)",
  },
  copy_directories = {},
}
