local H = require "helper"
local er = require "eventrocks"

describe("the eventrocks module", function()
  it("is a table with open and uuid functions", function()
    assert.is_table(er)
    assert.is_function(er.open)
    assert.is_function(er.uuid)
  end)

  it("has _VERSION 'eventrocks X.Y.Z'", function()
    assert.is_string(er._VERSION)
    assert.is_truthy(er._VERSION:match("^eventrocks %d+%.%d+%.%d+$"), er._VERSION)
  end)

  it("has the expected-version sentinels", function()
    assert.equal("any", er.ANY)
    assert.equal("no_stream", er.NO_STREAM)
    assert.equal("stream_exists", er.STREAM_EXISTS)
  end)

  it("returns the same module table on a second require", function()
    assert.equal(er, require "eventrocks")
  end)

  describe("uuid()", function()
    it("returns 36 lowercase characters, version 7, variant 10xx", function()
      for _ = 1, 200 do
        local id = er.uuid()
        assert.is_string(id)
        assert.equal(36, #id)
        assert.equal(id:lower(), id)
        assert.is_truthy(id:match(H.UUID7), id)
      end
    end)

    it("differs on every call", function()
      local seen = {}
      for _ = 1, 5000 do
        local id = er.uuid()
        assert.is_nil(seen[id], "repeated id " .. id)
        seen[id] = true
      end
    end)

    it("starts with the current Unix time in milliseconds (time-ordered)", function()
      local before = os.time()
      local id = er.uuid()
      local after = os.time()
      local ms = tonumber(id:sub(1, 8) .. id:sub(10, 13), 16)
      assert.is_true(ms >= (before - 2) * 1000, "timestamp " .. ms .. " before " .. before)
      assert.is_true(ms <= (after + 2) * 1000, "timestamp " .. ms .. " after " .. after)
    end)

    it("sorts later ids after earlier ones across milliseconds", function()
      local a = er.uuid()
      local t0 = os.clock()
      while os.clock() - t0 < 0.005 do end -- spin past the millisecond
      local b = er.uuid()
      assert.is_true(a < b, a .. " !< " .. b)
    end)
  end)
end)
