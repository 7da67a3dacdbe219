-- store:subscribe: the global log from a position, then each new commit.
local H = require "helper"
local system = require "system"

local function types_of(list) return H.pluck(list, "type") end
local function positions_of(list) return H.pluck(list, "position") end

describe("store:subscribe", function()
  local t = {}
  before_each(function() H.setup(t) end)
  after_each(function() H.teardown(t) end)

  it("yields every stored event from position 1, then ends after `timeout` seconds without news", function()
    local s = t.store
    assert(s:append("a-1", { H.ev("A1"), H.ev("A2") }))
    assert(s:append("b-1", H.ev("B1")))
    local got = {}
    local t0 = system.monotime()
    for ev in s:subscribe({ timeout = 0.2 }) do got[#got + 1] = ev end
    local waited = system.monotime() - t0
    H.assert_same({ "A1", "A2", "B1" }, types_of(got))
    H.assert_same({ 1, 2, 3 }, positions_of(got))
    assert.equal("b-1", got[3].stream)
    assert.is_true(waited >= 0.19 and waited < 2, "waited " .. waited .. " s")
  end)

  it("starts at `from`, and a start past the end waits for that position", function()
    local s = t.store
    assert(s:append("a-1", H.evs(5, "T")))
    H.assert_same({ 4, 5 }, positions_of(H.collect(s:subscribe({ from = 4, timeout = 0 }))))
    H.assert_same({}, positions_of(H.collect(s:subscribe({ from = 9, timeout = 0 }))))
    H.assert_same({}, positions_of(H.collect(s:subscribe({ from = s:last_position() + 1, timeout = 0.01 }))))
  end)

  it("filters by category and types, as store:all", function()
    local s = t.store
    assert(s:append("order-1", { H.ev("Placed"), H.ev("Paid") }))
    assert(s:append("user-1", H.ev("Placed")))
    assert(s:append("order-2", H.ev("Shipped")))
    local got = H.collect(s:subscribe({ category = "order", timeout = 0 }))
    H.assert_same({ 1, 2, 4 }, positions_of(got))
    got = H.collect(s:subscribe({ types = { "Placed", "Shipped" }, timeout = 0 }))
    H.assert_same({ 1, 3, 4 }, positions_of(got))
    got = H.collect(s:subscribe({ category = "order", types = { "Placed" }, timeout = 0 }))
    H.assert_same({ 1 }, positions_of(got))
  end)

  it("inside a coroutine, yields the subscription at the end and goes on with what was appended meanwhile", function()
    local s = t.store
    assert(s:append("a-1", H.ev("First")))
    local seen = {}
    local co = coroutine.create(function()
      for ev in s:subscribe({ timeout = 30 }) do seen[#seen + 1] = ev.type end
      return "ended"
    end)
    local ok, sub = coroutine.resume(co)
    assert.is_true(ok, tostring(sub))
    assert.equal("eventrocks.subscription", getmetatable(sub).__name)
    assert.equal(1, sub:position())
    H.assert_same({ "First" }, seen)
    -- resumed with nothing new: yields again at once (it never blocks)
    local t0 = system.monotime()
    assert.is_true((coroutine.resume(co)))
    assert.is_true(system.monotime() - t0 < 0.5)
    assert.equal("suspended", coroutine.status(co))
    assert(s:append("a-1", { H.ev("Second"), H.ev("Third") }))
    assert.is_true((coroutine.resume(co)))
    H.assert_same({ "First", "Second", "Third" }, seen)
    assert.equal(3, sub:position())
    -- the writer and the reader take turns in one Lua state: the scheduler
    for i = 1, 5 do
      assert(s:append("b-1", H.ev("N" .. i)))
      assert.is_true((coroutine.resume(co)))
    end
    assert.equal(8, #seen)
    assert.equal("N5", seen[8])
  end)

  it("inside a coroutine, the timeout still ends it; yield = false blocks instead", function()
    local s = t.store
    local co = coroutine.wrap(function()
      for _ in s:subscribe({ timeout = 0.05 }) do end
      return "ended"
    end)
    local t0, r = system.monotime(), nil
    repeat r = co() until r == "ended" or system.monotime() - t0 > 5
    assert.equal("ended", r)
    assert.is_true(system.monotime() - t0 >= 0.045)
    co = coroutine.wrap(function()
      for _ in s:subscribe({ timeout = 0.05, yield = false }) do end
      return "ended"
    end)
    assert.equal("ended", co()) -- blocked for 50 ms, no yield
  end)

  it("is closed by break, and a closed store raises", function()
    local s = t.store
    assert(s:append("a-1", H.evs(3, "T")))
    local sub
    for ev, _ in s:subscribe() do
      if ev.position == 2 then break end
    end
    local f, state, _, closing = s:subscribe({ timeout = 0 })
    sub = closing
    assert.equal(state, sub)
    assert.is_not_nil(f(state))
    sub:close()
    assert.is_nil(f(state))
    assert.matches("closed", tostring(sub))
    local g, st2 = s:subscribe({ timeout = 0 })
    s:close()
    assert.has_error(function() g(st2) end, "attempt to use a closed store")
  end)

  it("steps over holes in the log (removed events), on a writable and a read-only handle", function()
    local s = t.store
    assert(s:append("a-1", H.evs(6, "T")))
    for _, pos in ipairs { 3, 4, 6 } do assert(s:_debug_delete("log", string.pack(">I8", pos))) end
    local t0 = system.monotime()
    H.assert_same({ 1, 2, 5 }, positions_of(H.collect(s:subscribe({ timeout = 0.1 }))))
    local r = assert(H.open(t, t.dir, { read_only = true }))
    H.assert_same({ 1, 2, 5 }, positions_of(H.collect(r:subscribe({ timeout = 0.1 }))))
    assert.is_true(system.monotime() - t0 < 2)
    -- and goes on after them
    local co = coroutine.wrap(function()
      local got = {}
      for ev in r:subscribe({ from = 2, timeout = 5 }) do
        got[#got + 1] = ev.position
        if #got == 3 then return got end
      end
    end)
    local first = co()
    assert.equal("eventrocks.subscription", getmetatable(first).__name) -- 2, 5 read; waiting
    assert(s:append("a-1", H.ev("Late")))
    local got
    for _ = 1, 200 do
      got = co()
      if type(got) == "table" and getmetatable(got) == nil then break end
      system.sleep(0.01)
    end
    H.assert_same({ 2, 5, 7 }, got)
  end)

  it("checks its options", function()
    local s = t.store
    assert.has_error(function() s:subscribe({ frm = 1 }) end, "bad argument #1 to 'subscribe' (unknown option 'frm')")
    for _, bad in ipairs { { from = 0 }, { from = 1.5 }, { timeout = -1 }, { timeout = "1" }, { types = {} },
      { types = { 1 } }, { category = 5 }, { yield = "yes" }, { yield = true } } do
      assert.has_error(function() s:subscribe(bad) end)
    end
    assert.has_error(function() s:subscribe(5) end, "bad argument #1 to 'subscribe' (opts must be a table, got number)")
  end)

  it("a read-only handle follows a writer in another process within milliseconds", function()
    t.store:close()
    local dir = t.dir
    -- the writer: three appends 100 ms apart, after the reader started waiting
    local child = H.child_prelude() .. string.format([[
      local system = require "system"
      local s = assert(er.open(%q))
      system.sleep(0.3)
      for i = 1, 3 do
        assert(s:append("w-1", { type = "Written", data = { at = system.gettime() } }))
        system.sleep(0.1)
      end
      s:close()]], dir)
    local p = assert(io.popen("lua5.4 -e " .. H.shquote(child) .. " 2>&1 &"))
    -- (the writer holds no lock before it opens: open the reader at once)
    local r
    for _ = 1, 100 do
      r = H.open(t, dir, { read_only = true, create = false })
      if r then break end
      system.sleep(0.02)
    end
    if not r then
      r = assert(H.open(t, dir, { read_only = true }))
    end
    local lat = {}
    for ev in r:subscribe({ timeout = 3 }) do
      lat[#lat + 1] = system.gettime() - ev.data.at
      if #lat == 3 then break end
    end
    p:close()
    assert.equal(3, #lat)
    for _, l in ipairs(lat) do assert.is_true(l < 0.25, "woken " .. l .. " s after the commit") end
  end)
end)
