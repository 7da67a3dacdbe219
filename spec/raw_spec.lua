-- Raw reads (`raw = true`: an event's data and metadata left as the store
-- holds them), raw values in messages (core.encode) and maps of fixed keys
-- (core.map_encoder): what the JetStream relay builds its bodies from.
local H = require "helper"
local core = require "eventrocks.core"

-- The MessagePack of a small map written by hand, to compare with:
-- `pairs` an array of {key bytes, value bytes}.
local function msgpack_map(pairs)
  local out = { string.char(0x80 + #pairs) }
  for _, p in ipairs(pairs) do out[#out + 1] = p[1] .. p[2] end
  return table.concat(out)
end
local function fixstr(s) return string.char(0xa0 + #s) .. s end

describe("a raw read", function()
  local t = {}
  before_each(function() H.setup(t) end)
  after_each(function() H.teardown(t) end)

  it("of store:all yields each event's fields as values, data and metadata as stored", function()
    local s = t.store
    -- (one key a map: the encoding of a table with several follows its hash order)
    assert(s:append("order-1", { type = "Placed", data = { items = { 2, "caf\195\169" } }, metadata = { user = "u" } }))
    assert(s:append("order-2", { type = "Empty" }))
    local decoded = {}
    for ev in s:all() do decoded[#decoded + 1] = ev end
    local n = 0
    for id, stream, version, position, ty, time, data, metadata in s:all({ raw = true }) do
      n = n + 1
      local ev = decoded[n]
      assert.same({ ev.id, ev.stream, ev.version, ev.position, ev.type, ev.time },
        { id, stream, version, position, ty, time })
      assert.equal("userdata", type(metadata))
      assert.same(ev.metadata, core.decode(metadata))
      if ev.data == nil then
        assert.is_nil(data)
      else
        assert.equal("userdata", type(data))
        assert.same(ev.data, core.decode(data))
        -- the bytes the store holds: the encoding of the value appended
        assert.equal(core.encode(ev.data), core.encode(data))
      end
    end
    assert.equal(2, n)
  end)

  it("gives metadata {} when none was given, and raw values say what they are", function()
    assert(t.store:append("a-1", { type = "T", data = "x" }))
    local _, _, _, _, _, _, data, metadata = t.store:all({ raw = true })()
    assert.equal("\x80", core.encode(metadata))
    assert.same({}, core.decode(metadata))
    assert.equal("eventrocks.msgpack (2 bytes)", tostring(data))
  end)

  it("of store:read keeps the stream's order, from, count and backward", function()
    for i = 1, 5 do assert(t.store:append("s-1", { type = "T", data = i })) end
    local got = {}
    for _, _, version, _, _, _, data in t.store:read("s-1", { from = 4, count = 2, backward = true, raw = true }) do
      got[#got + 1] = { version, core.decode(data) }
    end
    assert.same({ { 4, 4 }, { 3, 3 } }, got)
  end)

  it("keeps the filters and the range of store:all", function()
    assert(t.store:append("a-1", { { type = "X", data = 1 }, { type = "Y", data = 2 } }))
    assert(t.store:append("b-1", { { type = "X", data = 3 }, { type = "X", data = 4 } }))
    local got = {}
    for _, stream, _, position in t.store:all({ raw = true, category = "b", types = { "X" }, from = 4 }) do
      got[#got + 1] = stream .. "@" .. position
    end
    assert.same({ "b-1@4" }, got)
  end)

  it("needs raw to be a boolean", function()
    assert.has_error(function() t.store:all({ raw = 1 }) end, "bad argument #1 to 'all' (raw must be a boolean)")
    assert.has_error(function() t.store:read("a-1", { raw = "yes" }) end,
      "bad argument #2 to 'read' (raw must be a boolean)")
  end)
end)

describe("a raw value", function()
  local t = {}
  before_each(function() H.setup(t) end)
  after_each(function() H.teardown(t) end)

  local function raw_data(store, data)
    assert(store:append("r-1", { type = "T", data = data }))
    local _, _, _, _, _, _, d = store:all({ from = store:last_position(), raw = true })()
    return d
  end

  it("is written verbatim by core.encode, alone or inside a table", function()
    local d = raw_data(t.store, { 1, 2.5, "three" })
    local bytes = core.encode({ 1, 2.5, "three" })
    assert.equal(bytes, core.encode(d))
    assert.equal("\x92\x01" .. bytes, core.encode({ 1, d }))
    assert.same({ k = { 1, 2.5, "three" } }, core.decode(core.encode({ k = d })))
  end)

  it("cannot be stored: appends and transactions refuse it and write nothing", function()
    local d = raw_data(t.store, "x")
    local last = t.store:last_position()
    assert.has_error(function() t.store:append("r-2", { type = "T", data = { d } }) end,
      "bad argument #2 to 'append' (event.data[1]: cannot store a raw value (one read with raw = true))")
    local txn = assert(t.store:_txn())
    assert.has_error(function() txn:put("views", "k", d) end)
    txn:close()
    assert.equal(last, t.store:last_position())
    assert.is_nil(t.store:_get("views", "k"))
  end)

  it("inside more than 56 tables is refused: the whole would not decode", function()
    local d = raw_data(t.store, "x")
    local v = d
    for _ = 1, 56 do v = { v } end
    assert.same(56, #core.encode(v) - 2) -- 56 one-byte array headers, then the string
    assert.has_error(function() core.encode({ v }) end)
  end)

  it("is only what a raw read made: other userdata are refused", function()
    assert.has_error(function() core.encode(io.stdout) end, "bad argument #1 to 'encode' (value: cannot store a userdata)")
    assert.has_error(function() core.decode(io.stdout) end)
  end)
end)

describe("core.map_encoder", function()
  it("writes the map of its keys, in their order, nil values included", function()
    local enc = core.map_encoder({ "b", "a", 3 }, "thing")
    assert.equal(msgpack_map({ { fixstr("b"), "\x01" }, { fixstr("a"), "\xc0" }, { "\x03", fixstr("x") } }),
      enc(1, nil, "x"))
    assert.equal(msgpack_map({ { fixstr("b"), "\xc0" }, { fixstr("a"), "\xc0" }, { "\x03", "\xc0" } }), enc())
    -- the same values give the same bytes, whatever tables they hold
    assert.same({ b = { 1, 2 }, a = { k = "v" } }, core.decode(enc({ 1, 2 }, { k = "v" })))
  end)

  it("raises naming the key of a bad value, and on more values than keys", function()
    local enc = core.map_encoder({ "id", "data" }, "event")
    assert.has_error(function() enc("x", { f = print }) end,
      "bad argument #1 to 'enc' (event.data.f: cannot store a function)")
    local ok, err = pcall(enc, 1, 2, 3)
    assert.is_false(ok)
    assert.matches("event: more values than its 2 keys", err, 1, true)
  end)

  it("checks its keys", function()
    for _, keys in ipairs({ {}, { "a", "a" }, { "a", 1.5 }, { true }, "a" }) do
      assert.has_error(function() core.map_encoder(keys) end)
    end
    local many = {}
    for i = 1, 201 do many[i] = i end
    assert.has_error(function() core.map_encoder(many) end,
      "bad argument #1 to 'map_encoder' (keys must be an array of 1 to 200 keys)")
    -- keys are copied: changing the array afterwards changes nothing
    local keys = { "a" }
    local enc = core.map_encoder(keys)
    keys[1] = "b"
    assert.same({ a = 1 }, core.decode(enc(1)))
  end)
end)
