-- Projections: catch-up projections with atomic checkpoints, follow mode,
-- inline projections, reactors (view:emit), bad input, and exactly-once
-- across crashes of a child process (doc/api.md, "Projections").
local H = require "helper"
local er = require "eventrocks"

-- ---------------------------------------------------------------------------
-- Fixtures

-- The read model of a projection as a table key -> value, and its size.
local function dump(p, prefix)
  local out, n = {}, 0
  for k, v in p:each(prefix) do
    out[k] = v
    n = n + 1
  end
  return out, n
end

local function count_events(store, opts)
  local n = 0
  for _ in store:all(opts) do n = n + 1 end
  return n
end

local function events_of_type(store, type_)
  local out = {}
  for ev in store:all({ types = { type_ } }) do out[#out + 1] = ev end
  return out
end

-- The example of doc/api.md, recording the positions it is called with.
local function price_handlers(calls)
  return {
    PriceIncreased = function(view, event)
      if calls then calls[#calls + 1] = event.position end
      local row = view:get(event.stream) or { price = 0 }
      row.price = row.price + event.data.delta
      view:put(event.stream, row)
    end,
  }
end

-- 9 events; category "product" covers positions 1, 2, 4, 6, 7, 8 (stream
-- "product" has no dash, so its category is "product"); PriceIncreased of
-- category "product" is at 2, 4, 6 and 8.
local function seed(store)
  store:append("product-1", { H.ev("ProductCreated", { name = "a" }), H.ev("PriceIncreased", { delta = 5 }) }) -- 1, 2
  store:append("order-1", H.ev("PriceIncreased", { delta = 1000 }))                                          -- 3
  store:append("product-2", H.ev("PriceIncreased", { delta = 10 }))                                          -- 4
  store:append("productx-1", H.ev("PriceIncreased", { delta = 100 }))                                        -- 5
  store:append("product-1", { H.ev("PriceIncreased", { delta = 3 }), H.ev("Discounted", { pct = 10 }) })     -- 6, 7
  store:append("product", H.ev("PriceIncreased", { delta = 1 }))                                             -- 8
  store:append("order-2", H.ev("Shipped", {}))                                                               -- 9
end

-- Deterministic pseudo-random numbers in 1..n.
local function lcg(seed_)
  local x = seed_
  return function(n)
    x = (x * 1103515245 + 12345) % 2147483648
    return (x >> 8) % n + 1
  end
end

-- n events in appends of 1 to 3 events over categories acct (streams
-- "acct-1", "acct-2", "acct-3" and "acct"), acctx and misc.
local function ledger_log(store, n, seed_)
  local r = lcg(seed_ or 7)
  local streams = { "acct-1", "acct-2", "acct-3", "acct", "acctx-1", "misc-1" }
  local types = { "Deposited", "Withdrawn", "Noise" }
  local i = 0
  while i < n do
    local k = math.min(r(3), n - i)
    local evs = {}
    for j = 1, k do evs[j] = { type = types[r(3)], data = { amount = r(100) } } end
    assert(store:append(streams[r(#streams)], evs))
    i = i + k
  end
end

-- The ledger handlers, as source text so that a child process builds the
-- very same ones.  load(LEDGER_SRC)(crash, calls): the handler calls
-- os.exit(1) (no close) when it meets position `crash`.
local LEDGER_SRC = [[
local crash, calls = ...
local function apply(v, e)
  if e.position == crash then os.exit(1) end
  if calls then calls[#calls + 1] = e.position end
  local key = "acct:" .. e.stream
  local row = v:get(key) or { n = 0, balance = 0 }
  row.n = row.n + 1
  row.balance = row.balance + (e.type == "Deposited" and e.data.amount or -e.data.amount)
  v:put(key, row)
  local sk = "seen:" .. e.position
  v:put(sk, (v:get(sk) or 0) + 1)
  local list = v:get("applied") or {}
  list[#list + 1] = e.position
  v:put("applied", list)
end
return { Deposited = apply, Withdrawn = apply }
]]

local function ledger(crash, calls)
  return assert(load(LEDGER_SRC, "=ledger"))(crash, calls)
end

-- The ledger read model computed from the log, over the first `upto`
-- matching events (all when nil); and the matching positions.
local function expected_ledger(store, category, upto)
  local m, positions = {}, {}
  for e in store:all({ category = category, types = { "Deposited", "Withdrawn" } }) do
    positions[#positions + 1] = e.position
  end
  local applied = {}
  local i = 0
  for e in store:all({ category = category, types = { "Deposited", "Withdrawn" } }) do
    i = i + 1
    if upto and i > upto then break end
    local key = "acct:" .. e.stream
    local row = m[key] or { n = 0, balance = 0 }
    row.n = row.n + 1
    row.balance = row.balance + (e.type == "Deposited" and e.data.amount or -e.data.amount)
    m[key] = row
    m["seen:" .. e.position] = 1
    applied[#applied + 1] = e.position
  end
  if #applied > 0 then m.applied = applied end
  return m, positions
end

local function counter(field)
  return function(v, e)
    local k = field and e.data[field] or e.stream
    v:put(k, (v:get(k) or 0) + 1)
  end
end

local t = {}
before_each(function() H.setup(t) end)
after_each(function() H.teardown(t) end)

-- ---------------------------------------------------------------------------
describe("catch-up projections", function()
  it("run catches up and returns the events processed and the position; get and position read the result", function()
    local s = t.store
    seed(s)
    local calls = {}
    local p = s:projection("product-prices", { category = "product", handlers = price_handlers(calls) })
    assert.equal(0, p:position())
    assert.is_nil(p:get("product-1"))
    local n, pos = p:run()
    assert.equal(4, n)
    assert.equal(9, pos)
    H.assert_same({ 2, 4, 6, 8 }, calls)
    H.assert_same({ price = 8 }, p:get("product-1"))
    H.assert_same({ price = 10 }, p:get("product-2"))
    H.assert_same({ price = 1 }, p:get("product"))
    assert.is_nil(p:get("productx-1"))
    assert.is_nil(p:get("order-1"))
    assert.equal(9, p:position())
    local all, size = dump(p)
    assert.equal(3, size)
    H.assert_same({ ["product-1"] = { price = 8 }, ["product-2"] = { price = 10 }, product = { price = 1 } }, all)
  end)

  it("hands handlers events whose id, data and metadata decode on first access; pairs, tostring and writes see a whole event",
    function()
      local s = t.store
      assert(s:append("a-1", { { type = "A", data = { n = 1 }, metadata = { who = "me" } }, { type = "A" } }))
      local plain = H.collect(s:all())
      local seen = {}
      local p = s:projection("lazy", { handlers = { A = function(_, ev) seen[#seen + 1] = ev end } })
      assert.same({ 2, 2 }, { p:run() })
      local e1, e2 = seen[1], seen[2]
      -- nothing decoded yet: only what the table itself holds
      assert.is_nil(rawget(e1, "data"))
      assert.is_nil(rawget(e1, "id"))
      assert.equal("a-1", rawget(e1, "stream"))
      assert.equal(1, rawget(e1, "version"))
      -- first access: the whole event, equal to what all() gives
      assert.same({ n = 1 }, e1.data)
      assert.equal(plain[1].id, rawget(e1, "id"))
      H.assert_same(plain[1], e1)
      assert.equal(getmetatable(plain[1]), getmetatable(e1))
      assert.equal(tostring(plain[1]), tostring(e1))
      -- pairs shows every field of an untouched one; an absent field is nil
      local keys = {}
      for k in pairs(e2) do keys[#keys + 1] = k end
      table.sort(keys)
      assert.same({ "id", "metadata", "position", "stream", "time", "type", "version" }, keys)
      assert.is_nil(e2.data)
      assert.is_nil(seen[1].subject)
      -- a write before any read keeps the other fields
      local e3
      assert(s:append("a-2", { type = "A", data = { n = 3 } }))
      p = s:projection("lazy2", { handlers = { A = function(_, ev) if ev.stream == "a-2" then e3 = ev end end } })
      p:run()
      e3.data = "mine"
      assert.equal("mine", e3.data)
      assert.same({}, e3.metadata)
      assert.equal(36, #e3.id)
    end)

  it("hands lazy events while handlers leave most data unread, and eager ones after a batch whose handlers decoded most",
    function()
      local s = t.store
      local evs = {}
      for i = 1, 50 do evs[i] = { type = "A", data = { n = i } } end
      for k = 1, 40 do assert(s:append("a-" .. k, evs)) end -- 2000 events
      -- whether each batch's first event came decoded (eager) or not (lazy)
      local function kinds(name, reads_data)
        local out, first = {}, true
        local p = s:projection(name, { handlers = { A = function(_, ev)
          if first then out[#out + 1] = rawget(ev, "data") and "eager" or "lazy" end
          first = false
          if reads_data then assert(ev.data.n >= 1) end
        end } })
        assert.equal(2000, p:run({ batch = 50, progress = function() first = true end }))
        return out
      end
      local made0, read0 = s:_lazy_counts()
      local only_stream = kinds("stream-only", false)
      assert.equal(40, #only_stream)
      for i = 1, 40 do assert.equal("lazy", only_stream[i]) end
      -- reading data: the first batch is lazy, then eager; every 32nd
      -- eager batch tries lazy again (and goes back to eager)
      local data = kinds("data", true)
      assert.equal(40, #data)
      local expected = {}
      for i = 1, 40 do expected[i] = (i == 1 or i == 34) and "lazy" or "eager" end
      assert.same(expected, data)
      -- what the reader counted: every lazy event made, the decoded ones
      local made, read = s:_lazy_counts()
      assert.equal(40 * 50 + 2 * 50, made - made0)
      assert.equal(2 * 50, read - read0)
    end)

  it("lazy events kept past their batch still decode: many per batch, large ones, after the store is closed", function()
    local s = t.store
    local big = string.rep("x", 1500000) -- over an arena's size: an arena of its own
    local evs = {}
    for i = 1, 5000 do evs[i] = { type = "A", data = { n = i }, metadata = { m = i } } end
    assert(s:append("a-1", evs))
    assert(s:append("a-2", { type = "A", data = { n = 5001, big = big } }))
    local kept = {}
    local p = s:projection("keeper", { handlers = { A = function(_, ev) kept[#kept + 1] = ev end } })
    assert.equal(5001, p:run({ batch = 10000 }))
    collectgarbage()
    collectgarbage()
    s:close()
    assert.is_nil(rawget(kept[1], "data"))
    for i = 5001, 1, -1 do
      local ev = kept[i]
      assert.equal(i, ev.data.n)
      assert.equal(36, #ev.id)
    end
    for i = 1, 5000 do assert.equal(i, kept[i].metadata.m) end
    assert.equal(big, kept[5001].data.big)
    -- a lazy event whose position was changed with rawset cannot find its bytes
    s = er.open(t.dir)
    t.handles[#t.handles + 1] = s
    local one
    p = s:projection("one", { handlers = { A = function(_, ev) one = one or ev end } })
    p:run()
    rawset(one, "position", 99999)
    H.raises_with(function() return one.data end, "stored bytes are gone")
  end)

  it("the collector counts the bytes lazy events wait with, and frees them with the events", function()
    local s = t.store
    assert(s:append("a-1", { type = "A", data = { big = string.rep("y", 1500000) } }))
    local kept
    local p = s:projection("held", { handlers = { A = function(_, ev) kept = ev end } })
    collectgarbage()
    collectgarbage()
    local before = collectgarbage("count")
    assert.equal(1, p:run())
    collectgarbage()
    collectgarbage()
    local holding = collectgarbage("count")
    assert.is_nil(rawget(kept, "data"))
    assert.is_true(holding - before > 1400, ("the heap grew by %.0f KiB only"):format(holding - before))
    kept = nil
    collectgarbage()
    collectgarbage()
    assert.is_true(collectgarbage("count") < holding - 1400)
  end)

  it("a handler may yield (a projection run by a coroutine scheduler), whatever on_error says", function()
    local s = t.store
    local evs = {}
    for i = 1, 30 do evs[i] = { type = "A", data = { n = i } } end
    assert(s:append("a-1", evs))
    for _, policy in ipairs({ "stop", "skip", "park" }) do
      local p = s:projection("yielder-" .. policy, { on_error = policy, handlers = { A = function(view, ev)
        local got = coroutine.yield(ev.position)
        if ev.data.n == 7 and policy ~= "stop" then error("bad seven") end
        view:put("sum", (view:get("sum") or 0) + got)
      end } })
      local co = coroutine.wrap(function() return "done", p:run({ batch = 8 }) end)
      local yields, what, n = 0, co()
      while what ~= "done" do
        yields = yields + 1
        assert.equal(yields, what) -- the position the handler yielded
        what, n = co(10)
      end
      -- (park: the stream's events after the failed one are parked behind it)
      assert.equal(policy == "park" and 7 or 30, yields)
      assert.equal(30, n)
      assert.equal(({ stop = 300, skip = 290, park = 60 })[policy], p:get("sum"))
    end
  end)

  it("a handler's error is the handler's; an error between handlers (the iterator's) goes on as it is", function()
    local s = t.store
    assert(s:append("a-1", { { type = "A" }, { type = "A" } }))
    local p = s:projection("closes", { handlers = { A = function() s:close() end } })
    local ok, err = pcall(p.run, p)
    assert.is_false(ok)
    assert.matches("closed store", tostring(err))
    assert.not_matches("handler for", tostring(err))
  end)

  it("a run with nothing new returns 0 and the same position; later events are read from the checkpoint on", function()
    local s = t.store
    seed(s)
    local calls = {}
    local p = s:projection("prices", { category = "product", handlers = price_handlers(calls) })
    assert.same({ 4, 9 }, { p:run() })
    assert.same({ 0, 9 }, { p:run() })
    assert.same({ 0, 9 }, { p:run({ batch = 1 }) })
    assert.equal(4, #calls)
    local _, last = s:append("product-2", H.ev("PriceIncreased", { delta = 5 }))
    assert.equal(10, last)
    assert.same({ 1, 10 }, { p:run() })
    H.assert_same({ 2, 4, 6, 8, 10 }, calls)
    H.assert_same({ price = 15 }, p:get("product-2"))
    H.assert_same({ price = 8 }, p:get("product-1"))
  end)

  it("without a category reads every stream; the type filter defaults to the handlers' types", function()
    local s = t.store
    seed(s)
    local calls, types = {}, {}
    local h = price_handlers(calls)
    local p = s:projection("all-prices", { handlers = {
      PriceIncreased = function(v, e) types[e.type] = true; return h.PriceIncreased(v, e) end,
    } })
    local n, pos = p:run()
    -- only the 6 PriceIncreased events count as processed
    assert.equal(6, n)
    assert.equal(9, pos)
    H.assert_same({ 2, 3, 4, 5, 6, 8 }, calls)
    H.assert_same({ PriceIncreased = true }, types)
    H.assert_same({ price = 1000 }, p:get("order-1"))
    H.assert_same({ price = 100 }, p:get("productx-1"))
  end)

  it("types restricts the events read even when other handlers exist; it combines with category", function()
    local s = t.store
    seed(s)
    local seen = {}
    local function rec(v, e) seen[#seen + 1] = e.type .. "@" .. e.position; v:put(tostring(e.position), e.type) end
    local p = s:projection("created-only", { types = { "ProductCreated" },
      handlers = { ProductCreated = rec, PriceIncreased = rec } })
    assert.same({ 1, 9 }, { p:run() })
    H.assert_same({ "ProductCreated@1" }, seen)
    seen = {}
    local q = s:projection("product-price-and-discount", { category = "product", types = { "PriceIncreased", "Discounted" },
      handlers = { PriceIncreased = rec, Discounted = rec, ProductCreated = rec } })
    assert.same({ 5, 9 }, { q:run() })
    H.assert_same({ "PriceIncreased@2", "PriceIncreased@4", "PriceIncreased@6", "Discounted@7", "PriceIncreased@8" }, seen)
    local _, size = dump(q)
    assert.equal(5, size)
  end)

  it("handlers for types that never occur are fine", function()
    local s = t.store
    seed(s)
    local never = 0
    local p = s:projection("with-unused", { handlers = {
      NeverHappens = function() never = never + 1 end,
      AlsoNever = function() never = never + 1 end,
      Shipped = function(v, e) v:put("shipped", e.stream) end,
    } })
    assert.same({ 1, 9 }, { p:run() })
    assert.equal(0, never)
    assert.equal("order-2", p:get("shipped"))
  end)

  it("batch sizes 1, 3, 7 and the default give the same read model, calls and position", function()
    local s = t.store
    ledger_log(s, 240, 11)
    local last = s:last_position()
    assert.equal(240, last)
    local expected, positions = expected_ledger(s, "acct")
    assert.is_true(#positions > 50 and #positions < 200, "the log mixes matching and other events")
    local models = {}
    for _, b in ipairs({ 1, 3, 7, "default" }) do
      local calls = {}
      local p = s:projection("ledger-" .. b, { category = "acct", handlers = ledger(nil, calls) })
      local n, pos = p:run(b ~= "default" and { batch = b } or nil)
      assert.equal(#positions, n, "events processed with batch " .. b)
      assert.equal(last, pos, "position with batch " .. b)
      assert.equal(last, p:position())
      H.assert_same(positions, calls, "calls with batch " .. b)
      models[b] = dump(p)
      H.assert_same(expected, models[b], "read model with batch " .. b)
    end
  end)

  it("a short batch moves the checkpoint to the last position even when the tail was filtered out", function()
    local s = t.store
    s:append("t-1", H.evs(3, "Tick"))         -- 1..3
    s:append("o-1", H.evs(5, "Other"))        -- 4..8
    local p = s:projection("ticks", { handlers = { Tick = counter() } })
    assert.same({ 3, 8 }, { p:run({ batch = 2 }) })
    assert.equal(8, p:position())
    assert.equal(3, p:get("t-1"))
    s:append("o-2", H.evs(4, "Other"))        -- 9..12: nothing the projection wants
    assert.same({ 0, 12 }, { p:run({ batch = 2 }) })
    assert.equal(12, p:position())
    -- exactly a full batch of matching events, then nothing
    s:append("t-1", H.evs(2, "Tick"))         -- 13, 14
    s:append("o-2", H.evs(1, "Other"))        -- 15
    assert.same({ 2, 15 }, { p:run({ batch = 2 }) })
    assert.equal(5, p:get("t-1"))
  end)

  it("a projection over an empty store processes nothing", function()
    local p = t.store:projection("empty", { handlers = { E = counter() } })
    assert.same({ 0, 0 }, { p:run() })
    assert.equal(0, p:position())
    local _, size = dump(p)
    assert.equal(0, size)
  end)

  it("view:get/put/delete see the batch's own writes; put(key, nil) deletes; values keep their types", function()
    local s = t.store
    local obs = {}
    local p = s:projection("kv", { handlers = {
      Set = function(v, e)
        v:put(e.data.k, e.data.v)
        obs[#obs + 1] = { "set", e.data.k, v:get(e.data.k) }
      end,
      Del = function(v, e)
        obs[#obs + 1] = { "before-del", e.data.k, v:get(e.data.k) }
        v:delete(e.data.k)
        obs[#obs + 1] = { "del", e.data.k, v:get(e.data.k) }
      end,
      SetNil = function(v, e)
        v:put(e.data.k, nil)
        obs[#obs + 1] = { "setnil", e.data.k, v:get(e.data.k) }
      end,
      Incr = function(v, e)
        v:put("n", (v:get("n") or 0) + 1)
        obs[#obs + 1] = { "incr", "n", v:get("n") }
      end,
    } })
    s:append("kv-1", {
      H.ev("Set", { k = "a", v = { x = 1, y = 1.0, s = "str" } }),
      H.ev("Set", { k = "b", v = false }),
      H.ev("Set", { k = "c", v = 3 }),
      H.ev("Incr", {}), H.ev("Incr", {}), H.ev("Incr", {}),
      H.ev("Del", { k = "c" }),
      H.ev("SetNil", { k = "a" }),
      H.ev("Set", { k = "a", v = 2.5 }),
      H.ev("Set", { k = "d", v = 1 }),
      H.ev("SetNil", { k = "d" }),
    })
    assert.same({ 11, 11 }, { p:run() })
    H.assert_same({
      { "set", "a", { x = 1, y = 1.0, s = "str" } },
      { "set", "b", false },
      { "set", "c", 3 },
      { "incr", "n", 1 }, { "incr", "n", 2 }, { "incr", "n", 3 },
      { "before-del", "c", 3 },
      { "del", "c", nil },
      { "setnil", "a", nil },
      { "set", "a", 2.5 },
      { "set", "d", 1 },
      { "setnil", "d", nil },
    }, obs)
    H.assert_same({ a = 2.5, b = false, n = 3 }, (dump(p)))
    assert.equal(false, p:get("b"))
    assert.is_nil(p:get("c"))
    assert.is_nil(p:get("d"))
    -- a later batch sees what the earlier ones committed, with math.type kept
    obs = {}
    s:append("kv-1", { H.ev("Incr", {}), H.ev("Set", { k = "e", v = { 1, 2.0 } }) })
    assert.same({ 2, 13 }, { p:run({ batch = 1 }) })
    H.assert_same({ { "incr", "n", 4 }, { "set", "e", { 1, 2.0 } } }, obs)
    H.assert_same({ 1, 2.0 }, p:get("e"))
    -- deleting keys committed by earlier batches hides them for the rest of the batch
    obs = {}
    s:append("kv-1", { H.ev("Del", { k = "a" }), H.ev("SetNil", { k = "b" }), H.ev("Incr", {}) })
    assert.same({ 3, 16 }, { p:run() })
    H.assert_same({ { "before-del", "a", 2.5 }, { "del", "a", nil }, { "setnil", "b", nil }, { "incr", "n", 5 } }, obs)
    H.assert_same({ n = 5, e = { 1, 2.0 } }, (dump(p)))
  end)

  it("a key written several times in one batch is stored once, with its last value or deletion", function()
    local s = t.store
    -- one batch: put/delete sequences on several keys; the stored read model
    -- must equal the last operation of each key, whatever the batch size
    local ops = {
      { "a", 1 }, { "a", 2 }, { "b", 1 }, { "b", false }, { "c", false }, { "c", 3 },
      { "d", 1 }, { "d", false }, { "d", 4 }, { "e", { x = 1 } }, { "e", { x = 2 } },
    }
    for i, op in ipairs(ops) do
      assert(s:append("kv-1", { type = "Op", data = { k = op[1], v = op[2] } }, { expected = i - 1 }))
    end
    local want = { a = 2, c = 3, d = 4, e = { x = 2 } }
    local handlers = { Op = function(v, e)
      if e.data.v == false then v:delete(e.data.k) else v:put(e.data.k, e.data.v) end
    end }
    for _, batch in ipairs({ 1, 4, 500 }) do
      local p = s:projection("last-" .. batch, { handlers = handlers })
      assert.equal(#ops, p:run({ batch = batch }))
      assert.same(want, (dump(p)))
      assert.is_nil(p:get("b"))
    end
    -- a later batch deletes a key stored by an earlier one, then puts it back
    assert(s:append("kv-1", { { type = "Op", data = { k = "a", v = false } } }))
    local p = s:projection("last-500", { handlers = handlers })
    p:run()
    assert.is_nil(p:get("a"))
    assert(s:append("kv-1", { { type = "Op", data = { k = "a", v = 7 } } }))
    p:run()
    assert.equal(7, p:get("a"))
  end)

  it("view keys must be non-empty strings", function()
    local s = t.store
    s:append("k-1", H.ev("E", {}))
    local bad = {
      { "put-empty", function(v) v:put("", 1) end },
      { "put-number", function(v) v:put(1, 1) end },
      { "get-empty", function(v) return v:get("") end },
      { "get-nil", function(v) return v:get(nil) end },
      { "delete-empty", function(v) v:delete("") end },
      { "delete-table", function(v) v:delete({}) end },
    }
    for _, c in ipairs(bad) do
      local p = s:projection("badkey-" .. c[1], { handlers = { E = function(v, e) v:put("ok", true); c[2](v, e) end } })
      local msg = H.raises_with(function() p:run() end,
        "projection 'badkey-" .. c[1] .. "': handler for 'E' failed at position 1 (stream k-1)", "key")
      assert.is_nil(msg:find("attempt to", 1, true), msg)
      assert.equal(0, p:position())
      assert.is_nil(p:get("ok"))
    end
    local p = s:projection("kv-getters", { handlers = { E = counter() } })
    H.raises(function() p:get("") end)
    H.raises(function() p:get(5) end)
    H.raises(function() p:each(5) end)
  end)

  it("view:get returns the value that was put, not later changes to the table: the batch size does not matter", function()
    local s = t.store
    s:append("m-1", { H.ev("Put", {}), H.ev("Read", {}), H.ev("Touch", {}), H.ev("Read", {}) })
    local function handlers()
      return {
        Put = function(v) local row = { n = 1 }; v:put("row", row); row.n = 99 end,
        -- changes a table got from get without putting it back
        Touch = function(v) local row = v:get("row"); row.n = row.n + 1000 end,
        Read = function(v, e) v:put("read" .. e.position, v:get("row").n) end,
      }
    end
    local one = s:projection("alias-batch-1", { handlers = handlers() })
    local all = s:projection("alias-batch-default", { handlers = handlers() })
    one:run({ batch = 1 })
    all:run()
    H.assert_same({ row = { n = 1 }, read2 = 1, read4 = 1 }, (dump(one)))
    H.assert_same((dump(one)), (dump(all)))
  end)

  it("a key the store refuses (longer than the key limit) raises in the handler and drops the batch", function()
    local s = t.store
    s:append("k-1", { H.ev("Ok", {}), H.ev("Long", {}) })
    local long = string.rep("k", 9000)
    local p = s:projection("long-keys", { handlers = {
      Ok = function(v) v:put("ok", true) end,
      Long = function(v) v:put(long, 1) end,
    } })
    H.raises_with(function() p:run() end, "projection 'long-keys': handler for 'Long' failed at position 2 (stream k-1)")
    assert.equal(0, p:position())
    assert.is_nil(p:get("ok"))
  end)

  it("a handler error aborts the run: the message names the event; the failed batch is dropped; the checkpoint stays", function()
    local s = t.store
    for i = 1, 10 do s:append("x-1", H.ev("E", { i = i, boom = i == 8 })) end
    local fail = true
    local applied = {}
    local p = s:projection("fragile", { handlers = { E = function(v, e)
      v:put("n", (v:get("n") or 0) + 1)
      v:put("p" .. e.position, (v:get("p" .. e.position) or 0) + 1)
      if e.data.boom and fail then error("kaput", 0) end
      applied[#applied + 1] = e.position
    end } })
    local ok, err = pcall(p.run, p, { batch = 3 })
    assert.is_false(ok)
    assert.equal("projection 'fragile': handler for 'E' failed at position 8 (stream x-1): kaput", err)
    -- batches [1..3] and [4..6] are kept, [7..9] is not
    assert.equal(6, p:position())
    assert.equal(6, p:get("n"))
    assert.equal(1, p:get("p6"))
    assert.is_nil(p:get("p7"))
    assert.is_nil(p:get("p8"))
    -- a non-string error value is shown too
    local q = s:projection("fragile-2", { handlers = { E = function(_, e)
      if e.position == 2 then error({ code = "x" }) end
    end } })
    H.raises_with(function() q:run() end, "projection 'fragile-2': handler for 'E' failed at position 2 (stream x-1): ")
    assert.equal(0, q:position())
    -- once the cause is gone, the next run applies each remaining event once
    fail = false
    applied = {}
    assert.same({ 4, 10 }, { p:run({ batch = 3 }) })
    H.assert_same({ 7, 8, 9, 10 }, applied)
    assert.equal(10, p:get("n"))
    for i = 1, 10 do assert.equal(1, p:get("p" .. i), "p" .. i) end
  end)

  it("view:put of a value that cannot be stored raises and the batch is discarded", function()
    local s = t.store
    s:append("v-1", { H.ev("Ok", {}), H.ev("Bad", { kind = "function" }), H.ev("Ok", {}) })
    s:append("v-2", { H.ev("Bad", { kind = "cycle" }) })
    local kind = "function"
    local p = s:projection("unstorable", { handlers = {
      Ok = function(v, e) v:put("ok" .. e.position, true) end,
      Bad = function(v, e)
        if e.data.kind ~= kind then return end
        if kind == "function" then v:put("bad", print) end
        local c = {}
        c.self = c
        v:put("bad", { c })
      end,
    } })
    H.raises_with(function() p:run() end, "projection 'unstorable': handler for 'Bad' failed at position 2 (stream v-1)")
    assert.equal(0, p:position())
    assert.is_nil(p:get("ok1"))
    assert.is_nil(p:get("bad"))
    kind = "cycle"
    -- batch [1, 2] is kept; batch [3, 4] fails at 4 and its write of ok3 is dropped
    H.raises_with(function() p:run({ batch = 2 }) end, "failed at position 4 (stream v-2)")
    assert.equal(2, p:position())
    assert.is_true(p:get("ok1"))
    assert.is_nil(p:get("ok3"))
    assert.is_nil(p:get("bad"))
  end)

  it("each iterates the read model with keys stripped of the projection's prefix; each(prefix) filters", function()
    local s = t.store
    s:append("i-1", {
      H.ev("Put", { k = "user:1", v = 1 }), H.ev("Put", { k = "user:2", v = 2 }),
      H.ev("Put", { k = "order:1", v = 3 }), H.ev("Put", { k = "u", v = 4 }),
      H.ev("Put", { k = "user:\0nul", v = 5 }),
    })
    local function putter(v, e) v:put(e.data.k, e.data.v) end
    local p = s:projection("idx", { handlers = { Put = putter } })
    -- neighbours whose names share a prefix with "idx"
    local p2 = s:projection("idx2", { handlers = { Put = putter } })
    local p3 = s:projection("id", { handlers = { Put = putter } })
    p:run(); p2:run()
    local n = select("#", p:each())
    assert.equal(4, n)
    assert.is_function((p:each()))
    H.assert_same({ ["user:1"] = 1, ["user:2"] = 2, ["order:1"] = 3, u = 4, ["user:\0nul"] = 5 }, (dump(p)))
    H.assert_same({ ["user:1"] = 1, ["user:2"] = 2, ["user:\0nul"] = 5 }, (dump(p, "user:")))
    H.assert_same({ ["order:1"] = 3 }, (dump(p, "order")))
    H.assert_same({ u = 4, ["user:1"] = 1, ["user:2"] = 2, ["user:\0nul"] = 5 }, (dump(p, "u")))
    H.assert_same({}, (dump(p, "zzz")))
    H.assert_same({}, (dump(p3)))
    H.assert_same((dump(p)), (dump(p2)))
    -- breaking out of the loop early is fine
    for k in p:each() do assert.is_string(k) break end
    for k in p:each() do assert.is_string(k) end
  end)

  it("reset drops the read model and the checkpoint; the next run rebuilds the same read model", function()
    local s = t.store
    ledger_log(s, 90, 3)
    local p = s:projection("pp", { category = "acct", handlers = ledger() })
    local other = s:projection("pp2", { category = "acct", handlers = ledger() })
    local n1, pos1 = p:run({ batch = 4 })
    other:run()
    local before = dump(p)
    local other_before = dump(other)
    assert.is_true(n1 > 0)
    assert.is_truthy(p:reset())
    assert.equal(0, p:position())
    local _, size = dump(p)
    assert.equal(0, size)
    assert.is_nil(p:get("applied"))
    -- the neighbour is untouched
    H.assert_same(other_before, (dump(other)))
    assert.equal(pos1, other:position())
    assert.same({ n1, pos1 }, { p:run() })
    H.assert_same(before, (dump(p)))
    H.assert_same((expected_ledger(s, "acct")), before)
  end)

  it("the read model and the checkpoint survive closing and reopening the store", function()
    local s = t.store
    seed(s)
    local p = s:projection("prices", { category = "product", handlers = price_handlers() })
    p:run()
    local before = dump(p)
    s:close()
    local s2 = assert(H.open(t, t.dir))
    local calls = {}
    local p2 = s2:projection("prices", { category = "product", handlers = price_handlers(calls) })
    assert.equal(9, p2:position())
    H.assert_same(before, (dump(p2)))
    assert.same({ 0, 9 }, { p2:run() })
    assert.equal(0, #calls)
  end)

  it("tostring names the projection and its position", function()
    local s = t.store
    seed(s)
    local p = s:projection("prices", { category = "product", handlers = price_handlers() })
    local before = tostring(p)
    assert.is_truthy(before:find("prices", 1, true), before)
    assert.is_truthy(before:find("0", 1, true), before)
    p:run()
    local after = tostring(p)
    assert.is_truthy(after:find("prices", 1, true), after)
    assert.is_truthy(after:find("9", 1, true), after)
    assert.is_nil(after:find("inline", 1, true), after)
  end)

  it("run checks its options", function()
    local s = t.store
    seed(s)
    local p = s:projection("prices", { handlers = price_handlers() })
    for _, opts in ipairs({
      "x", 5, { batch = 0 }, { batch = -1 }, { batch = 1.5 }, { batch = "3" },
      { interval = -1 }, { interval = "x" }, { stop = "x" }, { stop = 1 },
    }) do
      H.raises_with(function() p:run(opts) end, "bad argument #1 to 'run'")
    end
    assert.equal(0, p:position())
    assert.is_nil(p:get("product-1"))
  end)

  it("a read-only store reads the read model; run and reset fail cleanly instead of with an internal error", function()
    local s = t.store
    seed(s)
    local p = s:projection("prices", { category = "product", handlers = price_handlers() })
    p:run()
    s:append("product-2", H.ev("PriceIncreased", { delta = 1 }))
    s:close()
    local r, oerr = H.open(t, t.dir, { read_only = true })
    assert(r, tostring(oerr))
    local q = r:projection("prices", { category = "product", handlers = price_handlers() })
    assert.equal(9, q:position())
    H.assert_same({ price = 10 }, q:get("product-2"))
    local _, size = dump(q)
    assert.equal(3, size)
    for _, name in ipairs({ "run", "reset" }) do
      local res = table.pack(pcall(q[name], q))
      if res[1] then
        assert.is_nil(res[2], name .. " on a read-only store must not succeed")
        H.check_err(res[3])
      else
        local msg = tostring(res[2])
        assert.is_nil(msg:find("attempt to", 1, true), name .. ": " .. msg)
        assert.is_truthy(msg:find("read%-only") or msg:find("read_only"), name .. ": " .. msg)
      end
    end
    assert.equal(9, q:position())
    H.assert_same({ price = 10 }, q:get("product-2"))
  end)
end)

-- ---------------------------------------------------------------------------
describe("follow mode", function()
  it("runs until stop() returns true and picks up events appended from inside stop() at once", function()
    local s = t.store
    local seen = {}
    local p = s:projection("follow", { handlers = { Tick = function(v, e)
      seen[#seen + 1] = e.position
      v:put("n", (v:get("n") or 0) + 1)
    end } })
    s:append("t-1", H.evs(3, "Tick"))                           -- 1..3
    local calls = 0
    local n, pos = p:run({ follow = true, interval = 1000, stop = function()
      calls = calls + 1
      if calls < 4 then
        s:append("t-1", { type = "Tick", data = { call = calls } }) -- 4, 6, 8
        s:append("o-1", { type = "Other" })                       -- 5, 7, 9
      end
      return calls >= 4
    end })
    assert.equal(4, calls)
    assert.equal(6, n)
    assert.equal(9, pos)
    assert.equal(9, p:position())
    assert.equal(6, p:get("n"))
    H.assert_same({ 1, 2, 3, 4, 6, 8 }, seen)
    -- no polling: a commit ends the wait at once, long before `interval`
    local t4, t6, t8 = s:event(4).time, s:event(6).time, s:event(8).time
    assert.is_true(t6 - t4 < 500000, "second round " .. (t6 - t4) .. " us after the first")
    assert.is_true(t8 - t6 < 500000, "third round " .. (t8 - t6) .. " us after the second")
  end)

  it("with nothing new, waits `interval` ms between calls of stop()", function()
    local s = t.store
    local p = s:projection("idle-wait", { handlers = { Tick = counter() } })
    local times = {}
    p:run({ follow = true, interval = 30, stop = function()
      times[#times + 1] = require("system").monotime()
      return #times == 3
    end })
    assert.is_true(times[3] - times[1] >= 0.055, "stop() asked " .. (times[3] - times[1]) .. " s apart")
  end)

  it("inside a coroutine, yields while waiting and handles what was appended meanwhile", function()
    local s = t.store
    local seen = {}
    local p = s:projection("co-follow", { handlers = { Tick = function(_, e) seen[#seen + 1] = e.position end } })
    local stopping = false
    local co = coroutine.create(function()
      return p:run({ follow = true, interval = 60000, stop = function() return stopping end })
    end)
    local ok, token = coroutine.resume(co)
    assert.is_true(ok, tostring(token))
    assert.equal(p, token) -- it yields the projection
    assert.equal("suspended", coroutine.status(co))
    s:append("t-1", H.evs(2, "Tick"))
    ok, token = coroutine.resume(co)
    assert.is_true(ok, tostring(token))
    H.assert_same({ 1, 2 }, seen)
    stopping = true
    s:append("t-1", H.evs(1, "Tick"))
    local ok2, n, pos = coroutine.resume(co)
    assert.is_true(ok2, tostring(n))
    assert.equal("dead", coroutine.status(co))
    assert.equal(3, n)
    assert.equal(3, pos)
    H.assert_same({ 1, 2, 3 }, seen)
  end)

  it("with nothing to read, polls N times and returns 0 and the position", function()
    local s = t.store
    s:append("o-1", H.evs(2, "Other"))
    local p = s:projection("idle", { handlers = { Tick = counter() } })
    local calls = 0
    local n, pos = p:run({ follow = true, interval = 1, stop = function()
      calls = calls + 1
      return calls == 3
    end })
    assert.equal(3, calls)
    assert.equal(0, n)
    assert.equal(2, pos)
    assert.equal(2, p:position())
  end)

  it("follow with small batches still processes everything once", function()
    local s = t.store
    ledger_log(s, 60, 5)
    local calls = {}
    local p = s:projection("follow-ledger", { category = "acct", handlers = ledger(nil, calls) })
    local polls = 0
    local added = false
    local n, pos = p:run({ follow = true, batch = 2, interval = 1, stop = function()
      polls = polls + 1
      if not added and s:last_position() == p:position() then
        added = true
        ledger_log(s, 30, 9)
        return false
      end
      return added and p:position() == s:last_position()
    end })
    local expected, positions = expected_ledger(s, "acct")
    assert.equal(#positions, n)
    assert.equal(s:last_position(), pos)
    H.assert_same(positions, calls)
    H.assert_same(expected, (dump(p)))
  end)
end)

-- ---------------------------------------------------------------------------
describe("projection definitions", function()
  it("the same name defined again replaces its handlers and keeps its checkpoint and read model (the REPL workflow)", function()
    local s = t.store
    for i = 1, 3 do assert(s:append("acct-" .. i, H.ev("Opened", { n = i }))) end
    local p = s:projection("dup", { handlers = { Opened = function(view, ev)
      view:put(ev.stream, { n = ev.data.n })
    end } })
    assert.same({ 3, 3 }, { p:run() })
    -- a broken handler stops the run with nothing of its batch kept
    assert(s:append("acct-4", H.ev("Opened", { n = 4 })))
    local q = s:projection("dup", { handlers = { Opened = function() error("typo") end } })
    assert.is_true(rawequal(p, q))
    H.raises_with(function() q:run() end, "typo")
    assert.equal(3, p:position())
    -- fixed and defined again: it goes on from its checkpoint
    local r = s:projection("dup", { handlers = {
      Opened = function(view, ev) view:put(ev.stream, { n = ev.data.n * 10 }) end,
      Closed = function(view, ev) view:delete(ev.stream) end,
    } })
    assert.is_true(rawequal(p, r))
    assert(s:append("acct-1", H.ev("Closed", {})))
    assert.same({ 2, 5 }, { r:run() })
    assert.is_nil(r:get("acct-1"))
    assert.same({ n = 2 }, r:get("acct-2")) -- kept from the first definition
    assert.same({ n = 40 }, r:get("acct-4"))
    -- an old reference runs the new handlers too
    assert(s:append("acct-5", H.ev("Opened", { n = 5 })))
    assert.same({ 1, 6 }, { p:run() })
    assert.same({ n = 50 }, p:get("acct-5"))
    -- made inline: it catches up, then follows the commits
    assert(s:append("acct-6", H.ev("Opened", { n = 6 })))
    s:projection("dup", { inline = true, handlers = {
      Opened = function(view, ev) view:put(ev.stream, { n = -ev.data.n }) end,
    } })
    assert.same({ n = -6 }, p:get("acct-6"))
    assert(s:append("acct-7", H.ev("Opened", { n = 7 })))
    assert.same({ n = -7 }, p:get("acct-7"))
    -- and back: commits no longer run it
    s:projection("dup", { handlers = { Opened = function(view, ev) view:put(ev.stream, { n = 0 }) end } })
    assert(s:append("acct-8", H.ev("Opened", { n = 8 })))
    assert.is_nil(p:get("acct-8"))
    p:run()
    assert.same({ n = 0 }, p:get("acct-8"))
    -- another store may use the name for something else
    local dir2 = H.mkdtemp()
    local s2 = assert(H.open(t, dir2))
    local ok = pcall(s2.projection, s2, "dup", { handlers = { Z = function() end } })
    s2:close()
    H.rmrf(dir2)
    assert.is_true(ok)
  end)

  it("a handler that is not a function and other bad specs raise at definition", function()
    local s = t.store
    s:append("a-1", H.ev("A", {}))
    local f = function() end
    local cases = {
      { "h-number", { handlers = { A = 42 } }, "A" },
      { "h-string", { handlers = { A = f, B = "x" } }, "B" },
      { "h-table", { handlers = { A = {} } }, "A" },
      { "h-missing", {}, "handlers" },
      { "h-notable", { handlers = f }, "handlers" },
      { "cat", { handlers = { A = f }, category = 5 }, "category" },
      { "types-empty", { handlers = { A = f }, types = {} }, "types" },
      { "types-string", { handlers = { A = f }, types = "A" }, "types" },
      { "types-number", { handlers = { A = f }, types = { 1 } }, "types" },
    }
    for _, c in ipairs(cases) do
      H.raises_with(function() s:projection(c[1], c[2]) end, c[1], c[3])
      -- nothing was registered under that name
      assert.is_true(pcall(s.projection, s, c[1], { handlers = { A = f } }), c[1])
    end
    H.raises(function() s:projection("x", nil) end)
    H.raises(function() s:projection("x", "spec") end)
    H.raises(function() s:projection("", { handlers = {} }) end)
    H.raises(function() s:projection(nil, { handlers = {} }) end)
    H.raises(function() s:projection(5, { handlers = {} }) end)
    H.raises(function() s:projection("a\0b", { handlers = {} }) end)
    -- inline projections are checked the same way, before catching up
    H.raises_with(function() s:projection("inl", { inline = true, handlers = { A = 1 } }) end, "A")
    assert.equal(1, s:last_position())
  end)
end)

-- ---------------------------------------------------------------------------
describe("inline projections", function()
  local function stock(s, name)
    return s:projection(name or "stock", { inline = true, handlers = {
      Added = function(v, e) v:put(e.stream, (v:get(e.stream) or 0) + e.data.n) end,
    } })
  end

  it("a read right after append sees the new state; the checkpoint follows the log", function()
    local s = t.store
    local p = stock(s)
    assert.equal(0, p:position())
    local _, pos = s:append("item-1", H.ev("Added", { n = 2 }))
    assert.equal(2, p:get("item-1"))
    assert.equal(pos, p:position())
    -- several events of one append see each other's writes
    s:append("item-1", { H.ev("Added", { n = 3 }), H.ev("Added", { n = 4 }), H.ev("Other", {}) })
    assert.equal(9, p:get("item-1"))
    assert.equal(4, p:position())
    s:append("misc-1", H.ev("Other", {}))
    assert.equal(5, p:position())
    assert.equal(9, p:get("item-1"))
    -- a conflicting append writes nothing, the view included
    local v, err = s:append("item-1", H.ev("Added", { n = 100 }), { expected = 1 })
    assert.is_nil(v)
    H.check_err(err, "wrong_expected_version")
    assert.equal(9, p:get("item-1"))
    assert.equal(5, p:position())
    -- a catch-up run has nothing left to do
    assert.same({ 0, 5 }, { p:run() })
    assert.equal(9, p:get("item-1"))
    assert.is_truthy(tostring(p):find("inline", 1, true))
    assert.is_truthy(tostring(p):find("stock", 1, true))
  end)

  it("repository saves and updates of an aggregate update the view in the same write", function()
    local s = t.store
    local Cart = er.aggregate("projspec_cart", {
      init = function() return { items = 0 } end,
      apply = { ItemAdded = function(st, d) st.items = st.items + d.qty end },
      snapshot_every = 2,
    })
    function Cart:add(q) self:raise("ItemAdded", { qty = q }) end
    local totals = s:projection("cart-totals", { inline = true, category = "projspec_cart", handlers = {
      ItemAdded = function(v, e)
        if e.data.qty < 0 then error("negative quantity") end
        v:put(e.stream, (v:get(e.stream) or 0) + e.data.qty)
      end,
    } })
    local repo = s:repository(Cart)
    local c = repo:load("1")
    c:add(2)
    c:add(3)
    assert.equal(2, repo:save(c))
    assert.equal(5, totals:get("projspec_cart-1"))
    assert.equal(s:last_position(), totals:position())
    assert(repo:update("1", function(a) a:add(4) end))
    assert.equal(9, totals:get("projspec_cart-1"))
    assert(repo:update("2", function(a) a:add(1) end))
    assert.equal(1, totals:get("projspec_cart-2"))
    assert.equal(4, totals:position())
    -- a failing handler makes the save raise, with nothing written
    local c1 = repo:load("1")
    c1:add(-1)
    H.raises_with(function() repo:save(c1) end,
      "projection 'cart-totals': handler for 'ItemAdded' failed at position 5 (stream projspec_cart-1)", "negative quantity")
    assert.equal(3, s:version("projspec_cart-1"))
    assert.equal(4, s:last_position())
    assert.equal(9, totals:get("projspec_cart-1"))
    assert.equal(4, totals:position())
    assert.equal(9, repo:load("1").state.items)
  end)

  it("a handler error makes the append raise that error with nothing written", function()
    local s = t.store
    local all = s:projection("everything", { inline = true, handlers = { Good = counter(), Bad = counter() } })
    local strict = s:projection("strict", { inline = true, handlers = {
      Good = counter(),
      Bad = function() error("refused", 0) end,
    } })
    s:append("s-1", { H.ev("Good", {}), H.ev("Good", {}) })
    local before = H.state(s, "s-1")
    local ok, err = pcall(s.append, s, "s-1", { H.ev("Good", {}), H.ev("Bad", {}) })
    assert.is_false(ok)
    assert.equal("projection 'strict': handler for 'Bad' failed at position 4 (stream s-1): refused", err)
    H.assert_same(before, H.state(s, "s-1"))
    assert.is_nil(s:event(3))
    assert.equal(2, count_events(s))
    assert.equal(2, all:get("s-1"))
    assert.equal(2, strict:get("s-1"))
    assert.equal(2, all:position())
    assert.equal(2, strict:position())
    -- the store works on, positions stay contiguous
    local v, pos = s:append("s-1", H.ev("Good", {}))
    assert.equal(3, v)
    assert.equal(3, pos)
    assert.equal(3, all:get("s-1"))
    assert.equal(3, strict:get("s-1"))
    assert.equal(3, all:position())
    -- an unstorable value put from an inline handler does the same
    local bad = s:projection("unstorable-inline", { inline = true, handlers = {
      Weird = function(v) v:put("f", function() end) end,
    } })
    H.raises_with(function() s:append("s-2", H.ev("Weird", {})) end,
      "projection 'unstorable-inline': handler for 'Weird' failed at position 4 (stream s-2)")
    assert.equal(0, s:version("s-2"))
    assert.equal(3, s:last_position())
    assert.is_nil(bad:get("f"))
    assert.equal(3, bad:position())
  end)

  it("registering over existing events catches up first", function()
    local s = t.store
    s:append("item-1", { H.ev("Added", { n = 1 }), H.ev("Added", { n = 2 }) })
    s:append("item-2", H.ev("Added", { n = 5 }))
    s:append("misc-1", H.ev("Other", {}))
    local p = stock(s)
    assert.equal(3, p:get("item-1"))
    assert.equal(5, p:get("item-2"))
    assert.equal(4, p:position())
    s:append("item-2", H.ev("Added", { n = 1 }))
    assert.equal(6, p:get("item-2"))
    assert.equal(5, p:position())
    -- a catch-up that fails raises, and registers nothing
    H.raises_with(function()
      s:projection("bad-catchup", { inline = true, handlers = { Added = function() error("nope", 0) end } })
    end, "handler for 'Added' failed at position 1 (stream item-1)", "nope")
    s:append("item-1", H.ev("Added", { n = 10 }))
    assert.equal(13, p:get("item-1"))
    local good = s:projection("bad-catchup", { inline = true, handlers = { Added = counter() } })
    assert.equal(3, good:get("item-1"))
    assert.equal(2, good:get("item-2"))
    assert.equal(6, good:position())
  end)

  it("an inline projection not registered while events were appended catches up when registered again", function()
    local s = t.store
    stock(s)
    s:append("item-1", H.ev("Added", { n = 1 }))
    s:close()
    local s2 = assert(H.open(t, t.dir))
    s2:append("item-1", { H.ev("Added", { n = 2 }), H.ev("Added", { n = 4 }) })
    local p = stock(s2)
    assert.equal(7, p:get("item-1"))
    assert.equal(3, p:position())
  end)

  it("an idempotent retry of an append is not applied twice", function()
    local s = t.store
    local p = stock(s)
    local evs = { H.ev("Added", { n = 2 }, nil, er.uuid()), H.ev("Added", { n = 3 }, nil, er.uuid()) }
    local v1, p1 = s:append("item-1", evs, { expected = er.NO_STREAM })
    local v2, p2 = s:append("item-1", evs, { expected = er.NO_STREAM })
    assert.same({ v1, p1 }, { v2, p2 })
    assert.equal(5, p:get("item-1"))
    assert.equal(2, p:position())
  end)

  it("view:emit is refused and store:append raises inside inline handlers; nothing is written", function()
    local s = t.store
    s:projection("reacting-inline", { inline = true, handlers = {
      Emit = function(v) v:emit("out-1", { type = "Out" }) end,
      Nested = function() s:append("out-1", H.ev("Out", {})) end,
    } })
    -- the reason (after the prefix naming the event) says what was refused
    local function reason(type_)
      local prefix = "projection 'reacting-inline': handler for '" .. type_ .. "' failed at position 1 (stream in-1): "
      local msg = H.raises_with(function() s:append("in-1", H.ev(type_, {})) end, prefix)
      return msg:sub(msg:find(prefix, 1, true) + #prefix)
    end
    local r1 = reason("Emit")
    assert.is_truthy(r1:find("emit", 1, true), r1)
    local r2 = reason("Nested")
    assert.is_truthy(r2:find("append", 1, true), r2)
    assert.equal(0, s:last_position())
    assert.equal(0, s:version("in-1"))
    assert.equal(0, s:version("out-1"))
    local v, pos = s:append("in-1", H.ev("Plain", {}))
    assert.same({ 1, 1 }, { v, pos })
  end)

  it("reset rebuilds an inline projection at once", function()
    local s = t.store
    local p = stock(s)
    s:append("item-1", { H.ev("Added", { n = 1 }), H.ev("Added", { n = 2 }) })
    s:append("item-2", H.ev("Added", { n = 7 }))
    s:append("misc-1", H.ev("Other", {}))
    local before = dump(p)
    assert.is_truthy(p:reset())
    assert.equal(4, p:position())
    H.assert_same(before, (dump(p)))
    assert.equal(3, p:get("item-1"))
    s:append("item-2", H.ev("Added", { n = 1 }))
    assert.equal(8, p:get("item-2"))
  end)

  it("gives the same read model as a catch-up projection with the same handlers and filters", function()
    local s = t.store
    local noise_calls = 0
    local function handlers()
      local h = ledger()
      h.Noise = function() noise_calls = noise_calls + 1 end
      return h
    end
    local inl = s:projection("ledger-inline", { inline = true, category = "acct",
      types = { "Deposited", "Withdrawn" }, handlers = handlers() })
    ledger_log(s, 150, 21)
    local cu = s:projection("ledger-catchup", { category = "acct",
      types = { "Deposited", "Withdrawn" }, handlers = handlers() })
    cu:run({ batch = 5 })
    assert.equal(0, noise_calls)
    local expected = expected_ledger(s, "acct")
    H.assert_same(expected, (dump(inl)))
    H.assert_same(expected, (dump(cu)))
    assert.equal(s:last_position(), inl:position())
    assert.equal(s:last_position(), cu:position())
  end)

  it("applies the events a reactor's batch emits, in the same write", function()
    local s = t.store
    local shipped = s:projection("shipped", { inline = true, handlers = { ShippingStarted = counter("order") } })
    local reactor = s:projection("shipper", { handlers = { OrderPaid = function(v, e)
      v:emit("shipping-" .. e.data.order, { type = "ShippingStarted", data = { order = e.data.order } })
    end } })
    for i = 1, 5 do s:append("order-" .. i, H.ev("OrderPaid", { order = "o" .. i })) end
    local n, pos = reactor:run({ batch = 2 })
    assert.equal(5, n)
    assert.equal(reactor:position(), pos)
    assert.equal(10, s:last_position())
    for i = 1, 5 do assert.equal(1, shipped:get("o" .. i)) end
    assert.equal(10, shipped:position())
  end)
end)

-- ---------------------------------------------------------------------------
describe("reactors", function()
  local function shipper(s, name, opts_for)
    return s:projection(name or "shipper", { handlers = { OrderPaid = function(v, e)
      v:emit("shipping-" .. e.data.order, {
        type = "ShippingStarted", data = { order = e.data.order, n = 1, f = 1.0 },
        metadata = { reason = "paid" },
      }, opts_for and opts_for(e) or nil)
      v:put("done:" .. e.data.order, true)
    end } })
  end

  it("emitted events carry causation_id and correlation_id; other metadata and data are kept", function()
    local s = t.store
    s:append("order-1", H.ev("OrderPaid", { order = "1" }, { correlation_id = "corr-1", user = "u" }))
    s:append("order-2", H.ev("OrderPaid", { order = "2" }))
    s:append("misc-1", H.ev("Other", {}))
    local src1, src2 = s:event(1), s:event(2)
    local p = shipper(s)
    assert.same({ 2, 3 }, { p:run() })
    local out = events_of_type(s, "ShippingStarted")
    assert.equal(2, #out)
    local by_stream = {}
    for _, ev in ipairs(out) do by_stream[ev.stream] = ev end
    local e1, e2 = by_stream["shipping-1"], by_stream["shipping-2"]
    assert.is_truthy(e1 and e2)
    assert.is_true(e1.position > 3 and e2.position > 3)
    assert.equal(1, e1.version)
    H.assert_same({ order = "1", n = 1, f = 1.0 }, e1.data)
    H.assert_same({ reason = "paid", causation_id = src1.id, correlation_id = "corr-1" }, e1.metadata)
    H.assert_same({ reason = "paid", causation_id = src2.id, correlation_id = src2.id }, e2.metadata)
    assert.is_true(p:get("done:1"))
    -- nothing is emitted twice
    assert.same({ 0, 5 }, { p:run() })
    assert.equal(2, #events_of_type(s, "ShippingStarted"))
  end)

  it("a chained reaction keeps the correlation id of the first event", function()
    local s = t.store
    s:append("order-1", H.ev("OrderPaid", { order = "1" }))
    local root = s:event(1)
    local a = shipper(s)
    local b = s:projection("notifier", { handlers = { ShippingStarted = function(v, e)
      v:emit("mail-" .. e.data.order, { type = "MailSent" })
    end } })
    a:run()
    b:run()
    local started = events_of_type(s, "ShippingStarted")[1]
    local mail = events_of_type(s, "MailSent")[1]
    assert.is_truthy(mail)
    H.assert_same({ causation_id = started.id, correlation_id = root.id }, mail.metadata)
    assert.is_nil(mail.data)
  end)

  it("emitted events are committed with their batch: a later handler error discards them", function()
    local s = t.store
    for i = 1, 3 do s:append("order-" .. i, H.ev("OrderPaid", { order = tostring(i) })) end
    local boom = true
    local p = s:projection("failing-shipper", { handlers = { OrderPaid = function(v, e)
      v:emit("shipping-" .. e.data.order, { type = "ShippingStarted" })
      if boom and e.data.order == "3" then error("down", 0) end
    end } })
    H.raises_with(function() p:run() end, "handler for 'OrderPaid' failed at position 3 (stream order-3): down")
    assert.equal(3, s:last_position())
    assert.equal(0, #events_of_type(s, "ShippingStarted"))
    assert.equal(0, p:position())
    H.raises_with(function() p:run({ batch = 2 }) end, "failed at position 3")
    assert.equal(2, p:position())
    assert.equal(2, #events_of_type(s, "ShippingStarted"))
    boom = false
    p:run()
    assert.equal(3, #events_of_type(s, "ShippingStarted"))
    for i = 1, 3 do assert.equal(1, s:version("shipping-" .. i)) end
  end)

  it("an emit whose expected version conflicts makes run return nil, err and keeps nothing of the batch", function()
    local s = t.store
    s:append("shipping-2", H.ev("Manual", {}))                           -- 1
    for i = 1, 3 do s:append("order-" .. i, H.ev("OrderPaid", { order = tostring(i) })) end -- 2..4
    local p = shipper(s, "strict-shipper", function() return { expected = er.NO_STREAM } end)
    local n, err = p:run()
    assert.is_nil(n)
    H.check_err(err, "wrong_expected_version")
    assert.equal(0, p:position())
    assert.equal(4, s:last_position())
    assert.equal(0, s:version("shipping-1"))
    assert.equal(1, s:version("shipping-2"))
    assert.is_nil(p:get("done:1"))
    -- in batches of one, the first batch is kept and the second fails
    n, err = p:run({ batch = 1 })
    assert.is_nil(n)
    H.check_err(err, "wrong_expected_version")
    assert.equal(2, p:position())
    assert.is_true(p:get("done:1"))
    assert.is_nil(p:get("done:2"))
    assert.equal(1, s:version("shipping-1"))
    assert.equal(1, s:version("shipping-2"))
    assert.equal(0, s:version("shipping-3"))
    assert.equal(5, s:last_position())
    -- it keeps failing at the same place
    n, err = p:run({ batch = 1 })
    assert.is_nil(n)
    H.check_err(err, "wrong_expected_version")
    assert.equal(2, p:position())
    assert.equal(5, s:last_position())
  end)

  it("an emit with a matching expected version succeeds", function()
    local s = t.store
    for i = 1, 3 do s:append("order-" .. i, H.ev("OrderPaid", { order = tostring(i) })) end
    local p = shipper(s, "careful-shipper", function() return { expected = er.NO_STREAM } end)
    local n, pos = p:run({ batch = 2 })
    assert.equal(3, n)
    assert.equal(p:position(), pos)
    for i = 1, 3 do assert.equal(1, s:version("shipping-" .. i)) end
    assert.equal(6, s:last_position())
  end)

  it("emit checks its arguments", function()
    local s = t.store
    s:append("order-1", H.ev("OrderPaid", { order = "1" }))
    local cases = {
      { "no-table", function(v) v:emit("x-1", "Type") end },
      { "no-type", function(v) v:emit("x-1", { data = 1 }) end },
      { "bad-metadata", function(v) v:emit("x-1", { type = "T", metadata = "m" }) end },
      { "bad-stream", function(v) v:emit("", { type = "T" }) end },
      { "bad-data", function(v) v:emit("x-1", { type = "T", data = print }) end },
    }
    for _, c in ipairs(cases) do
      local p = s:projection("emit-" .. c[1], { handlers = { OrderPaid = function(v, e) v:put("k", 1); c[2](v, e) end } })
      H.raises_with(function() p:run() end,
        "projection 'emit-" .. c[1] .. "': handler for 'OrderPaid' failed at position 1 (stream order-1)")
      assert.equal(0, p:position())
      assert.is_nil(p:get("k"))
    end
    assert.equal(1, s:last_position())
  end)
end)

-- ---------------------------------------------------------------------------
describe("exactly once across crashes", function()
  -- A child process runs `src` and must die with os.exit(1).
  local function crash_child(src)
    local out, status, how = H.run_child_status(src)
    assert.equal("exit", how, out)
    assert.equal(1, status, out)
    assert.is_nil(out:find("NOCRASH", 1, true), out)
    return out
  end

  it("a catch-up projection killed mid-run resumes and applies every event exactly once", function()
    local s = t.store
    ledger_log(s, 300, 17)
    local last = s:last_position()
    local full, positions = expected_ledger(s, "acct")
    local N = #positions
    assert.is_true(N > 90, "enough matching events")
    s:close()
    -- crash points (indexes in `positions`) and the batch size of each child
    local stages = { { 1, 5 }, { 38, 7 }, { 80, 4 }, { N, 3 } }
    local idx = 0 -- matching events committed so far
    for _, st in ipairs(stages) do
      local crash_i, batch = st[1], st[2]
      local out = crash_child(string.format([[
        local s = assert(er.open(%q))
        local p = s:projection("ledger", { category = "acct", handlers = assert(load(%q))(%d) })
        io.write("START ", p:position(), "\n") io.stdout:flush()
        local n, pos = p:run({ batch = %d })
        print("NOCRASH", n, pos)
      ]], t.dir, LEDGER_SRC, positions[crash_i], batch))
      assert.is_truthy(out:find("START " .. (idx > 0 and positions[idx] or 0) .. "\n", 1, true), out)
      idx = idx + (crash_i - idx - 1) // batch * batch
      -- the parent opens the store only now that the child is gone
      local s2 = assert(H.open(t, t.dir))
      local p = s2:projection("ledger", { category = "acct", handlers = ledger() })
      assert.equal(idx > 0 and positions[idx] or 0, p:position(), "checkpoint after the crash at " .. crash_i)
      H.assert_same((expected_ledger(s2, "acct", idx)), (dump(p)), "read model after the crash at " .. crash_i)
      s2:close()
    end
    assert.is_true(idx > 80 and idx < N)
    local s3 = assert(H.open(t, t.dir))
    local calls = {}
    local p = s3:projection("ledger", { category = "acct", handlers = ledger(nil, calls) })
    local n, pos = p:run()
    assert.equal(N - idx, n)
    assert.equal(last, pos)
    assert.equal(last, p:position())
    assert.equal(last, s3:last_position())
    H.assert_same({ table.unpack(positions, idx + 1) }, calls)
    local model = dump(p)
    H.assert_same(full, model)
    -- the list of applied positions has no duplicate and no gap
    H.assert_same(positions, model.applied)
    for _, pos_ in ipairs(positions) do assert.equal(1, model["seen:" .. pos_]) end
    -- counts per stream are the true counts
    local truth = {}
    for e in s3:all({ category = "acct", types = { "Deposited", "Withdrawn" } }) do
      truth[e.stream] = (truth[e.stream] or 0) + 1
    end
    for stream, c in pairs(truth) do assert.equal(c, model["acct:" .. stream].n, stream) end
  end)

  it("a reactor killed mid-batch produces exactly one reaction per source event after resuming", function()
    local s = t.store
    local N = 40
    for i = 1, N do
      local meta = i % 3 == 0 and { correlation_id = "c" .. i } or nil
      s:append("order-" .. i, H.ev("OrderPlaced", { order = i }, meta))
      if i % 4 == 0 then s:append("order-" .. i, H.ev("OrderNoted", { order = i })) end
    end
    local sources = events_of_type(s, "OrderPlaced")
    assert.equal(N, #sources)
    s:close()
    local REACTOR_SRC = [[
      local crash = ...
      return { OrderPlaced = function(v, e)
        v:emit("shipping-" .. e.data.order, { type = "ShippingRequested", data = { order = e.data.order },
          metadata = { reactor = "ship" } })
        local k = "done:" .. e.data.order
        v:put(k, (v:get(k) or 0) + 1)
        if e.data.order == crash then os.exit(1) end
      end }
    ]]
    local done = 0
    for _, st in ipairs({ { 23, 6 }, { 31, 4 }, { 32, 5 } }) do
      local crash_i, batch = st[1], st[2]
      crash_child(string.format([[
        local s = assert(er.open(%q))
        local p = s:projection("shipper", { handlers = assert(load(%q))(%d) })
        local n, pos = p:run({ batch = %d })
        print("NOCRASH", n, pos)
      ]], t.dir, REACTOR_SRC, crash_i, batch))
      done = done + (crash_i - done - 1) // batch * batch
      local s2 = assert(H.open(t, t.dir))
      assert.equal(done, #events_of_type(s2, "ShippingRequested"), "reactions after the crash at " .. crash_i)
      s2:close()
    end
    assert.equal(30, done)
    local s3 = assert(H.open(t, t.dir))
    local p = s3:projection("shipper", { handlers = assert(load(REACTOR_SRC))(nil) })
    local n, pos = p:run({ batch = 3 })
    assert.equal(N - done, n)
    assert.equal(p:position(), pos)
    local out = events_of_type(s3, "ShippingRequested")
    assert.equal(N, #out)
    local by_id = {}
    for _, src in ipairs(sources) do by_id[src.id] = src end
    local causes = {}
    for _, ev in ipairs(out) do
      local cause = ev.metadata.causation_id
      assert.is_nil(causes[cause], "two reactions to " .. tostring(cause))
      causes[cause] = true
      local src = by_id[cause]
      assert.is_truthy(src, "causation_id is a source id")
      assert.equal(src.data.order, ev.data.order)
      assert.equal("shipping-" .. src.data.order, ev.stream)
      assert.equal(1, ev.version)
      H.assert_same({ reactor = "ship", causation_id = src.id,
        correlation_id = src.metadata.correlation_id or src.id }, ev.metadata)
    end
    for i = 1, N do assert.equal(1, p:get("done:" .. i), "done:" .. i) end
    assert.same({ 0, s3:last_position() }, { p:run() })
  end)

  it("an inline projection whose process dies inside an append loses that append and nothing else", function()
    local s = t.store
    s:close()
    local SRC = [[
      local crash = ...
      return { Tick = function(v, e)
        if e.data.i == crash then os.exit(1) end
        v:put("count", (v:get("count") or 0) + 1)
        v:put("sum", (v:get("sum") or 0) + e.data.i)
      end }
    ]]
    crash_child(string.format([[
      local s = assert(er.open(%q))
      s:projection("ticks", { inline = true, handlers = assert(load(%q))(20) })
      for i = 1, 30 do s:append("c-1", { type = "Tick", data = { i = i } }) end
      print("NOCRASH")
    ]], t.dir, SRC))
    local s2 = assert(H.open(t, t.dir))
    assert.equal(19, s2:last_position())
    assert.equal(19, s2:version("c-1"))
    local p = s2:projection("ticks", { inline = true, handlers = assert(load(SRC))(nil) })
    assert.equal(19, p:position())
    assert.equal(19, p:get("count"))
    assert.equal(190, p:get("sum"))
    s2:append("c-1", { type = "Tick", data = { i = 20 } })
    assert.equal(20, p:get("count"))
    assert.equal(210, p:get("sum"))
    assert.equal(20, p:position())
  end)
end)
