-- .ci/rock_jetstream.lua A B: both rocks installed, against the nats-server
-- at $EVENTROCKS_NATS_URL (see the rock steps of .ci/run).  Relays a new
-- store in directory A to a JetStream stream of its own and mirrors it
-- into a new store in B through a source.
local er = require "eventrocks"
local js = require "eventrocks.jetstream"
assert(arg[1] and arg[2], "usage: lua5.4 .ci/rock_jetstream.lua A B")
local url = assert(os.getenv("EVENTROCKS_NATS_URL"), "EVENTROCKS_NATS_URL is not set")

local tag = er.uuid():gsub("-", ""):sub(-12) -- a stream and subjects of this run only
local stream, prefix = "ROCKCI" .. tag, "rockci" .. tag

local a = assert(er.open(arg[1]))
for i = 1, 5 do assert(a:append("order-" .. i, { type = "OrderPlaced", data = { total = i } })) end
local relay = a:relay("out", { url = url, stream = stream, prefix = prefix, create_stream = true,
  storage = "memory" })
local published, position = relay:run()
assert(published == 5 and position == 5, ("relay: %s published, position %s"):format(published, position))
relay:close()
a:close()

local b = assert(er.open(arg[2]))
local src = er.jetstream_source({ url = url, stream = stream, prefix = prefix, mirror = true })
assert(src._is_source == true and tostring(src):find("^jetstream source"), "not a projection source: " .. tostring(src))
local totals = b:projection("totals", { source = src, handlers = {
  OrderPlaced = function(view, ev) view:put("sum", (view:get("sum") or 0) + ev.data.total) end,
} })
local n, pos = totals:run()
assert(n == 5 and pos == 5, ("source: %s applied, position %s"):format(n, tostring(pos)))
src:close()
assert(totals:get("sum") == 15, tostring(totals:get("sum")))
assert(b:last_position() == 5, "mirror holds " .. b:last_position() .. " events")
b:close()
print(("%s with libnats %s: 5 events relayed to %s and mirrored back"):format(er._VERSION,
  require("eventrocks.nats").version, stream))
