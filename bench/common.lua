-- Shared by the Lua contenders: the payload, the clock, argument parsing and
-- the RESULT line.  See bench/README.md for the contract.
local M = {}

local NOTE = "gift wrap, leave at the door; call before delivery"

-- The data of event i: about 150 bytes once encoded (MessagePack or JSON).
function M.payload(i)
  return {
    order = i,
    sku = ("SKU-%05d"):format(i % 100000),
    qty = i % 7 + 1,
    price = 1999 + i % 100,
    currency = "EUR",
    customer = ("customer-%06d"):format(i % 1000003),
    note = NOTE,
  }
end

-- Wall time in seconds from a monotonic clock (lua-system).
M.now = require("system").monotime

function M.args()
  local workload, n, dir, durable = arg[1], tonumber(arg[2]), arg[3], arg[4]
  if not (workload and n and dir and (durable == "0" or durable == "1")) then
    io.stderr:write("usage: ", arg[0], " WORKLOAD N DIR DURABLE(0|1)\n")
    os.exit(2)
  end
  return workload, math.tointeger(n), dir, durable == "1"
end

function M.result(metric, value)
  io.write(("RESULT %s %.6g\n"):format(metric, value))
  io.flush()
end

return M
