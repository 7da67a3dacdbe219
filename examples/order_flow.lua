-- order_flow.lua: an event-driven flow in one process.
--
-- Orders, payments and shipments are three aggregates that never call each
-- other.  They are tied together by events:
--   * a projection keeps a read model of order totals for the screens;
--   * an inline projection keeps a per-customer count that is up to date the
--     moment an append returns (read-your-writes);
--   * a reactor (a process manager) watches payments and starts a shipment
--     when an order is paid in full -- its emitted events, its own state and
--     its checkpoint are committed together, so each order ships exactly once
--     even if the process dies in the middle.
--
-- Run: make examples   (or: lua5.4 examples/order_flow.lua [STORE_DIR])
local er = require "eventrocks"

local dir = arg[1]
local scratch = not dir
if scratch then dir = os.tmpname(); os.remove(dir) end
local store = assert(er.open(dir))

-- Aggregates ------------------------------------------------------------------

local Order = er.aggregate("order", {
  init = function() return { lines = {}, total = 0, placed = false } end,
  apply = {
    OrderPlaced = function(s, d) s.placed, s.customer = true, d.customer end,
    LineAdded = function(s, d)
      s.lines[#s.lines + 1] = { sku = d.sku, qty = d.qty, price = d.price }
      s.total = s.total + d.qty * d.price
    end,
  },
})

function Order:place(customer, lines)
  if self.state.placed then error("order already placed") end
  if #lines == 0 then error("an order needs at least one line") end
  self:raise("OrderPlaced", { customer = customer })
  for _, l in ipairs(lines) do self:raise("LineAdded", l) end
end

local Payment = er.aggregate("payment", {
  init = function() return { received = 0 } end,
  apply = {
    PaymentReceived = function(s, d) s.received = s.received + d.amount; s.order = d.order end,
  },
})

function Payment:receive(order, amount)
  if amount <= 0 then error("amount must be positive") end
  self:raise("PaymentReceived", { order = order, amount = amount })
end

local Shipment = er.aggregate("shipment", {
  init = function() return { status = "none" } end,
  apply = {
    ShipmentRequested = function(s, d) s.status, s.order = "requested", d.order end,
    ShipmentDispatched = function(s) s.status = "dispatched" end,
  },
})

function Shipment:dispatch()
  if self.state.status ~= "requested" then error("nothing to dispatch") end
  self:raise("ShipmentDispatched", {})
end

local orders = store:repository(Order)
local payments = store:repository(Payment)
local shipments = store:repository(Shipment)

-- Read models -------------------------------------------------------------------

-- Order totals, for a screen: a catch-up projection, run when convenient.
local totals = store:projection("order-totals", {
  handlers = {
    OrderPlaced = function(view, ev)
      view:put(ev.stream, { customer = ev.data.customer, total = 0, paid = 0, status = "placed" })
    end,
    LineAdded = function(view, ev)
      local row = view:get(ev.stream)
      row.total = row.total + ev.data.qty * ev.data.price
      view:put(ev.stream, row)
    end,
    PaymentReceived = function(view, ev)
      local key = "order-" .. ev.data.order
      local row = view:get(key)
      row.paid = row.paid + ev.data.amount
      if row.paid >= row.total then row.status = "paid" end
      view:put(key, row)
    end,
    ShipmentDispatched = function(view, ev)
      local key = "order-" .. ev.stream:match("^shipment%-(.*)$")
      local row = view:get(key)
      row.status = "shipped"
      view:put(key, row)
    end,
  },
})

-- Orders per customer: inline, so it is current as soon as an append returns.
local per_customer = store:projection("orders-per-customer", {
  inline = true,
  handlers = {
    OrderPlaced = function(view, ev)
      view:put(ev.data.customer, (view:get(ev.data.customer) or 0) + 1)
    end,
  },
})

-- The reactor: when an order is paid in full, request its shipment.  It keeps
-- what it needs (totals and amounts paid) in its own view.
local shipping = store:projection("shipping-reactor", {
  handlers = {
    LineAdded = function(view, ev)
      local key = "due:" .. ev.stream
      view:put(key, (view:get(key) or 0) + ev.data.qty * ev.data.price)
    end,
    PaymentReceived = function(view, ev)
      local order = "order-" .. ev.data.order
      local due = (view:get("due:" .. order) or 0) - ev.data.amount
      view:put("due:" .. order, due)
      if due <= 0 and not view:get("shipped:" .. order) then
        view:put("shipped:" .. order, true)
        view:emit("shipment-" .. ev.data.order, { type = "ShipmentRequested", data = { order = ev.data.order } },
          { expected = er.NO_STREAM })
      end
    end,
  },
})

-- The story ---------------------------------------------------------------------

local o = orders:load("1001")
o:place("alice", { { sku = "kettle", qty = 1, price = 2500 }, { sku = "mug", qty = 2, price = 900 } })
assert(orders:save(o))
print("order 1001 placed, total", o.state.total, "- alice has", per_customer:get("alice"), "order(s)")

local o2 = orders:load("1002")
o2:place("bob", { { sku = "teapot", qty = 1, price = 4000 } })
assert(orders:save(o2))

-- alice pays in two parts, bob only in part
assert(payments:update("p-1", function(p) p:receive("1001", 3000) end))
assert(payments:update("p-2", function(p) p:receive("1001", 1300) end))
assert(payments:update("p-3", function(p) p:receive("1002", 1000) end))

-- The reactor catches up: one shipment requested, for the order paid in full.
print("reactor processed", (shipping:run()))
assert(shipments:load("1001").state.status == "requested")
assert(shipments:load("1002").state.status == "none")

-- Running it again does nothing: its checkpoint moved with its emits.
assert(shipping:run() == 0)

local s = shipments:load("1001")
s:dispatch()
assert(shipments:save(s))

totals:run()
print("\norder totals:")
for key, row in totals:each("order-") do
  print(("  %-10s %-6s total %5d  paid %5d  %s"):format(key, row.customer, row.total, row.paid, row.status))
end

-- Emitted events say why they exist: causation_id is the event that caused
-- them, correlation_id ties the whole flow together.
print("\nwhy was order 1001 shipped?")
local cause
for ev in store:read("shipment-1001") do
  print("  " .. tostring(ev))
  if ev.metadata.causation_id then
    for src in store:all({ types = { "PaymentReceived" } }) do
      if src.id == ev.metadata.causation_id then cause = src end
    end
    print("    caused by " .. tostring(cause))
  end
end
assert(cause and cause.type == "PaymentReceived" and cause.stream == "payment-p-2")

store:close()
if scratch then os.execute("rm -rf '" .. dir .. "'") end
