-- bench/sqlite.lua -- SQLite from Lua (Debian lua-sql-sqlite3), the contender a
-- Lua user would pick for an embedded event store.  See bench/README.md for
-- the contract:  lua5.4 bench/sqlite.lua WORKLOAD N DIR DURABLE
--
-- The database is DIR/events.db in WAL mode (PRAGMA journal_mode=WAL),
-- synchronous=NORMAL when DURABLE=0 and FULL when DURABLE=1; nothing else is
-- tuned (default page cache, default WAL auto-checkpoint).  Set-up (filling
-- the table for read and catchup) always runs with synchronous=NORMAL and is
-- not timed; the timed part uses the DURABLE setting.
--
-- The table is the classic event store table:
--   events(stream_id, stream_name, stream_version, event_id, event_name,
--          event_data, occurred_at)
-- with the key (stream_id, stream_name, stream_version) as a UNIQUE
-- constraint, because the primary key is `position INTEGER PRIMARY KEY`, the
-- rowid alias: the global log in append order is the table itself.
-- stream_id is the stream ("order-17"), stream_name its category ("order",
-- the part before the first "-" as in eventrocks), event_data the payload as
-- JSON text (lua-cjson), event_id 16 random bytes and occurred_at the commit
-- time, both from column defaults.  There is no index on event_id: unlike
-- eventrocks, this table does not detect a retried append by its event ids
-- (that index would cost every append a little more).
--
-- Appends: luasql has no prepared statements, so every append builds one
-- multi-row INSERT with the values inlined (text in quotes, quotes doubled)
-- and runs it between BEGIN and COMMIT.  The versions are the known next
-- ones (the caller tracks each stream's version as it would pass `expected`
-- to eventrocks); the UNIQUE key is the optimistic concurrency check: a stale
-- expected version collides and the append fails.  A complete event store
-- would also read max(stream_version) inside the transaction to reject an
-- expected version *ahead* of the stream; the contract leaves that out for
-- every SQL contender, so this is the cheapest correct-under-the-contract
-- append.
--
-- Every timed workload checks its own result afterwards (row counts, the
-- fold, the read model, that a stale expected version is refused) and fails
-- with a non-zero exit when it is wrong.
local common = require "common"
local SQL = require "sql_common"
local cjson = require "cjson"

local workload, N, dir, durable = common.args()
local payload, now, result = common.payload, common.now, common.result

local KNOWN = { append1 = true, append100 = true, read = true, catchup = true }
local ERO_ONLY = { snapshot = true, latency = true, rss = true }
if ERO_ONLY[workload] then os.exit(0) end        -- eventrocks-only workloads
if not KNOWN[workload] then
  io.stderr:write("sqlite.lua: unknown workload '", workload, "'\n")
  os.exit(2)
end

local driver = require "luasql.sqlite3"
local encode, decode = cjson.encode, cjson.decode

local env = assert(driver.sqlite3())
local conn = assert(env:connect(dir .. "/events.db"))

local function exec(sql)
  local r, err = conn:execute(sql)
  if not r then error(err .. "\n  in: " .. sql:sub(1, 300), 2) end
  return r
end

-- The first column of the first row of a query.
local function scalar(sql)
  local cur = exec(sql)
  local v = cur:fetch()
  cur:close()
  return v
end

-- A SQL text literal.
local function quote(s)
  return "'" .. s:gsub("'", "''") .. "'"
end

local function synchronous(full)
  exec("PRAGMA synchronous=" .. (full and "FULL" or "NORMAL"))
end

assert(scalar("PRAGMA journal_mode=WAL") == "wal", "WAL mode refused")
synchronous(false)
exec([[
CREATE TABLE events (
  position       INTEGER PRIMARY KEY,
  stream_id      TEXT    NOT NULL,
  stream_name    TEXT    NOT NULL,
  stream_version INTEGER NOT NULL,
  event_id       BLOB    NOT NULL DEFAULT (randomblob(16)),
  event_name     TEXT    NOT NULL,
  event_data     TEXT    NOT NULL,
  occurred_at    TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
  UNIQUE (stream_id, stream_name, stream_version)
)]])

local function category(stream)
  return stream:match("^([^-]*)-") or stream
end

local INSERT = "INSERT INTO events (stream_id, stream_name, stream_version, "
  .. "event_name, event_data) VALUES "

-- The VALUES row of one event: the stream's quoted id and category are
-- passed in already quoted, `data` is the encoded payload.
local function row(qstream, qcat, version, data)
  return "(" .. qstream .. "," .. qcat .. "," .. version
    .. ",'ItemAdded'," .. quote(data) .. ")"
end

-- Append the payloads datas[1..#datas] to `stream` whose current version is
-- `expected`, in one transaction.  Returns the new version, or nil and the
-- error (a conflict: the UNIQUE key refused a version that exists).
local function append(stream, expected, datas)
  local qs, qc = quote(stream), quote(category(stream))
  local rows = {}
  for k = 1, #datas do
    rows[k] = row(qs, qc, expected + k, encode(datas[k]))
  end
  exec("BEGIN")
  local ok, err = conn:execute(INSERT .. table.concat(rows, ","))
  if not ok then
    exec("ROLLBACK")
    return nil, err
  end
  exec("COMMIT")
  return expected + #datas
end

-- Untimed set-up: events 1..n, event i to stream_of(i), in multi-row INSERTs
-- of 1000 rows and transactions of 100,000.  Returns the streams' versions.
local function fill(n, stream_of)
  local versions, quoted = {}, {}
  local rows = {}
  exec("BEGIN")
  for i = 1, n do
    local s = stream_of(i)
    local v = (versions[s] or 0) + 1
    versions[s] = v
    local q = quoted[s]
    if not q then
      q = { quote(s), quote(category(s)) }
      quoted[s] = q
    end
    rows[#rows + 1] = row(q[1], q[2], v, encode(payload(i)))
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

-- Checks after appends: `n` rows, each stream's newest version as tracked,
-- and a stale expected version refused.
local function check_appends(n, versions)
  assert(math.tointeger(scalar("SELECT count(*) FROM events")) == n,
    "the table does not hold the appended events")
  for s, v in pairs(versions) do
    local got = scalar(("SELECT max(stream_version) FROM events "
      .. "WHERE stream_id = %s AND stream_name = %s"):format(quote(s), quote(category(s))))
    assert(math.tointeger(got) == v, "wrong version of " .. s)
  end
  local s, v = next(versions)
  assert(not s or not append(s, v - 1, { payload(0) }), "a stale expected version was accepted")
  assert(math.tointeger(scalar("SELECT count(*) FROM events")) == n,
    "a refused append left rows behind")
end

if workload == "append1" or workload == "append100" then
  SQL.appends(workload, N, durable, {
    synchronous = synchronous, append = append, check_appends = check_appends,
  })

elseif workload == "read" then
  local versions = fill(N, SQL.read_stream_of)
  local bigs, big_qty, all_qty = SQL.read_expectations(N)
  assert((versions.big or 0) == bigs)
  synchronous(durable)

  -- Timed 1: load the stream "big" in version order and fold it.
  local t = now()
  local cur = exec("SELECT stream_version, event_data FROM events "
    .. "WHERE stream_id = 'big' AND stream_name = 'big' ORDER BY stream_version")
  local count, qty, last = 0, 0, 0
  local version, data = cur:fetch()
  while version do
    count = count + 1
    qty = qty + decode(data).qty
    last = version
    version, data = cur:fetch()
  end
  cur:close()
  t = now() - t
  assert(count == bigs and last == bigs and qty == big_qty, "folded the wrong events")
  result("load.eps", count / t)

  -- Timed 2: the whole global log in position order, decoding every event.
  t = now()
  cur = exec("SELECT position, stream_id, stream_version, event_name, event_data "
    .. "FROM events ORDER BY position")
  count, qty = 0, 0
  local position, _, _, _, data2 = cur:fetch()
  while position do
    count = count + 1
    qty = qty + decode(data2).qty
    position, _, _, _, data2 = cur:fetch()
  end
  cur:close()
  t = now() - t
  assert(count == N and qty == all_qty, "scanned the wrong events")
  result("scan.eps", count / t)

elseif workload == "catchup" then
  local n = N // 100 * 100
  fill(n, SQL.catchup_stream_of)
  exec("CREATE TABLE read_model (stream_id TEXT PRIMARY KEY, count INTEGER NOT NULL)")
  exec("CREATE TABLE checkpoints (name TEXT PRIMARY KEY, position INTEGER NOT NULL)")
  synchronous(durable)

  -- Timed: the projection "counts" from its checkpoint to the end of the
  -- log, reading pages of 500 events in position order; after each page the
  -- changed read-model rows and the checkpoint commit in one transaction.
  local t = now()
  local counts = {}
  local cur = exec("SELECT stream_id, count FROM read_model")
  local sid, c = cur:fetch()
  while sid do counts[sid] = c; sid, c = cur:fetch() end
  cur:close()
  local position = scalar("SELECT position FROM checkpoints WHERE name = 'counts'") or 0
  local processed = 0
  while true do
    cur = exec(("SELECT position, stream_id, event_name, event_data FROM events "
      .. "WHERE position > %d ORDER BY position LIMIT 500"):format(position))
    local changed, got = {}, 0
    local p, stream, name, data = cur:fetch()
    while p do
      local ev = decode(data)                   -- what a handler is given
      if name == "ItemAdded" and ev then
        counts[stream] = (counts[stream] or 0) + 1
        changed[stream] = true
      end
      got, position = got + 1, p
      p, stream, name, data = cur:fetch()
    end
    cur:close()
    if got == 0 then break end
    processed = processed + got
    local rows = {}
    for s in pairs(changed) do
      rows[#rows + 1] = "(" .. quote(s) .. "," .. counts[s] .. ")"
    end
    exec("BEGIN")
    if #rows > 0 then
      exec("INSERT INTO read_model (stream_id, count) VALUES " .. table.concat(rows, ",")
        .. " ON CONFLICT (stream_id) DO UPDATE SET count = excluded.count")
    end
    exec(("INSERT INTO checkpoints (name, position) VALUES ('counts', %d) "
      .. "ON CONFLICT (name) DO UPDATE SET position = excluded.position"):format(position))
    exec("COMMIT")
  end
  t = now() - t
  assert(processed == n and position == n, "caught up the wrong number of events")
  assert(math.tointeger(scalar("SELECT coalesce(sum(count), 0) FROM read_model")) == n
    and math.tointeger(scalar("SELECT count(*) FROM read_model")) == math.min(1000, n // 100),
    "the read model does not add up")
  assert((scalar("SELECT position FROM checkpoints WHERE name = 'counts'") or 0) == n,
    "the checkpoint is wrong")
  result("catchup.eps", n / t)
end

conn:close()
env:close()
