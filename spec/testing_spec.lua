-- eventrocks.testing: given / when / expect for aggregates.
local er = require "eventrocks"
local given = require("eventrocks.testing").given

local Product = er.aggregate("tproduct", {
  init = function() return { price = 0 } end,
  apply = {
    ProductCreated = function(s, d) s.name, s.price = d.name, d.price end,
    PriceIncreased = function(s, d) s.price = s.price + d.delta end,
  },
})
function Product:increase_price(delta)
  if delta <= 0 then error("delta must be positive") end
  self:raise("PriceIncreased", { delta = delta }, { reason = "test" })
end

local function exists(path)
  local f = io.open(path, "r")
  if f then f:close() end
  return f ~= nil
end

describe("eventrocks.testing", function()
  local created = { { type = "ProductCreated", data = { name = "Kettle", price = 2500 } } }

  it("passes when the command raises the expected events, and leaves no temporary store behind", function()
    local s = given(Product, "kettle-1", created)
      :when(function(p) p:increase_price(300) end)
      :expect({ { type = "PriceIncreased", data = { delta = 300 } } })
      :expect_state({ name = "Kettle", price = 2800 })
    assert.is_string(s._dir)
    assert.is_false(exists(s._dir))
    given(Product, "kettle-1", created)
      :when(function(p) p:increase_price(300) end)
      :expect({ { type = "PriceIncreased", data = { delta = 300 }, metadata = { reason = "test" } } })
    given(Product, "new", {}):when(function() end):expect({})
  end)

  it("passes when the command fails as expected", function()
    given(Product, "kettle-1", {}):when(function(p) p:increase_price(-1) end):expect_error("positive")
  end)

  it("shows both sides when the events differ", function()
    local ok, err = pcall(function()
      given(Product, "kettle-1", created)
        :when(function(p) p:increase_price(301) end)
        :expect({ { type = "PriceIncreased", data = { delta = 300 } } })
    end)
    assert.is_false(ok)
    assert.truthy(err:find("testing_spec.lua:%d+: expected events:\n  1%. PriceIncreased {delta = 300}\ngot:\n"
      .. "  1%. PriceIncreased {delta = 301}"), err)
    ok, err = pcall(function()
      given(Product, "k", created):when(function(p) p:increase_price(1) end)
        :expect({ { type = "PriceIncreased", data = { delta = 1 }, metadata = { reason = "other" } } })
    end)
    assert.is_false(ok)
    assert.truthy(err:find("metadata {reason = \"test\"}", 1, true), err)
    ok, err = pcall(function() given(Product, "k", created):when(function() end):expect({ { type = "X" } }) end)
    assert.is_false(ok)
    assert.truthy(err:find("got:\n  (no events)", 1, true), err)
  end)

  it("says so when an error was expected and none came, or another came", function()
    local ok, err = pcall(function()
      given(Product, "k", created):when(function(p) p:increase_price(5) end):expect_error("positive")
    end)
    assert.is_false(ok)
    assert.truthy(err:find("but the command succeeded, raising:\n  1. PriceIncreased {delta = 5}", 1, true), err)
    ok, err = pcall(function()
      given(Product, "k", {}):when(function() error("boom") end):expect_error("positive")
    end)
    assert.is_false(ok)
    assert.truthy(err:find("got: .*boom"), err)
    ok, err = pcall(function()
      given(Product, "k", {}):when(function() error("boom") end):expect({})
    end)
    assert.is_false(ok)
    assert.truthy(err:find("but the command raised an error: .*boom"), err)
  end)

  it("refuses what is not a scenario's", function()
    assert.has_error(function() given({}, "k", {}) end)
    assert.has_error(function() given(Product, {}, {}) end)
    assert.has_error(function() given(Product, "k", { { data = 1 } }) end)
    assert.has_error(function() given(Product, "k", {}):expect({}) end, "expect: call when(fn) first")
    local s = given(Product, "k", {}):when(function() end)
    assert.has_error(function() s:when(function() end) end)
    -- given events the store refuses
    local ok, err = pcall(function() given(Product, "k", { { type = "ProductCreated", data = print } }):when(function() end) end)
    assert.is_false(ok)
    assert.truthy(err:find("given: the given events cannot be loaded", 1, true), err)
  end)
end)
