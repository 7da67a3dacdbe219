-- Personal data (issue 16): events of a subject are encrypted at rest with
-- a key of that subject, wrapped by the store's key; store:forget destroys
-- it.  API.md, "Personal data (crypto-shredding)"; doc/personal-data.md.
local H = require "helper"
local er = H.er
local core = require "eventrocks.core"

local KEY = string.rep("\1", 16) .. string.rep("\2", 16)
local OTHER = string.rep("\3", 32)

-- Every regular file under `dir` (recursively), as a list of paths.
local function files_of(dir)
  local p = assert(io.popen("find " .. H.shquote(dir) .. " -type f"))
  local out = {}
  for line in p:lines() do out[#out + 1] = line end
  p:close()
  return out
end

-- The files under `dir` whose bytes contain `needle`.
local function files_holding(dir, needle)
  local hits = {}
  for _, f in ipairs(files_of(dir)) do
    local bytes = H.read_file(f)
    if bytes and bytes:find(needle, 1, true) then hits[#hits + 1] = f end
  end
  return hits
end

-- What the store's files hold now: flushed and compacted, the WAL too.
local function settle(store)
  assert(store:compact())
  store:_wait_idle()
end

describe("personal data", function()
  local t = {}
  before_each(function()
    H.setup(t, false)
    t.store = assert(H.open(t, t.dir, { key = KEY }))
  end)
  after_each(function() H.teardown(t) end)

  it("reads back the data of a subject's events, with ev.subject", function()
    local v, pos = t.store:append("user-42", { type = "Registered", data = { email = "a@example.org" },
      metadata = { ip = "10.0.0.1" } }, { subject = "user-42" })
    assert.same({ 1, 1 }, { v, pos })
    local ev = t.store:event(1)
    assert.equal("user-42", ev.subject)
    assert.same({ email = "a@example.org" }, ev.data)
    assert.same({ ip = "10.0.0.1" }, ev.metadata)
    assert.is_nil(ev.forgotten)
    local read = H.collect(t.store:read("user-42"))
    assert.equal("user-42", read[1].subject)
    assert.same({ email = "a@example.org" }, read[1].data)
    -- an event without a subject has none
    assert(t.store:append("note-1", { type = "N", data = 1 }))
    assert.is_nil(t.store:event(2).subject)
  end)

  it("never writes the plaintext of data or metadata into any file of the store, nor of a backup", function()
    for i = 1, 50 do
      assert(t.store:append("user-" .. i, { type = "Registered",
        data = { name = "MARKER-DATA-" .. i }, metadata = { note = "MARKER-META-" .. i } }, { subject = "s" .. i }))
    end
    -- the clear part stays clear: ids, streams, types and the subject
    assert(t.store:append("plain-1", { type = "N", data = "CLEAR-MARKER" }))
    local backup = t.dir .. "-backup"
    assert(t.store:backup(backup))
    -- in the WAL and the memtables' files before a flush, then in tables
    assert.same({}, files_holding(t.dir, "MARKER-DATA"))
    assert.same({}, files_holding(t.dir, "MARKER-META"))
    t.store:close()
    assert.same({}, files_holding(t.dir, "MARKER-DATA"))
    assert.same({}, files_holding(t.dir, "MARKER-META"))
    assert.same({}, files_holding(backup, "MARKER-DATA"))
    assert.is_true(#files_holding(t.dir, "CLEAR-MARKER") > 0, "the test would not see plaintext")
    assert.is_true(#files_holding(t.dir, "Registered") > 0)
    -- the backup opens with the key
    local b = assert(H.open(t, backup, { key = KEY }))
    assert.same({ name = "MARKER-DATA-7" }, b:event(7).data)
    b:close()
    H.rmrf(backup)
  end)

  it("forget: the subject's events read with data = nil, metadata = {}, forgotten = true everywhere", function()
    assert(t.store:append("user-1", { { type = "A", data = { n = 1 }, metadata = { m = 1 } },
      { type = "B", data = { n = 2 } } }, { subject = "alice" }))
    assert(t.store:append("user-2", { type = "A", data = { n = 3 } }, { subject = "bob" }))
    local called = {}
    t.store:close()
    t.store = assert(H.open(t, t.dir, { key = KEY, on_forget = function(s) called[#called + 1] = s end }))
    assert.is_true(t.store:forget("alice"))
    assert.same({ "alice" }, called)
    assert.is_false(t.store:forget("alice")) -- nothing left to destroy
    assert.is_false(t.store:forget("nobody"))
    local function check(ev, stream, version, position)
      assert.equal(stream, ev.stream)
      assert.equal(version, ev.version)
      assert.equal(position, ev.position)
      assert.equal("alice", ev.subject)
      assert.is_nil(ev.data)
      assert.same({}, ev.metadata)
      assert.is_true(ev.forgotten)
      assert.is_string(ev.id)
      assert.equal("integer", math.type(ev.time))
    end
    local read = H.collect(t.store:read("user-1"))
    check(read[1], "user-1", 1, 1)
    check(read[2], "user-1", 2, 2)
    local all = H.collect(t.store:all())
    check(all[1], "user-1", 1, 1)
    check(t.store:event(2), "user-1", 2, 2)
    assert.same({ n = 3 }, all[3].data) -- another subject keeps its data
    check(H.collect(t.store:subscribe({ from = 1, timeout = 0 }))[1], "user-1", 1, 1)
    -- raw reads (the relay's): nil data, an empty map, subject, forgotten
    local id, stream, version, position, ty, time, data, metadata, subject, forgotten =
      t.store:all({ raw = true })()
    assert.same({ "user-1", 1, 1, "A", "alice", true }, { stream, version, position, ty, subject, forgotten })
    assert.is_nil(data)
    assert.same({}, core.decode(core.encode(metadata)))
    assert.is_string(id)
    assert.equal("integer", math.type(time))
    -- the store stays healthy
    local problems = t.store:_check()
    assert.equal(0, problems)
  end)

  it("forget + compact: no file of the store holds the wrapped key any more", function()
    assert(t.store:append("user-1", { type = "A", data = { n = 1 } }, { subject = "alice" }))
    assert(t.store:append("user-2", { type = "A", data = { n = 2 } }, { subject = "bob" }))
    local wrapped = assert(t.store:_debug_get("keys", "alice"))
    assert.equal(80, #wrapped)
    settle(t.store)
    assert.is_true(#files_holding(t.dir, wrapped) > 0, "the test would not see the key")
    assert.is_true(t.store:forget("alice"))
    settle(t.store)
    assert.same({}, files_holding(t.dir, wrapped))
    t.store:close()
    assert.same({}, files_holding(t.dir, wrapped))
    t.store = assert(H.open(t, t.dir, { key = KEY }))
    assert.is_true(t.store:event(1).forgotten)
    assert.same({ n = 2 }, t.store:event(2).data)
  end)

  it("a subject forgotten then appended to again: a new key, the old events stay forgotten", function()
    assert(t.store:append("user-1", { type = "A", data = { n = 1 } }, { subject = "alice" }))
    assert(t.store:forget("alice"))
    assert(t.store:append("user-1", { type = "A", data = { n = 2 } }, { subject = "alice" }))
    assert.is_true(t.store:event(1).forgotten)
    assert.same({ n = 2 }, t.store:event(2).data)
  end)

  it("a record moved to another event reads as corruption, in reads and in check", function()
    assert(t.store:append("user-1", { type = "A", data = { secret = "one" } }, { subject = "alice" }))
    assert(t.store:append("user-1", { type = "A", data = { secret = "two" } }, { subject = "alice" }))
    -- the stream index entry of version 2 gets the record of version 1:
    -- a record the read of the stream takes for version 2
    local rec1 = assert(t.store:_debug_get("streams", "user-1\0" .. string.pack(">I8", 1)))
    local rec2 = assert(t.store:_debug_get("streams", "user-1\0" .. string.pack(">I8", 2)))
    assert.equal(#rec1, #rec2)
    -- swap only the encrypted part (key id, nonce, box: the record's end)
    local box = 8 + 24 + #core.encode({ secret = "one" }) + 16
    local forged = rec2:sub(1, #rec2 - box) .. rec1:sub(#rec1 - box + 1)
    -- with the record's checksum (XXH3 low 32 bits) made right
    forged = forged:sub(1, 4) .. string.pack("<I4", core._xxh3_32(forged:sub(9))) .. forged:sub(9)
    assert(t.store:_debug_put("log", string.pack(">I8", 2), forged))
    assert(t.store:_debug_put("streams", "user-1\0" .. string.pack(">I8", 2), forged))
    local ok, err = pcall(function() return H.collect(t.store:read("user-1")) end)
    assert.is_false(ok)
    H.check_err(err, "corruption")
    local ev, eerr = t.store:event(2)
    assert.is_nil(ev)
    H.check_err(eerr, "corruption")
    assert.same({ secret = "one" }, t.store:event(1).data)
    local problems, report = t.store:_check()
    assert.is_true(problems >= 1)
    assert.truthy(table.concat(report, "\n"):find("does not decrypt", 1, true))
  end)

  it("opening an encrypted store without its key, or with another, is invalid and writes nothing", function()
    assert(t.store:append("user-1", { type = "A", data = { n = 1 } }, { subject = "alice" }))
    t.store:close()
    local before = {}
    for _, f in ipairs(files_of(t.dir)) do before[f] = H.read_file(f) end
    local s, err = er.open(t.dir)
    assert.is_nil(s)
    H.check_err(err, "invalid")
    assert.truthy(err.message:find("key", 1, true))
    s, err = er.open(t.dir, { key = OTHER })
    assert.is_nil(s)
    H.check_err(err, "invalid")
    s, err = er.open(t.dir, { key = OTHER, read_only = true })
    assert.is_nil(s)
    H.check_err(err, "invalid")
    -- the events and keys are as they were: the right key reads them
    t.store = assert(H.open(t, t.dir, { key = KEY }))
    assert.same({ n = 1 }, t.store:event(1).data)
    assert.equal(1, t.store:last_position())
    local ro = assert(H.open(t, t.dir, { key = KEY, read_only = true }))
    assert.same({ n = 1 }, ro:event(1).data)
    assert.is_table(before) -- (RocksDB's own files: a new log per open)
  end)

  it("a subject on a store opened without a key raises; so do bad keys and subjects", function()
    local plain = assert(H.open(t, t.dir .. "-plain"))
    H.raises_with(function() plain:append("user-1", { type = "A" }, { subject = "alice" }) end,
      "needs a store opened with a key")
    H.raises_with(function() plain:forget("alice") end, "needs a store opened with a key")
    assert.equal(0, plain:last_position())
    plain:close()
    H.rmrf(t.dir .. "-plain")
    H.raises_with(function() er.open(t.dir .. "-x", { key = "short" }) end, "key must be 32 bytes")
    H.raises_with(function() er.open(t.dir .. "-x", { key = string.rep("k", 33) }) end, "key must be 32 bytes")
    H.raises_with(function() er.open(t.dir .. "-x", { key = 42 }) end, "key must be a string")
    H.raises_with(function() er.open(t.dir .. "-x", { on_forget = 1 }) end, "on_forget must be a function")
    assert.is_false(H.exists(t.dir .. "-x"))
    H.raises_with(function() t.store:append("user-1", { type = "A" }, { subject = "" }) end, "subject must be")
    H.raises_with(function() t.store:append("user-1", { type = "A" }, { subject = "a\0b" }) end, "subject must be")
    H.raises_with(function() t.store:append("user-1", { type = "A" }, { subject = 7 }) end, "subject must be a string")
    H.raises_with(function() t.store:forget("") end, "subject must be")
  end)

  it("an old store (format 1) opens with a key, and moves to format 3 with its first subject", function()
    t.store:close()
    local dir = t.dir .. "-old"
    local old = assert(H.open(t, dir))
    assert(old:append("a-1", { type = "E", data = 1 }))
    local format = function(s) return string.unpack("<I4", assert(s:_debug_get("default", "format"))) end
    assert.equal(1, format(old))
    old:close()
    local s = assert(H.open(t, dir, { key = KEY }))
    assert.equal(1, format(s))
    assert(s:append("user-1", { type = "A", data = 2 }, { subject = "alice" }))
    assert.equal(3, format(s))
    assert.equal(3, er.FORMAT)
    assert.equal(1, s:event(1).data)
    s:close()
    -- from then on it needs the key
    H.check_err(select(2, er.open(dir)), "invalid")
    H.rmrf(dir)
  end)

  it("aggregates: apply handlers see nil data for forgotten events; snapshots are sealed and dropped", function()
    local User = er.aggregate("user", {
      subject = function(id) return "person-" .. id end,
      snapshot_every = 2,
      apply = {
        Registered = function(state, data)
          state.events = (state.events or 0) + 1
          if data then state.name = data.name else state.forgotten = true end
          return state
        end,
      },
    })
    function User:register(name) self:raise("Registered", { name = name }) end
    local repo = t.store:repository(User)
    local u = repo:load("7")
    u:register("MARKER-ALICE")
    assert(repo:save(u))
    u = repo:load("7")
    u:register("MARKER-ALICE-2")
    assert(repo:save(u)) -- version 2: a snapshot, sealed
    assert.equal("person-7", t.store:event(1).subject)
    local snap = t.store:_get("snapshots", "user-7")
    assert.is_table(snap)
    assert.is_nil(snap.state)
    assert.is_string(snap.sealed)
    assert.equal("MARKER-ALICE-2", repo:load("7").state.name)
    settle(t.store)
    assert.same({}, files_holding(t.dir, "MARKER-ALICE"))
    assert(t.store:forget("person-7"))
    assert.is_nil(t.store:_get("snapshots", "user-7"))
    local after = repo:load("7")
    assert.equal(2, after.version)
    assert.same({ events = 2, forgotten = true }, after.state)
    -- the loop in Lua (handlers that take the event) too
    local Seen = er.aggregate("user", { apply = { Registered = function(state, data, ev)
      state[#state + 1] = { data == nil, ev.forgotten, ev.subject }
      return state
    end } })
    local st = t.store:repository(Seen):load("7").state
    assert.same({ { true, true, "person-7" }, { true, true, "person-7" } }, st)
  end)

  it("projections keep running over forgotten events; their dead letters keep no data", function()
    assert(t.store:append("user-1", { type = "A", data = { name = "MARKER-PROJ" } }, { subject = "alice" }))
    assert(t.store:append("user-2", { type = "A", data = { name = "bob" } }, { subject = "bob" }))
    local fail_once = true
    local p = t.store:projection("names", { on_error = "park", handlers = {
      A = function(view, ev)
        if ev.stream == "user-1" and fail_once then error("not now") end
        view:put(ev.stream, { name = ev.data and ev.data.name, forgotten = ev.forgotten or false })
      end,
    } })
    p:run()
    assert.same({ name = "bob", forgotten = false }, p:get("user-2"))
    assert.equal(1, p:status().dead_letters)
    settle(t.store)
    assert.same({}, files_holding(t.dir, "MARKER-PROJ")) -- the dead letter has no data
    fail_once = false
    assert.equal(1, p:retry())
    assert.same({ name = "MARKER-PROJ", forgotten = false }, p:get("user-1")) -- read again
    -- after forget, a rebuild sees the event forgotten
    assert(t.store:forget("alice"))
    assert(p:reset())
    p:run()
    assert.same({ forgotten = true }, p:get("user-1"))
  end)
end)

describe("personal data: export and import", function()
  local t = {}
  before_each(function()
    H.setup(t, false)
    t.keyfile = t.dir .. "/../" .. t.dir:match("[^/]+$") .. ".key"
    H.write_file(t.keyfile, KEY)
  end)
  after_each(function()
    os.remove(t.keyfile)
    H.teardown(t)
  end)

  local function cli(args, keyfile)
    return H.sh((keyfile and ("EVENTROCKS_KEY_FILE=" .. H.shquote(keyfile) .. " ") or "")
      .. H.CMD .. " " .. args)
  end

  it("exports plaintext with the subject (saying so), imports it encrypted again, forgotten stays forgotten", function()
    local store = assert(er.open(t.dir .. "/a", { key = KEY }))
    assert(store:append("user-1", { type = "A", data = { name = "MARKER-EXPORT" } }, { subject = "alice" }))
    assert(store:append("user-2", { type = "A", data = { name = "bob" } }, { subject = "bob" }))
    assert(store:append("note-1", { type = "N", data = 1 }))
    assert(store:forget("bob"))
    store:close()
    local file = t.dir .. "/out.jsonl"
    local code, out, err = cli("--store " .. H.shquote(t.dir .. "/a") .. " export " .. H.shquote(file), t.keyfile)
    assert.equal(0, code, err)
    assert.truthy(err:find("plaintext", 1, true), err)
    local text = H.read_file(file)
    assert.truthy(text:find('"subject":"alice"', 1, true))
    assert.truthy(text:find("MARKER-EXPORT", 1, true))
    assert.truthy(text:find('"forgotten":true', 1, true))
    -- without the key: refused
    code, out, err = cli("--store " .. H.shquote(t.dir .. "/a") .. " export -")
    assert.equal(1, code)
    assert.truthy(err:find("key", 1, true), err)
    -- import into a store opened with a key: encrypted again
    code, out, err = cli("--store " .. H.shquote(t.dir .. "/b") .. " import " .. H.shquote(file), t.keyfile)
    assert.equal(0, code, err)
    local b = assert(er.open(t.dir .. "/b", { key = KEY }))
    assert.same({ name = "MARKER-EXPORT" }, b:event(1).data)
    assert.equal("alice", b:event(1).subject)
    assert.is_true(b:event(2).forgotten)
    assert.equal("bob", b:event(2).subject)
    assert.equal(1, b:event(3).data)
    b:close()
    assert.same({}, files_holding(t.dir .. "/b", "MARKER-EXPORT"))
    -- a second import is an idempotent retry
    code, out, err = cli("--store " .. H.shquote(t.dir .. "/b") .. " import " .. H.shquote(file), t.keyfile)
    assert.equal(0, code, err)
    assert.truthy(err:find("3 events were already there", 1, true), err)
    -- into a store without a key: refused, naming the line
    code, out, err = cli("--store " .. H.shquote(t.dir .. "/c") .. " import " .. H.shquote(file))
    assert.equal(1, code)
    assert.truthy(err:find("line 1", 1, true), err)
  end)

  it("eventrocks forget SUBJECT takes the key from EVENTROCKS_KEY_FILE only", function()
    local store = assert(er.open(t.dir .. "/a", { key = KEY }))
    assert(store:append("user-1", { type = "A", data = 1 }, { subject = "alice" }))
    store:close()
    local code, out, err = cli("--store " .. H.shquote(t.dir .. "/a") .. " forget alice")
    assert.equal(1, code)
    assert.truthy(err:find("key", 1, true), err)
    local bad = t.dir .. "/bad.key"
    H.write_file(bad, "too short")
    code, out, err = cli("--store " .. H.shquote(t.dir .. "/a") .. " forget alice", bad)
    assert.equal(1, code)
    assert.truthy(err:find("32 bytes", 1, true), err)
    code, out, err = cli("--store " .. H.shquote(t.dir .. "/a") .. " forget alice", t.keyfile)
    assert.equal(0, code, err)
    assert.truthy(out:find("alice forgotten", 1, true), out)
    code, out = cli("--store " .. H.shquote(t.dir .. "/a") .. " forget alice", t.keyfile)
    assert.equal(0, code)
    assert.truthy(out:find("no key", 1, true), out)
    -- a key in hex (64 digits and a newline) works too
    local hex = t.dir .. "/hex.key"
    H.write_file(hex, (KEY:gsub(".", function(c) return string.format("%02x", c:byte()) end)) .. "\n")
    code, out, err = cli("--store " .. H.shquote(t.dir .. "/a") .. " tail --json", hex)
    assert.equal(0, code, err)
    assert.truthy(out:find('"forgotten":true', 1, true), out)
  end)
end)

-- The crash harness's question for forget: a writer killed with SIGKILL at
-- random moments while it appends events of subjects and forgets some.
describe("personal data: a writer killed during appends and forgets", function()
  local t = {}
  before_each(function() H.setup(t, false) end)
  after_each(function() H.teardown(t) end)

  it("leaves a healthy store: every acknowledged forget holds, every other acknowledged event reads", function()
    local store_dir, log = t.dir .. "/s", t.dir .. "/acks"
    local child = H.child_prelude() .. ([[
      local KEY, dir, log = %q, %q, %q
      local out = assert(io.open(log, "a"))
      local s = assert(er.open(dir, { key = KEY }))
      local i = s:last_position()
      while true do
        i = i + 1
        local sub = "s" .. i
        local v, pos = assert(s:append("user-" .. i, { type = "A", data = { n = i } }, { subject = sub }))
        out:write("ack ", sub, " ", pos, "\n")
        out:flush()
        if i %% 3 == 0 then
          local f = "s" .. (i - 1)
          assert(s:forget(f))
          out:write("forgot ", f, "\n")
          out:flush()
        end
      end
    ]]):format(KEY, store_dir, log)
    local script = t.dir .. "/child.lua"
    H.write_file(script, child)
    math.randomseed(os.time())
    for round = 1, 6 do
      local ms = math.random(30, 400)
      H.sh(("timeout -s KILL %.3f lua5.4 %s; true"):format(ms / 1000, H.shquote(script)))
      local s = assert(H.open(t, store_dir, { key = KEY }))
      local problems, report = s:_check()
      assert.equal(0, problems, table.concat(report or {}, "\n"))
      local acked, forgot = {}, {}
      for line in io.lines(log) do
        local sub, pos = line:match("^ack (%S+) (%d+)$")
        if sub then acked[sub] = tonumber(pos) end
        local f = line:match("^forgot (%S+)$")
        if f then forgot[f] = true end
      end
      for sub, pos in pairs(acked) do
        local ev = assert(s:event(pos), "round " .. round .. ": acknowledged event " .. pos .. " is missing")
        assert.equal(sub, ev.subject)
        if forgot[sub] then
          assert.is_true(ev.forgotten, sub .. " was forgotten")
          assert.is_nil(s:_debug_get("keys", sub))
        elseif not ev.forgotten then -- (a forget killed before its ack may hold)
          assert.same({ n = tonumber(sub:sub(2)) }, ev.data)
        end
      end
      s:close()
    end
  end)
end)
