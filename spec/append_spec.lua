local H = require "helper"
local er = require "eventrocks"

describe("store:append", function()
  local t = {}
  before_each(function() H.setup(t) end)
  after_each(function() H.teardown(t) end)

  describe("events", function()
    it("accepts a single event table and returns version, position", function()
      local v, p = t.store:append("s-1", { type = "Created", data = { n = 1 } })
      assert.equal(1, v)
      assert.equal(1, p)
      local ev = t.store:event(1)
      assert.equal("Created", ev.type)
      H.assert_same({ n = 1 }, ev.data)
    end)

    it("accepts an array and returns version, position of the last event", function()
      t.store:append("other-1", H.ev("X"))
      local v, p = t.store:append("s-1", { H.ev("A", 1), H.ev("B", 2), H.ev("C", 3) })
      assert.equal(3, v)
      assert.equal(4, p)
      local evs = H.collect(t.store:read("s-1"))
      assert.same({ "A", "B", "C" }, H.pluck(evs, "type"))
      assert.same({ 1, 2, 3 }, H.pluck(evs, "version"))
      assert.same({ 2, 3, 4 }, H.pluck(evs, "position"))
      assert.same({ 1, 2, 3 }, H.pluck(evs, "data"))
    end)

    it("accepts a one-element array", function()
      assert.same({ 1, 1 }, { t.store:append("s-1", { H.ev("A") }) })
    end)

    it("stores many events of one append with contiguous versions", function()
      local v, p = t.store:append("s-1", H.evs(1000))
      assert.same({ 1000, 1000 }, { v, p })
      local evs = H.collect(t.store:read("s-1"))
      assert.equal(1000, #evs)
      for i, ev in ipairs(evs) do
        assert.equal(i, ev.version)
        assert.equal(i, ev.data.i)
      end
    end)

    it("raises on an empty events array and writes nothing", function()
      H.raises_with(function() t.store:append("s-1", {}) end, "bad argument #2 to 'append'")
      assert.same({ last = 0, version = 0 }, H.state(t.store, "s-1"))
    end)

    it("accepts a type of 1024 bytes", function()
      local ty = ("T"):rep(1024)
      t.store:append("s-1", H.ev(ty))
      assert.equal(ty, t.store:event(1).type)
    end)

    it("does not store a type containing NUL", function()
      local ok, r = pcall(t.store.append, t.store, "s-1", H.ev("A\0B"))
      if ok then assert.is_nil(r) end
      assert.same({ last = 0, version = 0 }, H.state(t.store, "s-1"))
    end)
  end)

  describe("ids", function()
    it("generates a UUID v7 for each event without one", function()
      t.store:append("s-1", H.evs(3))
      local evs = H.collect(t.store:read("s-1"))
      local seen = {}
      for _, ev in ipairs(evs) do
        assert.is_true(H.is_uuid7(ev.id), tostring(ev.id))
        assert.is_nil(seen[ev.id])
        seen[ev.id] = true
      end
    end)

    it("keeps a given id", function()
      local id = er.uuid()
      t.store:append("s-1", H.ev("A", nil, nil, id))
      assert.equal(id, t.store:event(1).id)
    end)

    it("accepts a UUID that is not version 7", function()
      local id = "123e4567-e89b-42d3-a456-426614174000"
      t.store:append("s-1", H.ev("A", nil, nil, id))
      assert.equal(id, t.store:event(1).id)
    end)

    it("gives the same event table appended twice without id two different ids", function()
      local e = H.ev("A", 1)
      assert.same({ 2, 2 }, { t.store:append("s-1", { e, e }) })
      local a, b = t.store:event(1), t.store:event(2)
      assert.is_true(H.is_uuid7(a.id) and H.is_uuid7(b.id))
      assert.are_not.equal(a.id, b.id)
      assert.same({ 1, 1 }, { a.data, b.data })
    end)

    it("refuses the same id twice in one append, writing nothing", function()
      local id = er.uuid()
      local v, err = t.store:append("s-1", { H.ev("A", 1, nil, id), H.ev("A", 2, nil, id) })
      assert.is_nil(v)
      H.check_err(err, "duplicate_event")
      assert.same({ last = 0, version = 0 }, H.state(t.store, "s-1"))
    end)

    it("refuses an id already used in another stream", function()
      local id = er.uuid()
      t.store:append("s-1", H.ev("A", 1, nil, id))
      local v, err = t.store:append("s-2", H.ev("A", 2, nil, id))
      assert.is_nil(v)
      H.check_err(err, "duplicate_event")
      assert.same({ last = 1, version = 0 }, H.state(t.store, "s-2"))
    end)
  end)

  describe("opts.expected", function()
    it("defaults to ANY", function()
      assert.same({ 1, 1 }, { t.store:append("s-1", H.ev("A")) })
      assert.same({ 2, 2 }, { t.store:append("s-1", H.ev("A")) })
      assert.same({ 3, 3 }, { t.store:append("s-1", H.ev("A"), {}) })
    end)

    it("ANY accepts an absent and an existing stream", function()
      assert.same({ 1, 1 }, { t.store:append("s-1", H.ev("A"), { expected = er.ANY }) })
      assert.same({ 2, 2 }, { t.store:append("s-1", H.ev("A"), { expected = er.ANY }) })
    end)

    it("NO_STREAM accepts an absent stream", function()
      assert.same({ 1, 1 }, { t.store:append("s-1", H.ev("A"), { expected = er.NO_STREAM }) })
    end)

    it("NO_STREAM refuses an existing stream", function()
      t.store:append("s-1", H.evs(2))
      local v, err = t.store:append("s-1", H.ev("A"), { expected = er.NO_STREAM })
      assert.is_nil(v)
      H.check_err(err, "wrong_expected_version")
      assert.equal("no_stream", err.expected)
      assert.equal(2, err.actual)
      assert.equal("s-1", err.stream)
      assert.same({ last = 2, version = 2 }, H.state(t.store, "s-1"))
    end)

    it("STREAM_EXISTS refuses an absent stream", function()
      local v, err = t.store:append("s-1", H.ev("A"), { expected = er.STREAM_EXISTS })
      assert.is_nil(v)
      H.check_err(err, "wrong_expected_version")
      assert.equal("stream_exists", err.expected)
      assert.equal(0, err.actual)
      assert.equal("integer", math.type(err.actual))
      assert.equal("s-1", err.stream)
      assert.same({ last = 0, version = 0 }, H.state(t.store, "s-1"))
    end)

    it("STREAM_EXISTS accepts an existing stream", function()
      t.store:append("s-1", H.ev("A"))
      assert.same({ 2, 2 }, { t.store:append("s-1", H.ev("A"), { expected = er.STREAM_EXISTS }) })
    end)

    it("0 accepts an absent stream", function()
      assert.same({ 1, 1 }, { t.store:append("s-1", H.ev("A"), { expected = 0 }) })
    end)

    it("an exact version accepts a stream at that version", function()
      t.store:append("s-1", H.evs(3))
      assert.same({ 5, 5 }, { t.store:append("s-1", H.evs(2), { expected = 3 }) })
      assert.same({ 6, 6 }, { t.store:append("s-1", H.ev("A"), { expected = 5 }) })
    end)

    it("an exact version refuses any other version", function()
      t.store:append("s-1", H.evs(3))
      for _, e in ipairs({ 0, 1, 2, 4, 100 }) do
        local v, err = t.store:append("s-1", H.ev("A"), { expected = e })
        assert.is_nil(v)
        H.check_err(err, "wrong_expected_version")
        assert.equal(e, err.expected)
        assert.equal("integer", math.type(err.expected))
        assert.equal(3, err.actual)
        assert.equal("integer", math.type(err.actual))
        assert.equal("s-1", err.stream)
      end
      assert.same({ last = 3, version = 3 }, H.state(t.store, "s-1"))
    end)

    it("a positive exact version refuses an absent stream", function()
      local v, err = t.store:append("s-1", H.ev("A"), { expected = 1 })
      assert.is_nil(v)
      H.check_err(err, "wrong_expected_version")
      assert.equal(1, err.expected)
      assert.equal(0, err.actual)
      assert.same({ last = 0, version = 0 }, H.state(t.store, "s-1"))
    end)

    it("a conflict in one stream leaves other streams alone", function()
      t.store:append("s-1", H.ev("A"))
      t.store:append("s-2", H.ev("A"))
      assert.is_nil((t.store:append("s-2", H.ev("A"), { expected = 0 })))
      assert.same({ 2, 3 }, { t.store:append("s-1", H.ev("A"), { expected = 1 }) })
    end)

    it("the error has a metatable and tostring(err) is its message", function()
      t.store:append("s-1", H.ev("A"))
      local _, err = t.store:append("s-1", H.ev("A"), { expected = 7 })
      assert.is_table(getmetatable(err))
      assert.equal(err.message, tostring(err))
      assert.is_truthy(#err.message > 0)
    end)
  end)

  describe("idempotent retry", function()
    local ids
    local function batch(a, b)
      return { H.ev("A", 1, nil, a or ids[1]), H.ev("B", 2, nil, b or ids[2]) }
    end
    before_each(function()
      ids = { er.uuid(), er.uuid(), er.uuid() }
    end)

    it("with the same ids and NO_STREAM returns the original result and writes nothing", function()
      t.store:append("x-1", H.ev("X"))
      assert.same({ 2, 3 }, { t.store:append("s-1", batch(), { expected = er.NO_STREAM }) })
      assert.same({ 2, 3 }, { t.store:append("s-1", batch(), { expected = er.NO_STREAM }) })
      assert.same({ 2, 3 }, { t.store:append("s-1", batch(), { expected = er.NO_STREAM }) })
      assert.same({ last = 3, version = 2 }, H.state(t.store, "s-1"))
      assert.equal(3, #H.collect(t.store:all()))
    end)

    it("with the same ids and ANY returns the original result", function()
      t.store:append("s-1", H.ev("X"))
      assert.same({ 3, 3 }, { t.store:append("s-1", batch()) })
      assert.same({ 3, 3 }, { t.store:append("s-1", batch(), { expected = er.ANY }) })
      assert.same({ last = 3, version = 3 }, H.state(t.store, "s-1"))
    end)

    it("with the same exact version returns the original result even after later appends", function()
      t.store:append("s-1", H.ev("X"))
      assert.same({ 3, 3 }, { t.store:append("s-1", batch(), { expected = 1 }) })
      assert.same({ 4, 4 }, { t.store:append("s-1", H.ev("Y")) })
      assert.same({ 3, 3 }, { t.store:append("s-1", batch(), { expected = 1 }) })
      assert.same({ last = 4, version = 4 }, H.state(t.store, "s-1"))
    end)

    it("of a single event returns its original version and position", function()
      t.store:append("s-1", H.ev("X"))
      assert.same({ 2, 2 }, { t.store:append("s-1", H.ev("A", 1, nil, ids[1])) })
      t.store:append("s-2", H.ev("Y"))
      assert.same({ 2, 2 }, { t.store:append("s-1", H.ev("A", 1, nil, ids[1])) })
      assert.equal(3, t.store:last_position())
    end)

    it("with the same ids in another stream is duplicate_event", function()
      t.store:append("s-1", batch())
      local v, err = t.store:append("s-2", batch())
      assert.is_nil(v)
      H.check_err(err, "duplicate_event")
      assert.same({ last = 2, version = 0 }, H.state(t.store, "s-2"))
    end)

    it("with a subset of the ids is duplicate_event", function()
      t.store:append("s-1", batch())
      local v, err = t.store:append("s-1", H.ev("A", 1, nil, ids[1]))
      assert.is_nil(v)
      H.check_err(err, "duplicate_event")
      v, err = t.store:append("s-1", H.ev("B", 2, nil, ids[2]))
      assert.is_nil(v)
      H.check_err(err, "duplicate_event")
      assert.same({ last = 2, version = 2 }, H.state(t.store, "s-1"))
    end)

    it("with old and new ids mixed is duplicate_event", function()
      t.store:append("s-1", batch())
      local v, err = t.store:append("s-1", batch(ids[1], ids[3]))
      assert.is_nil(v)
      H.check_err(err, "duplicate_event")
      v, err = t.store:append("s-1", { H.ev("A", 1, nil, ids[1]), H.ev("B", 2, nil, ids[2]), H.ev("C", 3, nil, ids[3]) })
      assert.is_nil(v)
      H.check_err(err, "duplicate_event")
      assert.same({ last = 2, version = 2 }, H.state(t.store, "s-1"))
      assert.same({ 3, 3 }, { t.store:append("s-1", H.ev("C", 3, nil, ids[3])) })
    end)

    it("with ids of the earlier append in another order is duplicate_event", function()
      t.store:append("s-1", batch())
      local v, err = t.store:append("s-1", batch(ids[2], ids[1]))
      assert.is_nil(v)
      H.check_err(err, "duplicate_event")
      assert.same({ last = 2, version = 2 }, H.state(t.store, "s-1"))
    end)

    it("with ids of two earlier appends together is duplicate_event", function()
      t.store:append("s-1", H.ev("A", 1, nil, ids[1]))
      t.store:append("s-1", H.ev("B", 2, nil, ids[2]))
      local v, err = t.store:append("s-1", batch())
      assert.is_nil(v)
      H.check_err(err, "duplicate_event")
      assert.same({ last = 2, version = 2 }, H.state(t.store, "s-1"))
    end)

    it("with an expectation the original append did not meet writes nothing", function()
      assert.same({ 2, 2 }, { t.store:append("s-1", batch(), { expected = er.NO_STREAM }) })
      local v, err = t.store:append("s-1", batch(), { expected = 5 })
      assert.is_nil(v)
      H.check_err(err, { "wrong_expected_version", "duplicate_event" })
      assert.same({ last = 2, version = 2 }, H.state(t.store, "s-1"))
    end)
  end)

  describe("invalid arguments", function()
    local long = ("x"):rep(1025)
    local cases = {
      { "stream is nil", "#1", function(s) return s:append(nil, H.ev("A")) end },
      { "stream is a number", "#1", function(s) return s:append(42, H.ev("A")) end },
      { "stream is a table", "#1", function(s) return s:append({}, H.ev("A")) end },
      { "stream is a boolean", "#1", function(s) return s:append(true, H.ev("A")) end },
      { "stream is empty", "#1", function(s) return s:append("", H.ev("A")) end },
      { "stream is 1025 bytes", "#1", function(s) return s:append(long, H.ev("A")) end },
      { "stream contains NUL", "#1", function(s) return s:append("s\0-1", H.ev("A")) end },
      { "events is nil", "#2", function(s) return s:append("s-1") end },
      { "events is a string", "#2", function(s) return s:append("s-1", "A") end },
      { "events is a number", "#2", function(s) return s:append("s-1", 5) end },
      { "events is empty", "#2", function(s) return s:append("s-1", {}) end },
      { "event without type", "#2", function(s) return s:append("s-1", { data = 1 }) end },
      { "array element without type", "#2", function(s) return s:append("s-1", { H.ev("A"), { data = 1 } }) end },
      { "array element not a table", "#2", function(s) return s:append("s-1", { H.ev("A"), "B" }) end },
      { "type is a number", "#2", function(s) return s:append("s-1", { type = 5 }) end },
      { "type is a table", "#2", function(s) return s:append("s-1", { type = {} }) end },
      { "type is empty", "#2", function(s) return s:append("s-1", { type = "" }) end },
      { "type in the last event is empty", "#2", function(s) return s:append("s-1", { H.ev("A"), H.ev("B"), H.ev("") }) end },
      { "metadata is a string", "#2", function(s) return s:append("s-1", { type = "A", metadata = "m" }) end },
      { "metadata is a number", "#2", function(s) return s:append("s-1", { type = "A", metadata = 1 }) end },
      { "metadata is true", "#2", function(s) return s:append("s-1", { type = "A", metadata = true }) end },
      { "id is not a uuid", "#2", function(s) return s:append("s-1", { type = "A", id = "not-a-uuid" }) end },
      { "id is empty", "#2", function(s) return s:append("s-1", { type = "A", id = "" }) end },
      { "id is a number", "#2", function(s) return s:append("s-1", { type = "A", id = 42 }) end },
      { "id has a bad hex digit", "#2", function(s) return s:append("s-1", { type = "A", id = "0190c5d2-7a3b-7c4d-8e5f-60718293a4bg" }) end },
      { "id is 35 characters", "#2", function(s) return s:append("s-1", { type = "A", id = "0190c5d2-7a3b-7c4d-8e5f-60718293a4b" }) end },
      { "opts is a string", "#3", function(s) return s:append("s-1", H.ev("A"), "any") end },
      { "expected is -1", "#3", function(s) return s:append("s-1", H.ev("A"), { expected = -1 }) end },
      { "expected is 1.5", "#3", function(s) return s:append("s-1", H.ev("A"), { expected = 1.5 }) end },
      { "expected is 'foo'", "#3", function(s) return s:append("s-1", H.ev("A"), { expected = "foo" }) end },
      { "expected is true", "#3", function(s) return s:append("s-1", H.ev("A"), { expected = true }) end },
      { "expected is a table", "#3", function(s) return s:append("s-1", H.ev("A"), { expected = {} }) end },
    }

    for _, c in ipairs(cases) do
      local name, argn, call = c[1], c[2], c[3]
      it("raises 'bad argument " .. argn .. " to 'append'' when " .. name .. ", writing nothing", function()
        t.store:append("s-1", H.ev("Seed"))
        local msg = H.raises_with(function() call(t.store) end, "bad argument " .. argn .. " to 'append'")
        assert.is_truthy(msg:find("(", 1, true), msg)
        assert.same({ last = 1, version = 1 }, H.state(t.store, "s-1"))
        assert.equal(1, #H.collect(t.store:all()))
      end)
    end

    it("accepts a stream of exactly 1024 bytes", function()
      local s = ("s"):rep(1024)
      assert.same({ 1, 1 }, { t.store:append(s, H.ev("A")) })
      assert.equal(s, t.store:event(1).stream)
      assert.equal(1, t.store:version(s))
    end)

    it("accepts nil metadata and nil data", function()
      assert.same({ 1, 1 }, { t.store:append("s-1", { type = "A", data = nil, metadata = nil }) })
    end)
  end)
end)
