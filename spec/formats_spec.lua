-- The formats other programs read (issue 13, items 2, 3 and 4): every
-- exported line and JSON relay body is strict UTF-8 JSON that Python's json
-- and jq read, a jq round trip gives back the same bytes, and integers or
-- times that do not fit are refused with the place named, never turned
-- into something else.
local H = require "helper"
local jsonl = require "eventrocks.jsonl"
local core = require "eventrocks.core"
local pretty = require "eventrocks.pretty"

local fmt = string.format

-- ---------------------------------------------------------------------------
-- Running programs

local CMD, write_file, sh = H.CMD, H.write_file, H.sh
local function read_file(path) return assert(H.read_file(path)) end

local OTHER = H.OTHER -- python3 and bash, without the sanitizer runtime

local function er_cmd(dir, args)
  return CMD .. " --store " .. H.shquote(dir) .. " " .. args
end

-- Python's json, strict: the file's bytes must be UTF-8 (decoded with
-- errors="strict") and every line one JSON value without raw control
-- characters (json.loads refuses them by default).  Prints "ok N".
local PY = [[
import json, sys
data = open(sys.argv[1], "rb").read()
text = data.decode("utf-8")
n = 0
for line in text.split("\n"):
    if line:
        json.loads(line)
        n += 1
print("ok", n)
]]

local function python_reads(path)
  local script = os.tmpname()
  write_file(script, PY)
  local code, out, err = sh(OTHER .. "python3 " .. H.shquote(script) .. " " .. H.shquote(path))
  os.remove(script)
  return code, out, err
end

local function all_events(store)
  local out = {}
  for ev in store:all() do
    out[#out + 1] = { id = ev.id, stream = ev.stream, version = ev.version, type = ev.type,
      time = ev.time, data = ev.data, metadata = ev.metadata, position = ev.position }
  end
  return out
end

local function line(fields)
  local parts = {}
  for _, kv in ipairs(fields) do parts[#parts + 1] = fmt('"%s":%s', kv[1], kv[2]) end
  return "{" .. table.concat(parts, ",") .. "}"
end

-- A line with the usual fields, `extra` replacing or adding some.
local function event_line(extra)
  local f = { id = '"01a21f60-a361-7897-80b5-06d0a8534188"', stream = '"a-1"', version = "1",
    type = '"T"', time = "1700000000000000", data = "null" }
  for k, v in pairs(extra or {}) do f[k] = v end
  local list = {}
  for _, k in ipairs({ "id", "stream", "version", "type", "time", "data", "metadata" }) do
    if f[k] then list[#list + 1] = { k, f[k] } end
  end
  return line(list)
end

local function decode_error(s, n)
  local ok, err = pcall(jsonl.decode_event, s, n or 3)
  assert.is_false(ok, "decode_event accepted " .. s)
  return err
end

-- Every name and key that JSON cannot carry as it is, and a few that look
-- like the tags.
local BIN = "bin-\255\254x"
local NAMES = {
  { "bytes that are not UTF-8", "s-\255\254", "T\128" },
  { "a UTF-16 surrogate (CESU-8)", "s-\237\160\128", "T\237\160\128" },
  { "an overlong NUL", "s-\192\128", "T\192\128" },
  { "a code point above U+10FFFF", "s-\244\144\128\128", "T\244\144\128\128" },
  { "a truncated sequence", "s-\226\130", "T\226" },
  { "control bytes and DEL", "s-\1\27[31m\127\n", "T\t\8\12" },
  { "text that looks like a tag", '{"$base64":"QQ=="}', "$base64" },
}

local KEYS = {
  ["k\255"] = "not UTF-8",
  ["\255"] = { ["\254\0"] = { "nested", ["\128"] = true } },
  ["$base64"] = "QQ==",  -- a genuine key that is a tag's name
  ["$float"] = "nan",
  ["$map"] = { { 1, 2 } },
  ["$name"] = 1,
  ["\1\127\27"] = "control bytes",
  ["e\204\129 \226\128\168"] = "é with a combining accent, U+2028",
  plain = "p",
}

describe("formats read by other programs", function()
  local t = {}
  before_each(function() H.setup(t) end)
  after_each(function() H.teardown(t) end)

  local tmp = {}
  local function tmpdir()
    local d = H.mkdtemp()
    tmp[#tmp + 1] = d
    return d
  end
  after_each(function()
    for _, d in ipairs(tmp) do H.rmrf(d) end
    tmp = {}
  end)

  -- -------------------------------------------------------------------------
  describe("an exported line", function()
    for _, c in ipairs(NAMES) do
      it("is strict UTF-8 JSON and keeps the stream and type: " .. c[1], function()
        assert(t.store:append(c[2], { type = c[3], data = { [c[3]] = c[2] }, metadata = KEYS }))
        local ev = t.store:event(1)
        local text = jsonl.encode_event(ev)
        assert.is_truthy(utf8.len(text), "not UTF-8: " .. fmt("%q", text))
        assert.is_falsy(text:find("[%z\1-\31\127]"), "a raw control byte in " .. fmt("%q", text))
        local back = jsonl.decode_event(text, 1)
        assert.equal(c[2], back.stream)
        assert.equal(c[3], back.type)
        H.assert_same({ [c[3]] = c[2] }, back.data)
        H.assert_same(KEYS, back.metadata)
      end)
    end

    it("tags a stream id or type that is not UTF-8 the way values are tagged", function()
      assert(t.store:append("s-\255", { type = "T\128", data = "\255" }))
      local text = jsonl.encode_event(t.store:event(1))
      assert.is_truthy(text:find('"stream":{"$base64":"cy3/"}', 1, true), text)
      assert.is_truthy(text:find('"type":{"$base64":"VIA="}', 1, true), text)
      assert.is_truthy(text:find('"data":{"$base64":"/w=="}', 1, true), text)
    end)

    it("keeps UTF-8 stream ids, types and keys plain JSON strings", function()
      assert(t.store:append("café-1", { type = "Prix€", data = { ["naïve"] = 1 } }))
      local text = jsonl.encode_event(t.store:event(1))
      assert.is_truthy(text:find('"stream":"café-1"', 1, true), text)
      assert.is_truthy(text:find('"type":"Prix€"', 1, true), text)
      assert.is_truthy(text:find('"data":{"naïve":1}', 1, true), text)
    end)

    it("a stream id or type given as a tag on import must be one", function()
      assert.equal("line 3: stream must be 1 to 1024 bytes without NUL",
        decode_error(event_line({ stream = '{"$base64":""}' })))
      assert.equal("line 3: type must be a string",
        decode_error(event_line({ type = '{"$float":"1.5"}' })))
      assert.equal("line 3: stream: bad $base64",
        decode_error(event_line({ stream = '{"$base64":"!"}' })))
      assert.equal("line 3: type must be 1 to 1024 bytes without NUL",
        decode_error(event_line({ type = '{"$base64":"AA=="}' })))
      assert.equal("s-\255", jsonl.decode_event(event_line({ stream = '{"$base64":"cy3/"}' }), 1).stream)
    end)

    it("and a JSON relay body (encode_event of a decoded event) is too", function()
      assert(t.store:append(BIN, { type = "T\255", data = KEYS, metadata = { ["\200"] = 1 } }))
      -- the relay's body: the event read raw, its fields in order
      local body = require("eventrocks.jetstream").event_body(t.store:all({ count = 1, raw = true })())
      local ev = setmetatable(core.decode(body), pretty.event_metatable)
      local text = jsonl.encode_event(ev)
      local file = os.tmpname()
      write_file(file, text .. "\n")
      local code, out, err = python_reads(file)
      os.remove(file)
      assert.equal(0, code, err)
      assert.equal("ok 1\n", out)
      local back = jsonl.decode_event(text, 1)
      assert.equal(BIN, back.stream)
      assert.equal("T\255", back.type)
      H.assert_same(KEYS, back.data)
    end)
  end)

  -- -------------------------------------------------------------------------
  describe("export | jq -c . | import", function()
    local function fill(s)
      for i, c in ipairs(NAMES) do
        assert(s:append(c[2], {
          { type = c[3], data = KEYS, metadata = { [c[2]] = c[3], n = i } },
          { type = "Plain", data = { [c[3]] = { c[2], "\255", 1.5, -7, 0.1 } } },
        }))
      end
      -- numbers that jq 1.6 keeps: integers up to 2^53, floats that are not
      -- integers (jq writes 1.0 and -0.0 as 1 and -0, and integers beyond
      -- 2^53 as the nearest double: see the README)
      assert(s:append(BIN, { type = "$map", data = { ["$map"] = { [BIN] = BIN },
        safe = 1 << 53, nsafe = -(1 << 53), third = 0.1 + 0.2, tiny = 5e-324, e = 1e100,
        nan = 0 / 0, inf = math.huge, tagged = 2.0 ^ 63 } }))
      return s:last_position()
    end

    it("Python's strict json reads every exported line", function()
      local n = fill(t.store)
      local file = tmpdir() .. "/export.jsonl"
      local code, _, err = sh(er_cmd(t.dir, "export " .. H.shquote(file)))
      assert.equal(0, code, err)
      local out
      code, out, err = python_reads(file)
      assert.equal(0, code, err)
      assert.equal("ok " .. n .. "\n", out)
    end)

    it("gives back byte-identical streams, types, keys and values", function()
      local n = fill(t.store)
      local d = tmpdir()
      local file = d .. "/jq.jsonl"
      local code, _, err = sh(er_cmd(t.dir, "export") .. " | " .. OTHER .. "jq -c . >" .. H.shquote(file))
      assert.equal(0, code, err)
      local text = read_file(file)
      assert.is_falsy(text:find("\239\191\189", 1, true), "jq replaced bytes with U+FFFD")
      code, _, err = sh(er_cmd(d .. "/imported", "import " .. H.shquote(file)))
      assert.equal(0, code, err)
      assert.is_truthy(err:find("imported " .. n .. " events", 1, true), err)
      local s2 = assert(H.open(t, d .. "/imported", { read_only = true }))
      local want, got = all_events(t.store), all_events(s2)
      assert.equal(#want, #got)
      for i = 1, #want do H.assert_same(want[i], got[i], "event " .. i) end
      for _, c in ipairs(NAMES) do assert.equal(t.store:version(c[2]), s2:version(c[2])) end
    end)
  end)

  -- -------------------------------------------------------------------------
  describe("a JSON integer outside the 64-bit range", function()
    local BAD = {
      { "2^64 in data", { data = '{"amount":18446744073709551616}' },
        "line 3: data.amount: integer 18446744073709551616 is outside the 64-bit range" },
      { "2^63 in data", { data = '{"amount":9223372036854775808}' },
        "line 3: data.amount: integer 9223372036854775808 is outside the 64-bit range" },
      { "-2^63-1 in an array", { data = '{"list":[1,-9223372036854775809]}' },
        "line 3: data.list[2]: integer -9223372036854775809 is outside the 64-bit range" },
      { "a whole value", { data = "123456789012345678901234567890" },
        "line 3: data: integer 123456789012345678901234567890 is outside the 64-bit range" },
      { "in metadata under a key that is not a name", { metadata = '{"a b":{"c":[[99999999999999999999]]}}' },
        'line 3: metadata["a b"].c[1][1]: integer 99999999999999999999 is outside the 64-bit range' },
      { "under a key that is not UTF-8", { data = '{"$map":[[{"$base64":"/yA="},[18446744073709551616]]]}' },
        'line 3: data["\\xff "][1]: integer 18446744073709551616 is outside the 64-bit range' },
      { "in a $map", { data = '{"$map":[[1,{"x":18446744073709551616}]]}' },
        "line 3: data[1].x: integer 18446744073709551616 is outside the 64-bit range" },
      { "as a $map key", { data = '{"$map":[[18446744073709551616,1]]}' },
        "line 3: data: key: integer 18446744073709551616 is outside the 64-bit range" },
      { "as the version", { version = "18446744073709551617" },
        "line 3: version: integer 18446744073709551617 is outside the 64-bit range" },
      { "as the time", { time = "18446744073709551616" },
        "line 3: time: integer 18446744073709551616 is outside the 64-bit range" },
      { "in a $int tag", { data = '{"$int":"18446744073709551616"}' },
        "line 3: data: integer 18446744073709551616 is outside the 64-bit range" },
    }
    for _, c in ipairs(BAD) do
      it("is refused with its place named: " .. c[1], function()
        assert.equal(c[3], decode_error(event_line(c[2])))
      end)
    end

    it("while the integers at the edges stay integers", function()
      local ev = jsonl.decode_event(event_line({
        data = '[9223372036854775807,-9223372036854775808,0000000000000000000001,-0]' }), 1)
      H.assert_same({ math.maxinteger, math.mininteger, 1, 0 }, ev.data)
    end)

    it("and numbers that are floats by their form stay floats", function()
      local ev = jsonl.decode_event(event_line({
        data = '[1e3,1.0,18446744073709551616.0,1E19,-9223372036854775809e0,1.5]' }), 1)
      H.assert_same({ 1e3, 1.0, 2.0 ^ 64, 1e19, -2.0 ^ 63, 1.5 }, ev.data)
    end)

    it("and digits inside strings, keys and tags are text", function()
      local ev = jsonl.decode_event(event_line({
        data = '{"18446744073709551616":"18446744073709551616 \\" 99999999999999999999",'
          .. '"x":{"$float":"18446744073709551616"}}' }), 1)
      H.assert_same({ ["18446744073709551616"] = '18446744073709551616 " 99999999999999999999',
        x = 2.0 ^ 64 }, ev.data)
    end)

    it("and a $int tag gives the integer it holds", function()
      local ev = jsonl.decode_event(event_line({
        data = '[{"$int":"9223372036854775807"},{"$int":"-9223372036854775808"},{"$int":"12"}]' }), 1)
      H.assert_same({ math.maxinteger, math.mininteger, 12 }, ev.data)
      for _, bad in ipairs({ "1.5", "1e3", "x", "", " 1", "0x10", "+1" }) do
        assert.equal("line 3: data: bad $int " .. bad,
          decode_error(event_line({ data = '{"$int":"' .. bad .. '"}' })))
      end
      assert.equal("line 3: data: $int needs a string", decode_error(event_line({ data = '{"$int":12}' })))
    end)
  end)

  -- -------------------------------------------------------------------------
  describe("a MessagePack uint 64 above 2^63-1 (another publisher's)", function()
    local function u64(hex) return "\207" .. hex:gsub("%x%x", function(h) return string.char(tonumber(h, 16)) end) end
    local MAX = u64("ffffffffffffffff")

    it("is refused by core.decode with its place named", function()
      local v, err = core.decode(MAX)
      assert.is_nil(v)
      assert.equal("integer 18446744073709551615 is outside the 64-bit range", err)
      -- {data = {amount = 2^64-1}}
      v, err = core.decode("\129\164data\129\166amount" .. MAX)
      assert.is_nil(v)
      assert.equal("data.amount: integer 18446744073709551615 is outside the 64-bit range", err)
      -- {data = {list = {1, 2^63}}, ["a b"] = 1}
      v, err = core.decode("\129\164data\129\164list\146\1" .. u64("8000000000000000"))
      assert.is_nil(v)
      assert.equal("data.list[2]: integer 9223372036854775808 is outside the 64-bit range", err)
      v, err = core.decode("\129\163a b\129" .. MAX .. "\1")
      assert.is_nil(v)
      assert.equal('["a b"]: key: integer 18446744073709551615 is outside the 64-bit range', err)
    end)

    it("while 2^63-1 as a uint 64 is the largest integer", function()
      assert.equal(math.maxinteger, core.decode(u64("7fffffffffffffff")))
      assert.equal("integer", math.type(core.decode(u64("7fffffffffffffff"))))
      assert.equal(5, core.decode(u64("0000000000000005")))
    end)

    it("and bytes that are not MessagePack still say so", function()
      local v, err = core.decode("\193")
      assert.is_nil(v)
      assert.equal("not a well-formed stored value (MessagePack)", err)
    end)

    it("stored as a value, reads back as a corruption error, not a float", function()
      assert(t.store:_debug_put("views", "k", "\129\161x" .. MAX))
      local v, err = t.store:_get("views", "k")
      assert.is_nil(v)
      assert.equal("corruption", err.code)
    end)
  end)

  -- -------------------------------------------------------------------------
  describe("an imported time", function()
    local MAX_TIME = 253402300799999999 -- 9999-12-31T23:59:59.999999Z
    for _, c in ipairs({
      { "the largest integer", "9223372036854775807" },
      { "after the year 9999", tostring(MAX_TIME + 1) },
      { "zero", "0" },
      { "negative", "-5" },
      { "the smallest integer", "-9223372036854775808" },
    }) do
      it("is refused when out of range, with the line: " .. c[1], function()
        assert.equal(fmt("line 3: time %s is out of range (1 to %d: microseconds since the epoch,"
          .. " up to the end of year 9999)", c[2], MAX_TIME), decode_error(event_line({ time = c[2] })))
      end)
    end

    it("is refused when not an integer", function()
      for _, v in ipairs({ "1.5e15", "1700000000000000.0", '"1700000000000000"', "null" }) do
        assert.equal("line 3: time must be an integer", decode_error(event_line({ time = v })))
      end
    end)

    it("is taken from 1 to the end of year 9999", function()
      assert.equal(1, jsonl.decode_event(event_line({ time = "1" }), 1).time)
      assert.equal(MAX_TIME, jsonl.decode_event(event_line({ time = tostring(MAX_TIME) }), 1).time)
    end)

    it("and `eventrocks import` stops at the line, writing nothing of it", function()
      local d = tmpdir()
      local file = d .. "/in.jsonl"
      write_file(file, table.concat({
        event_line({ stream = '"a-1"', id = '"01a21f60-a361-7897-80b5-06d0a8534181"' }),
        event_line({ stream = '"b-1"', id = '"01a21f60-a361-7897-80b5-06d0a8534182"' }),
        event_line({ stream = '"c-1"', id = '"01a21f60-a361-7897-80b5-06d0a8534183"',
          time = "9223372036854775807" }),
      }, "\n") .. "\n")
      local code, _, err = sh(er_cmd(d .. "/store", "import " .. H.shquote(file)))
      assert.not_equal(0, code)
      assert.is_truthy(err:find("line 3: time 9223372036854775807 is out of range", 1, true), err)
      local s2 = assert(H.open(t, d .. "/store", { read_only = true }))
      assert.equal(0, s2:version("c-1"))
    end)
  end)
end)
