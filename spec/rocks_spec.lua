-- Two rocks: eventrocks, and eventrocks-jetstream on top (the modules
-- eventrocks.jetstream and eventrocks.nats).  Without the second, or with it
-- but libnats not loading, the store still works and whatever needs
-- JetStream says which rock to install.  Each case runs in a child process
-- whose module paths hold what the rocks would have installed.
local H = require "helper"
local er = require "eventrocks"

local ROOT = assert(io.popen("pwd")):read("l")
local CORE_SO = assert(package.searchpath("eventrocks.core", package.cpath))
local NATS_SO = assert(package.searchpath("eventrocks.nats", package.cpath))
if CORE_SO:sub(1, 1) ~= "/" then CORE_SO, NATS_SO = ROOT .. "/" .. CORE_SO, ROOT .. "/" .. NATS_SO end

-- The path template a module was found with (argparse, dkjson: Debian's).
local function template(name)
  local file = assert(package.searchpath(name, package.path), name .. " not found")
  return (file:gsub(name .. "%.lua$", "?.lua"))
end
local DEPS = template("argparse") .. ";" .. template("dkjson")

-- The same for Debian's modules the base rock uses (lua-system: a Lua
-- package over system.core; luv; LuaFileSystem).
local function ctemplate(name)
  local file = assert(package.searchpath(name, package.cpath), name .. " not found")
  return (file:gsub(name:gsub("%.", "/") .. "%.so$", "?.so"))
end
DEPS = DEPS .. ";" .. (assert(package.searchpath("system", package.path)):gsub("system/init%.lua$", "?/init.lua"))
local CDEPS = ctemplate("system.core") .. ";" .. ctemplate("luv") .. ";" .. ctemplate("lfs")

local MODULES = {}
for f in assert(io.popen("ls lua/eventrocks")):lines() do
  if f:match("%.lua$") then MODULES[#MODULES + 1] = f end
end

-- A module tree in a new directory: every Lua module of lua/eventrocks/, but
-- jetstream.lua only with `jetstream`; eventrocks/core.so; eventrocks/nats.so
-- when `nats` is "real" (this build's) or a string (the file's bytes).
local function tree(jetstream, nats)
  local d = H.mkdtemp()
  assert(os.execute("mkdir -p " .. H.shquote(d .. "/lua/eventrocks") .. " " .. H.shquote(d .. "/lib/eventrocks")))
  local function link(from, to) assert(os.execute("ln -s " .. H.shquote(from) .. " " .. H.shquote(d .. "/" .. to))) end
  for _, f in ipairs(MODULES) do
    if f ~= "jetstream.lua" or jetstream then link(ROOT .. "/lua/eventrocks/" .. f, "lua/eventrocks/" .. f) end
  end
  link(CORE_SO, "lib/eventrocks/core.so")
  if nats == "real" then
    link(NATS_SO, "lib/eventrocks/nats.so")
  elseif nats then
    local f = assert(io.open(d .. "/lib/eventrocks/nats.so", "wb"))
    f:write(nats)
    f:close()
  end
  return d
end

-- `lua5.4 ARGS` with the module paths of `d` only (and Debian's argparse and
-- dkjson); returns exit status, stdout and stderr.
local function lua(d, args)
  local prelude = ("package.path = %q; package.cpath = %q"):format(
    d .. "/lua/?.lua;" .. d .. "/lua/?/init.lua;" .. DEPS, d .. "/lib/?.so;" .. CDEPS)
  local errf = os.tmpname()
  local p = assert(io.popen("lua5.4 -e " .. H.shquote(prelude) .. " " .. args .. " 2>" .. H.shquote(errf) .. " </dev/null"))
  local out = p:read("a")
  local _, _, status = p:close()
  local f = assert(io.open(errf, "rb"))
  local err = f:read("a")
  f:close()
  os.remove(errf)
  return status, out, err
end

-- Run `code` (a Lua chunk; arg[1] is a new store directory) in a child.
local function script(d, code)
  local file = d .. "/script.lua"
  local f = assert(io.open(file, "wb"))
  f:write(code)
  f:close()
  return lua(d, H.shquote(file) .. " " .. H.shquote(d .. "/store"))
end

local function contains(hay, needle)
  assert.is_truthy(hay:find(needle, 1, true), ("%q does not contain %q"):format(hay, needle))
end

local NOT_INSTALLED = "needs the eventrocks-jetstream rock, which is not installed"
local INSTALL = "luarocks --lua-version=5.4 make rockspec/eventrocks-jetstream-scm-1.rockspec"
local FAILED = "the eventrocks-jetstream rock is installed but its module 'eventrocks.nats' failed to load"

-- Calls f(...) and prints its error, in the child.
local CATCH = [[
local er = require "eventrocks"
local function catch(f, ...)
  local ok, err = pcall(f, ...)
  print(ok and "no error" or tostring(err))
end
]]

describe("the eventrocks rock without eventrocks-jetstream", function()
  local d
  before_each(function() d = tree(false) end)
  after_each(function() H.rmrf(d) end)

  it("opens a store, appends, reads and runs a projection, loading nothing of NATS", function()
    local status, out, err = script(d, [[
      local er = require "eventrocks"
      local s = assert(er.open(arg[1]))
      assert(s:append("order-1", { { type = "Placed", data = { total = 30 } }, { type = "Paid" } }))
      assert(s:append("order-2", { type = "Placed", data = { total = 12 } }))
      local n = 0
      for _ in s:read("order-1") do n = n + 1 end
      local p = s:projection("totals", { handlers = {
        Placed = function(view, ev) view:put("sum", (view:get("sum") or 0) + ev.data.total) end } })
      local applied, pos = assert(p:run())
      print(n, applied, pos, p:get("sum"), package.loaded["eventrocks.jetstream"], package.loaded["eventrocks.nats"])
      s:close()
    ]])
    assert.equal("", err)
    assert.equal(0, status)
    assert.equal("2\t2\t3\t42\tnil\tnil\n", out)
  end)

  it("has store:relay, er.jetstream_source and er.jetstream_connect name the rock and how to install it", function()
    local status, out, err = script(d, CATCH .. [[
      local s = assert(er.open(arg[1]))
      catch(s.relay, s, "out", { url = "nats://127.0.0.1:1" })
      catch(er.jetstream_source, {})
      catch(er.jetstream_connect)
      s:close()
    ]])
    assert.equal("", err)
    assert.equal(0, status)
    local lines = {}
    for l in out:gmatch("[^\n]+") do lines[#lines + 1] = l end
    assert.equal(3, #lines, out)
    for i, what in ipairs { "store:relay", "er.jetstream_source", "er.jetstream_connect" } do
      contains(lines[i], what .. " " .. NOT_INSTALLED .. " (no module 'eventrocks.jetstream')")
      contains(lines[i], INSTALL)
      contains(lines[i], "tools/deps.sh jetstream")
    end
  end)

  it("raises in the caller's line", function()
    local _, out = script(d, CATCH .. [[
      local s = assert(er.open(arg[1]))
      catch(function() s:relay("out") end)                 -- line 7
      catch(function() er.jetstream_source({}) end)        -- line 8
    ]])
    assert.matches("^[^\n]*script%.lua:7: store:relay needs", out)
    assert.matches("\n[^\n]*script%.lua:8: er%.jetstream_source needs", out)
  end)

  it("refuses a projection source it cannot have made, naming er.jetstream_source", function()
    local _, out = script(d, CATCH .. [[
      local s = assert(er.open(arg[1]))
      catch(s.projection, s, "p", { source = {}, handlers = {} })
    ]])
    contains(out, "projection 'p': source must be a projection source (er.jetstream_source makes one)")
  end)

  it("has `eventrocks relay` and `eventrocks consume` name the rock, exit 1, and the other commands work", function()
    local bin = H.shquote(ROOT .. "/bin/eventrocks")
    local store = H.shquote(d .. "/store")
    local status, out, err = script(d, [[assert(require("eventrocks").open(arg[1])):append("a-1", { type = "T" })]])
    assert.equal(0, status, err)
    for _, cmd in ipairs { "relay out", "consume in --mirror", "relay out --create-stream --follow" } do
      status, out, err = lua(d, bin .. " --store " .. store .. " " .. cmd)
      assert.equal(1, status, cmd)
      assert.equal("", out)
      contains(err, "eventrocks: " .. cmd:match("^%a+") .. " " .. NOT_INSTALLED)
      contains(err, INSTALL)
    end
    status, out, err = lua(d, bin .. " --store " .. store .. " stats")
    assert.equal(0, status, err)
    contains(out, "events")
  end)
end)

describe("the eventrocks-jetstream rock whose libnats does not load", function()
  local d
  before_each(function() d = tree(true, "not a shared object\n") end)
  after_each(function() H.rmrf(d) end)

  it("has store:relay say the rock is installed and give the loader's error, on one line", function()
    local status, out, err = script(d, CATCH .. [[
      local s = assert(er.open(arg[1]))
      catch(s.relay, s, "out")
      catch(er.jetstream_source, {})
      s:close()
    ]])
    assert.equal("", err)
    assert.equal(0, status)
    local relay, source = out:match("^([^\n]*)\n([^\n]*)\n$")
    assert.is_string(relay, out)
    contains(relay, "store:relay: " .. FAILED)
    contains(relay, "error loading module 'eventrocks.nats' from file '" .. d .. "/lib/eventrocks/nats.so'")
    contains(source, "er.jetstream_source: " .. FAILED)
  end)

  it("has `eventrocks relay` say so and exit 1", function()
    local bin = H.shquote(ROOT .. "/bin/eventrocks")
    local status, out, err = lua(d, bin .. " --store " .. H.shquote(d .. "/store") .. " relay out")
    assert.equal(1, status)
    assert.equal("", out)
    contains(err, "eventrocks: relay: " .. FAILED)
  end)
end)

describe("both rocks", function()
  it("give er.jetstream_source and store:relay their own argument errors, in the caller's line", function()
    local d = tree(true, "real")
    local _, out = script(d, CATCH .. [[
      local s = assert(er.open(arg[1]))
      catch(function() er.jetstream_source() end)          -- line 7
      catch(function() s:relay("") end)                    -- line 8
      print(tostring(er.jetstream_source({ stream = "S" })))
    ]])
    H.rmrf(d)
    assert.matches("^[^\n]*script%.lua:7: bad argument #1 to 'jetstream_source' %(options table expected%)\n", out)
    assert.matches("\n[^\n]*script%.lua:8: bad argument #1 to 'relay' %(name must be", out)
    contains(out, "jetstream source S (events.>)")
  end)

  it("load in this process as they did", function()
    assert.is_function(er.jetstream_source)
    assert.is_table(require("eventrocks.rocks").jetstream("test"))
    assert.equal(require "eventrocks.jetstream", require("eventrocks.rocks").jetstream("test"))
  end)
end)
