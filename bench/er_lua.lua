-- bench/er_lua.lua -- eventrocks from Lua: what users get.  See bench/README.md for the contract.
-- Workloads: append1, append100, append_rr, read, catchup, snapshot, latency, rss,
-- lifecycle, personal (events of a subject, encrypted, against plain ones in
-- the same run)
-- (rss fills the store, then measures a child process that only streams it).
local er = require "eventrocks"
local C = require "common"

local workload, N, dir, durable = C.args()
local payload, now, result = C.payload, C.now, C.result

local function open(sync)
  return assert(er.open(dir, { sync = sync }))
end

local function event(i)
  return { type = "ItemAdded", data = payload(i) }
end

-- Events 1..n as appends of `per` events, append j to order-(j % 1000) with
-- its expected version.  Returns the seconds it took.
local function fill_orders(store, n, per, first)
  first = first or 0
  local ver, names = {}, {}
  for s = 0, 999 do
    names[s] = "order-" .. s
    ver[s] = store:version(names[s])
  end
  local calls = n // per
  local t0 = now()
  if per == 1 then
    for j = 1, calls do
      local s = j % 1000
      local v = assert(store:append(names[s], event(first + j), { expected = ver[s] }))
      ver[s] = v
    end
  else
    for j = 0, calls - 1 do
      local s = j % 1000
      local evs = {}
      for i = 1, per do evs[i] = event(first + j * per + i) end
      ver[s] = assert(store:append(names[s], evs, { expected = ver[s] }))
    end
  end
  return now() - t0, calls * per
end

local function median(xs)
  table.sort(xs)
  return xs[(#xs + 1) // 2]
end

local function percentile(xs, p)
  table.sort(xs)
  return xs[math.max(1, math.ceil(#xs * p))]
end

-- events per append call of the append workloads (append_rr: N/10 appends of
-- 10 events, round-robin over the 1000 streams)
local PER = { append1 = 1, append100 = 100, append_rr = 10 }

if PER[workload] then
  local store = open(durable)
  local t, n = fill_orders(store, N, PER[workload])
  assert(store:last_position() == n)
  result(workload .. ".eps", n / t)
  store:close()

elseif workload == "read" then
  local store = open(false)
  local bigs = 0
  -- set-up: every 2nd event to the aggregate stream tally-big (aggregate
  -- "tally", id "big"), the others round-robin over 1000 streams
  local BIG = "tally-big"
  for i = 1, N do
    local stream = i % 2 == 0 and BIG or "other-" .. i % 1000
    bigs = bigs + (i % 2 == 0 and 1 or 0)
    assert(store:append(stream, event(i)))
  end
  local t = now()
  local count, qty = 0, 0
  for ev in store:read(BIG) do
    count = count + 1
    qty = qty + ev.data.qty
  end
  t = now() - t
  assert(count == bigs and qty > 0, "folded the wrong events")
  result("load.eps", count / t)
  -- The same fold as users write it: an aggregate whose apply handler takes
  -- (state, data), loaded with repo:load (which folds in C, store:_fold).
  local Tally = er.aggregate("tally", {
    init = function() return { n = 0, qty = 0 } end,
    apply = {
      ItemAdded = function(state, data) state.n = state.n + 1; state.qty = state.qty + data.qty end,
    },
  })
  local repo = store:repository(Tally)
  t = now()
  local agg = repo:load("big")
  t = now() - t
  assert(agg.version == bigs and agg.state.n == bigs and agg.state.qty == qty,
    "the aggregate load folded the wrong events")
  result("aggload.eps", bigs / t)
  t = now()
  count = 0
  for ev in store:all() do
    count = count + 1
    if ev.data.qty == 0 then qty = qty + 1 end
  end
  t = now() - t
  assert(count == N, "scanned the wrong number of events")
  result("scan.eps", count / t)
  store:close()

elseif workload == "catchup" then
  local store = open(false)
  local _, n = fill_orders(store, N, 100)
  local counts = store:projection("counts", {
    handlers = {
      ItemAdded = function(view, ev)
        view:put(ev.stream, (view:get(ev.stream) or 0) + 1)
      end,
    },
  })
  local t = now()
  local done = counts:run({ batch = 500 })
  t = now() - t
  assert(done == n and counts:position() == n, "caught up the wrong number of events")
  local sum = 0
  for s = 0, 999 do sum = sum + (counts:get("order-" .. s) or 0) end
  assert(sum == n, "the read model does not add up")
  result("catchup.eps", n / t)
  store:close()

elseif workload == "snapshot" then
  -- A stream of N events whose newest snapshot is at N - 100: a load reads
  -- the snapshot and replays the 100 events after it, the most that
  -- snapshot_every = 100 leaves behind.
  assert(N >= 200 and N % 100 == 0, "snapshot: N must be a multiple of 100")
  local store = open(false)
  local Counter = er.aggregate("counter", {
    init = function() return { n = 0, qty = 0 } end,
    apply = {
      ItemAdded = function(state, data) state.n = state.n + 1; state.qty = state.qty + data.qty end,
    },
    snapshot_every = 100,
  })
  function Counter:add(i) self:raise("ItemAdded", payload(i)) end
  local repo = store:repository(Counter)
  local stream, v = "counter-1", 0
  local function fill_to(target)
    while v < target do
      local evs = {}
      for i = 1, math.min(1000, target - v) do evs[i] = event(v + i) end
      v = assert(store:append(stream, evs, { expected = v }))
    end
  end
  fill_to(N - 101)
  local agg = repo:load("1") -- untimed: replays everything once
  agg:add(N - 100)
  assert(repo:save(agg) == N - 100)
  v = N - 100
  fill_to(N)
  local times = {}
  for r = 1, 21 do
    local t = now()
    agg = repo:load("1")
    times[r] = now() - t
  end
  assert(agg.version == N and agg.state.n == N, "loaded the wrong state")
  result("snapshot.ms", median(times) * 1000)
  store:close()

elseif workload == "latency" then
  -- Grow the store in 100-event appends (untimed) to 10k, 1M and 10M events
  -- (those below N) and N; at each size let RocksDB finish the compactions
  -- the bulk fill left behind (store:_wait_idle: the latency of a store of
  -- that size, not of one still digesting a load made at full speed), then
  -- time 10,000 single appends one by one.
  local core = require "eventrocks.core"
  local store = open(durable)
  local sizes = {}
  for _, n in ipairs({ 10000, 1000000, 10000000 }) do
    if n < N then sizes[#sizes + 1] = n end
  end
  sizes[#sizes + 1] = N
  local names, ver = {}, {}
  for s = 0, 999 do names[s] = "order-" .. s; ver[s] = 0 end
  for _, size in ipairs(sizes) do
    local need = size - store:last_position()
    if need > 0 then fill_orders(store, need - need % 100, 100, store:last_position()) end
    assert(store:_wait_idle(300000), "RocksDB did not settle in 5 minutes")
    for s = 0, 999 do ver[s] = store:version(names[s]) end
    local lat = {}
    for j = 1, 10000 do
      local s = j % 1000
      local t = now()
      ver[s] = assert(store:append(names[s], event(j), { expected = ver[s] }))
      lat[j] = now() - t
    end
    local label = size >= 1000000 and size % 1000000 == 0 and (size // 1000000) .. "M" or (size // 1000) .. "k"
    result(("latency.%s.p50_us"):format(label), percentile(lat, 0.50) * 1e6)
    result(("latency.%s.p99_us"):format(label), percentile(lat, 0.99) * 1e6)
  end
  store:close()

elseif workload == "subscribe" then
  -- Commit -> handler latency of store:subscribe, N events one append each.
  -- In-process: the subscriber is a coroutine and the writer its scheduler
  -- (one Lua state): append, resume, the handler takes the time.
  -- Cross-process: a writer process (sub_writer, below) appends one event
  -- every ~2 ms with the monotonic time in it; a read-only handle follows
  -- it, once with subscribe (inotify + catch-up) and once with a plain
  -- loop of refresh + sleep 1 ms, with the CPU time each reader used.
  local system = require "system"
  local function pct(xs, p) return percentile(xs, p) * 1e6 end
  local store = open(false)
  local lat = {}
  local co = coroutine.wrap(function()
    for ev in store:subscribe({ timeout = 30 }) do lat[#lat + 1] = now() - ev.data.t end
  end)
  co()
  for _ = 1, N do
    assert(store:append("clock-1", { type = "Ticked", data = { t = now() } }))
    co()
  end
  assert(#lat == N, "missed events")
  result("sub_coroutine.p50_us", pct(lat, 0.5))
  result("sub_coroutine.p99_us", pct(lat, 0.99))
  store:close()
  local n = math.min(N, 1500)
  for _, how in ipairs { "subscribe", "poll1ms" } do
    os.execute("rm -rf '" .. dir .. "'")
    assert(er.open(dir)):close()
    local cmd = ("%s %s sub_writer %d '%s' 0"):format(os.getenv("LUA") or "lua5.4", arg[0], n, dir)
    local writer = assert(io.popen(cmd, "r"))
    local ro = assert(er.open(dir, { read_only = true }))
    local xl, cpu0 = {}, os.clock()
    if how == "subscribe" then
      for ev in ro:subscribe({ timeout = 10 }) do
        xl[#xl + 1] = now() - ev.data.t
        if #xl == n then break end
      end
    else
      local seen = 0
      local deadline = now() + 30
      while seen < n and now() < deadline do
        assert(ro:refresh())
        if ro:last_position() > seen then
          for ev in ro:all({ from = seen + 1 }) do xl[#xl + 1] = now() - ev.data.t; seen = ev.position end
        else
          system.sleep(0.001)
        end
      end
    end
    local cpu = os.clock() - cpu0
    writer:close()
    ro:close()
    assert(#xl == n, how .. ": missed events")
    result("sub_" .. how .. ".p50_us", pct(xl, 0.5))
    result("sub_" .. how .. ".p99_us", pct(xl, 0.99))
    result("sub_" .. how .. ".cpu_ms", cpu * 1000)
  end

elseif workload == "sub_writer" then -- the writer process of `subscribe`
  local system = require "system"
  local store
  for _ = 1, 500 do -- the reader opens first: wait for nothing but the lock
    store = er.open(dir)
    if store then break end
    system.sleep(0.01)
  end
  assert(store, "the writer could not open the store")
  system.sleep(0.2)
  for _ = 1, N do
    system.sleep(0.002)
    assert(store:append("clock-1", { type = "Ticked", data = { t = now() } }))
  end
  store:close()

elseif workload == "catchup_policy" then
  -- Catch-up throughput with on_error = "stop" and "park" when no handler
  -- fails: the same projection over the same log, each policy three times,
  -- in turns; the best of each.
  local store = open(false)
  local _, n = fill_orders(store, N, 100)
  local best = {}
  for round = 1, 3 do
    for _, policy in ipairs(round % 2 == 1 and { "stop", "park" } or { "park", "stop" }) do
      local p = store:projection("counts-" .. policy, { on_error = policy, handlers = {
        ItemAdded = function(view, ev) view:put(ev.stream, (view:get(ev.stream) or 0) + 1) end,
      } })
      p:reset()
      local t = now()
      local done = p:run({ batch = 500 })
      t = now() - t
      assert(done == n, "caught up the wrong number of events")
      if not best[policy] or n / t > best[policy] then best[policy] = n / t end
    end
  end
  result("catchup_stop.eps", best.stop)
  result("catchup_park.eps", best.park)
  result("catchup_park_vs_stop.pct", (best.park / best.stop - 1) * 100)
  -- What bounds catch-up, over the same log: a handler that does nothing
  -- (the projection's own work: reading, dispatch, a checkpoint per batch),
  -- one that reads every event's data (so events are decoded: eager after
  -- the first batch), and the store's fastest read, raw values with no
  -- table, with nothing else.
  local handlers = {
    noop = function() end,
    data = function(view, ev) view:put(ev.stream, (view:get(ev.stream) or 0) + ev.data.qty) end,
  }
  -- the best rate of three runs of f, which returns how many events it
  -- took; `setup` (untimed) before each
  local function fastest_of_3(f, setup)
    local best = 0
    for _ = 1, 3 do
      if setup then setup() end
      local t = now()
      local done = f()
      best = math.max(best, done / (now() - t))
    end
    return best
  end
  for _, kind in ipairs({ "noop", "data" }) do
    local p
    result("catchup_" .. kind .. ".eps", fastest_of_3(function()
      local done = p:run({ batch = 500 })
      assert(done == n, "caught up the wrong number of events")
      return done
    end, function()
      p = store:projection("anatomy-" .. kind, { handlers = { ItemAdded = handlers[kind] } })
      p:reset()
    end))
  end
  result("catchup_rawread.eps", fastest_of_3(function()
    local c = 0
    for _ in store:all({ raw = true }) do c = c + 1 end
    assert(c == n)
    return c
  end))
  store:close()

elseif workload == "rss" then
  local store = open(false)
  fill_orders(store, N, 1000)
  store:close()
  -- a fresh process streams the store: its peak RSS is what reading costs
  local cmd = ("%q -e %q"):format(arg[-1] or "lua5.4", ([[
    local er = require "eventrocks"
    local store = assert(er.open(DIR, { read_only = true }))
    local n, q = 0, 0
    for ev in store:all() do n = n + 1; q = q + ev.data.qty end
    local hwm
    for line in io.lines("/proc/self/status") do
      hwm = hwm or tonumber(line:match("^VmHWM:%s*(%d+)%s*kB"))
    end
    print(n, hwm)
  ]]):gsub("DIR", function() return ("%q"):format(dir) end))
  local p = assert(io.popen(cmd))
  local out = p:read("a")
  assert(p:close(), "the reader failed")
  local n, kib = out:match("(%d+)%s+(%d+)")
  assert(tonumber(n) == N // 1000 * 1000, "streamed the wrong number of events")
  result("rss.mib", tonumber(kib) / 1024)

elseif workload == "lifecycle" then
  -- N events over 1000 streams (100 per append), then: a backup of it; a
  -- hard delete of 10% of the streams and the compaction that removes
  -- them; and appends and reads with a retention limit on every stream
  -- against none, in two stores side by side.
  local store = open(false)
  fill_orders(store, N, 100)
  local copy = dir .. "-backup"
  os.execute("rm -rf '" .. copy .. "'")
  local t = now()
  assert(store:backup(copy) == N)
  result("backup.ms", (now() - t) * 1000)
  local p = assert(io.popen("du -sb '" .. copy .. "' | cut -f1"))
  result("backup.mib", tonumber(p:read("l")) / 1048576)
  p:close()
  os.execute("rm -rf '" .. copy .. "'")
  for s = 0, 999, 10 do assert(store:delete("order-" .. s, { hard = true })) end
  t = now()
  local removed = assert(store:compact())
  t = now() - t
  assert(removed == N // 10, "compact removed " .. removed)
  result("compact.eps", removed / t)
  store:close()
  -- retention on every stream (a limit that trims nothing, so both stores
  -- hold the same events) against none
  local M = N
  local function side(limit)
    local d = dir .. (limit and "-ret" or "-none")
    os.execute("rm -rf '" .. d .. "'")
    local st = assert(er.open(d))
    if limit then
      for s = 0, 999 do assert(st:set_stream_meta("order-" .. s, { max_count = limit })) end
    end
    local names, ver = {}, {}
    for s = 0, 999 do names[s], ver[s] = "order-" .. s, 0 end
    local t0 = now()
    for j = 1, M do
      local s = j % 1000
      ver[s] = assert(st:append(names[s], event(j), { expected = ver[s] }))
    end
    local ta = now() - t0
    t0 = now()
    local n = 0
    for _ in st:all() do n = n + 1 end
    local ts = now() - t0
    assert(n == M, "scanned " .. n)
    st:close()
    os.execute("rm -rf '" .. d .. "'")
    return M / ta, M / ts
  end
  side(1000000000) -- a warm-up, not counted: the first store made pays for the cold caches
  local a0, s0 = side(nil)
  local a1, s1 = side(1000000000)
  local a2, s2 = side(nil)
  local a3, s3 = side(1000000000)
  result("retention.append_ratio", (a1 + a3) / (a0 + a2))
  result("retention.scan_ratio", (s1 + s3) / (s0 + s2))

elseif workload == "personal" then
  -- Personal data: 200-byte events (encoded) appended one per call over 1000
  -- streams, each stream a subject, into a store opened with a key, against
  -- the same without subject in a plain store; then a scan of each log.
  -- Two rounds each, alternated, so that neither side gets the cold caches.
  -- Then forget of one subject among min(N, 100k) (each with its key), and
  -- the compact after it.
  local KEY = string.rep("k", 32)
  local pad = string.rep("x", 48)
  local function ev(i)
    local d = payload(i)
    d.pad = pad
    return { type = "ItemAdded", data = d }
  end
  local n = N // 2
  local function side(d, keyed)
    os.execute("rm -rf '" .. d .. "'")
    local st = assert(er.open(d, keyed and { key = KEY } or nil))
    local names, subj = {}, {}
    for k = 0, 999 do names[k] = "order-" .. k; subj[k] = keyed and { subject = "person-" .. k } or nil end
    local t0 = now()
    for j = 1, n do
      local k = j % 1000
      assert(st:append(names[k], ev(j), subj[k]))
    end
    local ta = now() - t0
    st:_wait_idle()
    t0 = now()
    local c = 0
    for e in st:all() do c = c + (e.data.qty > 0 and 1 or 0) end
    local ts = now() - t0
    assert(c == n, "scanned " .. c)
    st:close()
    os.execute("rm -rf '" .. d .. "'")
    return n / ta, n / ts
  end
  side(dir .. "/warm", false) -- a warm-up, not counted
  local ap, sp, ae, se = 0, 0, 0, 0
  for r = 1, 2 do
    local a, sc = side(dir .. "/plain" .. r, false)
    ap, sp = ap + a, sp + sc
    a, sc = side(dir .. "/enc" .. r, true)
    ae, se = ae + a, se + sc
  end
  result("personal.append_plain.eps", ap / 2)
  result("personal.append_enc.eps", ae / 2)
  result("personal.append_ratio", ae / ap)
  result("personal.scan_plain.eps", sp / 2)
  result("personal.scan_enc.eps", se / 2)
  result("personal.scan_ratio", se / sp)
  -- forget one subject among `subjects`, each with a key and events
  local subjects = math.min(N, 100000)
  local d = dir .. "/forget"
  local st = assert(er.open(d, { key = KEY }))
  for i = 1, N do
    local k = i % subjects
    assert(st:append("person-" .. k, ev(i), { subject = "subject-" .. k }))
  end
  st:_wait_idle()
  local t0 = now()
  assert(st:forget("subject-" .. (subjects // 2)) == true)
  result("personal.forget.ms", (now() - t0) * 1000)
  t0 = now()
  assert(st:compact())
  result("personal.compact.ms", (now() - t0) * 1000)
  assert(st:event(subjects // 2).forgotten)
  st:close()
  os.execute("rm -rf '" .. d .. "'")

else
  io.stderr:write("eventrocks.lua: unknown workload '", workload, "'\n")
  os.exit(2)
end
