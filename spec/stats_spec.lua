-- store:stats(): what a store holds and takes on disk.
local H = require "helper"
local er = require "eventrocks"

describe("store:stats", function()
  local t = {}
  before_each(function() H.setup(t) end)
  after_each(function() H.teardown(t) end)

  it("counts events and streams exactly, and sizes the store and each family", function()
    local empty = t.store:stats()
    assert.same({ 0, 0, 0 }, { empty.events, empty.streams, empty.last_position })
    for i = 1, 300 do assert(t.store:append("acct-" .. i % 7, { type = "T", data = { pad = ("x"):rep(100) } })) end
    assert(t.store:append("other-1", { { type = "A" }, { type = "B" } }))
    local st = t.store:stats()
    assert.equal(302, st.events)
    assert.equal(302, st.last_position)
    assert.equal(8, st.streams)
    assert.is_true(st.bytes_on_disk > 0)
    for _, name in ipairs { "default", "log", "streams", "heads", "ids", "snapshots", "checkpoints", "views" } do
      local f = st.families[name]
      assert.is_table(f, name)
      assert.equal("integer", math.type(f.bytes), name)
      assert.equal("integer", math.type(f.keys), name)
    end
    -- the log's estimate is of the right size, and its bytes hold the data
    assert.is_true(st.families.log.keys >= 250 and st.families.log.keys <= 400, st.families.log.keys)
    assert.is_true(st.families.log.bytes > 300 * 100, st.families.log.bytes)
  end)

  it("works on a read-only handle beside the writer", function()
    assert(t.store:append("a-1", { type = "A" }))
    t.store:close()
    local w = assert(er.open(t.dir))
    assert(w:append("a-2", { type = "A" }))
    local ro = assert(er.open(t.dir, { read_only = true }))
    local st = ro:stats()
    assert.equal(2, st.events)
    assert.equal(2, st.streams)
    ro:close()
    w:close()
  end)

  it("raises on a closed store", function()
    t.store:close()
    assert.has_error(function() t.store:stats() end, "attempt to use a closed store")
  end)
end)
