-- bench/chart.lua -- the results as an SVG chart, written by the harness
-- itself (no dependency): one group of horizontal bars per workload, one bar
-- per contender, on a logarithmic axis (so that 8k events/s and 5M events/s
-- are both readable in one picture), with the ratio goals drawn as vertical
-- lines across their workload's group.
--
-- As a module (bench/run.lua calls it after a run):
--
--   local chart = require "chart"
--   local svg = chart.svg {
--     title = "...", subtitle = "...", unit = "events/s",
--     contenders = { { key = "lua", name = "eventrocks (Lua)" }, ... },
--     rows = { { id = "load", label = "load + fold ...", values = { lua = 1.07e6, sqlite = 7.1e5 } }, ... },
--     goals = { { row = "load", key = "lua", value = 1.78e6, label = "≥ 2.5× SQLite", met = false }, ... },
--   }
--
-- A goal is drawn at `value` (the rate the contender `key` must reach in
-- that row: the target ratio times the rate it is compared with), over the
-- bars of its row; `met` (true, false or nil for not measured) gives its
-- colour.  Rows without any value are left out; so are contenders with no
-- value in any row.
--
-- As a command, from a results table written by bench/run.lua (its first
-- table whose columns start with "workload | unit"; the rows in events/s,
-- the contender columns being those whose name has no " / "; no goals):
--
--   lua5.4 bench/chart.lua bench/results.md bench/results.svg
local MODNAME = ... -- "chart" when required, the first argument when run
local M = {}

local floor, ceil, log10 = math.floor, math.ceil, function(x) return math.log(x, 10) end

local ESC = { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;", ["'"] = "&#39;" }

--- Text made safe for SVG (XML) content and attribute values.  Control
-- characters other than tab and newline, which XML 1.0 does not allow, are
-- dropped.
function M.escape(s)
  return (tostring(s):gsub("[&<>\"']", ESC):gsub("[%z\1-\8\11\12\14-\31]", ""))
end
local esc = M.escape

--- A rate the way bench/run.lua prints it: 1.07M, 382k, 950.
function M.rate(v)
  if v >= 1e6 then return ("%.2fM"):format(v / 1e6) end
  if v >= 1e3 then return ("%.0fk"):format(v / 1e3) end
  return ("%.0f"):format(v)
end

local function decade(e)
  local v = 10 ^ e
  if v >= 1e9 then return floor(v / 1e9 + 0.5) .. "G" end
  if v >= 1e6 then return floor(v / 1e6 + 0.5) .. "M" end
  if v >= 1e3 then return floor(v / 1e3 + 0.5) .. "k" end
  return tostring(floor(v + 0.5))
end

local PALETTE = {
  "#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948",
  "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac",
}
local GOAL_MET, GOAL_MISSED, GOAL_UNKNOWN = "#1a7f37", "#cf222e", "#57606a"

local function num(x) return ("%.1f"):format(x) end

local function usable(v) return type(v) == "number" and v > 0 and v < math.huge end

--- The SVG document (a string) for `data` (see the top of this file).
function M.svg(data)
  local rows, used = {}, {}
  for _, r in ipairs(data.rows or {}) do
    local any = false
    for _, c in ipairs(data.contenders or {}) do
      if usable(r.values and r.values[c.key]) then any, used[c.key] = true, true end
    end
    if any then rows[#rows + 1] = r end
  end
  -- each contender's colour follows its place in data.contenders, so that
  -- it keeps it whichever others were measured
  local cols = {}
  for i, c in ipairs(data.contenders or {}) do
    if used[c.key] then cols[#cols + 1] = { key = c.key, name = c.name, colour = PALETTE[(i - 1) % #PALETTE + 1] } end
  end
  local goals_of = {}
  for _, g in ipairs(data.goals or {}) do
    if g.row ~= nil then
      goals_of[g.row] = goals_of[g.row] or {}
      table.insert(goals_of[g.row], g)
    end
  end

  -- the axis: whole decades around every value and goal
  local lo, hi = math.huge, -math.huge
  for _, r in ipairs(rows) do
    for _, c in ipairs(cols) do
      local v = r.values[c.key]
      if usable(v) then lo, hi = math.min(lo, v), math.max(hi, v) end
    end
    for _, g in ipairs(goals_of[r.id] or {}) do
      if usable(g.value) then lo, hi = math.min(lo, g.value), math.max(hi, g.value) end
    end
  end
  if lo == math.huge then lo, hi = 1, 10 end
  local e0, e1 = floor(log10(lo)), ceil(log10(hi))
  if lo < 2 * 10 ^ e0 then e0 = e0 - 1 end -- keep the smallest bar visible
  if e1 <= e0 then e1 = e0 + 1 end

  local W, X0, X1 = 980, 24, 980 - 110
  local BAR, LANE, HEAD, GAP = 11, 14, 20, 22
  local function x(v)
    if not usable(v) then return X0 end
    local f = (log10(v) - e0) / (e1 - e0)
    if f < 0 then f = 0 elseif f > 1 then f = 1 end
    return X0 + f * (X1 - X0)
  end

  local out = {}
  local function put(s) out[#out + 1] = s end

  -- legend: one swatch per contender, wrapped
  local legend, lx, ly = {}, X0, 58
  for _, c in ipairs(cols) do
    local w = 22 + #c.name * 6.2
    if lx + w > W - 10 then lx, ly = X0, ly + 16 end
    legend[#legend + 1] = ('<rect x="%s" y="%s" width="12" height="10" fill="%s"/>'
      .. '<text x="%s" y="%s" class="legend">%s</text>'):format(
      num(lx), num(ly - 9), c.colour, num(lx + 16), num(ly), esc(c.name))
    lx = lx + w + 10
  end
  local top = ly + 30 -- the axis labels, then the groups

  local body, y = {}, top + 8
  for _, r in ipairs(rows) do
    local gtop = y
    local marks = goals_of[r.id] or {}
    local head = esc(r.label)
    if #marks > 0 then
      local t = {}
      for _, g in ipairs(marks) do
        t[#t + 1] = esc(g.label or "goal") .. (g.met == true and " (met)" or g.met == false and " (missed)" or "")
      end
      head = head .. ' <tspan class="goaltext">goals: ' .. table.concat(t, "; ") .. "</tspan>"
    end
    body[#body + 1] = ('<text x="%s" y="%s" class="row">%s</text>'):format(num(X0), num(y + 13), head)
    y = y + HEAD
    local lanes = {}
    for _, c in ipairs(cols) do
      local v = r.values[c.key]
      if usable(v) then
        local xe = x(v)
        lanes[c.key] = y
        body[#body + 1] = ('<rect x="%s" y="%s" width="%s" height="%d" fill="%s"><title>%s: %s %s</title></rect>'
          .. '<text x="%s" y="%s" class="value">%s</text>'):format(
          num(X0), num(y), num(math.max(xe - X0, 1)), BAR, c.colour,
          esc(c.name), esc(M.rate(v)), esc(data.unit or ""),
          num(xe + 4), num(y + BAR - 1), esc(M.rate(v)))
        y = y + LANE
      end
    end
    -- each goal's line carries its label under the group: the lowest one
    -- to the left of its line, the others to the right
    local drawn = {}
    for _, g in ipairs(marks) do
      if usable(g.value) then drawn[#drawn + 1] = g end
    end
    table.sort(drawn, function(a, b) return a.value < b.value end)
    for i, g in ipairs(drawn) do
      local colour = g.met == true and GOAL_MET or g.met == false and GOAL_MISSED or GOAL_UNKNOWN
      local gx = x(g.value)
      local ly0 = (lanes[g.key] or gtop + HEAD) - 3
      local ly1 = (lanes[g.key] or y - LANE) + BAR + 3
      body[#body + 1] = ('<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="%s" stroke-width="2.5">'
        .. '<title>%s: %s at %s %s</title></line>'):format(
        num(gx), num(ly0), num(gx), num(ly1), colour,
        esc(g.label or "goal"), esc(g.met == true and "met" or g.met == false and "missed" or "not measured"),
        esc(M.rate(g.value)), esc(data.unit or ""))
      body[#body + 1] = ('<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="%s" stroke-width="1" stroke-dasharray="3 2"/>'):format(
        num(gx), num(gtop + HEAD - 2), num(gx), num(y + 2), colour)
      body[#body + 1] = ('<text x="%s" y="%s" class="goaltag" style="fill:%s" text-anchor="%s">%s</text>'):format(
        num(i == 1 and gx - 3 or gx + 3), num(y + 10), colour, i == 1 and "end" or "start", esc(g.label or "goal"))
    end
    y = y + GAP
  end
  local bottom = y

  local H = bottom + 40
  put('<?xml version="1.0" encoding="UTF-8"?>')
  put(('<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%s" viewBox="0 0 %d %s" role="img">'):format(
    W, num(H), W, num(H)))
  put(("<title>%s</title>"):format(esc(data.title or "benchmark results")))
  put("<style>text{font-family:sans-serif;font-size:12px;fill:#24292f}"
    .. ".title{font-size:16px;font-weight:bold}.sub{font-size:11px;fill:#57606a}"
    .. ".legend{font-size:11px}.row{font-size:12px;font-weight:bold}"
    .. ".goaltext{font-weight:normal;font-size:11px;fill:#57606a}"
    .. ".value{font-size:10px}.goaltag{font-size:10px;font-weight:bold}.axis{font-size:10px;fill:#57606a}</style>")
  put(('<rect width="%d" height="%s" fill="#ffffff"/>'):format(W, num(H)))
  put(('<text x="%d" y="22" class="title">%s</text>'):format(X0, esc(data.title or "benchmark results")))
  put(('<text x="%d" y="40" class="sub">%s</text>'):format(X0, esc(data.subtitle or "")))
  for _, l in ipairs(legend) do put(l) end
  -- decade grid and labels, top and bottom
  for e = e0, e1 do
    local gx = x(10 ^ e)
    put(('<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="#d0d7de" stroke-width="1"/>'):format(
      num(gx), num(top - 4), num(gx), num(bottom)))
    for _, ty in ipairs({ top - 8, bottom + 14 }) do
      put(('<text x="%s" y="%s" class="axis" text-anchor="middle">%s</text>'):format(num(gx), num(ty), esc(decade(e))))
    end
  end
  put(('<text x="%s" y="%s" class="axis" text-anchor="end">%s, logarithmic scale; goals: solid line on the bar they apply to (green met, red missed)</text>'):format(
    num(X1), num(bottom + 30), esc(data.unit or "")))
  for _, b in ipairs(body) do put(b) end
  put("</svg>")
  return table.concat(out, "\n") .. "\n"
end

-- ---------------------------------------------------------------------------
-- From a results table (markdown)

local function cells(line)
  local t = {}
  local inner = line:match("^%s*|(.*)|%s*$")
  if not inner then return nil end
  for c in (inner .. "|"):gmatch("(.-)|") do t[#t + 1] = c:match("^%s*(.-)%s*$") end
  return t
end

--- A rate as bench/run.lua prints it ("1.07M", "382k", "950") as a number;
-- nil for anything else ("", "failed").
function M.parse_rate(s)
  local n, suffix = tostring(s):match("^([%d.]+)([kMG]?)$")
  n = tonumber(n)
  if not n then return nil end
  return n * (suffix == "k" and 1e3 or suffix == "M" and 1e6 or suffix == "G" and 1e9 or 1)
end

--- The chart data of a results file's text: its first "workload | unit"
-- table, rows in events/s, no goals.
function M.parse_markdown(text)
  local data = { contenders = {}, rows = {}, goals = {}, unit = "events/s" }
  local header, colkeys
  for line in (text .. "\n"):gmatch("(.-)\r?\n") do
    if not data.title and line:match("^# ") then data.title = line:sub(3) end
    local c = cells(line)
    if not header then
      if c and c[1] == "workload" and c[2] == "unit" then
        header, colkeys = c, {}
        for i = 3, #c do
          if not c[i]:find(" / ", 1, true) then
            colkeys[i] = "c" .. i
            data.contenders[#data.contenders + 1] = { key = colkeys[i], name = c[i] }
          end
        end
      end
    elseif not c then
      break -- the end of the table
    elseif not c[1]:match("^%-+$") and c[2] == "events/s" then
      local row = { id = #data.rows + 1, label = c[1], values = {} }
      for i, key in pairs(colkeys) do row.values[key] = M.parse_rate(c[i] or "") end
      data.rows[#data.rows + 1] = row
    end
  end
  return data
end

if MODNAME ~= "chart" and arg and arg[0] and arg[0]:match("chart%.lua$") then
  local src, dst = arg[1], arg[2]
  if not (src and dst) then
    io.stderr:write("usage: lua5.4 bench/chart.lua RESULTS.md OUT.svg\n")
    os.exit(2)
  end
  local f = assert(io.open(src, "r"))
  local data = M.parse_markdown(f:read("a"))
  f:close()
  if #data.rows == 0 then
    io.stderr:write("chart.lua: no workload | unit table with events/s rows in ", src, "\n")
    os.exit(1)
  end
  data.subtitle = "from " .. src
  local o = assert(io.open(dst, "w"))
  o:write(M.svg(data))
  o:close()
end

return M
