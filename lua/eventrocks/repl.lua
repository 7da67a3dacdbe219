--- eventrocks.repl: the `eventrocks repl` prompt and its helpers.
--
-- A Lua 5.4 prompt (readline line editing and history when the input is a
-- terminal) where `er` is the module, `store` the open store, and help(),
-- show(x) and history(repo, id) are at hand.  Expressions print their values
-- with show; statements run as they are.
local er = require "eventrocks"
local core = require "eventrocks.core"
local pretty = require "eventrocks.pretty"
local aggregate = require "eventrocks.aggregate"

local M = {}

local fmt, concat = string.format, table.concat

-- ---------------------------------------------------------------------------
-- show: a multi-line pretty printer

local function is_event(x)
  return getmetatable(x) == core.event_metatable
end

local function is_error(x)
  return getmetatable(x) == core.error_metatable
end

local function render(v, indent, seen, out)
  if type(v) ~= "table" or is_event(v) then
    out[#out + 1] = is_event(v) and tostring(v) or pretty.compact(v)
    return
  end
  local flat = pretty.compact(v)
  if #flat + #indent <= 78 or seen[v] then
    out[#out + 1] = seen[v] and "<cycle>" or flat
    return
  end
  seen[v] = true
  local keys, n = {}, #v
  for k in pairs(v) do
    if not (math.type(k) == "integer" and k >= 1 and k <= n) then keys[#keys + 1] = k end
  end
  table.sort(keys, pretty.key_order)
  local inner = indent .. "  "
  out[#out + 1] = "{\n"
  for i = 1, n do
    out[#out + 1] = inner
    render(v[i], inner, seen, out)
    out[#out + 1] = ",\n"
  end
  for _, k in ipairs(keys) do
    out[#out + 1] = inner
    if type(k) == "string" and k:match("^[%a_][%w_]*$") then out[#out + 1] = k
    else out[#out + 1] = "[" .. pretty.compact(k) .. "]" end
    out[#out + 1] = " = "
    render(v[k], inner, seen, out)
    out[#out + 1] = ",\n"
  end
  out[#out + 1] = indent .. "}"
  seen[v] = nil
end

--- A readable rendering of any value: nested tables over several lines,
-- events as their summary line plus data and metadata, aggregates with
-- their state, errors with their code.
function M.format(x)
  if is_event(x) then
    local out = { tostring(x), "\n  id       ", x.id, "\n  data     " }
    render(x.data, "  ", {}, out)
    out[#out + 1] = "\n  metadata "
    render(x.metadata, "  ", {}, out)
    return concat(out)
  end
  if is_error(x) then
    local out = { fmt("error %s: %s", tostring(x.code), tostring(x.message)) }
    for k, v in pairs(x) do
      if k ~= "code" and k ~= "message" then out[#out + 1] = fmt("\n  %s = %s", k, pretty.compact(v)) end
    end
    return concat(out)
  end
  if aggregate.name_of(x) and type(x) == "table" and x.state ~= nil then
    local out = { tostring(x), "\n  state " }
    render(x.state, "  ", {}, out)
    return concat(out)
  end
  local mt = getmetatable(x)
  if type(x) == "table" and type(mt) == "table" and mt.__tostring then return tostring(x) end
  local out = {}
  render(x, "", {}, out)
  return concat(out)
end

function M.show(...)
  local n = select("#", ...)
  for i = 1, n do io.write(M.format((select(i, ...))), "\n") end
end

--- Print the state after each event of an aggregate as a table a person
-- can read; returns the rows of repo:history(id).
function M.history(repo, id)
  if type(repo) ~= "table" or type(repo.history) ~= "function" then
    error("bad argument #1 to 'history' (a repository expected: store:repository(Aggregate))", 2)
  end
  local rows = repo:history(id)
  local lines = { fmt("%-8s %-22s %-28s %s", "version", "event", "time", "state after it") }
  for _, r in ipairs(rows) do
    lines[#lines + 1] = fmt("%-8d %-22s %-28s %s", r.version, r.type, pretty.time(r.time),
      pretty.compact(r.state, 200))
  end
  if #rows == 0 then lines[#lines + 1] = "(no events)" end
  io.write(concat(lines, "\n"), "\n")
  -- the rows stay data; at the prompt they show as a one-line summary, the
  -- table having been printed already
  local summary = ("<history: %d event%s>"):format(#rows, #rows == 1 and "" or "s")
  return setmetatable(rows, { __tostring = function() return summary end })
end

local HELP = [[
eventrocks repl -- Lua 5.4 with the store at hand

  store                          the open store; tostring(store) says where
  er                             the module: er.open, er.aggregate, er.uuid, er.ANY...
  store:append(s, {type = "T", data = {...}} [, {expected = n}])
  for ev in store:read(s) do show(ev) end        a stream (opts: from, count, backward)
  for ev in store:all({category = "c"}) do ... end   the global log (from, count, types)
  for s, v in store:streams() do print(s, v) end     streams (opts: prefix)
  store:event(pos), store:version(s), store:last_position()
  show(x)                        print anything readably: tables, events, errors, aggregates
  history(repo, id)              the state after each event of an aggregate
                                 (repo = store:repository(er.aggregate(...)))
  help()                         this text

An expression prints its values; `=expr` works too.  Ctrl-D (or os.exit()) leaves.
]]

function M.help() io.write(HELP) end

-- ---------------------------------------------------------------------------
-- The loop

local function reader(interactive)
  if interactive then
    local ok, rl = pcall(require, "readline")
    if ok then
      rl.set_options({ histfile = "~/.eventrocks_history", completion = false })
      return function(prompt) return rl.readline(prompt) end, function() pcall(rl.save_history) end
    end
  end
  return function(prompt)
    if interactive then io.write(prompt) io.flush() end
    return io.read("l")
  end, function() end
end

local function incomplete(err)
  return err and err:find("<eof>$") ~= nil
end

--- Run the prompt until end of input.  env: { store = ..., dir = ... }
function M.run(opts)
  local interactive = core.isatty(0) and core.isatty(1)
  io.stdout:setvbuf("line") -- results and errors (stderr) in the order they happen
  local read, finish = reader(interactive)
  local env = setmetatable({
    er = er, store = opts.store, show = M.show, history = M.history, help = M.help,
  }, { __index = _G })
  if interactive then
    io.write(fmt("%s -- %s\nType help() for a guide, Ctrl-D to leave.\n", er._VERSION, tostring(opts.store)))
  end
  local buffer
  while true do
    local line = read(buffer and ">> " or "er> ")
    if line == nil then break end
    if not buffer and line:sub(1, 1) == "=" then line = "return " .. line:sub(2) end
    buffer = buffer and (buffer .. "\n" .. line) or line
    local chunk, err = load("return " .. buffer, "=repl", "t", env)
    if not chunk then chunk, err = load(buffer, "=repl", "t", env) end
    if chunk then
      buffer = nil
      local res = table.pack(xpcall(chunk, function(e)
        if type(e) == "table" then return e end
        -- the traceback down to the prompt's own chunk, not the REPL's frames
        local tb = debug.traceback(tostring(e), 2)
        local cut = tb:find("\n%s*%[C%]: in function 'xpcall'")
        return cut and tb:sub(1, cut - 1) or tb
      end))
      if res[1] then
        if res.n > 1 then M.show(table.unpack(res, 2, res.n)) end
      else
        local e = res[2]
        io.stderr:write(type(e) == "table" and M.format(e) or tostring(e), "\n")
      end
    elseif not incomplete(err) then
      buffer = nil
      io.stderr:write(err, "\n")
    end
  end
  finish()
  if interactive then io.write("\n") end
end

return M
