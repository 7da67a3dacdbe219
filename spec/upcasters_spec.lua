-- er.open's upcasters: old event shapes turned into new ones on every read
-- (read, all, event, subscribe, projections, aggregates), never on disk.
local H = require "helper"
local er = require "eventrocks"

-- V1 { count = "3" } -> V2 { qty = 3 } -> V3 { qty = 3, unit = "pcs" }
local function upcasters(calls)
  return {
    ItemAdded = function(data, ev)
      if calls then calls[#calls + 1] = "v1@" .. ev.position end
      return "ItemAddedV2", { qty = tonumber(data.count) }
    end,
    ItemAddedV2 = function(data, ev)
      if calls then calls[#calls + 1] = "v2@" .. ev.position end
      return "ItemAddedV3", { qty = data.qty, unit = "pcs" }
    end,
  }
end

local stored = {
  { type = "ItemAdded", data = { count = "3" }, metadata = { v = 1 } },
  { type = "ItemAddedV2", data = { qty = 4 } },
  { type = "ItemAddedV3", data = { qty = 5, unit = "kg" } },
  { type = "Other", data = "x" },
}
local want = {
  { type = "ItemAddedV3", data = { qty = 3, unit = "pcs" } },
  { type = "ItemAddedV3", data = { qty = 4, unit = "pcs" } },
  { type = "ItemAddedV3", data = { qty = 5, unit = "kg" } },
  { type = "Other", data = "x" },
}

local function shapes(list)
  local out = {}
  for i, ev in ipairs(list) do out[i] = { type = ev.type, data = ev.data } end
  return out
end

describe("upcasters", function()
  local t = {}
  local s
  before_each(function()
    H.setup(t)
    assert(t.store:append("cart-1", stored))
    t.store:close()
  end)
  after_each(function() H.teardown(t) end)

  local function open(calls, more)
    local opts = { upcasters = upcasters(calls) }
    for k, v in pairs(more or {}) do opts[k] = v end
    s = assert(H.open(t, t.dir, opts))
    return s
  end

  it("are chained and applied by read, all, event and subscribe", function()
    local calls = {}
    open(calls)
    H.assert_same(want, shapes(H.collect(s:read("cart-1"))))
    H.assert_same(want, shapes(H.collect(s:all())))
    H.assert_same(want, shapes(H.collect(s:subscribe({ timeout = 0 }))))
    H.assert_same(want[1], shapes({ s:event(1) })[1])
    H.assert_same({ "v1@1", "v2@1", "v2@2" }, { calls[1], calls[2], calls[3] })
    -- everything else is the stored event's
    local ev = s:event(1)
    assert.equal("cart-1", ev.stream)
    assert.equal(1, ev.version)
    H.assert_same({ v = 1 }, ev.metadata)
    assert.matches("ItemAddedV3", tostring(ev))
  end)

  it("store:all's types filter selects by the stored type, subscribe's by the type as read", function()
    open()
    local got = H.collect(s:all({ types = { "ItemAdded" } }))
    assert.equal(1, #got)
    assert.equal("ItemAddedV3", got[1].type)
    got = H.collect(s:subscribe({ types = { "ItemAddedV3" }, category = "cart", timeout = 0 }))
    H.assert_same({ 1, 2, 3 }, H.pluck(got, "position"))
    assert.equal(0, #H.collect(s:subscribe({ types = { "ItemAdded" }, timeout = 0 })))
  end)

  it("never change the stored bytes: a handle without upcasters, and raw reads, see them as written", function()
    open()
    local _, _, _, _, ty, _, data = s:all({ raw = true })()
    assert.equal("ItemAdded", ty)
    H.assert_same({ count = "3" }, require("eventrocks.core").decode(data))
    s:close()
    local plain = assert(H.open(t, t.dir))
    H.assert_same({ "ItemAdded", "ItemAddedV2", "ItemAddedV3", "Other" }, H.pluck(H.collect(plain:all()), "type"))
  end)

  it("are applied before projections' handlers, catch-up and inline", function()
    open()
    local function handlers(seen)
      return { ItemAddedV3 = function(view, ev)
        seen[#seen + 1] = ev.data.qty .. ev.data.unit
        view:put("n", (view:get("n") or 0) + 1)
      end, Other = function() end }
    end
    local seen, seen_inline = {}, {}
    local p = s:projection("items", { handlers = handlers(seen) })
    assert.same({ 4, 4 }, { p:run() })
    H.assert_same({ "3pcs", "4pcs", "5kg" }, seen)
    local q = s:projection("items-inline", { inline = true, handlers = handlers(seen_inline) })
    assert(s:append("cart-2", { type = "ItemAdded", data = { count = "7" } }))
    H.assert_same({ "3pcs", "4pcs", "5kg", "7pcs" }, seen_inline)
    assert.equal(4, q:get("n"))
  end)

  it("run before an aggregate's own upcast", function()
    open()
    local order = {}
    local Cart = er.aggregate("cart", {
      init = function() return { qty = 0 } end,
      apply = { ItemAddedV4 = function(st, d) st.qty = st.qty + d.qty end, Other = function() end },
      upcast = { ItemAddedV3 = function(d, ev)
        order[#order + 1] = ev.type
        return "ItemAddedV4", { qty = d.qty }
      end },
    })
    local cart = s:repository(Cart):load("1")
    assert.equal(12, cart.state.qty)
    H.assert_same({ "ItemAddedV3", "ItemAddedV3", "ItemAddedV3" }, order)
  end)

  it("an upcaster returning its own type ends the chain; a loop raises", function()
    s = assert(H.open(t, t.dir, { upcasters = {
      ItemAdded = function(d) return "ItemAdded", { qty = tonumber(d.count) } end,
    } }))
    H.assert_same({ type = "ItemAdded", data = { qty = 3 } }, shapes({ s:event(1) })[1])
    s:close()
    s = assert(H.open(t, t.dir, { upcasters = {
      ItemAdded = function(d) return "ItemAddedV2", d end,
      ItemAddedV2 = function(d) return "ItemAdded", d end,
    } }))
    assert.has_error(function() s:event(1) end, "upcasters loop: 'ItemAdded' comes back to itself")
    assert.has_error(function() H.collect(s:read("cart-1")) end)
    s:close()
    s = assert(H.open(t, t.dir, { upcasters = { ItemAdded = function() return 5 end } }))
    local ok, err = pcall(s.event, s, 1)
    assert.is_false(ok)
    assert.matches("the upcaster of 'ItemAdded' returned a type that is not a string", err)
    -- an upcaster's error reaches the reader
    s:close()
    s = assert(H.open(t, t.dir, { upcasters = { ItemAdded = function() error("boom") end } }))
    assert.has_error(function() H.collect(s:all()) end)
    assert.equal("ItemAddedV3", s:event(3).type) -- other types read on
  end)

  it("are checked at open: a table of type name -> function", function()
    assert.has_error(function() er.open(t.dir, { upcasters = { ItemAdded = "ItemAddedV2" } }) end,
      "bad argument #2 to 'open' (upcasters.ItemAdded must be a function, got string)")
    assert.has_error(function() er.open(t.dir, { upcasters = 5 }) end,
      "bad argument #2 to 'open' (upcasters must be a table of event type -> function, got number)")
    assert.has_error(function() er.open(t.dir, { upcasters = { function() end } }) end,
      "bad argument #2 to 'open' (upcasters must be keyed by event type names (strings))")
    assert.has_error(function() er.open(t.dir, { upcaster = {} }) end,
      "bad argument #2 to 'open' (unknown option 'upcaster')")
    -- the caller's table is copied: changing it later changes nothing
    local ups = upcasters()
    s = assert(H.open(t, t.dir, { upcasters = ups }))
    ups.ItemAdded = nil
    assert.equal("ItemAddedV3", s:event(1).type)
    -- an empty table is no upcasting
    s:close()
    s = assert(H.open(t, t.dir, { upcasters = {} }))
    assert.equal("ItemAdded", s:event(1).type)
  end)

  it("apply on a read-only handle too", function()
    s = assert(H.open(t, t.dir, { read_only = true, upcasters = upcasters() }))
    H.assert_same(want, shapes(H.collect(s:all())))
  end)
end)
