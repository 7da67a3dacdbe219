-- Faults from the environment: permissions, missing or wrong paths, a store
-- of a newer format, damaged bytes, failing writes.  Each gives a clear
-- error (nil, err or a raised err object), never a crash or garbage, and the
-- store reopens consistent.  (ulimit -f: io_failure_spec.lua; the path and
-- code of a missing store or a regular file: store_spec.lua.)
local H = require "helper"
local er = H.er
local core = require "eventrocks.core"

local function sh_ok(cmd)
  local ok = os.execute(cmd .. " >/dev/null 2>&1")
  return ok == true
end

-- `eventrocks check` on dir: exit code and output.
local function cli_check(dir)
  local p = assert(io.popen("env LUA_PATH=" .. H.shquote(package.path) .. " LUA_CPATH=" .. H.shquote(package.cpath)
    .. " lua5.4 bin/eventrocks --store " .. H.shquote(dir) .. " check 2>&1"))
  local out = p:read("a")
  local _, how, code = p:close()
  if how ~= "exit" then code = 128 + code end
  return code, out
end

local function contains(hay, needle)
  assert.is_truthy(hay:find(needle, 1, true), string.format("%q does not contain %q", hay, needle))
end

-- A child process subject to permission bits.  Root ignores them (through
-- CAP_DAC_OVERRIDE), so as root the child runs without that capability;
-- the directories stay root's, and the owner's bits apply.
local IS_ROOT = io.popen("id -u"):read("l") == "0"
local DROP = "setpriv --bounding-set=-dac_override,-dac_read_search --inh-caps=-all -- "
local can_drop = not IS_ROOT or sh_ok(DROP .. "true")

local function unprivileged(code)
  local cmd = H.lua_cmd(code)
  -- leaks would be LeakSanitizer's business in `make asan`, not this test's
  cmd = "env ASAN_OPTIONS=detect_leaks=0 " .. cmd
  if IS_ROOT then cmd = DROP .. cmd end
  local p = assert(io.popen(cmd, "r"))
  local out = p:read("a")
  local _, how, status = p:close()
  return out, status, how
end

describe("a read-only directory", function()
  local t = {}
  before_each(function() H.setup(t, false) end)
  after_each(function()
    os.execute("chmod -R u+w " .. H.shquote(t.dir))
    H.teardown(t)
  end)

  local function need_permissions()
    if not can_drop then
      pending("running as root and setpriv cannot drop CAP_DAC_OVERRIDE here: permission bits do not apply")
      return false
    end
    return true
  end

  it("refuses to create a store in it: nil, err 'io' naming the path", function()
    if not need_permissions() then return end
    assert(os.execute("chmod 0555 " .. H.shquote(t.dir)))
    local out, status = unprivileged(string.format([[
      local s, err = er.open(%q)
      print(s, err.code, err.message)
    ]], t.dir .. "/new"))
    assert.equal(0, status, out)
    contains(out, "nil\tio\t" .. t.dir .. "/new")
    contains(out, "Permission denied")
    assert.is_false(H.exists(t.dir .. "/new"))
  end)

  it("holding a store: a writable open is 'io', a read-only open reads everything", function()
    if not need_permissions() then return end
    local s = assert(H.open(t, t.dir .. "/s"))
    assert(s:append("a-1", { H.ev("A", 1), H.ev("A", 2) }))
    s:close()
    assert(os.execute("chmod 0555 " .. H.shquote(t.dir .. "/s")))
    local out, status = unprivileged(string.format([[
      local s, err = er.open(%q)
      print("writable", s, err and err.code, err and err.message)
      local r = assert(er.open(%q, { read_only = true }))
      local n = 0
      for ev in r:read("a-1") do n = n + ev.data end
      print("read", n, r:last_position())
      r:close()
    ]], t.dir .. "/s", t.dir .. "/s"))
    assert.equal(0, status, out)
    contains(out, "writable\tnil\tio\t" .. t.dir .. "/s")
    contains(out, "Permission denied")
    contains(out, "read\t3\t2")
    assert(os.execute("chmod 0755 " .. H.shquote(t.dir .. "/s")))
    local s2 = assert(H.open(t, t.dir .. "/s"))
    assert.same({ 3, 3 }, { s2:append("a-1", H.ev("A", 3), { expected = 2 }) })
  end)

  it("holding a store that cannot be looked into: a read-only open is 'io' (not 'not_found')", function()
    if not need_permissions() then return end
    local s = assert(H.open(t, t.dir .. "/s"))
    assert(s:append("a-1", H.ev("A", 1)))
    s:close()
    assert(os.execute("chmod 0000 " .. H.shquote(t.dir .. "/s")))
    local out, status = unprivileged(string.format([[
      local r, err = er.open(%q, { read_only = true })
      print("read-only", r, err and err.code, err and err.message)
    ]], t.dir .. "/s"))
    assert(os.execute("chmod 0700 " .. H.shquote(t.dir .. "/s")))
    assert.equal(0, status, out)
    contains(out, "read-only	nil	io	" .. t.dir .. "/s")
    contains(out, "Permission denied")
  end)

  it("made read-only under a writer: appends fail with 'io', reads go on, close is clean, nothing is lost",
    function()
      if not need_permissions() then return end
      local dir = t.dir .. "/s"
      -- 1 MiB events fill the memtables of the log and of the stream index
      -- together, so RocksDB must start a new write-ahead log file, which
      -- the directory now refuses
      local out, status, how = unprivileged(string.format([[
        local s = assert(er.open(%q))
        assert(s:append("a-1", { type = "A", data = 0 }))
        os.execute("chmod 0555 %s")
        local big, acked, failed = ("x"):rep(1 << 20), 1, nil
        for i = 1, 60 do
          local v, err = s:append("a-1", { { type = "B", data = big }, { type = "C", data = i } })
          if v then acked = v else failed = failed or err end
        end
        print("failed", failed and failed.code, failed and failed.message)
        print("acked", acked)
        local n = 0
        for _ in s:read("a-1") do n = n + 1 end
        print("readable", n)
        s:close()
        print("closed")
      ]], dir, H.shquote(dir)))
      assert.equal("exit", how, out)
      assert.equal(0, status, out)
      contains(out, "failed\tio\t")
      contains(out, "Permission denied")
      contains(out, "closed")
      local acked = tonumber(out:match("acked\t(%d+)"))
      assert.is_true(acked > 1 and acked < 121, out)
      assert.equal(acked, tonumber(out:match("readable\t(%d+)")))
      assert(os.execute("chmod 0755 " .. H.shquote(dir)))
      local s = assert(H.open(t, dir))
      assert.equal(acked, s:version("a-1"))
      assert.equal(acked, s:last_position())
      assert.equal(0, (s:_check()))
      assert.same({ acked + 1, acked + 1 }, { s:append("a-1", H.ev("D"), { expected = acked }) })
    end)
end)

describe("a store of a newer format", function()
  local t = {}
  before_each(function() H.setup(t) end)
  after_each(function() H.teardown(t) end)

  it("is refused by open with 'invalid', naming the format and asking for an upgrade", function()
    assert(t.store:append("a-1", H.ev("A")))
    assert(t.store:_debug_put("default", "format", string.pack("<I4", er.FORMAT + 1)))
    t.store:close()
    for _, opts in ipairs({ {}, { read_only = true }, { create = false } }) do
      local s, err = H.open(t, t.dir, opts)
      assert.is_nil(s)
      H.check_err(err, "invalid")
      contains(err.message, t.dir)
      contains(err.message, "format " .. (er.FORMAT + 1))
      contains(err.message, "upgrade eventrocks")
    end
    local code, out = cli_check(t.dir)
    assert.is_true(code ~= 0)
    contains(out, "format " .. (er.FORMAT + 1))
  end)

  it("with a marker that is not a format number is refused too", function()
    assert(t.store:_debug_put("default", "format", "\1\0"))
    t.store:close()
    local s, err = H.open(t, t.dir)
    assert.is_nil(s)
    H.check_err(err, "invalid")
    contains(err.message, "format marker")
  end)
end)

describe("damaged bytes", function()
  local t = {}
  before_each(function()
    H.setup(t)
    assert(t.store:append("a-1", { H.ev("A", { x = 1 }), H.ev("A", { x = 2 }), H.ev("A", { x = 3 }) }))
    assert(t.store:append("b-1", H.ev("B", { y = 4 })))
  end)
  after_each(function() H.teardown(t) end)

  local function pos_key(p) return string.pack(">I8", p) end
  local function stream_key(s, v) return s .. "\0" .. string.pack(">I8", v) end

  -- the raw value with byte i (negative: from the end) xor-ed with `mask`
  local function flip(family, key, i, mask)
    local raw = assert(t.store:_debug_get(family, key))
    if i < 0 then i = #raw + 1 + i end
    local bad = raw:sub(1, i - 1) .. string.char(raw:byte(i) ~ (mask or 1)) .. raw:sub(i + 1)
    assert(t.store:_debug_put(family, key, bad))
    return raw
  end

  local function check_reports(...)
    local code, out = cli_check(t.dir)
    assert.equal(1, code, out)
    contains(out, "problem")
    for _, needle in ipairs({ ... }) do contains(out, needle) end
    return out
  end

  -- every byte of a record is covered: header fields, lengths, checksum,
  -- stream, type, data
  for _, where in ipairs({ { "the data", -1 }, { "the type", 73 + 3 }, { "the id", 9 }, { "the position", 25 },
    { "the time", 41 }, { "a length", 69 }, { "the checksum", 5 }, { "the format byte", 1 }, { "the flags", 2 } }) do
    it("in " .. where[1] .. " of a log record: event() gives nil, err 'corruption' with the position", function()
      flip("log", pos_key(2), where[2], 0x10)
      local ev, err = t.store:event(2)
      assert.is_nil(ev)
      H.check_err(err, "corruption")
      assert.equal(2, err.position)
      contains(err.message, "position 2")
      -- its neighbours read back exactly
      assert.same({ x = 1 }, t.store:event(1).data)
      assert.same({ x = 3 }, t.store:event(3).data)
      -- the log iterator raises the same error after the events before it
      local seen = {}
      local ok, e = pcall(function() for ev2 in t.store:all() do seen[#seen + 1] = ev2.position end end)
      assert.is_false(ok)
      H.check_err(e, "corruption")
      assert.equal(2, e.position)
      assert.same({ 1 }, seen)
      -- the stream's own copy is intact: loading the aggregate works
      assert.same({ 1, 2, 3 }, H.pluck(H.pluck(H.collect(t.store:read("a-1")), "data"), "x"))
      check_reports("position 2")
    end)
  end

  it("in a stream index record: read() raises 'corruption' naming the stream and version", function()
    flip("streams", stream_key("a-1", 2), -1, 0x40)
    local seen = {}
    local ok, e = pcall(function() for ev in t.store:read("a-1") do seen[#seen + 1] = ev.version end end)
    assert.is_false(ok)
    H.check_err(e, "corruption")
    contains(e.message, "'a-1'")
    contains(e.message, "version 2")
    assert.same({ 1 }, seen)
    assert.same({ x = 2 }, t.store:event(2).data) -- the log's copy is intact
    check_reports("a-1")
  end)

  it("a record under another position's key (a valid checksum) is 'corruption' too", function()
    assert(t.store:_debug_put("log", pos_key(3), assert(t.store:_debug_get("log", pos_key(2)))))
    local ev, err = t.store:event(3)
    assert.is_nil(ev)
    H.check_err(err, "corruption")
    assert.equal(3, err.position)
    check_reports("position 3")
  end)

  it("a truncated record and an empty one are 'corruption'", function()
    local raw = assert(t.store:_debug_get("log", pos_key(2)))
    assert(t.store:_debug_put("log", pos_key(2), raw:sub(1, 40)))
    assert(t.store:_debug_put("log", pos_key(3), ""))
    for p = 2, 3 do
      local ev, err = t.store:event(p)
      assert.is_nil(ev)
      H.check_err(err, "corruption")
      assert.equal(p, err.position)
    end
    check_reports("position 2", "position 3")
  end)

  it("a damaged stream head: version, append and streams give 'corruption', check reports it", function()
    assert(t.store:_debug_put("heads", "b-1", "\1\2\3"))
    local v, err = t.store:version("b-1")
    assert.is_nil(v)
    H.check_err(err, "corruption")
    contains(err.message, "b-1")
    local before = t.store:last_position()
    local v2, err2 = t.store:append("b-1", H.ev("B"))
    assert.is_nil(v2)
    H.check_err(err2, "corruption")
    assert.equal(before, t.store:last_position())
    local ok, e = pcall(function() for _ in t.store:streams() do end end)
    assert.is_false(ok)
    H.check_err(e, "corruption")
    -- check reads on past it and reports the damaged log record as well
    flip("log", pos_key(2), -1)
    check_reports("head of b-1", "position 2")
  end)

  it("a damaged projection checkpoint is 'corruption', never position 0 (which would apply every event again)",
    function()
      local count = function(view, ev) view:put("n", (view:get("n") or 0) + 1) end
      local p = t.store:projection("counter", { handlers = { A = count, B = count } })
      assert.same({ 4, 4 }, { p:run() })
      assert.equal(4, p:get("n"))
      assert(t.store:_debug_put("checkpoints", "\0projection\0counter", "\193")) -- 0xc1: never valid MessagePack
      local ok, e = pcall(p.position, p)
      assert.is_false(ok)
      H.check_err(e, "corruption")
      contains(e.message, "counter")
      local n, err = p:run()
      assert.is_nil(n)
      H.check_err(err, "corruption")
      assert.equal(4, p:get("n"))
      -- a checkpoint that decodes to something else than a position
      assert(t.store:_debug_put("checkpoints", "\0projection\0counter", "\161x")) -- the string "x"
      n, err = p:run()
      assert.is_nil(n)
      H.check_err(err, "corruption")
      assert.equal(4, p:get("n"))
      check_reports("counter")
    end)

  it("a damaged snapshot: the aggregate loads from its events, check reports it", function()
    local Acct = er.aggregate("acct", {
      init = function() return { n = 0 } end,
      apply = { D = function(state) state.n = state.n + 1 end },
      snapshot_every = 2,
    })
    local repo = t.store:repository(Acct)
    local agg = repo:load("1")
    agg:raise("D")
    agg:raise("D")
    assert.equal(2, repo:save(agg))
    assert(t.store:_debug_put("snapshots", "acct-1", "\193"))
    assert.equal(2, repo:load("1").state.n)
    check_reports("acct-1")
  end)
end)

describe("files damaged offline", function()
  local t = {}
  before_each(function() H.setup(t) end)
  after_each(function() H.teardown(t) end)

  it("give 'corruption' errors or refuse to open, never a crash or wrong data", function()
    -- incompressible data in table files: flipped bytes land in data blocks
    math.randomseed(7)
    local values = {}
    for i = 1, 400 do
      local b = {}
      for j = 1, 1000 do b[j] = string.char(math.random(0, 255)) end
      values[i] = table.concat(b)
      assert(t.store:append("r-" .. (i % 7), H.ev("R", values[i])))
    end
    t.store:close() -- flushes the memtables to table files
    local p = assert(io.popen("ls " .. H.shquote(t.dir) .. "/*.sst"))
    local ssts = {}
    for f in p:lines() do ssts[#ssts + 1] = f end
    p:close()
    assert.is_true(#ssts > 0)
    for _, f in ipairs(ssts) do
      local fh = assert(io.open(f, "r+b"))
      local size = fh:seek("end")
      if size > 100000 then -- the log and the stream index, not the small families
        for k = 1, 8 do
          fh:seek("set", size * k // 20)
          local c = fh:read(1)
          fh:seek("set", size * k // 20)
          fh:write(string.char(c:byte() ~ 0xff))
        end
      end
      fh:close()
    end
    -- in another process: whatever happens there must be an error, not a signal
    local out, status, how = H.run_child_status(string.format([[
      local s, err = er.open(%q)
      if not s then print("open", err.code) os.exit(0) end
      math.randomseed(7) -- the values the parent wrote
      local values = {}
      for i = 1, 400 do
        local b = {}
        for j = 1, 1000 do b[j] = string.char(math.random(0, 255)) end
        values[i] = table.concat(b)
      end
      local ok_events, errors, wrong = 0, {}, 0
      for p = 1, s:last_position() do
        local ev, e = s:event(p)
        if ev then
          ok_events = ok_events + 1
          if ev.data ~= values[p] or ev.stream ~= "r-" .. (p %% 7) then wrong = wrong + 1 end
        else
          errors[e.code] = (errors[e.code] or 0) + 1
        end
      end
      local ok, e = pcall(function() for ev in s:all() do end end)
      print("events", ok_events, "corruption", errors.corruption or 0, "other", errors.io or 0,
        "wrong", wrong, "all", ok and "ok" or e.code)
      s:close()
    ]], t.dir))
    assert.equal("exit", how, out)
    assert.equal(0, status, out)
    local code = out:match("^open\t(%S+)")
    if code then
      assert.equal("corruption", code, out)
    else
      assert.is_truthy(out:find("all\tcorruption", 1, true), out)
      assert.is_truthy(out:find("corruption\t[1-9]"), out)
      assert.is_truthy(out:find("other\t0", 1, true), out)
      assert.is_truthy(out:find("wrong\t0", 1, true), out)
    end
    local ccode = cli_check(t.dir)
    assert.is_true(ccode ~= 0 and ccode < 128, "check: exit " .. ccode)
  end)
end)
