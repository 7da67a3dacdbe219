-- bench/jetstream.lua -- eventrocks and NATS JetStream: the relay
-- and the consumer.  See bench/README.md for the contract.
--
--   EVENTROCKS_NATS_URL=nats://... lua5.4 bench/jetstream.lua relay N DIR DURABLE
--
-- Workload `relay`: a store of N events (the bench payload, type ItemAdded,
-- 100-event appends to order-<j % 1000>) filled untimed; then, each timed:
--   relay.eps           store:relay():run() from checkpoint 0 into a fresh
--                       JetStream stream (created untimed, as the raw
--                       baseline's is);
--   consume.eps         a durable consumer on that stream into a projection
--                       on a second store, a count per stream as in the
--                       catchup workload (batch = 500);
--   consume_mirror.eps  the same with mirror = true, on a third store.
-- Also printed: relay.body_bytes, the average MessagePack body the relay
-- sent (bench/run.lua gives the raw publish baseline that size).
-- Needs a nats-server with JetStream (bench/run.lua starts one with
-- tools/nats.sh).  Verifies that JetStream holds N messages and that the
-- read models add up to N; exits non-zero otherwise.
local er = require "eventrocks"
local core = require "eventrocks.core"
local C = require "common"

local workload, N, dir, durable = C.args()
local payload, now, result = C.payload, C.now, C.result
local url = os.getenv("EVENTROCKS_NATS_URL")
if not url then
  io.stderr:write("jetstream.lua: EVENTROCKS_NATS_URL is not set (a nats-server -js is needed)\n")
  os.exit(2)
end
if workload ~= "relay" then
  io.stderr:write("jetstream.lua: unknown workload '", workload, "'\n")
  os.exit(2)
end
assert(N >= 100 and N % 100 == 0, "relay: N must be a multiple of 100")

local STREAM, PREFIX = "BENCHJS", "benchjs"
local BATCH, MAX_PENDING = 1000, 512 -- the relay's defaults, named here for the record

local conn = assert(er.jetstream_connect({ url = url }))
-- a fresh stream: delete one an interrupted run left
local ok, err = conn:delete_stream(STREAM)
assert(ok or err.code == "not_found", tostring(err))
assert(conn:add_stream({ name = STREAM, subjects = { PREFIX .. ".>" } }))

-- Set-up: N events, as the catchup workload has them.
local function open(sub, sync)
  local d = dir .. "/" .. sub
  os.execute("mkdir -p '" .. d .. "'")
  return assert(er.open(d, { sync = sync }))
end
local src = open("source", durable)
for j = 0, N // 100 - 1 do
  local evs = {}
  for i = 1, 100 do evs[i] = { type = "ItemAdded", data = payload(j * 100 + i) } end
  assert(src:append("order-" .. j % 1000, evs, { expected = j // 1000 * 100 }))
end
assert(src:last_position() == N)

-- Timed: the relay, from checkpoint 0 to the end of the log.
local relay = src:relay("bench", { url = url, stream = STREAM, prefix = PREFIX, batch = BATCH,
  max_pending = MAX_PENDING })
local t = now()
local published, pos = relay:run()
t = now() - t
assert(published, tostring(pos))
assert(published == N and pos == N, ("relayed %s events up to %s, not %d"):format(published, pos, N))
relay:close()
local info = assert(conn:stream_info(STREAM))
assert(info.messages == N, ("JetStream holds %d messages, not %d"):format(info.messages, N))
result("relay.eps", N / t)

-- The body the relay sends is the event's MessagePack: the average size,
-- checked against what JetStream holds for the last event.
local bytes = 0
for ev in src:all() do bytes = bytes + #core.encode(ev) end
local last = assert(conn:last_msg(STREAM, ">"))
assert(#last.data == #core.encode(src:event(N)), "the relay's body is not the event's MessagePack")
result("relay.body_bytes", bytes / N)

-- Timed: a consumer into a projection on another store (and a mirror).
local function consume(name, mirror)
  local store = open(name, durable)
  local source = er.jetstream_source({ url = url, stream = STREAM, prefix = PREFIX, durable = name,
    mirror = mirror })
  local counts = store:projection("counts", {
    source = source,
    handlers = {
      ItemAdded = function(view, ev)
        view:put(ev.stream, (view:get(ev.stream) or 0) + 1)
      end,
    },
  })
  local t0 = now()
  local applied, at = counts:run({ batch = 500 })
  local dt = now() - t0
  assert(applied, tostring(at))
  assert(applied == N and at == N, ("%s: applied %s events up to source position %s, not %d"):format(name, applied, at, N))
  local sum = 0
  for s = 0, 999 do sum = sum + (counts:get("order-" .. s) or 0) end
  assert(sum == N, ("%s: the read model adds up to %d, not %d"):format(name, sum, N))
  if mirror then
    assert(store:last_position() == N, "the mirror does not hold every event")
    local a, b = src:event(N), store:event(N)
    assert(a.id == b.id and a.stream == b.stream and a.version == b.version and a.data.order == b.data.order,
      "the mirror's last event is not the source's")
  end
  source:close()
  store:close()
  return N / dt
end
result("consume.eps", consume("consumer", false))
result("consume_mirror.eps", consume("mirror", true))

assert(conn:delete_stream(STREAM))
conn:close()
src:close()
