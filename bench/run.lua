-- bench/run.lua -- runs every contender on every workload, prints one table
-- and writes it (with the machine and the date) to bench/results.md, and the
-- chart of its rates (bench/chart.lua) beside it, bench/results.svg.
--
--   lua5.4 bench/run.lua [quick]        (make bench / make bench-quick)
--
-- Environment: BENCH_BIN (where the C contenders are built, default
-- build/bench), BENCH_TMP (scratch directory, default build/bench-tmp: on
-- the same disk as a real store, not a tmpfs), BENCH_OUT (results file,
-- default bench/results.md; the chart goes to the same name ending in .svg
-- instead of .md, or to BENCH_SVG), BENCH_RUNS (runs per figure, default 3, 1 in
-- quick mode), BENCH_ONLY (comma-separated contender keys to run),
-- EVENTROCKS_NATS_URL (a nats-server -js for the JetStream rows; when unset,
-- one is started with tools/nats.sh in BENCH_TMP/nats and stopped after).
local quick = arg[1] == "quick"
local BIN = os.getenv("BENCH_BIN") or "build/bench"
local TMP = os.getenv("BENCH_TMP") or "build/bench-tmp"
local OUT = os.getenv("BENCH_OUT") or "bench/results.md"
local SVG = os.getenv("BENCH_SVG") or (OUT:gsub("%.md$", "") .. ".svg")
local RUNS = tonumber(os.getenv("BENCH_RUNS") or (quick and 1 or 3))
local ONLY = os.getenv("BENCH_ONLY")
local LUA = os.getenv("LUA") or "lua5.4"

local function sh(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function run(cmd)
  local p = assert(io.popen(cmd, "r"))
  local out = p:read("a")
  local ok, how, code = p:close()
  return out, ok, how, code
end

-- ---------------------------------------------------------------------------
-- Contenders

local raw_publish_cmd -- below: it needs the results so far

local contenders = {
  { key = "raw", name = "raw RocksDB (C)", cmd = sh(BIN .. "/raw_rocksdb") },
  { key = "layout", name = "raw RocksDB, eventrocks' keys (C)", cmd = sh(BIN .. "/raw_layout"),
    only = { append1 = true, append100 = true, append_rr = true } },
  { key = "core", name = "eventrocks core (C)", cmd = sh(BIN .. "/core_bench") },
  { key = "lua", name = "eventrocks (Lua)", cmd = LUA .. " bench/er_lua.lua" },
  { key = "floor", name = "Lua tables only, no store", cmd = LUA .. " bench/lua_floor.lua",
    only = { read = true, append1 = true, append100 = true, append_rr = true } },
  { key = "sqlite", name = "SQLite (Lua)", cmd = LUA .. " bench/sqlite.lua" },
  { key = "pg", name = "PostgreSQL (Lua)", cmd = LUA .. " bench/postgres.lua", server = true },
  -- in a table of their own: the JetStream relay and consumer, and the
  -- raw publish baseline (bench/nats_pub.c, which takes URL N PAYLOAD_BYTES
  -- [MAX_PENDING] [msgid] rather than the contract's arguments)
  { key = "js", name = "eventrocks + JetStream (Lua)", cmd = LUA .. " bench/jetstream.lua",
    nats = true, section = "js", only = { relay = true } },
  { key = "jsraw", name = "NATS C client, no store (C)", nats = true, section = "js", only = { relay = true },
    command = function(j) return raw_publish_cmd(j) end },
  -- the web explorer's pages (eventrocks ui), in a table of their own
  { key = "ui", name = "eventrocks ui (Lua)", cmd = LUA .. " bench/ui.lua", section = "ui", only = { ui = true } },
}
if ONLY then
  local keep = {}
  for _, c in ipairs(contenders) do
    if ("," .. ONLY .. ","):find("," .. c.key .. ",", 1, true) then keep[#keep + 1] = c end
  end
  contenders = keep
end

-- ---------------------------------------------------------------------------
-- Workloads: { workload, N, durable, who (nil = everyone), label }

local S = quick and {
  append1 = 20000, append1_sync = 300, append100 = 20000, append100_sync = 3000,
  append_rr = 20000, append_rr_sync = 1000,
  read = 40000, catchup = 100000, snap_small = 1000, snap_big = 100000,
  latency = 300000, rss = 300000, jetstream = 20000, lifecycle = 100000, ui = 100000,
  subscribe = 5000, catchup_policy = 100000, personal = 20000,
} or {
  append1 = 100000, append1_sync = 2000, append100 = 100000, append100_sync = 20000,
  append_rr = 100000, append_rr_sync = 5000,
  read = 200000, catchup = 1000000, snap_small = 1000, snap_big = 1000000,
  latency = 10000000, rss = 10000000, jetstream = 1000000, lifecycle = 1000000, ui = 1000000,
  subscribe = 20000, catchup_policy = 1000000, personal = 200000,
}

local function count(n)
  if n >= 1000000 and n % 1000000 == 0 then return (n // 1000000) .. "M" end
  if n >= 1000 and n % 1000 == 0 then return (n // 1000) .. "k" end
  return tostring(n)
end

local rows = {} -- { metric, label, unit, who, n, durable }
local jobs = {}
local function job(workload, n, durable, who, metrics)
  jobs[#jobs + 1] = { workload = workload, n = n, durable = durable, who = who }
  for _, m in ipairs(metrics) do
    m.job = jobs[#jobs]
    rows[#rows + 1] = m
  end
end

job("append1", S.append1, 0, nil, {
  { metric = "append1.eps", label = ("append 1 event/call, %s events, no fsync"):format(count(S.append1)), unit = "events/s" } })
job("append100", S.append100, 0, nil, {
  { metric = "append100.eps", label = ("append 100 events/call, %s events, no fsync"):format(count(S.append100)), unit = "events/s" } })
-- issue 18's independent probe: appends of 10 events, round-robin over the
-- 1000 streams (every append to another stream than the last), each with
-- its expected version
job("append_rr", S.append_rr, 0, nil, {
  { metric = "append_rr.eps", label = ("append 10 events/call round-robin over 1000 streams, %s events, no fsync"):format(count(S.append_rr)), unit = "events/s" } })
job("append1", S.append1_sync, 1, nil, {
  { metric = "append1.eps", label = ("append 1 event/call, %s events, durable"):format(count(S.append1_sync)), unit = "events/s" } })
job("append100", S.append100_sync, 1, nil, {
  { metric = "append100.eps", label = ("append 100 events/call, %s events, durable"):format(count(S.append100_sync)), unit = "events/s" } })
job("append_rr", S.append_rr_sync, 1, nil, {
  { metric = "append_rr.eps", label = ("append 10 events/call round-robin over 1000 streams, %s events, durable"):format(count(S.append_rr_sync)), unit = "events/s" } })
job("read", S.read, 0, nil, {
  { metric = "load.eps", label = ("load + fold a %s-event stream (of %s)"):format(count(S.read // 2), count(S.read)), unit = "events/s" },
  -- the same stream and fold through an aggregate, as users load one
  -- (repo:load, which folds in C when the handlers take (state, data))
  { metric = "aggload.eps", by = "lua", label = ("aggregate load (`repo:load`) + fold of that %s-event stream"):format(count(S.read // 2)), unit = "events/s" },
  { metric = "scan.eps", label = ("scan the global log, %s events"):format(count(S.read)), unit = "events/s" } })
job("catchup", S.catchup, 0, { core = true, lua = true, sqlite = true, pg = true }, {
  { metric = "catchup.eps", label = ("projection catch-up, %s events"):format(count(S.catchup)), unit = "events/s" } })
job("snapshot", S.snap_small, 0, { lua = true }, {
  { metric = "snapshot.ms", label = ("aggregate load, %s-event stream, snapshot_every = 100"):format(count(S.snap_small)), unit = "ms" } })
job("snapshot", S.snap_big, 0, { lua = true }, {
  { metric = "snapshot.ms", label = ("aggregate load, %s-event stream, snapshot_every = 100"):format(count(S.snap_big)), unit = "ms" } })
do
  local sizes, lat = {}, {}
  for _, n in ipairs({ 10000, 1000000, 10000000 }) do
    if n < S.latency then sizes[#sizes + 1] = n end
  end
  sizes[#sizes + 1] = S.latency
  for _, n in ipairs(sizes) do
    for _, p in ipairs({ "p50", "p99" }) do
      lat[#lat + 1] = {
        metric = ("latency.%s.%s_us"):format(count(n), p),
        label = ("append latency %s at %s events stored"):format(p, count(n)), unit = "µs",
      }
    end
  end
  job("latency", S.latency, 0, { lua = true }, lat)
end
-- Subscriptions: commit -> handler latency (core: a writer thread and a
-- waiting thread on one handle; Lua: a coroutine subscriber resumed after
-- each append, and a read-only handle following a writer process, by
-- subscribe and, for comparison, by a 1 ms refresh loop), and catch-up with
-- on_error = "park" against "stop" when nothing fails.
job("subscribe", S.subscribe, 0, { core = true, lua = true }, {
  { metric = "sub_inproc.p50_us", by = "core", label = "subscription latency p50, in-process (writer thread, C)", unit = "µs" },
  { metric = "sub_inproc.p99_us", by = "core", label = "subscription latency p99, in-process (writer thread, C)", unit = "µs" },
  { metric = "sub_inproc_append.p50_us", by = "core", label = "of which the append call itself, p50", unit = "µs" },
  { metric = "sub_inproc_append.p99_us", by = "core", label = "of which the append call itself, p99", unit = "µs" },
  { metric = "sub_coroutine.p50_us", by = "lua", label = "subscription latency p50, in-process (coroutine, append + resume)", unit = "µs" },
  { metric = "sub_coroutine.p99_us", by = "lua", label = "subscription latency p99, in-process (coroutine, append + resume)", unit = "µs" },
  { metric = "sub_subscribe.p50_us", by = "lua", label = "subscription latency p50, another process writing (inotify)", unit = "µs" },
  { metric = "sub_subscribe.p99_us", by = "lua", label = "subscription latency p99, another process writing (inotify)", unit = "µs" },
  { metric = "sub_subscribe.cpu_ms", by = "lua", label = "reader CPU, 1500 events 2 ms apart (inotify)", unit = "ms" },
  { metric = "sub_poll1ms.p50_us", by = "lua", label = "same, p50, refresh every 1 ms instead", unit = "µs" },
  { metric = "sub_poll1ms.p99_us", by = "lua", label = "same, p99, refresh every 1 ms instead", unit = "µs" },
  { metric = "sub_poll1ms.cpu_ms", by = "lua", label = "reader CPU, 1500 events 2 ms apart (refresh every 1 ms)", unit = "ms" } })
job("catchup_policy", S.catchup_policy, 0, { lua = true }, {
  { metric = "catchup_stop.eps", by = "lua", label = ("projection catch-up, on_error = \"stop\", %s events"):format(count(S.catchup_policy)), unit = "events/s" },
  { metric = "catchup_park.eps", by = "lua", label = ("projection catch-up, on_error = \"park\", nothing fails, %s events"):format(count(S.catchup_policy)), unit = "events/s" },
  { metric = "catchup_park_vs_stop.pct", by = "lua", label = "park against stop", unit = "%" },
  { metric = "catchup_noop.eps", by = "lua", label = "projection catch-up, a handler that does nothing (the projection's own cost)", unit = "events/s" },
  { metric = "catchup_data.eps", by = "lua", label = "projection catch-up, a handler that reads every event's data", unit = "events/s" },
  { metric = "catchup_rawread.eps", by = "lua", label = "the same log read raw (`store:all{ raw = true }`: values, no table), nothing else", unit = "events/s" } })
job("rss", S.rss, 0, { lua = true }, {
  { metric = "rss.mib", label = ("peak RSS streaming %s events"):format(count(S.rss)), unit = "MiB" } })
job("lifecycle", S.lifecycle, 0, { lua = true }, {
  { metric = "backup.ms", label = ("backup of a %s-event store (`store:backup`)"):format(count(S.lifecycle)), unit = "ms" },
  { metric = "backup.mib", label = "size of that backup on disk (its table files are hard links to the store's)", unit = "MiB" },
  { metric = "compact.eps", label = ("compaction after hard-deleting 10%% of the streams of %s events"):format(count(S.lifecycle)), unit = "events/s" },
  { metric = "retention.append_ratio", label = "appends with max_count on every stream / without (goal >= 0.9)", unit = "×" },
  { metric = "retention.scan_ratio", label = "log scan with max_count on every stream / without (goal >= 0.9)", unit = "×" } })
-- Personal data: events of a subject (encrypted) against plain ones, both
-- in this run; forget of one subject among min(N, 100k), then compact.
job("personal", S.personal, 0, { lua = true }, {
  { metric = "personal.append_plain.eps", by = "lua", label = ("append 1 event/call, 200-byte events, no subject, %s events"):format(count(S.personal // 2)), unit = "events/s" },
  { metric = "personal.append_enc.eps", by = "lua", label = "the same with a subject (encrypted)", unit = "events/s" },
  { metric = "personal.append_ratio", by = "lua", label = "encrypted appends / plain (goal >= 0.7)", unit = "×" },
  { metric = "personal.scan_plain.eps", by = "lua", label = ("scan the global log of those %s events, no subject"):format(count(S.personal // 2)), unit = "events/s" },
  { metric = "personal.scan_enc.eps", by = "lua", label = "the same with a subject (decrypted)", unit = "events/s" },
  { metric = "personal.scan_ratio", by = "lua", label = "encrypted reads / plain (goal >= 0.7)", unit = "×" },
  { metric = "personal.forget.ms", by = "lua", label = ("forget one subject among %s (%s events)"):format(count(math.min(S.personal, 100000)), count(S.personal)), unit = "ms" },
  { metric = "personal.compact.ms", by = "lua", label = "compact after it", unit = "ms" } })
-- JetStream: one run of bench/jetstream.lua gives the relay and both
-- consumers; one run of the raw baseline both publish rates.  `by`: the
-- one contender whose column the row fills.
local JS_PENDING = 512 -- the relay's max_pending, given to the raw publisher too
job("relay", S.jetstream, 0, { js = true, jsraw = true }, {
  { metric = "relay.eps", by = "js", section = "js", unit = "events/s",
    label = ("relay the log to JetStream (`relay:run()`), %s events"):format(count(S.jetstream)) },
  { metric = "raw_async_publish.mps", by = "jsraw", section = "js", unit = "messages/s",
    label = ("raw async publish, the relay's body size, %d in flight"):format(JS_PENDING) },
  { metric = "raw_async_publish_msgid.mps", by = "jsraw", section = "js", unit = "messages/s",
    label = ("raw async publish with a `Nats-Msg-Id` on each, %d in flight"):format(JS_PENDING) },
  { metric = "consume.eps", by = "js", section = "js", unit = "events/s",
    label = ("consume into a projection (count per stream), %s events"):format(count(S.jetstream)) },
  { metric = "consume_mirror.eps", by = "js", section = "js", unit = "events/s",
    label = ("consume into a projection + mirror (`mirror = true`), %s events"):format(count(S.jetstream)) } })
local js_job = jobs[#jobs]
job("ui", S.ui, 0, { ui = true }, {
  { metric = "ui.stream.ms", section = "ui", unit = "ms",
    label = ("web explorer: stream page (latest events) of a %s-event stream"):format(count(S.ui)) },
  { metric = "ui.stream_first.ms", section = "ui", unit = "ms",
    label = ("web explorer: stream page (first events) of a %s-event stream"):format(count(S.ui)) },
  { metric = "ui.streams.ms", section = "ui", unit = "ms",
    label = ("web explorer: streams page of a %s-stream store (counts up to 100k)"):format(count(S.ui // 10)) } })

-- ---------------------------------------------------------------------------
-- Running

-- The server lives in its own temporary directory (pg_server.sh's default,
-- under $TMPDIR or /tmp), not under BENCH_TMP: the postgres user must reach
-- it, and a checkout may sit below a directory only root can enter.
local pg_env, pg_dir
local function start_pg()
  local out, ok = run("bench/pg_server.sh start 2>&1")
  if not ok then
    io.stderr:write("bench: PostgreSQL did not start:\n", out)
    return false
  end
  local env = {}
  for k, v in out:gmatch("(PG%u+)=(%S+)") do env[#env + 1] = k .. "=" .. sh(v) end
  pg_env = table.concat(env, " ")
  pg_dir = out:match("PG_BENCH_DIR=(%S+)")
  return true
end
local function stop_pg()
  if pg_dir then run("bench/pg_server.sh stop " .. sh(pg_dir) .. " >/dev/null 2>&1") end
  pg_dir = nil
end

-- The nats-server of the JetStream rows: EVENTROCKS_NATS_URL, else a
-- throwaway one (tools/nats.sh) in BENCH_TMP/nats, its JetStream files on
-- the same disk as the stores.  Stopped after the run, whatever happens
-- (mk/bench.mk stops it too, should this process be interrupted).
local nats_url = os.getenv("EVENTROCKS_NATS_URL")
local nats_dir
local function start_nats()
  if nats_url then return true end
  nats_dir = TMP .. "/nats"
  os.execute("rm -rf " .. sh(nats_dir))
  local out, ok = run("tools/nats.sh start " .. sh(nats_dir) .. " 2>&1")
  nats_url = ok and out:match("EVENTROCKS_NATS_URL=(%S+)")
  if not nats_url then
    io.stderr:write("bench: nats-server did not start:\n", out)
    return false
  end
  return true
end
local function stop_nats()
  if nats_dir then
    run("tools/nats.sh stop " .. sh(nats_dir) .. " >/dev/null 2>&1")
    os.execute("rm -rf " .. sh(nats_dir))
    nats_dir, nats_url = nil, os.getenv("EVENTROCKS_NATS_URL")
  end
end

local results = {} -- results[job][key] = { metric = {values} }
local function median(xs)
  local c = {}
  for i, x in ipairs(xs) do c[i] = x end
  table.sort(c)
  local n = #c
  if n == 0 then return nil end
  if n % 2 == 1 then return c[(n + 1) // 2] end
  return (c[n // 2] + c[n // 2 + 1]) / 2
end

-- The raw publisher sends bodies of the size the relay sent (the median of
-- bench/jetstream.lua's relay.body_bytes when it ran before, else its usual
-- value), with the relay's max_pending.
local JS_BODY_DEFAULT = 258
local js_body
raw_publish_cmd = function(j)
  local r = results[j] and results[j].js
  local b = r and not r.failed and r["relay.body_bytes"] and median(r["relay.body_bytes"])
  js_body = b and math.floor(b + 0.5) or JS_BODY_DEFAULT
  local bin = sh(BIN .. "/nats_pub")
  local args = ("%s %d %d %d"):format(sh(nats_url), j.n, js_body, JS_PENDING)
  return ("%s %s && %s %s msgid"):format(bin, args, bin, args)
end

local failures = 0

os.execute("mkdir -p " .. sh(TMP))
local pg_ok, nats_ok
local function run_all()
  for _, c in ipairs(contenders) do
    if c.server then pg_ok = start_pg() end
    if c.nats and nats_ok == nil then nats_ok = start_nats() end
    for _, j in ipairs(jobs) do
      if (not j.who or j.who[c.key]) and (not c.only or c.only[j.workload]) then
        results[j] = results[j] or {}
        local got = {}
        results[j][c.key] = got
        for r = 1, RUNS do
          local dir = TMP .. "/run"
          os.execute("rm -rf " .. sh(dir) .. " && mkdir -p " .. sh(dir))
          local env = c.server and (pg_env or "") .. " " or ""
          if c.nats then env = "EVENTROCKS_NATS_URL=" .. sh(nats_url or "") .. " " end
          local cmd
          if c.command then
            cmd = ("%s%s 2>&1"):format(env, c.command(j))
          else
            cmd = ("%s%s %s %d %s %d 2>&1"):format(env, c.cmd, j.workload, j.n, sh(dir), j.durable)
          end
          io.stderr:write(("bench: %-20s %-9s N=%-9d durable=%d run %d/%d\n"):format(c.name, j.workload, j.n, j.durable, r, RUNS))
          local out, ok
          if (c.server and not pg_ok) or (c.nats and not nats_ok) then
            out, ok = "the server did not start", false
          else
            out, ok = run(cmd)
          end
          if not ok then
            io.stderr:write("bench: FAILED: ", cmd, "\n", out, "\n")
            failures = failures + 1
            got.failed = true
            break
          end
          for m, v in out:gmatch("RESULT%s+(%S+)%s+(%S+)") do
            got[m] = got[m] or {}
            table.insert(got[m], tonumber(v))
          end
        end
        os.execute("rm -rf " .. sh(TMP .. "/run"))
      end
    end
    if c.server then stop_pg() end
  end
end
local ran, why = pcall(run_all)
stop_pg()
stop_nats()
if not ran then error(why, 0) end

-- ---------------------------------------------------------------------------
-- The table

local function fmt_value(v, unit)
  if v == nil then return "" end
  if unit == "events/s" or unit == "messages/s" then
    if v >= 1e6 then return ("%.2fM"):format(v / 1e6) end
    if v >= 1e3 then return ("%.0fk"):format(v / 1e3) end
    return ("%.0f"):format(v)
  end
  if v >= 100 then return ("%.0f"):format(v) end
  if v >= 10 then return ("%.1f"):format(v) end
  return ("%.2f"):format(v)
end

local function value(row, key)
  local r = results[row.job] and results[row.job][key]
  if not r then return nil, "" end
  if r.failed then return nil, "failed" end
  local v = r[row.metric] and median(r[row.metric])
  return v, v and fmt_value(v, row.unit) or "failed"
end

local function ratio(a, b)
  if not (a and b) or b == 0 then return "" end
  return ("%.2f×"):format(a / b)
end

-- One table per section: the main one (no section), then JetStream's.
local have = {}
for _, c in ipairs(contenders) do have[c.key] = true end
local V = {} -- V[metric@n@durable][key] = value, for the goals
local function table_of(section, ratio_cols)
  local cols = {}
  for _, c in ipairs(contenders) do
    if c.section == section then cols[#cols + 1] = c end
  end
  local these = {}
  for _, row in ipairs(rows) do
    if row.section == section then these[#these + 1] = row end
  end
  if #cols == 0 or #these == 0 then return nil end
  local lines = {}
  local function emit(cells) lines[#lines + 1] = "| " .. table.concat(cells, " | ") .. " |" end
  local header = { "workload", "unit" }
  for _, c in ipairs(cols) do header[#header + 1] = c.name end
  for _, rc in ipairs(ratio_cols) do header[#header + 1] = rc[1] end
  emit(header)
  local sep = {}
  for i = 1, #header do sep[i] = i <= 2 and "---" or "---:" end
  emit(sep)
  for _, row in ipairs(these) do
    local cells = { row.label, row.unit }
    local id = row.metric .. "@" .. row.job.n .. "@" .. row.job.durable
    V[id] = V[id] or {}
    local vals = V[id]
    for _, c in ipairs(cols) do
      if row.by and row.by ~= c.key then
        cells[#cells + 1] = ""
      else
        local v, text = value(row, c.key)
        vals[c.key] = v
        cells[#cells + 1] = text
      end
    end
    for _, rc in ipairs(ratio_cols) do
      -- for times and sizes smaller is better; ratios are for rates only
      cells[#cells + 1] = row.unit == "events/s" and ratio(vals.lua, vals[rc[2]]) or ""
    end
    emit(cells)
  end
  return table.concat(lines, "\n")
end

local ratio_cols = {}
if have.lua and have.raw then ratio_cols[#ratio_cols + 1] = { "Lua / raw", "raw" } end
if have.lua and have.sqlite then ratio_cols[#ratio_cols + 1] = { "Lua / SQLite", "sqlite" } end
if have.lua and have.pg then ratio_cols[#ratio_cols + 1] = { "Lua / PostgreSQL", "pg" } end
local main_table = table_of(nil, ratio_cols)
local js_table = table_of("js", {})
local ui_table = table_of("ui", {})

-- ---------------------------------------------------------------------------
-- The goals (speed against the ceilings and the other stores, the relay
-- against raw publishing), judged from the tables

local goals = {}
local chart_goals = {} -- the goals the chart draws (see `mark` below)
-- `ceiling`: the best ratio any Lua event store on RocksDB could show in
-- the same comparison (see the notes under the table), or nil.  `mark`, for
-- a rate goal the chart draws: { row = the row of `a`, key = its contender,
-- label = the short text }: the line goes at want × b on that bar.
-- Returns the ratio and the verdict ("met", "missed" or nil).
local function goal(text, a, b, want, kind, ceiling, ceiling_of, mark)
  local r, verdict
  local cap = ""
  if ceiling then cap = ("%.2f (%s)"):format(ceiling, ceiling_of) end
  if a and b and b ~= 0 then
    r = a / b
    if kind == "max" then verdict = r <= want and "met" or "missed"
    else verdict = r >= want and "met" or "missed" end
    goals[#goals + 1] = ("| %s | %.2f | %s %.2f | %s | %s |"):format(text, r, kind == "max" and "≤" or "≥", want, cap, verdict)
  else
    goals[#goals + 1] = ("| %s | | %s %.2f | %s | not measured |"):format(text, kind == "max" and "≤" or "≥", want, cap)
  end
  if mark and mark.row then
    chart_goals[#chart_goals + 1] = { row = mark.row, key = mark.key, label = mark.label,
      value = b and want * b, met = verdict and verdict == "met" }
  end
  return r, verdict
end
local function over(a, b) if a and b and b ~= 0 then return a / b end end
-- The rate of doing both a and b per event (rates in events/s): a store
-- must both build the events' Lua tables (the floor) and do its RocksDB
-- work (raw reads, or puts of its keys), one after the other.
local function both(a, b) if a and b and a > 0 and b > 0 then return 1 / (1 / a + 1 / b) end end
local function get(metric, n, durable, key)
  local t = V[metric .. "@" .. n .. "@" .. (durable or 0)]
  return t and t[key]
end
local A1, A100, A1S, A100S = S.append1, S.append100, S.append1_sync, S.append100_sync
-- The main table's row of `metric` measured by a job of n events and that
-- durability (for the chart's goal lines).
local function row_of(metric, n, durable)
  for _, r in ipairs(rows) do
    if r.metric == metric and r.job.n == n and r.job.durable == (durable or 0) and not r.section then return r end
  end
end
-- Ceilings: the rate of the Lua tables alone combined with the RocksDB work
-- alone, against the contender; where the floor was not measured, the
-- RocksDB work alone.
local function ceiling(metric, n, d, work, vs)
  local w = get(metric, n, d, work)
  return over(both(w, get(metric, n, d, "floor")) or w, get(metric, n, d, vs))
end
local KEYS_LUA = "eventrocks' keys + Lua tables / raw"
-- Issue 18's four goals, as the issue states them.  The load is the
-- aggregate load users call (repo:load, folding in C), against the
-- stream loads of SQLite and of raw RocksDB on the same stream.
local issue18 = {} -- the rows of the "Issue 18" table: { label, lua, sqlite, goals text, verdicts }
do
  local half = count(S.read // 2)
  local agg, scan = row_of("aggload.eps", S.read), row_of("scan.eps", S.read)
  local cat, a100 = row_of("catchup.eps", S.catchup), row_of("append100.eps", A100)
  local lua_agg, lua_scan = get("aggload.eps", S.read, 0, "lua"), get("scan.eps", S.read, 0, "lua")
  local lua_cat, lua_a100 = get("catchup.eps", S.catchup, 0, "lua"), get("append100.eps", A100, 0, "lua")
  local sq_load, sq_scan = get("load.eps", S.read, 0, "sqlite"), get("scan.eps", S.read, 0, "sqlite")
  local sq_cat, sq_a100 = get("catchup.eps", S.catchup, 0, "sqlite"), get("append100.eps", A100, 0, "sqlite")
  local function v(verdict) return verdict or "not measured" end
  local _, l1 = goal(("issue 18: load + fold a %s-event stream (`repo:load`), Lua / SQLite"):format(half),
    lua_agg, sq_load, 2.5, nil, nil, nil, { row = agg, key = "lua", label = "≥ 2.5× SQLite" })
  local _, l2 = goal(("issue 18: load + fold a %s-event stream (`repo:load`), Lua / raw sequential reads"):format(half),
    lua_agg, get("load.eps", S.read, 0, "raw"), 0.35, nil, nil, nil, { row = agg, key = "lua", label = "≥ 0.35× raw reads" })
  local _, s1 = goal("issue 18: scan the global log, Lua / SQLite", lua_scan, sq_scan, 2,
    nil, ceiling("scan.eps", S.read, 0, "raw", "sqlite"), "raw reads + Lua tables / SQLite",
    { row = scan, key = "lua", label = "≥ 2× SQLite" })
  local _, s2 = goal("issue 18: scan the global log, Lua / raw sequential reads", lua_scan, get("scan.eps", S.read, 0, "raw"), 0.35,
    nil, ceiling("scan.eps", S.read, 0, "raw", "raw"), "raw reads + Lua tables / raw",
    { row = scan, key = "lua", label = "≥ 0.35× raw reads" })
  -- (its ceiling: the same catch-up with a handler that does nothing)
  local _, c1 = goal(("issue 18: projection catch-up of %s events, Lua / SQLite"):format(count(S.catchup)), lua_cat, sq_cat, 2,
    nil, over(get("catchup_noop.eps", S.catchup_policy, 0, "lua"), sq_cat), "a handler that does nothing / SQLite",
    { row = cat, key = "lua", label = "≥ 2× SQLite" })
  local _, a1 = goal("issue 18: 100-event appends, no fsync, Lua / SQLite", lua_a100, sq_a100, 3,
    nil, ceiling("append100.eps", A100, 0, "layout", "sqlite"), "eventrocks' keys + Lua tables / SQLite",
    { row = a100, key = "lua", label = "≥ 3× SQLite" })
  local _, a2 = goal("issue 18: 100-event appends, no fsync, Lua / raw batched puts", lua_a100, get("append100.eps", A100, 0, "raw"), 0.4,
    nil, ceiling("append100.eps", A100, 0, "layout", "raw"), KEYS_LUA,
    { row = a100, key = "lua", label = "≥ 0.4× raw batched puts" })
  issue18 = {
    { ("load + fold a %s-event stream (eventrocks: `repo:load`; SQLite: its stream load)"):format(half), lua_agg, sq_load,
      "≥ 2.5× SQLite, ≥ 0.35× raw reads", v(l1) .. ", " .. v(l2) },
    { ("scan the global log, %s events"):format(count(S.read)), lua_scan, sq_scan, "≥ 2× SQLite, ≥ 0.35× raw reads", v(s1) .. ", " .. v(s2) },
    { ("projection catch-up, %s events"):format(count(S.catchup)), lua_cat, sq_cat, "≥ 2× SQLite", v(c1) },
    { ("100-event appends, %s events, no fsync"):format(count(A100)), lua_a100, sq_a100, "≥ 3× SQLite, ≥ 0.4× raw batched puts", v(a1) .. ", " .. v(a2) },
    { ("probe: 10-event appends round-robin over 1000 streams, %s events, no fsync"):format(count(S.append_rr)),
      get("append_rr.eps", S.append_rr, 0, "lua"), get("append_rr.eps", S.append_rr, 0, "sqlite"), "(no goal)", "" },
    { ("probe: the same, %s events, durable"):format(count(S.append_rr_sync)),
      get("append_rr.eps", S.append_rr_sync, 1, "lua"), get("append_rr.eps", S.append_rr_sync, 1, "sqlite"), "(no goal)", "" },
  }
end
-- The earlier goals (issues before 18); those issue 18 restates (100-event
-- appends, no fsync, against raw batched puts and SQLite) are above.
goal("single appends, Lua / raw single puts", get("append1.eps", A1, 0, "lua"), get("append1.eps", A1, 0, "raw"), 0.5,
  nil, ceiling("append1.eps", A1, 0, "layout", "raw"), KEYS_LUA)
goal("stream load + fold, Lua / raw sequential reads", get("load.eps", S.read, 0, "lua"), get("load.eps", S.read, 0, "raw"), 0.4,
  nil, ceiling("load.eps", S.read, 0, "raw", "raw"), "raw reads + Lua tables / raw")
goal("global-log scan, Lua / raw sequential reads", get("scan.eps", S.read, 0, "lua"), get("scan.eps", S.read, 0, "raw"), 0.4,
  nil, ceiling("scan.eps", S.read, 0, "raw", "raw"), "raw reads + Lua tables / raw")
for _, d in ipairs({ 0, 1 }) do
  local tag = d == 1 and ", durable" or ""
  local n1, n100 = d == 1 and A1S or A1, d == 1 and A100S or A100
  for _, vs in ipairs({ { "pg", "PostgreSQL", 20 }, { "sqlite", "SQLite", 3 } }) do
    goal("single appends" .. tag .. ", Lua / " .. vs[2], get("append1.eps", n1, d, "lua"), get("append1.eps", n1, d, vs[1]), vs[3],
      nil, ceiling("append1.eps", n1, d, "layout", vs[1]), "eventrocks' keys + Lua tables / " .. vs[2])
    if not (d == 0 and vs[1] == "sqlite") then -- that one is issue 18's, above
      goal("100-event appends" .. tag .. ", Lua / " .. vs[2], get("append100.eps", n100, d, "lua"), get("append100.eps", n100, d, vs[1]), vs[3],
        nil, ceiling("append100.eps", n100, d, "layout", vs[1]), "eventrocks' keys + Lua tables / " .. vs[2])
    end
  end
end
for _, vs in ipairs({ { "pg", "PostgreSQL" }, { "sqlite", "SQLite" } }) do
  goal("stream load, Lua / " .. vs[2], get("load.eps", S.read, 0, "lua"), get("load.eps", S.read, 0, vs[1]), 3,
    nil, ceiling("load.eps", S.read, 0, "raw", vs[1]), "raw reads + Lua tables / " .. vs[2])
end
goal(("snapshot load, %s-event stream / %s-event stream (time)"):format(count(S.snap_big), count(S.snap_small)),
  get("snapshot.ms", S.snap_big, 0, "lua"), get("snapshot.ms", S.snap_small, 0, "lua"), 1.5, "max")
goal(("p99 append latency at %s / at 10k"):format(count(S.latency)),
  get(("latency.%s.p99_us"):format(count(S.latency)), S.latency, 0, "lua"), get("latency.10k.p99_us", S.latency, 0, "lua"), 1.5, "max")
goal(("peak RSS streaming %s events / 64 MiB"):format(count(S.rss)), get("rss.mib", S.rss, 0, "lua"), 64, 1, "max")
goal("personal data: encrypted appends / plain (200-byte events)", get("personal.append_enc.eps", S.personal, 0, "lua"),
  get("personal.append_plain.eps", S.personal, 0, "lua"), 0.7)
goal("personal data: encrypted reads / plain (200-byte events)", get("personal.scan_enc.eps", S.personal, 0, "lua"),
  get("personal.scan_plain.eps", S.personal, 0, "lua"), 0.7)
local JS = S.jetstream
goal("relay to JetStream / raw async publish", get("relay.eps", JS, 0, "js"), get("raw_async_publish.mps", JS, 0, "jsraw"), 0.5,
  nil, over(get("raw_async_publish_msgid.mps", JS, 0, "jsraw"), get("raw_async_publish.mps", JS, 0, "jsraw")),
  "raw with Nats-Msg-Id / without")
goal(("web explorer: stream page of a %s-event stream / 200 ms"):format(count(S.ui)),
  get("ui.stream.ms", S.ui, 0, "ui"), 200, 1, "max")
goal(("web explorer: streams page of a %s-stream store / 200 ms"):format(count(S.ui // 10)),
  get("ui.streams.ms", S.ui, 0, "ui"), 200, 1, "max")

-- ---------------------------------------------------------------------------
-- Output

local function first_line(cmd)
  local p = io.popen(cmd .. " 2>/dev/null")
  local s = p and p:read("l") or ""
  if p then p:close() end
  return s or ""
end
local cpu = first_line("grep -m1 'model name' /proc/cpuinfo"):gsub("^model name%s*:%s*", "")
local cores = first_line("nproc")
local mem = first_line("awk '/MemTotal/ { printf \"%.0f GiB\", $2 / 1048576 }' /proc/meminfo")
local date = os.date("!%Y-%m-%d %H:%M UTC")
local head = {
  ("# eventrocks benchmark results (%s)"):format(quick and "make bench-quick" or "make bench"),
  "",
  ("%s; %s cores; %s; %s. Every figure is the median of %d run%s; all rows come from one run of `%s`."):format(
    cpu, cores, mem, date, RUNS, RUNS == 1 and "" or "s", quick and "make bench-quick" or "make bench"),
  "Durability: \"no fsync\" is eventrocks `sync = false`, SQLite `synchronous=NORMAL` (WAL), PostgreSQL `synchronous_commit=off`, raw RocksDB `sync=false`; \"durable\" is `sync = true`, `synchronous=FULL`, `synchronous_commit=on`, `sync=true`.",
  "",
}
-- the chart, beside the results file (linked from it when in the same directory)
local svg_dir, svg_base = SVG:match("^(.-)([^/]*)$")
local svg_link = svg_dir == OUT:match("^(.-)[^/]*$") and svg_base or SVG
head[#head + 1] = ("![the rates of the table below, one bar per contender, log scale, with issue 18's goals](%s)"):format(svg_link)
head[#head + 1] = ""
local sections = {}
if main_table then sections[#sections + 1] = main_table .. "\n" end
do
  local lines = {
    "## Issue 18",
    "",
    "eventrocks from Lua against SQLite from Lua on the workloads of issue 18 (figures from the table above; the goals' verdicts, with the ratios against raw RocksDB, are under Goals).",
    "",
    "| workload | eventrocks (Lua) | SQLite (Lua) | eventrocks / SQLite | goal | verdict |",
    "|---|---:|---:|---:|---|---|",
  }
  for _, r in ipairs(issue18) do
    lines[#lines + 1] = ("| %s | %s | %s | %s | %s | %s |"):format(r[1], fmt_value(r[2], "events/s"),
      fmt_value(r[3], "events/s"), ratio(r[2], r[3]), r[4], r[5])
  end
  sections[#sections + 1] = table.concat(lines, "\n") .. "\n"
end
if js_table then
  local jr = results[js_job] and results[js_job].js
  local body = jr and jr["relay.body_bytes"] and median(jr["relay.body_bytes"])
  sections[#sections + 1] = "## JetStream\n\n" ..
    ("One nats-server -js (file storage) on loopback, on the same machine.  The relay's messages carry the " ..
    "event as MessagePack (%s on average) and its headers: `Nats-Msg-Id`, `Nats-Expected-Last-Sequence` and " ..
    "five `Eventrocks-*`; batches of 1000 (the next one published while the last one's acknowledgements arrive), %d in flight.  The raw publisher (`bench/nats_pub.c`) sends " ..
    "bodies of %s and no header, or only `Nats-Msg-Id`.  The consumers are durable pull consumers " ..
    "applying batches of 500, each committed with its checkpoint in one write, then acknowledged.\n\n"):format(
      body and ("%.0f bytes"):format(body) or "about 258 bytes", JS_PENDING,
      js_body and ("%d bytes"):format(js_body) or "the same size") ..
    js_table .. "\n"
end
if ui_table then
  sections[#sections + 1] = "## Web explorer\n\nPages of `eventrocks ui` rendered in process from a read-only handle " ..
    "(bench/ui.lua): the median of 5 renders after a warm-up.\n\n" .. ui_table .. "\n"
end
local text = table.concat(head, "\n") .. "\n" .. table.concat(sections, "\n") ..
  "\n## Goals\n\n" ..
  "The ceiling column is the best ratio a Lua event store could show in the same comparison, from " ..
  "two rates measured in this run: building in plain Lua the tables an append takes or a read returns " ..
  "(`Lua tables only`), and the RocksDB work alone from C; a store has to do both for each event, so " ..
  "its best rate is 1 / (1/tables + 1/RocksDB).  The RocksDB work is: for appends, plain puts of " ..
  "eventrocks' own keys (log, stream index, id index, head: the layout that gives stream reads, the " ..
  "global log and idempotent retries); for reads, raw RocksDB's sequential reads.  For the relay: raw publishing with a " ..
  "`Nats-Msg-Id` on each message (the duplicate detection every relayed message needs) against " ..
  "publishing without.\n\n" ..
  "| goal | ratio | target | ceiling | verdict |\n|---|---:|---:|---:|---|\n" ..
  table.concat(goals, "\n") .. "\n"
io.write(text)
local f = assert(io.open(OUT, "w"))
f:write(text)
f:close()
io.stderr:write(("bench: wrote %s\n"):format(OUT))

-- The chart: every rate of the main table, one group per row, one bar per
-- contender, and the goals drawn on their bars.
do
  local chart = require "chart"
  local data = {
    title = ("eventrocks benchmark results (%s)"):format(quick and "make bench-quick" or "make bench"),
    subtitle = ("%s; %s cores; %s; median of %d run%s; higher is better"):format(cpu, cores, date, RUNS, RUNS == 1 and "" or "s"),
    unit = "events/s", contenders = {}, rows = {}, goals = chart_goals,
  }
  for _, c in ipairs(contenders) do
    if not c.section then data.contenders[#data.contenders + 1] = { key = c.key, name = c.name } end
  end
  for _, row in ipairs(rows) do
    if not row.section and row.unit == "events/s" then
      local values = {}
      for _, c in ipairs(data.contenders) do
        if not row.by or row.by == c.key then values[c.key] = (value(row, c.key)) end
      end
      data.rows[#data.rows + 1] = { id = row, label = row.label:gsub("`", ""), values = values }
    end
  end
  local g = assert(io.open(SVG, "w"))
  g:write(chart.svg(data))
  g:close()
  io.stderr:write(("bench: wrote %s\n"):format(SVG))
end
if failures > 0 then
  io.stderr:write(("bench: %d contender run%s failed\n"):format(failures, failures == 1 and "" or "s"))
  os.exit(1)
end
