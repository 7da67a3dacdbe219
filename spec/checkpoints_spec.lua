-- One key scheme for the "checkpoints" space (eventrocks.checkpoints), and
-- the keys of stores written before it.
local H = require "helper"
local checkpoints = require "eventrocks.checkpoints"

describe("checkpoints", function()
  local t = {}
  before_each(function() H.setup(t) end)
  after_each(function() H.teardown(t) end)

  local function put_raw(key, value)
    local txn = assert(t.store:_txn())
    assert(txn:put("checkpoints", key, value))
    assert(txn:commit())
    txn:close()
  end
  local function keys()
    local out = {}
    for k in t.store:_scan("checkpoints") do out[#out + 1] = k end
    return out
  end
  local count = function(view) view:put("n", (view:get("n") or 0) + 1) end

  it("a projection named like a relay's old key does not share the relay's checkpoint", function()
    for i = 1, 5 do assert(t.store:append("a-" .. i, { type = "A" })) end
    local relay_cp = assert(checkpoints.write(t.store, "relay", "x", 5))
    assert.is_true(relay_cp)
    local p = t.store:projection("relay:x", { handlers = { A = count } })
    assert.equal(0, p:position())
    assert.same({ 5, 5 }, { p:run() })
    assert.equal(5, p:get("n"))
    assert.equal(5, checkpoints.get(t.store, "relay", "x"))
    assert.equal(5, checkpoints.get(t.store, "projection", "relay:x"))
    assert.same({ "\0projection\0relay:x", "\0relay\0x" }, keys())
  end)

  it("an old store's projection checkpoint (its bare name) is read, and moved to the new key by the next batch",
    function()
      for i = 1, 5 do assert(t.store:append("a-" .. i, { type = "A" })) end
      put_raw("p", 3) -- as an older eventrocks wrote it
      local p = t.store:projection("p", { handlers = { A = count } })
      assert.equal(3, p:position())
      assert.same({ 2, 5 }, { p:run() }) -- events 4 and 5 only: nothing applied twice
      assert.equal(2, p:get("n"))
      assert.same({ "\0projection\0p" }, keys())
    end)

  it("an old relay checkpoint ('relay:' .. name) and JetStream state (name .. '\\0jetstream') are read", function()
    put_raw("relay:r", 7)
    put_raw("q\0jetstream", { seq = 4, position = 9 })
    assert.equal(7, checkpoints.get(t.store, "relay", "r"))
    assert.same({ seq = 4, position = 9 }, checkpoints.get(t.store, "jetstream", "q"))
    assert.is_nil(checkpoints.get(t.store, "projection", "r"))
    assert(checkpoints.write(t.store, "relay", "r", 8))
    assert.same({ "\0relay\0r", "q\0jetstream" }, keys())
  end)

  it("each() names the kind of every checkpoint, old keys included", function()
    put_raw("old", 1)
    put_raw("relay:r", 2)
    put_raw("q\0jetstream", { seq = 1, position = 1 })
    assert(checkpoints.write(t.store, "projection", "new", 3))
    local seen = {}
    for kind, name, v in checkpoints.each(t.store) do seen[#seen + 1] = kind .. " " .. name .. " " .. tostring(type(v)) end
    table.sort(seen)
    assert.same({ "jetstream q table", "projection new number", "projection old number", "relay r number" }, seen)
  end)

  it("refuses a kind it does not know", function()
    assert.has_error(function() checkpoints.get(t.store, "projections", "x") end)
  end)

  it("reset forgets the old key too", function()
    for i = 1, 3 do assert(t.store:append("a-" .. i, { type = "A" })) end
    put_raw("p", 3)
    local p = t.store:projection("p", { handlers = { A = count } })
    assert.equal(3, p:position())
    assert(p:reset())
    assert.equal(0, p:position())
    assert.same({}, keys())
  end)
end)
