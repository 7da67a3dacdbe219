--- eventrocks.progress: a progress bar with rate and ETA on stderr, drawn
-- only when stderr is a terminal (nothing at all otherwise).
--
--   local bar = progress.new("exporting", total)   -- total may be nil (unknown)
--   bar.step(n)   -- n done so far; redrawn at most 10 times a second
--   bar.done(n)   -- final state and a newline
--
-- A count that is not a number (nil: not known) draws nothing; a total that
-- is not a positive number draws the count and rate without a bar.
local system = require "system"
local sys = require "eventrocks.sys"

local M = {}

local fmt = string.format

local function silent() end

function M.new(label, total)
  if not sys.isatty(2) then return { step = silent, done = silent } end
  local stderr = io.stderr
  local t0, last_draw = system.monotime(), -1
  if type(total) ~= "number" then total = nil end
  local drawn = false
  local function draw(n, force)
    if type(n) ~= "number" then return end
    local now = system.monotime()
    if not force and now - last_draw < 0.1 then return end
    last_draw, drawn = now, true
    local elapsed = now - t0
    local rate = elapsed > 0 and n / elapsed or 0
    if total and total > 0 then
      local frac = math.min(1, n / total)
      local width = 30
      local filled = math.floor(frac * width)
      local eta = rate > 0 and math.ceil((total - math.min(n, total)) / rate) or 0
      stderr:write(fmt("\r%s [%s%s] %3d%% %d/%d %.0f/s ETA %ds ", label, ("#"):rep(filled),
        ("."):rep(width - filled), math.floor(frac * 100), n, total, rate, eta))
    else
      stderr:write(fmt("\r%s %d %.0f/s ", label, n, rate))
    end
  end
  return {
    step = function(n) draw(n, false) end,
    done = function(n)
      draw(n, true)
      if drawn then stderr:write("\n") end
    end,
  }
end

return M
