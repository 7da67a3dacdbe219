local H = require "helper"
local er = require "eventrocks"

local FIELDS = { id = true, stream = true, version = true, position = true, type = true,
                 data = true, metadata = true, time = true }

describe("read-back events", function()
  local t = {}
  before_each(function() H.setup(t) end)
  after_each(function() H.teardown(t) end)

  local function check_fields(ev, with_data)
    assert.is_table(ev)
    for k in pairs(ev) do
      assert.is_true(FIELDS[k] == true, "unexpected field " .. tostring(k))
    end
    for k in pairs(FIELDS) do
      if k ~= "data" or with_data then
        assert.is_not_nil(rawget(ev, k), "missing field " .. k)
      end
    end
    assert.is_true(H.is_uuid7(ev.id) or (type(ev.id) == "string" and #ev.id == 36), tostring(ev.id))
    assert.is_string(ev.stream)
    assert.equal("integer", math.type(ev.version))
    assert.equal("integer", math.type(ev.position))
    assert.is_string(ev.type)
    assert.is_table(ev.metadata)
    assert.equal("integer", math.type(ev.time))
  end

  it("have exactly id, stream, version, position, type, data, metadata, time", function()
    local id = er.uuid()
    local t0 = os.time()
    t.store:append("prod-1", { type = "Created", data = { name = "x" }, metadata = { by = "me" }, id = id })
    local t1 = os.time()
    for _, ev in ipairs({ t.store:event(1), H.collect(t.store:read("prod-1"))[1], H.collect(t.store:all())[1] }) do
      check_fields(ev, true)
      assert.equal(id, ev.id)
      assert.equal("prod-1", ev.stream)
      assert.equal(1, ev.version)
      assert.equal(1, ev.position)
      assert.equal("Created", ev.type)
      H.assert_same({ name = "x" }, ev.data)
      H.assert_same({ by = "me" }, ev.metadata)
      assert.is_true(ev.time >= (t0 - 1) * 1000000, "time " .. ev.time .. " too early")
      assert.is_true(ev.time <= (t1 + 2) * 1000000, "time " .. ev.time .. " too late")
    end
  end)

  it("without data have no other fields and data == nil", function()
    t.store:append("prod-1", { type = "Pinged" })
    for _, ev in ipairs({ t.store:event(1), H.collect(t.store:read("prod-1"))[1], H.collect(t.store:all())[1] }) do
      check_fields(ev, false)
      assert.is_nil(ev.data)
      assert.same({}, ev.metadata)
    end
  end)

  it("have times that do not decrease in append order", function()
    for i = 1, 20 do t.store:append("s-" .. (i % 3), H.ev("E", i)) end
    local last = 0
    for ev in t.store:all() do
      assert.is_true(ev.time >= last)
      last = ev.time
    end
  end)

  it("have a one-line tostring with type and stream", function()
    t.store:append("order-42", H.ev("OrderPlaced", { total = 10 }))
    local ev = t.store:event(1)
    local s = tostring(ev)
    assert.is_string(s)
    assert.is_nil(s:find("\n", 1, true), s)
    assert.is_truthy(s:find("OrderPlaced", 1, true), s)
    assert.is_truthy(s:find("order-42", 1, true), s)
  end)

  it("have a one-line tostring even when data holds newlines", function()
    t.store:append("order-43", H.ev("Noted", { text = "line 1\nline 2\r\n", list = { "a\nb" } }))
    t.store:append("order-43", H.ev("Noted", "x\ny"))
    t.store:append("order-43", H.ev("Empty"))
    for ev in t.store:read("order-43") do
      local s = tostring(ev)
      assert.is_nil(s:find("[\r\n]"), s)
      assert.is_truthy(s:find(ev.type, 1, true), s)
      assert.is_truthy(s:find("order-43", 1, true), s)
    end
  end)

  it("are fresh tables on every read", function()
    t.store:append("s-1", H.ev("A", { n = 1 }, { m = 1 }))
    local a = t.store:event(1)
    a.data.n = 99
    a.metadata.m = 99
    a.type = "Changed"
    local b = t.store:event(1)
    assert.equal(1, b.data.n)
    assert.equal(1, b.metadata.m)
    assert.equal("A", b.type)
  end)
end)

describe("store:read", function()
  local t = {}
  before_each(function()
    H.setup(t)
    t.store:append("other-1", H.ev("O", 0))
    t.store:append("s-1", { H.ev("E", 1), H.ev("E", 2), H.ev("E", 3) })
    t.store:append("other-1", H.ev("O", 0))
    t.store:append("s-1", { H.ev("E", 4), H.ev("E", 5) })
  end)
  after_each(function() H.teardown(t) end)

  local function versions(...) return H.pluck(H.collect(...), "version") end

  it("yields the stream's events in version order", function()
    local evs = H.collect(t.store:read("s-1"))
    assert.same({ 1, 2, 3, 4, 5 }, H.pluck(evs, "version"))
    assert.same({ 1, 2, 3, 4, 5 }, H.pluck(evs, "data"))
    assert.same({ 2, 3, 4, 6, 7 }, H.pluck(evs, "position"))
    for _, ev in ipairs(evs) do assert.equal("s-1", ev.stream) end
  end)

  it("returns four values from the factory", function()
    assert.equal(4, select("#", t.store:read("s-1")))
    assert.is_function((t.store:read("s-1")))
  end)

  it("yields nothing for an absent stream", function()
    assert.same({}, H.collect(t.store:read("nope-1")))
  end)

  it("starts at opts.from", function()
    assert.same({ 3, 4, 5 }, versions(t.store:read("s-1", { from = 3 })))
    assert.same({ 5 }, versions(t.store:read("s-1", { from = 5 })))
    assert.same({}, versions(t.store:read("s-1", { from = 6 })))
    assert.same({ 1, 2, 3, 4, 5 }, versions(t.store:read("s-1", { from = 1 })))
  end)

  it("stops after opts.count", function()
    assert.same({ 1, 2 }, versions(t.store:read("s-1", { count = 2 })))
    assert.same({ 2, 3 }, versions(t.store:read("s-1", { from = 2, count = 2 })))
    assert.same({}, versions(t.store:read("s-1", { count = 0 })))
    assert.same({ 1, 2, 3, 4, 5 }, versions(t.store:read("s-1", { count = 100 })))
  end)

  it("accepts the largest from and count", function()
    assert.same({ 1, 2, 3, 4, 5 }, versions(t.store:read("s-1", { count = math.maxinteger })))
    assert.same({}, versions(t.store:read("s-1", { from = math.maxinteger })))
    assert.same({ 5, 4, 3, 2, 1 }, versions(t.store:read("s-1", { backward = true, count = math.maxinteger })))
  end)

  it("goes backward from the last version", function()
    assert.same({ 5, 4, 3, 2, 1 }, versions(t.store:read("s-1", { backward = true })))
    assert.same({ 5, 4 }, versions(t.store:read("s-1", { backward = true, count = 2 })))
    assert.same({ 3, 2, 1 }, versions(t.store:read("s-1", { backward = true, from = 3 })))
    assert.same({ 2 }, versions(t.store:read("s-1", { backward = true, from = 2, count = 1 })))
    assert.same({ 1, 2, 3, 4, 5 }, versions(t.store:read("s-1", { backward = false })))
  end)

  it("does not mix up streams sharing a prefix", function()
    t.store:append("s-10", H.ev("X", 10))
    t.store:append("s-", H.ev("X", 11))
    t.store:append("s", H.ev("X", 12))
    assert.same({ 1, 2, 3, 4, 5 }, H.pluck(H.collect(t.store:read("s-1")), "data"))
    assert.same({ 10 }, H.pluck(H.collect(t.store:read("s-10")), "data"))
    assert.same({ 5, 4, 3, 2, 1 }, H.pluck(H.collect(t.store:read("s-1", { backward = true })), "data"))
    assert.same({ 12 }, H.pluck(H.collect(t.store:read("s")), "data"))
  end)

  local bad = {
    { "opts is a string", function(s) return s:read("s-1", "x") end },
    { "from is 0", function(s) return s:read("s-1", { from = 0 }) end },
    { "from is -1", function(s) return s:read("s-1", { from = -1 }) end },
    { "from is 1.5", function(s) return s:read("s-1", { from = 1.5 }) end },
    { "from is a string", function(s) return s:read("s-1", { from = "x" }) end },
    { "from is a table", function(s) return s:read("s-1", { from = {} }) end },
    { "count is -1", function(s) return s:read("s-1", { count = -1 }) end },
    { "count is 2.5", function(s) return s:read("s-1", { count = 2.5 }) end },
    { "count is a string", function(s) return s:read("s-1", { count = "x" }) end },
    { "stream is a table", function(s) return s:read({}) end },
    { "stream is nil", function(s) return s:read() end },
    { "stream is empty", function(s) return s:read("") end },
  }
  for _, c in ipairs(bad) do
    it("raises when " .. c[1], function()
      H.raises_with(function() c[2](t.store) end, "bad argument")
    end)
  end
end)

describe("store:all", function()
  local t = {}
  before_each(function()
    H.setup(t)
    local s = t.store
    s:append("product-1", { H.ev("Created", 1), H.ev("PriceIncreased", 2) }) -- 1, 2
    s:append("order-1", H.ev("Placed", 3))                                  -- 3
    s:append("productx-1", H.ev("Created", 4))                              -- 4
    s:append("product", H.ev("PriceIncreased", 5))                          -- 5
    s:append("product-2-a", H.ev("Created", 6))                             -- 6
    s:append("product-1", H.ev("PriceIncreased", 7))                        -- 7
  end)
  after_each(function() H.teardown(t) end)

  local function data(...) return H.pluck(H.collect(...), "data") end

  it("yields the global log in position order", function()
    local evs = H.collect(t.store:all())
    assert.same({ 1, 2, 3, 4, 5, 6, 7 }, H.pluck(evs, "position"))
    assert.same({ 1, 2, 3, 4, 5, 6, 7 }, H.pluck(evs, "data"))
    assert.same({ "product-1", "product-1", "order-1", "productx-1", "product", "product-2-a", "product-1" },
      H.pluck(evs, "stream"))
    assert.same({ 1, 2, 1, 1, 1, 1, 3 }, H.pluck(evs, "version"))
  end)

  it("returns four values from the factory", function()
    assert.equal(4, select("#", t.store:all()))
    assert.equal(4, select("#", t.store:all({ category = "product" })))
  end)

  it("starts at opts.from (inclusive) and stops after opts.count", function()
    assert.same({ 5, 6, 7 }, data(t.store:all({ from = 5 })))
    assert.same({ 7 }, data(t.store:all({ from = 7 })))
    assert.same({}, data(t.store:all({ from = 8 })))
    assert.same({ 1, 2 }, data(t.store:all({ count = 2 })))
    assert.same({ 3, 4 }, data(t.store:all({ from = 3, count = 2 })))
    assert.same({}, data(t.store:all({ count = 0 })))
    assert.same({ 1, 2, 3, 4, 5, 6, 7 }, data(t.store:all({})))
  end)

  it("accepts the largest from and count", function()
    assert.same({ 1, 2, 3, 4, 5, 6, 7 }, data(t.store:all({ count = math.maxinteger })))
    assert.same({}, data(t.store:all({ from = math.maxinteger })))
    assert.is_nil(t.store:event(math.maxinteger))
  end)

  it("filters by category: the text before the first '-', or the whole id", function()
    assert.same({ 1, 2, 5, 6, 7 }, data(t.store:all({ category = "product" })))
    assert.same({ 3 }, data(t.store:all({ category = "order" })))
    assert.same({ 4 }, data(t.store:all({ category = "productx" })))
    assert.same({}, data(t.store:all({ category = "prod" })))
    assert.same({}, data(t.store:all({ category = "product-1" })))
  end)

  it("uses the category rule the binding exposes as core.category", function()
    local core = require "eventrocks.core"
    for _, c in ipairs({ { "product-1", "product" }, { "product-2-a", "product" }, { "product", "product" },
        { "-1", "" }, { "a-", "a" }, { "\0-x", "\0" } }) do
      assert.equal(c[2], core.category(c[1]))
    end
    for ev in t.store:all() do
      local found = false
      for other in t.store:all({ category = core.category(ev.stream) }) do
        found = found or other.position == ev.position
      end
      assert.is_true(found, ev.stream)
    end
    assert.has_error(function() core.category(1) end)
    assert.has_error(function() core.category(nil) end)
  end)

  it("filters by types", function()
    assert.same({ 2, 5, 7 }, data(t.store:all({ types = { "PriceIncreased" } })))
    assert.same({ 1, 3, 4, 6 }, data(t.store:all({ types = { "Created", "Placed" } })))
    assert.same({}, data(t.store:all({ types = { "Nope" } })))
  end)

  it("combines category, types, from and count; count counts matching events", function()
    assert.same({ 1, 6 }, data(t.store:all({ category = "product", types = { "Created" } })))
    assert.same({ 2, 5 }, data(t.store:all({ category = "product", types = { "PriceIncreased" }, count = 2 })))
    assert.same({ 5, 7 }, data(t.store:all({ category = "product", types = { "PriceIncreased" }, from = 3 })))
    assert.same({ 6, 7 }, data(t.store:all({ category = "product", from = 6, count = 5 })))
  end)

  local bad = {
    { "opts is a string", function(s) return s:all("x") end },
    { "from is 0", function(s) return s:all({ from = 0 }) end },
    { "from is -3", function(s) return s:all({ from = -3 }) end },
    { "from is 1.5", function(s) return s:all({ from = 1.5 }) end },
    { "from is a string", function(s) return s:all({ from = "x" }) end },
    { "count is -1", function(s) return s:all({ count = -1 }) end },
    { "count is 0.5", function(s) return s:all({ count = 0.5 }) end },
    { "count is a table", function(s) return s:all({ count = {} }) end },
    { "category is a table", function(s) return s:all({ category = {} }) end },
    { "category is a boolean", function(s) return s:all({ category = true }) end },
    { "types is a string", function(s) return s:all({ types = "Created" }) end },
    { "types holds a boolean", function(s) return s:all({ types = { "Created", true } }) end },
    { "types holds a table", function(s) return s:all({ types = { {} } }) end },
  }
  for _, c in ipairs(bad) do
    it("raises when " .. c[1], function()
      H.raises_with(function() c[2](t.store) end, "bad argument")
    end)
  end
end)

describe("iterators", function()
  local t = {}
  before_each(function()
    H.setup(t)
    t.store:append("s-1", H.evs(5))
    t.store:append("s-2", H.evs(2))
  end)
  after_each(function() H.teardown(t) end)

  local factories = {
    read = function(s) return s:read("s-1") end,
    all = function(s) return s:all() end,
    streams = function(s) return s:streams() end,
  }

  for name, make in pairs(factories) do
    describe(name, function()
      it("returns four values from the factory", function()
        assert.equal(4, select("#", make(t.store)))
      end)

      it("can be left with break and the store closed afterwards", function()
        local n = 0
        for _ in make(t.store) do
          n = n + 1
          if n == 1 then break end
        end
        assert.equal(1, n)
        t.store:close()
        assert.is_truthy(tostring(t.store):find("closed", 1, true))
        local s2, err = H.open(t, t.dir)
        assert.is_truthy(s2, err and err.message)
      end)

      it("can be left with break right after closing the store in the loop", function()
        local n = 0
        for _ in make(t.store) do
          n = n + 1
          t.store:close()
          break
        end
        assert.equal(1, n)
        collectgarbage()
        local s2, err = H.open(t, t.dir)
        assert.is_truthy(s2, err and err.message)
      end)

      it("is closed when the loop body raises, and the store still closes", function()
        local ok, err = pcall(function()
          for _ in make(t.store) do error("boom") end
        end)
        assert.is_false(ok)
        assert.is_truthy(tostring(err):find("boom", 1, true))
        assert.equal(7, t.store:last_position())
        t.store:close()
        local s2, err2 = H.open(t, t.dir)
        assert.is_truthy(s2, err2 and err2.message)
      end)

      it("raises when used after store:close()", function()
        local f, s, c = make(t.store)
        t.store:close()
        H.raises(function() return f(s, c) end)
      end)

      it("raises (no crash) when the store is closed mid-loop and the loop continues", function()
        local n = 0
        local ok, err = pcall(function()
          for _ in make(t.store) do
            n = n + 1
            if n == 1 then t.store:close() end
          end
        end)
        assert.is_false(ok)
        assert.equal(1, n)
        assert.is_not_nil(err)
        collectgarbage()
      end)

      it("still works when the store handle is only reachable through it", function()
        local f, s, c = (function()
          local st = assert(er.open(t.dir .. "/own"))
          st:append("s-1", H.evs(3))
          return make(st)
        end)()
        collectgarbage()
        collectgarbage()
        local first = f(s, c)
        assert.is_not_nil(first)
        f, s, c = nil, nil, nil
        collectgarbage()
        collectgarbage()
        local s2, err = H.open(t, t.dir .. "/own")
        assert.is_truthy(s2, err and err.message)
      end)

      it("many left unfinished do not prevent close", function()
        local keep = {}
        for i = 1, 50 do
          local f, s, c = make(t.store)
          f(s, c)
          keep[i] = f
        end
        t.store:close()
        keep = nil
        collectgarbage()
        collectgarbage()
        local s2, err = H.open(t, t.dir)
        assert.is_truthy(s2, err and err.message)
      end)
    end)
  end

  it("read and all see the events as of their creation", function()
    local seen = {}
    for ev in t.store:all() do
      seen[#seen + 1] = ev.position
      if ev.position == 1 then t.store:append("s-3", H.evs(3)) end
    end
    assert.same({ 1, 2, 3, 4, 5, 6, 7 }, seen)
    local vs = {}
    for ev in t.store:read("s-1") do
      vs[#vs + 1] = ev.version
      if ev.version == 1 then t.store:append("s-1", H.ev("Late")) end
    end
    assert.same({ 1, 2, 3, 4, 5 }, vs)
    assert.equal(6, t.store:version("s-1"))
  end)

  it("of several kinds can be interleaved", function()
    local f1, s1, c1 = t.store:read("s-1")
    local f2, s2, c2 = t.store:all({ from = 6 })
    local f3, s3, c3 = t.store:streams()
    assert.equal(1, f1(s1, c1).version)
    assert.equal(6, f2(s2, c2).position)
    assert.equal("s-1", (f3(s3, c3)))
    assert.equal(2, f1(s1, c1).version)
    assert.equal(7, f2(s2, c2).position)
    assert.equal("s-2", (f3(s3, c3)))
    assert.is_nil(f2(s2, c2))
    assert.is_nil((f3(s3, c3)))
  end)
end)
