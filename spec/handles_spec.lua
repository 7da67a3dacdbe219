local H = require "helper"
local er = require "eventrocks"

describe("a store handle", function()
  local t = {}
  before_each(function() H.setup(t) end)
  after_each(function() H.teardown(t) end)

  it("closes idempotently", function()
    t.store:close()
    t.store:close()
    t.store:close()
    assert.is_truthy(tostring(t.store):find("closed", 1, true))
  end)

  it("close() releases the write lock", function()
    t.store:close()
    local s2, err = H.open(t, t.dir)
    assert.is_truthy(s2, err and err.message)
  end)

  local METHODS = {
    append = function(s) return s:append("s-1", H.ev("A")) end,
    version = function(s) return s:version("s-1") end,
    read = function(s) return s:read("s-1") end,
    all = function(s) return s:all() end,
    event = function(s) return s:event(1) end,
    last_position = function(s) return s:last_position() end,
    streams = function(s) return s:streams() end,
  }
  for name, call in pairs(METHODS) do
    it("raises 'closed' from " .. name .. " after close", function()
      t.store:append("s-1", H.ev("A"))
      t.store:close()
      H.raises_with(function() return call(t.store) end, "closed")
    end)
  end

  it("writes nothing when append is called after close", function()
    t.store:append("s-1", H.ev("A"))
    t.store:close()
    pcall(t.store.append, t.store, "s-1", H.ev("B"))
    local s2 = assert(H.open(t, t.dir))
    assert.equal(1, s2:last_position())
  end)

  describe("tostring", function()
    it("names eventrocks.store and the path", function()
      local s = tostring(t.store)
      assert.is_truthy(s:find("eventrocks.store", 1, true), s)
      assert.is_truthy(s:find(t.dir, 1, true), s)
      assert.is_nil(s:find("closed", 1, true), s)
    end)

    it("says closed after close", function()
      t.store:close()
      local s = tostring(t.store)
      assert.is_truthy(s:find("eventrocks.store", 1, true), s)
      assert.is_truthy(s:find("closed", 1, true), s)
    end)
  end)

  it("is closed at the end of a <close> scope", function()
    t.store:close()
    local held
    do
      local s <close> = assert(er.open(t.dir))
      held = s
      assert.same({ 1, 1 }, { s:append("s-1", H.ev("A")) })
      assert.is_nil(tostring(s):find("closed", 1, true))
    end
    assert.is_truthy(tostring(held):find("closed", 1, true))
    H.raises_with(function() return held:version("s-1") end, "closed")
    local s2, err = H.open(t, t.dir)
    assert.is_truthy(s2, err and err.message)
    assert.equal(1, s2:version("s-1"))
  end)

  it("is closed when a <close> scope is left by an error", function()
    t.store:close()
    local held
    local ok = pcall(function()
      local s <close> = assert(er.open(t.dir))
      held = s
      error("boom")
    end)
    assert.is_false(ok)
    assert.is_truthy(tostring(held):find("closed", 1, true))
    local s2, err = H.open(t, t.dir)
    assert.is_truthy(s2, err and err.message)
  end)

  it("releases the lock when collected without close", function()
    t.store:close()
    ;(function()
      local s = assert(er.open(t.dir))
      s:append("s-1", H.ev("A", "gc"))
    end)()
    collectgarbage()
    collectgarbage()
    local s2, err = H.open(t, t.dir)
    assert.is_truthy(s2, err and err.message)
    assert.equal("gc", s2:event(1).data)
  end)

  it("survives being collected after close", function()
    ;(function()
      local s = assert(er.open(t.dir .. "/other"))
      s:close()
    end)()
    collectgarbage()
    collectgarbage()
    local s2, err = H.open(t, t.dir .. "/other")
    assert.is_truthy(s2, err and err.message)
  end)

  it("can be opened and closed many times", function()
    t.store:close()
    for i = 1, 30 do
      local s = assert(er.open(t.dir))
      assert.same({ i, i }, { s:append("s-1", H.ev("A", i)) })
      s:close()
    end
    local s = assert(H.open(t, t.dir))
    assert.equal(30, s:version("s-1"))
  end)

  it("raises when a method gets something else than a store as self", function()
    local append = t.store.append
    assert.is_function(append)
    H.raises(function() return append({}, "s-1", H.ev("A")) end)
    H.raises(function() return append(nil, "s-1", H.ev("A")) end)
    H.raises(function() return t.store.version("s-1") end)
    assert.equal(0, t.store:last_position())
  end)

  it("of two stores in different directories are independent", function()
    local other = assert(H.open(t, t.dir .. "/b"))
    t.store:append("s-1", H.evs(3))
    other:append("s-1", H.ev("A"))
    assert.equal(3, t.store:version("s-1"))
    assert.equal(1, other:version("s-1"))
    assert.equal(1, other:last_position())
  end)
end)

describe("a transaction handle", function()
  local core = require "eventrocks.core"
  local t = {}
  before_each(function() H.setup(t) end)
  after_each(function() H.teardown(t) end)

  it("closes idempotently with close(), and is finished after", function()
    local txn = assert(t.store:_txn())
    assert.is_truthy(tostring(txn):find("open", 1, true))
    assert.is_nil(txn.free)
    txn:close()
    txn:close()
    assert.is_truthy(tostring(txn):find("finished", 1, true))
    H.raises_with(function() return txn:put("checkpoints", "k", 1) end, "finished transaction")
    H.raises_with(function() return txn:commit() end, "finished transaction")
  end)

  it("writes nothing when closed without a commit, also at the end of a <close> scope", function()
    do
      local txn <close> = assert(t.store:_txn())
      assert(txn:append("s-1", H.ev("A")))
      txn:put("checkpoints", "k", 1)
    end
    local txn = assert(t.store:_txn())
    assert(txn:append("s-1", H.ev("B")))
    txn:close()
    assert.equal(0, t.store:last_position())
    assert.is_nil(t.store:_get("checkpoints", "k"))
  end)

  it("keeps what it committed after close()", function()
    local txn = assert(t.store:_txn())
    assert(txn:append("s-1", H.ev("A")))
    assert(txn:commit())
    txn:close()
    assert.equal(1, t.store:version("s-1"))
  end)
end)
