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
--   table with string keys only, all     object
--     valid UTF-8, none starting with "$"
--   any other table                      {"$map": [[key, value], ...]}  (keys mapped too)
--     (also {n = <number>}, which dkjson would write as an array)
--
-- An event's stream id and type are written like string values: a JSON
-- string when valid UTF-8, else {"$base64": "..."}.  So every line is strict
-- UTF-8 JSON (dkjson escapes the control characters, DEL and the
-- characters JavaScript treats as line ends), and a string that looks like
-- a tag is a string, a key that starts with "$" goes through $map: tags
-- are objects with one "$" key, which the encoder never writes otherwise.
--
-- Read back, a number is an integer when it is written as one (no ".",
-- no exponent), else a float.  An integer literal outside the 64-bit range
-- is refused, with its place ("line 3: data.amount: integer
-- 18446744073709551616 is outside the 64-bit range"), never made a float.
-- {"$int": "<decimal digits>"} is read as that integer (for writers whose
-- numbers are doubles, e.g. JavaScript with BigInt); the encoder never
-- writes it.
local json = require "dkjson"
local core = require "eventrocks.core"

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
      if type(k) ~= "string" or byte(k, 1) == 36 or not utf8.len(k) then strings = false end -- 36: "$"
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
-- JSON text -> JSON tree: integer literals outside the 64-bit range

-- dkjson reads numbers with tonumber, which makes an integer literal that
-- does not fit a float.  Such literals are rewritten as {"$int": "<digits>"}
-- before dkjson sees the text, so that from_tree refuses them with their
-- place.  Only a line with a run of 19 digits can hold one (2^63 has 19):
-- any other line is left as it is, with one string.find.
local BIG_RUN = "%d%d%d%d%d%d%d%d%d%d%d%d%d%d%d%d%d%d%d"
local NUMBER = "^%-?[%d%.]+[eE]?[%+%-]?%d*" -- dkjson's token of a number

local function tag_big_integers(s)
  if not s:find(BIG_RUN) then return s end
  local out, last, p = {}, 1, 1
  while true do
    local q = s:find('["%-%d%.]', p)
    if not q then break end
    if byte(s, q) == 34 then -- a string: skip it, escapes included
      local r = q + 1
      while true do
        local e = s:find('["\\]', r)
        if not e then return s end -- unterminated: dkjson says so
        if byte(s, e) == 92 then r = e + 2 else r = e + 1 break end
      end
      p = r
    else
      local _, e = s:find(NUMBER, q)
      if not e then break end -- "-" alone: dkjson says so
      local tok = s:sub(q, e)
      if tok:find("^%-?%d+$") and mtype(tonumber(tok)) ~= "integer" then
        out[#out + 1] = s:sub(last, q - 1)
        out[#out + 1] = '{"$int":"' .. tok .. '"}'
        last = e + 1
      end
      p = e + 1
    end
  end
  if last == 1 then return s end
  out[#out + 1] = s:sub(last)
  return concat(out)
end

-- ---------------------------------------------------------------------------
-- JSON tree -> Lua value; raises on shapes the mapping never produces

local KEY = {} -- in a path: the key of a $map entry

-- "line 3: data.items[2]" from path[0] (the root) and path[1..depth]
local function place(path, depth)
  local out = { path[0] }
  for i = 1, depth do
    local k = path[i]
    if k == KEY then out[#out + 1] = ": key"
    elseif type(k) == "string" then
      if k:find("^[%a_][%w_]*$") then out[#out + 1] = "." .. k
      else
        if #k > 40 then k = k:sub(1, 40) .. "..." end
        -- bytes that are not text escaped (a cut UTF-8 sequence is not text)
        local bad = utf8.len(k) and '[%c"\\]' or '[%c"\\\128-\255]'
        out[#out + 1] = '["' .. k:gsub(bad, function(c) return fmt("\\x%02x", byte(c)) end) .. '"]'
      end
    elseif mtype(k) == "float" then out[#out + 1] = "[" .. fmt("%.17g", k) .. "]"
    else out[#out + 1] = "[" .. tostring(k) .. "]" end
  end
  return concat(out)
end

local function fail(path, depth, msg)
  error(place(path, depth) .. ": " .. msg, 0)
end

local function int_tag(s, path, depth)
  if type(s) ~= "string" then fail(path, depth, "$int needs a string") end
  if not s:find("^%-?%d+$") then fail(path, depth, "bad $int " .. s) end
  local i = tonumber(s)
  if mtype(i) ~= "integer" then fail(path, depth, "integer " .. s .. " is outside the 64-bit range") end
  return i
end

local function from_tree(v, path, depth)
  local t = type(v)
  if v == json.null then return nil end
  if t == "number" then return v end -- dkjson: "1" is an integer, "1.5" a float
  if t ~= "table" then return v end
  local tag, tagged = next(v)
  if type(tag) == "string" and byte(tag, 1) == 36 and next(v, tag) == nil then
    if tag == "$float" then
      if type(tagged) ~= "string" then fail(path, depth, "$float needs a string") end
      local x = tagged == "nan" and 0 / 0 or tagged == "inf" and math.huge
        or tagged == "-inf" and -math.huge or tonumber(tagged)
      if not x then fail(path, depth, "bad $float " .. tagged) end
      return x + 0.0
    elseif tag == "$base64" then
      local s = type(tagged) == "string" and from_base64(tagged)
      if not s then fail(path, depth, "bad $base64") end
      return s
    elseif tag == "$int" then
      return int_tag(tagged, path, depth)
    elseif tag == "$map" then
      if type(tagged) ~= "table" then fail(path, depth, "$map needs an array of pairs") end
      local out = {}
      for i, kv in ipairs(tagged) do
        if type(kv) ~= "table" or #kv ~= 2 then fail(path, depth, "$map entry " .. i .. " is not a pair") end
        path[depth + 1] = KEY
        local k = from_tree(kv[1], path, depth + 1)
        if k == nil or k ~= k then fail(path, depth, "$map entry " .. i .. " has a nil or NaN key") end
        path[depth + 1] = k
        out[k] = from_tree(kv[2], path, depth + 1)
      end
      return out
    else
      fail(path, depth, "unknown tag " .. tag)
    end
  end
  local out = {}
  for k, x in pairs(v) do
    path[depth + 1] = k
    out[k] = from_tree(x, path, depth + 1)
  end
  return out
end

-- from_tree whose errors start with `root`
local function from_json(v, root)
  return from_tree(v, { [0] = root }, 0)
end

--- The JSON form of any storable value (a string of JSON).
function M.encode_value(v)
  return json.encode(to_tree(v))
end

--- The value of a JSON text made by encode_value.
function M.decode_value(s)
  local v, _, err = json.decode(tag_big_integers(s), 1, json.null)
  if err then error(err, 0) end
  return from_json(v, "value")
end

--- One event as a JSON line (no newline).
-- Personal data: an event of a subject carries it ("subject"), in
-- plaintext like its data; a forgotten one "forgotten": true and no data.
function M.encode_event(ev)
  return json.encode(setmetatable({
    position = ev.position, id = ev.id, stream = to_tree(ev.stream), version = ev.version,
    type = to_tree(ev.type), time = ev.time, data = to_tree(ev.data), metadata = to_tree(ev.metadata),
    subject = ev.subject ~= nil and to_tree(ev.subject) or nil, forgotten = ev.forgotten or nil,
  }, OBJECT), { keyorder = { "position", "stream", "version", "type", "time", "id", "subject",
    "forgotten", "data", "metadata" } })
end

-- The value of a field that may be a tag ({"$base64": ...} for a name that
-- is not UTF-8, {"$int": ...}): only a tag of one string is read, so that
-- no deep table is walked here; any other table stays a table.
local function scalar(v, line, name)
  if type(v) ~= "table" then return v end
  if v == json.null then return nil end
  local k, x = next(v)
  if type(k) == "string" and type(x) == "string" and next(v, k) == nil then
    return from_json(v, fmt("line %d: %s", line, name))
  end
  return v
end

local function field(t, name, kind, line)
  local v = scalar(t[name], line, name)
  if kind == "integer" then
    if mtype(v) ~= "integer" then error(fmt("line %d: %s must be an integer", line, name), 0) end
  elseif type(v) ~= kind then
    error(fmt("line %d: %s must be a %s", line, name, kind), 0)
  end
  return v
end

local FIELDS = { position = true, stream = true, version = true, type = true, time = true,
  id = true, data = true, metadata = true, subject = true, forgotten = true }
local UUID = "^%x%x%x%x%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$"
local MAX_NAME = { stream = core.MAX_STREAM_LEN, type = core.MAX_TYPE_LEN, subject = 1024 } -- bytes
-- Times: microseconds since the epoch, from 1 (0 tells the store "now") to
-- the last microsecond of year 9999 (9999-12-31T23:59:59.999999Z), the
-- last that ISO 8601 dates in four digits and the readable outputs show.
local MAX_TIME = 253402300799999999

-- A stream id or a type: 1 to MAX_NAME[key] bytes without NUL.
local function name(t, key, line)
  local v, max = field(t, key, "string", line), MAX_NAME[key]
  if #v == 0 or #v > max or v:find("\0", 1, true) then
    error(fmt("line %d: %s must be 1 to %d bytes without NUL", line, key, max), 0)
  end
  return v
end

--- Parse a JSON line made by encode_event into an event table; raises
-- "line N: ..." when it is malformed.  Every field is checked here, so that
-- an import never learns of a bad line from the store.
function M.decode_event(s, line)
  -- dkjson raises (rather than returns) on some input, e.g. a stack
  -- overflow on very deep nesting
  local ok, t, _, err = pcall(json.decode, tag_big_integers(s), 1, json.null)
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
  if ev.time < 1 or ev.time > MAX_TIME then
    error(fmt("line %d: time %d is out of range (1 to %d: microseconds since the epoch,"
      .. " up to the end of year 9999)", line, ev.time, MAX_TIME), 0)
  end
  if t.position ~= nil then
    local p = scalar(t.position, line, "position")
    if mtype(p) ~= "integer" or p < 1 then
      error(fmt("line %d: position must be an integer >= 1", line), 0)
    end
    ev.position = p
  end
  local ok, v = pcall(from_json, t.data, fmt("line %d: data", line))
  if not ok then error(v, 0) end
  ev.data = v
  if t.metadata ~= nil and t.metadata ~= json.null then
    ok, v = pcall(from_json, t.metadata, fmt("line %d: metadata", line))
    if not ok then error(v, 0) end
    if type(v) ~= "table" then error(fmt("line %d: metadata must be an object", line), 0) end
    ev.metadata = v
  end
  if ev.version < 1 then error(fmt("line %d: version must be >= 1", line), 0) end
  if t.subject ~= nil and t.subject ~= json.null then ev.subject = name(t, "subject", line) end
  if t.forgotten ~= nil and t.forgotten ~= json.null then
    if type(t.forgotten) ~= "boolean" then error(fmt("line %d: forgotten must be a boolean", line), 0) end
    if t.forgotten then
      if not ev.subject then error(fmt("line %d: a forgotten event needs its subject", line), 0) end
      if ev.metadata and next(ev.metadata) == nil then ev.metadata = nil end -- {}: none
      if ev.data ~= nil or ev.metadata ~= nil then
        error(fmt("line %d: a forgotten event has no data or metadata", line), 0)
      end
      ev.forgotten = true
    end
  end
  return ev
end

--- The stream, version and time of a line that may not be a valid event,
-- as far as they can be read; nil when it is not a JSON object.
function M.peek_event(s)
  local ok, t = pcall(json.decode, tag_big_integers(s), 1, json.null)
  if not ok or type(t) ~= "table" then return nil end
  local function plain(v) -- tags read, as decode_event reads them
    local ok2, x = pcall(scalar, v, 0, "")
    return ok2 and x or nil
  end
  return { stream = plain(t.stream), version = plain(t.version), time = plain(t.time) }
end

M.to_base64, M.from_base64 = to_base64, from_base64

return M
