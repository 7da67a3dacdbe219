--- Checking options tables: every Lua function of eventrocks that takes an
-- options table refuses a key it does not know, so that a misspelt option
-- never drops a guarantee silently (`{ expectd = 0 }` must not append
-- without its concurrency check).  The C binding does the same for its own
-- functions.
local M = {}

--- A set from a list of names: `M.known { "from", "count" }`.
function M.known(names)
  local set = {}
  for _, n in ipairs(names) do set[n] = true end
  return set
end

--- Raise `bad argument #argn to 'fname' (...)` in the caller of the
-- function that calls check (`level` more levels up: default 0), when
-- `opts` is neither nil nor a table, or has a key not in `known`; `prefix`
-- goes before the key in the message ("tls." for a nested table).
-- Returns `opts`.
function M.check(opts, known, argn, fname, level, prefix)
  if opts == nil then return nil end
  level = 3 + (level or 0)
  if type(opts) ~= "table" then
    error(("bad argument #%d to '%s' (opts must be a table, got %s)"):format(argn, fname, type(opts)), level)
  end
  for k in pairs(opts) do
    if not known[k] then
      local shown = type(k) == "string" and ("'" .. (prefix or "") .. k .. "'") or tostring(k)
      error(("bad argument #%d to '%s' (unknown option %s)"):format(argn, fname, shown), level)
    end
  end
  return opts
end

return M
