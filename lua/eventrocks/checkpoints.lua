--- eventrocks.checkpoints: the one key scheme of the store's "checkpoints"
-- space.  Each module that keeps checkpoints (projections, the JetStream
-- relay, projections fed from JetStream) names them by a kind of its own
-- and a name; no module builds or takes apart another's keys.
--
--   "\0" .. kind .. "\0" .. name     kinds: "projection", "relay", "jetstream"
--
-- Stores written before this scheme used the bare name (projections),
-- "relay:" .. name (relays) and name .. "\0jetstream" (JetStream sources).
-- A key of the scheme never equals one of those (they never start with
-- NUL).  They are read when the new key is absent and removed by the first
-- write of the new one, so an old store keeps its positions.
local M = {}

local KINDS = { projection = true, relay = true, jetstream = true, deadletter = true, skipped = true }

local function check_kind(kind)
  if not KINDS[kind] then error("eventrocks.checkpoints: unknown kind " .. tostring(kind), 3) end
end

local function key(kind, name) return "\0" .. kind .. "\0" .. name end

-- The key an older store used, or nil.  A projection named "relay:x"
-- shared its old key with the relay x: that key is the relay's.
local function legacy(kind, name)
  if kind == "relay" then return "relay:" .. name end
  if kind == "jetstream" then return name .. "\0jetstream" end
  if name:sub(1, 6) ~= "relay:" then return name end
end

--- get(store, kind, name) -> the stored value; nil when there is none; or
-- nil, err when its bytes do not decode.
function M.get(store, kind, name)
  check_kind(kind)
  local v, err = store:_get("checkpoints", key(kind, name))
  if v ~= nil or err ~= nil then return v, err end
  local old = legacy(kind, name)
  if old then return store:_get("checkpoints", old) end
  return nil
end

--- put(txn, kind, name, value): write it in the transaction (nil deletes).
function M.put(txn, kind, name, value)
  check_kind(kind)
  local ok, err
  if value == nil then ok, err = txn:delete("checkpoints", key(kind, name))
  else ok, err = txn:put("checkpoints", key(kind, name), value) end
  if not ok then return nil, err end
  local old = legacy(kind, name)
  if old then return txn:delete("checkpoints", old) end
  return true
end

--- delete(txn, kind, name)
function M.delete(txn, kind, name) return M.put(txn, kind, name, nil) end

--- write(store, kind, name, value): put in a write of its own.
function M.write(store, kind, name, value)
  local txn, err = store:_txn()
  if not txn then return nil, err end
  local ok
  ok, err = M.put(txn, kind, name, value)
  if ok then ok, err = txn:commit() end
  txn:close()
  if not ok then return nil, err end
  return true
end

-- ---------------------------------------------------------------------------
-- Items: records kept under one owner's name, in byte order of their item
-- key (a projection's dead letters and skipped errors, by position):
--
--   "\0" .. kind .. "\0" .. name .. "\0" .. item

local function item_prefix(kind, name) return "\0" .. kind .. "\0" .. name .. "\0" end

--- The item key of a position: ordered as the positions are.
function M.position_item(position) return string.pack(">I8", position) end

--- put_item(txn, kind, name, item, value): nil deletes.
function M.put_item(txn, kind, name, item, value)
  check_kind(kind)
  if value == nil then return txn:delete("checkpoints", item_prefix(kind, name) .. item) end
  return txn:put("checkpoints", item_prefix(kind, name) .. item, value)
end

--- get_item(store, kind, name, item) -> value, or nil, or nil, err
function M.get_item(store, kind, name, item)
  check_kind(kind)
  return store:_get("checkpoints", item_prefix(kind, name) .. item)
end

--- each_item(store, kind, name) -> iterator of item, value in item order.
function M.each_item(store, kind, name)
  check_kind(kind)
  local prefix = item_prefix(kind, name)
  local nextkv, state, init, closer = store:_scan("checkpoints", prefix)
  local skip = #prefix + 1
  return function(st)
    local k, v = nextkv(st)
    if k == nil then return nil end
    return k:sub(skip), v
  end, state, init, closer
end

--- delete_items(txn, kind, name): every item of that owner.
function M.delete_items(txn, kind, name)
  check_kind(kind)
  return txn:delete_prefix("checkpoints", item_prefix(kind, name))
end

--- each(store) -> iterator of kind, name, value over every checkpoint (not
-- the items), old keys included (a scan meeting bytes that do not decode
-- raises).
function M.each(store)
  local nextkv, state, init, closer = store:_scan("checkpoints")
  local function step(st)
    local k, v = nextkv(st)
    if k == nil then return nil end
    local kind, name = k:match("^%z([^%z]+)%z(.*)$")
    if kind and name:find("\0", 1, true) then return step(st) end -- an item
    if kind then return kind, name, v end
    name = k:match("^(.*)%zjetstream$")
    if name then return "jetstream", name, v end
    if k:sub(1, 6) == "relay:" then return "relay", k:sub(7), v end
    return "projection", k, v
  end
  return step, state, init, closer
end

return M
