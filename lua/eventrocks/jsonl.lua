--- eventrocks.jsonl: events as JSON lines, lossless for every value the
-- store accepts, over dkjson (Debian lua-dkjson).
--
-- JSON has one number type, no NaN or infinities, Unicode-only strings and
-- string-only object keys; Lua values have more.  The mapping keeps plain
-- JSON wherever it is exact and tags the rest:
--
--   Lua                                  JSON
--   nil                                  null
--   true, false                          true, false
--   integer                              number without "." or exponent (exact)
--   float, when its shortest form        number with "." or an exponent
--     round-trips (1.5, 0.25, -0.0)
--   other floats, NaN, inf, -inf         {"$float": "0.30000000000000004"}, {"$float": "nan"}, ...
--   string that is valid UTF-8           string
--   other string                         {"$base64": "..."}
--   table with keys exactly 1..n         array
--   table with string keys only,         object
--     none starting with "$"
--   any other table                      {"$map": [[key, value], ...]}  (keys mapped too)
--     (also {n = <number>}, which dkjson would write as an array)
local json = require "dkjson"

local M = {}

local type, pairs, ipairs, tostring, tonumber = type, pairs, ipairs, tostring, tonumber
local mtype, fmt, byte, char, concat = math.type, string.format, string.byte, string.char, table.concat

local OBJECT = { __jsontype = "object" }
local ARRAY = { __jsontype = "array" }

-- ---------------------------------------------------------------------------
-- base64 (RFC 4648); Debian packages no base64 module for Lua 5.4

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local b64enc, b64dec = {}, {}
for i = 1, 64 do
  b64enc[i - 1] = B64:sub(i, i)
  b64dec[B64:byte(i)] = i - 1
end

local function to_base64(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = byte(s, i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    out[#out + 1] = b64enc[n >> 18] .. b64enc[(n >> 12) & 63]
      .. (b and b64enc[(n >> 6) & 63] or "=") .. (c and b64enc[n & 63] or "=")
  end
  return concat(out)
end

local function from_base64(s)
  -- groups of 4; "=" only as the padding (one or two) of the last group
  if #s % 4 ~= 0 or not s:find("^[%w%+/]*=?=?$") then return nil end
  local out = {}
  for i = 1, #s, 4 do
    local a, b, c, d = byte(s, i, i + 3)
    local n = (b64dec[a] << 18) | (b64dec[b] << 12) | ((b64dec[c] or 0) << 6) | (b64dec[d] or 0)
    if c == 61 then out[#out + 1] = char(n >> 16)
    elseif d == 61 then out[#out + 1] = char(n >> 16, (n >> 8) & 255)
    else out[#out + 1] = char(n >> 16, (n >> 8) & 255, n & 255) end
  end
  return concat(out)
end

-- ---------------------------------------------------------------------------
-- Lua value -> JSON-ready tree

local key_order = require("eventrocks.pretty").key_order -- keys are never NaN

local function float_tag(x)
  local s
  if x ~= x then s = "nan"
  elseif x == math.huge then s = "inf"
  elseif x == -math.huge then s = "-inf"
  else
    s = fmt("%.17g", x)
    if not s:find("[%.eEn]") then s = s .. ".0" end
  end
  return setmetatable({ ["$float"] = s }, OBJECT)
end

local function to_tree(v)
  local t = type(v)
  if t == "string" then
    if utf8.len(v) then return v end
    return setmetatable({ ["$base64"] = to_base64(v) }, OBJECT)
  elseif t == "number" then
    if mtype(v) == "integer" then return v end
    local s = tostring(v)
    if v == v and v ~= math.huge and v ~= -math.huge and tonumber(s) == v and s:find("[%.eE]")
      and (v ~= 0 or 1 / v == 1 / tonumber(s)) then
      return v
    end
    return float_tag(v)
  elseif t == "table" then
    -- #v is any border of v: an array only when the keys are exactly 1..n
    local n, count, strings, seq = #v, 0, true, true
    for k in pairs(v) do
      count = count + 1
      if type(k) ~= "string" or byte(k, 1) == 36 then strings = false end -- 36: "$"
      if mtype(k) ~= "integer" or k < 1 or k > n then seq = false end
    end
    if n > 0 and seq and count == n then
      local arr = setmetatable({}, ARRAY)
      for i = 1, n do arr[i] = to_tree(v[i]) end
      return arr
    end
    -- dkjson takes a table whose only key is a numeric `n` for an array
    -- (table.pack's convention): send that one through $map
    if strings and not (count == 1 and type(v.n) == "number") then
      -- keys in byte order, so that exports of equal values are equal text
      local obj, order = {}, {}
      for k, x in pairs(v) do
        obj[k] = to_tree(x)
        order[#order + 1] = k
      end
      table.sort(order)
      return setmetatable(obj, { __jsontype = "object", __jsonorder = order })
    end
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = k end
    table.sort(keys, key_order)
    local pairs_ = setmetatable({}, ARRAY)
    for i, k in ipairs(keys) do pairs_[i] = setmetatable({ to_tree(k), to_tree(v[k]) }, ARRAY) end
    return setmetatable({ ["$map"] = pairs_ }, OBJECT)
  elseif t == "nil" then
    return json.null
  else
    return v -- booleans
  end
end

-- ---------------------------------------------------------------------------
-- JSON tree -> Lua value; raises on shapes the mapping never produces

local function from_tree(v, where)
  local t = type(v)
  if v == json.null then return nil end
  if t == "number" then return v end -- dkjson: "1" is an integer, "1.5" a float
  if t ~= "table" then return v end
  local tag, tagged = next(v)
  if type(tag) == "string" and byte(tag, 1) == 36 and next(v, tag) == nil then
    if tag == "$float" then
      if type(tagged) ~= "string" then error(where .. ": $float needs a string", 0) end
      local x = tagged == "nan" and 0 / 0 or tagged == "inf" and math.huge
        or tagged == "-inf" and -math.huge or tonumber(tagged)
      if not x then error(where .. ": bad $float " .. tagged, 0) end
      return x + 0.0
    elseif tag == "$base64" then
      local s = type(tagged) == "string" and from_base64(tagged)
      if not s then error(where .. ": bad $base64", 0) end
      return s
    elseif tag == "$map" then
      if type(tagged) ~= "table" then error(where .. ": $map needs an array of pairs", 0) end
      local out = {}
      for i, kv in ipairs(tagged) do
        if type(kv) ~= "table" or #kv ~= 2 then error(where .. ": $map entry " .. i .. " is not a pair", 0) end
        local k = from_tree(kv[1], where)
        if k == nil or k ~= k then error(where .. ": $map entry " .. i .. " has a nil or NaN key", 0) end
        out[k] = from_tree(kv[2], where)
      end
      return out
    else
      error(where .. ": unknown tag " .. tag, 0)
    end
  end
  local out = {}
  for k, x in pairs(v) do out[k] = from_tree(x, where) end
  return out
end

--- The JSON form of any storable value (a string of JSON).
function M.encode_value(v)
  return json.encode(to_tree(v))
end

--- The value of a JSON text made by encode_value.
function M.decode_value(s)
  local v, _, err = json.decode(s, 1, json.null)
  if err then error(err, 0) end
  return from_tree(v, "value")
end

--- One event as a JSON line (no newline).
function M.encode_event(ev)
  return json.encode(setmetatable({
    position = ev.position, id = ev.id, stream = ev.stream, version = ev.version,
    type = ev.type, time = ev.time, data = to_tree(ev.data), metadata = to_tree(ev.metadata),
  }, OBJECT), { keyorder = { "position", "stream", "version", "type", "time", "id", "data", "metadata" } })
end

local function field(t, name, kind, line)
  local v = t[name]
  if kind == "integer" then
    if mtype(v) ~= "integer" then error(fmt("line %d: %s must be an integer", line, name), 0) end
  elseif type(v) ~= kind then
    error(fmt("line %d: %s must be a %s", line, name, kind), 0)
  end
  return v
end

local FIELDS = { position = true, stream = true, version = true, type = true, time = true,
  id = true, data = true, metadata = true }
local UUID = "^%x%x%x%x%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$"
local MAX_NAME = 1024 -- bytes in a stream id or a type (ER_MAX_STREAM_LEN, ER_MAX_TYPE_LEN)

-- A stream id or a type: 1 to 1024 bytes without NUL.
local function name(t, key, line)
  local v = field(t, key, "string", line)
  if #v == 0 or #v > MAX_NAME or v:find("\0", 1, true) then
    error(fmt("line %d: %s must be 1 to %d bytes without NUL", line, key, MAX_NAME), 0)
  end
  return v
end

--- Parse a JSON line made by encode_event into an event table; raises
-- "line N: ..." when it is malformed.  Every field is checked here, so that
-- an import never learns of a bad line from the store.
function M.decode_event(s, line)
  -- dkjson raises (rather than returns) on some input, e.g. a stack
  -- overflow on very deep nesting
  local ok, t, _, err = pcall(json.decode, s, 1, json.null)
  if not ok then err = t end
  if err then error(fmt("line %d: %s", line, (tostring(err):gsub("^.-%.lua:%d+: ", ""))), 0) end
  if type(t) ~= "table" or t[1] ~= nil then error(fmt("line %d: not a JSON object", line), 0) end
  for k in pairs(t) do
    if not FIELDS[k] then
      error(fmt("line %d: unknown field %s", line, string.format("%q", tostring(k))), 0)
    end
  end
  local ev = {
    id = field(t, "id", "string", line),
    stream = name(t, "stream", line),
    version = field(t, "version", "integer", line),
    type = name(t, "type", line),
    time = field(t, "time", "integer", line),
  }
  if not ev.id:find(UUID) then error(fmt("line %d: id must be a UUID", line), 0) end
  if ev.time < 1 then error(fmt("line %d: time must be >= 1 (microseconds since the epoch)", line), 0) end
  if t.position ~= nil then
    if mtype(t.position) ~= "integer" or t.position < 1 then
      error(fmt("line %d: position must be an integer >= 1", line), 0)
    end
    ev.position = t.position
  end
  local ok, v = pcall(from_tree, t.data, fmt("line %d: data", line))
  if not ok then error(v, 0) end
  ev.data = v
  if t.metadata ~= nil and t.metadata ~= json.null then
    ok, v = pcall(from_tree, t.metadata, fmt("line %d: metadata", line))
    if not ok then error(v, 0) end
    if type(v) ~= "table" then error(fmt("line %d: metadata must be an object", line), 0) end
    ev.metadata = v
  end
  if ev.version < 1 then error(fmt("line %d: version must be >= 1", line), 0) end
  return ev
end

--- The stream, version and time of a line that may not be a valid event,
-- as far as they can be read; nil when it is not a JSON object.
function M.peek_event(s)
  local ok, t = pcall(json.decode, s, 1, json.null)
  if not ok or type(t) ~= "table" then return nil end
  return { stream = t.stream, version = t.version, time = t.time }
end

M.to_base64, M.from_base64 = to_base64, from_base64

return M
