--- eventrocks.projection: catch-up projections, inline projections and
-- reactors, with their read-model writes, their emitted events and their
-- checkpoint committed in one atomic write.
--
--   local prices = store:projection("prices", { category = "product", handlers = { ... } })
--   prices:run()           -- catch up from the checkpoint
--   prices:get(key)        -- read-model value
local core = require "eventrocks.core"
local options = require "eventrocks.options"

local M = {}

local type, pairs, ipairs, error, pcall, tostring = type, pairs, ipairs, error, pcall, tostring
local mtype = math.type
local encode = core.encode
local fmt = string.format

local DEFAULT_BATCH = 500
local DEFAULT_INTERVAL = 100 -- ms between polls in follow mode

local registry = setmetatable({}, { __mode = "k" }) -- store -> { by_name = {}, inline = {} }

local DELETED = setmetatable({}, { __name = "deleted" })

local SPEC_KEYS = options.known { "handlers", "category", "types", "inline", "source" }
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
function View:get(key)
  check_key(key, "get")
  local v = self._buf[key]
  if v ~= nil then
    if v == DELETED then return nil end
    return copy(v)
  end
  return core.get(self._store, "views", self._prefix .. key)
end

--- Write `value` (any storable value; nil deletes) under `key`.  The value
-- is encoded now, so that a value the store cannot hold raises here, in the
-- handler; each key is written once per batch, with its last value.
function View:put(key, value)
  check_key(key, "put")
  check_length(self, key, "put")
  if value == nil then return self:delete(key) end
  self._pending[key] = encode(value) -- raises on a value it cannot store
  self._buf[key] = copy(value) -- storable values have no cycles
end

function View:delete(key)
  check_key(key, "delete")
  check_length(self, key, "delete")
  self._pending[key] = false
  self._buf[key] = DELETED
end

-- Write the batch's read-model changes into its transaction.
local function flush_view(view)
  local txn, prefix = view._txn, view._prefix
  for key, bytes in pairs(view._pending) do
    local ok, err
    if bytes then
      ok, err = txn:put_encoded("views", prefix .. key, bytes)
    else
      ok, err = txn:delete("views", prefix .. key)
    end
    if not ok then return nil, err end
  end
  view._pending = {}
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
  local ok, err = self._txn:append(stream, {
    type = event.type, data = event.data, metadata = meta, id = event.id,
  }, opts)
  if not ok then error(err, 2) end
end

local function new_view(proj, txn, inline)
  return setmetatable({
    _store = proj.store, _prefix = proj.prefix, _txn = txn, _buf = {}, _pending = {},
    _inline = inline,
  }, View)
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

-- The checkpoint, or nil, err (code "corruption") when its bytes are
-- damaged: reading it as 0 would apply every event a second time.
function Proj:_checkpoint()
  if self.source then
    local st, err = require("eventrocks.jetstream").state(self)
    if not st then return nil, err end
    return st.position
  end
  local cp, err = core.get(self.store, "checkpoints", self.name)
  if cp == nil and err == nil then return 0 end
  if mtype(cp) == "integer" and cp >= 0 then return cp end
  return nil, setmetatable({ code = "corruption", message = fmt("projection '%s': its checkpoint is damaged (%s)",
    self.name, err and err.message or "not a position") }, core.error_metatable)
end

--- A read-model value, or nil.
function Proj:get(key)
  check_key(key, "get")
  return core.get(self.store, "views", self.prefix .. key)
end

--- Iterate the read model: `for key, value in proj:each([prefix]) do`.
function Proj:each(prefix)
  if prefix ~= nil and type(prefix) ~= "string" then
    error("bad argument #1 to 'each' (prefix must be a string)", 2)
  end
  local nextkv, state, _, closer = core.scan(self.store, "views", self.prefix .. (prefix or ""))
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

-- One batch from the checkpoint: returns events processed, the new
-- checkpoint and whether the batch was full; or nil, err when the commit
-- failed.  A handler error raises, and nothing of the batch is kept.
local function run_batch(proj, batch)
  if proj.source then
    return proj.source:_batch(proj, batch, new_view, flush_view, handler_failed)
  end
  local store = proj.store
  local cp, cerr = proj:_checkpoint()
  if not cp then return nil, cerr end
  local last = store:last_position()
  if last <= cp then return 0, cp, false end
  local txn, terr = core.txn(store)
  if not txn then return nil, terr end
  local view = new_view(proj, txn, false)
  local handlers = proj.handlers
  local n, pos = 0, cp
  for ev in store:all({ from = cp + 1, count = batch, category = proj.category, types = proj.types }) do
    local h = handlers[ev.type]
    if h then
      view._event = ev
      local ok, err = pcall(h, view, ev)
      if not ok then
        txn:close()
        error(handler_failed(proj, ev, err), 0)
      end
    end
    n, pos = n + 1, ev.position
  end
  local full = n == batch
  -- a short batch read everything up to the iterator's view, which holds at
  -- least the events up to `last`
  if not full and last > pos then pos = last end
  local ok, ferr = flush_view(view)
  if not ok then
    txn:close()
    return nil, ferr
  end
  txn:put("checkpoints", proj.name, pos)
  local res, err = txn:commit()
  txn:close()
  if not res then return nil, err end
  return n, pos, full
end

--- Catch up from the checkpoint, one atomic write per batch.  Returns the
-- number of events processed and the new position, or nil, err.
-- opts: batch (events per write, default 500); follow = true keeps polling
-- every `interval` ms (default 100) until stop() returns true; progress =
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
      core.sleep(interval)
    elseif follow and stop and stop() then
      return total, pos
    end
  end
end

--- Drop the read model and the checkpoint; the next run rebuilds it (an
-- inline projection is rebuilt at once).
function Proj:reset()
  local txn, terr = core.txn(self.store)
  if not txn then return nil, terr end
  txn:delete_prefix("views", self.prefix)
  txn:delete("checkpoints", self.name)
  if self.source then require("eventrocks.jetstream").reset_state(self, txn) end
  local res, err = txn:commit()
  txn:close()
  if not res then return nil, err end
  if self.inline then return self:run() end
  return true
end

-- ---------------------------------------------------------------------------
-- Inline projections: applied inside every commit, in its WriteBatch

local function category_of(stream)
  return stream:match("^[^-]*")
end

local function inline_hook(reg)
  return function(txn, events)
    for _, proj in ipairs(reg.inline) do
      local view = new_view(proj, txn, true)
      local handlers, category, wanted = proj.handlers, proj.category, proj.wanted
      local last
      for _, ev in ipairs(events) do
        local h = handlers[ev.type]
        if h and (wanted == nil or wanted[ev.type]) and (category == nil or category_of(ev.stream) == category) then
          local ok, err = pcall(h, view, ev)
          if not ok then error(handler_failed(proj, ev, err), 0) end
        end
        last = ev.position
      end
      local ok, err = flush_view(view)
      if not ok then error(err, 0) end
      txn:put("checkpoints", proj.name, last)
    end
  end
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
    if not require("eventrocks.jetstream").is_source(source) then
      error(fmt("projection '%s': source must be made by er.jetstream_source", name), 3)
    end
    if spec.inline then error(fmt("projection '%s': an inline projection cannot have a source", name), 3) end
  end
  return { handlers = handlers, category = spec.category, types = types, inline = spec.inline and true or false,
    source = source }
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
  proj.types, proj.wanted, proj.source = #types > 0 and types or nil, wanted, checked.source
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
    if proj.source ~= checked.source then
      error(fmt("projection '%s' is already defined with another source: its checkpoint means "
        .. "nothing to another source (use another name)", name), 2)
    end
    local was_inline = proj.inline
    configure(proj, checked)
    if was_inline and not proj.inline then
      remove_inline(reg, proj)
      if #reg.inline == 0 then core.set_hook(store, nil) end
    end
    if not was_inline and proj.inline then
      local n, err = proj:run() -- catch up before following the commits
      if not n then error(fmt("projection '%s': catching up failed: %s", name, tostring(err)), 2) end
      reg.inline[#reg.inline + 1] = proj
      core.set_hook(store, inline_hook(reg))
    end
    return proj
  end
  proj = setmetatable({ store = store, name = name, prefix = name .. "\0" }, Proj)
  configure(proj, checked)
  if proj.inline then
    local n, err = proj:run() -- catch up with the events already stored
    if not n then error(fmt("projection '%s': catching up failed: %s", name, tostring(err)), 2) end
    reg.inline[#reg.inline + 1] = proj
    core.set_hook(store, inline_hook(reg))
  end
  reg.by_name[name] = proj
  return proj
end

return M
