--- What the crash writer (spec/crash/writer.lua) and the driver that kills
-- it (spec/crash/run.lua) share: the aggregate, the two projections and the
-- ack log format.  Not a spec: busted only runs files ending in _spec.lua.
local M = {}

M.STREAMS = 24  -- plain streams "log-1" .. "log-24"
M.ACCOUNTS = 8  -- aggregates "acct-1" .. "acct-8"
M.SNAPSHOT_EVERY = 4

-- An account: a balance and the number of deposits, snapshotted every 4.
function M.account(er)
  return er.aggregate("acct", {
    init = function() return { balance = 0, n = 0 } end,
    apply = {
      Deposited = function(state, data)
        state.balance = state.balance + data.amount
        state.n = state.n + 1
      end,
    },
    snapshot_every = M.SNAPSHOT_EVERY,
  })
end

-- Both projections see every event type the writer writes.
M.TYPES = { "E", "Deposited" }

-- "counts", a catch-up projection: per stream, how many events it has
-- applied and the last version it saw.
local function count(view, ev)
  local row = view:get(ev.stream) or { n = 0, last = 0 }
  row.n = row.n + 1
  row.last = ev.version
  view:put(ev.stream, row)
end
M.counts_spec = { handlers = { E = count, Deposited = count } }
M.COUNTS_BATCH = 25

-- "heads", an inline projection: per stream, the version of its newest event,
-- written in the same WriteBatch as the events.
local function head(view, ev) view:put(ev.stream, ev.version) end
M.heads_spec = { inline = true, handlers = { E = head, Deposited = head } }

-- One acknowledged append: tab-separated, ending with "end" so that a line
-- cut short by the kill is recognised (it never is in practice: the line is
-- one write(2)).
function M.ack_line(stream, first_v, last_v, first_p, last_p, batch, ids)
  return table.concat({ "ack", stream, first_v, last_v, first_p, last_p, batch,
    table.concat(ids, ","), "end" }, "\t") .. "\n"
end

-- A lifecycle operation that returned (delete, truncate, meta, compact,
-- backup): its kind, the stream (or directory) and an integer argument.
function M.op_line(kind, target, arg)
  return table.concat({ "op", kind, target, arg, "end" }, "\t") .. "\n"
end

function M.read_ops(path)
  local ops = {}
  local f = io.open(path, "r")
  if not f then return ops end
  for line in f:lines() do
    local parts = {}
    for p in line:gmatch("[^\t]+") do parts[#parts + 1] = p end
    if parts[1] == "op" and parts[5] == "end" and #parts == 5 then
      ops[#ops + 1] = { kind = parts[2], target = parts[3], arg = tonumber(parts[4]) }
    end
  end
  f:close()
  return ops
end

-- The streams the lifecycle operations work on: "tmp-<round>-<k>", of
-- events of type "T" that no projection handles.
M.TMP_STREAMS = 4

-- Personal data: the streams "pd-<round>-<k>" of events of type "P" (no
-- projection handles them) appended with the subject
-- "person-<round>-<k>-<generation>", and forgets of those subjects (a
-- forgotten subject is never appended to again: the next generation takes
-- its place).  The store's key, the same for every round and mode:
M.KEY = "eventrocks crash harness key 32B"
assert(#M.KEY == 32)
M.PD_STREAMS = 3

-- The complete ack lines of a file, parsed.
function M.read_acks(path)
  local acks = {}
  local f = io.open(path, "r")
  if not f then return acks end
  for line in f:lines() do
    local parts = {}
    for p in line:gmatch("[^\t]+") do parts[#parts + 1] = p end
    if parts[1] == "ack" and parts[9] == "end" and #parts == 9 then
      local ids = {}
      for id in parts[8]:gmatch("[^,]+") do ids[#ids + 1] = id end
      acks[#acks + 1] = {
        stream = parts[2], first_v = tonumber(parts[3]), last_v = tonumber(parts[4]),
        first_p = tonumber(parts[5]), last_p = tonumber(parts[6]), batch = parts[7], ids = ids,
      }
    end
  end
  f:close()
  return acks
end

return M
