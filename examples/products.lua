-- products.lua: the founding example of event sourcing.
--
-- A product's price is increased twice.  A CRUD table overwrites the row and
-- keeps only the latest price; the event store keeps every change -- the
-- old prices, the intent (an increase, not a correction), who made it and
-- when -- so any past state can be rebuilt and every change explained.
--
-- Run: make examples   (or: lua5.4 examples/products.lua [STORE_DIR])
local er = require "eventrocks"
local pretty = require "eventrocks.pretty"

local dir = arg[1]
local scratch = not dir
if scratch then dir = os.tmpname(); os.remove(dir) end
local store = assert(er.open(dir))

-- The aggregate: its state, and how each event type changes that state.
local Product = er.aggregate("product", {
  init = function(id) return { sku = id, price = 0 } end,
  apply = {
    ProductCreated = function(state, data) state.name, state.price = data.name, data.price end,
    PriceIncreased = function(state, data) state.price = state.price + data.delta end,
    PriceCorrected = function(state, data) state.price = data.price end,
  },
})

-- Commands validate, then raise events.  They never change state directly.
function Product:create(name, price, user)
  if self.version > 0 then error("product " .. self.id .. " already exists") end
  self:raise("ProductCreated", { name = name, price = price }, { user = user })
end

function Product:increase_price(delta, user)
  if delta <= 0 then error("delta must be positive") end
  self:raise("PriceIncreased", { delta = delta }, { user = user })
end

local products = store:repository(Product)

-- What a CRUD application would keep: one row, updated in place.
local crud_row = {}
local function crud_update(sku, name, price) crud_row = { sku = sku, name = name, price = price } end

-- Day 1: alice creates the product.
local p = products:load("kettle-1")      -- version 0: a new product
p:create("Kettle", 2500, "alice")
assert(products:save(p))
crud_update("kettle-1", "Kettle", 2500)

-- Day 2 and 3: bob increases the price twice.
for _, delta in ipairs({ 300, 200 }) do
  p = products:load("kettle-1")
  p:increase_price(delta, "bob")
  assert(products:save(p))
  crud_update("kettle-1", "Kettle", p.state.price)
end

-- A command that breaks a rule changes nothing.
local ok, err = pcall(p.increase_price, p, -50, "mallory")
assert(not ok and #p:pending() == 0)
print("refused:", err)

print("\nThe CRUD row keeps only the present:")
print("  " .. pretty.compact(crud_row))

print("\nThe event stream keeps every change, its intent, who and when:")
for ev in store:read(p.stream) do
  print(("  v%d  %-15s %-16s by %-5s at %s"):format(ev.version, ev.type,
    pretty.compact(ev.data), ev.metadata.user, pretty.time(ev.time)))
end

print("\nSo every past state can be rebuilt (time travel):")
for v = 1, p.version do
  local then_ = products:load("kettle-1", { version = v })
  print(("  at version %d the price was %d"):format(v, then_.state.price))
end

assert(products:load("kettle-1").state.price == crud_row.price)
store:close()
if scratch then os.execute("rm -rf '" .. dir .. "'") end
