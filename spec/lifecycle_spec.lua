-- The data lifecycle: soft and hard deletes, truncation, retention limits,
-- compaction, and the holes they leave in the global log.
local H = require "helper"
local er = require "eventrocks"

local function positions(store, opts)
  local out = {}
  for ev in store:all(opts) do out[#out + 1] = ev.position end
  return out
end

local function versions(store, stream, opts)
  local out = {}
  for ev in assert(store:read(stream, opts)) do out[#out + 1] = ev.version end
  return out
end

local function streams(store)
  local out = {}
  for s, v in store:streams() do out[#out + 1] = s .. "@" .. v end
  return out
end

local function problems(store)
  return store:_check() -- count, messages
end

-- Every file of the store directory, read whole.
local function files_holding(dir, marker)
  local hits = {}
  local p = assert(io.popen("ls -1 " .. H.shquote(dir)))
  for name in p:lines() do
    local s = H.read_file(dir .. "/" .. name)
    if s and s:find(marker, 1, true) then hits[#hits + 1] = name end
  end
  p:close()
  return hits
end

local function format_of(store)
  local v = assert(store:_debug_get("default", "format"))
  return (string.unpack("<I4", v))
end

describe("store:delete (soft)", function()
  local t = {}
  before_each(function()
    H.setup(t)
    assert(t.store:append("order-1", H.evs(3, "Placed")))
    assert(t.store:append("order-2", H.evs(2, "Placed")))
  end)
  after_each(function() H.teardown(t) end)

  it("hides the stream from read and streams, keeps its version and its events in the global log", function()
    assert.is_true(t.store:delete("order-1"))
    assert.same({}, versions(t.store, "order-1"))
    assert.same({ "order-2@2" }, streams(t.store))
    assert.equal(3, t.store:version("order-1"))
    assert.same({ 1, 2, 3, 4, 5 }, positions(t.store))
    assert.equal(0, (problems(t.store)))
  end)

  it("lets the stream restart after its last version, with ANY or the last version", function()
    assert(t.store:delete("order-1"))
    local v, p = t.store:append("order-1", H.ev("Reopened"))
    assert.equal(4, v)
    assert.equal(6, p)
    assert.same({ 4 }, versions(t.store, "order-1"))
    assert.same({ "order-1@4", "order-2@2" }, streams(t.store))
    assert(t.store:delete("order-2"))
    local _, err = t.store:append("order-2", H.ev("X"), { expected = er.NO_STREAM })
    H.check_err(err, "wrong_expected_version")
    assert.equal(3, (t.store:append("order-2", H.ev("X"), { expected = 2 })))
    assert.equal(0, (problems(t.store)))
  end)

  -- Found by `fuzz ops` (2026-12-06): the retry wrote the restart to disk,
  -- so the deleted stream came back after a reopen.
  it("stays deleted when a retry of an append from before the delete is replayed, across a reopen", function()
    local evs = {
      { type = "Placed", id = "5a0c3c52-1f7e-4c1e-9d3a-000000000001" },
      { type = "Paid", id = "5a0c3c52-1f7e-4c1e-9d3a-000000000002" },
    }
    local _, first = t.store:append("order-3", evs)
    assert(t.store:delete("order-3"))
    local v, p = t.store:append("order-3", evs) -- the earlier answer: nothing written
    assert.equal(2, v)
    assert.equal(first, p)
    assert.equal(7, t.store:last_position())
    assert.same({ "order-1@3", "order-2@2" }, streams(t.store))
    assert.same({}, versions(t.store, "order-3"))
    t.store:close()
    t.store = assert(H.open(t, t.dir))
    assert.same({ "order-1@3", "order-2@2" }, streams(t.store))
    assert.same({}, versions(t.store, "order-3"))
    -- a new append still restarts it
    assert.equal(3, (t.store:append("order-3", H.ev("Reopened"))))
    assert.same({ "order-1@3", "order-2@2", "order-3@3" }, streams(t.store))
    assert.equal(0, (problems(t.store)))
  end)

  it("checks the expected version and changes nothing on a mismatch", function()
    local _, err = t.store:delete("order-1", { expected = 2 })
    H.check_err(err, "wrong_expected_version")
    assert.equal(2, err.expected)
    assert.equal(3, err.actual)
    assert.same({ 1, 2, 3 }, versions(t.store, "order-1"))
    assert.is_true(t.store:delete("order-1", { expected = 3 }))
    assert.equal(1, format_of(t.store) - 1)
  end)

  it("says not_found for a stream without events, and refuses bad options", function()
    local _, err = t.store:delete("nobody-1")
    H.check_err(err, "not_found")
    H.raises_with(function() t.store:delete("order-1", { hardd = true }) end, "hardd")
    H.raises_with(function() t.store:delete("order-1", { hard = "yes" }) end, "hard")
    H.raises_with(function() t.store:delete("order-1", { expected = -7 }) end, "expected")
    H.raises_with(function() t.store:delete(42) end, "string")
    assert.same({ 1, 2, 3 }, versions(t.store, "order-1"))
    assert.equal(1, format_of(t.store))
  end)
end)

describe("store:delete (hard)", function()
  local t = {}
  before_each(function()
    H.setup(t)
    assert(t.store:append("user-1", H.evs(3, "Registered")))
    assert(t.store:append("user-2", H.evs(2, "Registered")))
  end)
  after_each(function() H.teardown(t) end)

  it("removes the stream's events from read, all, event and streams at once", function()
    assert.is_true(t.store:delete("user-1", { hard = true }))
    local it, err = t.store:read("user-1")
    assert.is_nil(it)
    H.check_err(err, "stream_deleted")
    assert.same({ 4, 5 }, positions(t.store))
    assert.is_nil(t.store:event(1))
    assert.equal("user-2", t.store:event(4).stream)
    assert.same({ "user-2@2" }, streams(t.store))
    assert.equal(5, t.store:last_position())
    assert.equal(0, (problems(t.store)))
  end)

  it("makes every later append of the stream stream_deleted, also in a transaction", function()
    assert(t.store:delete("user-1", { hard = true }))
    local _, err = t.store:append("user-1", H.ev("Again"))
    H.check_err(err, "stream_deleted")
    local txn = assert(t.store:_txn())
    txn:append("user-2", H.ev("Fine"))
    txn:append("user-1", H.ev("Again"))
    local ok, cerr = txn:commit()
    txn:close()
    assert.is_nil(ok)
    H.check_err(cerr, "stream_deleted")
    assert.equal(5, t.store:last_position())
    _, err = t.store:delete("user-1")
    H.check_err(err, "stream_deleted")
    _, err = t.store:truncate("user-1", 2)
    H.check_err(err, "stream_deleted")
  end)

  it("drops the snapshot with a soft delete (a restarted aggregate starts from init) and hard-deletes a soft-deleted stream", function()
    local Acct = er.aggregate("acct", { init = function() return { n = 0 } end, snapshot_every = 1,
      apply = { Deposited = function(s, d) s.n = s.n + d.n end } })
    local repo = t.store:repository(Acct)
    local a = repo:load("7")
    a:raise("Deposited", { n = 5 })
    assert(repo:save(a))
    assert(t.store:_get("snapshots", "acct-7"))
    assert(t.store:delete("acct-7"))
    assert.is_nil(t.store:_get("snapshots", "acct-7"))
    a = repo:load("7")
    assert.equal(0, a.state.n)
    a:raise("Deposited", { n = 2 })
    assert(repo:save(a))
    assert.equal(2, repo:load("7").state.n)
    assert(t.store:delete("acct-7", { hard = true }))
    assert.is_nil(t.store:_get("snapshots", "acct-7"))
    local ok, err = pcall(repo.load, repo, "7")
    assert.is_false(ok)
    H.check_err(err, "stream_deleted")
  end)

  it("keeps a projection that catches up afterwards from seeing the events", function()
    assert(t.store:delete("user-1", { hard = true }))
    local seen = {}
    local p = t.store:projection("seen", { handlers = { Registered = function(_, ev) seen[#seen + 1] = ev.position end } })
    assert(p:run())
    assert.same({ 4, 5 }, seen)
    assert.equal(5, p:status().position)
    assert(t.store:append("user-3", H.ev("Registered")))
    assert(p:run())
    assert.same({ 4, 5, 6 }, seen)
  end)
end)

describe("store:truncate", function()
  local t = {}
  before_each(function()
    H.setup(t)
    assert(t.store:append("cart-1", H.evs(5, "Added")))
  end)
  after_each(function() H.teardown(t) end)

  it("removes the versions below the given one; the rest keep versions and positions", function()
    assert.is_true(t.store:truncate("cart-1", 3))
    assert.same({ 3, 4, 5 }, versions(t.store, "cart-1"))
    assert.same({ 5, 4, 3 }, versions(t.store, "cart-1", { backward = true }))
    assert.same({ 3, 4, 5 }, positions(t.store))
    assert.same({ 4 }, versions(t.store, "cart-1", { from = 4, count = 1 }))
    assert.equal(5, t.store:version("cart-1"))
    -- an earlier version is a no-op; the stream goes on
    assert.is_true(t.store:truncate("cart-1", 2))
    assert.same({ 3, 4, 5 }, versions(t.store, "cart-1"))
    assert.equal(6, (t.store:append("cart-1", H.ev("Added"), { expected = 5 })))
    assert.is_true(t.store:truncate("cart-1", 7)) -- everything
    assert.same({}, versions(t.store, "cart-1"))
    assert.same({ "cart-1@6" }, streams(t.store))
    assert.equal(0, (problems(t.store)))
  end)

  it("raises on a version beyond the stream or below 1, and changes nothing", function()
    H.raises_with(function() t.store:truncate("cart-1", 7) end, "version 5", "6 at most")
    H.raises_with(function() t.store:truncate("cart-1", 0) end, ">= 1")
    H.raises_with(function() t.store:truncate("cart-1", -3) end, ">= 1")
    H.raises_with(function() t.store:truncate("cart-1", 2.5) end, ">= 1")
    H.raises_with(function() t.store:truncate("cart-1") end, ">= 1")
    local _, err = t.store:truncate("cart-9", 2)
    H.check_err(err, "not_found")
    assert.same({ 1, 2, 3, 4, 5 }, versions(t.store, "cart-1"))
    assert.equal(1, format_of(t.store))
  end)
end)

describe("retention: store:set_stream_meta / store:stream_meta", function()
  local t = {}
  before_each(function() H.setup(t) end)
  after_each(function() H.teardown(t) end)

  it("max_count keeps the newest events only, as events are appended", function()
    assert.same({}, t.store:stream_meta("log-1"))
    assert.is_true(t.store:set_stream_meta("log-1", { max_count = 3 })) -- before the stream exists
    assert.same({ max_count = 3 }, t.store:stream_meta("log-1"))
    for i = 1, 5 do assert(t.store:append("log-1", H.ev("Line", { i = i }))) end
    assert.same({ 3, 4, 5 }, versions(t.store, "log-1"))
    assert.same({ 3, 4, 5 }, positions(t.store))
    assert(t.store:append("log-1", H.ev("Line")))
    assert.same({ 4, 5, 6 }, versions(t.store, "log-1"))
    assert.is_nil(t.store:event(3))
    assert.equal(0, (problems(t.store)))
  end)

  it("max_age removes events older than that many seconds, by their time", function()
    local now = er.now and er.now() or math.floor(os.time() * 1e6)
    local txn = assert(t.store:_txn())
    txn:append("temp-1", { H.ev("Old"), H.ev("Old") }, { time = now - 7200 * 1000000 })
    assert(txn:commit())
    txn:close()
    assert(t.store:append("temp-1", H.ev("New")))
    assert(t.store:append("other-1", H.ev("New")))
    assert.same({ 1, 2, 3 }, versions(t.store, "temp-1"))
    assert(t.store:set_stream_meta("temp-1", { max_age = 3600 }))
    assert.same({ max_age = 3600 }, t.store:stream_meta("temp-1"))
    assert.same({ 3 }, versions(t.store, "temp-1"))
    assert.same({ 3, 4 }, positions(t.store))
    assert.equal(0, (problems(t.store)))
  end)

  it("loosening or removing a limit never brings removed events back", function()
    assert(t.store:append("log-1", H.evs(5, "Line")))
    assert(t.store:set_stream_meta("log-1", { max_count = 2 }))
    assert.same({ 4, 5 }, versions(t.store, "log-1"))
    assert(t.store:set_stream_meta("log-1", { max_count = 10 }))
    assert.same({ 4, 5 }, versions(t.store, "log-1"))
    assert(t.store:set_stream_meta("log-1", {}))
    assert.same({}, t.store:stream_meta("log-1"))
    assert.same({ 4, 5 }, versions(t.store, "log-1"))
    assert(t.store:append("log-1", H.evs(3, "Line")))
    assert.same({ 4, 5, 6, 7, 8 }, versions(t.store, "log-1"))
  end)

  it("raises on unknown fields, negative, zero or fractional limits, and changes nothing", function()
    H.raises_with(function() t.store:set_stream_meta("log-1", { max_cont = 2 }) end, "max_cont")
    H.raises_with(function() t.store:set_stream_meta("log-1", { max_count = -1 }) end, "max_count")
    H.raises_with(function() t.store:set_stream_meta("log-1", { max_count = 0 }) end, "max_count")
    H.raises_with(function() t.store:set_stream_meta("log-1", { max_age = 1.5 }) end, "max_age")
    H.raises_with(function() t.store:set_stream_meta("log-1", { max_age = "1h" }) end, "max_age")
    H.raises_with(function() t.store:set_stream_meta("log-1") end, "table")
    assert.same({}, t.store:stream_meta("log-1"))
    assert.equal(1, format_of(t.store))
  end)
end)

describe("store:compact", function()
  local t = {}
  before_each(function() H.setup(t) end)
  after_each(function() H.teardown(t) end)

  it("leaves no byte of a removed event in any file of the store; the rest reads as before", function()
    assert(t.store:append("gone-1", { H.ev("Secret", { s = "MARK-HARD-5b1e" }), H.ev("Secret", { s = "MARK-HARD-5b1e" }) }))
    assert(t.store:append("keep-1", H.ev("Kept", { s = "MARK-KEEP-91c0" })))
    assert(t.store:append("trunc-1", { H.ev("Old", { s = "MARK-TRUNC-77aa" }), H.ev("New", { s = "MARK-NEWER-0a0a" }) }))
    for i = 1, 4 do assert(t.store:append("capped-1", H.ev("Line", { s = i <= 2 and "MARK-COUNT-3c3c" or "MARK-CAPKEEP" }))) end
    assert(t.store:delete("gone-1", { hard = true }))
    assert(t.store:truncate("trunc-1", 2))
    assert(t.store:set_stream_meta("capped-1", { max_count = 2 }))
    local before = {}
    for ev in t.store:all() do before[#before + 1] = { ev.position, ev.stream, ev.version, ev.id, ev.data.s } end
    assert.equal(5, t.store:compact())
    assert.equal(0, t.store:compact()) -- nothing more to remove
    for _, marker in ipairs({ "MARK-HARD-5b1e", "MARK-TRUNC-77aa", "MARK-COUNT-3c3c" }) do
      assert.same({}, files_holding(t.dir, marker), marker)
    end
    assert.is_true(#files_holding(t.dir, "MARK-KEEP-91c0") > 0)
    local after = {}
    for ev in t.store:all() do after[#after + 1] = { ev.position, ev.stream, ev.version, ev.id, ev.data.s } end
    assert.same(before, after)
    assert.equal(9, t.store:last_position())
    assert.equal(0, (problems(t.store)))
    -- and after a reopen
    t.store:close()
    local s = assert(H.open(t, t.dir))
    assert.equal(9, s:last_position())
    assert.same({ 3, 4 }, versions(s, "capped-1"))
    local _, err = s:read("gone-1")
    H.check_err(err, "stream_deleted")
    assert.equal(0, (problems(s)))
    assert.equal(2, format_of(s))
  end)

  it("frees the id of a removed event, consistently before and after compaction", function()
    local id = er.uuid()
    assert(t.store:append("a-1", H.ev("E", nil, nil, id)))
    assert(t.store:append("a-1", H.ev("E")))
    assert(t.store:truncate("a-1", 2))
    local v = assert(t.store:append("b-1", H.ev("E", nil, nil, id)))
    assert.equal(1, v)
    assert.equal(0, t.store:compact() - 1)
    assert.equal("b-1", t.store:event(3).stream)
    assert.equal(0, (problems(t.store)))
    local _, err = t.store:append("c-1", H.ev("E", nil, nil, id))
    H.check_err(err, "duplicate_event")
  end)

  -- Found by `fuzz ops` (2026-12-07): the id's entry was put back for the
  -- reusing event although that event was removed by the same compaction.
  it("frees an id whose first event and whose reusing event are removed by one compaction", function()
    local id = er.uuid()
    assert(t.store:append("a-1", H.ev("E", nil, nil, id)))
    assert(t.store:append("a-1", H.ev("E")))
    assert(t.store:truncate("a-1", 2)) -- version 1 removed: its id is free again
    assert(t.store:append("a-1", H.ev("E", nil, nil, id))) -- version 3 reuses it
    assert(t.store:append("a-1", H.ev("E")))
    assert(t.store:truncate("a-1", 4)) -- removes versions 1 to 3: both holders of the id
    assert.equal(3, t.store:compact())
    assert.equal(0, (problems(t.store)))
    assert(t.store:append("b-1", H.ev("E", nil, nil, id))) -- free
    assert.equal(0, (problems(t.store)))
  end)

  it("keeps the newest position when the newest events are removed", function()
    assert(t.store:append("a-1", H.evs(2, "E")))
    assert(t.store:append("b-1", H.evs(2, "E")))
    assert(t.store:delete("b-1", { hard = true }))
    assert(t.store:compact())
    t.store:close()
    local s = assert(H.open(t, t.dir))
    assert.equal(4, s:last_position())
    assert.equal(5, select(2, s:append("a-1", H.ev("E"))))
    assert.same({ 1, 2, 5 }, positions(s))
    assert.equal(0, (problems(s)))
  end)
end)

describe("check and holes", function()
  local t = {}
  before_each(function() H.setup(t) end)
  after_each(function() H.teardown(t) end)

  it("still reports a hole that nothing explains", function()
    assert(t.store:append("a-1", H.evs(3, "E")))
    assert(t.store:append("b-1", H.evs(1, "E")))
    assert(t.store:delete("b-1", { hard = true }))
    assert(t.store:compact())
    assert.equal(0, (problems(t.store)))
    assert(t.store:_debug_delete("log", string.pack(">I8", 2)))
    local n, list = problems(t.store)
    assert.is_true(n >= 1)
    assert.matches("position 3 follows 1", table.concat(list, "\n"), 1, true)
  end)

  it("a read-only handle sees a delete after refresh", function()
    assert(t.store:append("a-1", H.evs(2, "E")))
    local ro = assert(H.open(t, t.dir, { read_only = true }))
    assert.same({ 1, 2 }, versions(ro, "a-1"))
    assert(t.store:truncate("a-1", 2))
    assert(ro:refresh())
    assert.same({ 2 }, versions(ro, "a-1"))
    H.check_err(select(2, ro:delete("a-1")), "invalid")
  end)

  it("an older format-1 store opens and moves to format 2 at its first lifecycle write only", function()
    assert(t.store:append("a-1", H.evs(2, "E")))
    assert.equal(1, format_of(t.store))
    assert(t.store:set_stream_meta("a-1", { max_count = 5 }))
    assert.equal(2, format_of(t.store))
    assert.equal(3, er.FORMAT) -- format 3: sealed events (personal data)
  end)
end)

describe("export and import of a store with holes", function()
  local t = {}
  before_each(function() H.setup(t) end)
  after_each(function() H.teardown(t) end)

  it("is faithful: the same events at the same positions and versions, the holes and removed versions too", function()
    assert(t.store:append("a-1", H.evs(4, "E")))
    assert(t.store:append("b-1", H.evs(3, "E")))
    assert(t.store:append("a-1", H.evs(2, "E")))
    assert(t.store:append("c-1", H.evs(2, "E")))
    assert(t.store:truncate("a-1", 3))
    assert(t.store:delete("b-1", { hard = true }))
    assert(t.store:delete("c-1", { hard = true })) -- the log ends with a hole
    assert(t.store:compact())
    local function dump(store)
      local out = {}
      for ev in store:all() do out[#out + 1] = { ev.position, ev.stream, ev.version, ev.id, ev.type, ev.time } end
      return out
    end
    local want = dump(t.store)
    t.store:close()
    local file = t.dir .. ".jsonl"
    local code, out, err = H.sh(H.CMD .. " --store " .. H.shquote(t.dir) .. " export " .. H.shquote(file))
    assert.equal(0, code, err)
    local copy = t.dir .. "-copy"
    code, out, err = H.sh(H.CMD .. " --store " .. H.shquote(copy) .. " import " .. H.shquote(file))
    assert.equal(0, code, err .. out)
    -- a second import is an idempotent retry
    code, out, err = H.sh(H.CMD .. " --store " .. H.shquote(copy) .. " import " .. H.shquote(file))
    assert.equal(0, code, err .. out)
    assert.matches("4 events were already there", err, 1, true)
    local s = assert(H.open(t, copy))
    assert.same(want, dump(s))
    assert.same({ 3, 4, 5, 6 }, versions(s, "a-1"))
    assert.equal(0, (problems(s)))
    assert.equal(7, (s:append("a-1", H.ev("E"))))
    H.rmrf(copy)
    os.remove(file)
  end)
end)

describe("subscriptions over holes", function()
  local t = {}
  before_each(function() H.setup(t) end)
  after_each(function() H.teardown(t) end)

  it("yield the events that read, on the writer's handle and on a read-only one, without stalling at a hole", function()
    assert(t.store:append("a-1", H.evs(2, "E")))
    assert(t.store:append("b-1", H.evs(3, "E")))
    assert(t.store:append("a-1", H.evs(1, "E")))
    assert(t.store:append("c-1", H.evs(2, "E")))
    assert(t.store:delete("b-1", { hard = true }))
    assert(t.store:delete("c-1", { hard = true })) -- a hole at the end too
    assert(t.store:compact())
    local got = {}
    for ev in t.store:subscribe({ timeout = 0.2 }) do got[#got + 1] = ev.position end
    assert.same({ 1, 2, 6 }, got)
    local ro = assert(H.open(t, t.dir, { read_only = true }))
    got = {}
    local t0 = os.clock()
    for ev in ro:subscribe({ timeout = 0.2 }) do got[#got + 1] = ev.position end
    assert.same({ 1, 2, 6 }, got)
    assert.is_true(os.clock() - t0 < 1)
  end)
end)

describe("store:stats with deletes and limits", function()
  local t = {}
  before_each(function() H.setup(t) end)
  after_each(function() H.teardown(t) end)

  it("counts the events and streams that reads show", function()
    local now = math.floor(os.time() * 1e6)
    local txn = assert(t.store:_txn())
    txn:append("temp-1", { H.ev("Old"), H.ev("Old") }, { time = now - 7200 * 1000000 })
    assert(txn:commit())
    txn:close()
    assert(t.store:append("temp-1", H.evs(3, "New")))
    assert(t.store:append("a-1", H.evs(5, "E")))
    assert(t.store:append("b-1", H.evs(4, "E")))
    assert(t.store:append("c-1", H.evs(3, "E")))
    assert(t.store:append("d-1", H.evs(6, "E")))
    assert(t.store:append("e-1", H.evs(2, "E")))
    local function check()
      local n = 0
      for _ in t.store:all() do n = n + 1 end
      local st = t.store:stats()
      assert.equal(n, st.events)
      local k = 0
      for _ in t.store:streams() do k = k + 1 end
      assert.equal(k, st.streams)
      return st
    end
    assert.equal(25, check().events)
    assert(t.store:set_stream_meta("temp-1", { max_age = 3600 }))
    assert(t.store:truncate("a-1", 3))
    assert(t.store:delete("b-1"))              -- soft: its events stay in the log
    assert(t.store:delete("c-1", { hard = true }))
    assert(t.store:set_stream_meta("d-1", { max_count = 2 }))
    local st = check()
    assert.equal(25 - 2 - 2 - 3 - 4, st.events)
    assert.equal(4, st.streams)
    assert(t.store:compact())
    assert.equal(14, check().events)
  end)
end)
