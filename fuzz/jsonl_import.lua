-- fuzz/jsonl_import.lua: the Lua half of fuzz/jsonl_import.c.  Loaded once
-- with (store, stored): a writable store (for the append checks of the
-- binding; nothing is ever committed) and stored(v), what the store keeps
-- of a value (er_decode(er_encode(v)), raising as an append does).
-- Returns the function run on every input, as one line of an import file.
--
-- What `eventrocks import` does with a line (lua/eventrocks/cli.lua):
-- jsonl.peek_event(line) when it is malformed (outside any pcall), else
-- jsonl.decode_event(line, n), then an append of the event in a
-- transaction with expected = version - 1 and the line's time.  Checked:
--  - peek_event never raises; decode_event raises only "line N: ..." (the
--    import names the line);
--  - a line decode_event accepts has fields of the promised types, and the
--    binding's append takes it: it may raise only for a value the store
--    refuses (data or metadata: nesting, table keys), never return an error
--    (decode_event checks every field so that no bad line reaches the store);
--  - the event the store would keep, exported (jsonl.encode_event), is one
--    line of strict UTF-8 JSON (no raw control bytes) that decode_event
--    reads back to that same event, and exporting that gives the same text
--    again.
local jsonl = require "eventrocks.jsonl"
local core = require "eventrocks.core"

local store, stored = ...

local mtype, fmt = math.type, string.format

local function fail(msg, ...)
  error("FUZZ: " .. fmt(msg, ...), 0)
end

-- structural equality: math.type, NaN and -0.0 kept, strings byte for byte
local function same(a, b)
  if type(a) ~= type(b) then return false end
  if type(a) == "number" then
    if mtype(a) ~= mtype(b) then return false end
    if a ~= a then return b ~= b end
    if a == 0 and mtype(a) == "float" then return 1 / a == 1 / b end
    return a == b
  end
  if type(a) ~= "table" then return a == b end
  for k, v in next, a do
    local w = rawget(b, k)
    if w == nil or not same(v, w) then return false end
  end
  for k in next, b do
    if rawget(a, k) == nil then return false end
  end
  return true
end

local FIELDS = { "id", "stream", "version", "type", "time", "data", "metadata", "position",
  "subject", "forgotten" }

local function same_event(a, b)
  for _, f in ipairs(FIELDS) do
    if not same(a[f], b[f]) then return false, f end
  end
  return true
end

-- The binding's append of `ev` in a transaction that is dropped: true, or
-- false and the message it raised.  Returning nil, err is a failure.
local function append_checks(ev, line)
  local txn = assert(store:_txn())
  local events = { { id = ev.id, type = ev.type, data = ev.data, metadata = ev.metadata } }
  local called, ok, err = pcall(txn.append, txn, ev.stream, events,
    { expected = ev.version - 1, time = ev.time })
  txn:close()
  if not called then return false, tostring(ok) end
  if not ok then fail("decode_event accepted a line the store refuses: %s\n%s", tostring(err), line) end
  return true
end

-- What the store keeps of `ev`, as read back (id in lowercase, metadata {}
-- when none).
local function kept(ev)
  -- (not `x and stored(x) or nil`: that reads a stored `false` as nil)
  local data, metadata = nil, {}
  if ev.data ~= nil then data = stored(ev.data) end
  if ev.metadata ~= nil then metadata = stored(ev.metadata) end
  return {
    id = ev.id:lower(), stream = ev.stream, version = ev.version, type = ev.type, time = ev.time,
    data = data,
    metadata = metadata,
    -- personal data: the subject and forgotten flag go through export as
    -- they are (the store of this target has no key: not appended)
    subject = ev.subject, forgotten = ev.forgotten,
  }
end

return function(input)
  local line = input:match("^[^\n]*") -- the importer reads the file by lines
  if not line:find("%S") then return end -- and skips blank ones

  jsonl.peek_event(line) -- runs outside any pcall in the importer: must not raise

  local ok, ev = pcall(jsonl.decode_event, line, 7)
  if not ok then
    if type(ev) ~= "string" or not ev:find("^line 7: ") then
      fail("decode_event raised an error without the line number: %s", tostring(ev))
    end
    return
  end

  if type(ev) ~= "table" or type(ev.id) ~= "string" or type(ev.stream) ~= "string"
    or type(ev.type) ~= "string" or mtype(ev.version) ~= "integer" or ev.version < 1
    or mtype(ev.time) ~= "integer" or ev.time < 1 -- the store takes 0 for "now"
    or (ev.metadata ~= nil and type(ev.metadata) ~= "table")
    or (ev.position ~= nil and mtype(ev.position) ~= "integer") then
    fail("decode_event returned a malformed event for %s", line)
  end

  local took, why = append_checks(ev, line)
  if not took then
    -- only a value the store refuses may stop the append
    if not why:find("%.data") and not why:find("%.metadata") then
      fail("the append of a decoded line raised: %s\n%s", why, line)
    end
    return
  end

  local k = kept(ev)
  if not same(ev.data, k.data) then fail("the store changes the data of %s", line) end
  if ev.metadata ~= nil and not same(ev.metadata, k.metadata) then
    fail("the store changes the metadata of %s", line)
  end

  -- export, import again, export again
  local line2 = jsonl.encode_event(k)
  if line2:find("\n", 1, true) then fail("an exported line holds a newline: %s", line2) end
  -- strict JSON for other programs: UTF-8, control characters escaped
  if not utf8.len(line2) then fail("an exported line is not UTF-8: %q", line2) end
  if line2:find("[%z\1-\31\127]") then fail("an exported line holds a raw control byte: %q", line2) end
  local ok2, ev2 = pcall(jsonl.decode_event, line2, 8)
  if not ok2 then fail("the export does not import: %s\n  line:   %s\n  export: %s", tostring(ev2), line, line2) end
  if not append_checks(ev2, line2) then fail("the export's append raised\n  export: %s", line2) end
  local k2 = kept(ev2)
  local eq, field = same_event(k, k2)
  if not eq then
    fail("export then import changes %s\n  line:   %s\n  export: %s\n  again:  %s", field, line, line2,
      jsonl.encode_event(k2))
  end
  local line3 = jsonl.encode_event(k2)
  if line3 ~= line2 then
    fail("two exports of one event differ\n  line:   %s\n  export: %s\n  again:  %s", line, line2, line3)
  end
end
