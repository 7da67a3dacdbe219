-- Security: a store is a local embedded database, so the defences are the
-- file system's permissions and never executing what a store or an import
-- holds.  See README "Reliability".
local H = require "helper"
local er = H.er

local function mode_of(path)
  local p = assert(io.popen("stat -c %a " .. H.shquote(path) .. " 2>&1"))
  local out = p:read("a")
  p:close()
  return out:match("^(%d+)")
end

describe("a new store directory", function()
  local t = {}
  before_each(function() H.setup(t, false) end)
  after_each(function() H.teardown(t) end)

  it("is created with mode 0700: only its owner can read the events", function()
    local path = t.dir .. "/new"
    local s = assert(H.open(t, path))
    assert(s:append("a-1", H.ev("A", "secret")))
    assert.equal("700", mode_of(path))
  end)

  it("is created 0700 under a umask of 000 too", function()
    local path = t.dir .. "/new"
    local p = assert(io.popen("sh -c " .. H.shquote("umask 000; " .. H.lua_cmd(string.format(
      "local s = assert(er.open(%q)); s:close(); print('opened')", path)))))
    local out = p:read("a")
    p:close()
    assert.is_truthy(out:find("opened", 1, true), out)
    assert.equal("700", mode_of(path))
  end)

  it("keeps the mode of a directory that already exists", function()
    assert(os.execute("chmod 0750 " .. H.shquote(t.dir)))
    local s = assert(H.open(t, t.dir))
    assert(s:append("a-1", H.ev("A")))
    assert.equal("750", mode_of(t.dir))
  end)
end)

-- Nothing read from a store or an import is ever run as code: the only
-- calls that compile code in the library are the REPL's, on what its user
-- types, as text only (mode "t": no precompiled chunks).
describe("the source of the library", function()
  local function read(path)
    local f = assert(io.open(path, "r"))
    local s = f:read("a")
    f:close()
    return s
  end

  local function files(dir, pattern)
    local out = {}
    local p = assert(io.popen("ls " .. H.shquote(dir)))
    for name in p:lines() do
      if name:match(pattern) then out[#out + 1] = dir .. "/" .. name end
    end
    p:close()
    table.sort(out)
    return out
  end

  -- Calls of the functions that turn text into code, outside comments.  A
  -- method or field of that name (repo:load, M.load) is not one.
  local COMPILERS = { "load", "loadstring", "loadfile", "dofile", "require" }
  local function compiler_calls(path)
    local hits = {}
    local n = 0
    for line in (read(path) .. "\n"):gmatch("([^\n]*)\n") do
      n = n + 1
      local code = line:gsub("%-%-.*$", "")
      for _, f in ipairs(COMPILERS) do
        for pre in code:gmatch("(.?)%f[%w_]" .. f .. "%s*%(") do
          if pre ~= "." and pre ~= ":" then hits[#hits + 1] = { line = n, text = line, f = f } end
        end
        -- require of anything but a literal module name (passing the
        -- function itself, as in pcall(require, "readline"), is fine)
        if f == "require" then
          for pre, rest in code:gmatch("(.?)%f[%w_]require%f[^%w_]%s*(.?.?)") do
            local arg = rest:gsub("^%(%s*", "")
            if pre ~= "." and pre ~= ":" and not arg:match("^[\"',%)]") then
              hits[#hits + 1] = { line = n, text = line, f = "require(expr)" }
            end
          end
        end
      end
    end
    return hits
  end

  it("compiles code only in the REPL, from what its user types, as text", function()
    local lua_files = files("lua/eventrocks", "%.lua$")
    lua_files[#lua_files + 1] = "bin/eventrocks"
    assert.is_true(#lua_files >= 8, "the scan found too few files")
    local found = {}
    for _, path in ipairs(lua_files) do
      for _, h in ipairs(compiler_calls(path)) do
        if h.f ~= "require" then found[#found + 1] = path .. ":" .. h.line .. ": " .. h.text end
      end
    end
    -- the REPL's two: an expression, then a statement; and the script that
    -- `eventrocks consume --script FILE` names on its command line (the
    -- user runs FILE, as `lua5.4 FILE` would), as text; and the same for
    -- the aggregate definitions `eventrocks ui --aggregates FILE` names
    assert.equal(4, #found, "calls that compile code:\n" .. table.concat(found, "\n"))
    for _, f in ipairs(found) do
      if f:find("^lua/eventrocks/cli%.lua:%d+: ") then
        assert.is_truthy(f:find('loadfile%(args%.script, "t"%)'), f)
      elseif f:find("^lua/eventrocks/ui%.lua:%d+: ") then
        assert.is_truthy(f:find('loadfile%(path, "t"%)'), f)
      else
        assert.is_truthy(f:find("^lua/eventrocks/repl%.lua:%d+: "), f)
        assert.is_truthy(f:find('load%(.*buffer, "=repl", "t", env%)'), f)
      end
    end
  end)

  it("has no C call that compiles or runs Lua text", function()
    for _, path in ipairs(files("lua", "%.c$")) do
      local src = read(path)
      for _, f in ipairs({ "lua_load", "luaL_loadstring", "luaL_loadbuffer", "luaL_loadbufferx",
        "luaL_loadfile", "luaL_loadfilex", "luaL_dostring", "luaL_dofile" }) do
        assert.is_nil(src:find("%f[%w_]" .. f .. "%f[^%w_]"), path .. " calls " .. f)
      end
    end
  end)

  it("finds such a call when there is one (the scan works)", function()
    local tmp = os.tmpname()
    local f = assert(io.open(tmp, "w"))
    f:write("local x = repo:load(1) -- load(comment)\nlocal g = load(bytes)\nlocal h = M.load(2)\n",
      "local m = require(name)\nlocal j = require 'dkjson'\nlocal k = dofile (p)\n")
    f:close()
    local hits = compiler_calls(tmp)
    os.remove(tmp)
    local got = {}
    for _, h in ipairs(hits) do got[#got + 1] = h.line .. ":" .. h.f end
    assert.same({ "2:load", "4:require", "4:require(expr)", "6:dofile" }, got)
  end)
end)
