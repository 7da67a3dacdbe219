-- eventrocks.jsonl, the JSON lines of export and import: cases found by
-- fuzz/jsonl_import (the end-to-end export/import tests are in cli_spec).
local H = require "helper"
local jsonl = require "eventrocks.jsonl"

describe("jsonl", function()
  local t = {}
  before_each(function() H.setup(t) end)
  after_each(function() H.teardown(t) end)

  local function export_import(ev)
    local line = jsonl.encode_event(ev)
    return jsonl.decode_event(line, 1), line
  end

  -- `#v` may answer any border of a table: a table read back from the
  -- store with keys 1, 2, 4 and "x" has #v == 4 == its number of keys, and
  -- was exported as the array [1, 2, null, 4], losing "x".
  describe("a table with a hole and other keys", function()
    local values = {
      { "integer keys 1, 2, 4 and a string key", { 1, 2, [4] = 4, x = "y" } },
      { "keys 1, 2, 3, 5 and a boolean key", { "a", "b", "c", [5] = "e", [true] = 1 } },
      { "keys 1, 3 and a float key", { 1, [3] = 3, [2.5] = "f" } },
      { "keys 1, 2, 4 and a key starting with $", { 1, 2, [4] = 4, ["$x"] = 0 } },
      { "nested in an array", { { 1, 2, [4] = 4, x = "y" }, 2 } },
    }
    for _, c in ipairs(values) do
      it("is exported with every key: " .. c[1], function()
        assert(t.store:append("v-1", { type = "V", data = c[2], metadata = { m = c[2] } }))
        local ev = t.store:event(1)
        local back, line = export_import(ev)
        H.assert_same(c[2], back.data, "data of " .. line)
        H.assert_same({ m = c[2] }, back.metadata, "metadata of " .. line)
      end)
    end

    it("while a true array stays a JSON array", function()
      assert(t.store:append("v-1", { type = "V", data = { 1, 2, { 3 } } }))
      local back, line = export_import(t.store:event(1))
      assert.truthy(line:find('"data":[1,2,[3]]', 1, true), line)
      H.assert_same({ 1, 2, { 3 } }, back.data)
    end)
  end)

  -- "=" other than the padding of the last group made from_base64 index a
  -- nil: a Lua error without the line number instead of "bad $base64".
  describe("a $base64 tag with misplaced padding", function()
    local function line_with(b64)
      return string.format('{"stream":"a-1","version":1,"type":"T","time":1,'
        .. '"id":"01a21f60-a361-7897-80b5-06d0a8534188","data":{"$base64":"%s"}}', b64)
    end
    for _, b64 in ipairs({ "A===", "====", "AAAA====", "A=A=", "=AAA", "AB=C", "QQ==QQ==" }) do
      it("is a malformed line with its number: " .. b64, function()
        local ok, err = pcall(jsonl.decode_event, line_with(b64), 12)
        assert.is_false(ok)
        assert.equal("line 12: data: bad $base64", err)
      end)
    end
    for b64, bytes in pairs({ [""] = "", ["QQ=="] = "A", ["QUI="] = "AB", ["QUJD"] = "ABC",
      ["/wA="] = "\255\0" }) do
      it("while correct padding decodes: '" .. b64 .. "'", function()
        assert.equal(bytes, jsonl.decode_event(line_with(b64), 1).data)
      end)
    end
  end)
end)
