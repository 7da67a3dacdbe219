-- bench/sql_common.lua -- the parts of the SQL contenders' workloads that do
-- not depend on the database (bench/sqlite.lua, bench/postgres.lua): the
-- append loops, the streams of the set-ups, and what a read must find.
local common = require "common"

local M = {}

-- append1 (N appends of 1 event, event i to order-<i % 1000>) or append100
-- (N/100 appends of 100 events, append j to order-<j % 1000>), each with
-- its stream's expected version.  `db` gives synchronous(on),
-- append(stream, expected, datas) -> version | nil, err and
-- check_appends(n, versions).  Prints the workload's RESULT line.
function M.appends(workload, N, durable, db)
  local per = workload == "append1" and 1 or 100
  db.synchronous(durable)
  local versions, names = {}, {}
  for s = 0, 999 do names[s] = "order-" .. s end
  local calls = N // per
  local t = common.now()
  for j = 0, calls - 1 do
    local name = names[(per == 1 and j + 1 or j) % 1000]
    local datas = {}
    for k = 1, per do datas[k] = common.payload(j * per + k) end
    versions[name] = assert(db.append(name, versions[name] or 0, datas))
  end
  t = common.now() - t
  db.check_appends(calls * per, versions)
  common.result(workload .. ".eps", calls * per / t)
end

-- The stream of event i in the read set-up: every 2nd to "big", the others
-- round-robin over other-<i % 1000>.
function M.read_stream_of(i)
  return i % 2 == 0 and "big" or "other-" .. i % 1000
end

-- The stream of event i in the catch-up set-up: the events of append100.
function M.catchup_stream_of(i)
  return "order-" .. (i - 1) // 100 % 1000
end

-- What the read workload must find among events 1..N: the number of events
-- of "big", the sum of their qty, and the sum of every event's qty.
function M.read_expectations(N)
  local bigs, big_qty, all_qty = 0, 0, 0
  for i = 1, N do
    local q = common.payload(i).qty
    all_qty = all_qty + q
    if i % 2 == 0 then bigs, big_qty = bigs + 1, big_qty + q end
  end
  return bigs, big_qty, all_qty
end

return M
