--- eventrocks.repl: the `eventrocks repl` prompt and its helpers.
--
-- A Lua 5.4 prompt (readline line editing and history when the input is a
-- terminal) where `er` is the module, `store` the open store, and help(),
-- show(x) and history(repo, id) are at hand.  Expressions print their values
-- with show; statements run as they are.
local er = require "eventrocks"
local core = require "eventrocks.core"
local pretty = require "eventrocks.pretty"
local sys = require "eventrocks.sys"
local aggregate = require "eventrocks.aggregate"

local M = {}

local fmt, concat = string.format, table.concat

-- ---------------------------------------------------------------------------
-- show: a multi-line pretty printer

local function is_event(x)
  return getmetatable(x) == pretty.event_metatable
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
  -- names are escaped where they are rendered; what a __tostring of
  -- someone else's gives is made safe here
  for i = 1, n do io.write(pretty.safe(M.format((select(i, ...))), true), "\n") end
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
    lines[#lines + 1] = fmt("%-8d %-22s %-28s %s", r.version, pretty.escape(r.type), pretty.time(r.time),
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
  store:event(pos), store:version(s), store:last_position(), store:stats()
  for ev in store:subscribe({timeout = 5}) do ... end  the log, then new commits
  show(x)                        print anything readably: tables, events, errors, aggregates
  history(repo, id)              the state after each event of an aggregate
                                 (repo = store:repository(er.aggregate(...)))
  help()                         this text

An expression prints its values; `=expr` works too.  Ctrl-D (or os.exit()) leaves.
]]

--- summary(store) -> one line: events, streams, last position and size
-- on disk (store:stats()), or nil when the store is closed or fails.
function M.summary(store)
  if not store then return nil end
  local ok, st = pcall(store.stats, store)
  if not ok or type(st) ~= "table" then return nil end
  return fmt("%d event%s in %d stream%s, last position %d, %.1f MiB on disk", st.events,
    st.events == 1 and "" or "s", st.streams, st.streams == 1 and "" or "s", st.last_position,
    st.bytes_on_disk / 1048576)
end

--- help([store]) prints the guide, and the store's summary when given.
function M.help(store)
  io.write(HELP)
  local line = M.summary(store)
  if line then io.write("\nThe store: ", line, "\n") end
end

-- ---------------------------------------------------------------------------
-- The loop

local INTERRUPTED = {} -- what read() returns when Ctrl-C was pressed at the prompt
local INTERRUPT = "interrupted" -- the error a Ctrl-C raises in a running chunk

-- History: every line is appended to the file as it is entered (a crash or
-- a kill keeps it); the file is cut to its last HISTORY_LINES lines when the
-- REPL starts.
local HISTORY_LINES = 1000

local function history_file()
  local home = os.getenv("HOME")
  if not home or home == "" then return nil end
  return home .. "/.eventrocks_history"
end

local function trim_history(path)
  local f = io.open(path, "r")
  if not f then return end
  local lines = {}
  for l in f:lines() do lines[#lines + 1] = l end
  f:close()
  if #lines <= HISTORY_LINES then return end
  f = io.open(path, "w")
  if not f then return end
  f:write(concat(lines, "\n", #lines - HISTORY_LINES + 1, #lines), "\n")
  f:close()
end

local function history_writer(path)
  local previous
  return function(line)
    if not path or line == "" or line == previous then return end
    previous = line
    local f = io.open(path, "a")
    if f then
      f:write(line, "\n")
      f:close()
    end
  end
end

-- Ctrl-C at the prompt.  Lua has no signal API, and readline hands SIGINT
-- on to the process's handler (lua5.4's stops the whole chunk once, then
-- the default ends the process).  So the prompt runs readline's callback
-- interface from a libuv loop (luv) that watches standard input and SIGINT:
-- a SIGINT drops the line being edited and gives a fresh prompt, as lua and
-- python do.  While a chunk runs, a count hook looks at the loop now and
-- then, so that Ctrl-C stops a long computation and returns to the prompt.
local function callback_reader(rl, uv)
  local sigint, stdin = uv.new_signal(), uv.new_poll(0)
  local interrupted = false
  sigint:start("sigint", function() interrupted = true end)
  local function read(prompt)
    local done, line = false, nil
    interrupted = false
    rl.handler_install(prompt, function(l)
      done, line = true, l
      rl.handler_remove()
    end)
    stdin:start("r", function() rl.read_char() end)
    while not done and not interrupted do uv.run("once") end
    stdin:stop()
    if done then return line end
    interrupted = false
    -- The handler stays installed: lua-readline's handler_remove closes its
    -- terminal stream before readline restores the terminal through it (a
    -- use after free) unless readline finished a line first.  The next
    -- read's handler_install starts an empty line on the prepared terminal
    -- (lua-readline opens the terminal anew there: one descriptor per
    -- Ctrl-C at the prompt is not closed).
    if rl.sigcleanup then rl.sigcleanup() end -- a half-typed key sequence or search
    io.write("^C\n")
    return INTERRUPTED
  end
  -- run fn(...) so that a Ctrl-C raises "interrupted!" in it
  local function guarded(fn, ...)
    interrupted = false
    debug.sethook(function()
      uv.run("nowait")
      if interrupted then
        interrupted = false
        error(INTERRUPT, 0)
      end
    end, "", 10000)
    local res = table.pack(xpcall(fn, ...))
    debug.sethook()
    uv.run("nowait") -- a Ctrl-C in C code (no hook there) is not kept for the prompt
    interrupted = false
    return table.unpack(res, 1, res.n)
  end
  return read, guarded
end

local function reader(interactive)
  local save = history_writer(nil)
  if interactive then
    local ok, rl = pcall(require, "readline")
    if ok then
      local path = history_file()
      if path then trim_history(path) end
      rl.set_options({ histfile = path or "", completion = false, auto_add = true, ignoredups = true })
      save = history_writer(path)
      local uv_ok, uv = pcall(require, "luv")
      if uv_ok and rl.handler_install then
        local read, guarded = callback_reader(rl, uv)
        return function(prompt)
          local line = read(prompt)
          if type(line) == "string" then save(line) end
          return line
        end, guarded
      end
      return function(prompt)
        local line = rl.readline(prompt)
        if line then save(line) end
        return line
      end, xpcall
    end
  end
  return function(prompt)
    if interactive then io.write(prompt) io.flush() end
    return io.read("l")
  end, xpcall
end

local function incomplete(err)
  return err and err:find("<eof>$") ~= nil
end

local function report(msg)
  io.stderr:write(pretty.safe(msg, true), "\n")
end

--- Run the prompt until end of input.  env: { store = ..., dir = ... }
-- Returns true, or false when input that is not a terminal (a piped script)
-- had a chunk that raised or did not compile: the command then exits 1.
function M.run(opts)
  local interactive = sys.isatty(0) and sys.isatty(1)
  io.stdout:setvbuf("line") -- results and errors (stderr) in the order they happen
  local read, run = reader(interactive)
  local env = setmetatable({
    er = er, store = opts.store, show = M.show, history = M.history,
    help = function() M.help(opts.store) end,
  }, { __index = _G })
  if interactive then
    local line = M.summary(opts.store)
    io.write(fmt("%s -- %s\n%sType help() for a guide, Ctrl-D to leave.\n", er._VERSION,
      pretty.safe(tostring(opts.store)), line and line .. "\n" or ""))
  end
  local buffer, unfinished -- a chunk not complete yet, and why load says so
  local failed = false
  while true do
    local line = read(buffer and ">> " or "er> ")
    if line == nil then break end
    if line == INTERRUPTED then
      buffer = nil
    else
      if not buffer and line:sub(1, 1) == "=" then line = "return " .. line:sub(2) end
      buffer = buffer and (buffer .. "\n" .. line) or line
      local chunk, err = load("return " .. buffer, "=repl", "t", env)
      if not chunk then chunk, err = load(buffer, "=repl", "t", env) end
      if chunk then
        buffer = nil
        local res = table.pack(run(chunk, function(e)
          if type(e) == "table" or e == INTERRUPT then return e end
          -- the traceback down to the prompt's own chunk, not the REPL's frames
          local tb = debug.traceback(tostring(e), 2)
          local cut = tb:find("\n%s*%[C%]: in function 'xpcall'")
          return cut and tb:sub(1, cut - 1) or tb
        end))
        if res[1] then
          if res.n > 1 then M.show(table.unpack(res, 2, res.n)) end
        else
          local e = res[2]
          report(type(e) == "table" and M.format(e) or tostring(e))
          failed = true
        end
      elseif not incomplete(err) then
        buffer = nil
        report(err)
        failed = true
      else
        unfinished = err
      end
    end
  end
  if buffer then -- input ended inside a chunk
    report(unfinished)
    failed = true
  end
  if interactive then io.write("\n") end
  return interactive or not failed
end

return M
