-- ui_aggregates.lua: the aggregate definitions of products.lua and
-- order_flow.lua, for the web explorer:
--
--   lua5.4 examples/products.lua shop && lua5.4 examples/order_flow.lua shop
--   eventrocks ui --store shop --aggregates examples/ui_aggregates.lua
--
-- The explorer runs this file (it is the application's code, like the
-- scripts it comes from) and shows each aggregate's state at every version.
-- An application keeps its definitions in a module of its own and returns
-- them here; the examples define theirs inline, so they are repeated.
local er = require "eventrocks"

local Product = er.aggregate("product", {
  init = function(id) return { sku = id, price = 0 } end,
  apply = {
    ProductCreated = function(state, data) state.name, state.price = data.name, data.price end,
    PriceIncreased = function(state, data) state.price = state.price + data.delta end,
    PriceCorrected = function(state, data) state.price = data.price end,
  },
})

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

local Payment = er.aggregate("payment", {
  init = function() return { received = 0 } end,
  apply = {
    PaymentReceived = function(s, d) s.received = s.received + d.amount; s.order = d.order end,
  },
})

local Shipment = er.aggregate("shipment", {
  init = function() return { status = "none" } end,
  apply = {
    ShipmentRequested = function(s, d) s.status, s.order = "requested", d.order end,
    ShipmentDispatched = function(s) s.status = "dispatched" end,
  },
})

return { Product, Order, Payment, Shipment }
