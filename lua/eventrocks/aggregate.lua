--- eventrocks.aggregate: aggregates, repositories, snapshots, time travel
-- and upcasting, in Lua over the store.
--
--   local Product = er.aggregate("product", { init = ..., apply = { ... } })
--   function Product:increase_price(delta) ... self:raise("PriceIncreased", ...) end
--   local repo = store:repository(Product)
--   local p = repo:load("42"); p:increase_price(5); assert(repo:save(p))
local core = require "eventrocks.core"
local pretty = require "eventrocks.pretty"
local options = require "eventrocks.options"

local M = {}

local type, pairs, error, pcall = type, pairs, error, pcall
local mtype = math.type
local pack, unpack = table.pack, table.unpack

local LOAD_OPTS = options.known { "version", "time" }
local UPDATE_OPTS = options.known { "retries" }
local REPOSITORY_OPTS = options.known {}
local HISTORY_OPTS = options.known { "from", "count" }

local applying -- the event whose apply handler runs while a load replays (see fold)

local specs = setmetatable({}, { __mode = "k" })   -- class -> checked spec
local private = setmetatable({}, { __mode = "k" }) -- instance -> { class, queue, base, depth, saved }

-- A deep copy that keeps shared references and cycles as they are.
local function deepcopy(v, memo)
  if type(v) ~= "table" then return v end
  memo = memo or {}
  if memo[v] then return memo[v] end
  local c = {}
  memo[v] = c
  for k, x in pairs(v) do c[deepcopy(k, memo)] = deepcopy(x, memo) end
  return setmetatable(c, getmetatable(v))
end

-- ---------------------------------------------------------------------------
-- Instances

local Base = {} -- methods every aggregate instance has

-- The state, version and queue length before a command, to put back when
-- it fails.
local function save_point(self, p)
  return { state = deepcopy(self.state), version = self.version, qlen = #p.queue }
end

local function restore(self, p, saved)
  self.state, self.version = saved.state, saved.version
  for i = #p.queue, saved.qlen + 1, -1 do p.queue[i] = nil end
end

--- Apply an event to `self.state` at once and queue it for `save`.
function Base:raise(etype, data, metadata)
  local p = private[self]
  if not p then error("raise: not an aggregate instance", 2) end
  local spec = specs[p.class]
  if type(etype) ~= "string" or etype == "" then
    error("bad argument #1 to 'raise' (event type must be a non-empty string)", 2)
  end
  if metadata ~= nil and type(metadata) ~= "table" then
    error("bad argument #3 to 'raise' (metadata must be a table or nil)", 2)
  end
  local handler = spec.apply[etype]
  if not handler then
    error(("%s: no apply handler for event type '%s'"):format(spec.name, etype), 2)
  end
  -- outside a command, a raise is its own unit
  local saved = p.depth == 0 and save_point(self, p) or nil
  local ev = {
    id = core.uuid(), stream = self.stream, version = self.version + 1,
    type = etype, data = data, metadata = metadata or {},
  }
  local ok, res = pcall(handler, self.state, data, ev)
  if not ok then
    if saved then restore(self, p, saved) end -- inside a command its wrapper restores
    error(res, 0)
  end
  if res ~= nil then self.state = res end
  self.version = ev.version
  p.queue[#p.queue + 1] = { id = ev.id, type = etype, data = data, metadata = ev.metadata }
end

--- The queued events, oldest first: { id, type, data, metadata } each.
function Base:pending()
  local p = private[self]
  if not p then error("pending: not an aggregate instance", 2) end
  local out = {}
  for i, ev in ipairs(p.queue) do out[i] = deepcopy(ev) end
  return out
end

-- Commands are plain methods; each runs as a unit: when it raises an error,
-- the state, version and queue go back to what they were before it, also
-- for a command called by another command that catches the error.
local function command(fn)
  return function(self, ...)
    local p = private[self]
    if not p then return fn(self, ...) end
    local saved = save_point(self, p)
    p.depth = p.depth + 1
    local r = pack(pcall(fn, self, ...))
    p.depth = p.depth - 1
    if not r[1] then
      restore(self, p, saved)
      error(r[2], 0)
    end
    return unpack(r, 2, r.n)
  end
end

local function new_instance(class, id, state, version)
  local spec = specs[class]
  local self = setmetatable({
    id = id, stream = spec.name .. "-" .. id, version = version, state = state,
  }, spec.instance_mt)
  private[self] = { class = class, queue = {}, base = version, depth = 0 }
  return self
end

-- ---------------------------------------------------------------------------
-- Definitions

local function check_spec(name, spec)
  if type(name) ~= "string" or name == "" then
    error("bad argument #1 to 'aggregate' (name must be a non-empty string)", 3)
  end
  if core.category(name) ~= name or name:find("\0", 1, true) then
    error("bad argument #1 to 'aggregate' (name must not contain '-' or NUL: it is the stream category)", 3)
  end
  if type(spec) ~= "table" then
    error("bad argument #2 to 'aggregate' (spec must be a table)", 3)
  end
  if type(spec.apply) ~= "table" then
    error(("aggregate '%s': spec.apply must be a table of event type -> function"):format(name), 3)
  end
  for k, f in pairs(spec.apply) do
    if type(k) ~= "string" or type(f) ~= "function" then
      error(("aggregate '%s': apply[%s] must be a function, got %s"):format(name, pretty.compact(k), type(f)), 3)
    end
  end
  if spec.init ~= nil and type(spec.init) ~= "function" then
    error(("aggregate '%s': spec.init must be a function"):format(name), 3)
  end
  local every = spec.snapshot_every
  if every ~= nil and (mtype(every) ~= "integer" or every < 1) then
    error(("aggregate '%s': snapshot_every must be an integer >= 1"):format(name), 3)
  end
  if spec.schema ~= nil and type(spec.schema) ~= "number" and type(spec.schema) ~= "string" then
    error(("aggregate '%s': schema must be a number or a string"):format(name), 3)
  end
  if spec.upcast ~= nil then
    if type(spec.upcast) ~= "table" then
      error(("aggregate '%s': spec.upcast must be a table of event type -> function"):format(name), 3)
    end
    for k, f in pairs(spec.upcast) do
      if type(k) ~= "string" or type(f) ~= "function" then
        error(("aggregate '%s': upcast[%s] must be a function"):format(name, pretty.compact(k)), 3)
      end
    end
  end
  if spec.subject ~= nil and type(spec.subject) ~= "function" then
    error(("aggregate '%s': spec.subject must be a function(id) -> the subject of its events"):format(name), 3)
  end
  local apply, upcast = {}, {}
  for k, f in pairs(spec.apply) do apply[k] = f end
  for k, f in pairs(spec.upcast or {}) do upcast[k] = f end
  return {
    name = name, apply = apply, upcast = next(upcast) and upcast or nil,
    init = spec.init or function() return {} end,
    snapshot_every = every, schema = spec.schema or 1, subject = spec.subject,
  }
end

--- Define an aggregate type.  Returns its class: define commands on it as
-- methods (`function Class:command(...)`).
function M.aggregate(name, spec)
  local checked = check_spec(name, spec)
  -- The class table stays empty so that every assignment, a redefinition
  -- included, goes through __newindex and gets wrapped.
  local methods = {}
  local class = setmetatable({}, {
    __index = function(_, k)
      local m = methods[k]
      if m == nil then m = Base[k] end
      return m
    end,
    __newindex = function(_, k, v)
      if type(v) == "function" then v = command(v) end
      methods[k] = v
    end,
    __tostring = function() return "aggregate " .. name end,
  })
  checked.instance_mt = {
    __index = class,
    __name = "eventrocks.aggregate",
    __tostring = function(self)
      local p = private[self]
      return ("%s %s (version %d, %d pending)"):format(name, tostring(self.id), self.version,
        p and #p.queue or 0)
    end,
  }
  specs[class] = checked
  return class
end

--- The name of an aggregate class or instance (nil for other values).
function M.name_of(x)
  local p = private[x]
  local spec = specs[p and p.class or x]
  return spec and spec.name
end

-- ---------------------------------------------------------------------------
-- Repositories

local Repo = {}
Repo.__index = Repo
Repo.__name = "eventrocks.repository"
function Repo:__tostring() return "repository of " .. self.spec.name end

local MAX_STREAM = core.MAX_STREAM_LEN -- bytes in a stream id

local function check_id(id, fname, spec)
  local t = type(id)
  if not ((t == "string" and id ~= "") or t == "number") then
    error(("bad argument #1 to '%s' (id must be a non-empty string or a number)"):format(fname), 3)
  end
  if mtype(id) == "float" then
    -- 101.0 names the same aggregate as 101 (they are equal in Lua)
    if id ~= id or id == math.huge or id == -math.huge then
      error(("bad argument #1 to '%s' (id must be a finite number)"):format(fname), 3)
    end
    id = math.tointeger(id) or id
  end
  id = tostring(id)
  -- the stream is "name-id": say so here rather than let the store refuse it
  if #spec.name + 1 + #id > MAX_STREAM then
    error(("bad argument #1 to '%s' (id of %d bytes: the stream '%s-' .. id would be longer than %d bytes)")
      :format(fname, #id, spec.name, MAX_STREAM), 3)
  end
  if id:find("\0", 1, true) then
    error(("bad argument #1 to '%s' (id contains a NUL byte)"):format(fname), 3)
  end
  return id
end

-- Apply one stored event to the instance being loaded.
local function replay(spec, self, ev)
  local upcast = spec.upcast
  if upcast then
    local steps = 0
    local up = upcast[ev.type]
    while up do
      steps = steps + 1
      if steps > 100 then
        error(("%s@%d: upcasting '%s' does not terminate"):format(ev.stream, ev.version, ev.type), 0)
      end
      local ntype, ndata = up(ev.data, ev)
      if type(ntype) ~= "string" then
        error(("%s@%d: upcast of '%s' must return a type and data"):format(ev.stream, ev.version, ev.type), 0)
      end
      if ntype == ev.type then ev.data = ndata break end
      ev.type, ev.data = ntype, ndata
      up = upcast[ntype]
    end
  end
  local handler = spec.apply[ev.type]
  if not handler then
    error(("%s: no apply handler for event type '%s' (version %d)"):format(
      ev.stream, ev.type, ev.version), 0)
  end
  applying = ev
  local res = handler(self.state, ev.data, ev)
  applying = nil
  if res ~= nil then self.state = res end
  self.version = ev.version
end

-- Replay the events of `iter` (a read of the aggregate's stream) onto
-- `agg`, calling `each(ev)` after each one when given.  An error raised by
-- an apply handler comes out naming the aggregate, the event's type, its
-- stream and version (one pcall for the whole load, not one per event).
local function fold(spec, agg, max_time, each, iter, state, ctl, closing)
  local ok, err = pcall(function()
    for ev in iter, state, ctl, closing do
      if max_time and ev.time > max_time then break end
      replay(spec, agg, ev)
      if each then each(ev) end
    end
  end)
  if not ok then
    local ev = applying
    applying = nil
    if ev then
      error(("aggregate '%s': apply handler for '%s' failed at %s@%d: %s"):format(
        spec.name, ev.type, ev.stream, ev.version, tostring(err)), 0)
    end
    error(err, 0)
  end
end

local function usable_snapshot(snap, spec, max_version)
  return type(snap) == "table" and snap.schema == spec.schema
    and mtype(snap.version) == "integer" and snap.version >= 1
    and (max_version == nil or snap.version <= max_version)
end

-- Personal data: the subject of the aggregate `id`'s events (spec.subject),
-- or nil.
local function subject_of(spec, id)
  if not spec.subject then return nil end
  local subject = spec.subject(id)
  if subject ~= nil and type(subject) ~= "string" then
    error(("aggregate '%s': subject(%s) must return a string or nil, got %s"):format(
      spec.name, pretty.compact(id), type(subject)), 3)
  end
  return subject
end

-- The state held by a snapshot: sealed with the key of the subject for an
-- aggregate with one (its state is personal data too); nil when it cannot
-- be read (the subject was forgotten, or the store has no key).
local function snapshot_state(store, snap, subject, stream)
  if snap.sealed == nil then
    if subject then return nil end -- made before the aggregate had a subject
    return snap.state, true
  end
  if not subject or type(snap.sealed) ~= "string" or not store:_has_key() then return nil end
  local bytes = store:_unseal(subject, stream, snap.sealed)
  if not bytes then return nil end
  return core.decode(bytes), true
end

--- Load the aggregate `id`: the newest usable snapshot plus the events after
-- it.  opts.version = n: the state as of version n (time travel);
-- opts.time = t: the state as of time t (microseconds; snapshots unused).
function Repo:load(id, opts)
  id = check_id(id, "load", self.spec)
  local spec = self.spec
  local max_version, max_time
  if opts ~= nil then
    options.check(opts, LOAD_OPTS, 2, "load")
    max_version, max_time = opts.version, opts.time
    if max_version ~= nil and (mtype(max_version) ~= "integer" or max_version < 0) then
      error("bad argument #2 to 'load' (version must be an integer >= 0)", 2)
    end
    if max_time ~= nil and mtype(max_time) ~= "integer" then
      error("bad argument #2 to 'load' (time must be integer microseconds)", 2)
    end
  end
  local stream = spec.name .. "-" .. id
  local agg = new_instance(self.class, id, spec.init(id), 0)
  if max_time == nil and max_version ~= 0 then
    local snap = self.store:_get("snapshots", stream)
    if usable_snapshot(snap, spec, max_version) then
      local state, ok = snapshot_state(self.store, snap, subject_of(spec, id), stream)
      if ok then agg.state, agg.version = state, snap.version end
    end
  end
  -- the stream's version before the read: when the read ends below it, the
  -- versions between were deleted or truncated away (a soft-deleted stream
  -- restarts after them), and a save must expect it
  local head = max_version == nil and max_time == nil and self.store:version(stream) or 0
  if max_version == nil or agg.version < max_version then
    local from, count = agg.version + 1, max_version and max_version - agg.version or nil
    if spec.upcast or self.store:_upcasting() then
      local it, err = self.store:read(stream, { from = from, count = count })
      if not it then error(err, 2) end -- stream_deleted: a hard-deleted stream
      fold(spec, agg, max_time, nil, it)
    else -- the loop in C: no event table for handlers that take only (state, data)
      local ok, a, b, c = self.store:_fold(stream, from, count or -1, max_time, spec.apply, agg.state)
      if ok == nil then error(a, 2) end
      if not ok then
        if a == nil then
          error(("%s: no apply handler for event type '%s' (version %d)"):format(stream, b, c), 0)
        end
        error(("aggregate '%s': apply handler for '%s' failed at %s@%d: %s"):format(
          spec.name, b, stream, c, tostring(a)), 0)
      end
      agg.state = a
      if b then agg.version = b end
    end
  end
  if agg.version < head then agg.version = head end
  private[agg].base = agg.version
  return agg
end

--- The aggregate's history: one row per event, { version, type, time,
-- data, metadata, state }, where state is a copy of the state right after
-- that event (upcasting applied, snapshots not used).
--
-- opts.from = v, opts.count = n: only the rows of versions v (default 1)
-- to v+n-1 (default: to the end); the state before them is loaded as
-- `load` does (the newest usable snapshot at or below v-1, then the
-- events after it), so a window of a long stream is cheap.  The second
-- result is a copy of that state before the first row.
function Repo:history(id, opts)
  id = check_id(id, "history", self.spec)
  local spec = self.spec
  local from, count = 1, nil
  if opts ~= nil then
    options.check(opts, HISTORY_OPTS, 2, "history")
    from, count = opts.from or 1, opts.count
    if mtype(from) ~= "integer" or from < 1 then
      error("bad argument #2 to 'history' (from must be an integer >= 1)", 2)
    end
    if count ~= nil and (mtype(count) ~= "integer" or count < 0) then
      error("bad argument #2 to 'history' (count must be an integer >= 0)", 2)
    end
  end
  local agg
  if from > 1 then agg = self:load(id, { version = from - 1 })
  else agg = new_instance(self.class, id, spec.init(id), 0) end
  local before = deepcopy(agg.state)
  local rows = {}
  if count ~= 0 then
    fold(spec, agg, nil, function(ev)
      rows[#rows + 1] = {
        version = ev.version, type = ev.type, time = ev.time, data = ev.data,
        metadata = ev.metadata, state = deepcopy(agg.state),
      }
    end, self.store:read(agg.stream, { from = from, count = count }))
  end
  return rows, before
end

--- Append the queued events with expected = the loaded version, plus a
-- snapshot in the same atomic write when a multiple of snapshot_every is
-- reached or crossed.  Returns the new version, or nil, err (the queue is
-- kept).
function Repo:save(agg)
  local p = private[agg]
  if not p or p.class ~= self.class then
    error("bad argument #1 to 'save' (not an aggregate of this repository)", 2)
  end
  local queue = p.queue
  if #queue == 0 then return agg.version end
  local spec = self.spec
  local txn, err = self.store:_txn()
  if not txn then return nil, err end
  local ok
  local subject = subject_of(spec, agg.id)
  ok, err = txn:append(agg.stream, queue, { expected = p.base, subject = subject })
  if not ok then txn:close() return nil, err end
  local new_version = p.base + #queue
  local every = spec.snapshot_every
  if every and new_version // every > p.base // every then
    local snap = { version = new_version, schema = spec.schema, state = agg.state }
    if subject then
      -- sealed with the subject's key (forget drops it); a subject whose key
      -- this very save makes has none yet: its first snapshot comes later
      local enc_ok, bytes = pcall(core.encode, agg.state, "state")
      local sealed = enc_ok and self.store:_seal(subject, agg.stream, bytes)
      snap = sealed and { version = new_version, schema = spec.schema, sealed = sealed }
      if not enc_ok then snap = { version = new_version, schema = spec.schema, state = agg.state } end
    end
    local put_ok, perr = true, nil
    if snap then put_ok, perr = pcall(txn.put, txn, "snapshots", agg.stream, snap) end
    if not put_ok then
      txn:close()
      -- an error value naming the place: the state is the culprit
      local why = tostring(perr)
      if type(perr) == "table" and perr.code == "invalid" and perr.path then
        why = (perr.path ~= "" and perr.path .. ": " or "") .. perr.reason
      end
      error(("aggregate '%s': the snapshot of %s at version %d cannot be stored: %s")
        :format(spec.name, agg.stream, new_version, why), 2)
    end
  end
  local res
  res, err = txn:commit()
  txn:close()
  if not res then
    err.index = nil
    return nil, err
  end
  p.queue, p.base = {}, res[1].version
  return res[1].version
end

--- Load, run fn(agg), save; on a conflict start again from freshly loaded
-- state, up to opts.retries more times (default 3).  Returns the saved
-- aggregate, or nil, err.
function Repo:update(id, fn, opts)
  check_id(id, "update", self.spec)
  if type(fn) ~= "function" then error("bad argument #2 to 'update' (function expected)", 2) end
  local retries = 3
  if opts ~= nil then
    options.check(opts, UPDATE_OPTS, 3, "update")
    if opts.retries ~= nil then
      retries = opts.retries
      if mtype(retries) ~= "integer" or retries < 0 then
        error("bad argument #3 to 'update' (retries must be an integer >= 0)", 2)
      end
    end
  end
  local err
  for _ = 0, retries do
    local agg = self:load(id)
    fn(agg)
    local v
    v, err = self:save(agg)
    if v then return agg end
    if err.code ~= "wrong_expected_version" then return nil, err end
  end
  return nil, err
end

--- store:repository(Aggregate)
function M.repository(store, class, opts)
  options.check(opts, REPOSITORY_OPTS, 2, "repository")
  local spec = specs[class]
  if not spec then error("bad argument #1 to 'repository' (an aggregate from er.aggregate expected)", 2) end
  return setmetatable({ store = store, class = class, spec = spec }, Repo)
end

return M
