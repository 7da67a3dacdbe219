-- The limits of a store (README "Reliability"): each is accepted at its
-- value and refused one past it, with nothing written.
--
--   event size (encoded data + metadata)  max_event_size, default 16 MiB, at most 1 GiB  nil, err 'invalid'
--   stream id, event type                 1 to 1024 bytes without NUL                     Lua error
--   nesting of data, metadata             er.MAX_DEPTH = 200 tables (snapshot state: 199)   Lua error
--   events per append                     no cap but memory (2^32 - 1); 100,000 tested     -
--   read-model key                        8192 bytes with the projection name               Lua error
local H = require "helper"
local er = H.er
local core = require "eventrocks.core"

local MiB = 1 << 20

-- A table nested n deep (n tables).
local function nest(n)
  local v = "leaf"
  for _ = 1, n do v = { v } end
  return v
end

-- Everything a failed call could have touched.
local function snapshot(store)
  local streams = H.collect_streams(store:streams())
  local ids = {}
  for ev in store:all() do ids[#ids + 1] = ev.id end
  return { last = store:last_position(), streams = streams, ids = ids }
end

describe("limits", function()
  local t = {}
  before_each(function()
    H.setup(t)
    assert(t.store:append("s-1", H.ev("Seed", 1)))
  end)
  after_each(function() H.teardown(t) end)

  describe("event size", function()
    -- MessagePack: a str of 32 bytes or more has a 5-byte header, {} is 1 byte
    it("defaults to 16 MiB of encoded data and metadata, that size included", function()
      assert.same({ 2, 2 }, { t.store:append("s-1", H.ev("Big", ("x"):rep(16 * MiB - 5))) })
      assert.same({ 3, 3 }, { t.store:append("s-1", H.ev("Big", ("x"):rep(16 * MiB - 6), {})) })
      assert.equal(16 * MiB - 5, #t.store:event(2).data)
    end)

    it("refuses one byte more with nil, err 'invalid' naming the limit, writing nothing", function()
      local before = snapshot(t.store)
      local v, err = t.store:append("s-1", H.ev("Big", ("x"):rep(16 * MiB - 4)))
      assert.is_nil(v)
      H.check_err(err, "invalid")
      assert.is_truthy(err.message:find("16777217", 1, true), err.message)
      assert.is_truthy(err.message:find("16777216", 1, true), err.message)
      v, err = t.store:append("s-1", H.ev("Big", ("x"):rep(16 * MiB - 6), { m = 1 }))
      assert.is_nil(v)
      H.check_err(err, "invalid")
      assert.same(before, snapshot(t.store))
    end)

    it("refuses a whole append when one of its events is too big", function()
      local before = snapshot(t.store)
      local v, err = t.store:append("s-1", { H.ev("A", 1), H.ev("B", 2), H.ev("Big", ("x"):rep(16 * MiB)) })
      assert.is_nil(v)
      H.check_err(err, "invalid")
      assert.is_truthy(err.message:find("event 3", 1, true), err.message)
      assert.same(before, snapshot(t.store))
      assert.same({ 3, 3 }, { t.store:append("s-1", { H.ev("A", 1), H.ev("B", 2) }) })
    end)

    it("is set per handle with max_event_size", function()
      t.store:close()
      local s = assert(H.open(t, t.dir, { max_event_size = 100 }))
      assert.same({ 2, 2 }, { s:append("s-1", H.ev("A", ("x"):rep(100 - 2))) }) -- str8: 2-byte header
      local before = snapshot(s)
      local v, err = s:append("s-1", H.ev("A", ("x"):rep(100 - 1)))
      assert.is_nil(v)
      H.check_err(err, "invalid")
      assert.same(before, snapshot(s))
      s:close()
      -- a limit is not a property of the store: another handle may allow more
      local s2 = assert(H.open(t, t.dir, { max_event_size = 1000 }))
      assert.same({ 3, 3 }, { s2:append("s-1", H.ev("A", ("x"):rep(100 - 1))) })
    end)

    it("applies to repository saves and reactor emits too", function()
      local Big = er.aggregate("big", { apply = { Grown = function() end } })
      local repo = t.store:repository(Big)
      local agg = repo:load("1")
      agg:raise("Grown", ("x"):rep(16 * MiB))
      local before = snapshot(t.store)
      local v, err = repo:save(agg)
      assert.is_nil(v)
      H.check_err(err, "invalid")
      assert.same(before, snapshot(t.store))

      local p = t.store:projection("emitter", { handlers = { Seed = function(view, ev)
        view:emit("out-1", { type = "Out", data = ("x"):rep(16 * MiB) })
      end } })
      -- emit checks the event at once: the handler fails, its batch is dropped
      H.raises_with(function() p:run() end, "projection 'emitter'", "16777216")
      assert.same(before, snapshot(t.store))
      assert.equal(0, p:position())
    end)

    it("can be raised to 1 GiB and no further", function()
      local s, err = H.open(t, t.dir .. "/other", { max_event_size = 1 << 30 })
      assert.is_truthy(s, err and err.message)
      s:close()
      s, err = H.open(t, t.dir .. "/other", { max_event_size = (1 << 30) + 1 })
      assert.is_nil(s)
      H.check_err(err, "invalid")
      assert.is_truthy(err.message:find("1 GiB", 1, true), err.message)
      H.raises_with(function() return er.open(t.dir .. "/other", { max_event_size = 0 }) end,
        "bad argument #2", "max_event_size")
      H.raises_with(function() return er.open(t.dir .. "/other", { max_event_size = 1.5 }) end,
        "bad argument #2", "max_event_size")
    end)
  end)

  describe("stream ids and types", function()
    it("are 1 to 1024 bytes: 1024 is stored, 1025 raises, writing nothing", function()
      local s1024, s1025 = ("é"):rep(512), ("é"):rep(512) .. "x" -- bytes, not characters
      assert.equal(1024, #s1024)
      assert.same({ 1, 2 }, { t.store:append(s1024, H.ev(("T"):rep(1024))) })
      local before = snapshot(t.store)
      H.raises_with(function() return t.store:append(s1025, H.ev("A")) end, "bad argument #1 to 'append'", "1024")
      H.raises_with(function() return t.store:append("s-1", H.ev(("T"):rep(1025))) end,
        "bad argument #2 to 'append'", "1024")
      assert.same(before, snapshot(t.store))
      -- reading a stream id that cannot exist is a bad argument too
      H.raises_with(function() return t.store:read(s1025) end, "bad argument #1 to 'read'")
      H.raises_with(function() return t.store:version(s1025) end, "bad argument #1 to 'version'")
    end)

    it("are the core's limits, which the binding exposes", function()
      assert.equal(1024, core.MAX_STREAM_LEN)
      assert.equal(1024, core.MAX_TYPE_LEN)
      assert.same({ 1, 2 }, { t.store:append(("s"):rep(core.MAX_STREAM_LEN), H.ev(("T"):rep(core.MAX_TYPE_LEN))) })
      H.raises_with(function() return t.store:append(("s"):rep(core.MAX_STREAM_LEN + 1), H.ev("A")) end,
        "bad argument #1 to 'append'")
    end)

    it("bound aggregate ids: name, '-' and id together, with an error about the id", function()
      local Acct = er.aggregate("acct", { apply = { Opened = function() end } })
      local repo = t.store:repository(Acct)
      local id = ("i"):rep(1024 - #"acct-")
      local agg = repo:load(id)
      agg:raise("Opened", {})
      assert.equal(1, repo:save(agg))
      for _, call in ipairs({
        { "load", function() return repo:load(id .. "i") end },
        { "history", function() return repo:history(id .. "i") end },
        { "update", function() return repo:update(id .. "i", function() end) end },
      }) do
        local msg = H.raises_with(call[2], "bad argument #1 to '" .. call[1] .. "'", "1024")
        assert.is_nil(msg:find("aggregate.lua", 1, true), "an error from inside the library: " .. msg)
      end
      H.raises_with(function() return repo:load("a\0b") end, "bad argument #1 to 'load'", "NUL")
    end)
  end)

  describe("nesting", function()
    it("is er.MAX_DEPTH = 200 tables in data and metadata", function()
      assert.equal(200, er.MAX_DEPTH)
      assert(t.store:append("s-1", H.ev("Deep", nest(er.MAX_DEPTH), nest(er.MAX_DEPTH))))
      local before = snapshot(t.store)
      H.raises_with(function() return t.store:append("s-1", H.ev("Deep", nest(er.MAX_DEPTH + 1))) end,
        "bad argument #2 to 'append'", "200")
      H.raises_with(function() return t.store:append("s-1", H.ev("Deep", 1, nest(er.MAX_DEPTH + 1))) end,
        "bad argument #2 to 'append'", "200")
      assert.same(before, snapshot(t.store))
    end)

    it("counts the snapshot's own table: its state may nest MAX_DEPTH - 1 tables", function()
      local Deep = er.aggregate("deep", {
        init = function() return {} end,
        apply = { Nested = function(state, data) state.v = data end },
        snapshot_every = 1,
      })
      local repo = t.store:repository(Deep)
      local agg = repo:load("1")
      -- snapshot { version, schema, state = { v = data } }: 2 tables + data
      agg:raise("Nested", nest(er.MAX_DEPTH - 2))
      assert.equal(1, repo:save(agg))
      agg = repo:load("1")
      agg:raise("Nested", nest(er.MAX_DEPTH - 1)) -- fine as data, one too deep in the snapshot
      local before = snapshot(t.store)
      local msg = H.raises_with(function() repo:save(agg) end, "aggregate 'deep'", "snapshot of deep-1 at version 2",
        "state.v", "200")
      assert.is_nil(msg:find("bad argument #3 to 'put'", 1, true), msg)
      assert.same(before, snapshot(t.store))
      assert.equal(1, #agg:pending(), "the queue is kept")
    end)
  end)

  describe("events per append", function()
    local N = 100000

    it("has no cap below memory: 100,000 events in one append, read back, retried", function()
      local evs = {}
      for i = 1, N do evs[i] = { type = "E", id = er.uuid(), data = i } end
      assert.same({ N, N + 1 }, { t.store:append("big-1", evs, { expected = er.NO_STREAM }) })
      local n = 0
      for ev in t.store:read("big-1") do
        n = n + 1
        if ev.version ~= n or ev.position ~= n + 1 or ev.data ~= n or ev.id ~= evs[n].id then
          error("event " .. n .. " differs")
        end
      end
      assert.equal(N, n)
      -- the idempotent retry of the whole append
      assert.same({ N, N + 1 }, { t.store:append("big-1", evs, { expected = er.NO_STREAM }) })
      assert.equal(N + 1, t.store:last_position())
      -- and it survives a reopen
      t.store:close()
      local s = assert(H.open(t, t.dir))
      assert.equal(N, s:version("big-1"))
      assert.equal(N, s:event(N + 1).data)
      local problems = s:_check()
      assert.equal(0, problems)
    end)

    it("100,000 events in one repository save, with an inline projection running", function()
      local seen = 0
      t.store:projection("inline-count", { inline = true, handlers = {
        Counted = function(view, ev) seen = seen + 1 end,
      } })
      local Counter = er.aggregate("counter", {
        init = function() return { n = 0 } end,
        apply = { Counted = function(state) state.n = state.n + 1 end },
      })
      local repo = t.store:repository(Counter)
      local agg = repo:load("1")
      for _ = 1, N do agg:raise("Counted") end
      assert.equal(N, repo:save(agg))
      assert.equal(N, seen)
      assert.equal(N, repo:load("1").state.n)
    end)
  end)

  describe("read-model keys", function()
    it("are at most 8192 bytes with the projection's name: a handler that puts more fails its batch", function()
      local key
      local p = t.store:projection("p", { handlers = { Seed = function(view) view:put(key, 1) end } })
      key = ("k"):rep(8192 - #"p\0")
      assert.same({ 1, 1 }, { p:run() })
      assert.equal(1, p:get(key))
      p:reset()
      key = key .. "k"
      local msg = H.raises_with(function() p:run() end, "8192")
      assert.is_truthy(msg:find("projection 'p'", 1, true), msg)
      assert.equal(0, p:position())
    end)
  end)
end)
