--- eventrocks.rocks: the parts of eventrocks that come in a rock of their own.
--
-- The base rock (eventrocks) needs RocksDB, msgpuck and xxhash only.  The
-- NATS JetStream relay and source are the eventrocks-jetstream rock: the
-- module eventrocks.jetstream and its binding eventrocks.nats, linked with
-- libnats.  Everything that reaches for them (store:relay,
-- er.jetstream_source, er.jetstream_connect, the command's relay and
-- consume) goes through M.jetstream, so that a missing rock is one message
-- naming the rock and how to install it.
local M = {}

local fmt = string.format

M.JETSTREAM_ROCK = "eventrocks-jetstream"
M.JETSTREAM_INSTALL = "luarocks --lua-version=5.4 make rockspec/eventrocks-jetstream-scm-1.rockspec"

-- The modules of the rock, the Lua one first (it loads the binding when
-- first used, so the binding is required here to find out whether it
-- loads), each with the path list it is searched on.
local JETSTREAM_MODULES = { { "eventrocks.jetstream", "path" }, { "eventrocks.nats", "cpath" } }

-- Whether `name` is installed: loaded already, or a file on its path (the
-- question asked of package.searchpath, never of require's message).
local function installed(name, path)
  return package.loaded[name] ~= nil or package.preload[name] ~= nil
    or package.searchpath(name, package[path]) ~= nil
end

--- The module eventrocks.jetstream, its binding loaded; or nil and a
-- message that starts with `what` (who needs it: "store:relay", "relay"):
-- one for a rock that is not installed (a module of it not found), another
-- for one installed that failed to load (libnats missing, say).
function M.jetstream(what)
  for _, m in ipairs(JETSTREAM_MODULES) do
    local name = m[1]
    local ok, err = true, nil
    if installed(name, m[2]) then ok, err = pcall(require, name) end
    if not installed(name, m[2]) then
      return nil, fmt("%s needs the %s rock, which is not installed (no module '%s'); "
        .. "install it from a checkout of eventrocks: tools/deps.sh jetstream && %s",
        what, M.JETSTREAM_ROCK, name, M.JETSTREAM_INSTALL)
    elseif not ok then
      return nil, fmt("%s: the %s rock is installed but its module '%s' failed to load "
        .. "(is libnats installed? tools/deps.sh jetstream): %s",
        what, M.JETSTREAM_ROCK, name, (tostring(err):gsub("%s+", " ")))
    end
  end
  return require "eventrocks.jetstream"
end

--- M.jetstream, raising its message in the caller of the function that
-- calls need_jetstream.
function M.need_jetstream(what)
  local js, err = M.jetstream(what)
  if not js then error(err, 3) end
  return js
end

-- The web explorer: the eventrocks-ui rock, the module eventrocks.ui and
-- its server eventrocks.http (linked with libmicrohttpd).
M.UI_ROCK = "eventrocks-ui"
M.UI_INSTALL = "luarocks --lua-version=5.4 make rockspec/eventrocks-ui-scm-1.rockspec"
local UI_MODULES = { { "eventrocks.ui", "path" }, { "eventrocks.http", "cpath" } }

--- The module eventrocks.ui, its server loaded; or nil and a message that
-- starts with `what`, as M.jetstream.
function M.ui(what)
  for _, m in ipairs(UI_MODULES) do
    local name = m[1]
    local ok, err = true, nil
    if installed(name, m[2]) then ok, err = pcall(require, name) end
    if not installed(name, m[2]) then
      return nil, fmt("%s needs the %s rock, which is not installed (no module '%s'); "
        .. "install it from a checkout of eventrocks: tools/deps.sh ui && %s",
        what, M.UI_ROCK, name, M.UI_INSTALL)
    elseif not ok then
      return nil, fmt("%s: the %s rock is installed but its module '%s' failed to load "
        .. "(is libmicrohttpd installed? tools/deps.sh ui): %s",
        what, M.UI_ROCK, name, (tostring(err):gsub("%s+", " ")))
    end
  end
  return require "eventrocks.ui"
end

return M
