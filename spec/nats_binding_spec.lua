-- The NATS binding on its own (lua/eventrocks_nats.c): it wraps libnats and
-- nothing else: error values of the store's shape without eventrocks.core,
-- options tables checked as the store binding checks its own, a generic
-- publish with any headers, and libnats kept loaded whatever its file name.
local H = require "helper"
local ns = require "nats_server"
local nats = require "eventrocks.nats"
local core = require "eventrocks.core"

local UNREACHABLE = { url = "nats://127.0.0.1:1", max_reconnect = 0, timeout = 200 }

-- Run `code` in a child lua5.4 with this process's paths but nothing
-- required; returns its output and exit status.
local function bare_child(code, env)
  local prelude = string.format("package.path = %q; package.cpath = %q; ", package.path, package.cpath)
  local p = assert(io.popen((env or "") .. " lua5.4 -e " .. H.shquote(prelude .. code) .. " 2>&1", "r"))
  local out = p:read("a")
  local _, _, status = p:close()
  return out, status
end

describe("the NATS binding", function()
  it("loads and makes its error values without eventrocks.core, of the store's shape", function()
    local out, status = bare_child([[
      local nats = require "eventrocks.nats"
      local c, err = nats.connect({ url = "nats://127.0.0.1:1", max_reconnect = 0, timeout = 200 })
      print(package.loaded["eventrocks.core"] == nil, c, err.code, tostring(err) == err.message)
      local core = require "eventrocks.core"
      print(getmetatable(err) == core.error_metatable)]])
    assert.equal(0, status, out)
    assert.equal("true\tnil\tio\ttrue\ntrue\n", out)
  end)

  it("fails with the store's error values", function()
    local c, err = nats.connect(UNREACHABLE)
    assert.is_nil(c)
    H.check_err(err, "io")
    assert.equal(core.error_metatable, getmetatable(err))
    assert.matches("cannot connect to nats://127.0.0.1:1", err.message, 1, true)
  end)

  it("checks the options of connect as the store checks its own", function()
    local function raises(opts, msg)
      assert.has_error(function() nats.connect(opts) end, "bad argument #1 to 'connect' (" .. msg .. ")")
    end
    raises({ uri = "nats://x" }, "unknown option 'uri'")
    raises({ tls = { cafile = "x" } }, "unknown option 'tls.cafile'")
    raises({ [1] = "x" }, "unknown option 1")
    raises({ timeout = "soon" }, "timeout must be an integer >= 1")
    raises({ max_reconnect = 1 << 40 }, "max_reconnect must be an integer from -1 to 2147483647")
    raises({ reconnect = 1 }, "reconnect must be a boolean")
    raises({ name = 5 }, "name must be a string")
    raises({ tls = { ca = 1 } }, "tls.ca must be a string")
    raises({ tls = "yes" }, "tls must be a boolean or a table")
    assert.has_error(function() nats.connect(5) end)
  end)

  it("kept libnats loaded when Lua unloads the binding, found without naming its version", function()
    -- the dynamic linker says which libraries it unmaps (LD_DEBUG=files)
    local out, status = bare_child('require "eventrocks.nats"', "LD_DEBUG=files")
    assert.equal(0, status, out)
    assert.matches("eventrocks/nats.so [0];  destroying link map", out, 1, true)
    assert.is_truthy(out:find("calling fini: [^\n]*/libnats%.so"), "libnats was not loaded") -- at exit
    assert.is_nil(out:find("libnats%.so[^\n]*destroying link map"), out)
  end)
end)

describe("the NATS binding with a server", function()
  local srv, conn, stream
  local serial = 0
  before_each(function()
    srv = ns.shared()
    serial = serial + 1
    stream = string.format("BIND_%d_%d", math.floor(ns.now() * 1000) % 100000000, serial)
    conn = assert(nats.connect({ url = srv.url }))
    assert(conn:add_stream({ name = stream, subjects = { stream:lower() .. ".>" } }))
  end)
  after_each(function()
    conn:delete_stream(stream)
    conn:close()
  end)

  it("checks the options of add_stream, add_consumer and publisher", function()
    assert.has_error(function() conn:add_stream({ name = "X", subjects = { "x" }, storag = "memory" }) end,
      "bad argument #1 to 'add_stream' (unknown option 'storag')")
    assert.has_error(function() conn:add_stream({ name = "X", subjects = { "x" }, max_msg_size = 1 << 31 }) end,
      "bad argument #1 to 'add_stream' (max_msg_size must be an integer from -1 to 2147483647)")
    assert.has_error(function() conn:add_consumer(stream, { durable = "d", filtr = ">" }) end,
      "bad argument #2 to 'add_consumer' (unknown option 'filtr')")
    assert.has_error(function() conn:add_consumer(stream, { durable = "d", ack_wait = math.maxinteger }) end)
    assert.has_error(function() conn:publisher({ max_pendng = 1 }) end,
      "bad argument #1 to 'publisher' (unknown option 'max_pendng')")
    assert.is_nil(conn:stream_info("X"))
  end)

  it("publishes a body with any headers, integers written in decimal", function()
    local pub = assert(conn:publisher())
    local subject = stream:lower() .. ".a"
    assert(pub:publish(subject, "one", { ["Nats-Msg-Id"] = "m1", ["X-Text"] = "caf\195\169",
      ["X-Int"] = -42, ["X-Min"] = math.mininteger, ["X-Zero"] = 0 }))
    assert(pub:publish(subject, "two"))
    assert(pub:publish(subject, "one again", { ["Nats-Msg-Id"] = "m1" })) -- a duplicate: the id arrived
    local acked, dups, last = pub:complete(5000)
    assert.same({ 3, 1, 2 }, { acked, dups, last })
    pub:close()
    local m = assert(ns.stream_msg(srv.url, stream, 1)) -- read without the binding
    assert.equal("one", m.data)
    assert.same({ ["Nats-Msg-Id"] = "m1", ["X-Text"] = "caf\195\169", ["X-Int"] = "-42",
      ["X-Min"] = "-9223372036854775808", ["X-Zero"] = "0" }, m.headers)
    m = assert(conn:get_msg(stream, 2))
    assert.equal("two", m.data)
    assert.same({}, m.headers)
  end)

  it("refuses a bad header and publishes nothing", function()
    local pub = assert(conn:publisher())
    local subject = stream:lower() .. ".a"
    assert.has_error(function() pub:publish(subject, "x", { ["X-Float"] = 1.5 }) end,
      "bad argument #3 to 'publish' (header 'X-Float' must be a string or an integer)")
    assert.has_error(function() pub:publish(subject, "x", { "no name" }) end,
      "bad argument #3 to 'publish' (header names must be strings)")
    assert.has_error(function() pub:publish(subject, "x", "Nats-Msg-Id") end)
    local acked = pub:complete(5000)
    assert.equal(0, acked)
    pub:close()
    assert.equal(0, assert(conn:stream_info(stream)).messages)
  end)
end)
