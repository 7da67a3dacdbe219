-- The JetStream relay and source (issue 8), against a real nats-server:
-- the shared one (EVENTROCKS_NATS_URL in CI, else one started for the
-- specs) and, where a server is restarted or configured, one of their own.
local H = require "helper"
local ns = require "nats_server"
local common = require "jetstream.common"
local er = H.er
local core = require "eventrocks.core"
local nats = require "eventrocks.nats"

local LUA = "env LUA_PATH='lua/?.lua;lua/?/init.lua;spec/?.lua;;' LUA_CPATH='build/?.so;;' lua5.4 "

local serial = 0
local function unique(base)
  serial = serial + 1
  return string.format("%s_%d_%d", base, math.floor(ns.now() * 1000) % 100000000, serial)
end

-- Every message of a JetStream stream, in sequence order, read through a
-- durable consumer of its own: an array of {seq, id, position, stream,
-- version, subject, body}.
local function contents(url, stream)
  local conn = assert(nats.connect({ url = url }))
  local durable = unique("verify")
  assert(conn:add_consumer(stream, { durable = durable, filter = ">" }))
  local sub = assert(conn:pull_subscribe(stream, durable, ">"))
  local out = {}
  local total = assert(conn:stream_info(stream)).messages
  while #out < total do
    local b = assert(sub:fetch(1000, 2000))
    if b:count() == 0 then break end
    for i = 1, b:count() do
      local body, subject, seq = b:msg(i)
      out[#out + 1] = { seq = seq, id = b:header(i, "Nats-Msg-Id"), subject = subject, body = body,
        position = tonumber(b:header(i, "Eventrocks-Position")), stream = b:header(i, "Eventrocks-Stream"),
        version = tonumber(b:header(i, "Eventrocks-Version")), type = b:header(i, "Eventrocks-Type") }
    end
    b:ack(b:count())
    b:free()
  end
  sub:close()
  conn:delete_consumer(stream, durable)
  conn:close()
  return out
end

-- JetStream holds the store's events exactly once each, in position order.
local function assert_exactly_once(store, msgs)
  local n = 0
  for ev in store:all() do
    n = n + 1
    local m = msgs[n]
    assert.is_not_nil(m, "event at position " .. ev.position .. " is missing in JetStream")
    assert.equal(ev.id, m.id)
    assert.equal(ev.position, m.position)
    assert.equal(ev.stream, m.stream)
    assert.equal(ev.version, m.version)
  end
  assert.equal(n, #msgs, "JetStream holds more messages than the store has events")
end

-- Standard base64, decoded.
local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local function base64(s)
  local out, bits, n = {}, 0, 0
  for c in s:gmatch("[^=]") do
    bits, n = bits << 6 | (B64:find(c, 1, true) - 1), n + 6
    if n >= 8 then
      n = n - 8
      out[#out + 1] = string.char(bits >> n & 0xff)
    end
  end
  return table.concat(out)
end

-- Code points some NATS client trims off a header value (JavaScript's
-- trim, Go's unicode.IsSpace, Python's strip).
local BLANKS = { [0x09] = 1, [0x0A] = 1, [0x0B] = 1, [0x0C] = 1, [0x0D] = 1, [0x20] = 1, [0x1C] = 1, [0x1D] = 1,
  [0x1E] = 1, [0x1F] = 1, [0x85] = 1, [0xA0] = 1, [0x1680] = 1, [0x2028] = 1, [0x2029] = 1, [0x202F] = 1,
  [0x205F] = 1, [0x3000] = 1, [0xFEFF] = 1 }
for cp = 0x2000, 0x200A do BLANKS[cp] = 1 end

-- Does the (UTF-8) text start or end with such a blank?
local function edge_blank(v)
  if v == "" then return false end
  local first = utf8.codepoint(v, 1)
  local last = utf8.codepoint(v, utf8.offset(v, -1))
  return BLANKS[first] ~= nil or BLANKS[last] ~= nil
end

local function delete_stream(url, stream)
  local conn = assert(nats.connect({ url = url }))
  conn:delete_stream(stream)
  conn:close()
end

describe("escaping names for NATS headers and subjects", function()
  local jt = require "eventrocks.jetstream"

  it("writes %XX for exactly the unsafe bytes, and '%' itself", function()
    local cases = {
      { "order", "order", "order" }, { "a b", "a b", "a%20b" }, { " a ", "%20a%20", "%20a%20" },
      { "100%", "100%25", "100%25" }, { "a.b*c>d", "a.b*c>d", "a%2Eb%2Ac%3Ed" }, { "\t\r\n\0\x7f", "%09%0D%0A%00%7F", "%09%0D%0A%00%7F" },
      { "caf\xc3\xa9", "caf\xc3\xa9", "caf\xc3\xa9" }, { "\xff", "%FF", "%FF" }, { "\xc3", "%C3", "%C3" },
      { "\xc0\xaf", "%C0%AF", "%C0%AF" }, { "\xed\xa0\x80", "%ED%A0%80", "%ED%A0%80" },
      { "\xf4\x90\x80\x80", "%F4%90%80%80", "%F4%90%80%80" }, { "\xf0\x9f\x98\x80", "\xf0\x9f\x98\x80", "\xf0\x9f\x98\x80" },
      { "\xc2\xa0x\xc2\xa0y\xc2\xa0", "%C2%A0x\xc2\xa0y%C2%A0", "\xc2\xa0x\xc2\xa0y\xc2\xa0" },
      { "\xef\xbb\xbfx", "%EF%BB%BFx", "\xef\xbb\xbfx" }, { "  ", "%20%20", "%20%20" }, { "", "", "%00" },
    }
    for _, c in ipairs(cases) do
      assert.equal(c[2], nats.escape(c[1], "header"), ("%q"):format(c[1]))
      assert.equal(c[3], nats.escape(c[1], "token"), ("%q"):format(c[1]))
      assert.equal(c[3], jt.token(c[1]))
    end
  end)

  it("is reversible, and what it writes is UTF-8 without blanks at the ends (random names)", function()
    math.randomseed(42)
    local pool = { " ", "\t", "%", ".", "*", ">", "\0", "\x1b", "\x7f", "\xff", "\xc3", "\xc3\xa9", "\xc2\xa0",
      "\xe3\x80\x80", "\xef\xbb\xbf", "\xf0\x9f\x98\x80", "\xed\xa0\x80", "a", "Z", "-", "_", "%41" }
    for _ = 1, 3000 do
      local parts = {}
      for i = 1, math.random(1, 8) do
        parts[i] = math.random(3) == 1 and string.char(math.random(0, 255)) or pool[math.random(#pool)]
      end
      local name = table.concat(parts)
      local h, tok = nats.escape(name, "header"), nats.escape(name, "token")
      assert.equal(name, nats.unescape(h))
      assert.equal(name, jt.unescape(tok))
      assert.is_not_nil(utf8.len(h), h)
      assert.is_not_nil(utf8.len(tok), tok)
      assert.is_false(edge_blank(h), h)
      assert.is_nil(tok:find("[%s%c%.%*>]"), tok)
      assert.is_nil(h:find("%c"), h)
    end
  end)

  it("decoding refuses a '%' that is not an escape", function()
    for _, bad in ipairs({ "%", "a%", "%4", "%4g", "%%41", "x%zz" }) do
      local v, err = jt.unescape(bad)
      assert.is_nil(v, bad)
      assert.matches("not followed by two hex digits", err)
    end
    assert.equal("A%b", jt.unescape("%41%25%62"))
  end)
end)

describe("JetStream relay", function()
  local t, srv, stream, prefix = {}, nil, nil, nil
  before_each(function()
    H.setup(t)
    srv = ns.shared()
    stream = unique("RELAY")
    prefix = stream:lower() -- streams of one server may not share subjects
  end)
  after_each(function()
    delete_stream(srv.url, stream)
    H.teardown(t)
  end)

  it("publishes 10,000 events over 100 streams once each, in position order", function()
    common.fill(t.store, 10000, 100)
    local relay = t.store:relay("out", { url = srv.url, stream = stream, prefix = prefix, create_stream = true, batch = 700 })
    local n, pos = relay:run()
    assert.equal(10000, n)
    assert.equal(10000, pos)
    assert.equal(10000, relay:position())
    local msgs = contents(srv.url, stream)
    assert_exactly_once(t.store, msgs)
    -- per stream, versions arrive in order
    local last = {}
    for _, m in ipairs(msgs) do
      assert.equal((last[m.stream] or 0) + 1, m.version)
      last[m.stream] = m.version
    end
    -- subject <prefix>.<category>.<type>, body the event as MessagePack
    assert.equal(prefix .. ".order." .. msgs[3].type, msgs[3].subject)
    local ev = core.decode(msgs[3].body)
    local stored = t.store:event(3)
    assert.same({ stored.id, stored.stream, stored.version, stored.position, stored.type, stored.time, stored.data },
      { ev.id, ev.stream, ev.version, ev.position, ev.type, ev.time, ev.data })
    -- nothing new: nothing published
    assert.same({ 0, 10000 }, { relay:run() })
    common.fill(t.store, 10, 100, 10001)
    assert.same({ 10, 10010 }, { relay:run() })
    assert.equal(10010, #contents(srv.url, stream))
    relay:close()
  end)

  it("publishes personal data decrypted, with Eventrocks-Subject and Eventrocks-Forgotten headers", function()
    local key = string.rep("\7", 32)
    local ks = assert(H.open(t, t.dir .. "-keyed", { key = key }))
    assert(ks:append("user-1", { type = "A", data = { name = "alice" } }, { subject = "alice" }))
    assert(ks:append("user-2", { type = "A", data = { name = "bob" } }, { subject = "bob" }))
    assert(ks:append("note-1", { type = "N", data = 1 }))
    assert(ks:forget("bob"))
    local relay = ks:relay("out", { url = srv.url, stream = stream, prefix = prefix, create_stream = true })
    assert.same({ 3, 3 }, { relay:run() })
    relay:close()
    local conn = assert(nats.connect({ url = srv.url }))
    local durable = unique("personal")
    assert(conn:add_consumer(stream, { durable = durable, filter = ">" }))
    local sub = assert(conn:pull_subscribe(stream, durable, ">"))
    local b = assert(sub:fetch(10, 2000))
    assert.equal(3, b:count())
    local got = {}
    for i = 1, 3 do
      got[i] = { core.decode(b:msg(i)), b:header(i, "Eventrocks-Subject"), b:header(i, "Eventrocks-Forgotten") }
    end
    b:ack(b:count())
    b:free()
    sub:close()
    conn:delete_consumer(stream, durable)
    conn:close()
    assert.same({ name = "alice" }, got[1][1].data) -- consumers have no key: plaintext
    assert.equal("alice", got[1][2])
    assert.is_nil(got[1][3])
    assert.is_nil(got[2][1].data)
    assert.equal("bob", got[2][2])
    assert.equal("true", got[2][3])
    assert.is_nil(got[3][2])
    ks:close()
    H.rmrf(t.dir .. "-keyed")
  end)

  it("re-publishes from its checkpoint without duplicating, even when the checkpoint is lost", function()
    common.fill(t.store, 500, 10)
    local relay = t.store:relay("out", { url = srv.url, stream = stream, prefix = prefix, create_stream = true, batch = 100 })
    assert.same({ 500, 500 }, { relay:run() })
    assert(relay:reset()) -- as if the commit of every checkpoint had been lost
    assert.equal(0, relay:position())
    local n, pos = relay:run()
    assert.equal(500, pos)
    assert.equal(0, n) -- the stream's last message moved the checkpoint up
    common.fill(t.store, 5, 10, 501)
    assert.same({ 5, 505 }, { relay:run() })
    assert_exactly_once(t.store, contents(srv.url, stream))
    relay:close()
  end)

  it("steps over holes (hard deletes, truncation, compaction): each event once, none missing, and finds its place again", function()
    common.fill(t.store, 300, 10)
    local relay = t.store:relay("out", { url = srv.url, stream = stream, prefix = prefix, create_stream = true, batch = 50 })
    assert.same({ 300, 300 }, { relay:run() })
    -- events not yet published, then holes among them and at their end
    for i = 1, 300 do assert(t.store:append("late-" .. (i % 10), { type = "Placed", data = { i = i } })) end
    for k = 0, 9 do
      if k % 2 == 0 then assert(t.store:truncate("late-" .. k, 7)) else assert(t.store:delete("late-" .. k, { hard = true })) end
    end
    assert(t.store:delete("late-0", { hard = true })) -- its last event is the log's last
    assert(t.store:compact())
    local published, pos = relay:run()
    local visible = 0
    for _ in t.store:all() do visible = visible + 1 end
    assert.is_true(published > 0)
    assert.equal(visible - 300, published)
    assert.equal(598, pos) -- the last event that reads (599 and 600 were removed)
    assert_exactly_once(t.store, contents(srv.url, stream))
    -- a relay that lost its checkpoint finds its place from JetStream's last message
    assert(relay:reset())
    assert.equal(0, (relay:run()))
    common.fill(t.store, 5, 10, 601)
    assert.equal(5, (relay:run()))
    assert_exactly_once(t.store, contents(srv.url, stream))
    relay:close()
  end)

  it("survives SIGKILL mid-way: restarted, it leaves no duplicates and no gaps", function()
    local a = assert(er.open(t.dir .. "/a"))
    common.fill(a, 10000, 100)
    a:close()
    local log = t.dir .. "/child.log"
    local pid = ns.spawn(LUA .. "spec/jetstream/child.lua relay " .. t.dir .. "/a " .. srv.url .. " "
      .. stream .. " 100 10 " .. prefix, log)
    local conn = assert(nats.connect({ url = srv.url }))
    local deadline = ns.now() + 30
    local seen = 0
    while ns.now() < deadline do
      local info = conn:stream_info(stream)
      seen = info and info.messages or 0
      if seen >= 2000 then break end
      ns.sleep(0.01)
    end
    conn:close()
    assert.is_true(seen >= 2000 and seen < 10000, "the kill must land mid-way, saw " .. seen)
    ns.kill(pid, "KILL")
    ns.wait(pid, 10)
    local store <close> = assert(er.open(t.dir .. "/a"))
    local relay = store:relay("out", { url = srv.url, stream = stream, prefix = prefix })
    local before = relay:position()
    assert.is_true(before < 10000)
    local _, pos = relay:run()
    assert.is_true(relay.duplicates < 200, "at most the unfinished batch comes again")
    assert.equal(10000, pos)
    assert_exactly_once(store, contents(srv.url, stream))
    relay:close()
  end)

  it("reconnects when nats-server restarts mid-relay, and finishes", function()
    local own <close> = ns.start()
    common.fill(t.store, 10000, 100)
    local relay = t.store:relay("out", { url = own.url, stream = stream, prefix = prefix, create_stream = true, batch = 200,
      reconnect_wait = 100 })
    local batches, restarted, retries = 0, false, 0
    local n, pos = relay:run({
      progress = function()
        batches = batches + 1
        if batches == 10 then
          own:restart()
          restarted = true
        end
      end,
      on_retry = function() retries = retries + 1 end,
    })
    assert.is_true(restarted)
    assert.equal(10000, pos, tostring(n and "" or pos))
    assert_exactly_once(t.store, contents(own.url, stream))
    relay:close()
  end)

  it("goes on after a server restart outside the duplicate window (the chain is on sequences)", function()
    local own <close> = ns.start()
    common.fill(t.store, 10, 2)
    local relay = t.store:relay("out", { url = own.url, stream = stream, prefix = prefix, create_stream = true,
      duplicate_window = 500, reconnect_wait = 100 })
    assert.same({ 10, 10 }, { relay:run() })
    ns.sleep(1)
    own:restart()
    common.fill(t.store, 1, 2, 11)
    local n, pos = relay:run()
    assert.equal(11, pos, tostring(n and "" or pos))
    relay:close()
    assert_exactly_once(t.store, contents(own.url, stream))
  end)

  it("relays from a read-only handle beside the writer, its checkpoint being JetStream's last message", function()
    common.fill(t.store, 1000, 10)
    local ro = assert(er.open(t.dir, { read_only = true }))
    local relay = ro:relay("out", { url = srv.url, stream = stream, prefix = prefix, create_stream = true, batch = 300 })
    assert.same({ 1000, 1000 }, { relay:run() })
    common.fill(t.store, 500, 10, 1001) -- the writer goes on
    assert.same({ 500, 1500 }, { relay:run() })
    relay:close()
    -- a new read-only relay starts where JetStream is
    local relay2 = ro:relay("out2", { url = srv.url, stream = stream, prefix = prefix })
    common.fill(t.store, 5, 10, 1501)
    assert.same({ 5, 1505 }, { relay2:run() })
    relay2:close()
    ro:close()
    assert_exactly_once(t.store, contents(srv.url, stream))
  end)

  it("publishes only the category and types asked for, on subjects of its choice", function()
    common.fill(t.store, 30, 3)
    t.store:append("cart-1", { type = "Paid", data = { i = 0 } })
    local relay = t.store:relay("out", { url = srv.url, stream = stream, prefix = prefix, create_stream = true,
      category = "order", types = { "Paid" }, batch = 7,
      subject = function(ev) return prefix .. ".paid." .. ev.data.i end })
    local n, pos = relay:run()
    assert.equal(10, n)
    assert.equal(31, pos)
    local msgs = contents(srv.url, stream)
    assert.equal(10, #msgs)
    for k, m in ipairs(msgs) do
      assert.equal("Paid", m.type)
      assert.equal(prefix .. ".paid." .. (3 * k), m.subject)
    end
    relay:close()
    local bad = t.store:relay("bad", { url = srv.url, stream = stream, prefix = prefix,
      subject = function() return "elsewhere.x" end })
    assert.has_error(function() bad:run() end, "relay 'bad': subject(event) must return a subject starting with '"
      .. prefix .. ".', got elsewhere.x")
    bad:close()
  end)

  it("follows the log until stop() says so", function()
    common.fill(t.store, 2500, 10)
    local relay = t.store:relay("out", { url = srv.url, stream = stream, prefix = prefix, create_stream = true,
      batch = 1000 })
    local calls = 0
    local n, pos = relay:run({ follow = true, interval = 5, stop = function()
      calls = calls + 1
      if calls == 2 then common.fill(t.store, 7, 10, 2501) end
      return calls >= 4
    end })
    assert.equal(2507, n)
    assert.equal(2507, pos)
    assert.equal(2507, relay:position())
    relay:close()
    assert_exactly_once(t.store, contents(srv.url, stream))
  end)

  it("in follow mode waits for the next commit, not for the interval", function()
    common.fill(t.store, 5, 10)
    local relay = t.store:relay("out", { url = srv.url, stream = stream, prefix = prefix, create_stream = true })
    local calls, t0 = 0, require("system").monotime()
    local n, pos = relay:run({ follow = true, interval = 30000, stop = function()
      calls = calls + 1
      if calls == 1 then common.fill(t.store, 3, 10, 6) end -- committed before the wait: no wait at all
      return relay:position() == 8
    end })
    local took = require("system").monotime() - t0
    assert.equal(8, n)
    assert.equal(8, pos)
    assert.is_true(took < 10, "took " .. took .. " s: the relay slept its interval")
    relay:close()
    assert_exactly_once(t.store, contents(srv.url, stream))
  end)

  it("publishes JSON bodies with --json semantics", function()
    t.store:append("cart-1", { type = "Added", data = { sku = "x", qty = 2, price = 1.5 }, metadata = { by = "me" } })
    local relay = t.store:relay("out", { url = srv.url, stream = stream, prefix = prefix, create_stream = true, json = true })
    assert.same({ 1, 1 }, { relay:run() })
    local m = contents(srv.url, stream)[1]
    local ev = require("eventrocks.jsonl").decode_event(m.body, 1)
    assert.same({ sku = "x", qty = 2, price = 1.5 }, ev.data)
    assert.same({ by = "me" }, ev.metadata)
    relay:close()
  end)

  it("escapes header values and maps odd names to subject tokens", function()
    t.store:append("we.ird*-1", { type = "Line\nBreak 100%", data = 1 })
    local relay = t.store:relay("out", { url = srv.url, stream = stream, prefix = prefix, create_stream = true })
    assert.same({ 1, 1 }, { relay:run() })
    local m = contents(srv.url, stream)[1]
    assert.equal(prefix .. ".we%2Eird%2A.Line%0ABreak%20100%25", m.subject)
    assert.equal("Line%0ABreak 100%25", m.type)
    relay:close()
  end)

  it("names with blanks at either end, '%', control bytes and bytes that are not UTF-8 reach every client exactly", function()
    local names = {
      { " lead-1", " Leading" }, { "trail -1", "Trailing " }, { "\ttab\t-1", "\tTab\t" },
      { "100%-1", "100% done" }, { "bin\xff\xfe-1", "Bin\xff" }, { "ctl\x01\x1b[31m-1", "Ctl\x07\r\n" },
      { "\xc2\xa0nbsp\xc2\xa0-1", "\xe3\x80\x80Ideo\xe3\x80\x80" }, { "caf\xc3\xa9-1", "\xef\xbb\xbfBOM" },
      { "we.ird*>-1", "a.b*c>d" }, { "-nocat", "%41 " }, { "over\xc0\xafl\xed\xa0\x80-1", "Big\xf4\x90\x80\x80" },
      { "plain-1", "Plain" }, { " " .. string.rep("long\xff", 120) .. "-1", string.rep("T ", 400) },
    }
    for _, n in ipairs(names) do assert(t.store:append(n[1], { type = n[2], data = n[1] })) end
    local relay = t.store:relay("out", { url = srv.url, stream = stream, prefix = prefix, create_stream = true })
    assert.same({ #names, #names }, { relay:run() })
    relay:close()
    local jt = require "eventrocks.jetstream"
    local function name_of(tok) return tok == "%00" and "" or assert(jt.unescape(tok)) end
    -- what the server stores, read raw through the JetStream API: the
    -- header block and the subject are valid UTF-8, no value has a blank
    -- at either end, and each decodes to the exact bytes
    local conn = assert(nats.connect({ url = srv.url }))
    local json = require "dkjson"
    for seq, n in ipairs(names) do
      local reply = assert(conn:request("$JS.API.STREAM.MSG.GET." .. stream, '{"seq":' .. seq .. "}"))
      local msg = assert(json.decode(reply).message, reply)
      local hdrs = base64(msg.hdrs)
      assert.is_not_nil(utf8.len(hdrs), "header bytes not UTF-8: " .. hdrs)
      local got = {}
      for k, v in hdrs:gmatch("([%w%-]+):([^\r\n]*)\r\n") do
        assert.equal(" ", v:sub(1, 1))
        v = v:sub(2)
        assert.is_false(edge_blank(v), ("%q has a blank at an end"):format(v))
        got[k] = v
      end
      assert.equal(n[1], assert(jt.unescape(got["Eventrocks-Stream"])))
      assert.equal(n[2], assert(jt.unescape(got["Eventrocks-Type"])))
      assert.equal(tostring(seq), got["Eventrocks-Position"])
      local subject = msg.subject
      assert.is_not_nil(utf8.len(subject))
      assert.is_nil(subject:find("[%s%c*>]"), subject)
      local p, cat, ty = subject:match("^(.-)%.([^.]+)%.([^.]+)$")
      assert.equal(prefix, p)
      assert.equal(n[1]:match("^[^-]*"), name_of(cat))
      assert.equal(n[2], name_of(ty))
    end
    conn:close()
    -- the binding's own fetch reads the same
    for i, m in ipairs(contents(srv.url, stream)) do
      assert.equal(names[i][1], jt.unescape(m.stream))
      assert.equal(names[i][2], jt.unescape(m.type))
    end
    -- and a mirror gets the names back exactly
    local B = assert(er.open(t.dir .. "/b"))
    local src = er.jetstream_source({ url = srv.url, stream = stream, prefix = prefix, mirror = true })
    local pb = B:projection("m", { source = src, handlers = {} })
    assert.same({ #names, #names }, { pb:run() })
    for ev in B:all() do
      assert.equal(names[ev.position][1], ev.stream)
      assert.equal(names[ev.position][2], ev.type)
      assert.equal(ev.stream, ev.data)
    end
    src:close()
    B:close()
  end)

  it("checks its arguments", function()
    assert.has_error(function() t.store:relay("") end)
    assert.has_error(function() t.store:relay("x", { stream = "a.b" }) end)
    assert.has_error(function() t.store:relay("x", { batch = 0 }) end)
    assert.has_error(function() t.store:relay("x", { prefix = "a.*" }) end)
    assert.has_error(function() t.store:relay("x", { subject = "nope" }) end)
    assert.has_error(function() t.store:relay("x", { types = { 1 } }) end)
    assert.has_error(function() nats.connect({ url = 5 }) end)
    assert.has_error(function() nats.connect({ timeout = "soon" }) end)
    assert.has_error(function() nats.connect({ tls = { ca = 1 } }) end)
  end)

  describe("errors", function()
    it("server unreachable: io, naming the URL", function()
      common.fill(t.store, 3, 1)
      local relay = t.store:relay("out", { url = "nats://127.0.0.1:1", max_reconnect = 0, timeout = 300 })
      local n, err = relay:run()
      assert.is_nil(n)
      assert.equal("io", err.code)
      assert.matches("nats://127.0.0.1:1", err.message, 1, true)
      assert.equal(0, relay:position())
    end)

    it("stream missing: not_found unless create_stream", function()
      common.fill(t.store, 3, 1)
      local relay = t.store:relay("out", { url = srv.url, stream = stream, prefix = prefix })
      local n, err = relay:run()
      assert.is_nil(n)
      assert.equal("not_found", err.code)
      assert.matches(stream, err.message, 1, true)
      assert.equal(0, relay:position())
      relay:close()
    end)

    it("an event over the server's max_payload: too_large, naming its position; the checkpoint stays before it", function()
      local own <close> = ns.start({ max_payload = 4096 })
      common.fill(t.store, 5, 1)
      t.store:append("big-1", { type = "Huge", data = string.rep("x", 10000) })
      common.fill(t.store, 5, 1, 6)
      local relay = t.store:relay("out", { url = own.url, stream = stream, prefix = prefix, create_stream = true, batch = 3 })
      local n, err = relay:run()
      assert.is_nil(n)
      assert.equal("too_large", err.code)
      assert.matches("position 6", err.message, 1, true)
      assert.matches("4096", err.message, 1, true)
      assert.equal(3, relay:position())
      relay:close()
    end)

    it("permission denied: permission_denied", function()
      local own <close> = ns.start({ config = ([[
authorization {
  users = [
    { user: admin, password: secret }
    { user: reader, password: secret, permissions: { publish: { deny: ["PREFIX.>"] } } }
  ]
}
]]):gsub("PREFIX", prefix) })
      local admin = assert(nats.connect({ url = own.url, user = "admin", password = "secret" }))
      assert(admin:add_stream({ name = stream, subjects = { prefix .. ".>" } }))
      admin:close()
      common.fill(t.store, 3, 1)
      local relay = t.store:relay("out", { url = own.url, user = "reader", password = "secret", stream = stream, prefix = prefix,
        ack_timeout = 1000 })
      local n, err = relay:run()
      assert.is_nil(n)
      assert.equal("permission_denied", err.code)
      assert.equal(0, relay:position())
      relay:close()
      -- and wrong credentials: refused at connect
      local c, cerr = nats.connect({ url = own.url, user = "admin", password = "wrong", max_reconnect = 0 })
      assert.is_nil(c)
      assert.is_string(cerr.message)
    end)

    it("token, user/password and TLS options reach the server", function()
      local tok <close> = ns.start({ config = "authorization { token: s3cret }\n" })
      local c, err = nats.connect({ url = tok.url, max_reconnect = 0 })
      assert.is_nil(c)
      assert.is_string(err.message)
      c = assert(nats.connect({ url = tok.url, token = "s3cret" }))
      assert.equal("connected", c:status())
      c:close()
      -- TLS: a self-signed certificate for 127.0.0.1, the client given it as its CA
      local dir = t.dir
      assert(os.execute("openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1"
        .. " -addext subjectAltName=IP:127.0.0.1 -keyout " .. dir .. "/key.pem -out " .. dir
        .. "/cert.pem >/dev/null 2>&1"))
      local tls <close> = ns.start({ config = "tls { cert_file: \"" .. dir .. "/cert.pem\", key_file: \""
        .. dir .. "/key.pem\" }\n" })
      c, err = nats.connect({ url = tls.url, max_reconnect = 0 })
      assert.is_nil(c) -- the server requires TLS
      c, err = nats.connect({ url = tls.url, tls = { ca = dir .. "/cert.pem" } })
      assert(c, err and err.message)
      common.fill(t.store, 5, 1)
      local relay = t.store:relay("out", { connection = c, stream = stream, prefix = prefix, create_stream = true })
      assert.same({ 5, 5 }, { relay:run() })
      relay:close()
      assert.equal("connected", c:status()) -- a shared connection stays open
      c:close()
      c, err = nats.connect({ url = tls.url, tls = { ca = dir .. "/nope.pem" } })
      assert.is_nil(c)
      assert.matches("tls.ca", err.message, 1, true)
    end)

    it("a stream shared with another store is refused", function()
      common.fill(t.store, 3, 1)
      local relay = t.store:relay("out", { url = srv.url, stream = stream, prefix = prefix, create_stream = true })
      assert.same({ 3, 3 }, { relay:run() })
      relay:close()
      local other = assert(er.open(t.dir .. "/other"))
      common.fill(other, 3, 1)
      local r2 = other:relay("out", { url = srv.url, stream = stream, prefix = prefix })
      local n, err = r2:run()
      assert.is_nil(n)
      assert.equal("invalid", err.code)
      assert.matches("of its own", err.message, 1, true)
      r2:close()
      other:close()
    end)
  end)
end)

describe("JetStream source", function()
  local t, srv, stream, prefix = {}, nil, nil, nil
  before_each(function()
    H.setup(t)
    srv = ns.shared()
    stream = unique("SRC")
    prefix = stream:lower()
  end)
  after_each(function()
    delete_stream(srv.url, stream)
    H.teardown(t)
  end)

  local function relay_all(store)
    local relay = store:relay("out", { url = srv.url, stream = stream, prefix = prefix, create_stream = true })
    local n, err = relay:run()
    assert(n, tostring(err))
    relay:close()
  end

  local function same_read_model(a, b)
    local rows = 0
    for k, v in a:each() do
      assert.same(v, b:get(k), k)
      rows = rows + 1
    end
    for k in b:each() do assert.is_not_nil(a:get(k), k) end
    return rows
  end

  it("a mirror of a store with truncated and deleted streams starts those streams where A's start", function()
    common.fill(t.store, 200, 10)
    assert(t.store:truncate("order-3", 8))
    assert(t.store:delete("order-4", { hard = true }))
    assert(t.store:compact())
    relay_all(t.store)
    local B = assert(er.open(t.dir .. "/b"))
    local src = er.jetstream_source({ url = srv.url, stream = stream, prefix = prefix, durable = "b", mirror = true })
    local none = function() end
    local pb = B:projection("mirror", { source = src, handlers = { Placed = none, Paid = none } })
    local n = assert(pb:run({ batch = 50 }))
    assert.equal(200 - 7 - 20, n)
    local va = {}
    for ev in t.store:read("order-3") do va[#va + 1] = ev.version end
    local vb = {}
    for ev in B:read("order-3") do vb[#vb + 1] = ev.version end
    assert.same(va, vb)
    assert.equal(8, vb[1])
    assert.equal(0, (B:_check()))
    -- and the mirrored stream goes on from there
    assert(t.store:append("order-3", { type = "Placed", data = { i = 0 } }))
    relay_all(t.store)
    assert(pb:run())
    assert.equal(t.store:version("order-3"), B:version("order-3"))
    src:close()
    B:close()
  end)

  it("store A relays, store B consumes into a projection and a mirror equal to A's", function()
    common.fill(t.store, 5000, 50)
    relay_all(t.store)
    local B = assert(er.open(t.dir .. "/b"))
    local src = er.jetstream_source({ url = srv.url, stream = stream, prefix = prefix, durable = "b", mirror = true })
    local pb = B:projection("counts", common.counts_spec(src))
    local n, pos = pb:run({ batch = 300 })
    assert.equal(5000, n)
    assert.equal(5000, pos)
    assert.equal(5000, pb:position())
    local pa = t.store:projection("counts", common.counts_spec(nil))
    pa:run()
    assert.equal(50, same_read_model(pa, pb))
    -- the mirror reads back with the normal API: same ids, streams, versions, times, data
    local i = 0
    for ev in B:all() do
      i = i + 1
      local a = t.store:event(ev.position)
      assert.same({ a.id, a.stream, a.version, a.type, a.time, a.data, a.metadata },
        { ev.id, ev.stream, ev.version, ev.type, ev.time, ev.data, ev.metadata })
    end
    assert.equal(5000, i)
    -- more events flow through
    common.fill(t.store, 100, 50, 5001)
    relay_all(t.store)
    assert.same({ 100, 5100 }, { pb:run() })
    pa:run()
    same_read_model(pa, pb)
    assert.equal(5100, B:last_position())
    src:close()
    B:close()
  end)

  it("a redelivered message is applied once; a reset rebuilds from JetStream", function()
    common.fill(t.store, 300, 3)
    relay_all(t.store)
    local B = assert(er.open(t.dir .. "/b"))
    local src = er.jetstream_source({ url = srv.url, stream = stream, prefix = prefix, durable = "b" })
    local pb = B:projection("counts", common.counts_spec(src))
    assert.same({ 300, 300 }, { pb:run() })
    -- the durable consumer forgets our acknowledgements: everything comes again
    local conn = assert(nats.connect({ url = srv.url }))
    src:close()
    assert(conn:delete_consumer(stream, "b"))
    assert(conn:add_consumer(stream, { durable = "b", filter = prefix .. ".>" }))
    conn:close()
    assert.same({ 0, 300 }, { pb:run() })
    assert(pb:reset())
    assert.equal(0, pb:position())
    assert.same({ 300, 300 }, { pb:run() })
    local pa = t.store:projection("counts", common.counts_spec(nil))
    pa:run()
    same_read_model(pa, pb)
    src:close()
    B:close()
  end)

  it("a handler error keeps nothing of the batch, and the next run applies it once", function()
    common.fill(t.store, 100, 2)
    relay_all(t.store)
    local B = assert(er.open(t.dir .. "/b"))
    local src = er.jetstream_source({ url = srv.url, stream = stream, prefix = prefix, durable = "b" })
    local fail_at = 57
    local spec = common.counts_spec(src, function()
      fail_at = fail_at - 1
      if fail_at == 0 then error("boom") end
    end)
    local pb = B:projection("counts", spec)
    assert.has_error(function() pb:run({ batch = 40 }) end)
    assert.equal(40, pb:position())
    assert.same({ 60, 100 }, { pb:run({ batch = 40 }) })
    local pa = t.store:projection("counts", common.counts_spec(nil))
    pa:run()
    same_read_model(pa, pb)
    src:close()
    B:close()
  end)

  it("two stores running a projection of the same name each get every event", function()
    common.fill(t.store, 3000, 30)
    relay_all(t.store)
    local B = assert(er.open(t.dir .. "/b"))
    local C = assert(er.open(t.dir .. "/c"))
    local sb = er.jetstream_source({ url = srv.url, stream = stream, prefix = prefix })
    local sc = er.jetstream_source({ url = srv.url, stream = stream, prefix = prefix })
    local pb = B:projection("counts", common.counts_spec(sb))
    local pc = C:projection("counts", common.counts_spec(sc))
    for _ = 1, 20 do
      pb:run({ batch = 100 })
      pc:run({ batch = 100 })
    end
    assert.equal(3000, pb:position())
    assert.equal(3000, pc:position())
    local pa = t.store:projection("counts", common.counts_spec(nil))
    pa:run()
    same_read_model(pa, pb)
    same_read_model(pa, pc)
    sb:close()
    sc:close()
    B:close()
    C:close()
  end)

  it("a consumer killed mid-batch resumes with each event applied once", function()
    common.fill(t.store, 6000, 60)
    relay_all(t.store)
    local log = t.dir .. "/child.log"
    local pid = ns.spawn(LUA .. "spec/jetstream/child.lua consume " .. t.dir .. "/b " .. srv.url .. " "
      .. stream .. " 200 2 " .. prefix, log)
    local conn = assert(nats.connect({ url = srv.url }))
    local deadline, delivered = ns.now() + 30, 0
    while ns.now() < deadline do
      local ci = conn:consumer_info(stream, "child")
      delivered = ci and ci.delivered_seq or 0
      if delivered >= 1500 then break end
      ns.sleep(0.01)
    end
    conn:close()
    assert.is_true(delivered >= 1500 and delivered < 6000, "the kill must land mid-way, saw " .. delivered)
    ns.kill(pid, "KILL")
    ns.wait(pid, 10)
    local B = assert(er.open(t.dir .. "/b"))
    local src = er.jetstream_source({ url = srv.url, stream = stream, prefix = prefix, durable = "child", mirror = true })
    local pb = B:projection("counts", common.counts_spec(src))
    local before = pb:position()
    assert.is_true(before < 6000)
    local _, pos = pb:run({ batch = 200 })
    assert.equal(6000, pos)
    local pa = t.store:projection("counts", common.counts_spec(nil))
    pa:run()
    assert.equal(60, same_read_model(pa, pb))
    assert.equal(6000, B:last_position())
    src:close()
    B:close()
  end)

  -- Publish hand-made events (any fields, malformed ones included) as
  -- MessagePack bodies, the way another publisher could.
  local function publish_raw(events)
    local conn = assert(nats.connect({ url = srv.url }))
    assert(conn:add_stream({ name = stream, subjects = { prefix .. ".>" } }))
    local pub = assert(conn:publisher())
    for i, ev in ipairs(events) do
      assert(pub:publish(prefix .. ".order.Placed", type(ev) == "string" and ev or core.encode(ev),
        { ["Nats-Msg-Id"] = "m" .. i }))
    end
    assert(pub:complete(5000))
    pub:close()
    conn:close()
  end

  local function raw_event(version, position, fields)
    local ev = { id = er.uuid(), stream = "order-1", version = version, position = position, type = "Placed",
      time = 1700000000000000 + position, data = { i = position }, metadata = {} }
    for k, v in pairs(fields or {}) do ev[k] = v end
    return ev
  end

  -- run() fails with `code`, naming JetStream message `seq` of the stream,
  -- keeps nothing of the batch, and says so again on the next run (the
  -- batch was released and the consumer realigned, not left waiting for
  -- ack_wait).
  local function assert_refused(B, pb, code, seq, what)
    for _ = 1, 2 do
      local n, err = pb:run({ batch = 10 })
      assert.is_nil(n, what)
      assert.equal(code, err.code, what)
      assert.matches("JetStream message " .. seq .. " of stream '" .. stream .. "'", err.message, 1, true)
      assert.equal(0, pb:position())
      assert.equal(0, B:last_position())
      assert.is_nil(pb:get("order-1"))
    end
  end

  it("a consumed message with a malformed id is a corruption error naming the message; nothing is kept", function()
    publish_raw({ raw_event(1, 1), raw_event(2, 2, { id = "not-a-uuid" }) })
    local B = assert(er.open(t.dir .. "/b"))
    local src = er.jetstream_source({ url = srv.url, stream = stream, prefix = prefix, durable = "b", mirror = true,
      wait = 200 })
    local pb = B:projection("counts", common.counts_spec(src))
    assert_refused(B, pb, "corruption", 2, "malformed id")
    src:close()
    B:close()
  end)

  it("a consumed message that holds no event, MessagePack or JSON, is a corruption error naming it", function()
    for k, body in ipairs({ core.encode("hello"), "{not json" }) do
      stream = unique("SRCNOEV")
      prefix = stream:lower()
      publish_raw({ raw_event(1, 1), body })
      local B = assert(er.open(t.dir .. "/b" .. k))
      local src = er.jetstream_source({ url = srv.url, stream = stream, prefix = prefix, durable = "b", mirror = true,
        wait = 200 })
      local pb = B:projection("counts", common.counts_spec(src))
      assert_refused(B, pb, "corruption", 2, "body " .. k)
      src:close()
      B:close()
      delete_stream(srv.url, stream)
    end
  end)

  it("other malformed fields of a consumed message are corruption errors naming it", function()
    local cases = {
      { stream = "" }, { stream = "a\0b" }, { stream = string.rep("s", 1025) }, { type = "" },
      { type = "T\0" }, { version = 0 }, { version = -3 }, { position = 0 }, { time = 0 }, { time = -1 },
      { id = string.rep("x", 36) }, { metadata = 5 },
    }
    for k, fields in ipairs(cases) do
      stream = unique("SRCBAD")
      prefix = stream:lower()
      publish_raw({ raw_event(1, 1), raw_event(2, 2, fields) })
      local B = assert(er.open(t.dir .. "/b" .. k))
      local src = er.jetstream_source({ url = srv.url, stream = stream, prefix = prefix, durable = "b", mirror = true,
        wait = 200 })
      local pb = B:projection("counts", common.counts_spec(src))
      assert_refused(B, pb, "corruption", 2, "case " .. k)
      src:close()
      B:close()
      delete_stream(srv.url, stream)
    end
  end)

  it("a version gap in a mirrored stream names the JetStream message", function()
    publish_raw({ raw_event(1, 1), raw_event(3, 2) })
    local B = assert(er.open(t.dir .. "/b"))
    local src = er.jetstream_source({ url = srv.url, stream = stream, prefix = prefix, durable = "b", mirror = true,
      wait = 200 })
    -- a reactor's emits go into the same commit: the failing append is still found
    local pb = B:projection("mirror", { source = src, handlers = {
      Placed = function(view) view:emit("log-1", { type = "Seen" }) end } })
    for _ = 1, 2 do
      local n, err = pb:run({ batch = 10 })
      assert.is_nil(n)
      assert.equal("wrong_expected_version", err.code)
      assert.matches("JetStream message 2 of stream '" .. stream .. "'", err.message, 1, true)
      assert.matches("order-1@3", err.message, 1, true)
      assert.matches("gap", err.message, 1, true)
      assert.equal(0, B:last_position())
    end
    src:close()
    B:close()
  end)

  it("a missing stream is not_found; bad options raise", function()
    local B = assert(er.open(t.dir .. "/b"))
    local src = er.jetstream_source({ url = srv.url, stream = stream, prefix = prefix, durable = "b" })
    local pb = B:projection("counts", common.counts_spec(src))
    local n, err = pb:run()
    assert.is_nil(n)
    assert.equal("not_found", err.code)
    assert.matches(stream, err.message, 1, true)
    assert.has_error(function() er.jetstream_source() end)
    assert.has_error(function() er.jetstream_source({ durable = "a.b" }) end)
    assert.has_error(function() B:projection("x", { source = {}, handlers = {} }) end)
    assert.has_error(function() B:projection("y", { source = src, inline = true, handlers = {} }) end)
    src:close()
    B:close()
  end)
end)

describe("JetStream options are checked", function()
  local t = {}
  before_each(function() H.setup(t) end)
  after_each(function() H.teardown(t) end)

  -- f() raises exactly `bad argument #n to 'NAME' (unknown option 'KEY')`
  -- (a key that is not a string unquoted, as everywhere else)
  local function refuses(f, n, name, key)
    local ok, err = pcall(f)
    assert.is_false(ok, "accepted unknown option " .. tostring(key))
    local shown = type(key) == "string" and "'" .. key .. "'" or tostring(key)
    assert.matches(("bad argument #%d to '%s' (unknown option %s)"):format(n, name, shown), tostring(err), 1, true)
  end

  it("store:relay(name, opts)", function()
    refuses(function() t.store:relay("out", { create_steram = true }) end, 2, "relay", "create_steram")
    refuses(function() t.store:relay("out", { url = "nats://127.0.0.1:1", max_reconect = 0 }) end, 2, "relay",
      "max_reconect")
    refuses(function() t.store:relay("out", { tls = { cafile = "x" } }) end, 2, "relay", "tls.cafile")
    refuses(function() t.store:relay("out", { [1] = "x" }) end, 2, "relay", 1)
    -- every documented option is known
    local r = t.store:relay("out", { url = "nats://127.0.0.1:1", name = "n", user = "u", password = "p",
      timeout = 100, reconnect = false, max_reconnect = 0, reconnect_wait = 10, ping_interval = 1000,
      tls = { ca = "a", cert = "c", key = "k", hostname = "h" },
      stream = "S", prefix = "p", subject = function() return "p.x" end, json = true, create_stream = true,
      duplicate_window = 1000, storage = "memory", batch = 10, max_pending = 10, ack_timeout = 100,
      retry_for = 0, category = "c", types = { "T" } })
    r:close()
    assert.is_not_nil(t.store:relay("x", { token = "t", credentials = "f", connection = nil }))
  end)

  it("relay:run(opts)", function()
    local r = t.store:relay("out", { url = "nats://127.0.0.1:1", max_reconnect = 0, timeout = 100 })
    refuses(function() r:run({ folow = true }) end, 1, "run", "folow")
    refuses(function() r:run({ follow = true, stop = function() return true end, intervall = 5 }) end, 1, "run",
      "intervall")
    -- every documented option is known (the server is unreachable: io)
    local n, err = r:run({ follow = false, interval = 5, stop = function() return true end, retry_for = 0,
      on_retry = function() end, progress = function() end })
    assert.is_nil(n)
    assert.equal("io", err.code)
    r:close()
    assert.equal(0, r:position())
  end)

  it("er.jetstream_source(opts)", function()
    refuses(function() er.jetstream_source({ mirorr = true }) end, 1, "jetstream_source", "mirorr")
    refuses(function() er.jetstream_source({ tls = { kee = "k" } }) end, 1, "jetstream_source", "tls.kee")
    local src = er.jetstream_source({ url = "nats://127.0.0.1:1", name = "n", user = "u", password = "p",
      token = "t", credentials = "c", timeout = 100, reconnect = true, max_reconnect = 0, reconnect_wait = 10,
      ping_interval = 1000, tls = true, stream = "S", prefix = "p", filter = "p.>", durable = "d", mirror = true,
      wait = 10, ack_wait = 1000 })
    src:close()
  end)

  it("er.jetstream_connect(opts)", function()
    refuses(function() er.jetstream_connect({ uri = "nats://127.0.0.1:1" }) end, 1, "jetstream_connect", "uri")
    refuses(function() er.jetstream_connect({ stream = "S" }) end, 1, "jetstream_connect", "stream")
    local c, err = er.jetstream_connect({ url = "nats://127.0.0.1:1", max_reconnect = 0, timeout = 100,
      tls = { ca = "x" } })
    assert.is_nil(c)
    assert.is_string(err.message)
  end)
end)

describe("eventrocks relay / consume", function()
  local t, srv, stream, prefix = {}, nil, nil, nil
  before_each(function()
    H.setup(t)
    srv = ns.shared()
    stream = unique("CLI")
    prefix = stream:lower()
  end)
  after_each(function()
    delete_stream(srv.url, stream)
    H.teardown(t)
  end)

  local function cli(dir, args)
    local p = assert(io.popen(LUA .. "bin/eventrocks --store " .. H.shquote(dir) .. " " .. args
      .. " 2>&1; echo \"rc=$?\""))
    local out = p:read("a")
    p:close()
    return tonumber(out:match("rc=(%d+)%s*$")), out
  end

  it("relays a store and consumes it into a mirror and a scripted projection", function()
    common.fill(t.store, 300, 3)
    t.store:close()
    local nopt = "--url " .. srv.url .. " --stream " .. stream .. " --prefix " .. prefix
    local rc, out = cli(t.dir, "relay out " .. nopt)
    assert.equal(1, rc, out)
    assert.matches("does not exist", out, 1, true)
    rc, out = cli(t.dir, "relay out --create-stream " .. nopt)
    assert.equal(0, rc, out)
    assert.matches("300 events published", out, 1, true)
    rc, out = cli(t.dir .. "/b", "consume replica " .. nopt)
    assert.equal(2, rc, out)
    local script = t.dir .. "/counts.lua"
    local f = assert(io.open(script, "w"))
    f:write([[return { handlers = { Paid = function(view, ev) view:put("paid", (view:get("paid") or 0) + 1) end } }]])
    f:close()
    rc, out = cli(t.dir .. "/b", "consume replica --mirror --script " .. script .. " " .. nopt)
    assert.equal(0, rc, out)
    assert.matches("300 events applied and mirrored, at source position 300", out, 1, true)
    rc, out = cli(t.dir .. "/b", "check")
    assert.equal(0, rc, out)
    local b <close> = assert(er.open(t.dir .. "/b", { read_only = true }))
    assert.equal(300, b:last_position())
    assert.equal(100, b:_get("views", "replica\0paid"))
  end)
end)
