--- Throwaway nats-server processes for the JetStream specs (issue 8), and
-- the child-process helpers those specs need.  Not a spec: busted only runs
-- files ending in _spec.lua; `.busted` puts spec/?.lua on the path, so
--
--   local ns = require "nats_server"
--
-- Servers
--
--   ns.start(opts) -> srv        a new `nats-server -js` on 127.0.0.1, in a new
--                                temporary directory; returns once the server
--                                has logged "Server is ready" (JetStream is
--                                enabled and its streams restored before that
--                                line).  Raises on failure, with the log's tail.
--     opts.max_payload  bytes: `max_payload` in a generated config file
--     opts.config       text appended to that config file (authorization
--                       blocks, accounts...); with either of the two the
--                       server runs with `-c DIR/server.conf`.  The command
--                       line's -a, -p, -js and -sd override the file.
--     opts.port         a fixed port (default: a random free one)
--     opts.timeout      seconds to wait for "Server is ready" (default 30)
--     opts.port_wait    seconds a start on a fixed port (opts.port, and
--                       every srv:start/restart) retries while the port is
--                       in use (default 10)
--   srv.url   "nats://127.0.0.1:PORT"     srv.port  PORT (integer)
--   srv.dir   the temporary directory     srv.store its JetStream store (DIR/js)
--   srv.log   the server's log (DIR/server.log, appended to by every start)
--   srv.conf  the config file, or nil     srv.pid   the PID, nil once stopped
--   srv:stop()     SIGTERM, wait up to 5 s, then SIGKILL; -> srv
--   srv:kill()     SIGKILL, wait; -> srv (the store is left as a crash leaves it)
--   srv:start()    start again (after stop or kill) on the same port and
--                  store: JetStream's streams and messages survive; -> srv
--   srv:restart()  stop, then start; -> srv (srv.pid changes, srv.port not)
--   srv:cleanup()  stop, then remove the directory.  `local srv <close> =
--                  ns.start()` calls it at the end of the block.  Servers the
--                  specs forget are stopped and removed when Lua exits.
--
--   ns.shared() -> srv           one server per process for the specs that do
--                                not need their own: when EVENTROCKS_NATS_URL is
--                                set (CI starts one with tools/nats.sh), a table
--                                {url = that URL, port = its port, external =
--                                true} whose stop, kill, restart and cleanup do
--                                nothing; else a server from ns.start(), started
--                                on the first call and the same one afterwards
--                                (even across spec files: busted reloads
--                                modules per file, so the state lives in the
--                                Lua registry), stopped and removed at exit.
--                                Specs that restart, kill or reconfigure a
--                                server start their own.
--
-- Raw protocol, to look at a server without the binding under test (bash's
-- /dev/tcp, so no Lua socket library is needed):
--
--   ns.info(url) -> table        the server's INFO (port, max_payload,
--                                jetstream, auth_required...), or nil, err
--   ns.request(url, subject, payload, opts) -> body, hdr
--                                one request/reply: the reply's body and, for a
--                                reply with headers, its header block (string);
--                                nil, err on no connection, -ERR, no responders
--                                or timeout.  opts.headers: a table name ->
--                                value sent as headers (HPUB), e.g.
--                                {["Nats-Msg-Id"] = id}; opts.user, opts.pass,
--                                opts.token: credentials; opts.timeout seconds
--                                (default 5).  Payloads are text (no NUL bytes:
--                                they pass through bash).
--   ns.jsapi(url, api, req, opts) -> table
--                                a JetStream API call: request on "$JS.API." ..
--                                api (e.g. "STREAM.INFO.ORDERS") with req (a
--                                table, JSON-encoded; nil for none), the reply
--                                decoded; nil, err as ns.request (a JetStream
--                                error is a decoded reply with an `error` field)
--   ns.stream_info(url, name) -> table   jsapi "STREAM.INFO.<name>": .state.messages,
--                                .state.first_seq, .state.last_seq, .config...
--   ns.stream_msg(url, name, seq) -> msg  jsapi "STREAM.MSG.GET.<name>": the stored
--                                message with .data and .hdrs base64-decoded
--                                (.headers: name -> value)
--
-- Processes (servers and anything else, e.g. a relay in a child lua5.4)
--
--   ns.spawn(cmd, log) -> pid    run the shell command cmd, one simple command,
--                                `exec`ed by sh (so pid is the program's own),
--                                stdin /dev/null, stdout and stderr appended to
--                                the file log (default /dev/null).  The process
--                                is this process's child until ns.wait reaps
--                                it, so its PID cannot be reused meanwhile; at
--                                exit a child still running gets SIGKILL.
--   ns.alive(pid) -> bool        running (a zombie is not running)
--   ns.kill(pid, sig) -> bool    send sig ("TERM" default, "KILL", "INT", 9...)
--   ns.wait(pid, timeout) -> exited, how, code
--                                wait up to timeout seconds (default 10) for
--                                the process to end; true, and for our own
--                                children how it ended as io.popen's close
--                                gives it ("exit", status or "signal", number);
--                                false on timeout
--   ns.sleep(seconds), ns.now() -> seconds (monotonic when eventrocks.core loads)
--
-- Two things about this machine's process tree shape the helpers: PID 1 here
-- does not reap orphans, so an orphaned process that exits stays a zombie and
-- `kill -0` keeps succeeding on it (ns.alive reads the state in /proc instead);
-- and the servers are our own children (io.popen, as spec/crash/run.lua does),
-- never orphans, so we reap them ourselves.
local M = {}

local fmt = string.format

local system = require "system" -- lua-system: a monotonic clock and sleeping

function M.now() return system.monotime() end

function M.sleep(s) system.sleep(math.max(0.001, s)) end

local function shquote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end
M.shquote = shquote

-- State shared by every copy of this module in the process (busted reloads
-- modules for each spec file): children, servers to clean up at exit, the
-- shared server.
local REG_KEY = "eventrocks.spec.nats_server"
local R = debug.getregistry()
local state = R[REG_KEY]
if not state then
  state = { children = {}, servers = {}, shared = nil }
  R[REG_KEY] = state
  -- At exit (lua_close; busted ends with os.exit(code, true)) this runs after
  -- every child's guard below has stopped it: it removes the directories of
  -- the servers still registered.
  state.sentinel = setmetatable({}, { __gc = function()
    for srv in pairs(state.servers) do pcall(srv.cleanup, srv) end
  end })
end

-- ---------------------------------------------------------------------------
-- Processes

local HAVE_PROC = io.open("/proc/self/stat", "r")
if HAVE_PROC then HAVE_PROC:close() HAVE_PROC = true end

-- A child of ours already reaped: its PID may belong to another process now.
local function reaped(pid)
  local c = state.children[pid]
  return c ~= nil and c.p == nil
end

function M.alive(pid)
  pid = math.tointeger(pid)
  if not pid or pid <= 0 or reaped(pid) then return false end
  if HAVE_PROC then
    local f = io.open("/proc/" .. pid .. "/stat", "r")
    if not f then return false end
    local s = f:read("a") or ""
    f:close()
    local st = s:match(".*%)%s+(%a)") -- the state, after the last ')' of the command name
    return st ~= nil and st ~= "Z" and st ~= "X" and st ~= "x"
  end
  return os.execute("kill -0 " .. pid .. " 2>/dev/null") == true
end

function M.kill(pid, sig)
  pid = math.tointeger(pid)
  if not pid or pid <= 0 or reaped(pid) then return false end
  sig = tostring(sig or "TERM"):gsub("^SIG", "")
  assert(sig:match("^%w+$"), "bad signal")
  return os.execute(fmt("kill -%s %d 2>/dev/null", sig, pid)) == true
end

-- Reap a child that has ended; the status is kept for M.wait.
local function reap(pid)
  local c = state.children[pid]
  if c and c.p then
    local _, how, code = c.p:close()
    c.p, c.how, c.code = nil, how, code
  end
  return c
end

function M.wait(pid, timeout)
  pid = math.tointeger(pid)
  local deadline = M.now() + (timeout or 10)
  local nap = 0.005
  while M.alive(pid) do
    if M.now() >= deadline then return false end
    M.sleep(nap)
    nap = math.min(nap * 2, 0.05)
  end
  local c = reap(pid)
  if c then return true, c.how, c.code end
  return true
end

-- The guard is made after the popen handle, so at exit it is finalized
-- first (Lua finalizes in reverse order of marking): the child is stopped
-- before the handle's own finalizer calls pclose(), which would block on a
-- running child.
function M.spawn(cmd, log, term_first)
  local p = assert(io.popen(fmt("echo $$; exec >>%s 2>&1 </dev/null; exec %s", shquote(log or "/dev/null"), cmd), "r"))
  local pid = math.tointeger(tonumber(p:read("l")))
  if not pid then
    p:close()
    error("spawn: no pid from the shell for: " .. cmd)
  end
  local c = { p = p, cmd = cmd }
  c.guard = setmetatable({}, { __gc = function()
    if c.p then
      if term_first and M.kill(pid, "TERM") and M.wait(pid, 5) then return end
      M.kill(pid, "KILL")
      M.wait(pid, 5)
    end
  end })
  state.children[pid] = c
  return pid
end

-- ---------------------------------------------------------------------------
-- Files

local function mkdtemp()
  local name = os.tmpname()
  os.remove(name)
  assert(os.execute("mkdir -p " .. shquote(name)), "mkdir " .. name .. " failed")
  return name
end

local function read_from(path, offset)
  local f = io.open(path, "rb")
  if not f then return "" end
  f:seek("set", offset or 0)
  local s = f:read("a") or ""
  f:close()
  return s
end

local function size_of(path)
  local f = io.open(path, "rb")
  if not f then return 0 end
  local n = f:seek("end")
  f:close()
  return n
end

local function tail(s, n)
  local lines = {}
  for l in s:gmatch("[^\n]+") do
    lines[#lines + 1] = l
    if #lines > n then table.remove(lines, 1) end
  end
  return table.concat(lines, "\n")
end

-- A random port below the kernel's ephemeral range (32768-60999 here), so
-- that no outgoing connection (a client reconnecting to a stopped server)
-- can take the port a restart needs, nor connect to itself.
local function random_port()
  local lo, hi = 20000, 60000
  local f = io.open("/proc/sys/net/ipv4/ip_local_port_range", "r")
  if f then
    local elo = tonumber((f:read("a") or ""):match("(%d+)"))
    f:close()
    if elo and elo - 1 - lo >= 1000 then hi = elo - 1 end
  end
  local r
  local u = io.open("/dev/urandom", "rb")
  if u then
    local b = u:read(4)
    u:close()
    r = string.unpack("<I4", b)
  else
    r = math.random(0, 1 << 30)
  end
  return lo + r % (hi - lo + 1)
end

-- ---------------------------------------------------------------------------
-- Servers

local Server = {}
Server.__index = Server

-- One attempt on one port: true once ready; false, "busy" when the port is
-- taken; raises on any other failure.
function Server:_launch(port, timeout)
  local args = { "nats-server" }
  if self.conf then args[#args + 1] = "-c " .. shquote(self.conf) end
  args[#args + 1] = fmt("-js -a 127.0.0.1 -p %d -sd %s", port, shquote(self.store))
  local from = size_of(self.log)
  -- nats-server is a Go program: it gets no sanitizer runtime (make asan
  -- preloads one into the Lua interpreter and thus into its children)
  local pid = M.spawn("env -u LD_PRELOAD " .. table.concat(args, " "), self.log, true)
  local deadline = M.now() + timeout
  local nap = 0.005
  while true do
    local out = read_from(self.log, from)
    -- the line carries the server's PID: "[PID] date time [INF] Server is ready"
    if out:find("[" .. pid .. "]", 1, true) and out:find("Server is ready", 1, true) then
      self.pid, self.port = pid, port
      self.url = "nats://127.0.0.1:" .. port
      return true
    end
    if not M.alive(pid) then
      local _, how, code = M.wait(pid, 1)
      if out:find("address already in use", 1, true) then return false, "busy" end
      error(fmt("nats-server ended (%s %s) before it was ready; %s:\n%s",
        tostring(how), tostring(code), self.log, tail(out, 15)), 0)
    end
    if M.now() >= deadline then
      M.kill(pid, "KILL")
      M.wait(pid, 5)
      error(fmt("nats-server not ready after %g s; %s:\n%s", timeout, self.log, tail(out, 15)), 0)
    end
    M.sleep(nap)
    nap = math.min(nap * 2, 0.05)
  end
end

function Server:start()
  if self.pid then return self end
  local timeout = self.timeout
  if self.port then
    -- the same port again: it may still be held for a moment
    local deadline = M.now() + self.port_wait
    while true do
      local ok = self:_launch(self.port, timeout)
      if ok then return self end
      if M.now() >= deadline then error(fmt("nats-server: port %d stays in use", self.port), 0) end
      M.sleep(0.2)
    end
  end
  for _ = 1, 30 do
    if self:_launch(random_port(), timeout) then return self end
  end
  error("nats-server: no free port after 30 tries", 0)
end

function Server:stop()
  local pid = self.pid
  if not pid then return self end
  if M.kill(pid, "TERM") and not M.wait(pid, 5) then
    M.kill(pid, "KILL")
    assert(M.wait(pid, 10), "nats-server " .. pid .. " survives SIGKILL")
  end
  M.wait(pid, 10)
  self.pid = nil
  return self
end

function Server:kill()
  local pid = self.pid
  if not pid then return self end
  M.kill(pid, "KILL")
  assert(M.wait(pid, 10), "nats-server " .. pid .. " survives SIGKILL")
  self.pid = nil
  return self
end

function Server:restart()
  self:stop()
  return self:start()
end

function Server:cleanup()
  self:stop()
  state.servers[self] = nil
  if self.dir and self.owns_dir then
    os.execute("rm -rf " .. shquote(self.dir))
    self.owns_dir = false
  end
end

Server.__close = Server.cleanup

function M.start(opts)
  opts = opts or {}
  local dir = mkdtemp()
  local srv = setmetatable({
    dir = dir, store = dir .. "/js", log = dir .. "/server.log", port = opts.port,
    timeout = opts.timeout or 30, port_wait = opts.port_wait or 10, owns_dir = true,
  }, Server)
  state.servers[srv] = true
  if opts.max_payload or opts.config then
    srv.conf = dir .. "/server.conf"
    local f = assert(io.open(srv.conf, "w"))
    if opts.max_payload then f:write(fmt("max_payload: %d\n", opts.max_payload)) end
    if opts.config then f:write(opts.config, "\n") end
    f:close()
  end
  local ok, err = pcall(srv.start, srv)
  if not ok then
    srv:cleanup()
    error(err, 0)
  end
  return srv
end

local External = {}
External.__index = External
local function noop(self) return self end
External.stop, External.kill, External.start, External.restart, External.cleanup = noop, noop, noop, noop, noop

function M.shared()
  local url = os.getenv("EVENTROCKS_NATS_URL")
  if url and url ~= "" then
    return setmetatable({ url = url, port = tonumber(url:match(":(%d+)/?$")), external = true }, External)
  end
  local srv = state.shared
  if not srv or not srv.pid then
    srv = M.start()
    state.shared = srv
  end
  return srv
end

-- ---------------------------------------------------------------------------
-- Raw protocol over bash's /dev/tcp

-- host, port, user, pass from "nats://[user:pass@]host:port" (or a server)
local function parse_url(url)
  if type(url) == "table" then url = url.url end
  local first = tostring(url):match("^[^,]+")
  local rest = first:gsub("^%a+://", "")
  local userinfo, hostport = rest:match("^(.*)@(.*)$")
  if not userinfo then hostport = rest end
  local host, port = hostport:match("^%[?([^%]]*)%]?:(%d+)/?$")
  if not host then host, port = hostport:match("^([^:/]+)/?$"), "4222" end
  local user, pass
  if userinfo then user, pass = userinfo:match("^([^:]*):?(.*)$") end
  return host, tonumber(port), user, pass
end

local function json()
  local ok, dk = pcall(require, "dkjson")
  assert(ok, "ns: dkjson (lua-dkjson) is needed to encode and decode JSON")
  return dk
end

local function base64_decode(s)
  local alpha = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
  local map = {}
  for i = 1, 64 do map[alpha:byte(i)] = i - 1 end
  local out, bits, nbits = {}, 0, 0
  for i = 1, #s do
    local v = map[s:byte(i)]
    if v then
      bits = (bits << 6) | v
      nbits = nbits + 6
      if nbits >= 8 then
        nbits = nbits - 8
        out[#out + 1] = string.char((bits >> nbits) & 0xff)
      end
    end
  end
  return table.concat(out)
end
M.base64_decode = base64_decode

-- The bash side: connect, read INFO, send CONNECT/SUB/PUB, read until the
-- reply.  Prints "INFO <json>" and then, for a request, the reply's
-- protocol line and its bytes.
local BASH = [=[
export LC_ALL=C
t=$1 host=$2 port=$3 connect=$4 subj=$5 payload=$6
{ exec 3<>"/dev/tcp/$host/$port"; } 2>/dev/null || { echo "cannot connect" >&2; exit 2; }
IFS= read -r -t "$t" info <&3 || { echo "no INFO from the server" >&2; exit 3; }
info=${info%$'\r'}
printf '%s\n' "$info"
[ -z "$subj" ] && exit 0
hdr=$7
# a server that refuses the CONNECT closes at once: a write after that must
# not kill us before we read its -ERR
trap '' PIPE
if [ -n "$hdr" ]; then
  printf -v out 'CONNECT %s\r\nSUB _INBOX.er_spec 1\r\nHPUB %s _INBOX.er_spec %d %d\r\n%s%s\r\nPING\r\n' \
    "$connect" "$subj" "${#hdr}" $((${#hdr} + ${#payload})) "$hdr" "$payload"
else
  printf -v out 'CONNECT %s\r\nSUB _INBOX.er_spec 1\r\nPUB %s _INBOX.er_spec %d\r\n%s\r\nPING\r\n' \
    "$connect" "$subj" "${#payload}" "$payload"
fi
printf '%s' "$out" >&3 2>/dev/null
while IFS= read -r -t "$t" line <&3; do
  line=${line%$'\r'}
  case $line in
    MSG\ *|HMSG\ *)
      n=${line##* }
      body=
      [ "$n" -gt 0 ] && { IFS= read -r -d '' -N "$n" -t "$t" body <&3 || { echo "short reply" >&2; exit 4; }; }
      printf '%s\n%s' "$line" "$body"
      exit 0 ;;
    PING) printf 'PONG\r\n' >&3 ;;
    -ERR*) printf '%s\n' "$line" >&2; exit 5 ;;
  esac
done
echo "no reply within $t s" >&2
exit 6
]=]

local function raw(url, subject, payload, opts)
  opts = opts or {}
  local host, port, user, pass = parse_url(url)
  if not host or not port then return nil, "bad url " .. tostring(url) end
  local connect = { verbose = false, pedantic = false, headers = true, no_responders = true,
    protocol = 1, lang = "sh", version = "0", name = "eventrocks-spec" }
  connect.user = opts.user or user
  connect.pass = opts.pass or pass
  if connect.user == "" then connect.user = nil end
  if connect.pass == "" then connect.pass = nil end
  connect.auth_token = opts.token
  local hdr = ""
  if opts.headers then
    local names = {}
    for k in pairs(opts.headers) do names[#names + 1] = k end
    table.sort(names)
    local parts = { "NATS/1.0\r\n" }
    for _, k in ipairs(names) do parts[#parts + 1] = k .. ": " .. tostring(opts.headers[k]) .. "\r\n" end
    parts[#parts + 1] = "\r\n"
    hdr = table.concat(parts)
  end
  local dk = json()
  local errf = os.tmpname()
  local cmd = fmt("env -u LD_PRELOAD bash -c %s bash %s %s %d %s %s %s %s 2>%s", shquote(BASH),
    shquote(tostring(opts.timeout or 5)), shquote(host), port, shquote(dk.encode(connect)),
    shquote(subject or ""), shquote(payload or ""), shquote(hdr), shquote(errf))
  local p = assert(io.popen(cmd, "r"))
  local out = p:read("a")
  local ok = p:close()
  local err = read_from(errf)
  os.remove(errf)
  if not ok then
    return nil, fmt("%s:%d: %s", host, port, (err:gsub("%s+$", "")) ~= "" and (err:gsub("%s+$", "")) or "cannot connect")
  end
  return out
end

function M.info(url, opts)
  local out, err = raw(url, nil, nil, opts)
  if not out then return nil, err end
  local j = out:match("^INFO%s+(%b{})")
  if not j then return nil, "no INFO line: " .. out end
  return json().decode(j)
end

function M.request(url, subject, payload, opts)
  local out, err = raw(url, subject, payload, opts)
  if not out then return nil, err end
  local line, rest = out:match("^[^\n]*\n([^\n]*)\n(.*)$")
  if not line then return nil, "no reply: " .. out end
  if line:match("^HMSG ") then
    local hlen = tonumber(line:match("(%d+)%s+%d+$"))
    local hdr, body = rest:sub(1, hlen), rest:sub(hlen + 1)
    local status = hdr:match("^NATS/1%.0 (%d+)")
    if status == "503" then return nil, "no responders on " .. subject end
    return body, hdr
  end
  return rest
end

function M.jsapi(url, api, req, opts)
  local dk = json()
  local body, err = M.request(url, "$JS.API." .. api, req and dk.encode(req) or "", opts)
  if not body then return nil, err end
  local t, _, derr = dk.decode(body)
  if not t then return nil, "bad JSON reply: " .. tostring(derr) .. ": " .. body end
  return t
end

function M.stream_info(url, name, opts)
  return M.jsapi(url, "STREAM.INFO." .. name, nil, opts)
end

function M.stream_msg(url, name, seq, opts)
  local t, err = M.jsapi(url, "STREAM.MSG.GET." .. name, { seq = seq }, opts)
  if not t then return nil, err end
  if t.error or not t.message then return t end
  local m = t.message
  m.data = m.data and base64_decode(m.data) or ""
  m.headers = {}
  if m.hdrs then
    m.hdrs = base64_decode(m.hdrs)
    for k, v in m.hdrs:gmatch("\r\n([^:\r\n]+):%s*([^\r\n]*)") do m.headers[k] = v end
  end
  return m
end

return M
