--- eventrocks.testing: given / when / then for aggregates, each scenario on
-- a temporary store of its own, removed as soon as the command has run.
--
--   local given = require("eventrocks.testing").given
--   given(Product, "kettle-1", { { type = "ProductCreated", data = { name = "Kettle" } } })
--     :when(function(p) p:increase_price(300) end)
--     :expect({ { type = "PriceIncreased", data = { delta = 300 } } })
--
-- A mismatch raises an error, at the test's line, that shows what was
-- expected and what happened.
local er = require "eventrocks"
local aggregate = require "eventrocks.aggregate"
local pretty = require "eventrocks.pretty"
local lfs = require "lfs"

local M = {}

local fmt, concat = string.format, table.concat

-- A new empty directory, and its removal with everything in it.
local function tmpdir()
  local name = os.tmpname() -- a new file: its name is ours
  os.remove(name)
  assert(lfs.mkdir(name))
  return name
end

local function rmtree(path)
  for entry in lfs.dir(path) do
    if entry ~= "." and entry ~= ".." then
      local p = path .. "/" .. entry
      if lfs.symlinkattributes(p, "mode") == "directory" then rmtree(p) else os.remove(p) end
    end
  end
  lfs.rmdir(path)
end

-- Equal values: tables compared by contents (keys and values), the rest
-- with ==.
local function same(a, b)
  if type(a) ~= "table" or type(b) ~= "table" then return a == b end
  for k, v in pairs(a) do
    if not same(v, b[k]) then return false end
  end
  for k in pairs(b) do
    if a[k] == nil then return false end
  end
  return true
end

local function show_events(list)
  if #list == 0 then return "  (no events)" end
  local out = {}
  for i, ev in ipairs(list) do
    local line = fmt("  %d. %s %s", i, pretty.escape(tostring(ev.type)), pretty.compact(ev.data, 200))
    if ev.metadata ~= nil and next(ev.metadata) ~= nil then line = line .. " metadata " .. pretty.compact(ev.metadata, 200) end
    out[i] = line
  end
  return concat(out, "\n")
end

local Scenario = {}
Scenario.__index = Scenario
Scenario.__name = "eventrocks.scenario"

--- given(Aggregate, id, events) -> a scenario: the aggregate `id` whose
-- stream holds `events` (an array of event tables, may be empty).
function M.given(class, id, events)
  local name = aggregate.name_of(class)
  if not name then error("bad argument #1 to 'given' (an aggregate class made by er.aggregate expected)", 2) end
  if type(id) ~= "string" and math.type(id) ~= "integer" then
    error("bad argument #2 to 'given' (the aggregate's id must be a string or an integer)", 2)
  end
  if type(events) ~= "table" then error("bad argument #3 to 'given' (an array of events expected)", 2) end
  for i, ev in ipairs(events) do
    if type(ev) ~= "table" or type(ev.type) ~= "string" then
      error(fmt("bad argument #3 to 'given' (events[%d] must be an event table with a type)", i), 2)
    end
  end
  return setmetatable({ class = class, name = name, id = id, history = events }, Scenario)
end

--- scenario:when(fn): load the aggregate from the given events and call
-- fn(aggregate) (the command); what it raised, or its error, is kept for
-- expect / expect_error.  Returns the scenario.
function Scenario:when(fn)
  if type(fn) ~= "function" then error("bad argument #1 to 'when' (a function(aggregate) expected)", 2) end
  if self.ran then error("when: this scenario has run its command already", 2) end
  local dir = tmpdir()
  self._dir = dir -- (removed below; the specs check it is gone)
  local store, oerr = er.open(dir)
  if not store then
    rmtree(dir)
    error("given: cannot open a temporary store: " .. tostring(oerr), 2)
  end
  local ok, err = pcall(function()
    if #self.history > 0 then
      local v, aerr = store:append(self.name .. "-" .. tostring(self.id), self.history, { expected = er.NO_STREAM })
      if not v then error(aerr, 0) end
    end
    local agg = store:repository(self.class):load(self.id)
    local fok, ferr = pcall(fn, agg)
    if not fok then self.raised = ferr end
    self.events, self.final_state = agg:pending(), agg.state
  end)
  store:close()
  rmtree(dir)
  if not ok then error("given: the given events cannot be loaded: " .. tostring(err), 2) end
  self.ran = true
  return self
end

local function ran(self, fname)
  if not self.ran then error(fname .. ": call when(fn) first", 3) end
end

--- scenario:expect(events): the command raised exactly these events, in
-- order: the same types, equal data, and equal metadata where an expected
-- event has some.  Returns the scenario.
function Scenario:expect(expected)
  ran(self, "expect")
  if type(expected) ~= "table" then error("bad argument #1 to 'expect' (an array of events expected)", 2) end
  if self.raised ~= nil then
    error(fmt("expected events:\n%s\nbut the command raised an error: %s", show_events(expected),
      tostring(self.raised)), 2)
  end
  local got, match = self.events, #expected == #self.events
  for i = 1, #expected do
    local e, g = expected[i], got[i]
    if not g or e.type ~= g.type or not same(e.data, g.data)
      or (e.metadata ~= nil and not same(e.metadata, g.metadata)) then
      match = false
    end
  end
  if not match then
    error(fmt("expected events:\n%s\ngot:\n%s", show_events(expected), show_events(got)), 2)
  end
  return self
end

--- scenario:expect_error(text): the command raised an error whose message
-- contains `text` (plain text, not a pattern), and no events are left
-- queued.  Returns the scenario.
function Scenario:expect_error(text)
  ran(self, "expect_error")
  if type(text) ~= "string" then error("bad argument #1 to 'expect_error' (the text of the error expected)", 2) end
  if self.raised == nil then
    error(fmt("expected an error containing %q, but the command succeeded, raising:\n%s", text,
      show_events(self.events)), 2)
  end
  local msg = tostring(self.raised)
  if not msg:find(text, 1, true) then
    error(fmt("expected an error containing %q, got: %s", text, msg), 2)
  end
  return self
end

--- scenario:expect_state(state): the aggregate's state after the command
-- equals `state` (compared by contents).  Returns the scenario.
function Scenario:expect_state(state)
  ran(self, "expect_state")
  if not same(state, self.final_state) then
    error(fmt("expected the state %s\ngot %s", pretty.compact(state, 400), pretty.compact(self.final_state, 400)), 2)
  end
  return self
end

return M
