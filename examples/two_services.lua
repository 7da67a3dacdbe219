-- two_services.lua: two services, two stores, events exchanged over NATS
-- JetStream (issue 8).
--
--   orders (store A) --relay--> JetStream ORDERS   --consume--> shipping (store B)
--   orders (store A) <--consume-- JetStream SHIPPING <--relay-- shipping (store B)
--
--   * orders places and pays orders in its own store; a relay publishes its
--     log to JetStream (each message carries the event id, so repeats are
--     dropped, and the relay's checkpoint moves only once JetStream acked);
--   * shipping consumes that stream into a projection of the orders ready to
--     ship, mirrors the events into its store (a replica it can read with the
--     normal API), and, as a reactor, requests a shipment for every paid
--     order -- read model, mirror, emitted events and JetStream checkpoint in
--     one atomic write, so each order is shipped once;
--   * shipping relays its own shipment events back, and orders consumes them.
--
-- Needs a nats-server: EVENTROCKS_NATS_URL, else a throwaway one is started.
-- Run: make examples   (or: lua5.4 examples/two_services.lua)
local er = require "eventrocks"

local tmp = {} -- directories to remove at the end
local function tmpdir()
  local d = os.tmpname(); os.remove(d); tmp[#tmp + 1] = d
  return d
end

-- A throwaway nats-server on a free port (-p -1), read through a pipe until
-- it is ready; `exec` makes the shell's PID the server's.
local server
local url = os.getenv("EVENTROCKS_NATS_URL")
if not url then
  local dir = tmpdir()
  local p = io.popen("echo $$; exec nats-server -js -a 127.0.0.1 -p -1 -sd '" .. dir .. "' 2>&1")
  server = { pipe = p, pid = p:read("l") }
  for line in p:lines() do
    url = url or line:match("Listening for client connections on (%S+)")
    if line:find("Server is ready", 1, true) then break end
  end
  if not (url and server.pid) then
    io.stderr:write("two_services: no EVENTROCKS_NATS_URL, and nats-server did not start "
      .. "(tools/deps.sh installs it)\n")
    p:close()
    os.exit(1)
  end
  url = "nats://" .. url
end
print("NATS at " .. url)

-- Streams and subjects of their own, so that runs never meet on a shared server.
math.randomseed(os.time())
local run = ("%d%04d"):format(os.time(), math.random(0, 9999))
local ORDERS = { url = url, stream = "ORDERS_" .. run, prefix = "ex" .. run .. ".orders" }
local SHIPPING = { url = url, stream = "SHIPPING_" .. run, prefix = "ex" .. run .. ".shipping" }
local function with(t, extra) for k, v in pairs(t) do extra[k] = v end return extra end

local function story()
  local orders = assert(er.open(tmpdir()))
  local shipping = assert(er.open(tmpdir()))

  -- The orders service: its own events, in its own store. -------------------
  assert(orders:append("order-1001", { type = "OrderPlaced", data = { customer = "alice", total = 4300 } }))
  assert(orders:append("order-1002", { type = "OrderPlaced", data = { customer = "bob", total = 4000 } }))
  assert(orders:append("order-1001", { type = "OrderPaid", data = { amount = 4300 } }))

  local to_nats = orders:relay("to-nats", with(ORDERS, { create_stream = true }))
  local n = assert(to_nats:run())
  print(("orders: relayed %d events to %s"):format(n, ORDERS.stream))

  -- The shipping service: consumes the orders, mirrors them, reacts. --------
  local from_orders = er.jetstream_source(with(ORDERS, { mirror = true }))
  local ready = shipping:projection("ready-to-ship", {
    source = from_orders,
    handlers = {
      OrderPlaced = function(view, ev)
        view:put(ev.stream, { customer = ev.data.customer, paid = false })
      end,
      OrderPaid = function(view, ev)
        local row = view:get(ev.stream)
        row.paid = true
        view:put(ev.stream, row)
        -- the reactor's part: committed with the read model and the checkpoint
        view:emit("shipment-" .. ev.stream:match("%d+"), { type = "ShipmentRequested",
          data = { order = ev.stream, customer = row.customer } }, { expected = er.NO_STREAM })
      end,
    },
  })
  local applied = assert(ready:run())
  print(("shipping: applied %d events from JetStream"):format(applied))
  assert(ready:get("order-1001").paid and not ready:get("order-1002").paid)
  -- the mirror: the orders' events, readable in the shipping store
  local ids = {}
  for ev in orders:read("order-1001") do ids[#ids + 1] = ev.id end
  for ev in shipping:read("order-1001") do assert(ev.id == table.remove(ids, 1)) end
  assert(#ids == 0, "the mirror holds order-1001 as the orders store does")

  -- Shipping dispatches what was requested, in its own store...
  for ev in shipping:all({ types = { "ShipmentRequested" } }) do
    assert(shipping:append(ev.stream, { type = "Shipped", data = { order = ev.data.order, tracking = "TRK-" .. ev.id:sub(-6) } },
      { expected = ev.version }))
  end
  -- ...and publishes its own events (category "shipment", not the mirrored orders)
  local back = shipping:relay("to-nats", with(SHIPPING, { create_stream = true, category = "shipment" }))
  print(("shipping: relayed %d events to %s"):format(assert(back:run()), SHIPPING.stream))

  -- The orders service learns what was shipped. -----------------------------
  local from_shipping = er.jetstream_source(SHIPPING)
  local status = orders:projection("shipped", {
    source = from_shipping,
    handlers = { Shipped = function(view, ev) view:put(ev.data.order, ev.data.tracking) end },
  })
  assert(status:run())
  print("orders: order-1001 shipped, tracking " .. status:get("order-1001"))
  assert(status:get("order-1002") == nil)

  -- Later: bob pays.  Each step picks up where it left off; nothing twice.
  assert(orders:append("order-1002", { type = "OrderPaid", data = { amount = 4000 } }))
  assert(to_nats:run() == 1 and ready:run() == 1)
  assert(ready:run() == 0, "a second run applies nothing")
  local req = assert(shipping:event(shipping:last_position()))
  assert(req.type == "ShipmentRequested" and req.data.order == "order-1002")
  assert(shipping:append(req.stream, { type = "Shipped", data = { order = "order-1002", tracking = "TRK-BOB" } },
    { expected = req.version }))
  assert(back:run() == 2) -- the request and the shipment
  assert(status:run() == 2 and status:get("order-1002") == "TRK-BOB")
  print("orders: order-1002 shipped, tracking " .. status:get("order-1002"))

  print("\nthe shipping store (mirrored orders and its own events):")
  for ev in shipping:all() do print("  " .. tostring(ev)) end

  for _, x in ipairs({ to_nats, back, from_orders, from_shipping, orders, shipping }) do x:close() end
end

local ok, err = xpcall(story, debug.traceback)

-- Clean up: the JetStream streams, the server we started, the stores.
if server then
  os.execute("kill " .. server.pid)
  server.pipe:read("a") -- until it has exited
  server.pipe:close()
else
  local conn = er.jetstream_connect({ url = url })
  if conn then
    conn:delete_stream(ORDERS.stream)
    conn:delete_stream(SHIPPING.stream)
    conn:close()
  end
end
for _, d in ipairs(tmp) do os.execute("rm -rf '" .. d .. "'") end
if not ok then io.stderr:write(err, "\n"); os.exit(1) end
