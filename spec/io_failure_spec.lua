-- An I/O failure inside RocksDB (here: the file size limit of `ulimit -f`)
-- comes back from append as nil, err with code "io", writes nothing, and
-- leaves a store that reopens consistent and accepts appends again.
local H = require "helper"

describe("an append that fails to write", function()
  local t = {}
  before_each(function() H.setup(t, false) end)
  after_each(function() H.teardown(t) end)

  it("returns nil, err with code io and nothing of it is stored", function()
    local code = ([[
      local s = assert(er.open(%q))
      local big = string.rep("x", 300000)
      for i = 1, 50 do
        local v, err = s:append("s-1", { { type = "Big", data = big }, { type = "Big2", data = i } })
        if not v then
          print("FAILED", i, err.code, tostring(err) == err.message)
          print("READ", s:version("s-1"), s:last_position())
          break
        end
      end
      s:close()
    ]]):format(t.dir)
    -- SIGXFSZ ignored: the write gets EFBIG instead of killing the process
    local cmd = "bash -c " .. H.shquote("trap '' XFSZ; ulimit -f 2000; " .. H.lua_cmd(code))
    local p = assert(io.popen(cmd, "r"))
    local out = p:read("a")
    p:close()
    local i, errcode, same = out:match("FAILED%s+(%d+)%s+(%S+)%s+(%S+)")
    assert.is_not_nil(i, out)
    assert.equal("io", errcode)
    assert.equal("true", same)
    local v, last = out:match("READ%s+(%d+)%s+(%d+)")
    i = tonumber(i)
    assert.is_true(i > 1, "the limit should allow a few appends first")
    assert.equal(2 * (i - 1), tonumber(v))
    assert.equal(2 * (i - 1), tonumber(last))

    -- reopened without the limit: exactly the acknowledged appends, whole
    local s = assert(H.open(t, t.dir))
    assert.equal(2 * (i - 1), s:version("s-1"))
    local n = 0
    for ev in s:all() do
      n = n + 1
      assert.equal(n, ev.position)
      assert.equal(n, ev.version)
      assert.equal(n % 2 == 1 and "Big" or "Big2", ev.type)
    end
    assert.equal(2 * (i - 1), n)
    local v2, p2 = s:append("s-1", { type = "After" }, { expected = n })
    assert.equal(n + 1, v2)
    assert.equal(n + 1, p2)
  end)
end)
