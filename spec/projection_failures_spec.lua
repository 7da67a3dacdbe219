-- on_error = "stop" | "skip" | "park" | function: poison events, dead
-- letters, retry and status.
local H = require "helper"

describe("projection failures", function()
  local t = {}
  before_each(function() H.setup(t) end)
  after_each(function() H.teardown(t) end)

  -- a-1: 1, 2(bad), 3; b-1: 4; a-1: 5; c-1: 6
  local function fill()
    local s = t.store
    assert(s:append("a-1", { type = "N", data = { n = 1 } }))
    assert(s:append("a-1", { type = "N", data = { n = 2, bad = true } }))
    assert(s:append("a-1", { type = "N", data = { n = 3 } }))
    assert(s:append("b-1", { type = "N", data = { n = 4 } }))
    assert(s:append("a-1", { type = "N", data = { n = 5 } }))
    assert(s:append("c-1", { type = "N", data = { n = 6, bad = true } }))
  end

  -- appends each n to the list of its stream; writes "touched" before failing
  local function handlers(fixed)
    return {
      N = function(view, ev)
        local list = view:get(ev.stream) or {}
        list[#list + 1] = ev.data.n
        view:put(ev.stream, list)
        view:put("touched-" .. ev.data.n, true)
        if ev.data.bad and not fixed then error("bad event " .. ev.data.n) end
      end,
    }
  end

  it("stop (the default) keeps today's behaviour: the batch is dropped and the error raised", function()
    fill()
    local p = t.store:projection("p", { handlers = handlers() })
    assert.has_error(function() p:run() end)
    assert.equal(0, p:position())
    assert.is_nil(p:get("a-1"))
  end)

  it("skip drops the failing event with its writes and goes on; the error is recorded with the batch", function()
    fill()
    local p = t.store:projection("p", { handlers = handlers(), on_error = "skip" })
    assert.same({ 6, 6 }, { p:run() })
    assert.same({ 1, 3, 5 }, p:get("a-1"))
    assert.same({ 4 }, p:get("b-1"))
    assert.is_nil(p:get("c-1"))
    assert.is_nil(p:get("touched-2")) -- the failing handler's own writes are taken back
    assert.is_true(p:get("touched-3"))
    local st = p:status()
    assert.equal(6, st.position)
    assert.equal(0, st.lag)
    assert.equal(0, st.dead_letters)
    assert.equal(2, st.skipped)
    assert.truthy(st.last_error:find("bad event 6", 1, true), st.last_error)
    assert.is_nil(p:dead_letters()())
  end)

  it("skip counts every skipped event but keeps only the newest records, also from a store without the count", function()
    local projection = require "eventrocks.projection"
    local checkpoints = require "eventrocks.checkpoints"
    local keep = projection.KEEP_SKIPPED
    projection.KEEP_SKIPPED = 3
    finally(function() projection.KEEP_SKIPPED = keep end)
    local function add(from, to)
      for n = from, to do assert(t.store:append("x-" .. n, { type = "N", data = { n = n, bad = n % 2 == 0 } })) end
    end
    local function kept(name)
      local out = {}
      for item, rec in checkpoints.each_item(t.store, "skipped", name) do
        if item ~= "" then out[#out + 1] = rec.position end
      end
      return out
    end
    add(1, 20) -- 10 bad: 2, 4, ..., 20
    local p = t.store:projection("p", { handlers = handlers(), on_error = "skip" })
    assert(p:run({ batch = 4 }))
    local st = p:status()
    assert.equal(10, st.skipped)
    assert.truthy(st.last_error:find("bad event 20", 1, true), st.last_error)
    assert.same({ 16, 18, 20 }, kept("p"))
    -- a store written before the count: its records are counted once, then trimmed
    local txn = assert(t.store:_txn())
    assert(checkpoints.put_item(txn, "skipped", "p", "", nil))
    for _, pos in ipairs({ 2, 4, 6, 8 }) do
      assert(checkpoints.put_item(txn, "skipped", "p", checkpoints.position_item(pos),
        { position = pos, error = "old " .. pos, at = pos }))
    end
    assert(txn:commit())
    txn:close()
    assert.equal(7, p:status().skipped) -- the records, counted
    add(21, 22)
    assert(p:run())
    assert.equal(8, p:status().skipped)
    assert.same({ 18, 20, 22 }, kept("p"))
    -- one batch that skips more than are kept keeps only its newest
    add(23, 32)
    assert(p:run({ batch = 100 }))
    assert.equal(13, p:status().skipped)
    assert.same({ 28, 30, 32 }, kept("p"))
    assert(p:reset())
    assert.equal(0, p:status().skipped)
    assert.same({}, kept("p"))
  end)

  it("a failing handler's writes are taken back to what the batch held, however often it wrote a key", function()
    for i = 1, 4 do assert(t.store:append("k-1", { type = "K", data = { n = i } })) end
    local p = t.store:projection("undo", { on_error = "skip", handlers = { K = function(view, ev)
      view:put("k", "first " .. ev.data.n)
      view:delete("k")
      view:put("k", "last " .. ev.data.n)
      view:put("new-" .. ev.data.n, true)
      if ev.data.n % 2 == 0 then error("even") end
    end } })
    assert.same({ 4, 4 }, { p:run() })
    assert.equal("last 3", p:get("k"))
    assert.is_nil(p:get("new-2"))
    assert.is_nil(p:get("new-4"))
    assert.is_true(p:get("new-3"))
  end)

  it("park holds back the rest of the failing event's stream, in order, until retried", function()
    fill()
    local p = t.store:projection("p", { handlers = handlers(), on_error = "park" })
    assert.same({ 6, 6 }, { p:run({ batch = 4 }) }) -- position 5 (a-1) parked in the next batch
    assert.same({ 1 }, p:get("a-1"))
    assert.same({ 4 }, p:get("b-1"))
    local letters = {}
    for pos, msg in p:dead_letters() do letters[#letters + 1] = { pos, msg } end
    assert.same({ 2, 3, 5, 6 }, H.pluck(letters, 1))
    assert.truthy(letters[1][2]:find("bad event 2", 1, true), letters[1][2])
    assert.truthy(letters[2][2]:find("parked behind position 2", 1, true), letters[2][2])
    local st = p:status()
    assert.equal(4, st.dead_letters)
    assert.equal(6, st.position)
    -- later events of a parked stream are parked too
    assert(t.store:append("a-1", { type = "N", data = { n = 7 } }))
    assert(t.store:append("b-1", { type = "N", data = { n = 8 } }))
    p:run()
    assert.same({ 4, 8 }, p:get("b-1"))
    assert.equal(5, p:status().dead_letters)
    -- retrying one that is not first of its stream is refused
    assert.has_error(function() p:retry(3) end, "projection 'p': position 3 is parked behind position 2 of stream a-1: retry that first")
    -- still failing: nothing applied, the stream stays parked
    assert.equal(0, p:retry(2))
    assert.equal(5, p:status().dead_letters)
    -- fixed: the same object gets the new handlers; retry applies the stream in order
    t.store:projection("p", { handlers = handlers(true), on_error = "park" })
    assert.equal(5, p:retry())
    assert.same({ 1, 2, 3, 5, 7 }, p:get("a-1"))
    assert.same({ 6 }, p:get("c-1"))
    assert.equal(0, p:status().dead_letters)
    assert.is_nil(p:dead_letters()())
    -- and new events of the stream flow again
    assert(t.store:append("a-1", { type = "N", data = { n = 9 } }))
    p:run()
    assert.same({ 1, 2, 3, 5, 7, 9 }, p:get("a-1"))
  end)

  it("a function chooses per error; one that raises or answers nonsense stops", function()
    fill()
    local seen = {}
    local p = t.store:projection("p", { handlers = handlers(), on_error = function(msg, ev)
      seen[#seen + 1] = ev.position
      if ev.stream == "a-1" then return "skip" end
      return "park"
    end })
    assert.same({ 6, 6 }, { p:run() })
    assert.same({ 2, 6 }, seen)
    assert.same({ 1, 3, 5 }, p:get("a-1"))
    assert.equal(1, p:status().dead_letters)
    assert.equal(1, p:status().skipped)
    local q = t.store:projection("q", { handlers = handlers(), on_error = function() return "ignore" end })
    assert.has_error(function() q:run() end)
    assert.equal(0, q:position())
  end)

  it("a skipped reactor's emits are not appended; the others' are", function()
    fill()
    local p = t.store:projection("r", { on_error = "skip", handlers = { N = function(view, ev)
      view:emit("out-" .. ev.data.n, { type = "Seen" })
      if ev.data.bad then error("no") end
    end } })
    p:run()
    assert.equal(1, t.store:version("out-1"))
    assert.equal(0, t.store:version("out-2"))
    assert.equal(0, t.store:version("out-6"))
  end)

  it("inline projections may skip, never park", function()
    local ok, err = pcall(t.store.projection, t.store, "i", { inline = true, on_error = "park", handlers = handlers() })
    assert.is_false(ok)
    assert.truthy(tostring(err):find("cannot park", 1, true), err)
    local p = t.store:projection("i", { inline = true, on_error = "skip", handlers = handlers() })
    fill() -- the bad events are skipped inside their appends, which succeed
    assert.same({ 1, 3, 5 }, p:get("a-1"))
    assert.equal(2, p:status().skipped)
  end)

  it("a damaged event (the store's 'corruption' error) stops the projection whatever on_error says", function()
    fill()
    local core = require "eventrocks.core"
    for _, policy in ipairs({ "skip", "park", function() return "skip" end }) do
      local p = t.store:projection("damaged", { on_error = policy, handlers = { N = function(_, ev)
        if ev.position == 3 then
          error(setmetatable({ code = "corruption", position = 3,
            message = "the data of the event at position 3 does not decode" }, core.error_metatable))
        end
      end } })
      local ok, err = pcall(p.run, p)
      assert.is_false(ok)
      H.check_err(err, "corruption")
      assert.equal(0, p:position())
      assert.equal(0, p:status().dead_letters)
    end
  end)

  it("refuses an unknown on_error, and reset forgets the failures", function()
    assert.has_error(function() t.store:projection("x", { handlers = handlers(), on_error = "retry" }) end)
    fill()
    local p = t.store:projection("p", { handlers = handlers(), on_error = "park" })
    p:run()
    assert.equal(4, p:status().dead_letters)
    assert(p:reset())
    local st = p:status()
    assert.equal(0, st.dead_letters)
    assert.equal(0, st.skipped)
    assert.equal(0, st.position)
  end)
end)

describe("projection failures across a SIGKILL", function()
  local t = {}
  before_each(function() H.setup(t) end)
  after_each(function() H.teardown(t) end)

  -- 10 streams of 60 events; in some streams one event fails, and parks the
  -- rest of its stream.  A child runs the parking projection in small
  -- batches, slowly, and is killed in the middle; then the store must hold
  -- exactly what a whole run gives, and a retry after the restart applies
  -- every dead letter once.
  it("leaves the read model and dead letters of whole batches, and a retry after the restart applies each once", function()
    local bad = { ["s-2"] = 10, ["s-5"] = 1, ["s-7"] = 45 }
    for i = 1, 600 do
      local stream = "s-" .. (i % 10)
      local v = t.store:version(stream) + 1
      assert(t.store:append(stream, { type = "N", data = { v = v, bad = bad[stream] == v or nil } }))
    end
    t.store:close()
    local code = [[
      local system = require "system"
      local store = assert(er.open(DIR))
      local p = store:projection("p", { on_error = "park", handlers = { N = function(view, ev)
        if ev.data.bad then error("bad " .. ev.stream) end
        view:put(ev.stream, (view:get(ev.stream) or 0) + 1)
        system.sleep(0.0005)
      end } })
      io.stdout:write("started\n") io.stdout:flush()
      p:run({ batch = 7 })
      io.stdout:write("finished\n") io.stdout:flush()
    ]]
    code = code:gsub("DIR", function() return string.format("%q", t.dir) end)
    local p = assert(io.popen("echo $$; exec " .. H.lua_cmd(code), "r"))
    local pid = tonumber(p:read("l"))
    assert.equal("started", p:read("l"))
    require("system").sleep(0.15)
    os.execute("kill -9 " .. pid)
    local rest = p:read("a")
    p:close()
    assert.is_nil(rest:find("finished", 1, true), "the child finished before the kill: " .. rest)

    local s = assert(H.open(t, t.dir))
    local function handlers(healed)
      return { N = function(view, ev)
        if ev.data.bad and not healed then error("bad " .. ev.stream) end
        view:put(ev.stream, (view:get(ev.stream) or 0) + 1)
      end }
    end
    local proj = s:projection("p", { on_error = "park", handlers = handlers(false) })
    local cp = proj:position()
    assert.is_true(cp > 0 and cp < 600, "killed at checkpoint " .. cp)
    -- what the checkpoint promises: every event up to it applied once or
    -- parked (the bad one and the rest of its stream), nothing after it
    local want, dead = {}, {}
    for ev in s:all() do
      if ev.position > cp then break end
      if ev.data.bad or dead[ev.stream] then dead[ev.stream] = (dead[ev.stream] or 0) + 1
      else want[ev.stream] = (want[ev.stream] or 0) + 1 end
    end
    for k = 0, 9 do assert.equal(want["s-" .. k], proj:get("s-" .. k), "s-" .. k .. " at checkpoint " .. cp) end
    local parked = 0
    for _ in proj:dead_letters() do parked = parked + 1 end
    local want_parked = 0
    for _, n in pairs(dead) do want_parked = want_parked + n end
    assert.equal(want_parked, parked)
    -- the restart finishes the run; then the healed handler retries them all
    assert(proj:run())
    assert.equal(600, proj:position())
    proj = s:projection("p", { on_error = "park", handlers = handlers(true) })
    local total_dead = 0
    for _ in proj:dead_letters() do total_dead = total_dead + 1 end
    assert.equal(51 + 60 + 16, total_dead) -- s-2 from version 10, s-5 from 1, s-7 from 45
    assert.equal(total_dead, proj:retry())
    for k = 0, 9 do assert.equal(60, proj:get("s-" .. k), "s-" .. k) end
    assert.is_nil(proj:dead_letters()())
  end)
end)
