-- Shared helpers of the eventrocks busted specs.
--
--   local H = require "helper"
--   local t = {}
--   before_each(function() H.setup(t) end)     -- t.dir: fresh empty directory, t.store: open on it
--   after_each(function() H.teardown(t) end)   -- closes every handle, removes the directory
--
-- Busted's globals (before_each, assert...) are not visible from a required
-- module, so the spec files call setup/teardown themselves and the assertions
-- below go through luassert directly.

local er = require "eventrocks"
local luassert = require "luassert"

local H = { er = er }

-- UUID text: 8-4-4-4-12 lowercase hex, version nibble 7, variant 8/9/a/b.
H.UUID7 = "^%x%x%x%x%x%x%x%x%-%x%x%x%x%-7%x%x%x%-[89ab]%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$"

function H.is_uuid7(s)
  return type(s) == "string" and #s == 36 and s == s:lower() and s:match(H.UUID7) ~= nil
end

-- ---------------------------------------------------------------------------
-- Directories and store handles

function H.shquote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

local tmp_base = os.tmpname()
os.remove(tmp_base)
local tmp_prefix = tmp_base:match("^(.*/)") or "/tmp/"

-- A fresh, empty directory (os.tmpname + mkdir).
-- ---------------------------------------------------------------------------
-- Child processes: the `eventrocks` command and shell pipelines, run as a
-- user would (the specs of the command line and of the formats).

H.ROOT = assert(io.popen("pwd")):read("l")

-- package.path/cpath with relative entries made absolute, so that a child
-- started in another directory loads the same modules.
local function absolute(list)
  local out = {}
  for entry in list:gmatch("[^;]+") do
    if entry:sub(1, 1) ~= "/" then entry = H.ROOT .. "/" .. entry:gsub("^%./", "") end
    out[#out + 1] = entry
  end
  return table.concat(out, ";")
end

-- "LUA_PATH=... LUA_CPATH=...": this process's module paths, for `env`.
H.CHILD_VARS = "LUA_PATH=" .. H.shquote(absolute(package.path))
  .. " LUA_CPATH=" .. H.shquote(absolute(package.cpath))
H.BIN = H.ROOT .. "/bin/eventrocks"
-- `eventrocks` with this process's modules: append the arguments.
-- Programs that are not ours (curl, python3, bash) run without the
-- sanitizer runtime that `make asan` preloads: under it curl can hang for
-- good, and bash reports its own leaks.
H.OTHER = "env -u LD_PRELOAD "
H.CMD = "env " .. H.CHILD_VARS .. " lua5.4 " .. H.shquote(H.BIN)

-- The bytes of a file, or nil when it cannot be read.
function H.read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

function H.write_file(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

-- Run a shell command line (a pipeline: its status is the last command's)
-- with `stdin` as its input, /dev/null when nil; returns exit code (128 + N
-- for a signal N), stdout, stderr.
function H.sh(cmdline, stdin)
  local errf, inf = os.tmpname(), nil
  if stdin then
    inf = os.tmpname()
    H.write_file(inf, stdin)
  end
  local p = assert(io.popen("(" .. cmdline .. ") 2>" .. H.shquote(errf) .. " <"
    .. H.shquote(inf or "/dev/null"), "r"))
  local out = p:read("a")
  local _, how, code = p:close()
  local err = H.read_file(errf) or ""
  os.remove(errf)
  if inf then os.remove(inf) end
  if how ~= "exit" then code = 128 + (code or 0) end
  return code, out, err
end

function H.mkdtemp()
  local name = os.tmpname()
  os.remove(name)
  local ok = os.execute("mkdir -p " .. H.shquote(name))
  assert(ok, "mkdir " .. name .. " failed")
  return name
end

-- rm -rf, only for the temporary directories made above.
function H.rmrf(path)
  if type(path) == "string" and path:sub(1, #tmp_prefix) == tmp_prefix and #path > #tmp_prefix then
    os.execute("rm -rf " .. H.shquote(path))
  end
end

function H.exists(path)
  local f = io.open(path, "r")
  if f then f:close() return true end
  return false
end

-- Open a store and remember the handle so teardown closes it.
function H.open(t, path, opts)
  local s, err = er.open(path, opts)
  if s then t.handles[#t.handles + 1] = s end
  return s, err
end

function H.setup(t, open)
  t.handles = {}
  t.dir = H.mkdtemp()
  if open ~= false then
    local s, err = H.open(t, t.dir)
    assert(s, "er.open failed: " .. tostring(err and err.message or err))
    t.store = s
  end
  return t
end

function H.teardown(t)
  for _, s in ipairs(t.handles or {}) do pcall(s.close, s) end
  t.handles, t.store = nil, nil
  collectgarbage()
  collectgarbage()
  H.rmrf(t.dir)
  t.dir = nil
end

-- ---------------------------------------------------------------------------
-- Reading helpers

-- Collect what a generic-for iterator yields (first value of each step).
function H.collect(...)
  local out = {}
  for v in ... do out[#out + 1] = v end
  return out
end

-- Collect `stream, version` pairs of store:streams().
function H.collect_streams(...)
  local out = {}
  for s, v in ... do out[#out + 1] = { s, v } end
  return out
end

-- The field `f` of each element of `list`.
function H.pluck(list, f)
  local out = {}
  for i, v in ipairs(list) do out[i] = v[f] end
  return out
end

-- last_position and version(stream), to show that nothing was written.
function H.state(store, stream)
  return { last = store:last_position(), version = store:version(stream or "s-1") }
end

-- An event table.
function H.ev(type_, data, metadata, id)
  return { type = type_, data = data, metadata = metadata, id = id }
end

-- n events of type "E" with data {i = k}.
function H.evs(n, type_)
  local out = {}
  for i = 1, n do out[i] = { type = type_ or "E", data = { i = i } } end
  return out
end

-- ---------------------------------------------------------------------------
-- Deep equality with math.type, NaN and the sign of zero

local function fmt(v)
  if type(v) == "string" then
    return #v > 60 and string.format("%q...", v:sub(1, 60)) or string.format("%q", v)
  elseif type(v) == "number" then
    if v ~= v then return "nan" end
    return string.format("%s(%s)", math.type(v), tostring(v))
  end
  return tostring(v)
end
H.fmt = fmt

local function same(a, b, path)
  local ta, tb = type(a), type(b)
  if ta ~= tb then
    return false, path .. ": expected " .. ta .. " " .. fmt(a) .. ", got " .. tb .. " " .. fmt(b)
  end
  if ta == "number" then
    if math.type(a) ~= math.type(b) then
      return false, path .. ": expected " .. fmt(a) .. ", got " .. fmt(b)
    end
    if a ~= a or b ~= b then
      if (a ~= a) ~= (b ~= b) then return false, path .. ": expected " .. fmt(a) .. ", got " .. fmt(b) end
      return true
    end
    if a ~= b then return false, path .. ": expected " .. fmt(a) .. ", got " .. fmt(b) end
    if a == 0 and math.type(a) == "float" and 1 / a ~= 1 / b then
      return false, path .. ": sign of zero differs (expected " .. tostring(a) .. ", got " .. tostring(b) .. ")"
    end
    return true
  end
  if ta == "table" then
    for k, v in pairs(a) do
      local ok, why = same(v, rawget(b, k), path .. "[" .. fmt(k) .. "]")
      if not ok then return false, why end
    end
    for k in pairs(b) do
      if rawget(a, k) == nil then return false, path .. ": unexpected key " .. fmt(k) end
    end
    return true
  end
  if a ~= b then return false, path .. ": expected " .. fmt(a) .. ", got " .. fmt(b) end
  return true
end

-- true, or false and where the first difference is.
function H.same(a, b)
  return same(a, b, "value")
end

function H.assert_same(expected, actual, what)
  local ok, why = same(expected, actual, what or "value")
  luassert.is_true(ok, why)
end

-- ---------------------------------------------------------------------------
-- Error helpers

-- Calls fn, asserts that it raised, returns the error as a string.
function H.raises(fn, ...)
  local ok, err = pcall(fn, ...)
  luassert.is_false(ok, "expected an error, but the call succeeded")
  return tostring(err)
end

-- Asserts that fn raises with a message containing every `needles` (plain).
function H.raises_with(fn, ...)
  local needles = { ... }
  local msg = H.raises(fn)
  for _, n in ipairs(needles) do
    luassert.is_truthy(msg:find(n, 1, true), "error message " .. string.format("%q", msg) .. " does not contain " .. string.format("%q", n))
  end
  return msg
end

-- Asserts an operational error value: table with string code/message,
-- tostring(err) == err.message, and the expected code (one of a list).
function H.check_err(err, code)
  luassert.is_table(err, "expected an error table, got " .. fmt(err))
  luassert.is_string(err.code, "err.code")
  luassert.is_string(err.message, "err.message")
  luassert.is_true(#err.message > 0, "err.message is empty")
  luassert.equal(err.message, tostring(err))
  if type(code) == "table" then
    local hit = false
    for _, c in ipairs(code) do if err.code == c then hit = true end end
    luassert.is_true(hit, "unexpected err.code " .. err.code)
  elseif code then
    luassert.equal(code, err.code)
  end
  return err
end

-- ---------------------------------------------------------------------------
-- Other processes

-- Lua source prefix for a child `lua5.4 -e` that loads the same module as
-- this process: it gets this process's package.path and package.cpath (set
-- by busted from .busted or --cpath) and runs in the same directory.
function H.child_prelude()
  return string.format("package.path = %q; package.cpath = %q; local er = require 'eventrocks'; ",
    package.path, package.cpath)
end

function H.lua_cmd(code)
  return "lua5.4 -e " .. H.shquote(H.child_prelude() .. code) .. " 2>&1"
end

-- Run Lua code in another process; returns its whole output.
function H.run_child(code)
  local p = assert(io.popen(H.lua_cmd(code), "r"))
  local out = p:read("a")
  p:close()
  return out
end

-- Like run_child, but also returns the child's exit status (the number given
-- to os.exit; 0 on a normal end) and how it ended ("exit" or "signal").
function H.run_child_status(code)
  local p = assert(io.popen(H.lua_cmd(code), "r"))
  local out = p:read("a")
  local _, how, status = p:close()
  return out, status, how
end

return H
