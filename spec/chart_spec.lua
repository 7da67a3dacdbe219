-- bench/chart.lua: the SVG chart the benchmark harness writes beside its
-- results (make bench: bench/results.svg; make bench-quick:
-- build/bench-quick.svg), on a tiny results table: a well-formed document,
-- one bar per figure, the goals drawn, every label escaped.
package.path = "bench/?.lua;" .. package.path
local chart = require "chart"
local H = require "helper"

-- A small XML well-formedness check (no XML library is a dependency):
-- elements nest and close, attribute values are quoted and hold no '<',
-- text holds no '<' and no '&' outside an entity.  Returns true, or nil and
-- what is wrong.
local function well_formed(doc)
  local stack, pos = {}, 1
  local function text_ok(t)
    if t:find("<", 1, true) then return false end
    for amp in t:gmatch("&[^;]*;?") do
      if not (amp:match("^&%a+;$") or amp:match("^&#%d+;$") or amp:match("^&#x%x+;$")) then return false end
    end
    return true
  end
  while true do
    local s, e = doc:find("<", pos, true)
    if not s then
      if not text_ok(doc:sub(pos)) then return nil, "bad text at the end" end
      break
    end
    if not text_ok(doc:sub(pos, s - 1)) then return nil, "bad text before byte " .. s end
    local close = doc:find(">", s, true)
    if not close then return nil, "unclosed tag at byte " .. s end
    local tag = doc:sub(s, close)
    if tag:match("^<%?") then
      if not tag:match("%?>$") then return nil, "bad declaration" end
    elseif tag:match("^</") then
      local name = tag:match("^</([%w:_-]+)%s*>$")
      if not name or stack[#stack] ~= name then
        return nil, ("</%s> closes <%s>"):format(tostring(name), tostring(stack[#stack]))
      end
      stack[#stack] = nil
    else
      local name, attrs, selfclose = tag:match("^<([%w:_-]+)(.-)(/?)>$")
      if not name then return nil, "bad tag " .. tag end
      local rest = attrs:gsub('%s+[%w:_-]+="[^"<]*"', ""):gsub("%s+[%w:_-]+='[^'<]*'", "")
      if rest:match("%S") then return nil, "bad attributes in " .. tag end
      for v in attrs:gmatch('="([^"]*)"') do
        if not text_ok(v) then return nil, "bad attribute value in " .. tag end
      end
      if selfclose == "" then stack[#stack + 1] = name end
    end
    pos = close + 1
  end
  if #stack > 0 then return nil, "unclosed <" .. stack[#stack] .. ">" end
  return true
end

local function xmllint_ok(svg)
  local ok = os.execute("command -v xmllint >/dev/null 2>&1")
  if not ok then return true end -- not installed: the check above stands alone
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write(svg)
  f:close()
  local r = os.execute("xmllint --noout " .. H.shquote(path) .. " 2>/dev/null")
  os.remove(path)
  return r
end

local function count(s, pat)
  local n = 0
  for _ in s:gmatch(pat) do n = n + 1 end
  return n
end

local EVIL = [[<script>alert("x" & 'y')</script>]]

local function tiny()
  return {
    title = "results " .. EVIL,
    subtitle = "a & b",
    unit = "events/s",
    contenders = {
      { key = "raw", name = "raw <RocksDB> (C)" },
      { key = "lua", name = "eventrocks \"Lua\" & co" },
      { key = "sqlite", name = "SQLite (Lua)" },
      { key = "none", name = "never measured" },
    },
    rows = {
      { id = "a", label = "append 100 events/call, 20k events, no fsync & more", values = { raw = 1.2e6, lua = 3.8e5, sqlite = 1.6e5 } },
      { id = "l", label = "aggregate load (repo:load) " .. EVIL, values = { lua = 1.4e6 } },
      { id = "d", label = "durable", values = { raw = 8000, lua = 7000, sqlite = 7900 } },
      { id = "x", label = "nothing measured", values = {} },
    },
    goals = {
      { row = "a", key = "lua", value = 3 * 1.6e5, label = "≥ 3× SQLite", met = false },
      { row = "a", key = "lua", value = 0.4 * 1.2e6, label = "≥ 0.4× raw <batched>", met = false },
      { row = "l", key = "lua", value = 2.5 * 5e5, label = "≥ 2.5× SQLite", met = true },
      { row = "d", key = "lua", label = "not measured" },
    },
  }
end

describe("bench/chart.lua", function()
  it("escapes what XML gives a meaning to", function()
    assert.equal("a &lt;b&gt; &amp; &quot;c&quot; &#39;d&#39;", chart.escape([[a <b> & "c" 'd']]))
    assert.equal("ab", chart.escape("a\1b"))
    assert.equal("12", chart.escape(12))
  end)

  it("draws a well-formed SVG with one bar per figure and the goals as lines", function()
    local svg = chart.svg(tiny())
    assert.truthy(well_formed(svg))
    assert.truthy(xmllint_ok(svg))
    assert.truthy(svg:match("^<%?xml"))
    assert.truthy(svg:find('<svg xmlns="http://www.w3.org/2000/svg"', 1, true))
    -- 7 figures: 7 bars (each with its tooltip), plus the legend's 3 swatches
    -- (the contender never measured has none) and the background
    assert.equal(7, count(svg, "<rect[^>]*><title>"))
    assert.equal(7 + 3 + 1, count(svg, "<rect "))
    assert.falsy(svg:find("never measured", 1, true))
    assert.falsy(svg:find("nothing measured", 1, true))
    -- three goals with a value: a solid and a dashed line each, coloured by verdict
    assert.equal(3, count(svg, 'stroke%-width="2%.5"'))
    assert.equal(2, count(svg, 'stroke="#cf222e" stroke%-width="2%.5"'))
    assert.equal(1, count(svg, 'stroke="#1a7f37" stroke%-width="2%.5"'))
    assert.truthy(svg:find("≥ 3× SQLite (missed)", 1, true))
    assert.truthy(svg:find("≥ 2.5× SQLite (met)", 1, true))
    -- no label got through unescaped
    assert.falsy(svg:find("<script", 1, true))
    assert.truthy(svg:find("&lt;script&gt;alert(&quot;x&quot; &amp; &#39;y&#39;)", 1, true))
    assert.truthy(svg:find("raw &lt;RocksDB&gt; (C)", 1, true))
    assert.truthy(svg:find("no fsync &amp; more", 1, true))
  end)

  it("puts every value on a logarithmic axis of whole decades", function()
    local svg = chart.svg(tiny())
    -- 7000 .. 1.4M: decades 1k to 10M, each labelled
    for _, d in ipairs({ "1k", "10k", "100k", "1M", "10M" }) do
      assert.truthy(svg:find(">" .. d .. "</text>", 1, true), d)
    end
    assert.falsy(svg:find(">100</text>", 1, true))
    -- bars grow with the logarithm of the value: 1.2M is longer than 160k
    local w_raw = tonumber(svg:match('<rect x="[%d.]+" y="[%d.]+" width="([%d.]+)"[^>]*><title>raw &lt;RocksDB&gt; %(C%): 1%.20M'))
    local w_sql = tonumber(svg:match('<rect x="[%d.]+" y="[%d.]+" width="([%d.]+)"[^>]*><title>SQLite %(Lua%): 160k'))
    assert.truthy(w_raw and w_sql and w_raw > w_sql)
  end)

  it("draws an empty chart rather than failing when nothing was measured", function()
    local svg = chart.svg({ title = "nothing", rows = {}, contenders = {} })
    assert.truthy(well_formed(svg))
    assert.truthy(xmllint_ok(svg))
  end)

  it("reads a results table as bench/run.lua writes it (lua5.4 bench/chart.lua IN.md OUT.svg)", function()
    local dir = H.mkdtemp()
    local md = dir .. "/results.md"
    local f = assert(io.open(md, "w"))
    f:write([[
# eventrocks benchmark results (make bench-quick)

| workload | unit | raw RocksDB (C) | eventrocks (Lua) | SQLite <Lua> & co | Lua / raw | Lua / SQLite |
| --- | --- | ---: | ---: | ---: | ---: | ---: |
| append 10 events/call round-robin over 1000 streams, 20k events, no fsync | events/s | 663k | 216k | 45k | 0.33× | 4.80× |
| load + fold a 20k-event stream (of 40k) | events/s | 7.83M | 904k | failed | 0.12× |  |
| aggregate load (`repo:load`) + fold of that 20k-event stream | events/s |  | 1.41M |  |  |  |
| append latency p50 at 10k events stored | µs |  | 6.46 |  |  |  |

## Goals
| goal | ratio | target | ceiling | verdict |
|---|---:|---:|---:|---|
]])
    f:close()
    local data = chart.parse_markdown(io.open(md):read("a"))
    assert.equal(3, #data.contenders) -- the ratio columns are not contenders
    assert.equal(3, #data.rows)       -- the rates only
    assert.equal(663000, data.rows[1].values[data.contenders[1].key])
    assert.is_nil(data.rows[2].values[data.contenders[3].key]) -- "failed"
    local out = dir .. "/results.svg"
    local ok = os.execute(("lua5.4 bench/chart.lua %s %s"):format(H.shquote(md), H.shquote(out)))
    assert.truthy(ok)
    local svg = assert(io.open(out)):read("a")
    H.rmrf(dir)
    assert.truthy(well_formed(svg))
    assert.truthy(xmllint_ok(svg))
    assert.equal(6, count(svg, "<rect[^>]*><title>"))
    assert.truthy(svg:find("SQLite &lt;Lua&gt; &amp; co", 1, true))
    assert.falsy(svg:find("latency", 1, true))
  end)

  it("its own well-formedness check refuses what it should", function()
    assert.is_nil(well_formed("<svg><text>a < b</text></svg>"))
    assert.is_nil(well_formed("<svg><text>a & b</text></svg>"))
    assert.is_nil(well_formed("<svg><g></svg>"))
    assert.is_nil(well_formed('<svg><text x="<">a</text></svg>'))
    assert.truthy(well_formed('<svg><text x="1">a &amp; b</text><rect/></svg>'))
  end)
end)
