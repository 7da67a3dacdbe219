-- Issue 13, items 7-10: the command line and the REPL with careless and
-- hostile input: import from pipes and directories, control bytes in names,
-- read-only commands on a missing store, usage errors, and the REPL in a
-- real terminal.
local H = require "helper"
local er = require "eventrocks"
local core = require "eventrocks.core"
local json = require "dkjson"

local VARS, BIN, CMD = H.CHILD_VARS, H.BIN, H.CMD
local read_file, write_file, sh = H.read_file, H.write_file, H.sh

-- `eventrocks --store DIR ARGS`
local function erun(dir, args)
  return sh(CMD .. " --store " .. H.shquote(dir) .. " " .. args)
end

local function lines(s)
  local out = {}
  for l in s:gmatch("([^\n]*)\n") do out[#out + 1] = l end
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

-- No byte a terminal would act on: no C0 control but the line ends, no DEL,
-- no C1 control (as UTF-8), and valid UTF-8 throughout.
local function assert_terminal_safe(s, what)
  local bad = s:find("[%z\1-\9\11-\31\127]") or s:find("\194[\128-\159]")
  assert.is_nil(bad, (what or "output") .. " has a control byte: " .. string.format("%q", s))
  assert.is_truthy(utf8.len(s), (what or "output") .. " is not valid UTF-8: " .. string.format("%q", s))
end

describe("eventrocks command, hardened", function()
  local t = {}
  local extra
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

  -- -------------------------------------------------------------------------
  describe("import from standard input, pipes and directories", function()
    local file
    before_each(function()
      assert(t.store:append("a-1", { { type = "A", data = 1 }, { type = "A", data = { x = "y" } } }))
      assert(t.store:append("b-1", { type = "B", data = 2.5 }))
      local code, out = erun(t.dir, "export")
      assert.equal(0, code)
      file = tmpdir() .. "/export.jsonl"
      write_file(file, out)
    end)

    local function assert_imported(target)
      local s2 = assert(H.open(t, target, { read_only = true }))
      assert.equal(3, s2:last_position())
      assert.equal(2, s2:version("a-1"))
      assert.equal(1, s2:version("b-1"))
      for pos = 1, 3 do
        local a, b = t.store:event(pos), s2:event(pos)
        assert.equal(a.id, b.id)
        assert.equal(a.time, b.time)
        H.assert_same(a.data, b.data)
      end
    end

    it("'import -' reads standard input from a pipe", function()
      local target = tmpdir() .. "/imported"
      local code, out, err = sh("cat " .. H.shquote(file) .. " | " .. CMD .. " --store "
        .. H.shquote(target) .. " import -")
      assert.equal(0, code, err)
      assert.equal("", out)
      contains(err, "imported 3 events", "stderr")
      assert_imported(target)
    end)

    it("'import -' reads standard input redirected from a file", function()
      local target = tmpdir() .. "/imported"
      local code, _, err = sh(CMD .. " --store " .. H.shquote(target) .. " import - <" .. H.shquote(file))
      assert.equal(0, code, err)
      assert_imported(target)
    end)

    it("'import /dev/stdin' works from a pipe", function()
      local target = tmpdir() .. "/imported"
      local code, out, err = sh("cat " .. H.shquote(file) .. " | " .. CMD .. " --store "
        .. H.shquote(target) .. " import /dev/stdin")
      assert.equal(0, code, err)
      assert.equal("", out)
      not_contains(err, ".lua:", "stderr")
      contains(err, "imported 3 events", "stderr")
      assert_imported(target)
    end)

    it("'import /dev/stdin' works from a pipe with the progress bar drawn on a terminal", function()
      local target = tmpdir() .. "/imported"
      local inner = "cat " .. H.shquote(file) .. " | " .. CMD .. " --store " .. H.shquote(target)
        .. " import /dev/stdin; echo EXIT=$?"
      local code, out = sh("script -qec " .. H.shquote(inner) .. " /dev/null")
      assert.equal(0, code)
      not_contains(out, ".lua:")
      contains(out, "EXIT=0")
      assert_imported(target)
    end)

    it("'import DIR' is a clean error and creates no store", function()
      local dir = tmpdir()
      local target = tmpdir() .. "/imported"
      local code, out, err = erun(target, "import " .. H.shquote(dir))
      assert.is_true(code ~= 0)
      assert.equal("", out)
      assert.equal("eventrocks: cannot import " .. dir .. ": is a directory\n", err)
      assert.is_false(H.exists(target))
    end)

    it("a missing file is a clean error and creates no store", function()
      local target = tmpdir() .. "/imported"
      local missing = tmpdir() .. "/no-such-file"
      local code, out, err = erun(target, "import " .. H.shquote(missing))
      assert.is_true(code ~= 0)
      assert.equal("", out)
      assert.equal("eventrocks: cannot import " .. missing .. ": no such file or directory\n", err)
      assert.is_false(H.exists(target))
    end)

    local function line(stream, version, time, id)
      return json.encode({ stream = stream, version = version, type = "T", time = time, id = id,
        data = version, metadata = {} })
    end

    it("a duplicate id names the line of the duplicate event, not its append's first line", function()
      local x, y = er.uuid(), er.uuid()
      local target = tmpdir() .. "/imported"
      local f = tmpdir() .. "/dup.jsonl"
      -- line 1: a-1 (id x); lines 2-3: one append of b-1 whose second event reuses x
      write_file(f, table.concat({ line("a-1", 1, 1000, x), line("b-1", 1, 2000, y),
        line("b-1", 2, 2000, x), "" }, "\n"))
      local code, out, err = erun(target, "import " .. H.shquote(f))
      assert.is_true(code ~= 0)
      assert.equal("", out)
      contains(err, "line 3: ", "stderr")
      contains(err, x, "stderr")
      not_contains(err, "line 2", "stderr")
      local s2 = assert(H.open(t, target, { read_only = true }))
      assert.equal(1, s2:last_position())
      assert.equal(0, s2:version("b-1"))
    end)

    it("an id twice in one append names the line of the second", function()
      local x, y = er.uuid(), er.uuid()
      local target = tmpdir() .. "/imported"
      local f = tmpdir() .. "/dup.jsonl"
      write_file(f, table.concat({ line("b-1", 1, 2000, x), line("b-1", 2, 2000, y),
        line("b-1", 3, 2000, x), "" }, "\n"))
      local code, _, err = erun(target, "import " .. H.shquote(f))
      assert.is_true(code ~= 0)
      contains(err, "line 3: ", "stderr")
      not_contains(err, "line 1", "stderr")
      local s2 = assert(H.open(t, target, { read_only = true }))
      assert.equal(0, s2:last_position())
    end)
  end)

  -- -------------------------------------------------------------------------
  describe("control bytes in names", function()
    local EVIL = "evil\27[31m-1\nx\r\7"
    local TYPE = "T\27]0;pwned\7\127\\"
    local BIN = "bin\255\254-1"
    local C1 = "c1\194\155-1"
    local BACK = "back\\x1b-1"
    before_each(function()
      assert(t.store:append(EVIL, { type = TYPE, data = { s = "\27[2J" }, metadata = { ["\27k"] = 1 } }))
      assert(t.store:append(BIN, { type = "B\255", data = 1 }))
      assert(t.store:append(C1, { type = "C\194\155", data = "\194\155" }))
      assert(t.store:append(BACK, { type = "Back", data = 2 }))
      assert(t.store:append("plain-1", { type = "Plain", data = 3 }))
    end)

    local E_EVIL = "evil\\x1b[31m-1\\nx\\r\\x07"
    local E_TYPE = "T\\x1b]0;pwned\\x07\\x7f\\\\"
    local E_BIN = "bin\\xff\\xfe-1"
    local E_C1 = "c1\\xc2\\x9b-1"
    local E_BACK = "back\\\\x1b-1"

    it("streams prints one stream a line with control bytes, invalid UTF-8 and backslashes escaped", function()
      local code, out, err = erun(t.dir, "streams")
      assert.equal(0, code, err)
      assert_terminal_safe(out)
      local ls = lines(out)
      assert.equal(5, #ls)
      local set = {}
      for _, l in ipairs(ls) do set[l] = true end
      assert.is_true(set[E_EVIL .. " 1"], out)
      assert.is_true(set[E_BIN .. " 1"], out)
      assert.is_true(set[E_C1 .. " 1"], out)
      assert.is_true(set[E_BACK .. " 1"], out)
      assert.is_true(set["plain-1 1"], out)
    end)

    it("read and tail print one event a line with the stream and type escaped", function()
      for _, c in ipairs({ "read " .. H.shquote(EVIL), "tail" }) do
        local code, out, err = erun(t.dir, c)
        assert.equal(0, code, err)
        assert_terminal_safe(out, c)
        local ls = lines(out)
        assert.equal(c == "tail" and 5 or 1, #ls, c)
        contains(ls[1], E_EVIL .. "@1 " .. E_TYPE .. " ", c)
        contains(ls[1], "\\27[2J", c) -- data keep their Lua-quoted form
      end
      local _, out = erun(t.dir, "tail")
      contains(out, E_BIN .. "@1 B\\xff ")
      contains(out, E_C1 .. "@1 C\\xc2\\x9b ")
      contains(out, E_BACK .. "@1 Back ")
    end)

    it("stats escapes categories and types", function()
      local code, out, err = erun(t.dir, "stats")
      assert.equal(0, code, err)
      assert_terminal_safe(out)
      contains(out, "evil\\x1b[31m ")
      contains(out, E_TYPE .. " ")
      contains(out, "B\\xff ")
    end)

    it("check escapes stream ids in its report", function()
      t.store:close()
      local s = assert(er.open(t.dir))
      local txn = assert(s:_txn())
      txn:put("snapshots", EVIL, { version = 99, schema = 1, state = {} })
      assert(txn:commit())
      txn:close()
      s:close()
      local code, out = erun(t.dir, "check")
      assert.equal(1, code)
      assert_terminal_safe(out)
      contains(out, E_EVIL)
    end)

    it("--json and export carry the exact bytes", function()
      local code, out = erun(t.dir, "streams --json")
      assert.equal(0, code)
      local got = {}
      for _, l in ipairs(lines(out)) do got[json.decode(l).stream] = true end
      assert.is_true(got[EVIL])
      code, out = erun(t.dir, "read " .. H.shquote(EVIL) .. " --json")
      assert.equal(0, code)
      local ev = json.decode(lines(out)[1])
      assert.equal(EVIL, ev.stream)
      assert.equal(TYPE, ev.type)
      code, out = erun(t.dir, "export")
      assert.equal(0, code)
      ev = json.decode(lines(out)[1])
      assert.equal(EVIL, ev.stream)
      assert.equal(TYPE, ev.type)
    end)

    it("tostring(event) escapes the stream and type", function()
      local s = tostring(t.store:event(1))
      assert_terminal_safe(s)
      contains(s, E_EVIL .. "@1 " .. E_TYPE .. " ")
      assert_terminal_safe(tostring(t.store:event(2)))
      contains(tostring(t.store:event(2)), E_BIN .. "@1")
      contains(tostring(t.store:event(3)), E_C1 .. "@1")
      contains(tostring(t.store:event(4)), E_BACK .. "@1")
    end)

    it("the REPL's show prints events, strings and keys escaped", function()
      t.store:close()
      local code, out, err = sh(CMD .. " --store " .. H.shquote(t.dir) .. " repl <<'EOF'\n"
        .. "show(store:event(1))\nshow(store:event(3))\nstore:event(1).stream\n"
        .. "show({[store:event(1).stream] = store:event(1).type})\nEOF\n")
      assert.equal(0, code, err)
      assert.equal("", err)
      assert_terminal_safe(out)
      contains(out, E_EVIL .. "@1 " .. E_TYPE)
      contains(out, "c1\\xc2\\x9b")
    end)

    it("errors on stderr are escaped", function()
      -- a line that does not continue its stream: the error names the stream
      local f = tmpdir() .. "/evil.jsonl"
      write_file(f, json.encode({ stream = EVIL, version = 3, type = "T", time = 5, id = er.uuid(),
        data = 1, metadata = {} }) .. "\n")
      local code, out, err = erun(tmpdir() .. "/imported", "import " .. H.shquote(f))
      assert.is_true(code ~= 0)
      assert.equal("", out)
      contains(err, "line 1: ", "stderr")
      contains(err, "evil\\x1b[31m-1\\nx\\r\\x07", "stderr")
      assert_terminal_safe(err, "stderr")
      assert.equal(1, #lines(err))
    end)
  end)

  -- -------------------------------------------------------------------------
  describe("read-only commands on a missing store", function()
    local commands = { "streams", "read x-1", "tail", "stats", "export", "check",
      "relay r --url nats://127.0.0.1:1 --timeout 100 --max-reconnect 0" }

    it("are 'no store at DIR' and create nothing, for a missing directory", function()
      for _, c in ipairs(commands) do
        local missing = tmpdir() .. "/nothing-here"
        local code, out, err = erun(missing, c)
        assert.is_true(code ~= 0, c .. " exited 0")
        assert.equal("", out, c)
        assert.equal("eventrocks: no store at " .. missing .. "\n", err, c)
        assert.is_false(H.exists(missing), c .. " created " .. missing)
      end
    end)

    it("are 'no store at DIR' and write nothing into an empty directory", function()
      for _, c in ipairs(commands) do
        local empty = tmpdir()
        local code, out, err = erun(empty, c)
        assert.is_true(code ~= 0, c .. " exited 0")
        assert.equal("", out, c)
        assert.equal("eventrocks: no store at " .. empty .. "\n", err, c)
        local p = assert(io.popen("ls -A " .. H.shquote(empty)))
        assert.equal("", p:read("a"), c)
        p:close()
      end
    end)
  end)

  -- -------------------------------------------------------------------------
  describe("usage errors", function()
    local cases = {
      { "read", "read", "missing argument 'stream'" },
      { "read s-1 --count many", "read", "count" },
      { "streams --bogus", "streams", "--bogus" },
      { "tail --from", "tail", "--from" },
      { "import", "import", "missing argument 'file'" },
      { "export a b", "export", "too many arguments" },
    }
    for _, case in ipairs(cases) do
      it("'" .. case[1] .. "' shows the usage of '" .. case[2] .. "'", function()
        local code, out, err = erun(t.dir, case[1])
        assert.equal(2, code)
        assert.equal("", out)
        contains(err, "Usage: eventrocks " .. case[2] .. " ", "stderr")
        not_contains(err, "<command>", "stderr")
        contains(err, case[3], "stderr")
        contains(err, "eventrocks " .. case[2] .. " --help", "stderr")
      end)
    end

    it("a bad top-level option still shows the top-level usage", function()
      local code, out, err = sh(CMD .. " --bogus")
      assert.equal(2, code)
      assert.equal("", out)
      contains(err, "Usage: eventrocks [-h]", "stderr")
      contains(err, "--bogus", "stderr")
    end)
  end)
  -- -------------------------------------------------------------------------
  describe("repl", function()
    before_each(function()
      assert(t.store:append("a-1", { type = "A", data = 1 }))
      t.store:close()
    end)

    local function repl(input)
      local f = tmpdir() .. "/input.lua"
      write_file(f, input)
      return sh("cat " .. H.shquote(f) .. " | " .. CMD .. " --store " .. H.shquote(t.dir) .. " repl")
    end

    it("a piped script whose chunk raises exits 1, the error on stderr", function()
      local code, out, err = repl('error("x marks the spot")\n')
      assert.equal(1, code)
      assert.equal("", out)
      contains(err, "x marks the spot", "stderr")
    end)

    it("a piped script with a syntax error exits 1", function()
      local code, _, err = repl("x = = 1\n")
      assert.equal(1, code)
      contains(err, "unexpected symbol", "stderr")
    end)

    it("a piped script that ends inside a chunk exits 1", function()
      local code, _, err = repl("for i = 1, 2 do\n")
      assert.equal(1, code)
      contains(err, "<eof>", "stderr")
    end)

    it("a piped script without errors exits 0", function()
      local code, out, err = repl("store:last_position()\n")
      assert.equal(0, code, err)
      assert.equal("1\n", out)
    end)

    -- A real terminal: tmux runs the REPL on a pty of its own.
    describe("in a terminal", function()
      local socket, home
      local function tmux(args)
        local p = assert(io.popen("tmux -S " .. H.shquote(socket) .. " " .. args .. " 2>&1"))
        local out = p:read("a")
        p:close()
        return out
      end
      -- (capture-pane drops the blanks at the end of a line: "er>" is the prompt)
      local function screen() return tmux("capture-pane -p -S -100") end
      local function count(hay, needle)
        local n, at = 0, 1
        while true do
          local i = hay:find(needle, at, true)
          if not i then return n end
          n, at = n + 1, i + #needle
        end
      end
      -- poll the screen until fn(screen) holds (10 s at most)
      local function wait_screen(fn, what)
        local s
        for _ = 1, 200 do
          s = screen()
          if fn(s) then return s end
          os.execute("sleep 0.05")
        end
        error("timed out waiting for " .. what .. "; the screen:\n" .. s)
      end
      local function keys(...)
        local args = {}
        for i = 1, select("#", ...) do args[i] = H.shquote((select(i, ...))) end
        tmux("send-keys " .. table.concat(args, " "))
      end

      before_each(function()
        assert.is_true(os.execute("command -v tmux >/dev/null"), "tmux is needed (tools/deps.sh installs it)")
        home = tmpdir()
        socket = home .. "/tmux.socket" -- this spec's own tmux server, removed with the directory
        local inner = "env HOME=" .. H.shquote(home) .. " TERM=xterm " .. VARS .. " lua5.4 " .. H.shquote(BIN)
          .. " --store " .. H.shquote(t.dir) .. " repl; echo EXITED=$?; sleep 60"
        tmux("new-session -d -x 150 -y 40 " .. H.shquote(inner))
        wait_screen(function(s) return s:find("er>", 1, true) end, "the prompt")
      end)
      after_each(function()
        tmux("kill-server") -- this spec's own server (-S socket) only
      end)

      it("Ctrl-C at the prompt clears the line and stays in the REPL", function()
        keys("x = 1 + ")
        wait_screen(function(s) return s:find("er> x = 1 +", 1, true) end, "the typed text")
        keys("C-c")
        wait_screen(function(s) return count(s, "er>") == 2 end, "a fresh prompt")
        -- the line was dropped: 40 + 2 is an expression of its own
        keys("40 + 2", "Enter")
        local s = wait_screen(function(s) return s:find("\n42\n", 1, true) end, "42")
        not_contains(s, "EXITED")
        -- again, twice, and inside a multi-line chunk
        keys("C-c")
        keys("C-c")
        wait_screen(function(s) return count(s, "er>") == 5 end, "two more prompts")
        keys("for i = 1, 2 do", "Enter")
        wait_screen(function(s) return s:find(">>", 1, true) end, "the continuation prompt")
        keys("C-c")
        wait_screen(function(s) return count(s, "er>") == 6 end, "a prompt after the continuation")
        keys("print('alive' .. 7)", "Enter")
        wait_screen(function(s) return s:find("alive7", 1, true) end, "alive7")
        keys("C-d")
        s = wait_screen(function(s) return s:find("EXITED=", 1, true) end, "the exit")
        contains(s, "EXITED=0")
      end)

      it("Ctrl-C stops a running chunk and returns to the prompt", function()
        keys("while true do end", "Enter")
        os.execute("sleep 0.3")
        keys("C-c")
        wait_screen(function(s) return s:find("interrupted", 1, true) and count(s, "er>") == 2 end,
          "the interruption")
        keys("print('after' .. 1)", "Enter")
        wait_screen(function(s) return s:find("after1", 1, true) end, "after1")
        keys("C-d")
        contains(wait_screen(function(s) return s:find("EXITED=", 1, true) end, "the exit"), "EXITED=0")
      end)

      it("saves each line to the history as it is entered", function()
        local hist = home .. "/.eventrocks_history"
        keys("y = 6 * 7", "Enter")
        keys("y", "Enter")
        wait_screen(function(s) return s:find("\n42\n", 1, true) end, "42")
        -- still running: the lines are in the file already
        not_contains(screen(), "EXITED")
        assert.equal("y = 6 * 7\ny\n", read_file(hist))
        keys("C-d")
        contains(wait_screen(function(s) return s:find("EXITED=", 1, true) end, "the exit"), "EXITED=0")
        assert.equal("y = 6 * 7\ny\n", read_file(hist))
      end)
    end)
  end)
end)
