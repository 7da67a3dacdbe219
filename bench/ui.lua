-- bench/ui.lua -- the web explorer's pages on big stores (eventrocks.ui,
-- rendered in process: the HTTP round trip on loopback adds well under a
-- millisecond).  See bench/README.md for the contract.
-- Workload: ui N -- one stream of N events and N/10 streams of one event;
-- prints the median time of 5 renders of the stream page (its latest
-- events, and its first) and of the streams page (which counts the
-- streams up to eventrocks.ui.COUNT_LIMIT, 100k), after one warm-up render each.
local er = require "eventrocks"
local ui = require "eventrocks.ui"
local C = require "common"

local workload, N, dir = C.args()
assert(workload == "ui", "bench/ui.lua: only the ui workload")
local now, result = C.now, C.result

local store = assert(er.open(dir))
-- the long stream, 1000 events an append
local batch = {}
for i = 1, N do
  batch[#batch + 1] = { type = "ItemAdded", data = C.payload(i) }
  if #batch == 1000 or i == N then
    assert(store:append("big-1", batch))
    batch = {}
  end
end
-- N/10 streams of one event, 1000 appends a transaction
local streams = N // 10
local txn = assert(store:_txn())
for i = 1, streams do
  assert(txn:append(("cust-%07d"):format(i), { { type = "Registered", data = { n = i } } }))
  if i % 1000 == 0 or i == streams then
    assert(txn:commit())
    txn:close()
    if i < streams then txn = assert(store:_txn()) end
  end
end
store:close()

local ro = assert(er.open(dir, { read_only = true }))
local app = ui.new(ro, { dir = dir })
local function render(path, query)
  local t0 = now()
  local status, _, body = app:handle({ method = "GET", path = path, query = query, args = {}, headers = {} })
  local ms = (now() - t0) * 1000
  assert(status == 200, body)
  return ms
end
local function median_ms(path, query)
  render(path, query)
  local xs = {}
  for i = 1, 5 do xs[i] = render(path, query) end
  table.sort(xs)
  return xs[3]
end
result("ui.stream.ms", median_ms("/stream", { id = "big-1" }))
result("ui.stream_first.ms", median_ms("/stream", { id = "big-1", from = "1" }))
result("ui.streams.ms", median_ms("/streams", {}))
ro:close()
