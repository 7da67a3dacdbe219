--- eventrocks.pretty: short, readable renderings of stored values.
-- Used by `tostring(event)`; the REPL and the command line build on it.
local M = {}

local type, tostring, format, concat = type, tostring, string.format, table.concat
local mtype = math.type

--- ISO 8601 UTC time with microseconds, from integer microseconds.
function M.time(us)
  if mtype(us) ~= "integer" then return tostring(us) end
  local s, frac = us // 1000000, us % 1000000
  return os.date("!%Y-%m-%dT%H:%M:%S", s) .. format(".%06dZ", frac)
end

local function number(n)
  if mtype(n) == "integer" then return tostring(n) end
  if n ~= n then return "nan" end
  if n == math.huge then return "inf" end
  if n == -math.huge then return "-inf" end
  local s = format("%.14g", n)
  if tonumber(s) ~= n then s = format("%.17g", n) end
  if not s:find("[%.eEn]") then s = s .. ".0" end -- keep floats visibly floats
  return s
end

local function str(s)
  local q = format("%q", s):gsub("\\\n", "\\n"):gsub("\r", "\\r")
  if not utf8.len(q) then -- binary: show the bytes that are not text
    q = q:gsub("[\128-\255]", function(c) return format("\\x%02x", c:byte()) end)
  end
  return q
end

--- The order in which table keys are shown and exported: by type, then by
-- value (false before true).  Usable with table.sort.
local function key_order(a, b)
  local ta, tb = type(a), type(b)
  if ta ~= tb then return ta < tb end
  if ta == "boolean" then return (not a) and b end
  return a < b
end
M.key_order = key_order

local function is_name(k)
  return type(k) == "string" and k:match("^[%a_][%w_]*$") ~= nil
end

local function render(v, out, seen, depth)
  local t = type(v)
  if t == "string" then out[#out + 1] = str(v)
  elseif t == "number" then out[#out + 1] = number(v)
  elseif t ~= "table" then out[#out + 1] = tostring(v)
  elseif seen[v] then out[#out + 1] = "<cycle>"
  elseif depth > 20 then out[#out + 1] = "{...}"
  else
    seen[v] = true
    local n = #v
    local keys = {}
    for k in pairs(v) do
      if not (mtype(k) == "integer" and k >= 1 and k <= n) then keys[#keys + 1] = k end
    end
    table.sort(keys, key_order)
    out[#out + 1] = "{"
    local first = true
    for i = 1, n do
      if not first then out[#out + 1] = ", " end
      first = false
      render(v[i], out, seen, depth + 1)
    end
    for _, k in ipairs(keys) do
      if not first then out[#out + 1] = ", " end
      first = false
      if is_name(k) then out[#out + 1] = k
      else
        out[#out + 1] = "["
        render(k, out, seen, depth + 1)
        out[#out + 1] = "]"
      end
      out[#out + 1] = " = "
      render(v[k], out, seen, depth + 1)
    end
    out[#out + 1] = "}"
    seen[v] = nil
  end
end

--- A compact one-line, Lua-like rendering of `v`, cut to `max` bytes
-- (with "...") when given.
function M.compact(v, max)
  local out = {}
  render(v, out, {}, 0)
  local s = concat(out)
  if max and #s > max then s = s:sub(1, max - 3) .. "..." end
  return s
end

return M
