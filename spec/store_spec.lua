local H = require "helper"
local er = require "eventrocks"

describe("a store", function()
  local t = {}
  before_each(function() H.setup(t) end)
  after_each(function() H.teardown(t) end)

  describe("when empty", function()
    it("has last_position 0", function()
      assert.equal(0, t.store:last_position())
      assert.equal("integer", math.type(t.store:last_position()))
    end)

    it("reports version 0 for any stream", function()
      assert.equal(0, t.store:version("product-1"))
      assert.equal("integer", math.type(t.store:version("product-1")))
    end)

    it("has no event at position 1", function()
      assert.is_nil(t.store:event(1))
    end)

    it("lists no streams and yields no events", function()
      assert.same({}, H.collect_streams(t.store:streams()))
      assert.same({}, H.collect(t.store:all()))
      assert.same({}, H.collect(t.store:read("product-1")))
    end)
  end)

  describe("positions and versions", function()
    it("start at 1 and are contiguous per stream, global across streams", function()
      local s = t.store
      assert.same({ 1, 1 }, { s:append("a-1", H.ev("A")) })
      assert.same({ 1, 2 }, { s:append("b-1", H.ev("B")) })
      assert.same({ 2, 3 }, { s:append("a-1", H.ev("A")) })
      assert.same({ 4, 5 }, { s:append("a-1", H.evs(2)) })
      assert.same({ 2, 6 }, { s:append("b-1", H.ev("B")) })
      assert.equal(4, s:version("a-1"))
      assert.equal(2, s:version("b-1"))
      assert.equal(0, s:version("c-1"))
      assert.equal(6, s:last_position())
      local evs = H.collect(s:all())
      assert.same({ 1, 2, 3, 4, 5, 6 }, H.pluck(evs, "position"))
      assert.same({ "a-1", "b-1", "a-1", "a-1", "a-1", "b-1" }, H.pluck(evs, "stream"))
      assert.same({ 1, 1, 2, 3, 4, 2 }, H.pluck(evs, "version"))
    end)

    it("returns integers from append, version and last_position", function()
      local v, p = t.store:append("a-1", H.ev("A", 1))
      assert.equal("integer", math.type(v))
      assert.equal("integer", math.type(p))
      assert.equal("integer", math.type(t.store:version("a-1")))
      assert.equal("integer", math.type(t.store:last_position()))
    end)
  end)

  describe("event(position)", function()
    it("returns the event stored at that position", function()
      t.store:append("a-1", H.ev("First", { n = 1 }))
      t.store:append("b-7", { H.ev("Second", "two", { m = true }), H.ev("Third", 3) })
      local ev = t.store:event(2)
      assert.is_table(ev)
      assert.equal(2, ev.position)
      assert.equal("b-7", ev.stream)
      assert.equal(1, ev.version)
      assert.equal("Second", ev.type)
      assert.equal("two", ev.data)
      H.assert_same({ m = true }, ev.metadata)
      assert.equal("Third", t.store:event(3).type)
      assert.equal("First", t.store:event(1).type)
    end)

    it("returns nil past the last position", function()
      t.store:append("a-1", H.evs(2))
      assert.is_table(t.store:event(2))
      assert.is_nil(t.store:event(3))
      assert.is_nil(t.store:event(1000000))
    end)

    it("gives the same event as the iterators", function()
      t.store:append("a-1", H.ev("A", { x = { 1.5, "y" } }, { who = "me" }))
      local from_all = H.collect(t.store:all())[1]
      local from_read = H.collect(t.store:read("a-1"))[1]
      local at = t.store:event(1)
      H.assert_same(from_all, at)
      H.assert_same(from_read, at)
    end)
  end)

  describe("streams()", function()
    local names = { "b-1", "a-10", "a-2", "a-1", "A-1", "a", "\xff-1", "\xc3\xbc-1", "ab", "a-1-x" }

    before_each(function()
      for i, n in ipairs(names) do t.store:append(n, H.evs(i)) end
    end)

    it("yields every stream with its version in byte order of the id", function()
      local got = H.collect_streams(t.store:streams())
      for i = 2, #got do
        local a, b = got[i - 1][1], got[i][1]
        local j = 1
        while j <= #a and j <= #b and a:byte(j) == b:byte(j) do j = j + 1 end
        local less = (j > #a and #a < #b) or (j <= #a and j <= #b and a:byte(j) < b:byte(j))
        assert.is_true(less, string.format("%q listed before %q", a, b))
      end
      assert.equal(#names, #got)
      assert.same({ "A-1", "a", "a-1", "a-1-x", "a-10", "a-2", "ab", "b-1", "\xc3\xbc-1", "\xff-1" },
        H.pluck(got, 1))
      local want = {}
      for i, n in ipairs(names) do want[n] = i end
      for _, sv in ipairs(got) do
        assert.equal(want[sv[1]], sv[2], sv[1])
        assert.equal("integer", math.type(sv[2]))
      end
    end)

    it("filters by prefix", function()
      local got = H.collect_streams(t.store:streams({ prefix = "a-" }))
      assert.same({ { "a-1", 4 }, { "a-1-x", 10 }, { "a-10", 2 }, { "a-2", 3 } }, got)
    end)

    it("with an empty prefix lists everything", function()
      assert.equal(#names, #H.collect_streams(t.store:streams({ prefix = "" })))
    end)

    it("with a prefix that matches nothing lists nothing", function()
      assert.same({}, H.collect_streams(t.store:streams({ prefix = "zzz" })))
    end)

    it("matches non-ASCII prefixes byte-wise", function()
      assert.same({ { "\xff-1", 7 } }, H.collect_streams(t.store:streams({ prefix = "\xff" })))
      assert.same({ { "\xc3\xbc-1", 8 } }, H.collect_streams(t.store:streams({ prefix = "\xc3" })))
    end)

    it("reports the current version after more appends", function()
      t.store:append("a", H.evs(3))
      local got = H.collect_streams(t.store:streams({ prefix = "a" }))
      assert.same({ "a", 9 }, got[1])
      assert.equal(6, #got) -- a, a-1, a-1-x, a-10, a-2, ab
    end)
  end)

  describe("reopened", function()
    it("keeps events and continues positions and versions", function()
      local s = t.store
      s:append("a-1", { H.ev("A", 1), H.ev("A", 2.0) })
      s:append("b-1", H.ev("B", { k = "v" }, { m = 1 }))
      local before = H.collect(s:all())
      s:close()
      local s2 = assert(H.open(t, t.dir))
      assert.equal(3, s2:last_position())
      assert.equal(2, s2:version("a-1"))
      assert.equal(1, s2:version("b-1"))
      H.assert_same(before, H.collect(s2:all()))
      assert.same({ 3, 4 }, { s2:append("a-1", H.ev("A", 3)) })
      assert.same({ 2, 5 }, { s2:append("b-1", H.ev("B")) })
      assert.same({ 1, 6 }, { s2:append("c-1", H.ev("C")) })
      assert.same({ { "a-1", 3 }, { "b-1", 2 }, { "c-1", 1 } }, H.collect_streams(s2:streams()))
    end)

    it("keeps idempotent-retry knowledge", function()
      local ids = { er.uuid(), er.uuid() }
      local v, p = t.store:append("a-1", { H.ev("A", 1, nil, ids[1]), H.ev("A", 2, nil, ids[2]) },
        { expected = er.NO_STREAM })
      assert.same({ 2, 2 }, { v, p })
      t.store:close()
      local s2 = assert(H.open(t, t.dir))
      assert.same({ 2, 2 }, { s2:append("a-1", { H.ev("A", 1, nil, ids[1]), H.ev("A", 2, nil, ids[2]) },
        { expected = er.NO_STREAM }) })
      assert.equal(2, s2:last_position())
      local r, err = s2:append("b-1", H.ev("B", 1, nil, ids[1]))
      assert.is_nil(r)
      H.check_err(err, "duplicate_event")
    end)
  end)
end)

describe("er.open", function()
  local t = {}
  before_each(function() H.setup(t, false) end)
  after_each(function() H.teardown(t) end)

  it("creates a missing directory by default", function()
    local path = t.dir .. "/new"
    local s, err = H.open(t, path)
    assert.is_truthy(s, err and err.message)
    assert.is_true(H.exists(path))
    assert.same({ 1, 1 }, { s:append("a-1", H.ev("A")) })
  end)

  it("opens an existing empty directory", function()
    local s, err = H.open(t, t.dir)
    assert.is_truthy(s, err and err.message)
    assert.same({ 1, 1 }, { s:append("a-1", H.ev("A")) })
  end)

  it("with create = false on a missing directory returns nil, err 'not_found'", function()
    local path = t.dir .. "/missing"
    local s, err = H.open(t, path, { create = false })
    assert.is_nil(s)
    H.check_err(err, "not_found")
    assert.is_false(H.exists(path))
  end)

  it("with create = false opens an existing store", function()
    local s = assert(H.open(t, t.dir))
    s:append("a-1", H.ev("A", "x"))
    s:close()
    local s2, err = H.open(t, t.dir, { create = false })
    assert.is_truthy(s2, err and err.message)
    assert.equal("x", s2:event(1).data)
  end)

  it("read-only on a missing directory returns nil, err 'not_found'", function()
    local s, err = H.open(t, t.dir .. "/missing", { read_only = true })
    assert.is_nil(s)
    H.check_err(err, "not_found")
  end)

  it("on a path that is a regular file returns nil, err ('io' or 'invalid')", function()
    local path = t.dir .. "/file"
    local f = assert(io.open(path, "w"))
    f:write("not a store\n")
    f:close()
    local s, err = H.open(t, path)
    assert.is_nil(s)
    H.check_err(err, { "io", "invalid" })
    local f2 = assert(io.open(path, "r"))
    assert.equal("not a store\n", f2:read("a"))
    f2:close()
  end)

  it("on a directory below a regular file returns nil, err", function()
    local path = t.dir .. "/file"
    assert(io.open(path, "w")):close()
    local s, err = H.open(t, path .. "/sub")
    assert.is_nil(s)
    H.check_err(err, { "io", "invalid", "not_found" })
  end)

  describe("with sync = true", function()
    it("appends, reads and persists", function()
      local s, err = H.open(t, t.dir, { sync = true })
      assert.is_truthy(s, err and err.message)
      assert.same({ 1, 1 }, { s:append("a-1", H.ev("A", 1)) })
      assert.same({ 3, 3 }, { s:append("a-1", H.evs(2)) })
      s:close()
      local s2 = assert(H.open(t, t.dir))
      assert.equal(3, s2:last_position())
      assert.equal(1, s2:event(1).data)
    end)
  end)

  describe("read_only = true", function()
    before_each(function()
      local s = assert(H.open(t, t.dir))
      s:append("a-1", { H.ev("A", 1), H.ev("A", 2) })
      s:append("b-1", H.ev("B", 3))
      s:close()
    end)

    it("can read everything", function()
      local s, err = H.open(t, t.dir, { read_only = true })
      assert.is_truthy(s, err and err.message)
      assert.equal(3, s:last_position())
      assert.equal(2, s:version("a-1"))
      assert.same({ 1, 2 }, H.pluck(H.collect(s:read("a-1")), "data"))
      assert.same({ 1, 2, 3 }, H.pluck(H.collect(s:all()), "data"))
      assert.equal(3, s:event(3).data)
      assert.same({ { "a-1", 2 }, { "b-1", 1 } }, H.collect_streams(s:streams()))
    end)

    it("append returns nil, err 'invalid' and writes nothing", function()
      local s = assert(H.open(t, t.dir, { read_only = true }))
      local v, err = s:append("a-1", H.ev("A", 9))
      assert.is_nil(v)
      H.check_err(err, "invalid")
      assert.equal(3, s:last_position())
      assert.equal(2, s:version("a-1"))
      s:close()
      local w = assert(H.open(t, t.dir))
      assert.equal(3, w:last_position())
    end)

    it("opens beside a writer of the same directory", function()
      local w = assert(H.open(t, t.dir))
      local r, err = H.open(t, t.dir, { read_only = true })
      assert.is_truthy(r, err and err.message)
      assert.equal(3, r:last_position())
      assert.same({ 3, 4 }, { w:append("a-1", H.ev("A", 4)) })
      assert.equal(4, w:last_position())
    end)

    it("does not take the write lock", function()
      local r = assert(H.open(t, t.dir, { read_only = true }))
      local w, err = H.open(t, t.dir)
      assert.is_truthy(w, err and err.message)
      assert.is_truthy(r)
    end)
  end)

  describe("on a directory already open for writing", function()
    it("returns nil, err 'locked' in the same process", function()
      local s1 = assert(H.open(t, t.dir))
      local s2, err = H.open(t, t.dir)
      assert.is_nil(s2)
      H.check_err(err, "locked")
      assert.same({ 1, 1 }, { s1:append("a-1", H.ev("A")) })
    end)

    it("succeeds again once the first handle is closed", function()
      local s1 = assert(H.open(t, t.dir))
      s1:append("a-1", H.ev("A"))
      s1:close()
      local s2, err = H.open(t, t.dir)
      assert.is_truthy(s2, err and err.message)
      assert.equal(1, s2:version("a-1"))
    end)

    it("returns 'locked' in another process while this one holds it", function()
      local s1 = assert(H.open(t, t.dir))
      local out = H.run_child(string.format(
        'local s, err = er.open(%q); print(s and "opened" or err.code)', t.dir))
      assert.equal("locked", (out:gsub("%s+$", "")))
      s1:close()
      out = H.run_child(string.format(
        'local s, err = er.open(%q); print(s and "opened" or err.code)', t.dir))
      assert.equal("opened", (out:gsub("%s+$", "")))
    end)

    it("returns 'locked' here while another process holds it", function()
      local p = assert(io.popen(H.lua_cmd(string.format(
        'local s = assert(er.open(%q)); io.write("ready\\n"); io.stdout:flush(); ' ..
        'os.execute("sleep 1"); s:close(); io.write("done\\n")', t.dir)), "r"))
      local line = p:read("l")
      assert.equal("ready", line)
      local s, err = er.open(t.dir)
      if s then s:close() end
      assert.is_nil(s)
      H.check_err(err, "locked")
      assert.equal("done", p:read("l"))
      p:close()
      local s2, err2 = H.open(t, t.dir)
      assert.is_truthy(s2, err2 and err2.message)
    end)
  end)
end)
