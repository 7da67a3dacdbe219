-- bench/sql_common.lua -- the parts of the SQL contenders' workloads that do
-- not depend on the database (bench/sqlite.lua, bench/postgres.lua): the
-- arguments, the append loops, the set-up's fill and its streams, the folds
-- of the reads and catch-up pages, and what a read must find.  A contender
-- hands its own SQL in as a table `db` of functions (each function below
-- says which it uses).
local common = require "common"

local M = {}

local KNOWN = { append1 = true, append100 = true, append_rr = true, read = true, catchup = true }
local ERO_ONLY = { snapshot = true, latency = true, rss = true }

-- The contract's arguments (common.args).  Exits at once: 0 for the
-- workloads only eventrocks runs, 2 for an unknown one (`name` says who).
function M.args(name)
  local workload, N, dir, durable = common.args()
  if ERO_ONLY[workload] then os.exit(0) end
  if not KNOWN[workload] then
    io.stderr:write(name, ": unknown workload '", workload, "'\n")
    os.exit(2)
  end
  return workload, N, dir, durable
end

-- exec(sql [, conn]) runs a statement on `conn` or on the connection
-- conn_of() returns, raising with the statement when it fails; scalar(sql)
-- is the first column of the first row of a query (nil when none).
function M.executor(conn_of)
  local function exec(sql, c)
    local r, err = (c or conn_of()):execute(sql)
    if not r then error(err .. "\n  in: " .. sql:sub(1, 300), 2) end
    return r
  end
  local function scalar(sql)
    local cur = exec(sql)
    local v = cur:fetch()
    cur:close()
    return v
  end
  return exec, scalar
end

-- The stream's category (events.stream_name), as eventrocks defines it: the
-- text before the first "-", the whole id when it has none.
function M.category(stream)
  return stream:match("^([^-]*)-") or stream
end

local INSERT = "INSERT INTO events (stream_id, stream_name, stream_version, "
  .. "event_name, event_data) VALUES "

-- The VALUES row of one event: the stream's id and category, and its data,
-- come as SQL literals.
local function row(qstream, qcat, version, qdata)
  return "(" .. qstream .. "," .. qcat .. "," .. version .. ",'ItemAdded'," .. qdata .. ")"
end

-- The one INSERT of an append: the payloads datas[1..#datas] to `stream`
-- as versions expected + 1, ...  `db` gives quote(text) and blob(bytes),
-- the SQL literals of a text and of the encoded data, and encode(value).
function M.append_sql(stream, expected, datas, db)
  local quote, blob, encode = db.quote, db.blob, db.encode
  local qs, qc = quote(stream), quote(M.category(stream))
  local rows = {}
  for k = 1, #datas do
    rows[k] = row(qs, qc, expected + k, blob(encode(datas[k])))
  end
  return INSERT .. table.concat(rows, ",")
end

-- Untimed set-up: events 1..n, event i to stream_of(i), in multi-row INSERTs
-- of 1000 rows and transactions of 100,000.  `db` gives exec(sql) and what
-- append_sql uses.  Returns the streams' versions.
function M.fill(n, stream_of, db)
  local exec, blob, encode, payload = db.exec, db.blob, db.encode, common.payload
  local versions, quoted = {}, {}
  local rows = {}
  exec("BEGIN")
  for i = 1, n do
    local s = stream_of(i)
    local v = (versions[s] or 0) + 1
    versions[s] = v
    local q = quoted[s]
    if not q then
      q = { db.quote(s), db.quote(M.category(s)) }
      quoted[s] = q
    end
    rows[#rows + 1] = row(q[1], q[2], v, blob(encode(payload(i))))
    if #rows == 1000 or i == n then
      exec(INSERT .. table.concat(rows, ","))
      rows = {}
      if i % 100000 == 0 and i < n then
        exec("COMMIT")
        exec("BEGIN")
      end
    end
  end
  exec("COMMIT")
  return versions
end

-- Fold the rows of `cur` (closed after): (version, data) rows of a stream
-- load, or (position, stream_id, stream_version, event_name, data) rows of
-- the scan.  Returns the number of rows, the sum of the decoded data's qty
-- and the first column of the last row (0 when none).
function M.fold(cur, decode)
  local count, qty, last = 0, 0, 0
  local first, second, _, _, fifth = cur:fetch()
  while first do
    count = count + 1
    qty = qty + decode(fifth or second).qty
    last = first
    first, second, _, _, fifth = cur:fetch()
  end
  cur:close()
  return count, qty, last
end

-- One page of the catch-up: the rows (position, stream_id, event_name,
-- data) of `cur` (closed after) applied to `counts` (a count per stream of
-- "ItemAdded" events).  Returns how many rows, the last position (or
-- `position` when none), and the VALUES rows "(stream, count)" of the
-- streams it changed, their ids quoted with `quote`.
function M.count_page(cur, counts, position, decode, quote)
  local changed, got = {}, 0
  local p, stream, name, data = cur:fetch()
  while p do
    local ev = decode(data)                     -- what a handler is given
    if name == "ItemAdded" and ev then
      counts[stream] = (counts[stream] or 0) + 1
      changed[stream] = true
    end
    got, position = got + 1, p
    p, stream, name, data = cur:fetch()
  end
  cur:close()
  local rows = {}
  for s in pairs(changed) do
    rows[#rows + 1] = "(" .. quote(s) .. "," .. counts[s] .. ")"
  end
  return got, position, rows
end

-- append1 (N appends of 1 event, event i to order-<i % 1000>), append100
-- (N/100 appends of 100 events, append j to order-<j % 1000>) or append_rr
-- (N/10 appends of 10 events, append j to order-<j % 1000>), each with
-- its stream's expected version.  `db` gives synchronous(on),
-- append(stream, expected, datas) -> version | nil, err and
-- check_appends(n, versions).  Prints the workload's RESULT line.
function M.appends(workload, N, durable, db)
  local per = workload == "append1" and 1 or workload == "append_rr" and 10 or 100
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

-- The long stream of the read set-up: named as an aggregate's stream
-- ("tally", id "big"), as eventrocks' repo:load reads it, with the same
-- name on every side.
M.BIG = "tally-big"

-- The stream of event i in the read set-up: every 2nd to M.BIG, the others
-- round-robin over other-<i % 1000>.
function M.read_stream_of(i)
  return i % 2 == 0 and M.BIG or "other-" .. i % 1000
end

-- The stream of event i in the catch-up set-up: the events of append100.
function M.catchup_stream_of(i)
  return "order-" .. (i - 1) // 100 % 1000
end

-- What the read workload must find among events 1..N: the number of events
-- of M.BIG, the sum of their qty, and the sum of every event's qty.
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
