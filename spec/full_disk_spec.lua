-- A full disk, for real: each case runs a child process in a mount
-- namespace of its own with a small tmpfs as its directory, fills the
-- tmpfs with a filler file, and checks that the store reports `io`
-- (never aborts: Debian's RocksDB is built with assertions, and a second
-- write to a log file that failed used to abort in WritableFileWriter),
-- that every way of letting go of the handle returns, that an open on
-- the full disk returns nil, err, and that once space returns a reopen
-- holds every acknowledged write and accepts new ones.
--
-- Mounting needs root (CI runs as root) or an unprivileged user
-- namespace; without either the cases are pending, with the reason.
local H = require "helper"

local function can_mount()
  local probe = "unshare -m --propagation private sh -c " ..
    H.shquote("d=$(mktemp -d) && mount -t tmpfs -o size=1m tmpfs \"$d\" && umount \"$d\"; rc=$?; rmdir \"$d\"; exit $rc")
  if os.execute(probe .. " >/dev/null 2>&1") then return "unshare -m --propagation private" end
  if os.execute("unshare -rm " .. H.shquote("true") .. " >/dev/null 2>&1") then
    return "unshare -rm --propagation private"
  end
  return nil
end
local UNSHARE = can_mount()

-- The child's common part: `fill(name)` writes zeros until the tmpfs has no
-- byte left; `free()` removes every filler.
local PRELUDE = [[
local dir, how = ...
local store_dir = dir .. "/store"
local fillers = {}
local function fill()
  for _, size in ipairs { 65536, 512, 1 } do
    local name = dir .. "/filler" .. #fillers
    fillers[#fillers + 1] = name
    local f = assert(io.open(name, "wb"))
    f:setvbuf("no")
    local chunk = string.rep("\0", size)
    while f:write(chunk) do end
    f:close()
  end
end
local function free()
  for _, name in ipairs(fillers) do os.remove(name) end
  fillers = {}
end
local function report(label, ok, err)
  if ok then print(label, "ok") return end
  print(label, "nil", err and err.code or "-", err and err.message or "-")
end
-- let go of the handle the way the case says: `s = let_go(s)` (for "gc"
-- the caller's reference is the last one, dropped by that assignment and
-- collected by collected())
local function let_go(s)
  if how == "close" then s:close()
  elseif how == "tbc" then do local _ <close> = s end
  end
  return nil
end
local function collected()
  collectgarbage()
  collectgarbage()
  print("let go", how)
end
]]

-- The end of every child: the disk full again, an open fails cleanly; with
-- space back, a reopen holds `acked` (a function of the store) and takes a
-- new append.
local EPILOGUE = [[
fill()
local s2, e2 = er.open(store_dir)
report("open on a full disk", s2, e2)
if s2 then s2:close() end
free()
local s3 = assert(er.open(store_dir))
print("reopened", check(s3))
print("append after", (s3:append("after-1", { type = "After" })))
s3:close()
print("done")
]]

local function run(body, how)
  local dir = H.mkdtemp()
  local script = dir .. ".lua"
  local f = assert(io.open(script, "w"))
  f:write(H.child_prelude(), PRELUDE, body, EPILOGUE)
  f:close()
  local cmd = UNSHARE .. " sh -c " .. H.shquote(
    'mount -t tmpfs -o size=12m tmpfs "$1" && exec lua5.4 "$2" "$1" "$3"') ..
    " sh " .. H.shquote(dir) .. " " .. H.shquote(script) .. " " .. how .. " 2>&1"
  local p = assert(io.popen(cmd, "r"))
  local out = p:read("a")
  local _, kind, status = p:close()
  os.remove(script)
  H.rmrf(dir)
  return out, kind, status
end

-- What every case must show.
local function assert_survived(out, kind, status, how)
  assert.equal("exit", kind, out)
  assert.equal(0, status, out)
  assert.not_matches("Assertion", out)
  assert.matches("let go\t" .. how, out, 1, true)
  -- an open on the full disk: nil, err with code io (or a store, if the
  -- files it needs fit in what the handle's release freed)
  local got, code = out:match("open on a full disk\t(%S+)\t(%S+)")
  assert.is_not_nil(got, out)
  assert.is_true(got == "ok" or code == "io", out)
  assert.matches("append after\t%d+", out)
  assert.matches("done", out, 1, true)
end

local HOWS = { "close", "tbc", "gc" }

describe("a full disk", function()
  if not UNSHARE then
    it("needs a tmpfs of its own", function()
      pending("cannot mount a tmpfs here (needs root or user namespaces): the full-disk cases did not run")
    end)
    return
  end

  for _, how in ipairs(HOWS) do
    it("appends return io, and letting go of the handle by " .. how .. " keeps every acknowledged one", function()
      local out, kind, status = run([[
local s = assert(er.open(store_dir))
local acked = 0
for i = 1, 40 do acked = assert(s:append("s-1", { type = "E", data = string.rep("d", 900) .. i })) end
fill()
-- what is left of the WAL file's last page may take an append or two
local v, err
for _ = 1, 100 do
  v, err = s:append("s-1", { type = "E", data = string.rep("d", 900) })
  if not v then break end
  acked = v
end
report("append on a full disk", v, err)
v, err = s:append("s-1", { type = "E" })
report("append on a full disk, again", v, err)
print("acked", acked)
s = let_go(s)
collected()
function check(st) return st:version("s-1") == acked and st:last_position() == acked end
]], how)
      assert_survived(out, kind, status, how)
      assert.matches("append on a full disk\tnil\tio\t", out, 1, true)
      assert.matches("reopened\ttrue", out, 1, true)
    end)
  end

  it("a process that ends with the store open on a full disk exits cleanly", function()
    -- lua.c closes the state at exit: __gc runs on the open handle
    local dir = H.mkdtemp()
    local script = dir .. ".lua"
    local f = assert(io.open(script, "w"))
    f:write(H.child_prelude(), PRELUDE, [[
local s = assert(er.open(store_dir))
for i = 1, 40 do assert(s:append("s-1", { type = "E", data = string.rep("d", 900) .. i })) end
fill()
local acked, v, err = 40
for _ = 1, 100 do
  v, err = s:append("s-1", { type = "E", data = string.rep("d", 900) })
  if not v then break end
  acked = v
end
report("append on a full disk", v, err)
print("acked", acked)
GLOBAL_STORE = s -- still open when the interpreter ends
]])
    f:close()
    local after = H.child_prelude() .. [[
local dir = ...
local s = assert(er.open(dir .. "/store"))
print("reopened", s:version("s-1"), (s:append("s-1", { type = "After" })))
s:close()
]]
    local script2 = dir .. "-2.lua"
    f = assert(io.open(script2, "w"))
    f:write(after)
    f:close()
    local cmd = UNSHARE .. " sh -c " .. H.shquote(
      'mount -t tmpfs -o size=12m tmpfs "$1" && lua5.4 "$2" "$1" exit; echo "first exit $?"; ' ..
      'for f in "$1"/filler*; do rm -f "$f"; done; lua5.4 "$3" "$1"') ..
      " sh " .. H.shquote(dir) .. " " .. H.shquote(script) .. " " .. H.shquote(script2) .. " 2>&1"
    local p = assert(io.popen(cmd, "r"))
    local out = p:read("a")
    p:close()
    os.remove(script)
    os.remove(script2)
    H.rmrf(dir)
    assert.not_matches("Assertion", out)
    assert.matches("append on a full disk\tnil\tio\t", out, 1, true)
    assert.matches("first exit 0", out, 1, true)
    local acked = tonumber(out:match("acked\t(%d+)"))
    assert.matches(("reopened\t%d\t%d"):format(acked, acked + 1), out, 1, true)
  end)

  it("a repository save with its snapshot returns io and keeps nothing of itself", function()
    local out, kind, status = run([[
local store = assert(er.open(store_dir))
local Acct = er.aggregate("acct", {
  init = function() return { n = 0 } end,
  apply = { Added = function(st, d) st.n = st.n + d.n end },
  snapshot_every = 5,
})
function Acct:add(n) self:raise("Added", { n = n, pad = string.rep("p", 900) }) end
local repo = store:repository(Acct)
for i = 1, 12 do assert(repo:update("a1", function(a) a:add(1) end)) end
fill()
local saved, v, err = 12
for _ = 1, 100 do
  local a = repo:load("a1")
  for _ = 1, 5 do a:add(1) end
  v, err = repo:save(a)
  if not v then break end
  saved = v
end
report("save on a full disk", v, err)
store = let_go(store)
collected()
function check(st)
  local r = st:repository(Acct)
  local b = r:load("a1")
  return b.version == saved and b.state.n == saved and st:version("acct-a1") == saved
end
]], "close")
    assert_survived(out, kind, status, "close")
    assert.matches("save on a full disk\tnil\tio\t", out, 1, true)
    assert.matches("reopened\ttrue", out, 1, true)
  end)

  it("a projection batch returns io and keeps nothing of itself", function()
    local out, kind, status = run([[
local store = assert(er.open(store_dir))
for i = 1, 30 do assert(store:append("item-" .. i, { type = "Added", data = { n = i } })) end
local function define(st)
  return st:projection("totals", { handlers = { Added = function(view, ev)
    view:put(ev.stream, { n = ev.data.n, pad = string.rep("v", 900) })
  end } })
end
local p = define(store)
assert(p:run())
for i = 31, 60 do assert(store:append("item-" .. i, { type = "Added", data = { n = i } })) end
fill()
local ok, n, err = pcall(p.run, p)
report("projection run on a full disk", ok and n, ok and err or (not ok and { code = "raised", message = tostring(n) }))
store = let_go(store)
collected()
function check(st)
  local q = define(st)
  local pos = q:position()
  local n2 = q:run()
  return (pos == 30 or pos == 60) and q:position() == 60 and q:get("item-60").n == 60
    and q:get("item-1").n == 1
end
]], "close")
    assert_survived(out, kind, status, "close")
    assert.matches("projection run on a full disk\tnil\tio\t", out, 1, true)
    assert.matches("reopened\ttrue", out, 1, true)
  end)
end)
