--- A relay or a consumer in a child process, for the JetStream specs to
-- kill with SIGKILL mid-way (spec/jetstream_spec.lua).  Not a spec.
--
--   lua5.4 spec/jetstream/child.lua relay   STORE URL STREAM BATCH PACE_MS PREFIX
--   lua5.4 spec/jetstream/child.lua consume STORE URL STREAM BATCH PACE_MS PREFIX
--
-- PACE_MS: a pause per batch (relay) or per 50 events (consume), so that the
-- kill lands in the middle of the work.  Prints "done N" at the end.
local er = require "eventrocks"
local system = require "system"
local common = require "jetstream.common"

local mode, dir, url, stream, batch, pace, prefix = arg[1], arg[2], arg[3], arg[4], tonumber(arg[5]),
  tonumber(arg[6]), arg[7]
local store = assert(er.open(dir))
local n, err
if mode == "relay" then
  local relay = store:relay("out", { url = url, stream = stream, prefix = prefix, create_stream = true, batch = batch })
  n, err = relay:run({ progress = function() system.sleep(pace / 1000) end })
else
  local src = er.jetstream_source({ url = url, stream = stream, prefix = prefix, durable = "child", mirror = true })
  local seen = 0
  n, err = store:projection("counts", common.counts_spec(src, function()
    seen = seen + 1
    if seen % 50 == 0 then system.sleep(pace / 1000) end
  end)):run({ batch = batch })
end
if not n then
  io.stderr:write(tostring(err), "\n")
  os.exit(1)
end
print("done " .. n)
