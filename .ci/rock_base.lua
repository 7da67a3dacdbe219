-- .ci/rock_base.lua DIR: the eventrocks rock as installed, alone (no
-- eventrocks-jetstream rock, libnats hidden; see the rock steps of .ci/run).
-- Opens a store in DIR, appends, reads, runs a projection, and checks that
-- what needs the JetStream rock says which one to install.
local er = require "eventrocks"
local dir = assert(arg[1], "usage: lua5.4 .ci/rock_base.lua DIR")

assert(er._VERSION:match("^eventrocks %d+%.%d+%.%d+$"), er._VERSION)
local store = assert(er.open(dir))
assert(store:append("order-1", {
  { type = "OrderPlaced", data = { total = 30 } },
  { type = "OrderPaid", data = { amount = 30 } },
}, { expected = er.NO_STREAM }))
assert(store:append("order-2", { type = "OrderPlaced", data = { total = 12 } }))

local types = {}
for ev in store:read("order-1") do types[#types + 1] = ev.type end
assert(table.concat(types, ",") == "OrderPlaced,OrderPaid", table.concat(types, ","))

local totals = store:projection("totals", { handlers = {
  OrderPlaced = function(view, ev) view:put("sum", (view:get("sum") or 0) + ev.data.total) end,
} })
local n, pos = assert(totals:run())
assert(n == 2 and pos == 3, ("run: %s events applied, position %s"):format(n, pos))
assert(totals:get("sum") == 42, tostring(totals:get("sum")))

-- the JetStream parts: one message naming the rock and the command
local function refused(what, f, ...)
  local ok, err = pcall(f, ...)
  assert(not ok, what .. " worked without the eventrocks-jetstream rock")
  err = tostring(err)
  assert(err:find(what .. " needs the eventrocks-jetstream rock, which is not installed", 1, true), err)
  assert(err:find("luarocks --lua-version=5.4 make rockspec/eventrocks-jetstream-scm-1.rockspec", 1, true), err)
end
refused("store:relay", store.relay, store, "out")
refused("er.jetstream_source", er.jetstream_source, {})
refused("er.jetstream_connect", er.jetstream_connect, {})
assert(package.loaded["eventrocks.nats"] == nil and package.loaded["eventrocks.jetstream"] == nil)
store:close()
print(er._VERSION .. ": open, append, read, projection; the JetStream rock is asked for")
