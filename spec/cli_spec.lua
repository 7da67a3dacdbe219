-- The `eventrocks` command, driven as a user would: spawned processes,
-- exit codes, stdout and stderr checked separately.
local H = require "helper"
local er = require "eventrocks"
local core = require "eventrocks.core"
local json = require "dkjson"

-- ---------------------------------------------------------------------------
-- Running the command

local VARS, BIN, CMD = H.CHILD_VARS, H.BIN, H.CMD
local read_file, write_file, sh = H.read_file, H.write_file, H.sh

-- `eventrocks ARGS` (ARGS already shell-quoted where needed).
-- opts: env ("NAME=VALUE ..."), unset (a variable to remove), cwd, stdin.
local function run(args, opts)
  opts = opts or {}
  local cmd = "env " .. (opts.unset and ("-u " .. opts.unset .. " ") or "") .. VARS
    .. (opts.env and (" " .. opts.env) or "") .. " lua5.4 " .. H.shquote(BIN)
  if opts.cwd then cmd = "cd " .. H.shquote(opts.cwd) .. " && " .. cmd end
  return sh(cmd .. " " .. args, opts.stdin)
end

-- `eventrocks --store DIR ARGS`
local function erun(dir, args, opts)
  return run("--store " .. H.shquote(dir) .. " " .. args, opts)
end

local function lines(s)
  local out = {}
  for l in s:gmatch("([^\n]*)\n") do out[#out + 1] = l end
  return out
end

local function decode_lines(s)
  local out = {}
  for i, l in ipairs(lines(s)) do
    local v, _, err = json.decode(l)
    assert(v ~= nil and not err, "line " .. i .. " is not JSON: " .. l .. " (" .. tostring(err) .. ")")
    out[#out + 1] = v
  end
  return out
end

local function contains(hay, needle, what)
  assert.is_truthy(hay:find(needle, 1, true),
    (what or "output") .. " " .. string.format("%q", hay) .. " does not contain " .. string.format("%q", needle))
end

local function not_contains(hay, needle, what)
  assert.is_falsy(hay:find(needle, 1, true),
    (what or "output") .. " " .. string.format("%q", hay) .. " contains " .. string.format("%q", needle))
end

local function iso_seconds(us)
  return os.date("!%Y-%m-%dT%H:%M:%S", us // 1000000)
end

local ISO = "%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d[%.%d]*Z"

local function sleep(s) os.execute("sleep " .. s) end

local function wait_for(fn, seconds)
  local deadline = os.time() + (seconds or 10)
  while os.time() <= deadline do
    if fn() then return true end
    sleep(0.05)
  end
  return fn()
end

local function all_events(store)
  local out = {}
  for ev in store:all() do
    out[#out + 1] = { id = ev.id, stream = ev.stream, version = ev.version, position = ev.position,
      type = ev.type, time = ev.time, data = ev.data, metadata = ev.metadata }
  end
  return out
end

-- ---------------------------------------------------------------------------

describe("eventrocks command", function()
  local t = {}
  local extra -- more temporary directories to remove
  before_each(function()
    H.setup(t)
    extra = {}
  end)
  after_each(function()
    H.teardown(t)
    for _, d in ipairs(extra) do H.rmrf(d) end
  end)

  local function tmpdir()
    local d = H.mkdtemp()
    extra[#extra + 1] = d
    return d
  end

  local function tmpfile()
    local d = tmpdir()
    return d .. "/file.jsonl"
  end

  -- -------------------------------------------------------------------------
  describe("options", function()
    it("--version prints 'eventrocks X.Y.Z'", function()
      local code, out, err = run("--version")
      assert.equal(0, code)
      assert.equal("", err)
      assert.matches("^eventrocks %d+%.%d+%.%d+\n$", out)
      assert.equal(er._VERSION .. "\n", out)
    end)

    it("--help describes the tool, its commands and the store option", function()
      local code, out, err = run("--help")
      assert.equal(0, code)
      assert.equal("", err)
      contains(out, "Usage")
      for _, c in ipairs({ "streams", "read", "tail", "stats", "export", "import", "check", "repl",
        "--store", "--version", "--help" }) do
        contains(out, c)
      end
    end)

    local sub_options = {
      streams = { "--json", "prefix" },
      read = { "--from", "--count", "--backward", "--json", "stream" },
      tail = { "--from", "--follow", "--interval", "--json" },
      stats = { "--json" },
      export = { "file", "--from" },
      import = { "file" },
      check = { "--help" },
      repl = { "--read-only" },
    }
    for _, name in ipairs({ "streams", "read", "tail", "stats", "export", "import", "check", "repl" }) do
      it("'" .. name .. " --help' exits 0 and lists its options", function()
        local code, out, err = run(name .. " --help")
        assert.equal(0, code)
        assert.equal("", err)
        contains(out, "Usage: eventrocks " .. name)
        for _, o in ipairs(sub_options[name]) do contains(out, o) end
      end)
    end

    it("an unknown option exits 2 with a message on stderr", function()
      local code, out, err = run("--bogus")
      assert.equal(2, code)
      assert.equal("", out)
      contains(err, "--bogus", "stderr")

      code, out, err = erun(t.dir, "read s-1 --nope")
      assert.equal(2, code)
      assert.equal("", out)
      contains(err, "--nope", "stderr")
    end)

    it("a bad option value exits 2 with a message on stderr", function()
      local code, out, err = erun(t.dir, "read s-1 --count many")
      assert.equal(2, code)
      assert.equal("", out)
      contains(err, "count", "stderr")
    end)

    it("no command prints the help", function()
      local code, out, err = run("")
      assert.equal(0, code)
      assert.equal("", err)
      contains(out, "Usage")
      contains(out, "streams")
      contains(out, "import")
    end)
  end)

  -- -------------------------------------------------------------------------
  describe("store selection", function()
    before_each(function()
      assert(t.store:append("here-1", { type = "Here", data = 1 }))
    end)

    it("uses --store DIR", function()
      local code, out, err = erun(t.dir, "streams")
      assert.equal(0, code)
      assert.equal("", err)
      assert.equal("here-1 1\n", out)
    end)

    it("uses EVENTROCKS_STORE without --store", function()
      local code, out, err = run("streams", { env = "EVENTROCKS_STORE=" .. H.shquote(t.dir) })
      assert.equal(0, code)
      assert.equal("", err)
      assert.equal("here-1 1\n", out)
    end)

    it("prefers --store over EVENTROCKS_STORE", function()
      local other = tmpdir()
      local s = assert(er.open(other))
      assert(s:append("other-1", { type = "O" }))
      s:close()
      local code, out = run("--store " .. H.shquote(t.dir) .. " streams",
        { env = "EVENTROCKS_STORE=" .. H.shquote(other) })
      assert.equal(0, code)
      assert.equal("here-1 1\n", out)
    end)

    it("uses ./eventrocks-data otherwise", function()
      local cwd = tmpdir()
      local s = assert(er.open(cwd .. "/eventrocks-data"))
      assert(s:append("local-1", { { type = "L" }, { type = "L" } }))
      s:close()
      local code, out, err = run("streams", { cwd = cwd, unset = "EVENTROCKS_STORE" })
      assert.equal(0, code)
      assert.equal("", err)
      assert.equal("local-1 2\n", out)
    end)

    it("a missing store is an error on stderr with a non-zero exit", function()
      local missing = tmpdir() .. "/nothing-here"
      for _, c in ipairs({ "streams", "read x-1", "tail", "stats", "export", "check" }) do
        local code, out, err = erun(missing, c)
        assert.is_true(code ~= 0, c .. " exited 0")
        assert.equal("", out, c)
        assert.is_true(#err > 0, c .. ": nothing on stderr")
        contains(err, "eventrocks", "stderr")
      end
      -- a read-only command does not create it
      assert.is_false(H.exists(missing .. "/CURRENT"))
      -- no ./eventrocks-data in an empty directory either
      local cwd = tmpdir()
      local code, out, err = run("streams", { cwd = cwd, unset = "EVENTROCKS_STORE" })
      assert.is_true(code ~= 0)
      assert.equal("", out)
      assert.is_true(#err > 0)
    end)
  end)

  -- -------------------------------------------------------------------------
  describe("streams", function()
    before_each(function()
      local s = t.store
      assert(s:append("b-1", H.evs(1)))
      assert(s:append("a-2", H.evs(2)))
      assert(s:append("a-10", H.evs(3)))
      assert(s:append("A-1", H.evs(4)))
      assert(s:append("a-1", H.evs(5)))
    end)

    it("prints 'id version' lines in byte order", function()
      local code, out, err = erun(t.dir, "streams")
      assert.equal(0, code)
      assert.equal("", err)
      assert.equal("A-1 4\na-1 5\na-10 3\na-2 2\nb-1 1\n", out)
    end)

    it("filters by PREFIX", function()
      local code, out = erun(t.dir, "streams a-1")
      assert.equal(0, code)
      assert.equal("a-1 5\na-10 3\n", out)
      code, out = erun(t.dir, "streams zzz")
      assert.equal(0, code)
      assert.equal("", out)
    end)

    it("--json prints one JSON object a line", function()
      local code, out, err = erun(t.dir, "streams --json a-")
      assert.equal(0, code)
      assert.equal("", err)
      assert.same({ { stream = "a-1", version = 5 }, { stream = "a-10", version = 3 },
        { stream = "a-2", version = 2 } }, decode_lines(out))
    end)
  end)

  -- -------------------------------------------------------------------------
  describe("read", function()
    before_each(function()
      local s = t.store
      assert(s:append("other-1", { type = "Noise", data = 0 }))
      for i = 1, 5 do
        assert(s:append("product-1", { type = i == 1 and "Created" or "PriceIncreased",
          data = { delta = i * 10 }, metadata = { by = "u" .. i } }))
      end
    end)

    local function events(stream, opts)
      return H.collect(t.store:read(stream, opts))
    end

    local function check_human(out, evs)
      local ls = lines(out)
      assert.equal(#evs, #ls, out)
      for i, ev in ipairs(evs) do
        local l = ls[i]
        assert.matches("^%s*" .. ev.position .. " ", l)
        contains(l, " " .. ev.stream .. "@" .. ev.version .. " ")
        contains(l, " " .. ev.type .. " ")
        assert.matches(ISO, l)
        contains(l, iso_seconds(ev.time))
        contains(l, "delta = " .. ev.data.delta)
      end
    end

    it("prints the whole stream, one human line an event", function()
      local code, out, err = erun(t.dir, "read product-1")
      assert.equal(0, code)
      assert.equal("", err)
      check_human(out, events("product-1"))
      assert.equal(5, #lines(out))
    end)

    it("honours --from and --count", function()
      local code, out = erun(t.dir, "read product-1 --from 2 --count 2")
      assert.equal(0, code)
      local evs = events("product-1", { from = 2, count = 2 })
      assert.same({ 2, 3 }, H.pluck(evs, "version"))
      check_human(out, evs)
    end)

    it("honours --backward (from the last version, or --from)", function()
      local code, out = erun(t.dir, "read product-1 --backward --count 3")
      assert.equal(0, code)
      local evs = events("product-1", { backward = true, count = 3 })
      assert.same({ 5, 4, 3 }, H.pluck(evs, "version"))
      check_human(out, evs)

      code, out = erun(t.dir, "read product-1 --backward --from 2")
      assert.equal(0, code)
      evs = events("product-1", { backward = true, from = 2 })
      assert.same({ 2, 1 }, H.pluck(evs, "version"))
      check_human(out, evs)
    end)

    it("--json lines carry every field of the event", function()
      local code, out, err = erun(t.dir, "read product-1 --json --from 4")
      assert.equal(0, code)
      assert.equal("", err)
      local got = decode_lines(out)
      local evs = events("product-1", { from = 4 })
      assert.equal(2, #got)
      for i, ev in ipairs(evs) do
        assert.same({ id = ev.id, stream = "product-1", version = ev.version, position = ev.position,
          type = "PriceIncreased", time = ev.time, data = { delta = ev.data.delta },
          metadata = { by = ev.metadata.by } }, got[i])
        assert.equal("integer", math.type(got[i].time))
      end
    end)

    it("prints nothing for an absent stream", function()
      local code, out, err = erun(t.dir, "read nobody-1")
      assert.equal(0, code)
      assert.equal("", out)
      assert.equal("", err)
    end)
  end)

  -- -------------------------------------------------------------------------
  describe("tail", function()
    before_each(function()
      local s = t.store
      assert(s:append("a-1", { type = "A", data = { n1 = 1 } }))
      assert(s:append("b-1", { { type = "B", data = { n1 = 2 } }, { type = "B", data = { n1 = 3 } } }))
      assert(s:append("a-1", { type = "A2", data = { n1 = 4 } }))
    end)

    it("prints the global log in position order", function()
      local code, out, err = erun(t.dir, "tail")
      assert.equal(0, code)
      assert.equal("", err)
      local ls = lines(out)
      assert.equal(4, #ls)
      local want = { "a-1@1 A ", "b-1@1 B ", "b-1@2 B ", "a-1@2 A2 " }
      for i, l in ipairs(ls) do
        assert.matches("^%s*" .. i .. " ", l)
        contains(l, want[i])
        contains(l, "n1 = " .. i)
        assert.matches(ISO, l)
      end
    end)

    it("--from POS starts at that position", function()
      local code, out = erun(t.dir, "tail --from 3")
      assert.equal(0, code)
      local ls = lines(out)
      assert.equal(2, #ls)
      contains(ls[1], "b-1@2")
      contains(ls[2], "a-1@2")
      code, out = erun(t.dir, "tail --from 5")
      assert.equal(0, code)
      assert.equal("", out)
    end)

    it("--json prints JSON lines", function()
      local code, out = erun(t.dir, "tail --json --from 2")
      assert.equal(0, code)
      local got = decode_lines(out)
      local evs = H.collect(t.store:all({ from = 2 }))
      assert.equal(3, #got)
      for i, ev in ipairs(evs) do
        assert.same({ id = ev.id, stream = ev.stream, version = ev.version, position = ev.position,
          type = ev.type, time = ev.time, data = { n1 = ev.data.n1 }, metadata = {} }, got[i])
      end
    end)

    it("--follow prints events appended later by another process", function()
      t.store:close()
      local outf = tmpfile()
      local errf = outf .. ".err"
      local p = assert(io.popen(CMD .. " --store " .. H.shquote(t.dir)
        .. " tail --follow --interval 50 >" .. H.shquote(outf) .. " 2>" .. H.shquote(errf)
        .. " </dev/null & echo $!"))
      local pid = tonumber(p:read("l"))
      p:close()
      assert.is_number(pid)
      finally(function() os.execute("kill " .. pid .. " 2>/dev/null") end)

      assert.is_true(wait_for(function() return #lines(read_file(outf) or "") >= 4 end),
        "the first events did not appear: " .. tostring(read_file(outf)))
      local out = H.run_child(string.format([[
        local s = assert(er.open(%q))
        assert(s:append("late-1", { { type = "Late", data = 5 }, { type = "Late", data = 6 } }))
        s:close()
        print("appended")]], t.dir))
      assert.equal("appended\n", out)
      assert.is_true(wait_for(function() return #lines(read_file(outf) or "") >= 6 end),
        "the new events did not appear: " .. tostring(read_file(outf))
        .. "\nstderr: " .. tostring(read_file(errf))
        .. "\nalive: " .. tostring(os.execute("kill -0 " .. pid .. " 2>/dev/null")))
      sleep(0.2) -- nothing printed twice
      local ls = lines(read_file(outf))
      assert.equal(6, #ls)
      assert.matches("^%s*5 late%-1@1 Late ", ls[5])
      assert.matches("^%s*6 late%-1@2 Late ", ls[6])
      assert.is_true(os.execute("kill -0 " .. pid .. " 2>/dev/null") == true, "tail --follow ended by itself")
      os.execute("kill " .. pid)
      assert.is_true(wait_for(function() return os.execute("kill -0 " .. pid .. " 2>/dev/null") ~= true end, 5))
      assert.equal("", read_file(errf))
    end)

    it("--follow keeps going while writers open and close the store", function()
      t.store:close()
      local outf = tmpfile()
      local errf = outf .. ".err"
      local p = assert(io.popen(CMD .. " --store " .. H.shquote(t.dir)
        .. " tail --follow --interval 10 >" .. H.shquote(outf) .. " 2>" .. H.shquote(errf)
        .. " </dev/null & echo $!"))
      local pid = tonumber(p:read("l"))
      p:close()
      finally(function() os.execute("kill " .. pid .. " 2>/dev/null") end)
      assert.is_true(wait_for(function() return #lines(read_file(outf) or "") >= 4 end))
      local out = H.run_child(string.format([[
        for i = 1, 30 do
          local s = assert(er.open(%q))
          assert(s:append("late-1", { type = "Late", data = i }))
          s:close()
        end
        print("appended")]], t.dir))
      assert.equal("appended\n", out)
      local ok = wait_for(function() return #lines(read_file(outf) or "") >= 34 end, 5)
      assert.is_true(ok, #lines(read_file(outf) or "") .. " lines; stderr: " .. tostring(read_file(errf))
        .. "; alive: " .. tostring(os.execute("kill -0 " .. pid .. " 2>/dev/null")))
      assert.is_true(os.execute("kill -0 " .. pid .. " 2>/dev/null") == true, "tail --follow ended")
      local ls = lines(read_file(outf))
      assert.equal(34, #ls)
      for i = 1, 30 do assert.matches("^%s*" .. (i + 4) .. " late%-1@" .. i .. " Late ", ls[i + 4]) end
    end)

    it("--follow with --category and --type shows only those, each within a second of its commit", function()
      t.store:close()
      local outf = tmpfile()
      local p = assert(io.popen(CMD .. " --store " .. H.shquote(t.dir)
        .. " tail --follow --json --category late --type Wanted >" .. H.shquote(outf) .. " 2>&1 </dev/null & echo $!"))
      local pid = tonumber(p:read("l"))
      p:close()
      finally(function() os.execute("kill " .. pid .. " 2>/dev/null") end)
      sleep(0.3)
      local out = H.run_child(string.format([[
        local s = assert(er.open(%q))
        for i = 1, 3 do
          assert(s:append("late-1", { { type = "Wanted", data = i }, { type = "Other" } }))
          assert(s:append("early-1", { type = "Wanted" }))
        end
        print("appended")]], t.dir))
      assert.equal("appended\n", out)
      local t0 = os.time()
      assert.is_true(wait_for(function() return #lines(read_file(outf) or "") >= 3 end, 5), tostring(read_file(outf)))
      assert.is_true(os.time() - t0 <= 2)
      local got = decode_lines(read_file(outf))
      assert.equal(3, #got)
      for i, ev in ipairs(got) do
        assert.same({ "late-1", "Wanted", i }, { ev.stream, ev.type, ev.data })
      end
    end)
  end)

  -- -------------------------------------------------------------------------
  describe("stats", function()
    before_each(function()
      local s = t.store
      assert(s:append("product-1", { { type = "Created" }, { type = "PriceIncreased" } }))
      assert(s:append("product-2", { type = "Created" }))
      assert(s:append("order-1", { { type = "Placed" }, { type = "Shipped" } }))
      assert(s:append("product-1", { type = "PriceIncreased" }))
    end)

    it("prints events, streams, last position, categories, types and size", function()
      local code, out, err = erun(t.dir, "stats")
      assert.equal(0, code)
      assert.equal("", err)
      local function has(pat) assert.is_truthy(out:match(pat), "no " .. pat .. " in\n" .. out) end
      has("\nevents%s+6\n")
      has("\nstreams%s+3\n")
      has("\nlast position%s+6\n")
      has("size on disk%s+%d+")
      has("\n%s+product%s+4\n")
      has("\n%s+order%s+2\n")
      has("\n%s+Created%s+2\n")
      has("\n%s+PriceIncreased%s+2\n")
      has("\n%s+Placed%s+1\n")
      has("\n%s+Shipped%s+1\n")
    end)

    it("--json prints one JSON object", function()
      local code, out, err = erun(t.dir, "stats --json")
      assert.equal(0, code)
      assert.equal("", err)
      local got = decode_lines(out)
      assert.equal(1, #got)
      got = got[1]
      assert.equal(6, got.events)
      assert.equal(3, got.streams)
      assert.equal(6, got.last_position)
      assert.same({ product = 4, order = 2 }, got.categories)
      assert.same({ Created = 2, PriceIncreased = 2, Placed = 1, Shipped = 1 }, got.types)
      assert.equal("integer", math.type(got.size_on_disk))
      assert.is_true(got.size_on_disk > 0)
    end)

    it("draws the events per hour up to the newest event's hour, and --json gives the rows", function()
      local s = t.store
      local txn = assert(s:_txn())
      local hour = 3600 * 1000000
      local newest = (s:event(6).time // hour + 1) * hour + 60 * 1000000 -- in the next hour
      assert(txn:append("late-1", { H.ev("A"), H.ev("A"), H.ev("A") }, { time = newest }))
      assert(txn:commit())
      local code, out, err = erun(t.dir, "stats --hours 3")
      assert.equal(0, code, err)
      local rows = {}
      for day, h, n, bar in out:gmatch("\n  (%d%d%d%d%-%d%d%-%d%d) (%d%d):00 +(%d+) ?(#*)") do
        rows[#rows + 1] = { h = h, n = tonumber(n), bar = #bar }
        assert.is_truthy(day)
      end
      assert.equal(3, #rows, out)
      assert.same({ 0, 6, 3 }, { rows[1].n, rows[2].n, rows[3].n })
      assert.same({ 0, 40, 20 }, { rows[1].bar, rows[2].bar, rows[3].bar }) -- scaled to the busiest hour
      assert.equal(os.date("!%H", newest // 1000000), rows[3].h)
      code, out = erun(t.dir, "stats --json --hours 2")
      assert.equal(0, code)
      local got = decode_lines(out)[1]
      assert.same({ 6, 3 }, { got.hours[1].events, got.hours[2].events })
      assert.equal(os.date("!%Y-%m-%d %H:00", newest // 1000000), got.hours[2].hour)
      assert.equal(0, got.earlier)
      code, out = erun(t.dir, "stats --json --hours 1")
      assert.equal(6, decode_lines(out)[1].earlier)
    end)

    it("works on an empty store", function()
      local empty = tmpdir()
      local s = assert(er.open(empty))
      s:close()
      local code, out = erun(empty, "stats --json")
      assert.equal(0, code)
      local got = decode_lines(out)[1]
      assert.equal(0, got.events)
      assert.equal(0, got.streams)
      assert.equal(0, got.last_position)
    end)
  end)

  -- -------------------------------------------------------------------------
  describe("colour", function()
    before_each(function()
      assert(t.store:append("c-1", { type = "C", data = { x = 1 } }))
    end)

    it("has no escape codes when stdout is not a terminal", function()
      for _, c in ipairs({ "streams", "read c-1", "tail", "stats", "check", "export" }) do
        local code, out = erun(t.dir, c)
        assert.equal(0, code, c)
        assert.is_true(#out > 0, c)
        not_contains(out, "\27", c)
      end
    end)

    it("colours on a terminal, never with NO_COLOR", function()
      local function on_tty(env)
        local inner = CMD .. " --store " .. H.shquote(t.dir) .. " tail"
        local code, out = sh("env " .. env .. " script -qec " .. H.shquote(inner) .. " /dev/null")
        assert.equal(0, code)
        contains(out, "c-1@1")
        return out
      end
      contains(on_tty("-u NO_COLOR TERM=xterm"), "\27[")
      not_contains(on_tty("TERM=xterm NO_COLOR=1"), "\27")
    end)
  end)

  -- -------------------------------------------------------------------------
  describe("export and import", function()
    local bytes = {}
    for i = 0, 255 do bytes[#bytes + 1] = string.char(i) end
    bytes = table.concat(bytes)

    local function fill(s)
      assert(s:append("values-1", {
        { type = "Numbers", data = { int = 1, float = 1.0, zero = 0, fzero = 0.0, negzero = -0.0,
          max = math.maxinteger, min = math.mininteger, third = 0.1 + 0.2, tiny = 5e-324,
          huge = 1.7976931348623157e308, big = 2.0 ^ 63, nan = 0 / 0, inf = math.huge, ninf = -math.huge,
          neg = -12, negf = -12.5, e = 1e100 } },
        { type = "Strings", data = { bytes = bytes, utf = "h\195\169llo \226\156\147", empty = "",
          ctrl = "a\0b\n\t\"\\", invalid = "\255\254", tag = "$float" } },
      }))
      assert(s:append("values-2", { type = "Keys", data = {
        [1] = "one", [2] = "two", [3.5] = "three and a half", [true] = "yes", [false] = "no",
        [-1] = "minus", [0] = "zero", [2 ^ 53] = "float key", ["$float"] = "nan", ["$base64"] = 1,
        ["$map"] = {}, ["$x"] = { ["$y"] = 1 }, plain = "p",
      }, metadata = { ["$meta"] = true, [7] = 7.0, nested = { { {} } } } }))
      assert(s:append("values-3", {
        { type = "Tables", data = { empty = {}, arr = { 1, 2.0, "x", false, { 0 / 0 } },
          holes = { [1] = 1, [3] = 3 }, nested = { a = { b = { c = { d = { e = { -0.0 } } } } } },
          mixed = { 1, 2, x = "y" }, bin_key = { ["\0\255"] = bytes:sub(1, 10) } },
          metadata = { user = "u1", corr = er.uuid() } },
        { type = "Scalar", data = 42 },
        { type = "Scalar", data = 0 / 0 },
        { type = "Scalar", data = -0.0 },
        { type = "Scalar", data = bytes },
        { type = "Scalar", data = "" },
        { type = "Nothing" },
        { type = "Array", data = { "a", "b" } },
        { type = "Empty", data = {} },
      }))
      assert(s:append("values-1", { type = "Later", data = { again = true } }))
      assert(s:append("values-2", { { type = "Later" }, { type = "Later", data = { 1.5 } } }))
      return s:last_position()
    end

    it("an export imported into an empty store gives back every event equal", function()
      local n = fill(t.store)
      local file = tmpfile()
      local code, out, err = erun(t.dir, "export " .. H.shquote(file))
      assert.equal(0, code, err)
      assert.equal("", out)
      assert.equal(n, #lines(read_file(file)))

      local target = tmpdir() .. "/imported"
      code, out, err = erun(target, "import " .. H.shquote(file))
      assert.equal(0, code, err)
      assert.equal("", out)
      contains(err, "imported " .. n .. " events", "stderr")

      local want = all_events(t.store)
      local s2 = assert(H.open(t, target, { read_only = true }))
      local got = all_events(s2)
      assert.equal(#want, #got)
      for i = 1, #want do H.assert_same(want[i], got[i], "event " .. i) end
      assert.equal(t.store:last_position(), s2:last_position())
      for _, st in ipairs({ "values-1", "values-2", "values-3" }) do
        assert.equal(t.store:version(st), s2:version(st))
      end
    end)

    it("keeps a data table with a numeric field named 'n'", function()
      assert(t.store:append("n-1", { { type = "N", data = { n = 1 } }, { type = "N", data = { n = 2.5 } },
        { type = "N", data = { n = 3, m = 4 } } }))
      local file = tmpfile()
      assert.equal(0, (erun(t.dir, "export " .. H.shquote(file))))
      local target = tmpdir() .. "/imported"
      local code, _, err = erun(target, "import " .. H.shquote(file))
      assert.equal(0, code, err)
      local s2 = assert(H.open(t, target, { read_only = true }))
      local want, got = all_events(t.store), all_events(s2)
      assert.equal(3, #got)
      for i = 1, #want do H.assert_same(want[i], got[i], "event " .. i) end
    end)

    it("keeps stream ids and types that are not UTF-8 or need escaping", function()
      assert(t.store:append("bin-\255\254", { type = "T\128\1x", data = 1 }))
      assert(t.store:append("q-\"\\\n\t/", { type = "quote\"d", data = 2 }))
      local file = tmpfile()
      local code, _, err = erun(t.dir, "export " .. H.shquote(file))
      assert.equal(0, code, err)
      local target = tmpdir() .. "/imported"
      code, _, err = erun(target, "import " .. H.shquote(file))
      assert.equal(0, code, err)
      local s2 = assert(H.open(t, target, { read_only = true }))
      local want, got = all_events(t.store), all_events(s2)
      assert.equal(#want, #got)
      for i = 1, #want do H.assert_same(want[i], got[i], "event " .. i) end
    end)

    it("a second import writes nothing and says so", function()
      local n = fill(t.store)
      local file = tmpfile()
      assert.equal(0, (erun(t.dir, "export " .. H.shquote(file))))
      local target = tmpdir() .. "/imported"
      local code, _, err = erun(target, "import " .. H.shquote(file))
      assert.equal(0, code, err)
      local s2 = assert(er.open(target, { read_only = true }))
      local before = all_events(s2)
      s2:close()
      assert.equal(n, #before)

      local out
      code, out, err = erun(target, "import " .. H.shquote(file))
      assert.equal(0, code, err)
      assert.equal("", out)
      contains(err, "imported 0 events", "stderr")
      contains(err, n .. " events were already there", "stderr")
      s2 = assert(H.open(t, target, { read_only = true }))
      assert.equal(n, s2:last_position())
      local after = all_events(s2)
      for i = 1, n do H.assert_same(before[i], after[i], "event " .. i) end
    end)

    it("import into the source store itself writes nothing", function()
      local n = fill(t.store)
      local file = tmpfile()
      assert.equal(0, (erun(t.dir, "export " .. H.shquote(file))))
      t.store:close()
      local code, _, err = erun(t.dir, "import " .. H.shquote(file))
      assert.equal(0, code, err)
      contains(err, "imported 0 events", "stderr")
      local s = assert(H.open(t, t.dir, { read_only = true }))
      assert.equal(n, s:last_position())
    end)

    it("an append of more than 1000 events round-trips and re-imports as nothing", function()
      local evs = {}
      for i = 1, 1500 do evs[i] = { type = "E", data = i } end
      assert(t.store:append("big-1", evs))
      local file = tmpfile()
      assert.equal(0, (erun(t.dir, "export " .. H.shquote(file))))
      local target = tmpdir() .. "/imported"
      local code, _, err = erun(target, "import " .. H.shquote(file))
      assert.equal(0, code, err)
      code, _, err = erun(target, "import " .. H.shquote(file))
      assert.equal(0, code, err)
      contains(err, "imported 0 events", "stderr")
      local s2 = assert(H.open(t, target, { read_only = true }))
      assert.equal(1500, s2:last_position())
      -- and into the store it came from
      t.store:close()
      code, _, err = erun(t.dir, "import " .. H.shquote(file))
      assert.equal(0, code, err)
      contains(err, "imported 0 events", "stderr")
    end)

    it("export to a FILE and to stdout give the same text", function()
      fill(t.store)
      local file = tmpfile()
      local code, out, err = erun(t.dir, "export " .. H.shquote(file))
      assert.equal(0, code, err)
      assert.equal("", out)
      local code2, out2, err2 = erun(t.dir, "export")
      assert.equal(0, code2, err2)
      assert.equal("", err2)
      assert.is_true(#out2 > 0)
      assert.equal(read_file(file), out2)
      -- every line is one JSON object
      for _, l in ipairs(lines(out2)) do assert.is_table(json.decode(l)) end
    end)

    it("export --from POS starts at that position", function()
      fill(t.store)
      local code, out = erun(t.dir, "export --from 3")
      assert.equal(0, code)
      local got = decode_lines(out)
      assert.equal(t.store:last_position() - 2, #got)
      assert.equal(3, got[1].position)
    end)

    it("an empty store exports nothing", function()
      local code, out = erun(t.dir, "export")
      assert.equal(0, code)
      assert.equal("", out)
    end)

    it("import of a missing file fails on stderr", function()
      t.store:close()
      local code, out, err = erun(t.dir, "import " .. H.shquote(t.dir .. "/no-such-file"))
      assert.is_true(code ~= 0)
      assert.equal("", out)
      contains(err, "no-such-file", "stderr")
    end)

    -- A file of appends: A = a-1 (line 1), B = b-1 x2 (lines 2-3, one append),
    -- C = c-1 (line 4), then `bad` as line 5.
    local function malformed_file(bad)
      local s = t.store
      assert(s:append("a-1", { type = "A", data = 1 }))
      assert(s:append("b-1", { { type = "B", data = 1 }, { type = "B", data = 2 } }))
      assert(s:append("c-1", { type = "C", data = 1 }))
      local code, out = erun(t.dir, "export")
      assert.equal(0, code)
      assert.equal(4, #lines(out))
      local file = tmpfile()
      write_file(file, out .. bad .. "\n"
        .. '{"stream":"e-1","version":1,"type":"E","time":1,"id":"' .. er.uuid() .. '","data":1}\n')
      return file
    end

    local function good_line(fields)
      local ev = { stream = "d-1", version = 1, type = "D", time = 12345, id = er.uuid(), data = 1, metadata = {} }
      for k, v in pairs(fields) do ev[k] = v end
      for k, v in pairs(fields) do if v == json.null then ev[k] = nil end end
      return json.encode(ev)
    end

    local bad_lines = {
      ["bad JSON"] = '{"stream":"d-1","version":1,"type":',
      ["a missing type"] = good_line({ type = json.null }),
      ["a non-integer version"] = good_line({ version = 1.5 }),
      ["a string version"] = good_line({ version = "1" }),
      ["a bad $float tag"] = good_line({ data = { x = { ["$float"] = "abc" } } }),
      ["a $float that is not a string"] = good_line({ data = { ["$float"] = 1 } }),
      ["a bad $base64 tag"] = good_line({ data = { ["$base64"] = "!!!" } }),
      -- every field is checked before anything of the line's append is
      -- written, and the error names the line, not a Lua source line
      ["an empty type"] = good_line({ type = "" }),
      ["a type of 1025 bytes"] = good_line({ type = ("T"):rep(1025) }),
      ["a type with a NUL"] = good_line({ type = "D\0x" }),
      ["an empty stream"] = good_line({ stream = "" }),
      ["a stream of 1025 bytes"] = good_line({ stream = ("d"):rep(1025) }),
      ["a stream with a NUL"] = good_line({ stream = "d\0-1" }),
      ["an id that is not a UUID"] = good_line({ id = "not-a-uuid" }),
      ["a negative time"] = good_line({ time = -5 }),
      ["a time of 0"] = good_line({ time = 0 }),
      ["a float time"] = good_line({ time = 1.5 }),
      ["a string position"] = good_line({ position = "5" }),
      ["a position of 0"] = good_line({ position = 0 }),
      ["an unknown field (a typo would lose data)"] = good_line({ metdata = { who = "me" } }),
      ["metadata that is a number"] = good_line({ metadata = 5 }),
      ["data nested 201 deep"] = good_line({ data = (function()
        local v = 1
        for _ = 1, 201 do v = { v } end
        return v
      end)() }),
      ["JSON nested 100000 deep"] = (good_line({ data = "DEEP" }):gsub('"DEEP"',
        ("["):rep(100000) .. ("]"):rep(100000))),
      ["a JSON array"] = "[1, 2, 3]",
      ["a JSON string"] = '"event"',
    }
    for _, what in ipairs({ "bad JSON", "a missing type", "a non-integer version", "a string version",
      "a bad $float tag", "a $float that is not a string", "a bad $base64 tag",
      "an empty type", "a type of 1025 bytes", "a type with a NUL", "an empty stream",
      "a stream of 1025 bytes", "a stream with a NUL", "an id that is not a UUID", "a negative time",
      "a time of 0", "a float time", "a string position", "a position of 0",
      "an unknown field (a typo would lose data)", "metadata that is a number", "data nested 201 deep",
      "JSON nested 100000 deep", "a JSON array", "a JSON string" }) do
      it("a line with " .. what .. " stops the import with its line number", function()
        local file = malformed_file(bad_lines[what])
        local target = tmpdir() .. "/imported"
        local code, out, err = erun(target, "import " .. H.shquote(file))
        assert.is_true(code ~= 0, "exit 0")
        assert.equal("", out)
        contains(err, "line 5", "stderr")
        not_contains(err, ".lua:", "stderr")
        not_contains(err, "bad argument", "stderr")
        local s2 = assert(H.open(t, target, { read_only = true }))
        -- the appends before are kept
        assert.equal(1, s2:version("a-1"))
        assert.equal(2, s2:version("b-1"))
        -- nothing of the bad line nor after it
        assert.equal(0, s2:version("d-1"))
        assert.equal(0, s2:version("e-1"))
        assert.is_true(s2:last_position() <= 4)
      end)
    end

    it("a malformed line keeps the append right before it", function()
      local file = malformed_file(bad_lines["a missing type"])
      local target = tmpdir() .. "/imported"
      local code, _, err = erun(target, "import " .. H.shquote(file))
      assert.is_true(code ~= 0)
      contains(err, "line 5", "stderr")
      local s2 = assert(H.open(t, target, { read_only = true }))
      assert.equal(1, s2:version("a-1"))
      assert.equal(2, s2:version("b-1"))
      assert.equal(1, s2:version("c-1")) -- a complete earlier append
      assert.equal(4, s2:last_position())
      assert.equal(0, s2:version("d-1"))
    end)

    it("a malformed line inside an append writes nothing of that append", function()
      local s = t.store
      assert(s:append("a-1", { type = "A", data = 1 }))
      assert(s:append("b-1", { { type = "B", data = 1 }, { type = "B", data = 2 } }))
      local code, out = erun(t.dir, "export")
      assert.equal(0, code)
      local ls = decode_lines(out)
      -- a third line of b-1's append (same stream and time, next version) without a type
      local bad = json.encode({ stream = "b-1", version = 3, time = ls[3].time, id = er.uuid(), data = 3 })
      local file = tmpfile()
      write_file(file, out .. bad .. "\n")
      local target = tmpdir() .. "/imported"
      local code2, _, err = erun(target, "import " .. H.shquote(file))
      assert.is_true(code2 ~= 0)
      contains(err, "line 4", "stderr")
      local s2 = assert(H.open(t, target, { read_only = true }))
      assert.equal(1, s2:version("a-1"))
      assert.equal(0, s2:version("b-1"))
      assert.equal(1, s2:last_position())
    end)

    it("a value the store refuses names the line of its event, blank lines counted", function()
      local s = t.store
      assert(s:append("a-1", { type = "A", data = 1 }))
      assert(s:append("b-1", { { type = "B", data = 1 }, { type = "B", data = 2 } }))
      local code, out = erun(t.dir, "export")
      assert.equal(0, code)
      local ls = lines(out)
      local deep = 1
      for _ = 1, 201 do deep = { deep } end
      local ev = json.decode(ls[3])
      ev.data = deep
      -- line 1: a-1, line 2: blank, line 3: b-1@1, line 4: b-1@2 (too deep)
      local file = tmpfile()
      write_file(file, ls[1] .. "\n\n" .. ls[2] .. "\n" .. json.encode(ev) .. "\n")
      local target = tmpdir() .. "/imported"
      local code2, _, err = erun(target, "import " .. H.shquote(file))
      assert.is_true(code2 ~= 0)
      contains(err, "line 4: ", "stderr")
      contains(err, "nesting deeper than 200", "stderr")
      local s2 = assert(H.open(t, target, { read_only = true }))
      assert.equal(1, s2:last_position())
      assert.equal(0, s2:version("b-1"))
    end)

    it("a conflicting line stops the import with its line number", function()
      assert(t.store:append("a-1", { type = "A", data = 1 }))
      local code, out = erun(t.dir, "export")
      assert.equal(0, code)
      local file = tmpfile()
      -- version 3 of a-1 cannot follow version 1
      write_file(file, out .. good_line({ stream = "a-1", version = 3 }) .. "\n")
      local target = tmpdir() .. "/imported"
      local code2, _, err = erun(target, "import " .. H.shquote(file))
      assert.is_true(code2 ~= 0)
      contains(err, "line 2", "stderr")
      local s2 = assert(H.open(t, target, { read_only = true }))
      assert.equal(1, s2:last_position())
    end)
  end)

  -- -------------------------------------------------------------------------
  describe("projections and dead-letters", function()
    it("list each projection with its position, lag and failures, and a projection's dead letters", function()
      local s = t.store
      for i = 1, 5 do assert(s:append("a-" .. i % 2, { type = "N", data = { n = i } })) end
      local p = s:projection("counts", { on_error = "park", handlers = { N = function(_, ev)
        if ev.data.n == 2 then error("boom\27[31m", 0) end -- (no position: the message is exact)
      end } })
      assert(p:run({ batch = 3 }))
      assert(s:append("b-1", { type = "N", data = { n = 6 } }))
      assert(s:projection("idle", { handlers = { N = function() end } }):run({ batch = 1 }))
      local code, out, err = erun(t.dir, "projections")
      assert.equal(0, code, err)
      assert.equal("counts (log) position 5, lag 1, 2 dead letters, 0 skipped\n"
        .. "  last error: projection 'counts': handler for 'N' failed at position 2 (stream a-0): "
        .. "boom\\x1b[31m\n"
        .. "idle (log) position 6, lag 0, 0 dead letters, 0 skipped\n", out)
      code, out = erun(t.dir, "projections --json")
      assert.equal(0, code)
      local rows = decode_lines(out)
      assert.equal("counts", rows[1].name)
      assert.equal(2, rows[1].dead_letters)
      assert.equal(1, rows[1].lag)
      code, out = erun(t.dir, "dead-letters counts")
      assert.equal(0, code)
      local l = lines(out)
      assert.equal(2, #l)
      assert.truthy(l[1]:find("^#2 a%-0@1 N, failed %d%d%d%d%-"), l[1])
      assert.truthy(l[2]:find("parked behind position 2", 1, true), l[2])
      code, out = erun(t.dir, "dead-letters idle")
      assert.equal(0, code)
      assert.equal("", out)
    end)
  end)

  -- -------------------------------------------------------------------------
  describe("delete, truncate, compact", function()
    it("delete (soft, --expected, --hard), truncate and compact change the store as the API would", function()
      assert(t.store:append("a-1", H.evs(4)))
      assert(t.store:append("b-1", H.evs(2)))
      assert(t.store:append("c-1", H.evs(2)))
      t.store:close()
      local code, out, err = erun(t.dir, "delete b-1 --expected 1")
      assert.equal(1, code)
      contains(err, "wrong expected version")
      code, out, err = erun(t.dir, "delete b-1 --expected 2")
      assert.equal(0, code, err)
      contains(out, "b-1 deleted")
      code, out, err = erun(t.dir, "delete c-1 --hard")
      assert.equal(0, code, err)
      contains(out, "deleted for good")
      code, out, err = erun(t.dir, "truncate a-1 3")
      assert.equal(0, code, err)
      contains(out, "before version 3 removed")
      code, out, err = erun(t.dir, "truncate a-1 9")
      assert.equal(1, code)
      contains(err, "at version 4")
      not_contains(err, ".lua:")
      code, out, err = erun(t.dir, "truncate a-1 0")
      assert.equal(2, code)
      code, out, err = erun(t.dir, "delete nobody-1")
      assert.equal(1, code)
      contains(err, "no events")
      code, out, err = erun(t.dir, "streams")
      assert.equal(0, code, err)
      assert.equal("a-1 4\n", out)
      code, out, err = erun(t.dir, "compact")
      assert.equal(0, code, err)
      contains(out, "compacted: 4 removed events")
      code, out, err = erun(t.dir, "tail")
      assert.equal(0, code, err)
      assert.equal(4, #lines(out)) -- a-1@3, a-1@4 and b-1's two (a soft delete keeps them in the log)
      code, out, err = erun(t.dir, "check")
      assert.equal(0, code, err .. out)
    end)

    it("need the writer's handle: beside a writer in another process they say so and change nothing", function()
      assert(t.store:append("a-1", H.evs(3)))
      for _, cmd in ipairs({ "delete a-1", "truncate a-1 2", "compact" }) do
        local code, out, err = erun(t.dir, cmd)
        assert.equal(1, code, cmd)
        assert.equal("", out)
        contains(err, "open for writing in another process")
      end
      assert.equal(3, #H.collect(t.store:read("a-1")))
    end)
  end)

  -- -------------------------------------------------------------------------
  describe("backup", function()
    it("copies a store nobody has open, and the copy passes check", function()
      assert(t.store:append("a-1", H.evs(3)))
      t.store:close()
      local dest = tmpdir() .. "/copy"
      local code, out, err = erun(t.dir, "backup " .. H.shquote(dest))
      assert.equal(0, code, err)
      contains(out, "events up to position 3")
      code, out, err = erun(dest, "check")
      assert.equal(0, code, err)
      contains(out, "checked 3 events")
    end)

    it("beside a writer in another process, says why it needs the writer's handle and copies nothing", function()
      assert(t.store:append("a-1", H.evs(3))) -- this process holds the writer
      local dest = tmpdir() .. "/copy"
      local code, out, err = erun(t.dir, "backup " .. H.shquote(dest))
      assert.equal(1, code)
      assert.equal("", out)
      contains(err, "open for writing in another process")
      contains(err, "store:backup(dir)")
      assert.is_false(H.exists(dest))
    end)

    it("refuses a directory that exists and a missing store", function()
      t.store:close()
      local code, _, err = erun(t.dir, "backup " .. H.shquote(tmpdir()))
      assert.equal(1, code)
      contains(err, "exists already")
      code, _, err = erun(tmpdir() .. "/none", "backup " .. H.shquote(tmpdir() .. "/x"))
      assert.equal(1, code)
      contains(err, "no store at")
    end)
  end)

  -- -------------------------------------------------------------------------
  describe("check", function()
    before_each(function()
      local s = t.store
      assert(s:append("a-1", H.evs(2)))
      assert(s:append("b-1", H.evs(3)))
      assert(s:append("s-1", H.evs(1)))
      local txn = assert(s:_txn())
      txn:put("checkpoints", "good", 6)
      txn:put("snapshots", "b-1", { version = 3, schema = 1, state = {} })
      assert(txn:commit())
      txn:close()
    end)

    it("passes on a healthy store and says what it checked", function()
      local code, out, err = erun(t.dir, "check")
      assert.equal(0, code, out)
      assert.equal("", err)
      contains(out, "6 events")
      contains(out, "3 streams")
      contains(out, "1 snapshots")
      contains(out, "1 checkpoints")
      contains(out, "no problems")
      not_contains(out, "problem:")
    end)

    it("passes on an empty store", function()
      local empty = tmpdir()
      local s = assert(er.open(empty))
      s:close()
      local code, out = erun(empty, "check")
      assert.equal(0, code, out)
      contains(out, "0 events")
    end)

    local function broken(what)
      local code, out, err = erun(t.dir, "check")
      assert.equal(1, code, what .. ": " .. out .. err)
      not_contains(out, "no problems")
      contains(out, "problem")
      return out
    end

    it("reports a missing stream index entry", function()
      assert(t.store:_debug_delete("streams", "b-1\0" .. string.pack(">I8", 2)))
      local out = broken("index")
      contains(out, "b-1@2")
    end)

    it("reports a missing head", function()
      assert(t.store:_debug_delete("heads", "b-1"))
      local out = broken("head")
      contains(out, "heads")
      contains(out, "b-1")
    end)

    it("reports a checkpoint ahead of the log", function()
      local txn = assert(t.store:_txn())
      txn:put("checkpoints", "p", 1000000) -- an integer, as run writes it
      assert(txn:commit())
      txn:close()
      local out = broken("checkpoint")
      contains(out, "checkpoints")
      contains(out, "p is at position 1000000")
    end)

    it("reports a checkpoint written with debug_put", function()
      local txn = assert(t.store:_txn())
      txn:put("checkpoints", "tmp", 1000000)
      assert(txn:commit())
      txn:close()
      local raw = t.store:_get("checkpoints", "tmp")
      assert.equal(1000000, raw)
      -- the same bytes again under another name, through debug_put
      local bytes = "\206" .. string.pack(">I4", 1000000) -- MessagePack uint32
      assert(t.store:_debug_put("checkpoints", "q", bytes))
      local out = broken("checkpoint via debug_put")
      contains(out, "q is at position 1000000")
    end)

    it("reports a checkpoint that is not an integer position as damaged", function()
      local txn = assert(t.store:_txn())
      txn:put("checkpoints", "f", 2.0)
      txn:put("checkpoints", "s", "x")
      assert(txn:commit())
      txn:close()
      local out = broken("checkpoint of the wrong type")
      contains(out, "checkpoint of projection f is damaged")
      contains(out, "checkpoint of projection s is damaged")
    end)

    it("reports a snapshot ahead of its stream", function()
      local txn = assert(t.store:_txn())
      txn:put("snapshots", "s-1", { version = 99, schema = 1, state = {} })
      assert(txn:commit())
      txn:close()
      local out = broken("snapshot")
      contains(out, "s-1")
      contains(out, "99")
    end)

    it("counts several problems", function()
      assert(t.store:_debug_delete("heads", "a-1"))
      assert(t.store:_debug_delete("streams", "b-1\0" .. string.pack(">I8", 1)))
      local out = broken("several")
      contains(out, "a-1")
      contains(out, "b-1@1")
      assert.is_truthy(out:match("(%d+) problems found"), out)
      assert.is_true(tonumber(out:match("(%d+) problems found")) >= 2)
    end)
  end)

  -- -------------------------------------------------------------------------
  describe("repl", function()
    before_each(function()
      assert(t.store:append("a-1", { type = "A", data = { x = 1 }, metadata = { who = "me" } }))
      assert(t.store:append("b-1", { { type = "B", data = 1 }, { type = "B", data = 2 } }))
      t.store:close()
    end)

    local function repl(input)
      return erun(t.dir, "repl", { stdin = input })
    end

    it("prints the value of an expression", function()
      local code, out, err = repl("store:last_position()\n=1+1\n")
      assert.equal(0, code)
      assert.equal("", err)
      assert.equal("3\n2\n", out)
    end)

    it("show() prints an event with its id, data and metadata", function()
      local s = assert(er.open(t.dir, { read_only = true }))
      local ev = s:event(1)
      s:close()
      local code, out, err = repl("show(store:event(1))\n")
      assert.equal(0, code)
      assert.equal("", err)
      contains(out, "a-1@1")
      contains(out, " A ")
      contains(out, ev.id)
      assert.matches("data%s+{x = 1}", out)
      assert.matches("metadata%s+{who = \"me\"}", out)
    end)

    it("show() prints an error table from a failed append", function()
      local code, out, err = repl('show(select(2, store:append("b-1", {type = "X"}, {expected = 7})))\n')
      assert.equal(0, code)
      assert.equal("", err)
      contains(out, "wrong_expected_version")
      contains(out, "expected = 7")
      contains(out, "actual = 2")
      local s = assert(H.open(t, t.dir, { read_only = true }))
      assert.equal(2, s:version("b-1"))
    end)

    it("show() prints nested tables over several lines", function()
      local code, out, err = repl('show({alpha = {beta = {gamma = {1, 2, 3, "a long string to make it wrap over the line"}}, '
        .. 'delta = true}, [3.5] = "x", [true] = 1.0})\n')
      assert.equal(0, code)
      assert.equal("", err)
      assert.equal(table.concat({
        "{",
        "  [true] = 1.0,",
        "  [3.5] = \"x\",",
        "  alpha = {",
        "    beta = {gamma = {1, 2, 3, \"a long string to make it wrap over the line\"}},",
        "    delta = true,",
        "  },",
        "}",
        "" }, "\n"), out)
    end)

    it("history(repo, id) prints the state after each event", function()
      local code, out, err = repl(table.concat({
        'Counter = er.aggregate("counter", {init = function() return {total = 0} end, '
          .. 'apply = {Added = function(s, d) s.total = s.total + d.by end}}); repo = store:repository(Counter)',
        'c = repo:load("c1"); c:raise("Added", {by = 2}); c:raise("Added", {by = 3}); assert(repo:save(c))',
        'rows = history(repo, "c1")',
        'print(#rows, rows[2].state.total)',
        "" }, "\n"))
      assert.equal(0, code)
      assert.equal("", err)
      local ls = lines(out)
      assert.is_true(#ls >= 4, out)
      contains(ls[1], "version")
      contains(ls[1], "state")
      assert.matches("^1%s+Added%s+" .. ISO .. "%s+{total = 2}$", ls[2])
      assert.matches("^2%s+Added%s+" .. ISO .. "%s+{total = 5}$", ls[3])
      assert.equal("2\t5", ls[4])
      local s = assert(H.open(t, t.dir, { read_only = true }))
      assert.equal(2, s:version("counter-c1"))
    end)

    it("history() of an aggregate defined in the same line", function()
      local code, out, err = repl('A = er.aggregate("acc", {init = function() return {n = 0} end, apply = {Dep = function(s, d) s.n = s.n + d end}}); '
        .. 'r = store:repository(A); x = r:load("1"); x:raise("Dep", 7); r:save(x); history(r, "1")\n')
      assert.equal(0, code)
      assert.equal("", err)
      assert.matches("\n1%s+Dep%s+" .. ISO .. "%s+{n = 7}\n", out)
    end)

    it("help() prints the guide", function()
      local code, out, err = repl("help()\n")
      assert.equal(0, code)
      assert.equal("", err)
      contains(out, "show(")
      contains(out, "history(repo, id)")
      contains(out, "store:append")
      contains(out, "help()")
      contains(out, "store:subscribe")
      contains(out, "The store: 3 events in 2 streams, last position 3, ")
    end)

    it("a syntax error goes to stderr and the REPL continues (exit 1 at the end: input is piped)", function()
      local code, out, err = repl("x = = 1\nprint('after')\n")
      assert.equal(1, code)
      assert.equal("after\n", out)
      contains(err, "unexpected symbol", "stderr")
    end)

    it("a runtime error goes to stderr and the REPL continues (exit 1 at the end: input is piped)", function()
      local code, out, err = repl("error('boom')\nprint('after')\nlocal z = nil; z.y = 1\nprint('again')\n")
      assert.equal(1, code)
      assert.equal("after\nagain\n", out)
      contains(err, "boom", "stderr")
      contains(err, "index", "stderr")
      not_contains(out, "boom")
    end)

    it("globals carry over from line to line", function()
      local code, out, err = repl("g = 41\ng + 1\n")
      assert.equal(0, code)
      assert.equal("", err)
      assert.equal("42\n", out)
    end)

    it("accepts multi-line input", function()
      local code, out, err = repl("for i = 1, 2 do\nprint('it' .. i)\nend\nfunction f(a)\nreturn a * 2\nend\nf(21)\n")
      assert.equal(0, code)
      assert.equal("", err)
      assert.equal("it1\nit2\n42\n", out)
    end)

    it("appends from the REPL are stored", function()
      local code, out, err = repl('store:append("r-1", {type = "R", data = {1.5}})\n')
      assert.equal(0, code)
      assert.equal("", err)
      assert.equal("1\n4\n", out)
      local s = assert(H.open(t, t.dir, { read_only = true }))
      local ev = s:event(4)
      assert.equal("r-1", ev.stream)
      H.assert_same({ 1.5 }, ev.data)
    end)
  end)
end)
