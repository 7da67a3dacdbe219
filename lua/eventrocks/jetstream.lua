--- eventrocks.jetstream: the global log published to NATS JetStream (the
-- relay) and JetStream fed back into projections and mirrors on another
-- store (the source).
--
--   local relay = store:relay("to-nats", { url = "nats://127.0.0.1:4222", create_stream = true })
--   relay:run()                                   -- publish from the checkpoint
--
--   local src = er.jetstream_source({ url = ..., durable = "billing" , mirror = true })
--   local p = other:projection("totals", { source = src, handlers = { ... } })
--   p:run()                                       -- apply what JetStream holds
--
-- Exactly once, end to end:
-- * The relay chains its messages: each one carries the stream sequence of
--   the one before (Nats-Expected-Last-Sequence), so JetStream refuses a
--   message whose predecessor was lost, and what the stream holds is always
--   a gap-free prefix of the log in position order.  Before publishing, and
--   after any failure, the relay reads the stream's last message and moves
--   its checkpoint up to it: nothing is published twice, whatever the
--   duplicate window (Nats-Msg-Id is there for anyone else's retries).
-- * The checkpoint advances only after JetStream acknowledged every message
--   of the batch (the next batch is published meanwhile).
-- * A source applies a batch, records the JetStream sequence and the source
--   position in the same atomic write as the read model (and the mirrored
--   events), and acknowledges afterwards; a redelivered message is at or
--   below the recorded sequence and is skipped.
local core = require "eventrocks.core"
local checkpoints = require "eventrocks.checkpoints"
local options = require "eventrocks.options"
local system = require "system"
local pretty = require "eventrocks.pretty"

local M = {}

local type, pairs, ipairs, error, tostring, setmetatable = type, pairs, ipairs, error, tostring, setmetatable
local mtype, tointeger = math.type, math.tointeger
local fmt = string.format
local encode, decode = core.encode, core.decode

M.DEFAULT_STREAM = "EVENTS"
M.DEFAULT_PREFIX = "events"

local function nats() return require "eventrocks.nats" end

local function new_error(code, message)
  return setmetatable({ code = code, message = message }, core.error_metatable)
end


-- The connection of a relay or a source, opened (again) when it has none
-- or it closed; a closed one of its own is freed first.
local function ensure_conn(obj)
  local c = obj.conn
  if c and c:status() ~= "closed" then return c end
  if c and obj.own_conn ~= false then c:close() end
  local err
  c, err = nats().connect(obj.conn_opts)
  if not c then return nil, err end
  obj.conn, obj.own_conn = c, true
  return c
end

-- Close the connection unless it was lent (opts.connection).
local function release_conn(obj)
  if obj.conn and obj.own_conn ~= false then obj.conn:close() end
  obj.conn = nil
end

-- ---------------------------------------------------------------------------
-- Connection options, passed through to libnats

local CONN_KEYS = {
  url = true, name = true, user = true, password = true, token = true, credentials = true,
  tls = true, timeout = true, reconnect = true, max_reconnect = true, reconnect_wait = true,
  ping_interval = true,
}

local TLS_KEYS = { ca = true, cert = true, key = true, hostname = true }

local function with_conn_keys(t)
  for k in pairs(CONN_KEYS) do t[k] = true end
  return t
end

-- The options each call takes; a typo must never drop a guarantee
-- silently (eventrocks.options checks them, as for every Lua call).
M.OPTION_KEYS = {
  relay = with_conn_keys({
    stream = true, prefix = true, subject = true, json = true, create_stream = true, duplicate_window = true,
    storage = true, batch = true, max_pending = true, ack_timeout = true, retry_for = true, category = true,
    types = true, connection = true,
  }),
  run = { follow = true, interval = true, stop = true, retry_for = true, on_retry = true, progress = true },
  jetstream_source = with_conn_keys({
    stream = true, prefix = true, filter = true, durable = true, mirror = true, wait = true, ack_wait = true,
    connection = true,
  }),
  jetstream_connect = with_conn_keys({}),
  -- what a projection spec holds for JetStream (the rest is projection.lua's)
  projection = { source = true },
}

-- Raise `bad argument #argn to 'fname' (unknown option 'k')` for a key of
-- `opts` that `fname` does not take (tls's keys included), from the
-- caller of the function that calls this.
local function check_options(opts, fname, argn)
  local known = M.OPTION_KEYS[fname]
  options.check(opts, known, argn, fname, 1)
  local tls = known.tls and rawget(opts, "tls")
  if type(tls) == "table" then options.check(tls, TLS_KEYS, argn, fname, 1, "tls.") end
end

local function conn_opts(opts)
  local o = {}
  for k in pairs(CONN_KEYS) do o[k] = opts[k] end
  return o
end

--- er.jetstream_connect(opts): a NATS connection (see README, "Scaling out").
function M.connect(opts)
  if opts ~= nil and type(opts) ~= "table" then
    error("bad argument #1 to 'jetstream_connect' (options table expected)", 2)
  end
  opts = opts or {}
  check_options(opts, "jetstream_connect", 1)
  return nats().connect(conn_opts(opts))
end

-- A name as a NATS subject token, percent-encoded (see escape in
-- eventrocks_nats.c): '%', blanks, '.', '*', '>', control bytes and bytes
-- that are not UTF-8 are written %XX; the empty name is "%00".  Reversible:
-- M.unescape gives the name back.
local function token(s) return nats().escape(s, "token") end
M.token = token

--- The bytes of an escaped Eventrocks-* header value or subject token:
-- the text, or nil, message when it is not a valid escape.
function M.unescape(text) return nats().unescape(text) end

local category_of = core.category -- the core's rule

local function check_string(v, what, fname)
  if type(v) ~= "string" or v == "" then
    error(fmt("bad argument to '%s' (%s must be a non-empty string)", fname, what), 3)
  end
  return v
end

local function check_int(v, def, min, what, fname)
  if v == nil then return def end
  if mtype(v) ~= "integer" or v < min then
    error(fmt("bad argument to '%s' (%s must be an integer >= %d)", fname, what, min), 3)
  end
  return v
end

local function check_name(v, what, fname)
  check_string(v, what, fname)
  if v:find("[%s%.%*>%c]") then
    error(fmt("bad argument to '%s' (%s '%s' may not hold blanks, dots, '*' or '>')", fname, what, v), 3)
  end
  return v
end

-- ---------------------------------------------------------------------------
-- The relay

local Relay = {}
Relay.__index = Relay
Relay.__name = "eventrocks.relay"

local JS_WRONG_LAST_SEQUENCE = 10071

--- store:relay(name, opts)
function M.relay(store, name, opts)
  if type(name) ~= "string" or name == "" or name:find("\0", 1, true) then
    error("bad argument #1 to 'relay' (name must be a non-empty string without NUL)", 2)
  end
  if opts ~= nil and type(opts) ~= "table" then error("bad argument #2 to 'relay' (options table expected)", 2) end
  opts = opts or {}
  check_options(opts, "relay", 2)
  local r = setmetatable({
    store = store, name = name,
    conn_opts = conn_opts(opts),
    stream = check_name(opts.stream or M.DEFAULT_STREAM, "stream", "relay"),
    prefix = check_string(opts.prefix or M.DEFAULT_PREFIX, "prefix", "relay"),
    json = opts.json and true or false,
    create_stream = opts.create_stream and true or false,
    duplicate_window = check_int(opts.duplicate_window, 120000, 1, "duplicate_window", "relay"),
    storage = opts.storage,
    batch = check_int(opts.batch, 1000, 1, "batch", "relay"),
    max_pending = check_int(opts.max_pending, 512, 1, "max_pending", "relay"),
    ack_timeout = check_int(opts.ack_timeout, 10000, 1, "ack_timeout", "relay"),
    retry_for = check_int(opts.retry_for, 60000, 0, "retry_for", "relay"),
    category = opts.category, types = opts.types,
    published = 0, duplicates = 0,
  }, Relay)
  if opts.prefix and (opts.prefix:find("[%s%*>%c]") or opts.prefix:find("^%.") or opts.prefix:find("%.$")) then
    error("bad argument to 'relay' (prefix must be subject tokens without wildcards or blanks)", 2)
  end
  if opts.subject ~= nil and type(opts.subject) ~= "function" then
    error("bad argument to 'relay' (subject must be a function(event) returning a subject)", 2)
  end
  r.subject_fn = opts.subject
  if opts.category ~= nil and type(opts.category) ~= "string" then
    error("bad argument to 'relay' (category must be a string)", 2)
  end
  if opts.types ~= nil and (type(opts.types) ~= "table" or #opts.types == 0) then
    error("bad argument to 'relay' (types must be a non-empty array of type names)", 2)
  end
  if opts.connection ~= nil then r.conn, r.own_conn = opts.connection, false end
  -- Beside a writer (a read-only handle), the relay cannot write its
  -- checkpoint: the chain makes JetStream's last message one (see _sync).
  r.read_only = store:_is_read_only()
  r.mem_cp = 0
  r.cat_cache, r.cat_count, r.subj_cache = {}, 0, {}
  r.hdr_cache, r.hdr_count = {}, 0
  r.headers = {} -- one message's headers, refilled for each (see _batch)
  r.sent = 0 -- messages published since the publisher's last complete
  if r.types then
    r.wanted = {}
    for i, ty in ipairs(r.types) do
      if type(ty) ~= "string" then error(fmt("bad argument to 'relay' (types[%d] must be a string)", i), 2) end
      r.wanted[ty] = true
    end
  end
  return r
end

function Relay:__tostring()
  return fmt("relay %s -> %s (position %s)", self.name, self.stream, self:_checkpoint() or "damaged")
end

function Relay:_checkpoint()
  if self.read_only then return self.mem_cp end
  local cp, err = checkpoints.get(self.store, "relay", self.name)
  if cp == nil and err == nil then return 0 end
  if mtype(cp) == "integer" and cp >= 0 then return cp end
  return nil, new_error("corruption", fmt("relay '%s': its checkpoint is damaged", self.name))
end

--- The checkpoint: the last global position JetStream has acknowledged.
function Relay:position()
  local cp, err = self:_checkpoint()
  if not cp then error(err, 2) end
  return cp
end

function Relay:_put_checkpoint(value)
  if self.read_only then
    self.mem_cp = value
    return true
  end
  return checkpoints.write(self.store, "relay", self.name, value)
end

--- Forget the checkpoint: the next run publishes the log from the start
-- (what JetStream holds already is skipped, see _sync).
function Relay:reset()
  if self.read_only then
    self.mem_cp = 0
    return true
  end
  return checkpoints.write(self.store, "relay", self.name, nil)
end

function Relay:subject(ev)
  if self.subject_fn then
    local s = self.subject_fn(ev)
    if type(s) ~= "string" or s:sub(1, #self.prefix + 1) ~= self.prefix .. "." then
      error(fmt("relay '%s': subject(event) must return a subject starting with '%s.', got %s",
        self.name, self.prefix, tostring(s)), 0)
    end
    return s
  end
  return self.prefix .. "." .. token(category_of(ev.stream)) .. "." .. token(ev.type)
end

-- Connect, find or create the JetStream stream, make the publisher.
function Relay:_connect()
  if self.conn and self.conn:status() ~= "closed" and self.pub then return true end
  if self.pub then self.pub:close() end
  self.pub = nil
  local conn, err = ensure_conn(self)
  if not conn then return nil, err end
  local info
  info, err = conn:stream_info(self.stream)
  if not info then
    if err.code ~= "not_found" then return nil, err end
    if not self.create_stream then
      return nil, new_error("not_found", fmt("relay '%s': JetStream stream '%s' does not exist on %s "
        .. "(create it, or pass create_stream = true / --create-stream)", self.name, self.stream, conn:urls()))
    end
    info, err = conn:add_stream({ name = self.stream, subjects = { self.prefix .. ".>" },
      duplicate_window = self.duplicate_window, storage = self.storage })
    if not info then return nil, err end
  end
  self.max_payload = conn:max_payload()
  local pub
  pub, err = conn:publisher({ max_pending = self.max_pending })
  if not pub then return nil, err end
  self.pub = pub
  return true
end

-- Read the stream's last sequence and its last message.  The chain starts
-- at that sequence; when the message is further than the checkpoint (a
-- crash between the acknowledgement and the checkpoint's commit, or a
-- read-only relay starting), the checkpoint moves up to it.  The chain
-- guarantees that JetStream holds every event up to it, so nothing is
-- published twice, whatever the duplicate window.
function Relay:_sync()
  local cp, err = self:_checkpoint()
  if not cp then return nil, err end
  local info
  info, err = self.conn:stream_info(self.stream)
  if not info then return nil, err end
  self.seq = info.last_seq
  if info.messages == 0 then return cp end
  local m
  m, err = self.conn:get_msg(self.stream, info.last_seq)
  if not m then return nil, err end
  local id = m.headers["Nats-Msg-Id"]
  local pos = tointeger(tonumber(m.headers["Eventrocks-Position"]))
  local ev = pos and self.store:event(pos)
  if not ev or ev.id ~= id then
    return nil, new_error("invalid", fmt("relay '%s': the last message of JetStream stream '%s' (sequence %d, "
      .. "id %s) is not an event of this store: a relay needs a JetStream stream of its own",
      self.name, self.stream, m.seq, tostring(id)))
  end
  if pos > cp then
    local ok
    ok, err = self:_put_checkpoint(pos)
    if not ok then return nil, err end
    cp = pos
  end
  return cp
end

-- A stream id or type escaped for its Eventrocks-* header, cached (names
-- repeat).
function Relay:_header_value(name)
  local v = self.hdr_cache[name]
  if v then return v end
  if self.hdr_count >= 100000 then self.hdr_cache, self.hdr_count = {}, 0 end
  v = nats().escape(name, "header")
  self.hdr_cache[name], self.hdr_count = v, self.hdr_count + 1
  return v
end

-- The default subject of an event, cached by stream and type.
function Relay:_default_subject(stream, ty)
  local cats = self.cat_cache
  local cat = cats[stream]
  if not cat then
    if self.cat_count >= 100000 then
      cats, self.cat_count = {}, 0
      self.cat_cache = cats
    end
    cat = token(category_of(stream))
    cats[stream], self.cat_count = cat, self.cat_count + 1
  end
  local by_type = self.subj_cache[cat]
  if not by_type then
    by_type = {}
    self.subj_cache[cat] = by_type
  end
  local subject = by_type[ty]
  if not subject then
    subject = self.prefix .. "." .. cat .. "." .. token(ty)
    by_type[ty] = subject
  end
  return subject
end

--- The body of a relayed event: M.event_body(id, stream, version,
-- position, type, time, data, metadata), the values a read with raw = true
-- gives, is the MessagePack map of those fields, always in this order
-- (M.EVENT_FIELDS), data and metadata written as the store holds them.
M.EVENT_FIELDS = { "id", "stream", "version", "position", "type", "time", "data", "metadata" }
local event_body = core.map_encoder(M.EVENT_FIELDS, "event")
M.event_body = event_body

-- Publish one batch from the checkpoint and commit the new checkpoint once
-- JetStream has acknowledged it.  Returns events published, new position,
-- whether the batch was full; or nil, err.
--
-- The log is read raw (data and metadata as stored, nothing decoded: the
-- body is the event's MessagePack map with those bytes in it) and in
-- order: a read-only view can briefly lack an event that a later one has
-- (the writer flushing), so a batch stops at a gap, unless the positions
-- skipped were removed (holes left by deletes).  Filters apply here.
function Relay:_batch(cp)
  local store, pub = self.store, self.pub
  if self.read_only then
    local ok, err = store:refresh()
    if not ok then return nil, err end
  end
  local last = store:last_position()
  if last <= cp then return 0, cp, false end
  local seq, n, pos, seen = self.seq, 0, cp, 0
  local jsonl = self.json and require "eventrocks.jsonl"
  local category, wanted, subject_fn = self.category, self.wanted, self.subject_fn
  local event_mt = pretty.event_metatable
  local headers, hdr_cache = self.headers, self.hdr_cache
  for id, stream, version, position, ty, time, data, metadata, person, forgotten in
      store:all({ from = cp + 1, count = self.batch, raw = true }) do
    -- a hole (deleted, truncated or expired events) is stepped over; a
    -- gap that no removal explains is waited for
    if position ~= pos + 1 and not store:_removed(pos + 1, position - 1) then break end
    seen = seen + 1
    if (category == nil or category_of(stream) == category) and (wanted == nil or wanted[ty]) then
      local body, subject = event_body(id, stream, version, position, ty, time, data, metadata), nil
      if subject_fn or jsonl then
        local ev = setmetatable(decode(body), event_mt)
        ev.subject, ev.forgotten = person, forgotten or nil
        if jsonl then body = jsonl.encode_event(ev) end
        subject = subject_fn and self:subject(ev) or self:_default_subject(stream, ty)
      else
        subject = self:_default_subject(stream, ty)
      end
      headers["Nats-Msg-Id"] = id
      -- the chain: JetStream stores this message only right after the
      -- previous one
      headers["Nats-Expected-Last-Sequence"] = seq
      headers["Eventrocks-Stream"] = hdr_cache[stream] or self:_header_value(stream)
      headers["Eventrocks-Version"] = version
      headers["Eventrocks-Position"] = position
      headers["Eventrocks-Type"] = hdr_cache[ty] or self:_header_value(ty)
      headers["Eventrocks-Time"] = time
      -- personal data: the body is decrypted (consumers have no key); the
      -- subject lets them purge its copies once it is forgotten
      headers["Eventrocks-Subject"] = person and (hdr_cache[person] or self:_header_value(person))
      headers["Eventrocks-Forgotten"] = forgotten and "true" or nil
      local ok, err = pub:publish(subject, body, headers)
      if not ok then
        self:_settle(false) -- what the previous batch got through stays done
        self:_abandon()
        if err.code == "too_large" then
          err = new_error("too_large", fmt("relay '%s': the event at position %d (%s@%d, %d bytes encoded) "
            .. "is larger than the server's max_payload (%d bytes)", self.name, position, stream,
            version, #body, self.max_payload))
        end
        return nil, err
      end
      seq, n = seq + 1, n + 1
    end
    pos = position
  end
  self.seq = seq
  self.sent = self.sent + n
  -- The previous batch's acknowledgements have had this batch's time to
  -- arrive: its checkpoint is committed now, and this batch's flow while the
  -- next one is read and published.  A short batch is drained at once.
  local ok, err = self:_settle(false)
  if not ok then return nil, err end
  self.pending = { sent = self.sent, pos = pos, n = n }
  local full = seen == self.batch
  if not full then
    ok, err = self:_settle(true)
    if not ok then return nil, err end
  end
  return n, pos, full
end

-- Drop what is in flight (after a failure; the next batch starts from the
-- checkpoint and JetStream's last message).
function Relay:_abandon()
  self.pub:complete(1)
  self.sent, self.pending = 0, nil
end

-- Commit the checkpoint of the pending batch once JetStream has
-- acknowledged everything up to it; with `drain`, everything in flight.
function Relay:_settle(drain)
  local p = self.pending
  if not p then return true end
  local pub = self.pub
  if drain then
    local acked, dups = pub:complete(self.ack_timeout)
    if not acked then
      self.sent, self.pending = 0, nil
      return nil, dups
    end
    self.duplicates = self.duplicates + dups
    self.sent = 0
  else
    local ok, err = pub:wait(p.sent, self.ack_timeout)
    if not ok then
      self:_abandon()
      return nil, err
    end
  end
  self.pending = nil
  local ok, err = self:_put_checkpoint(p.pos)
  if not ok then return nil, err end
  self.published = self.published + p.n
  return true
end

-- Failures worth another try: the connection, the server, a broken chain
-- (a message lost with the connection).
local function transient(err)
  return err.code == "io" or err.js_code == JS_WRONG_LAST_SEQUENCE
end

--- Publish from the checkpoint to the end of the log.  Returns the number
-- of events published and the new position, or nil, err.
-- opts: follow = true keeps going until stop() returns true, waiting for
-- the next commit between batches (woken by it; stop() is asked again at
-- least every `interval` ms, default 100); retry_for (ms, default the relay's) bounds how long
-- transient failures (connection lost, server restarting) are retried;
-- on_retry = function(err, attempt) is told of each.
function Relay:run(opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("bad argument #1 to 'run' (opts must be a table)", 2) end
  check_options(opts, "run", 1)
  local follow, interval, stop = opts.follow and true or false, opts.interval or 100, opts.stop
  local retry_for = check_int(opts.retry_for, self.retry_for, 0, "retry_for", "run")
  local on_retry = opts.on_retry
  local total, failing_since, attempt, cp = 0, nil, 0, nil
  local function failed(err)
    if not transient(err) then return false end
    local now = system.monotime()
    failing_since = failing_since or now
    if now - failing_since > retry_for / 1000 then return false end
    -- outages are the connection's business (max_reconnect, reconnect_wait):
    -- a relay that never connected, or whose connection gave up, fails
    if not self.conn or self.conn:status() == "closed" then return false end
    attempt = attempt + 1
    if on_retry then on_retry(err, attempt) end
    system.sleep(math.min(0.05 * attempt, 1))
    cp = nil -- resynchronise with JetStream
    return true
  end
  -- Stopping: everything in flight must be acknowledged (and its
  -- checkpoint committed) first.  Returns true when run may return.
  local function drained()
    local ok, err = self:_settle(true)
    if ok then return true end
    if not failed(err) then return nil, err end
    return false
  end
  while true do
    local ok, err = true, nil
    if not cp then
      -- nothing in flight is trusted across a resynchronisation (a run
      -- that raised, e.g. in a subject function, may have left some)
      if self.pub then self:_abandon() end
      ok, err = self:_connect()
      if ok then cp, err = self:_sync() end
      ok = cp ~= nil
    end
    if not ok then
      if not failed(err) then return nil, err end
    else
      local seen = self.store:last_position() -- the batch reads at least this far
      local n, pos, full = self:_batch(cp)
      if not n then
        if not failed(pos) then return nil, pos end
      else
        failing_since, attempt = nil, 0
        local moved = pos ~= cp
        total, cp = total + n, pos
        if opts.progress and moved then opts.progress(pos, self.store:last_position()) end
        if (not full and (not follow or (stop and stop()))) or (full and follow and stop and stop()) then
          local done, derr = drained()
          if done then return total, pos end
          if done == nil then return nil, derr end
        elseif not full then
          -- until a commit passes what the batch saw (at once when one
          -- already has), or `interval` ms
          local _, werr = self.store:_wait(seen, interval)
          if werr then system.sleep(interval / 1000) end -- a read-only handle that cannot catch up: the next batch says why
        end
      end
    end
  end
end

function Relay:close()
  if self.pub then self.pub:close() end
  self.pub = nil
  release_conn(self)
end
Relay.__close = Relay.close
Relay.__gc = Relay.close

-- ---------------------------------------------------------------------------
-- The source: a durable pull consumer feeding a projection (and a mirror)

local Source = {}
Source.__index = Source
Source.__name = "eventrocks.jetstream_source"

--- er.jetstream_source(opts)
function M.source(opts)
  if type(opts) ~= "table" then error("bad argument #1 to 'jetstream_source' (options table expected)", 2) end
  check_options(opts, "jetstream_source", 1)
  local s = setmetatable({
    conn_opts = conn_opts(opts),
    stream = check_name(opts.stream or M.DEFAULT_STREAM, "stream", "jetstream_source"),
    prefix = check_string(opts.prefix or M.DEFAULT_PREFIX, "prefix", "jetstream_source"),
    durable = opts.durable ~= nil and check_name(opts.durable, "durable", "jetstream_source") or nil,
    mirror = opts.mirror and true or false,
    wait = check_int(opts.wait, 5000, 1, "wait", "jetstream_source"),
    ack_wait = check_int(opts.ack_wait, 30000, 1, "ack_wait", "jetstream_source"),
    _is_source = true,
  }, Source)
  s.filter = opts.filter or (s.prefix .. ".>")
  if type(s.filter) ~= "string" then error("bad argument to 'jetstream_source' (filter must be a subject)", 2) end
  if opts.connection ~= nil then s.conn, s.own_conn = opts.connection, false end
  return s
end

function Source:__tostring()
  return fmt("jetstream source %s (%s)%s", self.stream, self.filter, self.mirror and " mirrored" or "")
end

-- What a projection fed from JetStream records (checkpoint kind
-- "jetstream"): the JetStream sequence of the last message it took, the
-- source position of the last event it applied, and the consumer's name.
-- Positions belong to another store: apart from the local checkpoints.
function Source:load(proj)
  local st, err = checkpoints.get(proj.store, "jetstream", proj.name)
  if st == nil and err == nil then return { seq = 0, position = 0 } end
  if type(st) == "table" and mtype(st.seq) == "integer" and mtype(st.position) == "integer" then return st end
  return nil, new_error("corruption", fmt("projection '%s': its JetStream checkpoint is damaged", proj.name))
end

function Source:position(st) return st.position end

-- Back to the start of the JetStream stream, keeping the consumer's name.
function Source:reset(proj, txn)
  local st = self:load(proj)
  if st and st.durable then
    return checkpoints.put(txn, "jetstream", proj.name, { seq = 0, position = 0, durable = st.durable })
  end
  return checkpoints.delete(txn, "jetstream", proj.name)
end

--- checkpoint_problem(kind, name, value, last) -> what is wrong with a
-- checkpoint of the relay or of a projection fed from JetStream (kinds
-- "relay", "jetstream"), or nil (`eventrocks check`).
function M.checkpoint_problem(kind, name, value, last)
  if kind == "relay" then
    if mtype(value) ~= "integer" or value < 0 then return fmt("the checkpoint of relay %s is damaged", name) end
    if value > last then return fmt("relay %s is at position %d, ahead of the log (%d)", name, value, last) end
  elseif type(value) ~= "table" or mtype(value.seq) ~= "integer" or mtype(value.position) ~= "integer"
    or value.seq < 0 or value.position < 0 then
    -- fed from JetStream: the sequence there and a position in another store
    return fmt("the JetStream checkpoint of projection %s is damaged", name)
  end
end

-- The durable consumer's name: opts.durable, else one made for this
-- projection of this store (its name and a random suffix, kept with its
-- checkpoint), so that two stores running a projection of the same name
-- never share a consumer (each would get half of the messages).
local function durable_of(src, proj, st)
  if src.durable then return src.durable end
  if type(st.durable) == "string" then return st.durable end
  local name = proj.name:gsub("[%s%.%*>%c]", "_"):sub(1, 200) .. "_" .. core.uuid():sub(-12)
  st.durable = name
  local ok, err = checkpoints.write(proj.store, "jetstream", proj.name, st)
  if not ok then return nil, err end
  return name
end

-- Connect and bind to the durable consumer, aligned with the recorded
-- sequence: a consumer left with unacknowledged deliveries (a crash before
-- the commit) or elsewhere is recreated to start right after it, so that
-- what comes next is what follows the last applied message, in order.
function Source:_open(proj, batch, st)
  local open = self.open
  -- the subscription is where the last batch left it; a checkpoint that
  -- moved otherwise (a reset) needs the consumer aligned again
  if open and open.proj == proj and open.seq == st.seq and self.conn:status() ~= "closed" then
    return open.sub
  end
  self:_close_sub()
  local conn, err = ensure_conn(self)
  if not conn then return nil, err end
  local info
  info, err = conn:stream_info(self.stream)
  if not info then
    if err.code == "not_found" then
      err = new_error("not_found", fmt("projection '%s': JetStream stream '%s' does not exist on %s",
        proj.name, self.stream, conn:urls()))
    end
    return nil, err
  end
  local durable, derr = durable_of(self, proj, st)
  if not durable then return nil, derr end
  local ci
  ci, err = conn:consumer_info(self.stream, durable)
  if not ci and err.code ~= "not_found" then return nil, err end
  local aligned = ci and ci.ack_pending == 0 and ci.delivered_seq == st.seq and ci.ack_floor_seq == st.seq
    and ci.filter == self.filter
  if not aligned then
    if ci then
      local ok, derr = conn:delete_consumer(self.stream, durable)
      if not ok and derr.code ~= "not_found" then return nil, derr end
    end
    ci, err = conn:add_consumer(self.stream, { durable = durable, filter = self.filter,
      start_seq = st.seq + 1, ack_wait = self.ack_wait, max_ack_pending = math.max(batch * 2, 1000) })
    if not ci then return nil, err end
  end
  local sub
  sub, err = conn:pull_subscribe(self.stream, durable, self.filter)
  if not sub then return nil, err end
  self.open = { proj = proj, sub = sub, durable = durable, seq = st.seq }
  self.pending = nil
  return sub
end

function Source:_close_sub()
  if self.open then self.open.sub:close() end
  self.open = nil
end

function Source:close()
  self:_close_sub()
  release_conn(self)
end
Source.__close = Source.close
Source.__gc = Source.close

-- "JetStream message 42 of stream 'EVENTS'": what errors about a consumed
-- message name.
local function msg_label(stream, seq)
  return fmt("JetStream message %d of stream '%s'", seq, stream)
end

local UUID = "^%x%x%x%x%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$"

-- A name the store accepts: 1 to `max` bytes without NUL (the core's limits).
local function good_name(max)
  return function(v) return type(v) == "string" and #v >= 1 and #v <= max and not v:find("\0", 1, true) end
end

local EVENT_CHECKS = {
  { "id", function(v) return type(v) == "string" and v:find(UUID) ~= nil end, "a UUID" },
  { "stream", good_name(core.MAX_STREAM_LEN), fmt("1 to %d bytes without NUL", core.MAX_STREAM_LEN) },
  { "type", good_name(core.MAX_TYPE_LEN), fmt("1 to %d bytes without NUL", core.MAX_TYPE_LEN) },
  { "version", function(v) return mtype(v) == "integer" and v >= 1 end, "an integer >= 1" },
  { "position", function(v) return mtype(v) == "integer" and v >= 1 end, "an integer >= 1" },
  { "time", function(v) return mtype(v) == "integer" and v >= 1 end, "an integer >= 1 (microseconds)" },
}

-- The event message `seq` of JetStream stream `jstream` carries, or nil,
-- err (corruption, naming the message).  Every field the store or a
-- handler relies on is checked here, so that a malformed message never
-- reaches an append.
local function event_of(body, seq, jstream)
  local ev, derr
  if body:byte(1) == 0x7B then -- "{": JSON (a MessagePack map starts with 0x8_, 0xde or 0xdf)
    local ok, v = pcall(require("eventrocks.jsonl").decode_event, body, seq)
    if ok then ev = v else derr = v end
  else
    ev, derr = decode(body)
  end
  if type(ev) ~= "table" then
    return nil, new_error("corruption", fmt("%s does not hold an event (%s)", msg_label(jstream, seq),
      tostring(derr)))
  end
  for _, c in ipairs(EVENT_CHECKS) do
    local k = c[1]
    if not c[2](ev[k]) then
      return nil, new_error("corruption", fmt("%s: its event's '%s' is not %s", msg_label(jstream, seq), k, c[3]))
    end
  end
  if ev.metadata == nil then ev.metadata = {} end
  if type(ev.metadata) ~= "table" then
    return nil, new_error("corruption", fmt("%s: its event's metadata is not a table", msg_label(jstream, seq)))
  end
  return setmetatable(ev, pretty.event_metatable)
end

-- A failed mirror append or commit, its message naming the JetStream
-- message and the event (the error's other fields kept).
local function mirror_failed(proj, label, ev, err)
  local e = {}
  for k, v in pairs(err) do e[k] = v end
  local why = err.message
  if err.code == "wrong_expected_version" and mtype(err.actual) == "integer" and err.actual < ev.version - 1 then
    local from, to = err.actual + 1, ev.version - 1
    why = from == to and fmt("%s: version %d of %s is missing (a gap)", why, from, ev.stream)
      or fmt("%s: versions %d to %d of %s are missing (a gap)", why, from, to, ev.stream)
  end
  e.message = fmt("projection '%s': %s: mirroring %s@%d (source position %d) failed: %s", proj.name, label,
    ev.stream, ev.version, ev.position, why)
  return setmetatable(e, core.error_metatable)
end

-- A batch of messages for `proj` (see the source interface in
-- projection.lua): fetched, then, as the projection iterates it, checked,
-- mirrored into the batch's write and handed over; acknowledged after the
-- commit.
local Batch = {}
Batch.__index = Batch

function Source:fetch(proj, st, max)
  local sub, err = self:_open(proj, max, st)
  if not sub then return nil, err end
  -- Fetch only when the consumer has messages for us: a fetch with
  -- nothing to deliver waits its whole timeout.  The count comes with the
  -- last message of each batch, else from the server.
  if not self.pending or self.pending == 0 then
    local ci, cerr = self.conn:consumer_info(self.stream, self.open.durable)
    if not ci then
      self:_close_sub()
      return nil, cerr
    end
    self.pending = ci.pending
    if ci.pending == 0 then return { count = 0 } end
  end
  local b
  b, err = sub:fetch(max, self.wait)
  if not b then
    self:_close_sub()
    return nil, err
  end
  local count = b:count()
  if count == 0 then
    b:free()
    self.pending = nil
    return { count = 0 }
  end
  return setmetatable({ src = self, proj = proj, st = st, msgs = b, count = count, full = count == max,
    seq0 = st.seq }, Batch)
end

-- The transaction the handlers write to: when mirroring, a failed commit
-- names the append that failed (err.index): mirrored[index] = { sequence,
-- event } for the mirror's own, and the view's appends (reactor emits) are
-- counted through a proxy.
function Batch:begin(txn)
  local src, proj, st, msgs = self.src, self.proj, self.st, self.msgs
  local view_txn, appends = txn, 0
  local mirrored = src.mirror and {}
  self.mirrored = mirrored
  if mirrored then
    view_txn = setmetatable({
      append = function(_, ...)
        appends = appends + 1
        return txn:append(...)
      end,
    }, { __index = function(proxy, k)
      local f = txn[k]
      local g = function(_, ...) return f(txn, ...) end
      rawset(proxy, k, g)
      return g
    end })
  end
  local jstream, i, count = src.stream, 0, self.count
  local function fail(e)
    self.err = e
    return nil
  end
  return view_txn, function()
    while i < count do
      i = i + 1
      local body, _, seq, _, pending = msgs:msg(i)
      src.pending = pending
      if not seq then return fail(new_error("io", "a JetStream message without its metadata")) end
      if seq > st.seq then
        st.seq = seq
        local ev, eerr = event_of(body, seq, jstream)
        if not ev then
          eerr.message = fmt("projection '%s': %s", proj.name, eerr.message)
          return fail(eerr)
        end
        if ev.position > st.position then
          if mirrored then
            -- event_of checked what append checks; anything it still
            -- refuses (a value it cannot store) is the message's fault too
            local pok, ok, aerr = pcall(txn.append, txn, ev.stream,
              { id = ev.id, type = ev.type, data = ev.data, metadata = ev.metadata },
              { expected = ev.version - 1, time = ev.time, restore = true })
            if not pok then
              return fail(new_error("corruption", fmt("projection '%s': %s: its event cannot be mirrored (%s)",
                proj.name, msg_label(jstream, seq), tostring(ok))))
            end
            if not ok then return fail(mirror_failed(proj, msg_label(jstream, seq), ev, aerr)) end
            appends = appends + 1
            mirrored[appends] = { seq, ev }
          end
          st.position = ev.position
          return ev
        end
      end
    end
  end
end

function Source:save(proj, st, b, txn)
  if st.seq ~= b.seq0 then return checkpoints.put(txn, "jetstream", proj.name, st) end
  return true
end

-- After the commit (err nil): acknowledge; AckAll covers the whole batch,
-- and a lost acknowledgement only means a redelivery, which is skipped.
-- On a failure: drop the batch and realign, so that the unacknowledged
-- messages come again.
function Batch:finish(err)
  local src, msgs = self.src, self.msgs
  if err == nil then
    src.open.seq = self.st.seq
    local acked = msgs:ack(self.count)
    msgs:free()
    if not acked then src:_close_sub() end
    return nil
  end
  msgs:free()
  src:_close_sub()
  local m = type(err) == "table" and self.mirrored and self.mirrored[err.index]
  if m then err = mirror_failed(self.proj, msg_label(src.stream, m[1]), m[2], err) end
  return err
end

return M
