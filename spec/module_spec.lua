local H = require "helper"
local er = require "eventrocks"

describe("the eventrocks module", function()
  it("is a table with open and uuid functions", function()
    assert.is_table(er)
    assert.is_function(er.open)
    assert.is_function(er.uuid)
  end)

  it("has _VERSION 'eventrocks X.Y.Z'", function()
    assert.is_string(er._VERSION)
    assert.is_truthy(er._VERSION:match("^eventrocks %d+%.%d+%.%d+$"), er._VERSION)
  end)

  it("has the expected-version sentinels", function()
    assert.equal("any", er.ANY)
    assert.equal("no_stream", er.NO_STREAM)
    assert.equal("stream_exists", er.STREAM_EXISTS)
  end)

  it("returns the same module table on a second require", function()
    assert.equal(er, require "eventrocks")
  end)

  describe("uuid()", function()
    it("returns 36 lowercase characters, version 7, variant 10xx", function()
      for _ = 1, 200 do
        local id = er.uuid()
        assert.is_string(id)
        assert.equal(36, #id)
        assert.equal(id:lower(), id)
        assert.is_truthy(id:match(H.UUID7), id)
      end
    end)

    it("differs on every call", function()
      local seen = {}
      for _ = 1, 5000 do
        local id = er.uuid()
        assert.is_nil(seen[id], "repeated id " .. id)
        seen[id] = true
      end
    end)

    it("starts with the current Unix time in milliseconds (time-ordered)", function()
      local before = os.time()
      local id = er.uuid()
      local after = os.time()
      local ms = tonumber(id:sub(1, 8) .. id:sub(10, 13), 16)
      assert.is_true(ms >= (before - 2) * 1000, "timestamp " .. ms .. " before " .. before)
      assert.is_true(ms <= (after + 2) * 1000, "timestamp " .. ms .. " after " .. after)
    end)

    it("sorts later ids after earlier ones across milliseconds", function()
      local a = er.uuid()
      local t0 = os.clock()
      while os.clock() - t0 < 0.005 do end -- spin past the millisecond
      local b = er.uuid()
      assert.is_true(a < b, a .. " !< " .. b)
    end)
  end)
end)

describe("the store's class", function()
  local core = require "eventrocks.core"
  local t = {}
  before_each(function() H.setup(t) end)
  after_each(function() H.teardown(t) end)

  it("keeps methods and metamethods apart, as liolib does", function()
    local mt = getmetatable(t.store)
    assert.equal("eventrocks.store", mt.__name)
    assert.is_function(mt.__gc)
    assert.is_function(mt.__close)
    assert.is_table(mt.__index)
    assert.is_nil(t.store.__gc)
    assert.is_nil(t.store.__close)
    assert.is_function(t.store.append)
  end)

  it("has the domain methods written in Lua, and the internal ones behind an underscore", function()
    for _, m in ipairs { "repository", "projection", "relay" } do assert.is_function(t.store[m], m) end
    for _, m in ipairs { "_txn", "_get", "_scan", "_check", "_set_hook", "_is_read_only", "_wait_idle" } do
      assert.is_function(t.store[m], m)
    end
  end)

  it("is not patched from outside: the core module exports no method table, and stores it opens have the core's methods only", function()
    for _, k in ipairs { "store_methods", "store_metatable", "event_metatable", "txn", "get", "scan", "check",
      "set_hook", "is_read_only", "wait_idle", "sleep", "monotonic", "isatty", "disk_size" } do
      assert.is_nil(core[k], k)
    end
    local dir = H.mkdtemp()
    local plain = assert(core.open(dir))
    assert.is_function(plain.append)
    assert.is_nil(plain.repository)
    assert(plain:append("a-1", { type = "T" }))
    assert.is_nil(getmetatable(plain:event(1)).__tostring)
    plain:close()
    H.rmrf(dir)
    -- events of stores opened by eventrocks.open print with pretty.event
    t.store:append("a-1", { type = "T", data = { n = 1 } })
    assert.truthy(tostring(t.store:event(1)):match("^#1 a%-1@1 T .* {n = 1}$"), tostring(t.store:event(1)))
  end)

  it("refuses a class whose method would shadow a method of the core, and unknown class keys", function()
    local ok, err = pcall(core.opener, { methods = { append = print } })
    assert.is_false(ok)
    assert.truthy(err:find("'append' is a method of the store already", 1, true), err)
    ok, err = pcall(core.opener, { method = {} })
    assert.is_false(ok)
    assert.truthy(err:find("unknown option 'method'", 1, true), err)
    ok, err = pcall(core.opener, { methods = { [1] = print } })
    assert.is_false(ok)
    assert.truthy(err:find("methods must map names to functions", 1, true), err)
  end)

  it("names the caller's line in argument errors of eventrocks.open", function()
    local ok, err = pcall(function() return (er.open(t.dir .. "-x", { bogus = true })) end)
    assert.is_false(ok)
    assert.truthy(err:find("^spec/module_spec.lua:%d+: bad argument #2 to 'open' %(unknown option 'bogus'%)"), err)
  end)
end)

describe("eventrocks.sys", function()
  local sys = require "eventrocks.sys"
  it("tells a terminal from what is not one", function()
    assert.is_false(sys.isatty(1003)) -- not open
    local p = assert(io.popen("script -qec 'lua5.4 -e \"package.path = [[lua/?.lua;]] .. package.path; "
      .. "io.write(tostring(require([[eventrocks.sys]]).isatty(1)))\"' /dev/null", "r"))
    local out = p:read("a")
    p:close()
    assert.truthy(out:find("true", 1, true), out)
    p = assert(io.popen("lua5.4 -e 'package.path = [[lua/?.lua;]] .. package.path; "
      .. "io.write(tostring(require([[eventrocks.sys]]).isatty(1)))' | cat", "r"))
    assert.equal("false", p:read("a"))
    p:close()
  end)
  it("adds up the sizes of a directory's regular files", function()
    local dir = H.mkdtemp()
    local f = assert(io.open(dir .. "/a", "wb")); f:write(("x"):rep(1000)); f:close()
    f = assert(io.open(dir .. "/b", "wb")); f:write(("y"):rep(24)); f:close()
    assert(os.execute("mkdir " .. H.shquote(dir .. "/sub")))
    assert.equal(1024, sys.disk_size(dir))
    local size, err = sys.disk_size(dir .. "/missing")
    assert.is_nil(size)
    assert.truthy(err:find("No such file", 1, true), err)
    H.rmrf(dir)
  end)
end)
