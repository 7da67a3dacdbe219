-- er.open and the directory it is given: a directory of other files is
-- never turned into a store, several processes creating one store at once
-- get a store or `locked` (never a half-made store), and a store process
-- that exceeds the file size limit (ulimit -f) gets `io`, not SIGXFSZ.
local H = require "helper"
local er = H.er

local function listing(dir)
  local p = assert(io.popen("ls -A " .. H.shquote(dir)))
  local names = {}
  for l in p:lines() do names[#names + 1] = l end
  p:close()
  table.sort(names)
  return names
end

describe("er.open of an existing directory", function()
  local t = {}
  before_each(function() H.setup(t, false) end)
  after_each(function() H.teardown(t) end)

  it("that holds other files returns nil, err 'invalid' and writes nothing into it", function()
    local f = assert(io.open(t.dir .. "/notes.txt", "w"))
    f:write("my notes\n")
    f:close()
    assert(os.execute("mkdir " .. H.shquote(t.dir .. "/photos")))
    local s, err = er.open(t.dir)
    assert.is_nil(s)
    H.check_err(err, "invalid")
    assert.matches("not an eventrocks store", err.message, 1, true)
    assert.matches(t.dir, err.message, 1, true)
    assert.same({ "notes.txt", "photos" }, listing(t.dir))
    -- read-only: not found there, nothing written either
    local r, rerr = er.open(t.dir, { read_only = true })
    assert.is_nil(r)
    H.check_err(rerr, "not_found")
    assert.same({ "notes.txt", "photos" }, listing(t.dir))
  end)

  it("that is empty becomes a store", function()
    local s = assert(H.open(t, t.dir))
    assert.equal(1, (s:append("a-1", H.ev("A", 1))))
  end)

  it("that holds a store opens it, whatever else RocksDB keeps there", function()
    local s = assert(H.open(t, t.dir))
    assert(s:append("a-1", H.ev("A", 1)))
    s:close()
    local s2 = assert(H.open(t, t.dir))
    assert.equal(1, s2:version("a-1"))
  end)
end)

describe("several processes creating one store at once", function()
  it("each gets the store or 'locked', never a half-made store", function()
    local codes = {}
    for round = 1, 6 do
      local base = H.mkdtemp()
      local dir = base .. "/store"
      local code = string.format([[
        local s, err = er.open(%q)
        if s then
          s:append("a-1", { type = "A" })
          print("ok")
          s:close()
        else
          print("err", err.code, err.message)
        end
      ]], dir)
      local cmds = {}
      for i = 1, 6 do cmds[i] = "(" .. H.lua_cmd(code) .. ") >" .. H.shquote(base .. "/out" .. i) .. " &" end
      assert(os.execute(table.concat(cmds, " ") .. " wait"))
      local oks = 0
      for i = 1, 6 do
        local f = assert(io.open(base .. "/out" .. i))
        local out = f:read("a")
        f:close()
        if out:match("^ok") then
          oks = oks + 1
        else
          local c = out:match("^err\t(%S+)")
          assert.equal("locked", c, "round " .. round .. ": " .. out)
          codes[c] = (codes[c] or 0) + 1
        end
      end
      assert.is_true(oks >= 1)
      local s = assert(er.open(dir))
      assert.equal(oks, s:version("a-1"))
      s:close()
      H.rmrf(base)
    end
  end)
end)

describe("a file size limit (ulimit -f)", function()
  local t = {}
  before_each(function() H.setup(t, false) end)
  after_each(function() H.teardown(t) end)

  it("makes appends fail with 'io' instead of killing the process with SIGXFSZ", function()
    local code = ([[
      local s = assert(er.open(%q))
      local big = string.rep("x", 300000)
      for i = 1, 50 do
        local v, err = s:append("s-1", { type = "Big", data = big })
        if not v then print("FAILED", i, err.code) break end
      end
      s:close()
      print("closed")
    ]]):format(t.dir)
    -- the shell leaves SIGXFSZ at its default: the store ignores it itself
    local p = assert(io.popen("bash -c " .. H.shquote("ulimit -f 2000; " .. H.lua_cmd(code)), "r"))
    local out = p:read("a")
    local _, how, status = p:close()
    assert.equal("exit", how, out)
    assert.equal(0, status, out)
    assert.matches("FAILED\t%d+\tio", out)
    assert.matches("closed", out, 1, true)
  end)
end)
