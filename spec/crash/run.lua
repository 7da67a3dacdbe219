--- The crash harness: kill a writer with SIGKILL at random moments and
-- check that the store it leaves keeps every promise.
--
--   LUA_PATH='lua/?.lua;lua/?/init.lua;spec/?.lua;;' LUA_CPATH='build/?.so;;' \
--     lua5.4 spec/crash/run.lua [ROUNDS [MODES [SEED]]]
--
-- (`make test-crash` runs it.)  ROUNDS (default 100, or $ROUNDS) rounds per
-- mode; MODES is "sync", "nosync" or "both" (default); SEED (default: the
-- clock, or $SEED) makes the random choices repeatable.  Each mode has its
-- own store, kept across its rounds.  One round:
--
--   1. start spec/crash/writer.lua on the store (see there: multi-event
--      appends, aggregate saves with snapshots, projection runs, an inline
--      projection; an ack line per acknowledged append);
--   2. wait a random time (0 to 10 ms in one round of ten, to hit the open;
--      else 20 to 300 ms), then SIGKILL it by its PID;
--   3. `eventrocks check` on the store as the crash left it (read-only;
--      once a round has seen the store created);
--   4. reopen it for writing and verify: positions increasing (holes are
--      eventrocks check's to explain); every plain stream's versions
--      contiguous and its index equal to the log; every append whole or
--      absent (each event names its append and its size); every delete,
--      truncation and backup that returned holds (a hard-deleted stream has
--      no event left, a truncated one nothing below its version, a backup
--      opens at its position and passes check; each subject's events all
--      forgotten or none, every acknowledged forget whole, every
--      acknowledged append of personal data present);
--      every acknowledged append present with its ids, versions and
--      positions; each account's snapshot exactly the one its last
--      snapshotting save wrote, and equal to the state its events give;
--      the projection checkpoints not ahead of the log and their read
--      models exactly the events up to the checkpoint; the projections
--      catch up and the store accepts an append again;
--   5. `eventrocks check` again.
--
-- A failure stops its mode and keeps its store for inspection.  The last
-- line is a busted-like summary (one success or failure per round), which
-- CI adds to its counts.
local er = require "eventrocks"
local system = require "system"
local sys = require "eventrocks.sys"
local C = require "crash.common"

local ROUNDS = tonumber(arg[1] or os.getenv("ROUNDS") or 100)
local MODES = arg[2] or os.getenv("MODES") or "both"
local SEED = tonumber(arg[3] or os.getenv("SEED") or "") or (os.time() * 1000 + math.floor(system.monotime() * 1000) % 1000)
local LUA = os.getenv("LUA") or "lua5.4"

local fmt = string.format

local function shquote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local function mkdtemp()
  local name = os.tmpname()
  os.remove(name)
  assert(os.execute("mkdir -p " .. shquote(name)))
  return name
end

local function tail(path, n)
  local f = io.open(path, "r")
  if not f then return "" end
  local lines = {}
  for l in f:lines() do
    lines[#lines + 1] = l
    if #lines > n then table.remove(lines, 1) end
  end
  f:close()
  return table.concat(lines, "\n")
end

-- The store's key in a file, for the command line (EVENTROCKS_KEY_FILE).
local KEY_FILE = os.tmpname()
do
  local f = assert(io.open(KEY_FILE, "wb"))
  f:write(C.KEY)
  f:close()
end

-- `eventrocks --store dir check`: true, or false and its output.
local function cli_check(dir)
  local p = assert(io.popen(fmt("EVENTROCKS_KEY_FILE=%s %s bin/eventrocks --store %s check 2>&1",
    shquote(KEY_FILE), LUA, shquote(dir)), "r"))
  local out = p:read("a")
  local ok = p:close()
  if ok and out:find("no problems", 1, true) then return true end
  return false, out
end

-- ---------------------------------------------------------------------------
-- Verification

local function fail(msg, ...) error(fmt(msg, ...), 0) end

local checked_backups = {}

-- Everything checked after a crash; raises with the first broken promise.
-- Returns the number of events and of acknowledged appends checked.
local function verify(dir, acklog, sync, round)
  local store <close> = assert(er.open(dir, { sync = sync, key = C.KEY }))
  local last = store:last_position()

  -- the log: increasing positions (holes are check's to explain: only the
  -- tmp streams' events are ever removed); every event names its append.
  -- `log` holds the events of the plain streams and accounts (which nothing
  -- removes) in order, `at` every event by position, `tmp` the tmp streams'.
  -- `pd` holds per subject the number of its events and of those forgotten.
  local log, at, streams, tmp, pd = {}, {}, {}, {}, {}
  local n, prev = 0, 0
  for ev in store:all() do
    n = n + 1
    if ev.position <= prev then fail("log: position %d follows %d", ev.position, prev) end
    prev = ev.position
    if ev.type == "P" then
      local subject = ev.subject
      if type(subject) ~= "string" then fail("position %d: personal data without its subject", ev.position) end
      local p = pd[subject] or { n = 0, forgotten = 0 }
      pd[subject] = p
      p.n = p.n + 1
      if ev.forgotten then
        p.forgotten = p.forgotten + 1
        if ev.data ~= nil or next(ev.metadata) ~= nil then
          fail("position %d: forgotten, yet its data or metadata reads back", ev.position)
        end
      elseif type(ev.data) ~= "table" or ev.data.secret ~= subject or type(ev.metadata.batch) ~= "string" then
        fail("position %d: the data of %s does not read back", ev.position, subject)
      end
      goto next_event
    end
    local m = ev.metadata
    if type(m.batch) ~= "string" or math.type(m.n) ~= "integer" or math.type(m.i) ~= "integer" then
      fail("position %d: metadata does not name its append", ev.position)
    end
    local rec = { position = ev.position, stream = ev.stream, version = ev.version, id = ev.id, type = ev.type,
      time = ev.time, batch = m.batch, n = m.n, i = m.i,
      amount = type(ev.data) == "table" and ev.data.amount or nil }
    at[ev.position] = rec
    if ev.type == "T" then
      local s = tmp[ev.stream] or {}
      tmp[ev.stream] = s
      if s[#s] and s[#s].version >= ev.version then
        fail("stream %s: version %d at position %d follows version %d", ev.stream, ev.version, ev.position, s[#s].version)
      end
      s[#s + 1] = rec
    else
      log[#log + 1] = rec
      local s = streams[ev.stream]
      if not s then
        s = {}
        streams[ev.stream] = s
      end
      if ev.version ~= #s + 1 then
        fail("stream %s: version %d at position %d follows version %d", ev.stream, ev.version, ev.position, #s)
      end
      s[#s + 1] = rec
    end
    ::next_event::
  end
  if prev > last then fail("last_position is %d but the log reaches %d", last, prev) end

  -- every stream: its head and its index agree with the log
  local nstreams = 0
  for stream, v in store:streams() do
    if not stream:match("^tmp%-") and not stream:match("^pd%-") then
      nstreams = nstreams + 1
      local s = streams[stream]
      if not s or #s ~= v then fail("stream %s: head says version %d, the log has %d events", stream, v, s and #s or 0) end
      local k = 0
      for ev in store:read(stream) do
        k = k + 1
        local rec = s[k]
        if ev.version ~= k or ev.position ~= rec.position or ev.id ~= rec.id then
          fail("stream %s: index entry %d differs from the log (position %d)", stream, k, rec.position)
        end
      end
      if k ~= v then fail("stream %s: the index has %d events, the head says %d", stream, k, v) end
    end
  end
  local count_streams = 0
  for _ in pairs(streams) do count_streams = count_streams + 1 end
  if nstreams ~= count_streams then fail("%d streams listed, %d in the log", nstreams, count_streams) end

  -- every append whole: the events of one batch are n adjacent events of
  -- one stream, in order, with one time (tmp appends: whole unless their
  -- stream's lifecycle removed a part)
  local k = 1
  while k <= #log do
    local first = log[k]
    if first.i ~= 1 then fail("position %d: append %s starts at its event %d", first.position, first.batch, first.i) end
    for i = 2, first.n do
      local rec = log[k + i - 1]
      if not rec or rec.batch ~= first.batch or rec.i ~= i or rec.stream ~= first.stream
        or rec.version ~= first.version + i - 1 or rec.time ~= first.time or rec.position ~= first.position + i - 1 then
        fail("append %s (%d events from position %d) is not whole: event %d missing or out of place",
          first.batch, first.n, first.position, i)
      end
    end
    k = k + first.n
  end

  -- the lifecycle operations that returned hold: a hard-deleted stream reads
  -- stream_deleted and has no event left; a truncated or soft-deleted one
  -- shows nothing before the version; acknowledged backups open and check
  local ops = C.read_ops(acklog)
  local hard, first_visible = {}, {}
  for _, o in ipairs(ops) do
    if o.kind == "hard" then hard[o.target] = true
    elseif o.kind == "truncate" or o.kind == "soft" then
      local v = o.kind == "truncate" and o.arg or o.arg + 1
      if v > (first_visible[o.target] or 0) then first_visible[o.target] = v end
    end
  end
  for stream in pairs(hard) do
    local it, err = store:read(stream)
    if it or err.code ~= "stream_deleted" then fail("hard-deleted %s does not read stream_deleted", stream) end
    for _, rec in ipairs(tmp[stream] or {}) do
      fail("hard-deleted %s still has version %d at position %d", stream, rec.version, rec.position)
    end
  end
  for stream, v in pairs(first_visible) do
    if not hard[stream] then
      local it, err = store:read(stream)
      if it then
        for ev in it do
          if ev.version < v then
            fail("%s: version %d reads after it was truncated or deleted before %d", stream, ev.version, v)
          end
        end
      elseif err.code ~= "stream_deleted" then
        fail("%s: %s", stream, tostring(err))
      end
    end
  end
  -- personal data: a forget is whole or absent (a subject's events all
  -- forgotten or none), one that returned is whole, and every append that
  -- returned is there
  local appended = {}
  for _, o in ipairs(ops) do
    if o.kind == "pd" then appended[o.target] = (appended[o.target] or 0) + o.arg
    elseif o.kind == "forget" then
      local p = pd[o.target]
      if p and p.forgotten ~= p.n then
        fail("%s: forgotten, yet %d of its %d events read back", o.target, p.n - p.forgotten, p.n)
      end
    end
  end
  for subject, p in pairs(pd) do
    if p.forgotten ~= 0 and p.forgotten ~= p.n then
      fail("%s: %d of its %d events forgotten (a forget is whole or absent)", subject, p.forgotten, p.n)
    end
  end
  for subject, k in pairs(appended) do
    if not pd[subject] or pd[subject].n < k then
      fail("%s: %d events acknowledged, %d in the log", subject, k, pd[subject] and pd[subject].n or 0)
    end
  end
  for _, o in ipairs(ops) do
    if o.kind == "backup" and not checked_backups[o.target] then
      checked_backups[o.target] = true -- checked once, then removed
      local copy = assert(er.open(o.target, { create = false, key = C.KEY }))
      local cl = copy:last_position()
      local problems = copy:_check()
      copy:close()
      if cl ~= o.arg then fail("backup %s holds position %d, it said %d", o.target, cl, o.arg) end
      if problems ~= 0 then fail("backup %s: check finds %d problems", o.target, problems) end
      os.execute("rm -rf " .. shquote(o.target))
    end
  end

  -- every acknowledged append, with its ids
  local acks = C.read_acks(acklog)
  for _, a in ipairs(acks) do
    local k = a.last_v - a.first_v + 1
    if a.last_p - a.first_p + 1 ~= k or #a.ids ~= k then fail("ack log: a bad line for %s", a.batch) end
    for i = 0, k - 1 do
      local rec = at[a.first_p + i]
      local removable = a.stream:match("^tmp%-") and (hard[a.stream] or store:stream_meta(a.stream).max_count
        or a.first_v + i < (first_visible[a.stream] or 0) or store:_removed(a.first_p + i, a.first_p + i))
      if not rec and not removable then fail("acknowledged append %s: position %d is missing", a.batch, a.first_p + i) end
      if rec and (rec.stream ~= a.stream or rec.version ~= a.first_v + i or rec.id ~= a.ids[i + 1] or rec.batch ~= a.batch) then
        fail("acknowledged append %s: position %d holds %s@%d %s (%s), not %s@%d %s", a.batch, a.first_p + i,
          rec.stream, rec.version, rec.id, rec.batch, a.stream, a.first_v + i, a.ids[i + 1])
      end
    end
  end

  -- snapshots: the one written by the newest save that reached or crossed a
  -- multiple of snapshot_every, equal to the state of its events
  for k = 1, C.ACCOUNTS do
    local stream = "acct-" .. k
    local s = streams[stream] or {}
    local want, v = nil, 0
    while v < #s do
      local rec = s[v + 1]
      local after = v + rec.n
      if after // C.SNAPSHOT_EVERY > v // C.SNAPSHOT_EVERY then want = after end
      v = after
    end
    local snap = store:_get("snapshots", stream)
    local got = snap and snap.version
    if got ~= want then
      fail("%s (version %d): snapshot at version %s, expected %s", stream, #s, tostring(got), tostring(want))
    end
    if snap then
      local balance = 0
      for i = 1, snap.version do balance = balance + s[i].amount end
      if snap.state.balance ~= balance or snap.state.n ~= snap.version then
        fail("%s: snapshot at version %d holds balance %s, n %s; the events give %d", stream,
          snap.version, tostring(snap.state.balance), tostring(snap.state.n), balance)
      end
    end
  end

  -- projections: checkpoint within the log, read model = the events up to it
  local function expected_rows(cp)
    local rows = {}
    for _, rec in ipairs(log) do
      if rec.position > cp then break end
      local r = rows[rec.stream] or { n = 0, last = 0 }
      r.n, r.last = r.n + 1, rec.version
      rows[rec.stream] = r
    end
    return rows
  end
  local function check_projection(name, row_of)
    local cp = require("eventrocks.checkpoints").get(store, "projection", name) or 0
    if cp > last then fail("projection %s: checkpoint %d is ahead of the log (%d)", name, cp, last) end
    local rows = expected_rows(cp)
    local seen = 0
    for key, value in store:_scan("views", name .. "\0") do
      local stream = key:sub(#name + 2)
      local r = rows[stream]
      local want = r and row_of(r)
      local ok = r and (type(want) == "table" and type(value) == "table" and value.n == want.n and value.last == want.last
        or want == value)
      if not ok then
        fail("projection %s (checkpoint %d): row %s is %s, the log gives %s", name, cp, stream,
          type(value) == "table" and fmt("{n=%s, last=%s}", value.n, value.last) or tostring(value),
          r and fmt("n=%d, last=%d", r.n, r.last) or "no row")
      end
      seen = seen + 1
    end
    local want_rows = 0
    for _ in pairs(rows) do want_rows = want_rows + 1 end
    if seen ~= want_rows then fail("projection %s (checkpoint %d): %d rows, the log gives %d", name, cp, seen, want_rows) end
    return cp
  end
  check_projection("counts", function(r) return r end)
  check_projection("heads", function(r) return r.last end)

  -- the projections catch up; the store takes an append again
  store:projection("heads", C.heads_spec)
  local counts = store:projection("counts", C.counts_spec)
  assert(counts:run({ batch = 100 }))
  if counts:position() ~= prev then fail("counts did not catch up: %d of %d", counts:position(), prev) end
  check_projection("counts", function(r) return r end)
  check_projection("heads", function(r) return r.last end)
  local v0 = store:version("log-1")
  local v, p = store:append("log-1", { type = "E", data = { k = 0 },
    metadata = { batch = "verify:" .. round, n = 1, i = 1 } }, { expected = v0 })
  if v ~= v0 + 1 or p ~= last + 1 then
    fail("the append after the crash returned %s, %s (expected %d, %d)", tostring(v), tostring(p), v0 + 1, last + 1)
  end
  if store:_get("views", "heads\0log-1") ~= v then fail("the inline projection missed the append after the crash") end
  return n, #acks, #ops
end

-- ---------------------------------------------------------------------------
-- Rounds

local function count_lines(path)
  local f = io.open(path, "r")
  if not f then return 0 end
  local n = 0
  for _ in f:lines() do n = n + 1 end
  f:close()
  return n
end

local function run_mode(mode, rounds, rng_seed)
  local sync = mode == "sync"
  local base = mkdtemp()
  local dir, acklog, errlog = base .. "/store", base .. "/acks.log", base .. "/writer.err"
  local ok_rounds, failed = 0, 0
  local at_open, acked_total, ops_total = 0, 0, 0
  local created = false
  math.randomseed(rng_seed)
  for round = 1, rounds do
    local wseed = math.random(1, 1 << 30)
    local before = count_lines(acklog)
    local cmd = fmt("echo $$; exec %s spec/crash/writer.lua %s %s %s %d %d %s 2>>%s", LUA, shquote(dir),
      sync and "1" or "0", shquote(acklog), round, wseed, shquote(base), shquote(errlog))
    local p = assert(io.popen(cmd, "r"))
    local pid = tonumber(p:read("l"))
    local delay = math.random() < 0.1 and math.random(0, 10) or math.random(20, 300)
    if delay > 0 then system.sleep(delay / 1000) end
    -- the PID is our child's (the shell exec'd the writer): it cannot be
    -- reused before p:close() reaps it
    os.execute("kill -9 " .. pid)
    local _, how, status = p:close()
    local acked = count_lines(acklog) - before
    acked_total = acked_total + acked
    if acked == 0 then at_open = at_open + 1 end
    local ok, err = true, nil
    if how ~= "signal" or status ~= 9 then
      ok, err = false, fmt("the writer ended by itself (%s %s):\n%s", how, tostring(status), tail(errlog, 20))
    end
    local events
    if ok and created then -- before: the kill may have cut the creation of the store short
      local cok, out = cli_check(dir)
      if not cok then ok, err = false, "eventrocks check on the crashed store failed:\n" .. out end
    end
    if ok then
      local vok, n, _, nops = pcall(verify, dir, acklog, sync, round)
      if not vok then ok, err = false, n else events, created, ops_total = n, true, nops end
    end
    if ok then
      local cok, out = cli_check(dir)
      if not cok then ok, err = false, "eventrocks check after the reopen failed:\n" .. out end
    end
    collectgarbage()
    if ok then
      ok_rounds = ok_rounds + 1
      print(fmt("%-6s round %3d: killed after %3d ms, %4d appends acknowledged, %7d events: ok",
        mode, round, delay, acked, events))
    else
      failed = failed + 1
      print(fmt("%-6s round %3d: killed after %3d ms, %4d appends acknowledged: FAILED\n  %s\n  store kept in %s (writer seed %d)",
        mode, round, delay, acked, tostring(err):gsub("\n", "\n  "), base, wseed))
      break
    end
  end
  -- table files show that memtable flushes (and compactions) happened in
  -- the writers' lives, so some kills may have landed in one
  local p = io.popen("ls " .. shquote(dir) .. " 2>/dev/null")
  local ssts = 0
  for f in p:lines() do if f:match("%.sst$") then ssts = ssts + 1 end end
  p:close()
  local bytes = sys.disk_size(dir) or 0
  if failed == 0 then os.execute("rm -rf " .. shquote(base)) end
  print(fmt("%-6s %d of %d rounds survived; %d appends acknowledged in all; %d rounds killed before the first ack;"
    .. " %d lifecycle operations returned; store left with %d table files, %.1f MiB", mode, ok_rounds, rounds,
    acked_total, at_open, ops_total, ssts, bytes / 1048576))
  return ok_rounds, failed
end

local t0 = system.monotime()
print(fmt("crash harness: %d rounds per mode, modes %s, seed %d", ROUNDS, MODES, SEED))
local successes, failures = 0, 0
local modes = MODES == "both" and { "sync", "nosync" } or { MODES }
for i, mode in ipairs(modes) do
  assert(mode == "sync" or mode == "nosync", "MODES must be sync, nosync or both")
  local s, f = run_mode(mode, ROUNDS, SEED + i)
  successes, failures = successes + s, failures + f
end
os.remove(KEY_FILE)
print(fmt("%d success%s / %d failure%s / 0 errors / 0 pending : %.2f seconds", successes,
  successes == 1 and "" or "es", failures, failures == 1 and "" or "s", system.monotime() - t0))
os.exit(failures == 0 and 0 or 1)
