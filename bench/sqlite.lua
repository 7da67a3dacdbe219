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

local workload, N, dir, durable = SQL.args("sqlite.lua")
local payload, now, result = common.payload, common.now, common.result

local driver = require "luasql.sqlite3"
local encode, decode = cjson.encode, cjson.decode

local env = assert(driver.sqlite3())
local conn = assert(env:connect(dir .. "/events.db"))

local exec, scalar = SQL.executor(function() return conn end)

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

local category = SQL.category
-- JSON is text: the data's literal is a quoted string
local db = { exec = exec, quote = quote, blob = quote, encode = encode,
  synchronous = synchronous }

-- Append the payloads datas[1..#datas] to `stream` whose current version is
-- `expected`, in one transaction.  Returns the new version, or nil and the
-- error (a conflict: the UNIQUE key refused a version that exists).
function db.append(stream, expected, datas)
  local sql = SQL.append_sql(stream, expected, datas, db)
  exec("BEGIN")
  local ok, err = conn:execute(sql)
  if not ok then
    exec("ROLLBACK")
    return nil, err
  end
  exec("COMMIT")
  return expected + #datas
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
  assert(not s or not db.append(s, v - 1, { payload(0) }), "a stale expected version was accepted")
  assert(math.tointeger(scalar("SELECT count(*) FROM events")) == n,
    "a refused append left rows behind")
end

if workload == "append1" or workload == "append100" or workload == "append_rr" then
  db.check_appends = check_appends
  SQL.appends(workload, N, durable, db)

elseif workload == "read" then
  local versions = SQL.fill(N, SQL.read_stream_of, db)
  local bigs, big_qty, all_qty = SQL.read_expectations(N)
  assert((versions[SQL.BIG] or 0) == bigs)
  synchronous(durable)

  -- Timed 1: load the stream SQL.BIG ("tally-big") in version order and fold it.
  local t = now()
  local count, qty, last = SQL.fold(exec("SELECT stream_version, event_data FROM events "
    .. "WHERE stream_id = 'tally-big' AND stream_name = 'tally' ORDER BY stream_version"), decode)
  t = now() - t
  assert(count == bigs and last == bigs and qty == big_qty, "folded the wrong events")
  result("load.eps", count / t)

  -- Timed 2: the whole global log in position order, decoding every event.
  t = now()
  count, qty = SQL.fold(exec("SELECT position, stream_id, stream_version, event_name, event_data "
    .. "FROM events ORDER BY position"), decode)
  t = now() - t
  assert(count == N and qty == all_qty, "scanned the wrong events")
  result("scan.eps", count / t)

elseif workload == "catchup" then
  local n = N // 100 * 100
  SQL.fill(n, SQL.catchup_stream_of, db)
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
    local got, rows
    got, position, rows = SQL.count_page(exec(("SELECT position, stream_id, event_name, event_data "
      .. "FROM events WHERE position > %d ORDER BY position LIMIT 500"):format(position)),
      counts, position, decode, quote)
    if got == 0 then break end
    processed = processed + got
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
