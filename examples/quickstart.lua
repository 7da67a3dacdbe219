-- quickstart.lua: the store API in five minutes.
--
-- A product's price is increased.  A CRUD table would overwrite the row and
-- keep only the new price; an event store keeps every change as an event in
-- the product's stream, so any past state can be rebuilt and explained.
--
-- Run: make examples   (or: lua5.4 examples/quickstart.lua [STORE_DIR])
local er = require "eventrocks"

local dir = arg[1]
local scratch = not dir
if scratch then -- a throw-away store in a temporary directory
  dir = os.tmpname()
  os.remove(dir)
end

local store = assert(er.open(dir))
print("opened", store)

-- 1. Append events to the stream "product-42" (category "product").
--    NO_STREAM: this must be the first append to that stream.
local version, position = assert(store:append("product-42", {
  type = "ProductCreated",
  data = { name = "Kettle", price = 2500 },
  metadata = { user = "alice" },
}, { expected = er.NO_STREAM }))
print(("created: version %d, position %d"):format(version, position))

-- Several events in one append are stored atomically: all or none.
version = assert(store:append("product-42", {
  { type = "PriceIncreased", data = { delta = 300 }, metadata = { user = "bob", reason = "supplier" } },
  { type = "PriceIncreased", data = { delta = 200 }, metadata = { user = "bob", reason = "inflation" } },
}, { expected = version }))
print("now at version", version)

-- 2. Rebuild the state by folding the stream, the way an aggregate does.
local state = {}
for ev in store:read("product-42") do
  if ev.type == "ProductCreated" then
    state.name, state.price = ev.data.name, ev.data.price
  elseif ev.type == "PriceIncreased" then
    state.price = state.price + ev.data.delta
  end
  print(("  v%d %-15s price %5d  by %s (%s)"):format(ev.version, ev.type,
    state.price, ev.metadata.user, ev.metadata.reason or "-"))
end
-- A CRUD row would hold only this last line; the stream holds all of them.

-- 3. Optimistic concurrency: a writer that loaded version 1 is refused.
local ok, err = store:append("product-42", { type = "PriceIncreased", data = { delta = 1 } },
  { expected = 1 })
assert(ok == nil and err.code == "wrong_expected_version")
print("stale write refused:", err)

-- 4. Idempotent retry: the same event ids appended again change nothing.
local id = er.uuid()
local v1, p1 = assert(store:append("product-7", { id = id, type = "ProductCreated", data = { name = "Mug", price = 900 } }))
local v2, p2 = assert(store:append("product-7", { id = id, type = "ProductCreated", data = { name = "Mug", price = 900 } }))
assert(v1 == v2 and p1 == p2)
print("retry returned the original append:", v2, p2)

-- 5. The global log: every event of every stream in append order.
for ev in store:all({ category = "product" }) do print("  " .. tostring(ev)) end
for stream, v in store:streams({ prefix = "product-" }) do print("  stream", stream, "at", v) end
print("last position", store:last_position())

store:close()
if scratch then os.execute("rm -rf '" .. dir .. "'") end
