-- bench/profile_read.lua -- the read workload of er_lua.lua split in two,
-- so that a profiler sees only the reads:
--   lua5.4 bench/profile_read.lua fill N DIR   (N events as `read` sets up)
--   valgrind --tool=callgrind lua5.4 bench/profile_read.lua read N DIR
-- The read loads stream `tally-big` and scans the global log, printing RESULT
-- lines like er_lua.lua (a store left by `fill` is read from its table
-- files, not from memtables).
local er = require "eventrocks"
local C = require "common"

local mode, N, dir = arg[1], tonumber(arg[2]), arg[3]
if not ((mode == "fill" or mode == "read") and N and dir) then
  io.stderr:write("usage: ", arg[0], " fill|read N DIR\n")
  os.exit(2)
end

local store = assert(er.open(dir))
if mode == "fill" then
  for i = 1, N do
    local stream = i % 2 == 0 and "tally-big" or "other-" .. i % 1000
    assert(store:append(stream, { type = "ItemAdded", data = C.payload(i) }))
  end
else
  local t = C.now()
  local count, qty = 0, 0
  for ev in store:read("tally-big") do
    count = count + 1
    qty = qty + ev.data.qty
  end
  C.result("load.eps", count / (C.now() - t))
  t = C.now()
  count = 0
  for ev in store:all() do
    count = count + 1
    if ev.data.qty == 0 then qty = qty + 1 end
  end
  C.result("scan.eps", count / (C.now() - t))
end
store:close()
