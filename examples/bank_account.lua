-- bank_account.lua: commands with invariants, concurrency, snapshots.
--
-- An account may never be overdrawn.  Commands check that rule against the
-- state rebuilt from events before raising anything.  Two tellers working
-- on the same account at once cannot both win: the second save conflicts,
-- and repo:update re-runs its command on fresh state.  With many events,
-- snapshots keep loading fast.
--
-- Run: make examples   (or: lua5.4 examples/bank_account.lua [STORE_DIR])
local er = require "eventrocks"

local dir = arg[1]
local scratch = not dir
if scratch then dir = os.tmpname(); os.remove(dir) end
local store = assert(er.open(dir))

-- The domain lives in its own file (examples/account.lua), so that its
-- tests (spec/examples_spec.lua, with eventrocks.testing) load the same code.
local here = arg and arg[0] and arg[0]:match("^(.*)/[^/]*$") or "examples"
local Account, apply, init = dofile(here .. "/account.lua")

local accounts = store:repository(Account)

local acc = accounts:load("alice")
acc:open("Alice")
acc:deposit(10000)
assert(accounts:save(acc))
print("opened:", acc, "balance", acc.state.balance)

-- The invariant: an overdraft is refused and leaves nothing behind.
local ok, err = pcall(acc.withdraw, acc, 25000)
print("refused:", err)
assert(not ok and #acc:pending() == 0 and acc.state.balance == 10000)

-- Two tellers load the same version...
local teller1 = accounts:load("alice")
local teller2 = accounts:load("alice")
teller1:withdraw(7000)
teller2:withdraw(6000)
assert(accounts:save(teller1))                  -- the first one wins
local v, conflict = accounts:save(teller2)      -- the second saw a stale balance
assert(v == nil and conflict.code == "wrong_expected_version")
print("conflict:", conflict)

-- ...and repo:update resolves it: load, run the command, save, retry on a
-- conflict.  On fresh state the 6000 withdrawal would overdraw, so the
-- teller learns it instead of silently breaking the rule.
local ok2, err2 = pcall(accounts.update, accounts, "alice", function(a) a:withdraw(6000) end)
print("retried on fresh state:", ok2, err2)
assert(not ok2)
local after = accounts:update("alice", function(a) a:withdraw(2000) end)
print("after update:", after, "balance", after.state.balance)

-- Snapshots: 200 more deposits.  Every save that reaches a multiple of 50
-- writes the state in the same atomic write as its events; loading then
-- reads the newest snapshot and only the events after it.
for i = 1, 200 do
  assert(accounts:update("alice", function(a) a:deposit(i) end))
end
local final = accounts:load("alice")
print("loaded:", final, "balance", final.state.balance)
assert(final.state.balance == 10000 - 7000 - 2000 + 200 * 201 // 2)

-- How many events did that load replay?  The same aggregate, with apply
-- handlers that count their calls:
local replayed = 0
local counting = {}
for etype, f in pairs(apply) do
  counting[etype] = function(...) replayed = replayed + 1; return f(...) end
end
local Audited = er.aggregate("account", { init = init, apply = counting, snapshot_every = 50, schema = 1 })
local audited = store:repository(Audited):load("alice")
print(("events in the stream: %d; the load replayed %d after the snapshot"):format(audited.version, replayed))
assert(replayed < 50 and audited.state.balance == final.state.balance)

-- Time travel ignores newer snapshots: the balance before the 200 deposits.
replayed = 0
local before = store:repository(Audited):load("alice", { version = 4 })
print(("at version 4 the balance was %d (replayed %d events)"):format(before.state.balance, replayed))
assert(before.state.balance == 1000)
store:close()
if scratch then os.execute("rm -rf '" .. dir .. "'") end
