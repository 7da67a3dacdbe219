--- eventrocks.subscription: live subscriptions to the global log
-- (store:subscribe) and the wait for new commits that projections' follow
-- mode shares with them.
--
-- A subscription reads the log from `from` with store:all and, at its end,
-- waits for the next commit through the core (store:_wait, which is
-- er_wait_position): a writable handle is woken by the commit itself, a
-- read-only one by a change of the store's files (inotify) followed by a
-- catch-up.  One Lua state runs one thing at a time, so:
--   - outside a coroutine the iterator blocks; it waits in slices of at
--     most SLICE_MS so that the interpreter's Ctrl-C hook runs between
--     them, and the commits that wake it come from another process (or, in
--     C, another thread on the same handle);
--   - inside a coroutine it never blocks: at the end of the log it yields
--     (coroutine.yield(sub)) and looks again when resumed, so that a
--     scheduler in the same Lua state can run the code that appends.
local system = require "system"
local core = require "eventrocks.core"
local options = require "eventrocks.options"

local M = {}

local type, error, pcall, setmetatable = type, error, pcall, setmetatable
local mtype, monotime = math.type, system.monotime
local yield, isyieldable = coroutine.yield, coroutine.isyieldable

local SLICE_MS = 250 -- longest blocking wait between two returns to Lua
local RETRIES = 200  -- a read-only handle's unreadable view is retried this often...
local RETRY_S = 0.01 -- ...this far apart before its error is raised

local OPTS = options.known { "from", "category", "types", "timeout", "yield" }

--- wait(store, after, timeout, yielding) -> the last position once it is
-- above `after`, or nil when `timeout` seconds (nil: no limit) passed
-- first.  yielding: at the end, coroutine.yield(token) and look again
-- when resumed instead of blocking.  Raises the error of a read-only
-- handle that cannot catch up.
function M.wait(store, after, timeout, yielding, token)
  local deadline = timeout and monotime() + timeout
  while true do
    local ms = 0
    if not yielding then
      ms = SLICE_MS
      if deadline then
        ms = math.floor((deadline - monotime()) * 1000 + 0.5)
        if ms > SLICE_MS then ms = SLICE_MS elseif ms < 0 then ms = 0 end
      end
    end
    local last, err = store:_wait(after, ms)
    if not last then error(err, 0) end
    if last > after then return last end
    if deadline and monotime() >= deadline then return nil end
    if yielding then yield(token) end
  end
end

local Sub = {}
Sub.__index = Sub
Sub.__name = "eventrocks.subscription"

local function close_iter(sub)
  if sub.it then sub.it:close() end
  sub.it, sub.next = nil, nil
end

local function close(sub)
  close_iter(sub)
  sub.closed = true
end
Sub.__close = close
Sub.close = close

function Sub:__tostring()
  return ("eventrocks.subscription (at position %d%s)"):format(self.scanned, self.closed and ", closed" or "")
end

--- sub:position() -> the position the subscription has read up to
function Sub:position() return self.scanned end

-- A read-only handle reads the log unfiltered and checks that positions
-- follow each other: a view caught up while the writer flushes may lack
-- an event that a later one has, so a gap (or an end short of the last
-- position) that the store does not know as removed (store:_removed: holes
-- and removed events) is looked at once more, after a catch-up, before it
-- is taken for a hole.  The filter is then applied here.
-- The store's upcasters change types after the core's filter would have
-- chosen by the stored ones: then `types` is applied here too, to the
-- types as read.
local function wanted(sub, ev)
  if sub.ro and sub.category and core.category(ev.stream) ~= sub.category then return false end
  return not sub.types or sub.types[ev.type] == true
end

local function open_iter(sub)
  sub.next, sub.it = sub.store:all({ from = sub.scanned + 1, category = not sub.ro and sub.category or nil,
    types = not sub.lua_filter and sub.type_list or nil })
end

local function step(sub)
  if not sub.ro then return sub.next() end
  local ok, ev = pcall(sub.next)
  if ok then sub.failures = 0 return ev end
  if type(ev) == "table" and (ev.code == "corruption" or ev.code == "io") and sub.failures < RETRIES then
    sub.failures = sub.failures + 1 -- a view the writer is changing: look again
    return false
  end
  error(ev, 0)
end

-- The next event, or nil at the end of what the handle shows now.
local function next_stored(sub)
  while true do
    if not sub.it then
      if sub.store:last_position() <= sub.scanned then return nil end
      sub.last = sub.store:last_position()
      open_iter(sub)
    end
    local ev = step(sub)
    if ev == false then -- retry after a catch-up
      close_iter(sub)
      system.sleep(RETRY_S)
      sub.store:refresh()
    elseif ev == nil then
      close_iter(sub)
      if sub.ro and sub.last > sub.scanned and sub.gap ~= -sub.last
        and not sub.store:_removed(sub.scanned + 1, sub.last) then
        sub.gap = -sub.last -- the view ended short of its last position: look once more
        sub.store:refresh()
      else
        if sub.last > sub.scanned then sub.scanned = sub.last end
        return nil
      end
    elseif sub.ro and ev.position ~= sub.scanned + 1 and sub.gap ~= ev.position
      and not sub.store:_removed(sub.scanned + 1, ev.position - 1) then
      sub.gap = ev.position -- look once more before skipping to it
      close_iter(sub)
      sub.store:refresh()
    else
      sub.scanned = ev.position
      if not sub.lua_filter or wanted(sub, ev) then return ev end
    end
  end
end

local function next_event(sub)
  if sub.closed then return nil end
  while true do
    local ev = next_stored(sub)
    if ev then return ev end
    if not M.wait(sub.store, sub.scanned, sub.timeout, sub.yield, sub) then
      close(sub)
      return nil
    end
  end
end

--- store:subscribe([opts]) -> iterator, for `for ev in store:subscribe{...}`:
-- the events of the global log from opts.from (default 1: every event) on,
-- then each new one as it is committed.  opts: from, category, types (as
-- store:all), timeout (seconds without news after which the iterator ends;
-- default none), yield (default: whether it runs in a coroutine).
function M.subscribe(store, opts)
  options.check(opts, OPTS, 1, "subscribe")
  opts = opts or {}
  local from = opts.from or 1
  if mtype(from) ~= "integer" or from < 1 then
    error("bad argument #1 to 'subscribe' (from must be an integer position >= 1)", 2)
  end
  local timeout = opts.timeout
  if timeout ~= nil and (type(timeout) ~= "number" or timeout ~= timeout or timeout < 0) then
    error("bad argument #1 to 'subscribe' (timeout must be a number of seconds >= 0)", 2)
  end
  if opts.category ~= nil and type(opts.category) ~= "string" then
    error("bad argument #1 to 'subscribe' (category must be a string)", 2)
  end
  local types
  if opts.types ~= nil then
    if type(opts.types) ~= "table" or #opts.types == 0 then
      error("bad argument #1 to 'subscribe' (types must be a non-empty array of strings)", 2)
    end
    types = {}
    for i = 1, #opts.types do
      if type(opts.types[i]) ~= "string" then
        error("bad argument #1 to 'subscribe' (types must be a non-empty array of strings)", 2)
      end
      types[opts.types[i]] = true
    end
  end
  local y = opts.yield
  if y == nil then y = isyieldable() elseif type(y) ~= "boolean" then
    error("bad argument #1 to 'subscribe' (yield must be a boolean)", 2)
  end
  if y and not isyieldable() then
    error("bad argument #1 to 'subscribe' (yield = true outside a coroutine)", 2)
  end
  local sub = setmetatable({
    store = store, scanned = from - 1, last = 0, timeout = timeout, yield = y,
    category = opts.category, types = types, type_list = opts.types and { table.unpack(opts.types) },
    ro = store:_is_read_only(), failures = 0,
  }, Sub)
  sub.lua_filter = sub.ro or store:_upcasting()
  return next_event, sub, nil, sub
end

return M
