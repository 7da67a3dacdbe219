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
-- function that calls check, when `opts` is neither nil nor a table, or has
-- a key not in `known`.  Returns `opts`.
function M.check(opts, known, argn, fname)
  if opts == nil then return nil end
  if type(opts) ~= "table" then
    error(("bad argument #%d to '%s' (opts must be a table, got %s)"):format(argn, fname, type(opts)), 3)
  end
  for k in pairs(opts) do
    if not known[k] then
      local shown = type(k) == "string" and ("'" .. k .. "'") or tostring(k)
      error(("bad argument #%d to '%s' (unknown option %s)"):format(argn, fname, shown), 3)
    end
  end
  return opts
end

return M
