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
