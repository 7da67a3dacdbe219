-- Progress reporting of long work: projection runs, and the bar itself.
local H = require "helper"

describe("progress", function()
  local t = {}
  before_each(function() H.setup(t) end)
  after_each(function() H.teardown(t) end)

  local function fill(n)
    for i = 1, n do assert(t.store:append("a-" .. (i % 5), { type = "X", data = i })) end
  end

  it("proj:run{progress = fn} reports every batch, ending at the last position", function()
    fill(1000)
    local p = t.store:projection("count", { handlers = {
      X = function(view, ev) view:put(ev.stream, (view:get(ev.stream) or 0) + 1) end } })
    local seen = {}
    local n, pos = p:run({ batch = 300, progress = function(position, last)
      seen[#seen + 1] = { position, last }
    end })
    assert.equal(1000, n)
    assert.equal(1000, pos)
    assert.equal(4, #seen) -- 300, 600, 900, then the short batch
    for i, s in ipairs(seen) do
      assert.equal(1000, s[2])
      if i > 1 then assert.is_true(s[1] > seen[i - 1][1]) end
    end
    assert.equal(1000, seen[#seen][1])
  end)

  it("draws nothing when stderr is not a terminal", function()
    fill(50)
    t.store:close()
    local errf = os.tmpname()
    local code = ([[
      local s = assert(er.open(%q))
      local p = s:projection("count", { handlers = { X = function(view, ev) view:put("n", 1) end } })
      print(p:run({ batch = 7, progress = true }))
      local bar = require("eventrocks.progress").new("label", 10)
      bar.step(5); bar.done(10)
    ]]):format(t.dir)
    local p = assert(io.popen(H.lua_cmd(code):gsub(" 2>&1$", "") .. " 2>" .. H.shquote(errf)))
    local out = p:read("a")
    p:close()
    local f = assert(io.open(errf))
    local err = f:read("a")
    f:close()
    os.remove(errf)
    assert.equal("50\t50\n", out)
    assert.equal("", err)
  end)
  it("on a terminal, a count or total it cannot know (nil: a pipe's size) draws no numbers and never raises", function()
    local code = [[
      local progress = require("eventrocks.progress")
      local bar = progress.new("importing", nil)
      bar.step(nil); bar.step(5); bar.done(nil)
      bar = progress.new("importing", 10)
      bar.step(nil); bar.step(5); bar.done(nil)
      io.stdout:write("\nSURVIVED\n")
    ]]
    local p = assert(io.popen("script -qec " .. H.shquote(H.lua_cmd(code)) .. " /dev/null </dev/null"))
    local out = p:read("a")
    p:close()
    assert.is_truthy(out:find("SURVIVED", 1, true), out)
    assert.is_truthy(out:find("importing 5 ", 1, true), out) -- it did draw on the terminal
    assert.is_falsy(out:find("nil", 1, true), out)
  end)
end)
