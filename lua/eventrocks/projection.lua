--- eventrocks.projection: catch-up projections, inline projections and
-- reactors, with their read-model writes, their emitted events and their
-- checkpoint committed in one atomic write.
--
--   local prices = store:projection("prices", { category = "product", handlers = { ... } })
--   prices:run()           -- catch up from the checkpoint
--   prices:get(key)        -- read-model value
local core = require "eventrocks.core"
local system = require "system"
local options = require "eventrocks.options"
local checkpoints = require "eventrocks.checkpoints"
local subscription = require "eventrocks.subscription"
local pretty = require "eventrocks.pretty"

local M = {}

local type, pairs, ipairs, error, pcall, tostring = type, pairs, ipairs, error, pcall, tostring
local mtype = math.type
local encode = core.encode
local fmt = string.format

local DEFAULT_BATCH = 500
local DEFAULT_INTERVAL = 100 -- ms: follow mode asks stop() at least this often
-- Skipped failures: each one is counted, and the newest KEEP_SKIPPED are
-- kept (message, position, event), so that a projection skipping for
-- years neither grows without end nor counts its records for a status.
M.KEEP_SKIPPED = 1000
local COUNT_ITEM = "" -- the item key of the count (before every position)

local registry = setmetatable({}, { __mode = "k" }) -- store -> { by_name = {}, inline = {} }

local DELETED = setmetatable({}, { __name = "deleted" })

local failures_of -- (below)
local count_skipped -- (below)
local wait_for_news -- (below)

local SPEC_KEYS = options.known { "handlers", "category", "types", "inline", "source", "on_error" }
local RUN_OPTS = options.known { "batch", "follow", "interval", "stop", "progress" }

-- The batch buffer keeps its own copies, so that what a handler sees is
-- what was written, whatever the caller does to its tables afterwards.
local function copy(v)
  if type(v) ~= "table" then return v end
  local c = {}
  for k, x in pairs(v) do c[k] = copy(x) end
  return c
end

-- ---------------------------------------------------------------------------
-- The view handed to handlers: read-your-own-writes over one batch

local View = {}
View.__index = View
View.__name = "eventrocks.view"

local function check_key(key, fname)
  if type(key) ~= "string" or key == "" then
    error(fmt("bad argument #1 to '%s' (key must be a non-empty string)", fname), 3)
  end
end

-- Keys are stored after the projection's name: refuse, in the handler,
-- one that would make the stored key longer than the store allows.
local function check_length(view, key, fname)
  if #view._prefix + #key > core.MAX_KEY_LEN then
    error(fmt("bad argument #1 to '%s' (key is %d bytes: with the projection's name the stored key "
      .. "would be %d bytes, over the limit of %d)", fname, #key, #view._prefix + #key, core.MAX_KEY_LEN), 3)
  end
end

--- The read-model value of `key`, including this batch's own writes.
-- (The batch's buffer is looked at first: only checked keys are in it.)
function View:get(key)
  local v = self._buf[key]
  if v ~= nil then
    if v == DELETED then return nil end
    if type(v) == "table" then return copy(v) end
    return v
  end
  if type(key) ~= "string" or key == "" then check_key(key, "get") end
  return self._get(self._store, "views", self._prefix .. key)
end

--- Write `value` (any storable value; nil deletes) under `key`.  A value
-- the store cannot hold raises here, in the handler: a table is encoded
-- now (its copy is what later gets of this batch see), a number, string or
-- boolean (always storable) when the batch is written, so that a key put
-- once per event is encoded once per batch.  Each key is written once per
-- batch, with its last value.  While a handler that may fail without
-- stopping the projection runs (on_error), the first write of each key
-- keeps what the key held, so that its writes can be taken back.
local function remember(view, key)
  local n, jl = view._jn, view._jl
  jl[n + 1], jl[n + 2], jl[n + 3] = key, view._pending[key], view._buf[key]
  view._jn = n + 3
end

local SCALAR = { number = true, string = true, boolean = true }

function View:put(key, value)
  if type(key) ~= "string" or key == "" then check_key(key, "put") end
  if #key > self._room then check_length(self, key, "put") end
  if value == nil then return self:delete(key) end
  if SCALAR[type(value)] then
    if self._guarded then remember(self, key) end
    self._pending[key] = true -- encoded by flush_view
    self._buf[key] = value
    return
  end
  local bytes = encode(value) -- raises on a value it cannot store
  if self._guarded then remember(self, key) end
  self._pending[key] = bytes
  self._buf[key] = copy(value) -- storable values have no cycles
end

function View:delete(key)
  if type(key) ~= "string" or key == "" then check_key(key, "delete") end
  if #key > self._room then check_length(self, key, "delete") end
  if self._guarded then remember(self, key) end
  self._pending[key] = false
  self._buf[key] = DELETED
end

-- The number of events projection `name` skipped, and how many skipped
-- records it keeps: a store from before the count has only its records.
-- Returns count, kept; or nil, err.
local function skipped_count(store, name)
  local n, err = checkpoints.get_item(store, "skipped", name, COUNT_ITEM)
  if err then return nil, err end
  if mtype(n) == "integer" then return n, math.min(n, M.KEEP_SKIPPED) end
  local kept = 0
  for item in checkpoints.each_item(store, "skipped", name) do
    if item ~= COUNT_ITEM then kept = kept + 1 end
  end
  return kept, kept
end

-- A batch recorded more skipped failures (`items`, their item keys, oldest
-- first, already queued in `txn`): queue the new count, and the removal of
-- the oldest records beyond KEEP_SKIPPED (the batch's own too, when it
-- skipped more than that).
function count_skipped(store, txn, name, items)
  local n, kept = skipped_count(store, name)
  if not n then return nil, kept end
  local ok, err = checkpoints.put_item(txn, "skipped", name, COUNT_ITEM, n + #items)
  if not ok then return nil, err end
  local drop = kept + #items - M.KEEP_SKIPPED
  if drop <= 0 then return true end
  local old = {}
  for item in checkpoints.each_item(store, "skipped", name) do
    if #old >= drop then break end
    if item ~= COUNT_ITEM then old[#old + 1] = item end
  end
  for i = 1, drop - #old do old[#old + 1] = items[i] end
  for _, item in ipairs(old) do
    ok, err = checkpoints.put_item(txn, "skipped", name, item, nil)
    if not ok then return nil, err end
  end
  return true
end

-- Write the batch's read-model changes, and the failures it recorded
-- (dead letters, skipped errors), into its transaction.
local function flush_view(view)
  local txn, prefix, buf = view._txn, view._prefix, view._buf
  for key, bytes in pairs(view._pending) do
    local ok, err
    if bytes == true then
      ok, err = txn:put_encoded("views", prefix .. key, encode(buf[key]))
    elseif bytes then
      ok, err = txn:put_encoded("views", prefix .. key, bytes)
    else
      ok, err = txn:delete("views", prefix .. key)
    end
    if not ok then return nil, err end
  end
  local pending = view._pending -- (cleared in place: the view's get and put hold it)
  for key in next, pending do pending[key] = nil end
  local skipped = {}
  for _, f in ipairs(view._failures) do
    local item = checkpoints.position_item(f[2].position)
    local ok, err = checkpoints.put_item(txn, f[1], view._name, item, f[2])
    if not ok then return nil, err end
    if f[1] == "skipped" then skipped[#skipped + 1] = item end
  end
  view._failures = {}
  if #skipped > 0 then return count_skipped(view._store, txn, view._name, skipped) end
  return true
end

--- Queue an append to `stream`, committed with this batch (reactors).  The
-- event's metadata gets causation_id (the source event's id) and
-- correlation_id (the source's correlation_id, else its id).
function View:emit(stream, event, opts)
  if self._inline then
    error("emit is not available in inline projections (their commit is already under way)", 2)
  end
  if type(event) ~= "table" or type(event.type) ~= "string" then
    error("bad argument #2 to 'emit' (an event table with a type expected)", 2)
  end
  local src = self._event
  local meta = {}
  if event.metadata ~= nil then
    if type(event.metadata) ~= "table" then
      error("bad argument #2 to 'emit' (metadata must be a table)", 2)
    end
    for k, v in pairs(event.metadata) do meta[k] = v end
  end
  meta.causation_id = src.id
  meta.correlation_id = src.metadata.correlation_id or src.id
  local ev = { type = event.type, data = event.data, metadata = meta, id = event.id }
  if self._guarded then -- on_error: appended once the handler has succeeded
    local emits = self._emits
    if not emits then emits = {} self._emits = emits end
    emits[#emits + 1] = { stream, ev, opts }
    return
  end
  local ok, err = self._txn:append(stream, ev, opts)
  if not ok then error(err, 2) end
end

-- Around one handler call that may fail without stopping the projection:
-- begin journals its writes and holds its emits back; commit appends the
-- emits (ok, or nil, err; on nil the journal is kept for undo); undo takes
-- its writes back.  The journal is one array of the view, reused: each
-- write appends (key, what _pending and _buf held), undo restores them
-- newest first, and forgetting it is setting its length _jn to 0; the
-- emits are a table made only by a handler that emits.  An event that
-- fails nothing costs no allocation (catch-up with "park" runs about as
-- fast as with "stop").
function View:_begin_event()
  self._guarded = true
end

local function forget_journal(view)
  view._jn = 0
end

function View:_commit_event()
  self._guarded = false
  local emits = self._emits
  if emits then
    self._emits = nil
    for _, e in ipairs(emits) do
      local ok, called, err = pcall(self._txn.append, self._txn, e[1], e[2], e[3])
      if not ok then return nil, called end
      if not called then return nil, err end
    end
  end
  forget_journal(self)
  return true
end

function View:_undo_event()
  local jl, pending, buf = self._jl, self._pending, self._buf
  for i = self._jn - 2, 1, -3 do
    local key = jl[i]
    pending[key], buf[key] = jl[i + 1], jl[i + 2]
  end
  forget_journal(self)
  self._guarded, self._emits = false, nil
end

local function new_view(proj, txn, inline)
  local buf, pending, journal, room = {}, {}, {}, core.MAX_KEY_LEN - #proj.prefix
  local view = setmetatable({
    _store = proj.store, _get = proj.store._get, -- (looked up once: handlers call get per event)
    _prefix = proj.prefix, _txn = txn, _buf = buf, _pending = pending,
    _inline = inline, _name = proj.name, _failures = {}, _jl = journal, _jn = 0,
    _room = room, -- the longest key a handler may use
  }, View)
  -- get and put in the view itself (handlers call them per event), their
  -- common cases in C: a scalar read back from the batch's buffer, a
  -- scalar put (journaled while _guarded, as remember does); View.get and
  -- View.put do the rest
  view.get, view.put = core._write_back(buf, pending, DELETED, View.get, View.put, room, "_guarded",
    journal, "_jn")
  return view
end

-- ---------------------------------------------------------------------------
-- Projections

local Proj = {}
Proj.__index = Proj
Proj.__name = "eventrocks.projection"

function Proj:__tostring()
  return fmt("projection %s%s (position %s)", self.name, self.inline and " (inline)" or "",
    self:_checkpoint() or "damaged")
end

--- The checkpoint: the last global position this projection has processed.
function Proj:position()
  local cp, err = self:_checkpoint()
  if not cp then error(err, 2) end
  return cp
end

-- The checkpoint, or nil, err (code "corruption") when it is damaged.
function Proj:_checkpoint()
  local st, err = self.source:load(self)
  if not st then return nil, err end
  return self.source:position(st)
end

--- A read-model value, or nil.
function Proj:get(key)
  check_key(key, "get")
  return self.store:_get("views", self.prefix .. key)
end

--- Iterate the read model: `for key, value in proj:each([prefix]) do`.
function Proj:each(prefix)
  if prefix ~= nil and type(prefix) ~= "string" then
    error("bad argument #1 to 'each' (prefix must be a string)", 2)
  end
  local nextkv, state, _, closer = self.store:_scan("views", self.prefix .. (prefix or ""))
  local skip = #self.prefix + 1
  return function(st)
    local k, v = nextkv(st)
    if k == nil then return nil end
    return k:sub(skip), v
  end, state, nil, closer
end

local function handler_failed(proj, ev, err)
  return fmt("projection '%s': handler for '%s' failed at position %d (stream %s): %s",
    proj.name, ev.type, ev.position, ev.stream, tostring(err))
end

local category_of = core.category -- the core's rule

-- What a failure leaves behind: the event (a dead letter keeps all of it,
-- to be applied by retry), the error and when.
-- An event of a subject (personal data) keeps no data or metadata here:
-- they would be stored in clear; retry reads the event again (and finds it
-- forgotten when its subject was).
local function failure_record(ev, message, parked_behind)
  local personal = ev.subject ~= nil
  return {
    position = ev.position, stream = ev.stream, type = ev.type, version = ev.version, id = ev.id,
    time = ev.time, data = not personal and ev.data or nil, metadata = not personal and ev.metadata or nil,
    subject = ev.subject, error = message,
    at = math.floor(system.gettime() * 1000000), parked_behind = parked_behind,
  }
end

-- The data, metadata and forgotten flag of a dead letter's event: kept in
-- the letter, or read again for an event of a subject.
local function letter_payload(proj, letter)
  if letter.subject == nil then return letter.data, letter.metadata or {}, nil end
  local ev = proj.store:event(letter.position)
  if type(ev) == "table" and ev.id == letter.id then return ev.data, ev.metadata, ev.forgotten end
  return nil, {}, true
end

-- The action on_error chooses for a failed handler: "stop", "skip" or
-- "park" (a function deciding raises: stop).
local function decide(proj, ev, message)
  local policy = proj.on_error
  if type(policy) ~= "function" then return policy end
  local ok, action = pcall(policy, message, ev)
  if ok and (action == "stop" or action == "skip" or (action == "park" and not proj.inline)) then return action end
  return "stop"
end

-- After one handler call under on_error "skip" / "park" / a function
-- (view:_begin_event(), then pcall: ok, err): its emits are appended, or
-- its writes are taken back and the failure recorded when it failed and
-- the policy does not stop.  Returns true, or nil, message to stop.
local function settle(proj, view, ev, ok, err)
  if ok then ok, err = view:_commit_event() end
  if ok then return true end
  view:_undo_event()
  local message = handler_failed(proj, ev, err)
  local action = decide(proj, ev, message)
  if action == "skip" then
    view._failures[#view._failures + 1] = { "skipped", failure_record(ev, message) }
  elseif action == "park" then
    view._failures[#view._failures + 1] = { "deadletter", failure_record(ev, message) }
    view._parked[ev.stream] = ev.position
  else
    return nil, message
  end
  return true
end

-- A handler's error that is the store's: an event whose stored bytes do not
-- decode (lazy events decode on the handler's first access).  It stops
-- the projection whatever on_error says: it is no handler's failure.
local function damaged(err)
  if getmetatable(err) == core.error_metatable and err.code == "corruption" then return err end
end

-- The one dispatch loop of projections (catch-up batches of every source,
-- inline projections inside a commit, retries of dead letters): hand each
-- event the iterator yields to its handler, with the view.  `filter`: the
-- iterator yields events of every category and type (apply the
-- projection's own filter).  An event of a parked stream is parked behind
-- the first.  Returns the number of events and the last one's position, or
-- nil, message when a handler failed and on_error stops (the caller drops
-- the batch).
--
-- When on_error stops (the default), one pcall guards the whole loop
-- rather than one per event: `current` is the event whose handler runs, so
-- that an error raised there is the handler's, and one raised between
-- handlers (by the iterator) goes on as it is.
local function apply_stopping(proj, view, filter, iter, state, init, closer, each)
  local handlers, wanted, category = proj.handlers, proj.wanted, proj.category
  if each then
    local ok, n, last = pcall(closer._each, closer, handlers, view)
    if ok then return n, last ~= 0 and last or nil end
    if not closer:_in_handler() then error(n, 0) end
    return nil, damaged(n) or handler_failed(proj, view._event, n)
  end
  local n, last, current = 0, nil, nil
  local ok, err = pcall(function()
    for ev in iter, state, init, closer do
      local h = handlers[ev.type]
      if h and (not filter or (wanted[ev.type] and (category == nil or category_of(ev.stream) == category))) then
        view._event, current = ev, ev
        h(view, ev)
        current = nil
      end
      n, last = n + 1, ev.position
    end
  end)
  if ok then return n, last end
  if current == nil then error(err, 0) end
  return nil, damaged(err) or handler_failed(proj, current, err)
end

-- The parked dead letter of an event of a parked stream.
local function park_behind(proj, view, ev, parked)
  view._failures[#view._failures + 1] = { "deadletter", failure_record(ev,
    fmt("projection '%s': parked behind position %d of stream %s", proj.name, parked[ev.stream], ev.stream),
    parked[ev.stream]) }
end

-- The same loop when on_error does not stop, run by the iterator
-- (iter:_each with `parked`): it hands back each event to settle.
local function apply_guarded_each(proj, view, closer)
  local handlers = proj.handlers
  local parked = view._parked or {}
  view._parked = parked -- (settle parks into it)
  local n, last = 0, nil
  view._guarded = true
  while true do
    local got, at, ev, what, err = closer:_each(handlers, view, parked)
    n = n + got
    if at ~= 0 then last = at end
    if ev == nil then break end
    if what == "parked" then
      park_behind(proj, view, ev, parked)
    else
      if what == "failed" and damaged(err) then return nil, err end
      local ok
      ok, err = settle(proj, view, ev, what ~= "failed", err)
      if not ok then return nil, err end
      view._guarded = true
    end
  end
  view._guarded = false
  return n, last
end

local function apply(proj, view, filter, iter, state, init, closer, each)
  if proj.on_error == "stop" then return apply_stopping(proj, view, filter, iter, state, init, closer, each) end
  if each then return apply_guarded_each(proj, view, closer) end
  local handlers, wanted, category = proj.handlers, proj.wanted, proj.category
  local parked = view._parked
  -- (the view journals for the whole loop, view:_begin_event() once, and a
  -- stream is looked up in `parked` only when there is one)
  local any_parked = parked ~= nil and next(parked) ~= nil
  local n, last = 0, nil
  view._guarded = true
  for ev in iter, state, init, closer do
    local h = handlers[ev.type]
    if h and (not filter or (wanted[ev.type] and (category == nil or category_of(ev.stream) == category))) then
      view._event = ev
      if any_parked and parked[ev.stream] then
        park_behind(proj, view, ev, parked)
      else -- guarded_call, its common case inline
        local ok, err = pcall(h, view, ev)
        if ok and not view._emits then
          if view._jn ~= 0 then view._jn = 0 end
        else
          if not ok and damaged(err) then return nil, err end
          ok, err = settle(proj, view, ev, ok, err)
          if not ok then return nil, err end
          view._guarded = true
          any_parked = parked ~= nil and next(parked) ~= nil
        end
      end
    end
    n, last = n + 1, ev.position
  end
  view._guarded = false
  return n, last
end

-- The streams with a dead letter, each with its first one's position.
local function parked_streams(proj)
  local parked = {}
  for _, letter in checkpoints.each_item(proj.store, "deadletter", proj.name) do
    if type(letter) == "table" and type(letter.stream) == "string" and not parked[letter.stream] then
      parked[letter.stream] = letter.position
    end
  end
  return parked
end

-- ---------------------------------------------------------------------------
-- Sources.  A projection's events come from a source: the store's own log
-- (below) or another one (eventrocks.jetstream's, say).  A source is an
-- object with
--   src:load(proj) -> state, or nil, err       what the projection recorded
--   src:position(state) -> the last source position applied
--   src:fetch(proj, state, max) -> batch, or nil, err
--   src:save(proj, state, batch, txn) -> true, or nil, err
--                      record the new state in the batch's write
--   src:reset(proj, txn)   forget the state, in the reset's write
--   src._is_source = true
-- and a batch is
--   batch.count        what was fetched (0: nothing new; no write follows)
--   batch.full         whether the fetch was cut at max
--   batch.filtered     whether its events are the projection's only
--   batch:begin(txn) -> the transaction handlers' writes go to (txn, or a
--                       wrapper of it), and the iterator of the events
--                       (iter, state, init, closer); an error met while
--                       iterating ends it and is left in batch.err
--   batch:finish(err) -> after the commit (err nil), or on any failure (the
--                       batch is dropped): returns the error to report

local Log = { _is_source = true }
Log.__index = Log
Log.__name = "eventrocks.log_source"

-- The checkpoint, or nil, err (code "corruption") when its bytes are
-- damaged: reading it as 0 would apply every event a second time.
function Log:load(proj)
  local cp, err = checkpoints.get(proj.store, "projection", proj.name)
  if cp == nil and err == nil then return { position = 0 } end
  if mtype(cp) == "integer" and cp >= 0 then return { position = cp } end
  return nil, setmetatable({ code = "corruption", message = fmt("projection '%s': its checkpoint is damaged (%s)",
    proj.name, err and err.message or "not a position") }, core.error_metatable)
end

function Log:position(st) return st.position end

local LogBatch = {}
LogBatch.__index = LogBatch

function Log:fetch(proj, st, max)
  local last = proj.store:last_position()
  if last <= st.position then return setmetatable({ count = 0 }, LogBatch) end
  -- the store's upcasters change types after the core's filter has chosen
  -- by the stored ones: then the types are filtered here, after them
  local upcasting = proj.store:_upcasting()
  return setmetatable({ count = last - st.position, last = last, max = max, proj = proj, from = st.position,
    filtered = not upcasting, upcasting = upcasting }, LogBatch)
end

-- Lazy or eager events.  A lazy event costs no decoding of its id, data
-- and metadata until a handler reads one of them: a handler that reads
-- only ev.type and ev.stream gains about half the cost of an event.  But
-- keeping the bytes for later costs about a fifth of decoding them, and
-- decoding on access a little more than decoding at once: where handlers
-- read the data of most events, eager events are faster (a handler that
-- reads ev.data ran 15% slower on lazy ones).  So each batch of lazy events
-- measures the share its handlers decoded, and the next batch is eager
-- when that share is over LAZY_MAX_SHARE; an eager projection tries lazy
-- events again every REPROBE batches, as its handlers may change what they
-- read with the events they meet.
local LAZY_MAX_SHARE, REPROBE = 0.6, 32

function LogBatch:begin(txn)
  local proj = self.proj
  local lazy = (proj._eager_batches or REPROBE) >= REPROBE
  if lazy then self.lazy_made, self.lazy_read = proj.store:_lazy_counts() end
  self.each = not self.upcasting
  return txn, proj.store:all({ from = self.from + 1, count = self.max, category = proj.category,
    types = not self.upcasting and proj.types or nil, _lazy = lazy })
end

function LogBatch:finish(err)
  local proj = self.proj
  if err ~= nil then return err end -- (a dropped batch decides nothing)
  if self.lazy_made then
    local made, read = proj.store:_lazy_counts()
    made, read = made - self.lazy_made, read - self.lazy_read
    -- (a batch of few events does not decide)
    if made >= 50 then proj._eager_batches = read > made * LAZY_MAX_SHARE and 0 or nil end
  elseif proj._eager_batches then
    proj._eager_batches = proj._eager_batches + 1
  end
end

function Log:save(proj, st, b, txn)
  -- a short batch read everything up to the iterator's view, which holds
  -- at least the events up to `last`
  local pos = b.n == b.max and b.pos or math.max(b.pos or st.position, b.last)
  st.position = pos
  b.full = b.n == b.max
  return checkpoints.put(txn, "projection", proj.name, pos)
end

function Log:reset(proj, txn) return checkpoints.delete(txn, "projection", proj.name) end

local LOG = setmetatable({}, Log)

-- One batch from the source: returns events processed, the new position
-- and whether the batch was full; or nil, err when the fetch or the commit
-- failed.  A handler error raises, and nothing of the batch is kept.
local function run_batch(proj, max)
  local src = proj.source
  local st, err = src:load(proj)
  if not st then return nil, err end
  local b
  b, err = src:fetch(proj, st, max)
  if not b then return nil, err end
  if b.count == 0 then return 0, src:position(st), false end
  local txn
  txn, err = proj.store:_txn()
  if not txn then return nil, b:finish(err) end
  local view_txn, iter, state, init, closer = b:begin(txn)
  local view = new_view(proj, view_txn, false)
  if proj.on_error ~= "stop" then view._parked = parked_streams(proj) end
  local n, pos = apply(proj, view, not b.filtered, iter, state, init, closer, b.each)
  if not n then
    txn:close()
    error(b:finish(pos), 0)
  end
  if b.err then
    txn:close()
    return nil, b:finish(b.err)
  end
  b.n, b.pos = n, pos
  local ok
  ok, err = flush_view(view)
  if ok then ok, err = src:save(proj, st, b, txn) end
  if ok then ok, err = txn:commit() end
  txn:close()
  if not ok then return nil, b:finish(err) end
  b:finish(nil)
  return n, src:position(st), b.full
end

-- Follow mode, nothing new: wait until the log passes `pos` (woken by the
-- commit, eventrocks.subscription.wait; inside a coroutine it yields
-- instead of blocking), at most `interval` ms so that stop() is asked
-- again.  A source that cannot be waited on (JetStream) is polled every
-- `interval` ms.
function wait_for_news(proj, pos, interval)
  if proj.source == LOG then
    subscription.wait(proj.store, pos, interval / 1000, coroutine.isyieldable(), proj)
  else
    system.sleep(interval / 1000)
  end
end

--- Catch up from the checkpoint, one atomic write per batch.  Returns the
-- number of events processed and the new position, or nil, err.
-- opts: batch (events per write, default 500); follow = true keeps going
-- as new events are committed (woken by the commit; a JetStream source is
-- polled every `interval` ms) until stop() returns true, asked at least
-- every `interval` ms (default 100) while nothing happens; progress =
-- true draws a progress bar on stderr when it is a terminal, or a function
-- gets (position, last_position) after every batch.
function Proj:run(opts)
  local batch, follow, interval, stop = DEFAULT_BATCH, false, DEFAULT_INTERVAL, nil
  if opts ~= nil then
    options.check(opts, RUN_OPTS, 1, "run")
    if opts.batch ~= nil then
      batch = opts.batch
      if mtype(batch) ~= "integer" or batch < 1 then
        error("bad argument #1 to 'run' (batch must be an integer >= 1)", 2)
      end
    end
    follow = opts.follow and true or false
    if opts.interval ~= nil then
      interval = opts.interval
      if type(interval) ~= "number" or interval < 0 then
        error("bad argument #1 to 'run' (interval must be a number of milliseconds >= 0)", 2)
      end
    end
    stop = opts.stop
    if stop ~= nil and type(stop) ~= "function" then
      error("bad argument #1 to 'run' (stop must be a function)", 2)
    end
  end
  local bar
  if opts and opts.progress then
    local p = opts.progress
    if type(p) == "function" then bar = { step = p, done = p }
    else
      local first, last = self:_checkpoint() or 0, self.store:last_position()
      local b = require("eventrocks.progress").new("projection " .. self.name, last - first)
      bar = { step = function(pos) b.step(pos - first) end, done = function(pos) b.done(pos - first) end }
    end
  end
  local total = 0
  while true do
    local n, pos, full = run_batch(self, batch)
    if not n then return nil, pos end
    total = total + n
    if bar then
      if full or follow then bar.step(pos, self.store:last_position()) else bar.done(pos, self.store:last_position()) end
    end
    if not full then
      if not follow or (stop and stop()) then return total, pos end
      wait_for_news(self, pos, interval)
    elseif follow and stop and stop() then
      return total, pos
    end
  end
end

-- The failures projection `name` recorded: the number of dead letters, of
-- skipped events, and the message of the newest handler failure (not the
-- events merely parked behind one), or nil.
function failures_of(store, name)
  local counts, newest, last_error = { deadletter = 0, skipped = 0 }, -1, nil
  for kind in pairs(counts) do
    for item, rec in checkpoints.each_item(store, kind, name) do
      if item ~= COUNT_ITEM then counts[kind] = counts[kind] + 1 end
      if type(rec) == "table" and math.type(rec.at) == "integer" and rec.at > newest and not rec.parked_behind then
        newest, last_error = rec.at, rec.error
      end
    end
  end
  local skipped = skipped_count(store, name)
  return counts.deadletter, skipped or counts.skipped, last_error
end

--- Iterate the dead letters: `for position, message in proj:dead_letters() do`,
-- in position order.
function Proj:dead_letters()
  local nextkv, state, init, closer = checkpoints.each_item(self.store, "deadletter", self.name)
  return function(st)
    local _, letter = nextkv(st)
    if letter == nil then return nil end
    return letter.position, letter.error
  end, state, init, closer
end

-- The dead letters, oldest first (all of them, or the one at `position`).
local function letters_of(proj, position)
  local out = {}
  for _, letter in checkpoints.each_item(proj.store, "deadletter", proj.name) do
    if type(letter) ~= "table" or math.type(letter.position) ~= "integer" then
      error(setmetatable({ code = "corruption", message = fmt("projection '%s': a dead letter is damaged",
        proj.name) }, core.error_metatable), 0)
    end
    if position == nil or letter.position == position then out[#out + 1] = letter end
  end
  return out
end

--- Apply dead letters again, in position order: all of them, or the one at
-- `position` (which must be the first of its stream).  One that fails
-- again stays, with its new error, and holds back the rest of its stream.
-- Returns the number applied (dropped when no handler takes its type any
-- more), or nil, err when the commit failed.
function Proj:retry(position)
  if position ~= nil and math.type(position) ~= "integer" then
    error("bad argument #1 to 'retry' (position must be an integer)", 2)
  end
  local letters = letters_of(self, position)
  if position ~= nil then
    if #letters == 0 then error(fmt("projection '%s' has no dead letter at position %d", self.name, position), 2) end
    local first = parked_streams(self)[letters[1].stream]
    if first ~= position then
      error(fmt("projection '%s': position %d is parked behind position %d of stream %s: retry that first",
        self.name, position, first, letters[1].stream), 2)
    end
  end
  local txn, terr = self.store:_txn()
  if not txn then return nil, terr end
  local view = new_view(self, txn, self.inline)
  view._parked = {}
  local applied, handlers = 0, self.handlers
  for _, letter in ipairs(letters) do
    if not view._parked[letter.stream] then
      local data, metadata, forgotten = letter_payload(self, letter)
      local ev = setmetatable({ id = letter.id, stream = letter.stream, version = letter.version,
        position = letter.position, type = letter.type, time = letter.time, data = data,
        metadata = metadata, subject = letter.subject, forgotten = forgotten }, pretty.event_metatable)
      local h = handlers[ev.type]
      local ok, err = true, nil
      if h then
        view._event = ev
        view:_begin_event()
        ok, err = pcall(h, view, ev)
        if ok then ok, err = view:_commit_event() end
        if not ok then view:_undo_event() end
      end
      local item = checkpoints.position_item(letter.position)
      if ok then
        checkpoints.put_item(txn, "deadletter", self.name, item, nil)
        applied = applied + 1
      else
        letter.error, letter.at = handler_failed(self, ev, err), math.floor(system.gettime() * 1000000)
        checkpoints.put_item(txn, "deadletter", self.name, item, letter)
        view._parked[letter.stream] = letter.position
      end
    end
  end
  local ok, err = flush_view(view)
  if ok then ok, err = txn:commit() end
  txn:close()
  if not ok then return nil, err end
  return applied
end

--- { position, last_position, lag, dead_letters, skipped, last_error }:
-- lag is what the store's log holds beyond the position (nil for another
-- source); last_error the newest recorded failure's message, or nil.
function Proj:status()
  local position, err = self:_checkpoint()
  if not position then error(err, 2) end
  local st = { position = position, dead_letters = 0, skipped = 0 }
  if self.source == LOG then
    st.last_position = self.store:last_position()
    st.lag = math.max(0, st.last_position - position)
  end
  st.dead_letters, st.skipped, st.last_error = failures_of(self.store, self.name)
  return st
end

--- Drop the read model and the checkpoint; the next run rebuilds it (an
-- inline projection is rebuilt at once).
function Proj:reset()
  local txn, terr = self.store:_txn()
  if not txn then return nil, terr end
  txn:delete_prefix("views", self.prefix)
  checkpoints.delete_items(txn, "deadletter", self.name)
  checkpoints.delete_items(txn, "skipped", self.name)
  local res, err = self.source:reset(self, txn)
  if res then res, err = txn:commit() end
  txn:close()
  if not res then return nil, err end
  if self.inline then return self:run() end
  return true
end

-- ---------------------------------------------------------------------------
-- Inline projections: applied inside every commit, in its WriteBatch

-- The events of a commit, one by one.
local function each_of(events)
  local i = 0
  return function()
    i = i + 1
    return events[i]
  end
end

local function inline_hook(reg, store)
  return function(txn, events)
    if store:_upcasting() then -- as every read: the store's upcasters first
      for _, ev in ipairs(events) do store:_upcast(ev) end
    end
    for _, proj in ipairs(reg.inline) do
      local view = new_view(proj, txn, true)
      local n, last = apply(proj, view, true, each_of(events))
      if not n then error(last, 0) end
      local ok, err = flush_view(view)
      if ok then ok, err = checkpoints.put(txn, "projection", proj.name, last) end
      if not ok then error(err, 0) end
    end
  end
end

--- list(store) -> every projection the store has a checkpoint of, by name:
-- { name, source ("log" or "jetstream"), position, lag (log only),
-- dead_letters, skipped, last_error }.  For `eventrocks projections`.
function M.list(store)
  local out, last = {}, store:last_position()
  for kind, name, value in checkpoints.each(store) do
    if kind == "projection" or kind == "jetstream" then
      local p = { name = name, source = kind == "projection" and "log" or "jetstream", dead_letters = 0, skipped = 0 }
      if kind == "projection" then
        p.position = math.type(value) == "integer" and value or nil
        p.lag = p.position and math.max(0, last - p.position)
      else
        p.position = type(value) == "table" and math.type(value.position) == "integer" and value.position or nil
      end
      p.dead_letters, p.skipped, p.last_error = failures_of(store, name)
      out[#out + 1] = p
    end
  end
  table.sort(out, function(a, b) return a.name < b.name end)
  return out
end

--- dead_letters_of(store, name) -> the dead letters of projection `name`,
-- oldest first, as stored ({ position, stream, version, type, error, at,
-- ... }).  For `eventrocks dead-letters`.
function M.dead_letters_of(store, name)
  local out = {}
  for _, letter in checkpoints.each_item(store, "deadletter", name) do out[#out + 1] = letter end
  return out
end

--- checkpoint_problem(name, value, last) -> what is wrong with the stored
-- checkpoint of projection `name`, or nil (`eventrocks check`).
function M.checkpoint_problem(name, value, last)
  if mtype(value) ~= "integer" or value < 0 then return fmt("the checkpoint of projection %s is damaged", name) end
  if value > last then return fmt("projection %s is at position %d, ahead of the log (%d)", name, value, last) end
end

-- ---------------------------------------------------------------------------
-- Definitions

local function check_spec(name, spec)
  if type(name) ~= "string" or name == "" or name:find("\0", 1, true) then
    error("bad argument #1 to 'projection' (name must be a non-empty string without NUL)", 3)
  end
  if type(spec) ~= "table" then error("bad argument #2 to 'projection' (spec must be a table)", 3) end
  for k in pairs(spec) do
    if not SPEC_KEYS[k] then
      error(fmt("bad argument #2 to 'projection' (unknown option %s)",
        type(k) == "string" and "'" .. k .. "'" or tostring(k)), 3)
    end
  end
  if type(spec.handlers) ~= "table" then
    error(fmt("projection '%s': spec.handlers must be a table of event type -> function", name), 3)
  end
  local handlers = {}
  for k, f in pairs(spec.handlers) do
    if type(k) ~= "string" or type(f) ~= "function" then
      error(fmt("projection '%s': handlers[%s] must be a function, got %s", name, tostring(k), type(f)), 3)
    end
    handlers[k] = f
  end
  if spec.category ~= nil and type(spec.category) ~= "string" then
    error(fmt("projection '%s': category must be a string", name), 3)
  end
  local types
  if spec.types ~= nil then
    if type(spec.types) ~= "table" or #spec.types == 0 then
      error(fmt("projection '%s': types must be a non-empty array of type names", name), 3)
    end
    types = {}
    for i, t in ipairs(spec.types) do
      if type(t) ~= "string" then error(fmt("projection '%s': types[%d] must be a string", name, i), 3) end
      types[i] = t
    end
  end
  local source = spec.source
  if source ~= nil then
    if type(source) ~= "table" or source._is_source ~= true then
      error(fmt("projection '%s': source must be a projection source (er.jetstream_source makes one)", name), 3)
    end
    if spec.inline then error(fmt("projection '%s': an inline projection cannot have a source", name), 3) end
  end
  local on_error = spec.on_error
  if on_error == nil then on_error = "stop" end
  if on_error ~= "stop" and on_error ~= "skip" and on_error ~= "park" and type(on_error) ~= "function" then
    error(fmt("projection '%s': on_error must be \"stop\", \"skip\", \"park\" or a function(message, event) "
      .. "choosing one", name), 3)
  end
  if on_error == "park" and spec.inline then
    error(fmt("projection '%s': an inline projection cannot park events (its handler runs inside the append, "
      .. "which fails instead): use \"stop\" or \"skip\"", name), 3)
  end
  return { handlers = handlers, category = spec.category, types = types, inline = spec.inline and true or false,
    source = source, on_error = on_error }
end

-- Give `proj` the handlers, filters and kind of `checked` (a new
-- projection, or one defined again).
local function configure(proj, checked)
  -- Only the events some handler wants are read: the type filter defaults
  -- to the handlers' types.
  local types = checked.types
  if not types then
    types = {}
    for k in pairs(checked.handlers) do types[#types + 1] = k end
    table.sort(types)
  end
  local wanted = {}
  for _, t in ipairs(types) do wanted[t] = true end
  proj.spec, proj.handlers, proj.category, proj.inline = checked, checked.handlers, checked.category, checked.inline
  proj.on_error = checked.on_error
  proj.types, proj.wanted, proj.source = #types > 0 and types or nil, wanted, checked.source or LOG
  if #types == 0 then
    -- no handlers: nothing to read, but `all` refuses an empty type list
    proj.types = { "\0" }
  end
end

local function remove_inline(reg, proj)
  for i, p in ipairs(reg.inline) do
    if p == proj then table.remove(reg.inline, i) break end
  end
end

--- store:projection(name, spec).  Defining a name again in the same
-- process replaces its handlers and filters (the REPL workflow: fix a
-- handler, define it again, run); the checkpoint and read model are kept,
-- and the same object is returned (`reset` rebuilds).
function M.projection(store, name, spec)
  local checked = check_spec(name, spec)
  local reg = registry[store]
  if not reg then
    reg = { by_name = {}, inline = {} }
    registry[store] = reg
  end
  local proj = reg.by_name[name]
  if proj then
    if proj.source ~= (checked.source or LOG) then
      error(fmt("projection '%s' is already defined with another source: its checkpoint means "
        .. "nothing to another source (use another name)", name), 2)
    end
    local was_inline = proj.inline
    configure(proj, checked)
    if was_inline and not proj.inline then
      remove_inline(reg, proj)
      if #reg.inline == 0 then store:_set_hook(nil) end
    end
    if not was_inline and proj.inline then
      local n, err = proj:run() -- catch up before following the commits
      if not n then error(fmt("projection '%s': catching up failed: %s", name, tostring(err)), 2) end
      reg.inline[#reg.inline + 1] = proj
      store:_set_hook(inline_hook(reg, store))
    end
    return proj
  end
  proj = setmetatable({ store = store, name = name, prefix = name .. "\0" }, Proj)
  configure(proj, checked)
  if proj.inline then
    local n, err = proj:run() -- catch up with the events already stored
    if not n then error(fmt("projection '%s': catching up failed: %s", name, tostring(err)), 2) end
    reg.inline[#reg.inline + 1] = proj
    store:_set_hook(inline_hook(reg, store))
  end
  reg.by_name[name] = proj
  return proj
end

return M
