-- Small things a Lua user runs into: calling an iterator directly, an
-- event table without a type, a float aggregate id, an error inside an
-- apply handler.
local H = require "helper"
local er = H.er

describe("the iterators", function()
  local t = {}
  before_each(function() H.setup(t) end)
  after_each(function() H.teardown(t) end)

  it("called directly (store:read(s)()) give their first value, then the next ones", function()
    local s = t.store
    assert(s:append("a-1", { H.ev("A", 1), H.ev("B", 2) }))
    local ev = s:read("a-1")()
    assert.equal("A", ev.type)
    assert.equal(1, ev.data)
    local it = s:read("a-1", { backward = true })
    assert.equal(2, it().version)
    assert.equal(1, it().version)
    assert.is_nil(it())
    assert.equal(1, s:all()().position)
    assert.same({ "a-1", 2 }, { s:streams()() })
  end)
end)

describe("an event table", function()
  local t = {}
  before_each(function() H.setup(t) end)
  after_each(function() H.teardown(t) end)

  it("without a type says so, and appends nothing", function()
    local s = t.store
    H.raises_with(function() s:append("a-1", { data = { x = 1 } }) end, "event 1 has no type")
    H.raises_with(function() s:append("a-1", {}) end, "no events to append")
    assert.equal(0, s:last_position())
  end)
end)

describe("aggregates", function()
  local t = {}
  before_each(function() H.setup(t) end)
  after_each(function() H.teardown(t) end)

  local Acct = er.aggregate("acct", {
    init = function() return { balance = 0 } end,
    apply = {
      Deposited = function(st, d) st.balance = st.balance + d.amount end,
      Broken = function(st, d) return st.missing.field end,
    },
  })
  function Acct:deposit(n) self:raise("Deposited", { amount = n }) end

  it("with a float id of an integer value (101.0) name the same stream as 101", function()
    local repo = t.store:repository(Acct)
    assert(repo:update(101, function(a) a:deposit(5) end))
    local a = repo:load(101.0)
    assert.equal("acct-101", a.stream)
    assert.equal(5, a.state.balance)
    assert(repo:update(101.0, function(b) b:deposit(1) end))
    assert.equal(2, t.store:version("acct-101"))
    assert.equal(0, t.store:version("acct-101.0"))
    assert.equal("acct-1.5", repo:load(1.5).stream)
    H.raises_with(function() repo:load(0 / 0) end, "finite")
    H.raises_with(function() repo:load(math.huge) end, "finite")
  end)

  it("report an error inside an apply handler with the stream and the event's version", function()
    local s = t.store
    local repo = s:repository(Acct)
    assert(repo:update("7", function(a) a:deposit(5) end))
    assert(s:append("acct-7", { type = "Broken", data = {} }))
    local ok, err = pcall(repo.load, repo, "7")
    assert.is_false(ok)
    assert.matches("acct-7@2", err, 1, true)
    assert.matches("Broken", err, 1, true)
    assert.matches("missing", err, 1, true) -- the handler's own message
    ok, err = pcall(repo.history, repo, "7")
    assert.is_false(ok)
    assert.matches("acct-7@2", err, 1, true)
    -- up to version 1 it loads
    assert.equal(5, repo:load("7", { version = 1 }).state.balance)
  end)
end)
