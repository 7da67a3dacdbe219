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

local function hex(c) return format("\\x%02x", c:byte()) end

-- C1 control characters (U+0080..U+009F) in UTF-8: some terminals act on
-- them like ESC sequences.
local C1 = "\194[\128-\159]"
local function c1(c) return hex(c:sub(1, 1)) .. hex(c:sub(2)) end

local function str(s)
  local q = format("%q", s):gsub("\\\n", "\\n"):gsub("\r", "\\r")
  if not utf8.len(q) then -- binary: show the bytes that are not text
    q = q:gsub("[\128-\255]", hex)
  end
  return (q:gsub(C1, c1))
end

local ESCAPES = { ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t", ["\\"] = "\\\\" }

-- Apply `fn` to the runs of valid UTF-8 in `s`, and show every byte that is
-- not part of one as \xNN.
local function by_utf8(s, fn)
  local out, i, n = {}, 1, #s
  while i <= n do
    local ok, bad = utf8.len(s, i)
    if ok then
      out[#out + 1] = fn(s:sub(i))
      break
    end
    if bad > i then out[#out + 1] = fn(s:sub(i, bad - 1)) end
    out[#out + 1] = hex(s:sub(bad, bad))
    i = bad + 1
  end
  return concat(out)
end

--- A name (stream id, type, key) for a terminal: control bytes (C0, DEL and
-- C1), bytes that are not UTF-8 and the backslash itself escaped, as
-- \n, \r, \t, \\ or \xNN, so that it is one line, no escape sequence
-- reaches the terminal, and the form is unambiguous.  Other text is kept.
function M.escape(s)
  s = tostring(s)
  if not s:find("[%z\1-\31\\\127-\255]") then return s end -- the usual case
  return by_utf8(s, function(run)
    return (run:gsub("[%z\1-\31\\\127]", function(c) return ESCAPES[c] or hex(c) end):gsub(C1, c1))
  end)
end

--- Prose (an error message, a report line) made safe for a terminal: like
-- escape, but backslashes are kept, and so are newlines and tabs when
-- `multiline` is true.
function M.safe(s, multiline)
  s = tostring(s)
  local pat = multiline and "[%z\1-\8\11-\31\127]" or "[%z\1-\31\127]"
  if not s:find(pat) and not s:find("[\128-\255]") then return s end
  return by_utf8(s, function(run)
    return (run:gsub(pat, function(c) return ESCAPES[c] or hex(c) end):gsub(C1, c1))
  end)
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

--- The one-line summary of an event that `tostring(event)` gives, e.g.
-- `#42 product-1@3 PriceIncreased 2026-11-27T21:41:06.123456Z {delta = 5}`,
-- the stream id and type escaped.
function M.event(ev)
  return format("#%d %s@%d %s %s %s", ev.position, M.escape(ev.stream), ev.version,
    M.escape(ev.type), M.time(ev.time), M.compact(ev.data, 160))
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

--- The metatable of the events that stores opened with `eventrocks.open`
-- read, and of those the JetStream source builds: `tostring(event)` is
-- M.event.
M.event_metatable = { __name = "eventrocks.event", __tostring = M.event }

return M
