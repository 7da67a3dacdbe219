-- An I/O failure inside RocksDB (here: the file size limit of `ulimit -f`)
-- comes back from append as nil, err with code "io", writes nothing, and
-- leaves a store that reopens consistent and accepts appends again.
local H = require "helper"
local core = require "eventrocks.core"

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

-- Transactions fail whole too: a repository save (events and snapshot) and
-- a projection batch (view writes and checkpoint) that hit the limit leave
-- nothing of themselves, and the handle that failed still reads.
describe("a transaction that fails to write", function()
  local t = {}
  before_each(function() H.setup(t, false) end)
  after_each(function() H.teardown(t) end)

  local function limited(code)
    local cmd = "bash -c " .. H.shquote("trap '' XFSZ; ulimit -f 2000; " .. H.lua_cmd(code))
    local p = assert(io.popen(cmd, "r"))
    local out = p:read("a")
    local _, how, status = p:close()
    assert.equal("exit", how, out)
    assert.equal(0, status, out)
    return out
  end

  it("a repository save with its snapshot: neither is stored, the store reopens consistent", function()
    local out = limited(([[
      local s = assert(er.open(%q))
      local Acct = er.aggregate("acct", {
        init = function() return { n = 0, blob = "" } end,
        apply = { Grown = function(state, data) state.n = state.n + 1; state.blob = data end },
        snapshot_every = 1,
      })
      local repo = s:repository(Acct)
      local saved = 0
      for i = 1, 50 do
        local a = repo:load("1")
        a:raise("Grown", string.rep(string.char(64 + i %% 26), 100000))
        local v, err = repo:save(a)
        if not v then
          print("FAILED", err.code, #a:pending())
          break
        end
        saved = v
      end
      print("SAVED", saved)
      print("READS", repo:load("1").state.n, s:version("acct-1"))
      local v2, err2 = s:append("other-1", { type = "X" })
      print("WRITES", v2, err2 and err2.code)
      s:close()
    ]]):format(t.dir))
    assert.is_truthy(out:find("FAILED\tio\t1", 1, true), out)
    local saved = tonumber(out:match("SAVED\t(%d+)"))
    assert.is_true(saved >= 1, out)
    assert.is_truthy(out:find("READS\t" .. saved .. "\t" .. saved, 1, true), out)
    -- the failed handle refuses further writes (RocksDB stops after a WAL
    -- write fails); a new open takes them again
    assert.is_truthy(out:find("WRITES\tnil\tio", 1, true), out)

    local s = assert(H.open(t, t.dir))
    assert.equal(saved, s:version("acct-1"))
    assert.equal(saved, s:last_position())
    local snap = s:_get("snapshots", "acct-1")
    assert.equal(saved, snap.version)
    assert.equal(saved, snap.state.n)
    assert.equal(0, (s:_check()))
    assert.same({ 1, saved + 1 }, { s:append("other-1", { type = "X" }) })
  end)

  it("a projection batch: neither its view writes nor its checkpoint are stored, and it resumes exactly once",
    function()
      local s = assert(H.open(t, t.dir))
      for i = 1, 40 do assert(s:append("s-" .. i, { type = "E", data = i })) end
      s:close()
      local spec = [[{ handlers = { E = function(view, ev)
        view:put(ev.stream, { n = (view:get(ev.stream) or { n = 0 }).n + 1, pad = string.rep("p", 100000) })
      end } }]]
      local out = limited(([[
        local s = assert(er.open(%q))
        local p = s:projection("wide", %s)
        local n, err = p:run({ batch = 4 })
        print("RUN", n, err and err.code)
        print("AT", p:position())
        s:close()
      ]]):format(t.dir, spec))
      assert.is_truthy(out:find("RUN\tnil\tio", 1, true), out)
      local at = tonumber(out:match("AT\t(%d+)"))
      assert.is_true(at % 4 == 0 and at < 40, out)

      s = assert(H.open(t, t.dir))
      local p = s:projection("wide", { handlers = { E = function(view, ev) -- the same as the child's
        view:put(ev.stream, { n = (view:get(ev.stream) or { n = 0 }).n + 1, pad = string.rep("p", 100000) })
      end } })
      assert.equal(at, p:position())
      local rows = 0
      for key, row in p:each() do
        rows = rows + 1
        assert.equal(1, row.n, key)
        assert.is_true(tonumber(key:match("s%-(%d+)")) <= at, key)
      end
      assert.equal(at, rows)
      assert.same({ 40 - at, 40 }, { p:run({ batch = 4 }) })
      for i = 1, 40 do assert.equal(1, p:get("s-" .. i).n) end
      assert.equal(0, (s:_check()))
    end)
end)
