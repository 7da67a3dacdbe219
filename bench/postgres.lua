-- bench/postgres.lua -- PostgreSQL from Lua (Debian lua-sql-postgres), the
-- client-server contender.  See bench/README.md for the contract:
--   lua5.4 bench/postgres.lua WORKLOAD N DIR DURABLE
--
-- The server: start one with bench/pg_server.sh and export what it prints:
--   set -a; eval "$(bench/pg_server.sh start)"; set +a
--   lua5.4 bench/postgres.lua append1 10000 "$(mktemp -d)" 0
--   bench/pg_server.sh stop "$PG_BENCH_DIR"
-- The connection comes from the environment, as libpq reads it: PGHOST (the
-- unix socket directory, or 127.0.0.1 for TCP; required, so that a run never
-- lands on some other server by accident), PGPORT, PGUSER and PGDATABASE (the
-- database to connect to for CREATE DATABASE; default "postgres").  Every run
-- creates its own database, works in it and drops it at the end, so runs
-- never see each other's data.  DIR is not used.
--
-- Durability: SET synchronous_commit = off when DURABLE=0, on when DURABLE=1,
-- for the timed part; set-up (filling the table) runs with it off.  Nothing
-- else is tuned: the server runs with PostgreSQL's defaults (see
-- pg_server.sh).  After a set-up fill the table gets VACUUM ANALYZE (untimed),
-- the state autovacuum would bring it to shortly after a bulk load: the timed
-- reads do not pay for setting hint bits on a million fresh rows.
--
-- The table is the book's:
--   events(stream_id, stream_name, stream_version, event_id, event_name,
--          event_data bytea, occurred_at)
--   PRIMARY KEY (stream_id, stream_name, stream_version)
-- plus `position bigserial` with a unique index, the global log that the scan
-- and the catch-up read in order (with one writer, as here, positions commit
-- in order; with concurrent writers a bigserial log needs more care).
-- stream_id is the stream ("order-17"), stream_name its category ("order",
-- the part before the first "-" as in eventrocks), event_data the payload as
-- JSON (lua-cjson) in a bytea, event_id gen_random_uuid() and occurred_at
-- now() from column defaults.  There is no index on event_id: unlike
-- eventrocks, this table does not detect a retried append by its event ids.
--
-- Appends: luasql has no prepared statements or parameters, so every append
-- is one multi-row INSERT with the values inlined: text through
-- conn:escape (PQescapeStringConn), event_data as a bytea literal in the
-- escape format (see bytea() below).  One INSERT statement is its own
-- transaction (autocommit), so the append is atomic in one round trip;
-- wrapping it in BEGIN/COMMIT would add two round trips and change nothing
-- but the speed (append1 ~35% slower, measured).  The versions are the known
-- next ones (the caller tracks each stream's version as it would pass
-- `expected` to eventrocks); the primary key is the optimistic concurrency
-- check: a stale expected version collides and the append fails.  A complete event
-- store would also read the stream's version in the same transaction to
-- reject an expected version *ahead* of the stream (an explicit transaction
-- and one more round trip); the contract leaves that out for every SQL
-- contender.
--
-- Reads: luasql fetches results as text, where a bytea is its hex form, so
-- the queries select convert_from(event_data, 'UTF8') and get the JSON text
-- itself (un-hexing in Lua would cost ~10 us an event, 5x the JSON decode).  A stream load is
-- one SELECT; the global scan streams through a server-side cursor (FETCH
-- 5000 at a time: libpq would otherwise hold the whole result in memory); the
-- catch-up reads keyset pages of 500 (WHERE position > checkpoint ORDER BY
-- position LIMIT 500) and commits each page's read-model rows and checkpoint
-- as one two-statement query, which PostgreSQL runs as one transaction.
--
-- Every timed workload checks its own result afterwards (row counts, the
-- fold, the read model, that a stale expected version is refused) and fails
-- with a non-zero exit when it is wrong.
local common = require "common"
local SQL = require "sql_common"
local cjson = require "cjson"

local workload, N, _, durable = SQL.args("postgres.lua")
local payload, now, result = common.payload, common.now, common.result
if not os.getenv("PGHOST") then
  io.stderr:write("postgres.lua: PGHOST is not set; start a server with\n",
    '  set -a; eval "$(bench/pg_server.sh start)"; set +a\n')
  os.exit(1)
end

local driver = require "luasql.postgres"
local encode, decode = cjson.encode, cjson.decode
local env = assert(driver.postgres())

local function connect(database)
  return assert(env:connect(database, os.getenv("PGUSER"), nil,
    os.getenv("PGHOST"), os.getenv("PGPORT")))
end

local conn                                      -- the run's own database

-- (scalar's values are strings: luasql fetches PostgreSQL's results as text)
local exec, scalar = SQL.executor(function() return conn end)

local function int(s)
  return math.tointeger(tonumber(s))
end

-- A SQL text literal (standard_conforming_strings is on by default).
local function quote(s)
  return "'" .. conn:escape(s) .. "'"
end

-- A bytea literal in the escape format: printable ASCII as itself except
-- the quote (doubled, for the SQL string) and the backslash (doubled, for
-- bytea), every other byte as \ooo octal.  Correct for any bytes (the
-- server never sees a byte that is not ASCII, so its UTF-8 check passes) and
-- cheap for JSON, which is almost all printable ASCII: one gsub that finds
-- nothing.  The hex format ('\x7b22...') is 4 to 8 times slower to build in
-- Lua.  Relies on standard_conforming_strings, checked at connect.
local BYTEA_ESCAPE = { ["'"] = "''", ["\\"] = "\\\\" }
for b = 0, 255 do
  if b < 32 or b > 126 then BYTEA_ESCAPE[string.char(b)] = ("\\%03o"):format(b) end
end

local function bytea(s)
  return "'" .. s:gsub("[\0-\31'\\\127-\255]", BYTEA_ESCAPE) .. "'"
end

local function synchronous(on)
  exec("SET synchronous_commit = " .. (on and "on" or "off"))
end

local db = { exec = exec, quote = quote, blob = bytea, encode = encode,
  synchronous = synchronous }

-- Append the payloads datas[1..#datas] to `stream` whose current version is
-- `expected`, in one INSERT (one transaction).  Returns the new version, or
-- nil and the error (a conflict: the primary key refused a version that
-- exists).
function db.append(stream, expected, datas)
  local ok, err = conn:execute(SQL.append_sql(stream, expected, datas, db))
  if not ok then return nil, err end
  return expected + #datas
end

-- Untimed set-up (SQL.fill), the table then vacuumed and analysed.
local function fill(n, stream_of)
  local versions = SQL.fill(n, stream_of, db)
  exec("VACUUM ANALYZE events")
  return versions
end

-- Checks after appends: `n` rows, each stream's newest version as tracked,
-- and a stale expected version refused.
local function check_appends(n, versions)
  assert(int(scalar("SELECT count(*) FROM events")) == n,
    "the table does not hold the appended events")
  local cur = exec("SELECT stream_id, max(stream_version) FROM events GROUP BY stream_id")
  local streams = 0
  local s, v = cur:fetch()
  while s do
    assert(versions[s] == int(v), "wrong version of " .. s)
    streams = streams + 1
    s, v = cur:fetch()
  end
  cur:close()
  local tracked = 0
  for _ in pairs(versions) do tracked = tracked + 1 end
  assert(streams == tracked, "wrong number of streams")
  s, v = next(versions)
  assert(not s or not db.append(s, v - 1, { payload(0) }), "a stale expected version was accepted")
  assert(int(scalar("SELECT count(*) FROM events")) == n,
    "a refused append left rows behind")
end

local function run()
  assert(scalar("SHOW standard_conforming_strings") == "on",
    "bytea() needs standard_conforming_strings = on (the default)")
  synchronous(false)
  exec([[
CREATE TABLE events (
  stream_id      text        NOT NULL,
  stream_name    text        NOT NULL,
  stream_version bigint      NOT NULL,
  event_id       uuid        NOT NULL DEFAULT gen_random_uuid(),
  event_name     text        NOT NULL,
  event_data     bytea       NOT NULL,
  occurred_at    timestamptz NOT NULL DEFAULT now(),
  position       bigserial   NOT NULL,
  PRIMARY KEY (stream_id, stream_name, stream_version)
)]])
  exec("CREATE UNIQUE INDEX events_position ON events (position)")

  if workload == "append1" or workload == "append100" or workload == "append_rr" then
    db.check_appends = check_appends
    SQL.appends(workload, N, durable, db)

  elseif workload == "read" then
    local versions = fill(N, SQL.read_stream_of)
    local bigs, big_qty, all_qty = SQL.read_expectations(N)
    assert((versions[SQL.BIG] or 0) == bigs)
    synchronous(durable)

    -- Timed 1: load the stream SQL.BIG ("tally-big") in version order and fold it.
    local t = now()
    local count, qty, last = SQL.fold(exec("SELECT stream_version, convert_from(event_data, 'UTF8') "
      .. "FROM events WHERE stream_id = 'tally-big' AND stream_name = 'tally' ORDER BY stream_version"), decode)
    t = now() - t
    assert(count == bigs and int(last) == bigs and qty == big_qty, "folded the wrong events")
    result("load.eps", count / t)

    -- Timed 2: the whole global log in position order, decoding every event.
    t = now()
    exec("BEGIN")
    exec("DECLARE scan NO SCROLL CURSOR FOR SELECT position, stream_id, stream_version, "
      .. "event_name, convert_from(event_data, 'UTF8') FROM events ORDER BY position")
    count, qty = 0, 0
    repeat
      local got, page_qty = SQL.fold(exec("FETCH FORWARD 5000 FROM scan"), decode)
      count, qty = count + got, qty + page_qty
    until got == 0
    exec("COMMIT")
    t = now() - t
    assert(count == N and qty == all_qty, "scanned the wrong events")
    result("scan.eps", count / t)

  elseif workload == "catchup" then
    local n = N // 100 * 100
    fill(n, SQL.catchup_stream_of)
    assert(int(scalar("SELECT coalesce(max(position), 0) FROM events")) == n,
      "positions are not 1..n")
    exec("CREATE TABLE read_model (stream_id text PRIMARY KEY, count bigint NOT NULL)")
    exec("CREATE TABLE checkpoints (name text PRIMARY KEY, position bigint NOT NULL)")
    synchronous(durable)

    -- Timed: the projection "counts" from its checkpoint to the end of the
    -- log, reading pages of 500 events in position order; after each page
    -- the changed read-model rows and the checkpoint commit in one
    -- transaction.
    local t = now()
    local counts = {}
    local cur = exec("SELECT stream_id, count FROM read_model")
    local sid, c = cur:fetch()
    while sid do counts[sid] = int(c); sid, c = cur:fetch() end
    cur:close()
    local position = scalar("SELECT position FROM checkpoints WHERE name = 'counts'") or "0"
    local processed = 0
    while true do
      local got, rows
      got, position, rows = SQL.count_page(exec("SELECT position, stream_id, event_name, "
        .. "convert_from(event_data, 'UTF8') FROM events WHERE position > " .. position
        .. " ORDER BY position LIMIT 500"), counts, position, decode, quote)
      if got == 0 then break end
      processed = processed + got
      -- the statements in one query string: one implicit transaction
      local upsert = #rows == 0 and "" or "INSERT INTO read_model (stream_id, count) VALUES "
        .. table.concat(rows, ",")
        .. " ON CONFLICT (stream_id) DO UPDATE SET count = excluded.count; "
      exec(upsert .. "INSERT INTO checkpoints (name, position) VALUES ('counts', "
        .. position .. ") ON CONFLICT (name) DO UPDATE SET position = excluded.position")
    end
    t = now() - t
    assert(processed == n and int(position) == n, "caught up the wrong number of events")
    assert(int(scalar("SELECT coalesce(sum(count), 0) FROM read_model")) == n
      and int(scalar("SELECT count(*) FROM read_model")) == math.min(1000, n // 100),
      "the read model does not add up")
    assert(int(scalar("SELECT position FROM checkpoints WHERE name = 'counts'") or "0") == n,
      "the checkpoint is wrong")
    result("catchup.eps", n / t)
  end
end

local admin = connect(os.getenv("PGDATABASE") or "postgres")
local dbname = ("eventrocks_bench_%d_%d"):format(os.time(), math.random(1, 999999999))
exec("CREATE DATABASE " .. dbname, admin)
conn = connect(dbname)
local ok, err = xpcall(run, debug.traceback)
conn:close()
exec("DROP DATABASE " .. dbname, admin)
admin:close()
env:close()
if not ok then
  io.stderr:write("postgres.lua: ", tostring(err), "\n")
  os.exit(1)
end
