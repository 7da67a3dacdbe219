-- The test harness of the JetStream specs (spec/nats_server.lua): throwaway
-- nats-server processes, the shared server, the child-process helpers and
-- the raw-protocol look at a server.
local H = require "helper"
local ns = require "nats_server"

local function contains(hay, needle)
  assert.is_truthy(tostring(hay):find(needle, 1, true), string.format("%q does not contain %q", tostring(hay), needle))
end

local function isdir(path) return os.execute("test -d " .. H.shquote(path)) == true end

-- Run Lua code in a child lua5.4 (same paths), with extra environment.
local function child(env, code)
  local p = assert(io.popen("env " .. env .. " " .. H.lua_cmd("local ns = require 'nats_server'; " .. code), "r"))
  local out = p:read("a")
  local _, how, status = p:close()
  return out, status, how
end

describe("ns.start", function()
  local srv
  after_each(function()
    if srv then srv:cleanup() end
    srv = nil
  end)

  it("runs nats-server -js on a loopback port, ready for JetStream when it returns", function()
    srv = ns.start()
    assert.equal("nats://127.0.0.1:" .. srv.port, srv.url)
    assert.is_true(srv.port >= 1024 and srv.port < 65536)
    assert.is_true(ns.alive(srv.pid))
    assert.is_true(isdir(srv.dir))
    local info = assert(ns.info(srv.url))
    assert.equal(srv.port, info.port)
    assert.is_true(info.jetstream)
    assert.equal("2.9.10", info.version)
    -- no wait after start: the JetStream API answers at once
    local acct = assert(ns.jsapi(srv.url, "INFO"))
    assert.equal("io.nats.jetstream.api.v1.account_info_response", acct.type)
    assert.is_nil(acct.error)
    contains(io.open(srv.log):read("a"), "Server is ready")
  end)

  it("gives two servers two ports and two directories", function()
    srv = ns.start()
    local other <close> = ns.start()
    assert.are_not.equal(srv.port, other.port)
    assert.are_not.equal(srv.dir, other.dir)
    assert.equal(other.port, assert(ns.info(other.url)).port)
  end)

  it("writes max_payload and the extra config into a config file the server runs with", function()
    srv = ns.start { max_payload = 2048,
      config = "authorization { users = [ { user: alice, password: s3cret } ] }" }
    local info = assert(ns.info(srv.url))
    assert.equal(2048, info.max_payload)
    assert.is_true(info.auth_required)
    local body, err = ns.request(srv.url, "$JS.API.INFO", "")
    assert.is_nil(body)
    contains(err, "Authorization Violation")
    local acct = assert(ns.jsapi(srv.url, "INFO", nil, { user = "alice", pass = "s3cret" }))
    assert.is_nil(acct.error)
    -- credentials in the URL work too
    assert(ns.jsapi("nats://alice:s3cret@127.0.0.1:" .. srv.port, "INFO"))
    contains(io.open(srv.conf):read("a"), "max_payload: 2048")
  end)

  it("defaults to max_payload 1 MiB and no config file", function()
    srv = ns.start()
    assert.is_nil(srv.conf)
    assert.equal(1024 * 1024, assert(ns.info(srv.url)).max_payload)
  end)

  it("starts on a fixed port", function()
    local probe = ns.start()
    local port = probe.port
    probe:cleanup()
    srv = ns.start { port = port }
    assert.equal(port, srv.port)
    assert.equal(port, assert(ns.info(srv.url)).port)
  end)

  it("fails clearly on a fixed port that stays in use, and leaves nothing behind", function()
    srv = ns.start()
    local ok, err = pcall(ns.start, { port = srv.port, port_wait = 0.3 })
    assert.is_false(ok)
    contains(err, "port " .. srv.port .. " stays in use")
    assert.is_true(ns.alive(srv.pid))
  end)
end)

describe("a server's life", function()
  local srv
  before_each(function() srv = ns.start() end)
  after_each(function() srv:cleanup() end)

  local function stream_with_one_message()
    local r = assert(ns.jsapi(srv.url, "STREAM.CREATE.T", { name = "T", subjects = { "t.>" }, storage = "file" }))
    assert.is_nil(r.error)
    local ack = assert(ns.request(srv.url, "t.x", "hello"))
    contains(ack, '"seq":1')
  end

  local function one_message_in_T()
    local si = assert(ns.stream_info(srv.url, "T"))
    assert.is_nil(si.error)
    assert.equal(1, si.state.messages)
    local m = assert(ns.stream_msg(srv.url, "T", 1))
    assert.equal("hello", m.data)
    assert.equal("t.x", m.subject)
  end

  it("stop ends the process and reaps it; a second stop does nothing", function()
    local pid = srv.pid
    assert.equal(srv, srv:stop())
    assert.is_nil(srv.pid)
    assert.is_false(ns.alive(pid))
    assert.is_nil(io.open("/proc/" .. pid .. "/stat"), "the process (or its zombie) is still there")
    local _, err = ns.info(srv.url)
    contains(err, "cannot connect")
    srv:stop()
    contains(io.open(srv.log):read("a"), "Server Exiting")
  end)

  it("restart keeps the port and the store: streams and messages survive", function()
    stream_with_one_message()
    local pid, port, url = srv.pid, srv.port, srv.url
    srv:restart()
    assert.are_not.equal(pid, srv.pid)
    assert.is_false(ns.alive(pid))
    assert.equal(port, srv.port)
    assert.equal(url, srv.url)
    one_message_in_T()
  end)

  it("kill is SIGKILL; start brings the server back with its store", function()
    stream_with_one_message()
    local pid = srv.pid
    srv:kill()
    assert.is_nil(srv.pid)
    assert.is_false(ns.alive(pid))
    assert.is_true(isdir(srv.store .. "/jetstream"))
    srv:start()
    assert.is_true(ns.alive(srv.pid))
    one_message_in_T()
  end)

  it("cleanup stops the server and removes its directory", function()
    local pid, dir = srv.pid, srv.dir
    srv:cleanup()
    assert.is_false(ns.alive(pid))
    assert.is_false(isdir(dir))
  end)

  it("a JetStream error comes back as a decoded reply", function()
    local r = assert(ns.stream_info(srv.url, "MISSING"))
    assert.equal(404, r.error.code)
    assert.equal(10059, r.error.err_code) -- stream not found
  end)

  it("request sends headers; stream_msg decodes them; the duplicate window drops a repeated Nats-Msg-Id", function()
    stream_with_one_message()
    local h = { ["Nats-Msg-Id"] = "id-1", ["Er-Type"] = "Added" }
    contains(assert(ns.request(srv.url, "t.y", "body", { headers = h })), '"seq":2')
    local again = assert(ns.request(srv.url, "t.y", "body", { headers = h }))
    assert.is_truthy(again:find('"duplicate":%s*true'), again) -- 2.9.10 writes "duplicate": true, with a space
    assert.equal(2, assert(ns.stream_info(srv.url, "T")).state.messages)
    local m = assert(ns.stream_msg(srv.url, "T", 2))
    assert.equal("body", m.data)
    assert.same({ ["Nats-Msg-Id"] = "id-1", ["Er-Type"] = "Added" }, m.headers)
    assert.same({}, assert(ns.stream_msg(srv.url, "T", 1)).headers)
  end)
end)

describe("ns.shared", function()
  it("returns the URL of EVENTROCKS_NATS_URL, with no process to stop", function()
    local out = child("EVENTROCKS_NATS_URL=nats://127.0.0.1:4999",
      "local s = ns.shared(); s:stop(); s:restart(); s:cleanup(); "
      .. "print(s.url, s.port, s.pid, s.external, ns.shared().url)")
    assert.equal("nats://127.0.0.1:4999\t4999\tnil\ttrue\tnats://127.0.0.1:4999\n", out)
  end)

  it("without it, starts one server per process and removes it at exit", function()
    local out, status = child("-u EVENTROCKS_NATS_URL",
      "local a = ns.shared(); local b = ns.shared(); "
      .. "assert(a == b and a.pid and ns.info(a.url)); print(a.pid, a.dir)")
    assert.equal(0, status, out)
    local pid, dir = out:match("^(%d+)\t(%S+)\n$")
    assert.is_truthy(pid, out)
    assert.is_false(ns.alive(tonumber(pid)))
    assert.is_false(isdir(dir))
  end)

  it("also stops the servers a process forgot, at its exit", function()
    local out, status = child("",
      "local s = ns.start(); print(s.pid, s.dir)")
    assert.equal(0, status, out)
    local pid, dir = out:match("^(%d+)\t(%S+)\n$")
    assert.is_truthy(pid, out)
    assert.is_false(ns.alive(tonumber(pid)))
    assert.is_false(isdir(dir))
  end)

  it("here, is this process's server or the one CI gave", function()
    local s = ns.shared()
    assert(ns.info(s.url))
    if os.getenv("EVENTROCKS_NATS_URL") then
      assert.is_true(s.external)
    else
      assert.equal(s, ns.shared())
      assert.is_true(ns.alive(s.pid))
    end
  end)
end)

describe("ns.spawn, ns.alive, ns.kill, ns.wait", function()
  local dir
  before_each(function() dir = H.mkdtemp() end)
  after_each(function() H.rmrf(dir) end)

  it("run a child, SIGKILL it and report how it ended", function()
    local pid = ns.spawn("sleep 30")
    assert.is_true(ns.alive(pid))
    assert.is_false((ns.wait(pid, 0.05)))
    assert.is_true(ns.kill(pid, "KILL"))
    local exited, how, code = ns.wait(pid, 5)
    assert.is_true(exited)
    assert.equal("signal", how)
    assert.equal(9, code)
    assert.is_false(ns.alive(pid))
    -- the PID is no longer ours: no signal goes to whoever has it now
    assert.is_false(ns.kill(pid, "KILL"))
  end)

  it("report an exit status and send the output to the log", function()
    local log = dir .. "/out.log"
    local pid = ns.spawn("sh -c 'echo out; echo err >&2; exit 3'", log)
    local exited, how, code = ns.wait(pid, 5)
    assert.is_true(exited)
    assert.equal("exit", how)
    assert.equal(3, code)
    assert.equal("out\nerr\n", io.open(log):read("a"))
  end)

  it("run a child lua5.4, SIGTERM by default", function()
    local pid = ns.spawn("lua5.4 -e 'while true do end'")
    assert.is_true(ns.alive(pid))
    assert.is_true(ns.kill(pid))
    local exited, how, code = ns.wait(pid, 5)
    assert.is_true(exited)
    assert.equal("signal", how)
    assert.equal(15, code)
  end)
end)
