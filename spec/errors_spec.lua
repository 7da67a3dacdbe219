local H = require "helper"
local er = require "eventrocks"

local CODES = { wrong_expected_version = true, duplicate_event = true, stream_deleted = true, locked = true,
                not_found = true, io = true, corruption = true, invalid = true }

describe("operational errors", function()
  local t = {}
  before_each(function() H.setup(t) end)
  after_each(function() H.teardown(t) end)

  -- Each producer returns the results of a failing call: nil, err.
  local PRODUCERS = {
    { "wrong_expected_version", function()
      t.store:append("s-1", H.ev("A"))
      return t.store:append("s-1", H.ev("A"), { expected = er.NO_STREAM })
    end },
    { "duplicate_event", function()
      local id = er.uuid()
      t.store:append("s-1", H.ev("A", nil, nil, id))
      return t.store:append("s-2", H.ev("A", nil, nil, id))
    end },
    { "locked", function() return er.open(t.dir) end },
    { "not_found", function() return er.open(t.dir .. "/missing", { create = false }) end },
    { "invalid", function()
      local r = assert(H.open(t, t.dir, { read_only = true }))
      return r:append("s-1", H.ev("A"))
    end },
    { { "io", "invalid" }, function()
      local path = t.dir .. "/a-file"
      assert(io.open(path, "w")):close()
      return er.open(path)
    end },
  }

  for _, p in ipairs(PRODUCERS) do
    local code, produce = p[1], p[2]
    local label = type(code) == "table" and table.concat(code, "/") or code
    it(label .. " is nil, err with string code and message, tostring(err) == message", function()
      local r = table.pack(produce())
      assert.equal(2, r.n)
      assert.is_nil(r[1])
      local err = H.check_err(r[2], code)
      assert.is_true(CODES[err.code], "unknown code " .. err.code)
      assert.is_table(getmetatable(err))
    end)
  end

  it("wrong_expected_version carries expected, actual and stream", function()
    t.store:append("s-1", H.evs(4))
    local cases = {
      { er.NO_STREAM, "no_stream", "s-1", 4 },
      { 2, 2, "s-1", 4 },
      { 0, 0, "s-1", 4 },
      { er.STREAM_EXISTS, "stream_exists", "s-absent", 0 },
      { 3, 3, "s-absent", 0 },
    }
    for _, c in ipairs(cases) do
      local v, err = t.store:append(c[3], H.ev("A"), { expected = c[1] })
      assert.is_nil(v)
      H.check_err(err, "wrong_expected_version")
      assert.equal(c[2], err.expected)
      if type(c[2]) == "number" then assert.equal("integer", math.type(err.expected)) end
      assert.equal(c[4], err.actual)
      assert.equal("integer", math.type(err.actual))
      assert.equal(c[3], err.stream)
    end
  end)
end)

describe("argument errors", function()
  local t = {}
  before_each(function() H.setup(t) end)
  after_each(function() H.teardown(t) end)

  local CASES = {
    { "append", "#1", function(s) return s:append({}, H.ev("A")) end },
    { "append", "#2", function(s) return s:append("s-1", 7) end },
    { "append", "#3", function(s) return s:append("s-1", H.ev("A"), { expected = "bogus" }) end },
    { "read", "#1", function(s) return s:read({}) end },
    { "read", "#2", function(s) return s:read("s-1", { from = 0 }) end },
    { "all", "#1", function(s) return s:all({ count = -1 }) end },
    { "event", "#1", function(s) return s:event({}) end },
    { "version", "#1", function(s) return s:version({}) end },
    { "version", "#1", function(s) return s:version("") end },
  }

  for _, c in ipairs(CASES) do
    local fname, argn, call = c[1], c[2], c[3]
    it("raise a string 'bad argument " .. argn .. " to '" .. fname .. "''", function()
      local ok, e = pcall(call, t.store)
      assert.is_false(ok)
      assert.is_string(e)
      assert.is_truthy(e:find("bad argument " .. argn .. " to '" .. fname .. "'", 1, true), e)
    end)
  end

  it("raise for er.open with a non-string path", function()
    H.raises_with(function() return er.open({}) end, "bad argument #1")
    H.raises_with(function() return er.open(nil) end, "bad argument #1")
    -- a number is not taken for a directory name, and a NUL would cut the
    -- path short (another directory): both raise, and nothing is created
    local dir = H.mkdtemp()
    finally(function() H.rmrf(dir) end)
    H.raises_with(function() return er.open(1) end, "bad argument #1 to 'open' (string expected, got number)")
    H.raises_with(function() return er.open(dir .. "/a\0b") end, "path contains a NUL byte")
    H.raises_with(function() return er.open("") end, "path must not be empty")
    assert.is_nil(H.read_file(dir .. "/a/format"))
    local p = io.popen("ls -A " .. H.shquote(dir))
    assert.equal("", p:read("a"))
    p:close()
    local st = assert(er.open(dir .. "/s"))
    H.raises_with(function() return st:backup(123) end, "bad argument #1 to 'backup' (string expected, got number)")
    H.raises_with(function() return st:backup(dir .. "/b\0c") end, "path contains a NUL byte")
    st:close()
  end)

  it("raise for er.open with opts that are not a table", function()
    H.raises_with(function() return er.open(t.dir .. "/x", "ro") end, "bad argument #2")
  end)

  it("are raised, not returned, so that nothing is written", function()
    local before = t.store:last_position()
    for _, c in ipairs(CASES) do pcall(c[3], t.store) end
    assert.equal(before, t.store:last_position())
    assert.same({}, H.collect_streams(t.store:streams()))
  end)
end)

describe("encoding failures inside a transaction", function()
  local H = require "helper"
  local t = {}
  before_each(function() H.setup(t) end)
  after_each(function() H.teardown(t) end)

  it("are error values whose fields name the place, never a message to take apart", function()
    local txn = assert(t.store:_txn())
    local ok, err = pcall(txn.append, txn, "a-1", { { type = "A" }, { type = "B", data = { x = { f = print } } } })
    assert.is_false(ok)
    assert.equal("table", type(err))
    assert.equal("invalid", err.code)
    assert.equal(2, err.index)
    assert.equal("data.x.f", err.path)
    assert.truthy(err.reason:find("function", 1, true), err.reason)
    assert.equal("events[2].data.x.f: " .. err.reason, err.message)
    ok, err = pcall(txn.put, txn, "views", "k", { state = { [{}] = 1 } })
    assert.is_false(ok)
    assert.equal("invalid", err.code)
    assert.equal("state", err.path:sub(1, 5))
    assert.is_nil(err.index)
    ok, err = pcall(txn.put, txn, "views", "k", print)
    assert.is_false(ok)
    assert.equal("", err.path)
    txn:close()
    -- the public append still raises an argument error naming the place
    ok, err = pcall(t.store.append, t.store, "a-1", { type = "B", data = { x = print } })
    assert.is_false(ok)
    assert.truthy(tostring(err):find("bad argument #3 to '?' (event.data.x: cannot store a function)", 1, true), err)
  end)
end)

describe("duplicate_event errors", function()
  local H = require "helper"
  local t = {}
  before_each(function() H.setup(t) end)
  after_each(function() H.teardown(t) end)

  it("name the duplicate id in err.id, in an append and in a transaction", function()
    local id = t.store:append("a-1", { type = "A" }) and assert(t.store:event(1)).id
    local id2 = "0190a0b0-0000-7000-8000-00000000000b"
    local ok, err = t.store:append("b-1", { type = "B", id = id2 })
    assert.truthy(ok)
    ok, err = t.store:append("c-1", { { type = "C", id = id:upper() } })
    assert.is_nil(ok)
    H.check_err(err, "duplicate_event")
    assert.equal(id, err.id)
    local txn = assert(t.store:_txn())
    assert(txn:append("d-1", { type = "D", id = "0190a0b0-0000-7000-8000-00000000000c" }))
    assert(txn:append("e-1", { type = "E", id = "0190a0b0-0000-7000-8000-00000000000c" }))
    ok, err = txn:commit()
    txn:close()
    assert.is_nil(ok)
    H.check_err(err, "duplicate_event")
    assert.equal("0190a0b0-0000-7000-8000-00000000000c", err.id)
    assert.equal(2, err.index)
  end)
end)
