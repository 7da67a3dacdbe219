-- Aggregates: er.aggregate, store:repository, load/save/update, raise,
-- instance fields, snapshots, time travel, upcasting (doc/api.md,
-- "Aggregates and repositories").
local H = require "helper"
local er = require "eventrocks"
local core = require "eventrocks.core"

-- ---------------------------------------------------------------------------
-- Fixtures

-- A counter: Added adds d.n to total and appends it to items; Reset returns a
-- new state table (the return value replaces the state); Deep writes deep
-- inside the state; Boom fails after changing the state.
local function counter_apply(calls)
  local function count(ev)
    if calls then calls[#calls + 1] = ev.version end
  end
  return {
    Added = function(s, d, ev)
      count(ev)
      s.total = s.total + d.n
      s.items[#s.items + 1] = d.n
    end,
    Reset = function(s, d, ev)
      count(ev)
      return { id = s.id, total = 0, items = {}, resets = (s.resets or 0) + 1 }
    end,
    Deep = function(s, d, ev)
      count(ev)
      s.deep = s.deep or { a = { b = { list = {} } } }
      local l = s.deep.a.b.list
      l[#l + 1] = d.v
    end,
    Boom = function(s, d, ev)
      count(ev)
      s.total = s.total + 1000
      s.deep = s.deep or { a = { b = { list = {} } } }
      s.deep.a.b.list[#s.deep.a.b.list + 1] = "boom"
      error("boom handler failed")
    end,
  }
end

local function counter_init(id) return { id = id, total = 0, items = {} } end

local function define(extra, calls, name)
  local spec = { init = counter_init, apply = counter_apply(calls) }
  for k, v in pairs(extra or {}) do spec[k] = v end
  local C = er.aggregate(name or "counter", spec)
  function C:add(n)
    if type(n) ~= "number" or n <= 0 then error("n must be positive") end
    self:raise("Added", { n = n })
    return "added", n
  end
  function C:add_then_fail(n)
    self:raise("Added", { n = n })
    error("failed after raising")
  end
  return C
end

-- The state a counter has after Added events with these n values.
local function folded(id, ns)
  local s = counter_init(id)
  for _, n in ipairs(ns) do
    s.total = s.total + n
    s.items[#s.items + 1] = n
  end
  return s
end

local function added(ns)
  local out = {}
  for i, n in ipairs(ns) do out[i] = { type = "Added", data = { n = n } } end
  return out
end

local function range(a, b)
  local out = {}
  for i = a, b do out[#out + 1] = i end
  return out
end

local function snapshot(store, stream)
  return store:_get("snapshots", stream)
end

local function snapshot_keys(store)
  local out = {}
  for k, v in store:_scan("snapshots") do out[#out + 1] = { k, v.version } end
  return out
end

-- raise `ns` as Added events on agg, then save; returns the new version.
local function save_added(repo, agg, ns)
  for _, n in ipairs(ns) do agg:add(n) end
  local v, err = repo:save(agg)
  assert.is_truthy(v, err and err.message)
  return v
end

local function wait_for_clock_tick()
  -- event times are microseconds; make sure the next append is later
  local t0 = os.clock()
  while os.clock() - t0 < 0.003 do end
end

describe("aggregates", function()
  local t = {}
  before_each(function() H.setup(t) end)
  after_each(function() H.teardown(t) end)

  -- -------------------------------------------------------------------------
  describe("er.aggregate", function()
    it("returns a class whose methods are available on loaded instances", function()
      local C = define()
      assert.is_table(C)
      local agg = t.store:repository(C):load("1")
      assert.same({ "added", 2 }, { agg:add(2) })
      assert.equal(2, agg.state.total)
      assert.is_function(agg.raise)
      assert.is_function(agg.pending)
    end)

    it("accepts init omitted (state {}), snapshot_every 1, schema numbers and strings", function()
      local C = er.aggregate("bare", { apply = { E = function(s, d) s.n = (s.n or 0) + d end } })
      local agg = t.store:repository(C):load("x")
      H.assert_same({}, agg.state)
      agg:raise("E", 2)
      H.assert_same({ n = 2 }, agg.state)
      assert.has_no.errors(function() er.aggregate("a", { apply = {}, snapshot_every = 1 }) end)
      assert.has_no.errors(function() er.aggregate("a", { apply = {}, schema = 2 }) end)
      assert.has_no.errors(function() er.aggregate("a", { apply = {}, schema = "v2" }) end)
    end)

    local BAD = {
      { "missing apply", "p", { init = counter_init }, { "p", "apply" } },
      { "apply not a table", "p", { apply = function() end }, { "p", "apply" } },
      { "non-function handler", "p", { apply = { Ok = function() end, Broken = 42 } }, { "p", "Broken", "function" } },
      { "handler that is a table", "p", { apply = { Broken = {} } }, { "Broken", "function" } },
      { "snapshot_every = 0", "p", { apply = {}, snapshot_every = 0 }, { "snapshot_every" } },
      { "snapshot_every = -1", "p", { apply = {}, snapshot_every = -1 }, { "snapshot_every" } },
      { "snapshot_every = 1.5", "p", { apply = {}, snapshot_every = 1.5 }, { "snapshot_every" } },
      { "snapshot_every a string", "p", { apply = {}, snapshot_every = "10" }, { "snapshot_every" } },
      { "non-function init", "p", { apply = {}, init = { price = 0 } }, { "init" } },
      { "non-function upcast", "p", { apply = {}, upcast = { Old = "New" } }, { "upcast", "Old" } },
      { "upcast not a table", "p", { apply = {}, upcast = 1 }, { "upcast" } },
      { "schema a table", "p", { apply = {}, schema = {} }, { "schema" } },
      { "name with '-'", "order-line", { apply = {} }, { "name", "-" } },
      { "empty name", "", { apply = {} }, { "name" } },
      { "name not a string", 42, { apply = {} }, { "name" } },
      { "spec not a table", "p", "spec", { "spec" } },
    }
    for _, c in ipairs(BAD) do
      it("refuses an invalid spec at definition time: " .. c[1], function()
        local msg = H.raises_with(function() local C = er.aggregate(c[2], c[3]) return C end, table.unpack(c[4]))
        -- the error points at the caller (this file), not into the library
        assert.is_truthy(msg:find("aggregate_spec.lua", 1, true), msg)
      end)
    end
  end)

  -- -------------------------------------------------------------------------
  describe("a new aggregate (absent stream)", function()
    it("has version 0, the init state, no pending events, id and stream", function()
      local seen = {}
      local C = er.aggregate("counter", {
        init = function(id) seen[#seen + 1] = id return counter_init(id) end,
        apply = counter_apply(),
      })
      local agg = t.store:repository(C):load("7")
      assert.equal(0, agg.version)
      assert.equal("integer", math.type(agg.version))
      H.assert_same({ id = "7", total = 0, items = {} }, agg.state)
      assert.same({ "7" }, seen)
      assert.equal("7", agg.id)
      assert.equal("counter-7", agg.stream)
      assert.same({}, agg:pending())
      assert.equal(0, t.store:last_position(), "load wrote something")
    end)

    it("gets a fresh init state on every load", function()
      local repo = t.store:repository(define())
      local a = repo:load("1")
      a.state.items[1] = "mutated"
      local b = repo:load("1")
      H.assert_same(counter_init("1"), b.state)
    end)

    it("takes ids given as numbers: id is the string, stream name .. '-' .. id", function()
      local seen
      local C = er.aggregate("counter", {
        init = function(id) seen = id return counter_init(id) end, apply = counter_apply(),
      })
      local repo = t.store:repository(C)
      local agg = repo:load(42)
      assert.equal("42", agg.id)
      assert.equal("counter-42", agg.stream)
      assert.equal("42", seen)
      agg:raise("Added", { n = 1 })
      assert.equal(1, repo:save(agg))
      assert.equal(1, t.store:version("counter-42"))
      assert.equal(1, repo:load("42").version)
      assert.equal(1, repo:load(42).state.total)
      assert.equal(2, t.store:repository(C):update(42, function(a) a:raise("Added", { n = 1 }) end).version)
    end)

    it("refuses bad ids", function()
      local repo = t.store:repository(define())
      H.raises_with(function() return repo:load("") end, "id")
      H.raises_with(function() return repo:load({}) end, "id")
      H.raises_with(function() return repo:load(nil) end, "id")
    end)

    it("store:repository refuses what is not an aggregate", function()
      H.raises_with(function() return t.store:repository({}) end, "aggregate")
      H.raises_with(function() return t.store:repository(nil) end, "aggregate")
    end)
  end)

  -- -------------------------------------------------------------------------
  describe("raise", function()
    it("applies the event to the state at once and queues it", function()
      local agg = t.store:repository(define()):load("1")
      agg:raise("Added", { n = 5 })
      H.assert_same({ id = "1", total = 5, items = { 5 } }, agg.state)
      assert.equal(1, agg.version)
      local p = agg:pending()
      assert.equal(1, #p)
      assert.equal("Added", p[1].type)
      H.assert_same({ n = 5 }, p[1].data)
      H.assert_same({}, p[1].metadata)
      assert.is_true(H.is_uuid7(p[1].id), tostring(p[1].id))
      assert.equal(0, t.store:last_position(), "raise wrote to the store")
    end)

    it("queues metadata and gives each event its own id", function()
      local agg = t.store:repository(define()):load("1")
      agg:raise("Added", { n = 1 }, { user = "ann", n = 1.5 })
      agg:raise("Added", { n = 2 })
      local p = agg:pending()
      assert.equal(2, #p)
      H.assert_same({ user = "ann", n = 1.5 }, p[1].metadata)
      H.assert_same({}, p[2].metadata)
      assert.are_not.equal(p[1].id, p[2].id)
      assert.is_true(H.is_uuid7(p[2].id))
    end)

    it("passes (state, data, event) to the handler; a non-nil return replaces the state", function()
      local got = {}
      local C = er.aggregate("k", {
        init = function() return { n = 0 } end,
        apply = {
          Inc = function(s, d, ev) got[#got + 1] = { s = s, d = d, type = ev.type, version = ev.version } s.n = s.n + d end,
          Replace = function(s, d) return { n = d, replaced = true } end,
          Keep = function(s) s.kept = true return nil end,
        },
      })
      local agg = t.store:repository(C):load("1")
      local before = agg.state
      agg:raise("Inc", 3)
      assert.equal(before, got[1].s)
      assert.equal(3, got[1].d)
      assert.equal("Inc", got[1].type)
      assert.equal(1, got[1].version)
      agg:raise("Replace", 10)
      H.assert_same({ n = 10, replaced = true }, agg.state)
      agg:raise("Keep", nil)
      H.assert_same({ n = 10, replaced = true, kept = true }, agg.state)
      assert.equal(3, agg.version)
    end)

    it("counts pending events in version", function()
      local repo = t.store:repository(define())
      t.store:append("counter-1", added({ 1, 2 }))
      local agg = repo:load("1")
      assert.equal(2, agg.version)
      agg:add(3)
      agg:add(4)
      agg:add(5)
      assert.equal(5, agg.version)
      assert.equal(3, #agg:pending())
      assert.equal(15, agg.state.total)
    end)

    it("with a type that has no handler raises an error naming the type and queues nothing", function()
      local agg = t.store:repository(define()):load("1")
      agg:add(1)
      local msg = H.raises(function() agg:raise("PriceDoubled", { n = 2 }) end)
      assert.is_truthy(msg:find("PriceDoubled", 1, true), msg)
      assert.equal(1, #agg:pending())
      assert.equal(1, agg.version)
      H.assert_same(folded("1", { 1 }), agg.state)
    end)

    it("outside a command, with a failing handler, changes nothing (deep state too)", function()
      local agg = t.store:repository(define()):load("1")
      agg:add(1)
      agg:raise("Deep", { v = "x" })
      local expected_state = { id = "1", total = 1, items = { 1 }, deep = { a = { b = { list = { "x" } } } } }
      H.assert_same(expected_state, agg.state)
      local msg = H.raises(function() agg:raise("Boom", {}) end)
      assert.is_truthy(msg:find("boom handler failed", 1, true), msg)
      H.assert_same(expected_state, agg.state)
      assert.equal(2, agg.version)
      assert.equal(2, #agg:pending())
      assert.same({ "Added", "Deep" }, H.pluck(agg:pending(), "type"))
    end)

    it("refuses a bad type or metadata", function()
      local agg = t.store:repository(define()):load("1")
      H.raises_with(function() agg:raise(nil, {}) end, "type")
      H.raises_with(function() agg:raise("", {}) end, "type")
      H.raises_with(function() agg:raise("Added", { n = 1 }, "meta") end, "metadata")
      assert.same({}, agg:pending())
      assert.equal(0, agg.version)
    end)
  end)

  -- -------------------------------------------------------------------------
  describe("pending", function()
    it("returns the queued events oldest first", function()
      local agg = t.store:repository(define()):load("1")
      agg:add(1)
      agg:raise("Deep", { v = 1 })
      agg:add(3)
      local p = agg:pending()
      assert.same({ "Added", "Deep", "Added" }, H.pluck(p, "type"))
      H.assert_same({ { n = 1 }, { v = 1 }, { n = 3 } }, H.pluck(p, "data"))
    end)

    it("returns copies: changing the result does not change the queue", function()
      local repo = t.store:repository(define())
      local agg = repo:load("1")
      agg:add(1)
      agg:add(2)
      local p = agg:pending()
      p[1].type = "Hacked"
      p[1].metadata = { evil = true }
      table.remove(p, 2)
      p[3] = { type = "Added", data = { n = 9 } }
      local q = agg:pending()
      assert.same({ "Added", "Added" }, H.pluck(q, "type"))
      H.assert_same({}, q[1].metadata)
      assert.equal(2, repo:save(agg))
      local stored = H.collect(t.store:read("counter-1"))
      assert.same({ "Added", "Added" }, H.pluck(stored, "type"))
      H.assert_same({ {}, {} }, H.pluck(stored, "metadata"))
    end)

    it("returns copies: changing the data of a returned event does not change the queue", function()
      local agg = t.store:repository(define()):load("1")
      agg:add(1)
      agg:pending()[1].data.n = 99
      H.assert_same({ n = 1 }, agg:pending()[1].data)
    end)
  end)

  -- -------------------------------------------------------------------------
  describe("commands", function()
    it("that raise one event and then fail leave state, version and queue as before", function()
      local agg = t.store:repository(define()):load("1")
      agg:add(1)
      local msg = H.raises(function() agg:add_then_fail(5) end)
      assert.is_truthy(msg:find("failed after raising", 1, true), msg)
      H.assert_same(folded("1", { 1 }), agg.state)
      assert.equal(1, agg.version)
      assert.equal(1, #agg:pending())
      H.assert_same({ n = 1 }, agg:pending()[1].data)
    end)

    it("that fail with nothing queued before leave the init state", function()
      local agg = t.store:repository(define()):load("1")
      H.raises(function() agg:add_then_fail(5) end)
      H.assert_same(counter_init("1"), agg.state)
      assert.equal(0, agg.version)
      assert.same({}, agg:pending())
      assert.equal(0, t.store:last_position())
    end)

    it("that fail restore state tables deep inside", function()
      local C = define()
      function C:deep_then_fail()
        self:raise("Deep", { v = 2 })
        self:raise("Deep", { v = 3 })
        self.state.deep.a.b.extra = true
        error("deep failure")
      end
      local agg = t.store:repository(C):load("1")
      agg:raise("Deep", { v = 1 })
      local inner = agg.state.deep.a.b.list
      H.raises_with(function() agg:deep_then_fail() end, "deep failure")
      H.assert_same({ id = "1", total = 0, items = {}, deep = { a = { b = { list = { 1 } } } } }, agg.state)
      assert.equal(1, agg.version)
      assert.equal(1, #agg:pending())
      -- and the aggregate keeps working after the rollback
      agg:raise("Deep", { v = 4 })
      H.assert_same({ 1, 4 }, agg.state.deep.a.b.list)
      assert.is_table(inner)
    end)

    it("that fail after a handler returned a new state put the old state back", function()
      local C = define()
      function C:reset_then_fail()
        self:raise("Reset", {})
        error("after reset")
      end
      local agg = t.store:repository(C):load("1")
      agg:add(4)
      H.raises_with(function() agg:reset_then_fail() end, "after reset")
      H.assert_same(folded("1", { 4 }), agg.state)
      assert.equal(1, agg.version)
    end)

    it("that raise a type without a handler fail and keep nothing", function()
      local C = define()
      function C:bad()
        self:raise("Added", { n = 2 })
        self:raise("NoSuchType", {})
      end
      local agg = t.store:repository(C):load("1")
      local msg = H.raises(function() agg:bad() end)
      assert.is_truthy(msg:find("NoSuchType", 1, true), msg)
      H.assert_same(counter_init("1"), agg.state)
      assert.equal(0, agg.version)
      assert.same({}, agg:pending())
    end)

    it("that fail inside a handler (Boom) keep nothing of the command", function()
      local C = define()
      function C:add_then_boom()
        self:add(2)
        self:raise("Boom", {})
      end
      local agg = t.store:repository(C):load("1")
      agg:add(1)
      H.raises_with(function() agg:add_then_boom() end, "boom handler failed")
      H.assert_same(folded("1", { 1 }), agg.state)
      assert.equal(1, agg.version)
      assert.equal(1, #agg:pending())
    end)

    it("nested: an outer command that fails after an inner one succeeded undoes both", function()
      local C = define()
      function C:two_then_fail()
        self:add(1)           -- a command inside a command
        self:add(2)
        error("outer failed")
      end
      local agg = t.store:repository(C):load("1")
      agg:add(10)
      H.raises_with(function() agg:two_then_fail() end, "outer failed")
      H.assert_same(folded("1", { 10 }), agg.state)
      assert.equal(1, agg.version)
      assert.equal(1, #agg:pending())
    end)

    it("nested: an inner command that fails is undone even when the outer one catches the error", function()
      local C = define()
      function C:tolerant()
        self:add(1)
        local ok = pcall(self.add_then_fail, self, 50)
        assert(not ok)
        self:add(2)
      end
      local agg = t.store:repository(C):load("1")
      agg:tolerant()
      H.assert_same(folded("1", { 1, 2 }), agg.state)
      assert.equal(2, agg.version)
      H.assert_same({ { n = 1 }, { n = 2 } }, H.pluck(agg:pending(), "data"))
    end)

    it("that change the state directly before raising and then fail leave the state as before the command", function()
      local C = define()
      function C:touch_raise_fail()
        self.state.touched = true
        self:raise("Added", { n = 1 })
        error("touched")
      end
      local agg = t.store:repository(C):load("1")
      H.raises_with(function() agg:touch_raise_fail() end, "touched")
      H.assert_same(counter_init("1"), agg.state)
      assert.equal(0, agg.version)
    end)

    it("that succeed return their results and keep their events", function()
      local agg = t.store:repository(define()):load("1")
      local a, b = agg:add(3)
      assert.equal("added", a)
      assert.equal(3, b)
      assert.equal(1, #agg:pending())
    end)

    it("propagate non-string error values unchanged", function()
      local C = define()
      local e = { code = "rule" }
      function C:fail_with_table() self:raise("Added", { n = 1 }) error(e) end
      local agg = t.store:repository(C):load("1")
      local ok, got = pcall(agg.fail_with_table, agg)
      assert.is_false(ok)
      assert.equal(e, got)
      assert.equal(0, agg.version)
    end)

    it("defined again (same name) are still rolled back on error", function()
      local C = define()
      function C:cmd() self:raise("Added", { n = 1 }) end
      function C:cmd() self:raise("Added", { n = 2 }) error("redefined fails") end
      local agg = t.store:repository(C):load("1")
      H.raises_with(function() agg:cmd() end, "redefined fails")
      assert.equal(0, agg.version)
      assert.same({}, agg:pending())
      H.assert_same(counter_init("1"), agg.state)
    end)
  end)

  -- -------------------------------------------------------------------------
  describe("tostring", function()
    it("shows name, id, version and the number of pending events", function()
      local repo = t.store:repository(define())
      local agg = repo:load("7")
      assert.equal("counter 7 (version 0, 0 pending)", tostring(agg))
      agg:add(1)
      agg:add(2)
      assert.equal("counter 7 (version 2, 2 pending)", tostring(agg))
      repo:save(agg)
      assert.equal("counter 7 (version 2, 0 pending)", tostring(agg))
      agg:add(3)
      assert.equal("counter 7 (version 3, 1 pending)", tostring(agg))
      assert.equal("counter 42 (version 0, 0 pending)", tostring(repo:load(42)))
    end)
  end)

  -- -------------------------------------------------------------------------
  describe("save", function()
    it("appends the queued events with their types, data, metadata and ids, and clears the queue", function()
      local repo = t.store:repository(define())
      local agg = repo:load("1")
      agg:add(1)
      agg:raise("Added", { n = 2 }, { user = "ann" })
      agg:raise("Deep", { v = { 1.5, "x", true } })
      local ids = H.pluck(agg:pending(), "id")
      local v = repo:save(agg)
      assert.equal(3, v)
      assert.equal("integer", math.type(v))
      assert.equal(3, agg.version)
      assert.same({}, agg:pending())
      local stored = H.collect(t.store:read("counter-1"))
      assert.same({ "Added", "Added", "Deep" }, H.pluck(stored, "type"))
      H.assert_same({ { n = 1 }, { n = 2 }, { v = { 1.5, "x", true } } }, H.pluck(stored, "data"))
      H.assert_same({ {}, { user = "ann" }, {} }, H.pluck(stored, "metadata"))
      assert.same(ids, H.pluck(stored, "id"))
      assert.same({ 1, 2, 3 }, H.pluck(stored, "version"))
      assert.equal(3, t.store:last_position())
    end)

    it("appends the next events after the saved ones (expected = new version)", function()
      local repo = t.store:repository(define())
      local agg = repo:load("1")
      assert.equal(1, save_added(repo, agg, { 1 }))
      assert.equal(3, save_added(repo, agg, { 2, 3 }))
      assert.equal(3, t.store:version("counter-1"))
      H.assert_same(folded("1", { 1, 2, 3 }), repo:load("1").state)
    end)

    it("uses expected = the loaded version: a write after load makes it conflict", function()
      local repo = t.store:repository(define())
      t.store:append("counter-1", added({ 1, 2 }))
      local agg = repo:load("1")
      agg:add(3)
      t.store:append("other-1", H.ev("X"))          -- other streams do not matter
      assert.equal(3, repo:save(agg))
      agg:add(4)
      t.store:append("counter-1", added({ 100 }))   -- someone else writes
      local v, err = repo:save(agg)
      assert.is_nil(v)
      H.check_err(err, "wrong_expected_version")
      assert.equal(3, err.expected)
      assert.equal(4, err.actual)
    end)

    it("with nothing queued writes nothing and returns the version", function()
      local repo = t.store:repository(define())
      local fresh = repo:load("1")
      assert.equal(0, repo:save(fresh))
      assert.equal(0, t.store:last_position())
      assert.equal(0, t.store:version("counter-1"))
      t.store:append("counter-2", added({ 1, 2 }))
      local agg = repo:load("2")
      local last = t.store:last_position()
      assert.equal(2, repo:save(agg))
      assert.equal(last, t.store:last_position())
      save_added(repo, agg, { 3 })
      last = t.store:last_position()
      assert.equal(3, repo:save(agg))
      assert.equal(last, t.store:last_position())
    end)

    it("of a new aggregate conflicts when the stream was created meanwhile", function()
      local repo = t.store:repository(define())
      local agg = repo:load("1")
      agg:add(1)
      t.store:append("counter-1", added({ 5 }))
      local v, err = repo:save(agg)
      assert.is_nil(v)
      H.check_err(err, "wrong_expected_version")
    end)

    it("conflicts between two loaded copies: nil, err, the queue kept, and reload + replay works", function()
      local repo = t.store:repository(define())
      t.store:append("counter-1", added({ 1 }))
      local a, b = repo:load("1"), repo:load("1")
      a:add(2)
      b:add(30)
      b:add(40)
      assert.equal(2, repo:save(a))
      local before = H.state(t.store, "counter-1")
      local v, err = repo:save(b)
      assert.is_nil(v)
      H.check_err(err, "wrong_expected_version")
      assert.same(before, H.state(t.store, "counter-1"), "a conflicting save wrote something")
      -- the queue is kept, and so are state and version
      assert.equal(2, #b:pending())
      H.assert_same({ { n = 30 }, { n = 40 } }, H.pluck(b:pending(), "data"))
      assert.equal(3, b.version)
      H.assert_same(folded("1", { 1, 30, 40 }), b.state)
      -- saving again still conflicts
      assert.is_nil((repo:save(b)))
      assert.same(before, H.state(t.store, "counter-1"))
      -- reload and replay the intent on fresh state
      local c = repo:load("1")
      assert.equal(2, c.version)
      for _, ev in ipairs(b:pending()) do c:raise(ev.type, ev.data, ev.metadata) end
      assert.equal(4, repo:save(c))
      H.assert_same(folded("1", { 1, 2, 30, 40 }), repo:load("1").state)
    end)

    it("refuses an aggregate of another class", function()
      local C1, C2 = define(), define()
      local agg = t.store:repository(C1):load("1")
      agg:add(1)
      H.raises_with(function() return t.store:repository(C2):save(agg) end, "save")
      H.raises_with(function() return t.store:repository(C1):save({}) end, "save")
      assert.equal(0, t.store:last_position())
    end)

    it("raises for data that cannot be stored and writes nothing", function()
      local repo = t.store:repository(define())
      local agg = repo:load("1")
      agg:raise("Deep", { v = function() end })
      H.raises(function() return repo:save(agg) end)
      assert.equal(0, t.store:last_position())
    end)
  end)

  -- -------------------------------------------------------------------------
  describe("load", function()
    it("rebuilds the state from the stored events", function()
      local repo = t.store:repository(define())
      t.store:append("counter-1", added({ 1, 2 }))
      t.store:append("counter-1", { { type = "Reset", data = {} } })
      t.store:append("counter-1", added({ 7 }))
      t.store:append("counter-2", added({ 1000 }))
      local agg = repo:load("1")
      assert.equal(4, agg.version)
      H.assert_same({ id = "1", total = 7, items = { 7 }, resets = 1 }, agg.state)
      assert.same({}, agg:pending())
      assert.equal("counter 1 (version 4, 0 pending)", tostring(agg))
    end)

    it("passes the stored event to handlers", function()
      local seen = {}
      local C = er.aggregate("k", { apply = { E = function(s, d, ev)
        seen[#seen + 1] = { type = ev.type, version = ev.version, stream = ev.stream,
          meta = ev.metadata, time = math.type(ev.time), id = ev.id }
      end } })
      t.store:append("k-1", H.ev("E", 1, { who = "bob" }))
      t.store:repository(C):load("1")
      assert.equal(1, #seen)
      assert.equal("E", seen[1].type)
      assert.equal(1, seen[1].version)
      assert.equal("k-1", seen[1].stream)
      H.assert_same({ who = "bob" }, seen[1].meta)
      assert.equal("integer", seen[1].time)
      assert.is_true(H.is_uuid7(seen[1].id))
    end)

    it("builds the event table only for handlers that take it: (state, data) or (state, data, ev) or (...)", function()
      local got = {}
      local C = er.aggregate("k", { init = function() return { n = 0 } end, apply = {
        Two = function(s, d) got[#got + 1] = { "two", d.v, select("#", d) } s.n = s.n + d.v end,
        Three = function(s, d, ev) got[#got + 1] = { "three", d.v, ev.version, ev.type, ev.stream } end,
        Var = function(...) local s, d, ev = ... got[#got + 1] = { "var", d.v, ev.version, select("#", ...) } end,
        New = function(s, d) return { n = s.n * 100 + d.v } end, -- a result replaces the state
        Nothing = function(s, d) got[#got + 1] = { "nothing", d == nil } end,
      } })
      t.store:append("k-1", { H.ev("Two", { v = 1 }), H.ev("Three", { v = 2 }), H.ev("Var", { v = 3 }),
        H.ev("Two", { v = 4 }), H.ev("New", { v = 5 }), { type = "Nothing" } })
      local agg = t.store:repository(C):load("1")
      assert.same({ { "two", 1, 1 }, { "three", 2, 2, "Three", "k-1" }, { "var", 3, 3, 3 }, { "two", 4, 1 },
        { "nothing", true } }, got)
      assert.same({ n = 505 }, agg.state)
      assert.equal(6, agg.version)
      -- the same through a count and a time limit
      got = {}
      agg = t.store:repository(C):load("1", { version = 2 })
      assert.same({ n = 1 }, agg.state)
      assert.equal(2, agg.version)
      local evs = H.collect(t.store:read("k-1"))
      agg = t.store:repository(C):load("1", { time = evs[1].time })
      assert.is_true(agg.version >= 1)
    end)

    it("of a handler that fails names the aggregate, type, stream and version; an error table keeps its text", function()
      local C = er.aggregate("k", { apply = {
        A = function() end,
        B = function(s, d) error("bad " .. d.v, 0) end,
        T = function() error(setmetatable({}, { __tostring = function() return "table error" end })) end,
      } })
      t.store:append("k-1", { H.ev("A", {}), H.ev("B", { v = 7 }) })
      local msg = H.raises(function() return t.store:repository(C):load("1") end)
      assert.equal("aggregate 'k': apply handler for 'B' failed at k-1@2: bad 7", msg)
      t.store:append("k-2", { H.ev("T", {}) })
      msg = H.raises(function() return t.store:repository(C):load("2") end)
      assert.equal("aggregate 'k': apply handler for 'T' failed at k-2@1: table error", msg)
      -- the store is still usable: nothing was left open
      assert.equal(2, t.store:version("k-1"))
    end)

    it("of events whose type has no handler raises an error naming the type and version", function()
      local repo = t.store:repository(define())
      t.store:append("counter-1", added({ 1, 2 }))
      t.store:append("counter-1", H.ev("Mystery", {}))
      local msg = H.raises(function() return repo:load("1") end)
      assert.is_truthy(msg:find("Mystery", 1, true), msg)
      assert.is_truthy(msg:find("3", 1, true), msg)
      assert.is_truthy(msg:find("version", 1, true), msg)
    end)
  end)

  -- -------------------------------------------------------------------------
  describe("update", function()
    it("loads, runs fn, saves and returns the saved aggregate", function()
      local repo = t.store:repository(define())
      t.store:append("counter-1", added({ 1 }))
      local calls = 0
      local agg, err = repo:update("1", function(a)
        calls = calls + 1
        assert.equal(1, a.version)
        a:add(2)
        a:add(3)
      end)
      assert.is_nil(err)
      assert.equal(1, calls)
      assert.equal(3, agg.version)
      assert.same({}, agg:pending())
      H.assert_same(folded("1", { 1, 2, 3 }), agg.state)
      assert.equal(3, t.store:version("counter-1"))
    end)

    it("re-runs fn on freshly loaded state after a conflict and succeeds", function()
      local repo = t.store:repository(define())
      local seen = {}
      local agg, err = repo:update("1", function(a)
        seen[#seen + 1] = { version = a.version, total = a.state.total }
        if #seen == 1 then
          assert(t.store:append("counter-1", added({ 100 })))  -- a concurrent writer
        end
        a:add(a.state.total + 1)
      end)
      assert.is_nil(err)
      assert.same({ { version = 0, total = 0 }, { version = 1, total = 100 } }, seen)
      assert.equal(2, agg.version)
      H.assert_same(folded("1", { 100, 101 }), agg.state)
      local stored = H.collect(t.store:read("counter-1"))
      H.assert_same({ { n = 100 }, { n = 101 } }, H.pluck(stored, "data"))
    end)

    it("with retries = 0 and a conflict returns nil, err and writes nothing of its own", function()
      local repo = t.store:repository(define())
      local calls = 0
      local agg, err = repo:update("1", function(a)
        calls = calls + 1
        assert(t.store:append("counter-1", added({ 100 })))
        a:add(1)
      end, { retries = 0 })
      assert.is_nil(agg)
      H.check_err(err, "wrong_expected_version")
      assert.equal(1, calls)
      H.assert_same({ { n = 100 } }, H.pluck(H.collect(t.store:read("counter-1")), "data"))
    end)

    it("retries 3 times by default, then returns nil, err", function()
      local repo = t.store:repository(define())
      local calls = 0
      local agg, err = repo:update("1", function(a)
        calls = calls + 1
        assert(t.store:append("counter-1", added({ 100 })))
        a:add(1)
      end)
      assert.is_nil(agg)
      H.check_err(err, "wrong_expected_version")
      assert.equal(4, calls)
      assert.equal(4, t.store:version("counter-1"))
    end)

    it("retries opts.retries times", function()
      local repo = t.store:repository(define())
      local calls = 0
      local agg = repo:update("1", function(a)
        calls = calls + 1
        if calls <= 2 then assert(t.store:append("counter-1", added({ 100 }))) end
        a:add(1)
      end, { retries = 2 })
      assert.is_table(agg)
      assert.equal(3, calls)
      assert.equal(3, agg.version)
      local calls2 = 0
      local agg2, err2 = repo:update("1", function(a)
        calls2 = calls2 + 1
        if calls2 <= 2 then assert(t.store:append("counter-1", added({ 100 }))) end
        a:add(1)
      end, { retries = 1 })
      assert.is_nil(agg2)
      H.check_err(err2, "wrong_expected_version")
      assert.equal(2, calls2)
    end)

    it("propagates errors of fn and writes nothing", function()
      local repo = t.store:repository(define())
      local calls = 0
      local msg = H.raises(function()
        return repo:update("1", function(a)
          calls = calls + 1
          a:add(1)
          error("fn refused")
        end)
      end)
      assert.is_truthy(msg:find("fn refused", 1, true), msg)
      assert.equal(1, calls)
      assert.equal(0, t.store:last_position())
      -- a failing command inside fn propagates too
      H.raises_with(function()
        return repo:update("1", function(a) a:add(-1) end)
      end, "n must be positive")
      assert.equal(0, t.store:last_position())
    end)

    it("with fn that raises nothing writes nothing and returns the aggregate", function()
      local repo = t.store:repository(define())
      t.store:append("counter-1", added({ 1 }))
      local last = t.store:last_position()
      local agg = repo:update("1", function() end)
      assert.is_table(agg)
      assert.equal(1, agg.version)
      assert.equal(last, t.store:last_position())
    end)

    it("refuses bad arguments", function()
      local repo = t.store:repository(define())
      H.raises_with(function() return repo:update("1", "fn") end, "function")
      H.raises_with(function() return repo:update("1", function() end, { retries = -1 }) end, "retries")
      H.raises_with(function() return repo:update("1", function() end, { retries = 1.5 }) end, "retries")
      H.raises_with(function() return repo:update("", function() end) end, "id")
    end)
  end)

  -- -------------------------------------------------------------------------
  describe("snapshots", function()
    it("are written when a save reaches or crosses a multiple of snapshot_every", function()
      local repo = t.store:repository(define({ snapshot_every = 3 }))
      local agg = repo:load("1")
      save_added(repo, agg, { 1, 2 })                        -- 0 -> 2: none
      assert.is_nil(snapshot(t.store, "counter-1"))
      save_added(repo, agg, { 3 })                           -- 2 -> 3: reaches 3
      local s = snapshot(t.store, "counter-1")
      H.assert_same({ version = 3, schema = 1, state = folded("1", { 1, 2, 3 }) }, s)
      save_added(repo, agg, { 4, 5 })                        -- 3 -> 5: none
      assert.equal(3, snapshot(t.store, "counter-1").version)
      save_added(repo, agg, { 6, 7 })                        -- 5 -> 7: crosses 6
      H.assert_same({ version = 7, schema = 1, state = folded("1", range(1, 7)) }, snapshot(t.store, "counter-1"))
      save_added(repo, agg, { 8 })                           -- 7 -> 8: none
      assert.equal(7, snapshot(t.store, "counter-1").version)
      save_added(repo, agg, range(9, 16))                    -- 8 -> 16: crosses 9, 12, 15
      H.assert_same({ version = 16, schema = 1, state = folded("1", range(1, 16)) }, snapshot(t.store, "counter-1"))
    end)

    it("count from the loaded version, also when events were appended outside the aggregate", function()
      local repo = t.store:repository(define({ snapshot_every = 3 }))
      t.store:append("counter-1", added({ 1, 2, 3, 4 }))  -- no snapshot: not a save
      assert.is_nil(snapshot(t.store, "counter-1"))
      local agg = repo:load("1")
      save_added(repo, agg, { 5 })                         -- 4 -> 5: none
      assert.is_nil(snapshot(t.store, "counter-1"))
      save_added(repo, agg, { 6 })                         -- 5 -> 6: reaches 6
      H.assert_same({ version = 6, schema = 1, state = folded("1", range(1, 6)) }, snapshot(t.store, "counter-1"))
    end)

    it("store the schema given in the spec", function()
      local repo = t.store:repository(define({ snapshot_every = 1, schema = "v2" }))
      local agg = repo:load("1")
      save_added(repo, agg, { 1 })
      assert.equal("v2", snapshot(t.store, "counter-1").schema)
    end)

    it("are used by load: only the events after the snapshot are applied", function()
      local repo = t.store:repository(define({ snapshot_every = 3 }))
      local agg = repo:load("1")
      save_added(repo, agg, { 1, 2, 3, 4 })   -- snapshot at 4
      save_added(repo, agg, { 5 })            -- no snapshot
      t.store:append("counter-1", added({ 6 }))
      assert.equal(4, snapshot(t.store, "counter-1").version)
      -- the same aggregate defined again, with handlers that count their calls
      -- and refuse the events covered by the snapshot
      local calls = {}
      local apply = counter_apply(calls)
      local inner = apply.Added
      apply.Added = function(s, d, ev)
        if ev.version <= 4 then error("event " .. ev.version .. " replayed despite the snapshot") end
        return inner(s, d, ev)
      end
      local C2 = er.aggregate("counter", { init = counter_init, apply = apply, snapshot_every = 3 })
      local loaded = t.store:repository(C2):load("1")
      assert.same({ 5, 6 }, calls)
      assert.equal(6, loaded.version)
      H.assert_same(folded("1", range(1, 6)), loaded.state)
    end)

    it("of another schema are ignored and the state is rebuilt from events", function()
      local repo = t.store:repository(define({ snapshot_every = 2 }))
      local agg = repo:load("1")
      save_added(repo, agg, { 1, 2 })
      save_added(repo, agg, { 3 })
      assert.equal(2, snapshot(t.store, "counter-1").version)
      local calls = {}
      local C2 = define({ snapshot_every = 2, schema = 2 }, calls)
      local repo2 = t.store:repository(C2)
      local loaded = repo2:load("1")
      assert.same({ 1, 2, 3 }, calls)
      assert.equal(3, loaded.version)
      H.assert_same(folded("1", { 1, 2, 3 }), loaded.state)
      -- the next save with schema 2 writes a schema-2 snapshot that it then uses
      save_added(repo2, loaded, { 4 })
      H.assert_same({ version = 4, schema = 2, state = folded("1", range(1, 4)) }, snapshot(t.store, "counter-1"))
      calls = {}
      local C3 = er.aggregate("counter", { init = counter_init, apply = counter_apply(calls), schema = 2 })
      H.assert_same(folded("1", range(1, 4)), t.store:repository(C3):load("1").state)
      assert.same({}, calls)
      -- and schema 1 (the default) ignores it
      local calls1 = {}
      local C4 = er.aggregate("counter", { init = counter_init, apply = counter_apply(calls1) })
      H.assert_same(folded("1", range(1, 4)), t.store:repository(C4):load("1").state)
      assert.same({ 1, 2, 3, 4 }, calls1)
    end)

    it("are not written by a save that conflicts", function()
      local repo = t.store:repository(define({ snapshot_every = 3 }))
      local a = repo:load("1")
      save_added(repo, a, { 1, 2 })
      local b = repo:load("1")
      b:add(3)                                      -- would reach 3
      assert(t.store:append("counter-1", added({ 100 })))
      local before = H.state(t.store, "counter-1")
      local v, err = repo:save(b)
      assert.is_nil(v)
      H.check_err(err, "wrong_expected_version")
      assert.is_nil(snapshot(t.store, "counter-1"))
      assert.same(before, H.state(t.store, "counter-1"))
    end)

    it("whose state cannot be encoded make the save raise, writing neither events nor snapshot", function()
      local C = define({
        snapshot_every = 2,
        apply = {
          Added = counter_apply().Added,
          Hook = function(s) s.hook = function() end end,
        },
      })
      local repo = t.store:repository(C)
      local agg = repo:load("1")
      save_added(repo, agg, { 1 })
      agg:raise("Hook", {})                         -- 1 -> 2 reaches 2: snapshot of a function
      local before = H.state(t.store, "counter-1")
      H.raises(function() return repo:save(agg) end)
      assert.same(before, H.state(t.store, "counter-1"))
      assert.is_nil(snapshot(t.store, "counter-1"))
      assert.equal(1, #H.collect(t.store:read("counter-1")))
      -- the store keeps working: appends and saves go through
      assert.equal(2, (t.store:append("counter-1", added({ 2 }))))
      local fresh = repo:load("1")
      assert.equal(4, save_added(repo, fresh, { 3, 4 }))
      H.assert_same({ version = 4, schema = 1, state = folded("1", range(1, 4)) }, snapshot(t.store, "counter-1"))
    end)

    it("keep only the newest snapshot per stream", function()
      local repo = t.store:repository(define({ snapshot_every = 2 }))
      local a, b = repo:load("1"), repo:load("2")
      for i = 1, 5 do save_added(repo, a, { i, i }) end   -- snapshots at 2, 4, ..., 10
      save_added(repo, b, { 1, 2, 3 })                    -- snapshot at 3
      assert.same({ { "counter-1", 10 }, { "counter-2", 3 } }, snapshot_keys(t.store))
    end)

    it("with snapshot_every = 1 are written by every save", function()
      local repo = t.store:repository(define({ snapshot_every = 1 }))
      local agg = repo:load("1")
      for i = 1, 3 do
        save_added(repo, agg, { i })
        assert.equal(i, snapshot(t.store, "counter-1").version)
      end
    end)

    it("are not written without snapshot_every", function()
      local repo = t.store:repository(define())
      local agg = repo:load("1")
      save_added(repo, agg, range(1, 250))
      assert.same({}, snapshot_keys(t.store))
    end)

    it("let a 1,000-event aggregate with snapshot_every = 100 load by replaying only the events after the snapshot", function()
      local repo = t.store:repository(define({ snapshot_every = 100 }))
      local agg = repo:load("big")
      for _ = 1, 19 do save_added(repo, agg, range(1, 50)) end   -- 950 events, snapshot at 900
      t.store:append("counter-big", added(range(1, 50)))          -- 1,000 events, 100 after the snapshot
      assert.equal(900, snapshot(t.store, "counter-big").version)
      local calls = {}
      local C2 = define({ snapshot_every = 100 }, calls)
      local loaded = t.store:repository(C2):load("big")
      assert.equal(100, #calls)
      assert.same(range(901, 1000), calls)
      assert.equal(1000, loaded.version)
      assert.equal(20 * (50 * 51 // 2), loaded.state.total)
      assert.equal(1000, #loaded.state.items)
      -- a save from 1000 to 1001 reaches no multiple: the snapshot stays at 900
      save_added(t.store:repository(C2), loaded, { 1 })
      assert.equal(900, snapshot(t.store, "counter-big").version)
      -- a save from 1001 to 1100 reaches 1100 and moves it
      save_added(t.store:repository(C2), loaded, range(1, 99))
      assert.equal(1100, snapshot(t.store, "counter-big").version)
      calls = {}
      local C3 = er.aggregate("counter", { init = counter_init, apply = counter_apply(calls) })
      local big = t.store:repository(C3):load("big")
      assert.equal(1100, big.version)
      assert.equal(20 * (50 * 51 // 2) + 1 + 99 * 100 // 2, big.state.total)
      assert.same({}, calls)
    end)
  end)

  -- -------------------------------------------------------------------------
  describe("time travel", function()
    it("load { version = n } gives the state folded to n, for every n", function()
      local ns = { 5, 3, 8, 1, 9, 2 }
      local repo = t.store:repository(define({ snapshot_every = 4 }))
      local agg = repo:load("1")
      save_added(repo, agg, { 5, 3 })
      save_added(repo, agg, { 8, 1, 9 })       -- snapshot at 5
      save_added(repo, agg, { 2 })
      assert.equal(5, snapshot(t.store, "counter-1").version)
      for n = 0, 6 do
        local a = repo:load("1", { version = n })
        assert.equal(n, a.version)
        H.assert_same(folded("1", { table.unpack(ns, 1, n) }), a.state, "state at version " .. n)
        assert.same({}, a:pending())
      end
    end)

    it("never uses a snapshot newer than n (and uses an older one)", function()
      local repo = t.store:repository(define({ snapshot_every = 3 }))
      local agg = repo:load("1")
      save_added(repo, agg, { 1, 2, 3 })       -- snapshot at 3
      save_added(repo, agg, { 4, 5 })
      assert.equal(3, snapshot(t.store, "counter-1").version)
      local calls = {}
      local C2 = er.aggregate("counter", { init = counter_init, apply = counter_apply(calls), snapshot_every = 3 })
      local repo2 = t.store:repository(C2)
      local a = repo2:load("1", { version = 2 })
      assert.same({ 1, 2 }, calls)
      assert.equal(2, a.version)
      H.assert_same(folded("1", { 1, 2 }), a.state)
      calls[1], calls[2] = nil, nil
      a = repo2:load("1", { version = 4 })
      assert.same({ 4 }, calls)                -- snapshot at 3 + event 4
      H.assert_same(folded("1", { 1, 2, 3, 4 }), a.state)
      calls[1] = nil
      a = repo2:load("1", { version = 3 })
      assert.same({}, calls)
      assert.equal(3, a.version)
      H.assert_same(folded("1", { 1, 2, 3 }), a.state)
    end)

    it("load { version = 0 } gives the init state", function()
      local repo = t.store:repository(define({ snapshot_every = 1 }))
      local agg = repo:load("1")
      save_added(repo, agg, { 1 })
      save_added(repo, agg, { 2 })
      local a = repo:load("1", { version = 0 })
      assert.equal(0, a.version)
      H.assert_same(counter_init("1"), a.state)
    end)

    it("load { version = n } beyond the stream gives the latest state", function()
      local repo = t.store:repository(define({ snapshot_every = 2 }))
      save_added(repo, repo:load("1"), { 1, 2, 3 })
      local a = repo:load("1", { version = 99 })
      assert.equal(3, a.version)
      H.assert_same(folded("1", { 1, 2, 3 }), a.state)
      local b = repo:load("nothing", { version = 5 })
      assert.equal(0, b.version)
    end)

    it("load { time = t } applies the events up to time t, without snapshots", function()
      local repo = t.store:repository(define({ snapshot_every = 1 }))
      local agg = repo:load("1")
      save_added(repo, agg, { 1 })
      wait_for_clock_tick()
      save_added(repo, agg, { 2 })
      wait_for_clock_tick()
      save_added(repo, agg, { 3 })
      local evs = H.collect(t.store:read("counter-1"))
      assert.is_true(evs[1].time < evs[2].time and evs[2].time < evs[3].time)
      local calls = {}
      local C2 = er.aggregate("counter", { init = counter_init, apply = counter_apply(calls), snapshot_every = 1 })
      local repo2 = t.store:repository(C2)
      local a = repo2:load("1", { time = evs[2].time })
      assert.equal(2, a.version)
      H.assert_same(folded("1", { 1, 2 }), a.state)
      assert.same({ 1, 2 }, calls)              -- the snapshot at 3 was not used
      a = repo2:load("1", { time = evs[2].time - 1 })
      assert.equal(1, a.version)
      H.assert_same(folded("1", { 1 }), a.state)
      a = repo2:load("1", { time = evs[1].time - 1 })
      assert.equal(0, a.version)
      H.assert_same(counter_init("1"), a.state)
      calls = {}
      local C3 = er.aggregate("counter", { init = counter_init, apply = counter_apply(calls), snapshot_every = 1 })
      a = t.store:repository(C3):load("1", { time = evs[3].time + 1000000 })
      assert.equal(3, a.version)
      assert.same({ 1, 2, 3 }, calls)
    end)

    it("refuses a bad version or time", function()
      local repo = t.store:repository(define())
      H.raises_with(function() return repo:load("1", { version = -1 }) end, "version")
      H.raises_with(function() return repo:load("1", { version = 1.5 }) end, "version")
      H.raises_with(function() return repo:load("1", { time = 1.5 }) end, "time")
      H.raises_with(function() return repo:load("1", "v") end, "opts")
    end)

    it("an aggregate loaded in the past conflicts when saved", function()
      local repo = t.store:repository(define())
      save_added(repo, repo:load("1"), { 1, 2 })
      local old = repo:load("1", { version = 1 })
      old:add(5)
      local v, err = repo:save(old)
      assert.is_nil(v)
      H.check_err(err, "wrong_expected_version")
      assert.equal(2, t.store:version("counter-1"))
    end)
  end)

  -- -------------------------------------------------------------------------
  describe("upcasting", function()
    local function item_spec(calls)
      return {
        init = function() return { qty = 0, lines = {} } end,
        apply = {
          ItemAddedV3 = function(s, d)
            s.qty = s.qty + d.qty
            s.lines[#s.lines + 1] = d.unit .. ":" .. d.qty
          end,
        },
        upcast = {
          ItemAdded = function(data, ev)              -- V1: { count = "3" }
            calls[#calls + 1] = "v1@" .. ev.version
            return "ItemAddedV2", { qty = tonumber(data.count) }
          end,
          ItemAddedV2 = function(data, ev)            -- V2: { qty = 3 }
            calls[#calls + 1] = "v2@" .. ev.version
            return "ItemAddedV3", { qty = data.qty, unit = "pcs" }
          end,
        },
      }
    end

    local stored_events = {
      { type = "ItemAdded", data = { count = "3" }, metadata = { v = 1 } },
      { type = "ItemAddedV2", data = { qty = 4 } },
      { type = "ItemAddedV3", data = { qty = 5, unit = "kg" } },
      { type = "ItemAdded", data = { count = "1" } },
    }

    it("loads old events through chained upcasters (V1 -> V2 -> V3) before apply", function()
      t.store:append("cart-1", stored_events)
      local calls = {}
      local repo = t.store:repository(er.aggregate("cart", item_spec(calls)))
      local agg = repo:load("1")
      assert.equal(4, agg.version)
      H.assert_same({ qty = 13, lines = { "pcs:3", "pcs:4", "kg:5", "pcs:1" } }, agg.state)
      assert.same({ "v1@1", "v2@1", "v2@2", "v1@4", "v2@4" }, calls)
    end)

    it("applies on every load and never rewrites the stored events", function()
      t.store:append("cart-1", stored_events)
      local before = H.collect(t.store:read("cart-1"))
      local calls = {}
      local repo = t.store:repository(er.aggregate("cart", item_spec(calls)))
      local s1 = repo:load("1").state
      local s2 = repo:load("1").state
      H.assert_same(s1, s2)
      assert.equal(10, #calls)
      local after = H.collect(t.store:read("cart-1"))
      assert.equal(4, #after)
      for i = 1, 4 do
        assert.equal(stored_events[i].type, after[i].type)
        H.assert_same(stored_events[i].data, after[i].data)
        H.assert_same(stored_events[i].metadata or {}, after[i].metadata)
        assert.equal(before[i].id, after[i].id)
        assert.equal(before[i].time, after[i].time)
      end
      assert.equal(4, t.store:last_position())
    end)

    it("works with time travel and with new events raised in the new shape", function()
      t.store:append("cart-1", stored_events)
      local calls = {}
      local repo = t.store:repository(er.aggregate("cart", item_spec(calls)))
      local a = repo:load("1", { version = 2 })
      H.assert_same({ qty = 7, lines = { "pcs:3", "pcs:4" } }, a.state)
      local b = repo:load("1")
      b:raise("ItemAddedV3", { qty = 2, unit = "l" })
      assert.equal(5, repo:save(b))
      local last = H.collect(t.store:read("cart-1", { from = 5 }))[1]
      assert.equal("ItemAddedV3", last.type)
      H.assert_same({ qty = 15, lines = { "pcs:3", "pcs:4", "kg:5", "pcs:1", "l:2" } }, repo:load("1").state)
    end)

    it("that produce a type without a handler make load raise naming the type", function()
      local C = er.aggregate("cart", {
        apply = { New = function() end },
        upcast = { Old = function(d) return "Orphan", d end },
      })
      t.store:append("cart-1", H.ev("Old", {}))
      local msg = H.raises(function() return t.store:repository(C):load("1") end)
      assert.is_truthy(msg:find("Orphan", 1, true), msg)
    end)
  end)
end)
