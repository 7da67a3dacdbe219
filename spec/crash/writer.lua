--- The writer of the crash harness: appends until it is killed.
--
--   lua5.4 spec/crash/writer.lua DIR SYNC ACKLOG ROUND SEED BACKUPDIR
--
-- Opens the store DIR (sync = SYNC == "1"), registers the inline projection
-- "heads", and loops for ever over: multi-event appends with an exact
-- expected version to the streams log-N, aggregate saves (events plus, now
-- and then, a snapshot in the same write) to acct-N, runs of the catch-up
-- projection "counts", now and then one large append, and the lifecycle
-- of this round's tmp streams (deletes, truncations, limits, compactions and
-- backups into BACKUPDIR), and personal data (appends with a subject and
-- forgets of subjects; the store has a key, common.lua's).  Every event
-- carries metadata { batch = <round>:<k>, n = <events in its append>,
-- i = <its index> } so that the driver can tell whole appends from partial
-- ones.  After each append returns, one line naming it (see common.lua) is
-- written to ACKLOG, opened in append mode and flushed: a line written
-- before the SIGKILL is in the page cache and survives the process.  The
-- writer never ends on its own; any error ends it with status 1, which the
-- driver counts as a failure.
local er = require "eventrocks"
local C = require "crash.common"

local dir, sync, acklog, round, seed, backup_dir = ...
assert(dir and sync and acklog and round and seed and backup_dir,
  "usage: writer.lua DIR SYNC ACKLOG ROUND SEED BACKUPDIR")
math.randomseed(tonumber(seed))

local ack = assert(io.open(acklog, "a"))
local store = assert(er.open(dir, { sync = sync == "1", key = C.KEY }))
store:projection("heads", C.heads_spec) -- catches up first, then runs in every commit
local counts = store:projection("counts", C.counts_spec)
local accounts = store:repository(C.account(er))

local versions = {}
local function version(stream)
  local v = versions[stream]
  if not v then
    v = store:version(stream)
    versions[stream] = v
  end
  return v
end

local batch_no = 0
local function next_batch()
  batch_no = batch_no + 1
  return round .. ":" .. batch_no
end

local function pad()
  local r = math.random()
  if r < 0.9 then return string.rep("x", math.random(0, 200)) end
  if r < 0.99 then return string.rep("y", math.random(1000, 8000)) end
  return string.rep("z", math.random(50000, 200000)) -- fills memtables: flushes happen
end

local function acknowledge(stream, first_v, last_v, first_p, last_p, batch, ids)
  ack:write(C.ack_line(stream, first_v, last_v, first_p, last_p, batch, ids))
  ack:flush()
end

-- n events to log-K with an exact expected version; half of the appends
-- give their ids, the others let the store make them and read them back.
local function append(n)
  local stream = "log-" .. math.random(C.STREAMS)
  local expected = version(stream)
  local batch = next_batch()
  local events, give_ids = {}, math.random() < 0.5
  for i = 1, n do
    events[i] = {
      type = "E",
      id = give_ids and er.uuid() or nil,
      data = { k = math.random(1000), pad = pad() },
      metadata = { batch = batch, n = n, i = i },
    }
  end
  local v, p = store:append(stream, events, { expected = expected })
  if not v then error("append to " .. stream .. " failed: " .. tostring(p)) end
  assert(v == expected + n, "append returned a wrong version")
  versions[stream] = v
  local ids = {}
  if give_ids then
    for i, ev in ipairs(events) do ids[i] = ev.id end
  else
    for ev in store:read(stream, { from = expected + 1, count = n }) do ids[#ids + 1] = ev.id end
  end
  acknowledge(stream, expected + 1, v, p - n + 1, p, batch, ids)
end

-- One to four deposits to an account, saved with expected = the loaded
-- version (with a snapshot in the same write when a multiple of 4 is
-- reached or crossed).
local function deposit()
  local id = math.random(C.ACCOUNTS)
  local acct = accounts:load(id)
  local n, batch = math.random(4), next_batch()
  for i = 1, n do
    acct:raise("Deposited", { amount = math.random(-50, 100) }, { batch = batch, n = n, i = i })
  end
  local pending = acct:pending()
  local first = acct.version - n + 1
  local v, err = accounts:save(acct)
  if not v then error("save of acct-" .. id .. " failed: " .. tostring(err)) end
  assert(v == first + n - 1, "save returned a wrong version")
  local ids, positions = {}, {}
  for i, ev in ipairs(pending) do ids[i] = ev.id end
  for ev in store:read(acct.stream, { from = first, count = n }) do positions[#positions + 1] = ev.position end
  acknowledge(acct.stream, first, v, positions[1], positions[n], batch, ids)
end

-- The lifecycle: T events to this round's tmp streams, and now and then a
-- soft or hard delete, a truncation, a retention limit, a compaction or a
-- backup.  Each operation that returns is logged (common.lua's op_line).
local backups = 0
local function op(kind, target, arg)
  ack:write(C.op_line(kind, target, arg))
  ack:flush()
end

local function lifecycle()
  local stream = "tmp-" .. round .. "-" .. math.random(C.TMP_STREAMS)
  local v = store:version(stream)
  local r = math.random()
  if r < 0.5 or v == 0 then
    local n, batch = math.random(3), next_batch()
    local events = {}
    for i = 1, n do events[i] = { type = "T", data = { pad = pad() }, metadata = { batch = batch, n = n, i = i } } end
    local nv, p = store:append(stream, events)
    if not nv then
      if p.code == "stream_deleted" then return end
      error("append to " .. stream .. " failed: " .. tostring(p))
    end
    local ids = {}
    for ev in store:read(stream, { from = nv - n + 1, count = n }) do ids[#ids + 1] = ev.id end
    if #ids == n then acknowledge(stream, nv - n + 1, nv, p - n + 1, p, batch, ids) end
  elseif r < 0.62 then
    local ok, err = store:delete(stream, { expected = v })
    if ok then op("soft", stream, v) elseif err.code ~= "stream_deleted" then error(tostring(err)) end
  elseif r < 0.7 then
    local ok, err = store:delete(stream, { hard = true })
    if ok then op("hard", stream, v) elseif err.code ~= "stream_deleted" then error(tostring(err)) end
  elseif r < 0.85 then
    local before = math.random(1, v + 1)
    local ok, err = store:truncate(stream, before)
    if ok then op("truncate", stream, before) elseif err.code ~= "stream_deleted" then error(tostring(err)) end
  elseif r < 0.93 then
    local n = math.random(1, 5)
    local ok, err = store:set_stream_meta(stream, { max_count = n })
    if ok then op("max_count", stream, n) elseif err.code ~= "stream_deleted" then error(tostring(err)) end
  elseif r < 0.97 then
    local removed, err = store:compact()
    if not removed then error("compact failed: " .. tostring(err)) end
    op("compact", "-", removed)
  else
    backups = backups + 1
    local target = backup_dir .. "/" .. round .. "-" .. backups
    local pos, err = store:backup(target)
    if not pos then error("backup failed: " .. tostring(err)) end
    op("backup", target, pos)
  end
end

-- Personal data: 1 to 3 events of a subject to its pd stream (logged as
-- op "pd" with the subject and the count once the append returned), or a
-- forget of the subject (op "forget" once it returned; the stream goes on
-- with the subject's next generation).
local generation = {}
local function personal()
  local k = math.random(C.PD_STREAMS)
  generation[k] = generation[k] or 1
  local subject = ("person-%s-%d-%d"):format(round, k, generation[k])
  if math.random() < 0.8 then
    local n, batch = math.random(3), next_batch()
    local events = {}
    for i = 1, n do
      events[i] = { type = "P", data = { secret = subject, pad = pad() }, metadata = { batch = batch, n = n, i = i } }
    end
    local v, err = store:append("pd-" .. round .. "-" .. k, events, { subject = subject })
    if not v then error("append of " .. subject .. " failed: " .. tostring(err)) end
    op("pd", subject, n)
  else
    local ok, err = store:forget(subject)
    if ok == nil then error("forget of " .. subject .. " failed: " .. tostring(err)) end
    op("forget", subject, 0)
    generation[k] = generation[k] + 1
  end
end

while true do
  local r = math.random()
  if r < 0.06 then lifecycle()
  elseif r < 0.1 then personal()
  elseif r < 0.5 then append(math.random(1, 8))
  elseif r < 0.85 then deposit()
  elseif r < 0.997 then
    local n, err = counts:run({ batch = C.COUNTS_BATCH })
    if not n then error("projection run failed: " .. tostring(err)) end
  else
    append(math.random(100, 1000))
  end
end
