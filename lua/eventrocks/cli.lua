--- eventrocks.cli: the `eventrocks` command.
--
--   eventrocks [--store DIR] <command> [options]
--
-- The store directory is --store DIR, else $EVENTROCKS_STORE, else
-- ./eventrocks-data.  Commands that only read open the store read-only, so
-- they work beside a running writer.
local argparse = require "argparse"
local er = require "eventrocks"
local core = require "eventrocks.core"
local pretty = require "eventrocks.pretty"
local system = require "system"
local sys = require "eventrocks.sys"
local jsonl = require "eventrocks.jsonl"
local checkpoints = require "eventrocks.checkpoints"
local projection = require "eventrocks.projection"
local rocks = require "eventrocks.rocks"

local M = {}

local fmt = string.format
local stdout, stderr = io.stdout, io.stderr

-- ---------------------------------------------------------------------------
-- Output helpers

local function use_colour()
  return sys.isatty(1) and (os.getenv("NO_COLOR") or "") == "" and os.getenv("TERM") ~= "dumb"
end

local paint = {}
local function setup_colour(on)
  local function c(code) return on and function(s) return "\27[" .. code .. "m" .. s .. "\27[0m" end
    or function(s) return s end end
  paint.dim, paint.bold, paint.type, paint.red, paint.green = c("2"), c("1"), c("36"), c("31"), c("32")
end

-- Stream ids, types and other names are shown escaped (pretty.escape): one
-- name is one line, and no control byte reaches the terminal.  Only --json
-- and export carry the exact bytes.
local escape, safe = pretty.escape, pretty.safe

local function event_line(ev)
  return fmt("%s %s %s %s %s", paint.dim(fmt("%8d", ev.position)),
    paint.bold(escape(ev.stream) .. "@" .. ev.version), paint.type(escape(ev.type)),
    paint.dim(pretty.time(ev.time)), pretty.compact(ev.data, 2000))
end

local function print_event(ev, as_json)
  if as_json then stdout:write(jsonl.encode_event(ev), "\n")
  else stdout:write(event_line(ev), "\n") end
end

local progress = require("eventrocks.progress").new

-- ---------------------------------------------------------------------------
-- Opening the store

local function store_dir(args)
  return args.store or os.getenv("EVENTROCKS_STORE") or "./eventrocks-data"
end

-- A read-only open reads files a writer in another process may be
-- replacing at that moment (flushes, compactions, its own open and close);
-- such failures pass, so they are retried a few times.
--
-- Only commands that write create a store (`create`); the others never do.
-- The store's key (personal data: doc/personal-data.md) comes from the file
-- named by $EVENTROCKS_KEY_FILE, never from the command line, where `ps`
-- shows it to every user: 32 bytes, or 64 hex digits (a final newline is
-- fine).  nil when the variable is not set.
local function load_key()
  local file = os.getenv("EVENTROCKS_KEY_FILE")
  if not file or file == "" then return nil end
  local f, err = io.open(file, "rb")
  if not f then error({ exit = 1, message = "EVENTROCKS_KEY_FILE: " .. tostring(err) }, 0) end
  local text = f:read("a") or ""
  f:close()
  if #text ~= 32 then
    local hex = text:gsub("%s+$", "")
    if #hex == 64 and hex:find("^%x+$") then
      text = hex:gsub("%x%x", function(h) return string.char(tonumber(h, 16)) end)
    end
  end
  if #text ~= 32 then
    error({ exit = 1, message = fmt("EVENTROCKS_KEY_FILE: %s must hold the store's key: 32 bytes, "
      .. "or 64 hex digits", pretty.safe(file)) }, 0)
  end
  return text
end
M.load_key = load_key

local function try_open(dir, writable, create)
  local opts = writable and { create = create or false } or { read_only = true, create = false }
  opts.key = load_key()
  local store, err
  for attempt = 1, writable and 1 or 5 do
    store, err = er.open(dir, opts)
    if store or (err.code ~= "io" and err.code ~= "corruption") then break end
    system.sleep(0.02 * attempt)
  end
  return store, err
end

local function fail(msg, code)
  error({ exit = code or 1, message = msg }, 0)
end

local function open_failed(dir, err)
  if err.code == "not_found" then fail("no store at " .. dir) end
  fail(tostring(err))
end

-- writable: the command writes, and creates the store when it is missing.
local function open_store(args, writable)
  local dir = store_dir(args)
  local store, err = try_open(dir, writable, writable)
  if not store then open_failed(dir, err) end
  return store, dir
end

-- ---------------------------------------------------------------------------
-- Commands

local commands = {}

function commands.streams(args)
  local store <close> = open_store(args)
  for stream, version in store:streams({ prefix = args.prefix }) do
    if args.json then
      stdout:write(jsonl.encode_value({ stream = stream, version = version }), "\n")
    else
      stdout:write(paint.bold(escape(stream)), " ", version, "\n")
    end
  end
end

function commands.read(args)
  local store <close> = open_store(args)
  for ev in store:read(args.stream, { from = args.from, count = args.count, backward = args.backward }) do
    print_event(ev, args.json)
  end
end

local function log_opts(args, from)
  return { from = from, count = args.count, category = args.category,
    types = args.type and #args.type > 0 and args.type or nil }
end

local function log_opts_follow(args, from)
  return { from = from, category = args.category, types = args.type and #args.type > 0 and args.type or nil }
end

function commands.tail(args)
  local from = args.from or 1
  if not args.follow then
    local store <close> = open_store(args)
    for ev in store:all(log_opts(args, from)) do print_event(ev, args.json) end
    return
  end
  -- Follow: a subscription on the read-only handle, woken within
  -- milliseconds of each commit of the writer (inotify and a catch-up; see
  -- eventrocks.subscription).  --interval is still accepted and ignored.
  local store <close> = open_store(args)
  for ev in store:subscribe(log_opts_follow(args, from)) do
    print_event(ev, args.json)
    stdout:flush()
  end
end

-- ---------------------------------------------------------------------------
-- JetStream: relay and consume

local function nats_opts(args)
  local urls = {}
  for _, u in ipairs(args.url or {}) do
    for one in u:gmatch("[^,%s]+") do urls[#urls + 1] = one end
  end
  local o = {
    url = #urls > 0 and urls or (os.getenv("EVENTROCKS_NATS_URL") or nil),
    credentials = args.creds, user = args.user, password = args.password, token = args.token,
    timeout = args.timeout, max_reconnect = args.max_reconnect, reconnect_wait = args.reconnect_wait,
    stream = args.stream, prefix = args.prefix,
  }
  if args.tls_ca or args.tls_cert or args.tls_key then
    o.tls = { ca = args.tls_ca, cert = args.tls_cert, key = args.tls_key }
  end
  return o
end

local function stop_never() return false end

-- relay and consume need the eventrocks-jetstream rock: say so before anything else
local function need_jetstream(command)
  local js, err = rocks.jetstream(command)
  if not js then fail(err) end
end

function commands.relay(args)
  need_jetstream("relay")
  -- beside a running writer, relay from a read-only handle: its checkpoint
  -- is then the JetStream stream's last message
  local dir = store_dir(args)
  local store, err = try_open(dir, true, false)
  if not store and err.code == "locked" then
    stderr:write("eventrocks: relay: ", safe(dir), " is open for writing elsewhere: relaying read-only beside it\n")
    store, err = try_open(dir, false)
  end
  if not store then open_failed(dir, err) end
  local _ <close> = store
  local o = nats_opts(args)
  o.create_stream, o.json, o.batch = args.create_stream, args.json, args.batch
  o.category = args.category
  if args.type and #args.type > 0 then o.types = args.type end
  local relay = store:relay(args.name, o)
  local n, pos = relay:run({ follow = args.follow, interval = args.interval, stop = stop_never,
    on_retry = function(err, attempt)
      if attempt == 1 or attempt % 20 == 0 then stderr:write("eventrocks: relay: retrying: ", tostring(err), "\n") end
    end,
    progress = args.follow and function(p) stderr:write(fmt("relay %s: at position %d\n", args.name, p)) end or nil })
  relay:close()
  if not n then fail(tostring(pos)) end
  stdout:write(safe(fmt("relay %s: %d events published to JetStream stream %s, checkpoint at position %d "
    .. "(%d repeats dropped by JetStream)", args.name, n, relay.stream, pos, relay.duplicates)), "\n")
end

function commands.consume(args)
  need_jetstream("consume")
  if not args.mirror and not args.script then
    fail("consume: nothing to do: give --mirror, --script FILE, or both", 2)
  end
  local spec = { handlers = {} }
  if args.script then
    local chunk, err = loadfile(args.script, "t")
    if not chunk then fail("consume: " .. err) end
    local ok, res = pcall(chunk)
    if not ok then fail("consume: " .. args.script .. ": " .. tostring(res)) end
    if type(res) ~= "table" or type(res.handlers) ~= "table" then
      fail("consume: " .. args.script .. " must return a projection spec: a table with handlers")
    end
    spec = res
  end
  local store <close> = open_store(args, true)
  local o = nats_opts(args)
  o.durable, o.mirror = args.durable, args.mirror
  spec.source = er.jetstream_source(o)
  local proj = store:projection(args.name, spec)
  local n, pos = proj:run({ batch = args.batch, follow = args.follow, interval = args.interval, stop = stop_never })
  spec.source:close()
  if not n then fail(tostring(pos)) end
  stdout:write(safe(fmt("consume %s: %d events applied%s, at source position %d", args.name, n,
    args.mirror and " and mirrored" or "", pos)), "\n")
end

local HOUR_US = 3600 * 1000000

-- The per-hour histogram of `stats`: the `hours` hours up to the newest
-- event's (UTC), from `per_hour` (hour number since the epoch -> events).
-- Returns rows { hour = "2026-12-06 05:00", events = n } oldest first, and
-- the number of events older than the first row.
local function hour_rows(per_hour, newest, hours)
  local rows, before = {}, 0
  if not newest then return rows, 0 end
  local first = newest - hours + 1
  for h = first, newest do
    rows[#rows + 1] = { hour = os.date("!%Y-%m-%d %H:00", h * 3600), events = per_hour[h] or 0 }
  end
  for h, c in pairs(per_hour) do if h < first then before = before + c end end
  return rows, before
end

-- Draw the rows as bars `width` columns wide at most, scaled to the
-- busiest hour.
local function draw_hours(rows, before, width)
  local max = 0
  for _, r in ipairs(rows) do if r.events > max then max = r.events end end
  local block = sys.isatty(1) and "\u{2588}" or "#"
  for _, r in ipairs(rows) do
    local len = max > 0 and math.ceil(r.events * width / max) or 0
    stdout:write(fmt("  %s  %8d%s\n", r.hour, r.events, len > 0 and " " .. paint.green(block:rep(len)) or ""))
  end
  if before > 0 then stdout:write(fmt("  %-16s  %8d\n", "(earlier)", before)) end
end

function commands.stats(args)
  local store <close>, dir = open_store(args)
  local categories, types = {}, {}
  local st = store:stats()
  local streams, total = st.streams, st.last_position
  local bar = progress("scanning", total)
  local n, per_hour, newest = 0, {}, nil
  for ev in store:all() do
    n = n + 1
    local cat = core.category(ev.stream)
    categories[cat] = (categories[cat] or 0) + 1
    types[ev.type] = (types[ev.type] or 0) + 1
    local h = ev.time // HOUR_US
    per_hour[h] = (per_hour[h] or 0) + 1
    if not newest or h > newest then newest = h end
    if n % 4096 == 0 then bar.step(n) end
  end
  local hours, before = hour_rows(per_hour, newest, args.hours or 24)
  if n > 0 then bar.done(n) end
  local size = sys.disk_size(dir)
  local function sorted(t)
    local rows = {}
    for k, v in pairs(t) do rows[#rows + 1] = { name = k, count = v } end
    table.sort(rows, function(a, b)
      if a.count ~= b.count then return a.count > b.count end
      return a.name < b.name
    end)
    return rows
  end
  local cats, typs = sorted(categories), sorted(types)
  if args.json then
    stdout:write(jsonl.encode_value({ events = n, streams = streams, last_position = total,
      size_on_disk = size, categories = categories, types = types, hours = hours, earlier = before }), "\n")
    return
  end
  stdout:write(fmt("store          %s\n", safe(dir)))
  stdout:write(fmt("events         %d\n", n))
  stdout:write(fmt("streams        %d\n", streams))
  stdout:write(fmt("last position  %d\n", total))
  stdout:write(fmt("size on disk   %s\n", size and fmt("%d bytes (%.1f MiB)", size, size / 1048576) or "?"))
  stdout:write(fmt("categories     %d\n", #cats))
  for _, r in ipairs(cats) do stdout:write(fmt("  %-28s %d\n", escape(r.name), r.count)) end
  stdout:write(fmt("event types    %d\n", #typs))
  for _, r in ipairs(typs) do stdout:write(fmt("  %-28s %d\n", escape(r.name), r.count)) end
  if #hours > 0 then
    stdout:write(fmt("events per hour (UTC, the %d hours up to the newest event)\n", #hours))
    draw_hours(hours, before, 40)
  end
end

function commands.export(args)
  local store <close> = open_store(args)
  local out = stdout
  if args.file and args.file ~= "-" then
    local f, err = io.open(args.file, "w")
    if not f then fail(err) end
    out = f
  end
  local total = store:last_position()
  local bar = progress("exporting", total)
  local n, personal = 0, 0
  for ev in store:all({ from = args.from }) do
    out:write(jsonl.encode_event(ev), "\n")
    n = n + 1
    if ev.subject and not ev.forgotten then personal = personal + 1 end
    if n % 1024 == 0 then bar.step(n) end
  end
  if n > 0 then bar.done(n) end
  if out ~= stdout then
    local ok, err = out:close()
    if not ok then fail(err) end
  else
    out:flush()
  end
  if args.file and args.file ~= "-" then
    stderr:write(fmt("exported %d events to %s\n", n, safe(args.file)))
    if personal > 0 then
      -- the store holds them encrypted; the export cannot (its reader has no key)
      stderr:write(fmt("warning: %s holds the personal data of %d events in plaintext, with their "
        .. "subjects (an import into a store opened with a key encrypts them again): keep it as "
        .. "safe as the key, and delete it when done\n", safe(args.file), personal))
    end
  end
end

-- The file to import: FILE, or standard input for "-".  A directory or an
-- unreadable file is an error before the store is opened (nothing is created).
-- Returns the handle, its size from the current offset (nil for a pipe), a
-- closer and the function that reports a read error.
local function open_input(file)
  local function cannot(err)
    err = tostring(err)
    if err:sub(1, #file + 2) == file .. ": " then err = err:sub(#file + 3) end
    fail(fmt("cannot import %s: %s", file == "-" and "standard input" or file, (err:gsub("^%u", string.lower))))
  end
  local f, err
  if file == "-" then f = io.stdin
  else
    f, err = io.open(file, "r")
    if not f then cannot(err) end
  end
  local probe, rerr = f:read(0) -- reading a directory fails here
  if probe == nil and rerr then cannot(rerr) end
  local at = f:seek("cur") -- nil on a pipe
  local size = at and f:seek("end")
  if size then
    f:seek("set", at)
    size = size - at
  end
  return f, size, function() if f ~= io.stdin then f:close() end end, cannot
end

-- The line of the event of an append that `err` (duplicate_event) names by
-- its id: the second of two events with that id, else the one with it.
local function duplicate_line(err, group, lines)
  local id = err.id
  if type(id) ~= "string" then return nil end
  local first
  for i, ev in ipairs(group) do
    if type(ev.id) == "string" and ev.id:lower() == id then
      if first then return lines[i] end
      first = i
    end
  end
  return first and lines[first]
end

-- Import: consecutive lines of one stream with one time were one append;
-- they are appended together again, with expected = the version before
-- them and their ids and time kept, so a second import of the same file is
-- an idempotent retry of every append and writes nothing.
function commands.import(args)
  local f, size, close, cannot = open_input(args.file)
  local store <close> = open_store(args, true)
  local bar = progress("importing", size)
  local group, appended, replayed, written = {}, 0, 0, 0
  local lines = {} -- the line number of each event of the group
  local function flush()
    if #group == 0 then return end
    local first = group[1]
    local txn = assert(store:_txn())
    local events = {}
    for i, ev in ipairs(group) do
      events[i] = { id = ev.id, type = ev.type, data = ev.data, metadata = ev.metadata }
    end
    if first.subject and not store:_has_key() then
      close()
      fail(fmt("line %d: an event of subject %s (personal data) needs a store opened with a key: "
        .. "set EVENTROCKS_KEY_FILE", lines[1], safe(first.subject)))
    end
    -- restore (lines of an export, which carry positions): a stream whose
    -- first versions were removed at the source starts at the same version
    -- here, and positions past this store's end are kept (the holes of the
    -- source come along).  Lines without positions must continue their
    -- streams.
    local called, ok, err = pcall(txn.append, txn, first.stream, events,
      { expected = first.version - 1, time = first.time, restore = first.position ~= nil,
        position = first.position, subject = first.subject, forgotten = first.forgotten })
    if not called then
      -- a value the store refuses (e.g. nested too deep): name its line
      txn:close()
      local e = ok
      if type(e) == "table" and e.code == "invalid" and e.index then
        fail(fmt("line %d: %s: %s", lines[e.index] or lines[1], e.path, e.reason))
      end
      fail(fmt("line %d: %s", lines[1], tostring(e)))
    end
    local res
    if ok then res, err = txn:commit() end
    txn:close()
    if not res then
      -- the error names the failing append and the duplicate id (err.id):
      -- the line is the event of the group with that id
      local at = type(err) == "table" and err.code == "duplicate_event"
        and duplicate_line(err, group, lines) or lines[1]
      fail(fmt("line %d: %s", at, tostring(err)))
    end
    if res[1].replayed then replayed = replayed + #group else written = written + #group end
    appended = appended + 1
    group, lines = {}, {}
  end
  local line_no, bytes = 0, 0
  while true do
    local line, rerr = f:read("l")
    if not line then
      if rerr then
        flush()
        cannot(rerr)
      end
      break
    end
    line_no = line_no + 1
    bytes = bytes + #line + 1
    if line:find("%S") then
      local ok, ev = pcall(jsonl.decode_event, line, line_no)
      if not ok then
        -- Nothing of this line's append is written.  The append waiting to
        -- be written is another one when the line, read as far as it goes,
        -- names another stream or time or does not continue its versions.
        local last, head = group[#group], jsonl.peek_event(line)
        if last and head and (head.stream ~= last.stream or head.time ~= last.time
          or head.version ~= last.version + 1) then
          flush()
        end
        close()
        fail(tostring(ev) .. fmt(" (imported %d events before it)", written))
      end
      local last = group[#group]
      if last and (last.stream ~= ev.stream or last.time ~= ev.time
        or last.subject ~= ev.subject or last.forgotten ~= ev.forgotten
        or ev.version ~= last.version + 1
        or (ev.position and last.position and ev.position ~= last.position + 1)) then
        flush()
      end
      group[#group + 1] = ev
      lines[#group] = line_no
      if line_no % 1024 == 0 then bar.step(bytes) end
    end
  end
  flush()
  close()
  if bytes > 0 then bar.done(size or bytes) end
  stderr:write(fmt("imported %d events (%d appends); %d events were already there\n",
    written, appended, replayed))
end

function commands.projections(args)
  local store <close> = open_store(args)
  local list = projection.list(store)
  for _, p in ipairs(list) do
    if args.json then
      stdout:write(jsonl.encode_value(p), "\n")
    else
      local lag = p.lag and fmt(", lag %d", p.lag) or ""
      stdout:write(paint.bold(escape(p.name)), fmt(" (%s) position %s%s, %d dead letter%s, %d skipped",
        p.source, p.position and tostring(p.position) or "damaged", lag, p.dead_letters,
        p.dead_letters == 1 and "" or "s", p.skipped), "\n")
      if p.last_error then stdout:write("  last error: ", safe(p.last_error), "\n") end
    end
  end
  if #list == 0 and not args.json then stdout:write("no projections\n") end
end

function commands.dead_letters(args)
  local store <close> = open_store(args)
  for _, l in ipairs(projection.dead_letters_of(store, args.name)) do
    if args.json then
      stdout:write(jsonl.encode_value(l), "\n")
    else
      stdout:write(fmt("#%s %s@%s %s, failed %s: ", tostring(l.position), escape(tostring(l.stream)),
        tostring(l.version), escape(tostring(l.type)), pretty.time(l.at)), safe(tostring(l.error)), "\n")
    end
  end
end

commands["dead-letters"] = commands.dead_letters

-- A backup needs the writer's handle (it flushes the memtables first), so
-- it opens the store for writing; beside a writer in another process it
-- says so rather than copy a store that misses acknowledged appends.
function commands.backup(args)
  local dir = store_dir(args)
  local store, err = try_open(dir, true, false)
  if not store and err.code == "locked" then
    fail(fmt("%s is open for writing in another process: a backup needs the writer's handle, whose "
      .. "memtables it flushes first (a read-only handle would copy a store that misses acknowledged "
      .. "appends); call store:backup(dir) in that process, or stop it and run this again", safe(dir)))
  end
  if not store then open_failed(dir, err) end
  local position, berr = store:backup(args.dir)
  store:close()
  if not position then fail(tostring(berr)) end
  stdout:write(safe(fmt("backup of %s in %s: events up to position %d", dir, args.dir, position)), "\n")
  return 0
end

-- The lifecycle commands change an existing store: they need the writer's
-- handle, and never create a store.
local function open_writer(args, what)
  local dir = store_dir(args)
  local store, err = try_open(dir, true, false)
  if not store and err.code == "locked" then
    fail(fmt("%s is open for writing in another process: %s needs the writer's handle; call it in "
      .. "that process (store:%s), or stop it and run this again", safe(dir), what, what))
  end
  if not store then open_failed(dir, err) end
  return store, dir
end

function commands.delete(args)
  local store <close> = open_writer(args, "delete")
  local ok, err = store:delete(args.stream, { hard = args.hard, expected = args.expected })
  if not ok then fail(tostring(err)) end
  stdout:write(safe(fmt("%s %s", args.stream, args.hard
    and "deleted for good: its events are gone from every read (eventrocks compact removes their bytes)"
    or "deleted: hidden from read and streams; an append restarts it")), "\n")
  return 0
end

function commands.truncate(args)
  local store <close> = open_writer(args, "truncate")
  local version = store:version(args.stream)
  if version > 0 and args.version > version + 1 then
    fail(safe(fmt("%s is at version %d: it can be truncated before version %d at most", args.stream,
      version, version + 1)))
  end
  local ok, err = store:truncate(args.stream, args.version)
  if not ok then fail(tostring(err)) end
  stdout:write(safe(fmt("%s: events before version %d removed (eventrocks compact removes their bytes)",
    args.stream, args.version)), "\n")
  return 0
end

-- Personal data: destroy a subject's key (the store is opened with the
-- key of $EVENTROCKS_KEY_FILE).
function commands.forget(args)
  local store <close> = open_writer(args, "forget")
  if not store:_has_key() then
    fail("forget needs the store's key: set EVENTROCKS_KEY_FILE to the file that holds it")
  end
  local forgotten, err = store:forget(args.subject)
  if forgotten == nil then fail(tostring(err)) end
  stdout:write(safe(forgotten
    and fmt("%s forgotten: its events read without data from now on (eventrocks compact removes "
      .. "its key from the store's files)", args.subject)
    or fmt("%s: no key to destroy (unknown, or forgotten already)", args.subject)), "\n")
  return 0
end

function commands.compact(args)
  local store <close> = open_writer(args, "compact")
  local before = store:stats().bytes_on_disk
  local removed, err = store:compact()
  if not removed then fail(tostring(err)) end
  local after = store:stats().bytes_on_disk
  stdout:write(fmt("compacted: %d removed event%s; %.1f MiB -> %.1f MiB on disk\n", removed,
    removed == 1 and "" or "s", before / 1048576, after / 1048576))
  return 0
end

function commands.check(args)
  local store <close> = open_store(args)
  local last = store:last_position()
  local bar = progress("checking", 3 * last)
  local problems, messages = store:_check(function(done) bar.step(done) end)
  if not problems then fail(tostring(messages)) end
  if last > 0 then bar.done(3 * last) end
  local function problem(msg)
    problems = problems + 1
    messages[#messages + 1] = msg
  end
  -- a scan that meets damaged bytes raises: report it as a problem and go
  -- on with the next part, so that the report is as complete as can be
  local function guarded(part, fn)
    local ok, err = pcall(fn)
    if not ok then problem(fmt("%s: %s (the rest of the %s were not checked)", part, tostring(err), part)) end
  end
  local streams = 0
  local streams_ok = pcall(function() for _ in store:streams() do streams = streams + 1 end end)
  -- (a damaged head is one of store:_check's problems already)
  -- snapshots and checkpoints belong to the Lua layer: check them here
  local snapshots, checkpoints_n = 0, 0
  guarded("snapshots", function()
    for stream, snap in store:_scan("snapshots") do
      snapshots = snapshots + 1
      local v = store:version(stream)
      if type(snap) ~= "table" or math.type(snap.version) ~= "integer" then
        problem(fmt("snapshots: the snapshot of %s is damaged", escape(stream)))
      elseif v and snap.version > v then
        problem(fmt("snapshots: the snapshot of %s is at version %d, ahead of the stream (%d)",
          escape(stream), snap.version, v))
      end
    end
  end)
  -- each checkpoint is judged by the module that keeps it
  guarded("checkpoints", function()
    local js_ok, js = pcall(require, "eventrocks.jetstream")
    for kind, name, value in checkpoints.each(store) do
      checkpoints_n = checkpoints_n + 1
      local why
      if kind == "projection" then
        why = projection.checkpoint_problem(escape(name), value, last)
      elseif js_ok then
        why = js.checkpoint_problem(kind, escape(name), value, last)
      else
        why = fmt("the %s checkpoint %s was not checked: %s", kind, escape(name), tostring(js))
      end
      if why then problem("checkpoints: " .. why) end
    end
  end)
  stdout:write(fmt("checked %d events, %s streams, their index, heads and ids, %d snapshots, %d checkpoints\n",
    last, streams_ok and tostring(streams) or "?", snapshots, checkpoints_n))
  for _, m in ipairs(messages) do stdout:write(paint.red("problem: "), safe(m), "\n") end
  if #messages < problems then stdout:write(fmt("... and %d more\n", problems - #messages)) end
  if problems > 0 then
    stdout:write(paint.red(fmt("%d problem%s found\n", problems, problems == 1 and "" or "s")))
    return 1
  end
  stdout:write(paint.green("ok"), ": no problems found\n")
end

function commands.repl(args)
  local dir = store_dir(args)
  local store, err = er.open(dir, { read_only = args.read_only or false, key = load_key() })
  if not store and err.code == "locked" then
    stderr:write(fmt("%s is open for writing elsewhere: opening it read-only\n", safe(dir)))
    store, err = er.open(dir, { read_only = true, create = false, key = load_key() })
  end
  if not store then fail(tostring(err)) end
  local repl = require "eventrocks.repl"
  local ok, res = pcall(repl.run, { store = store, dir = dir })
  store:close()
  if not ok then error(res, 0) end
  if not res then return 1 end -- a piped script had an error
end

-- The web explorer: the eventrocks-ui rock (eventrocks.ui and its server
-- eventrocks.http), on a read-only handle refreshed before each request.
function commands.ui(args)
  local ui_mod, err = rocks.ui("ui")
  if not ui_mod then fail(err) end
  local aggregates
  if args.aggregates then
    local aerr
    aggregates, aerr = ui_mod.load_aggregates(args.aggregates)
    if not aggregates then fail("ui: " .. tostring(aerr)) end
  end
  args.store = args.ui_store or args.store
  local store <close>, dir = open_store(args)
  local ok, serr = ui_mod.serve({ store = store, dir = dir, port = args.port, listen = args.listen,
    aggregates = aggregates, out = stdout })
  if not ok then fail("ui: " .. tostring(serr)) end
  stderr:write("eventrocks ui: stopped\n")
end

-- ---------------------------------------------------------------------------
-- Arguments

local function parser()
  local p = argparse("eventrocks", "Explore and manage an eventrocks event store.")
    :epilog("The store is --store DIR, else $EVENTROCKS_STORE, else ./eventrocks-data.\n"
      .. "Run 'eventrocks <command> --help' for the options of a command.")
  p:option("-s --store", "Store directory."):argname("DIR")
  p:flag("-v --version", "Print the version and exit."):action(function()
    stdout:write(er._VERSION, "\n")
    os.exit(0)
  end)
  p:command_target("command")
  p:require_command(false)

  local function natural(name, min)
    min = min or (name == "count" and 0 or 1)
    return function(s)
      local n = math.tointeger(tonumber(s))
      if not n or n < min then
        return nil, fmt("%s must be an integer >= %d", name, min)
      end
      return n
    end
  end

  local c = p:command("streams", "List the streams, one 'id version' a line, in byte order.")
  c:argument("prefix", "Only streams whose id starts with PREFIX."):args("?")
  c:flag("--json", "JSON lines.")

  c = p:command("read", "Print the events of one stream.")
  c:argument("stream", "The stream id.")
  c:option("--from", "First version (default 1, or the last with --backward)."):convert(natural("from"))
  c:option("--count", "At most N events."):convert(natural("count"))
  c:flag("--backward", "Newest first.")
  c:flag("--json", "JSON lines.")

  c = p:command("tail", "Print the global log in position order.")
  c:option("--from", "First position (default 1)."):argname("POS"):convert(natural("from"))
  c:option("--count", "At most N events."):convert(natural("count"))
  c:option("--category", "Only streams of this category.")
  c:option("--type", "Only events of this type (repeatable)."):count("*")
  c:flag("-f --follow", "Keep waiting for new events (Ctrl-C to stop).")
  c:option("--interval", "Ignored (kept for old scripts): --follow is woken by each commit."):convert(natural("interval"))
  c:flag("--json", "JSON lines.")

  c = p:command("stats", "Events, streams, categories and event types with counts, size on disk, events per hour.")
  c:flag("--json", "One JSON object.")
  c:option("--hours", "Hours in the histogram, up to the newest event's (default 24)."):convert(natural("hours"))

  c = p:command("export", "Write every event as JSON lines (lossless; see README).")
  c:argument("file", "Output file (default: standard output)."):args("?")
  c:option("--from", "First position (default 1)."):argname("POS"):convert(natural("from"))

  c = p:command("import", "Append the events of a JSON lines export, keeping ids, versions and times.")
  c:argument("file", "The file to import.")

  p:command("check", "Verify the store's invariants; exit status 1 and a report when one fails.")

  c = p:command("projections", "List the projections: position, lag, dead letters, skipped events, last error.")
  c:flag("--json", "JSON lines.")

  c = p:command("dead-letters", "Print the dead letters of a projection (events parked by on_error = \"park\").")
  c:argument("name", "The projection's name.")
  c:flag("--json", "JSON lines (the whole event of each).")

  c = p:command("delete", "Delete a stream: hidden (soft), or removed for good with --hard.")
  c:argument("stream", "The stream id.")
  c:flag("--hard", "Remove its events from every read and refuse any later append or read of it.")
  c:option("--expected", "Only if the stream is at this version."):convert(natural("expected", 0))
  c = p:command("truncate", "Remove the events of a stream before a version.")
  c:argument("stream", "The stream id.")
  c:argument("version", "The first version to keep."):convert(natural("version", 1))
  c = p:command("forget", "Destroy a subject's key: its events read without data from then on "
    .. "(personal data; the key comes from $EVENTROCKS_KEY_FILE).")
  c:argument("subject", "The subject (e.g. a user id).")
  c = p:command("compact", "Remove the bytes of deleted, truncated and expired events from the store's files.")
  c = p:command("backup", "Copy the store, consistently, into a new directory (hard links where it can).")
  c:argument("dir", "The new directory (must not exist).")

  local function nats_options(cmd)
    cmd:option("--url", "NATS server URL; repeatable or comma-separated (default $EVENTROCKS_NATS_URL, "
      .. "else nats://127.0.0.1:4222)."):count("*")
    cmd:option("--stream", "JetStream stream (default EVENTS).")
    cmd:option("--prefix", "Subject prefix (default events).")
    cmd:option("--creds", "NATS credentials file."):argname("FILE")
    cmd:option("--user", "User name.")
    cmd:option("--password", "Password.")
    cmd:option("--token", "Authentication token.")
    cmd:option("--tls-ca", "CA certificates (PEM) to verify the server with."):argname("FILE")
    cmd:option("--tls-cert", "Client certificate (PEM)."):argname("FILE")
    cmd:option("--tls-key", "Client key (PEM)."):argname("FILE")
    cmd:option("--timeout", "Connect timeout, ms (default 2000)."):convert(natural("timeout"))
    cmd:option("--max-reconnect", "Reconnect attempts before giving up (default 60)."):convert(natural("max-reconnect", 0))
    cmd:option("--reconnect-wait", "Milliseconds between reconnect attempts (default 500)."):convert(natural("reconnect-wait"))
    cmd:option("--batch", "Events per checkpoint (default 1000 for relay, 500 for consume)."):convert(natural("batch"))
    cmd:flag("-f --follow", "Keep going as new events arrive (Ctrl-C to stop).")
    cmd:option("--interval", "With --follow: relay asks again at least every MS (woken by each commit); consume polls JetStream every MS (default 100)."):convert(natural("interval"))
  end

  c = p:command("relay", "Publish the global log to NATS JetStream from the relay's checkpoint.")
  c:argument("name", "The relay's name (its checkpoint is kept in the store).")
  nats_options(c)
  c:flag("--create-stream", "Create the JetStream stream when it does not exist.")
  c:flag("--json", "Message bodies as JSON (as export writes them) instead of MessagePack.")
  c:option("--category", "Only streams of this category.")
  c:option("--type", "Only events of this type (repeatable)."):count("*")

  c = p:command("consume", "Apply the events of a JetStream stream to this store: a mirror, a projection, or both.")
  c:argument("name", "The projection's name (its checkpoint and read model are kept in the store).")
  nats_options(c)
  c:option("--durable", "The durable consumer's name (default: the projection's name).")
  c:flag("--mirror", "Append every event to this store too, keeping ids, streams, versions and times.")
  c:option("--script", "A Lua file returning a projection spec ({handlers = ..., category = ...})."):argname("FILE")

  c = p:command("ui", "Serve a read-only web explorer of the store (Ctrl-C to stop).")
  c:option("--port", "TCP port (default 8080; 0: any free port)."):argname("N"):convert(natural("port", 0))
  c:option("--store", "Store directory (as the global --store)."):argname("DIR"):target("ui_store")
  c:option("--aggregates", "A Lua file returning the application's er.aggregate definitions."):argname("FILE.lua")
  c:option("--listen", "Address to listen on (default 127.0.0.1)."):argname("ADDR")

  c = p:command("repl", "A Lua 5.4 prompt with `er` loaded and `store` open.")
  c:flag("--read-only", "Open the store read-only.")
  return p
end

--- Run the command line `argv` (an array of strings); returns the exit status.
function M.main(argv)
  setup_colour(use_colour())
  local p = parser()
  -- argparse calls the handler with the parser that met the error: a
  -- subcommand's, so that its usage is the one shown
  p.error = function(cmd, msg) error({ usage_error = msg, parser = cmd }, 0) end
  local ok, args = pcall(p.parse, p, argv)
  if not ok then
    if type(args) ~= "table" or not args.usage_error then error(args, 0) end
    local cmd = args.parser
    local name = cmd == p and "eventrocks" or "eventrocks " .. tostring(cmd._name)
    stderr:write(cmd:get_usage(), "\n\neventrocks: ", safe(args.usage_error), "\n",
      "Run '", name, " --help' for more.\n")
    return 2
  end
  if not args.command then
    stdout:write(p:get_help(), "\n")
    return 0
  end
  if not sys.isatty(1) then stdout:setvbuf("full") end
  local run_ok, res = pcall(commands[args.command], args)
  stdout:flush()
  if run_ok then return res or 0 end
  if type(res) == "table" and res.exit then
    stderr:write("eventrocks: ", safe(res.message), "\n")
    return res.exit
  end
  local msg = tostring(res)
  if msg:find("interrupted!", 1, true) then return 130 end
  stderr:write("eventrocks: ", safe(msg), "\n")
  return 1
end

return M
