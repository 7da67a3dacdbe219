-- store:backup(dir): a consistent copy of an open, writable store.  (The
-- copy taken beside a writer thread at full speed is core/test/test_backup.c;
-- the command is in cli_spec.)
local H = require "helper"
local er = require "eventrocks"

describe("store:backup", function()
  local t = {}
  before_each(function() H.setup(t) end)
  after_each(function() H.teardown(t) end)

  local function everything(store)
    local out = {}
    for ev in store:all() do out[#out + 1] = { ev.id, ev.stream, ev.version, ev.position, ev.type, ev.time, ev.data } end
    return out
  end

  it("returns the last position the copy holds; the copy opens as a normal store with everything in it", function()
    for i = 1, 50 do assert(t.store:append("acct-" .. i % 7, { type = "Deposited", data = { n = i } })) end
    local Acct = er.aggregate("acct", { init = function() return { n = 0 } end, snapshot_every = 2,
      apply = { Deposited = function(s, d) s.n = s.n + d.n end } })
    local repo = t.store:repository(Acct)
    local a = repo:load("x")
    a:raise("Deposited", { n = 1 })
    a:raise("Deposited", { n = 2 })
    assert(repo:save(a))
    local p = t.store:projection("sum", { handlers = { Deposited = function(v, ev) v:put("n", (v:get("n") or 0) + ev.data.n) end } })
    assert(p:run())
    local copy_dir = t.dir .. "-backup"
    local position = assert(t.store:backup(copy_dir))
    assert.equal(52, position)
    -- the store goes on
    assert(t.store:append("after-1", { type = "Later" }))
    local copy = assert(er.open(copy_dir, { create = false }))
    assert.equal(52, copy:last_position())
    local mine = everything(t.store)
    table.remove(mine)
    assert.same(mine, everything(copy))
    assert.equal(0, (copy:_check()))
    -- snapshots, checkpoints and read models came along
    assert.equal(3, copy:repository(Acct):load("x").state.n)
    local cp = copy:projection("sum", { handlers = { Deposited = function() end } })
    assert.equal(p:position(), cp:position())
    assert.equal(p:get("n"), cp:get("n"))
    copy:close()
    H.rmrf(copy_dir)
  end)

  it("refuses a directory that exists, writing nothing into it", function()
    local dir = H.mkdtemp()
    local pos, err = t.store:backup(dir)
    assert.is_nil(pos)
    H.check_err(err, "invalid")
    assert.truthy(err.message:find("exists already", 1, true), err.message)
    local p = io.popen("ls -A " .. H.shquote(dir))
    assert.equal("", p:read("a"))
    p:close()
    H.rmrf(dir)
  end)

  it("refuses a read-only handle, which cannot flush the writer's memtables", function()
    assert(t.store:append("a-1", { type = "A" }))
    local ro = assert(er.open(t.dir, { read_only = true }))
    local pos, err = ro:backup(t.dir .. "-ro")
    assert.is_nil(pos)
    H.check_err(err, "invalid")
    assert.truthy(err.message:find("read-only", 1, true), err.message)
    ro:close()
    assert.is_false(H.exists(t.dir .. "-ro"))
  end)

  it("raises on a directory that is not a string", function()
    assert.has_error(function() t.store:backup() end)
    assert.has_error(function() t.store:backup({}) end)
  end)
end)
