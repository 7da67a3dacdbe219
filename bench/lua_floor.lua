-- bench/lua_floor.lua -- the floor under any Lua reader or writer:
-- building the event tables that a read returns, or that an append takes,
-- in plain Lua, with no store at all.
-- Workload read (load.eps and scan.eps as in bench/README.md): per
-- event the table of the fields doc/api.md lists, its data table (the payload of
-- bench/common.lua) and an empty metadata table; the strings that a decoder
-- must create fresh (id, sku, customer) are cut from a buffer with
-- string.sub, as lua_pushlstring makes them from the record's bytes.
local C = require "common"

local workload, N = C.args()

-- Appends: the floor under any Lua writer is building what an append
-- takes, exactly as bench/er_lua.lua builds it (the event tables with their
-- payload, the array of 100 or 10, the options table), with no store.
local PER = { append1 = 1, append100 = 100, append_rr = 10 }
if PER[workload] then
  local payload, per, sink = C.payload, PER[workload], 0
  local t = C.now()
  if per == 1 then
    for j = 1, N do
      local ev, opts = { type = "ItemAdded", data = payload(j) }, { expected = j }
      sink = sink + opts.expected + #ev.type
    end
  else
    for j = 0, N // per - 1 do
      local evs = {}
      for i = 1, per do evs[i] = { type = "ItemAdded", data = payload(j * per + i) } end
      local opts = { expected = j }
      sink = sink + opts.expected + #evs
    end
  end
  t = C.now() - t
  assert(sink > 0)
  C.result(workload .. ".eps", (N // per * per) / t)
  os.exit(0)
end

if workload ~= "read" then
  if workload == "catchup" or workload == "snapshot" or workload == "latency" or workload == "rss" then
    os.exit(0)
  end
  io.stderr:write("lua_floor.lua: unknown workload '", workload, "'\n")
  os.exit(2)
end

-- the bytes a decoder would copy the fresh strings from
local parts = {}
for i = 1, 4096 do
  parts[i] = ("0198a1b2-c3d4-7e5f-8a9b-%012dSKU-%05dcustomer-%06d"):format(i, i % 100000, i % 1000003)
end
local buf = table.concat(parts)
local REC = 36 + 9 + 15
local NOTE = "gift wrap, leave at the door; call before delivery"

local function build(i, stream)
  local o = (i % 4096) * REC + 1
  return {
    id = buf:sub(o, o + 35), stream = stream, version = i, position = i,
    type = "ItemAdded", time = 1764000000000000 + i,
    data = {
      order = i, sku = buf:sub(o + 36, o + 44), qty = i % 7 + 1, price = 1999 + i % 100,
      currency = "EUR", customer = buf:sub(o + 45, o + 59), note = NOTE,
    },
    metadata = {},
  }
end

local t = C.now()
local count, qty = 0, 0
for i = 1, N // 2 do
  local ev = build(i, "tally-big")
  count = count + 1
  qty = qty + ev.data.qty
end
t = C.now() - t
assert(count == N // 2 and qty > 0)
C.result("load.eps", count / t)
t = C.now()
count = 0
for i = 1, N do
  local ev = build(i, "other-1")
  count = count + 1
  if ev.data.qty == 0 then qty = qty + 1 end
end
t = C.now() - t
C.result("scan.eps", count / t)
