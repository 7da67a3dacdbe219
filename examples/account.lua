-- account.lua: the bank account of bank_account.lua, a domain module.
--
--   local Account, apply, init = dofile("examples/account.lua")
--
-- An account may never be overdrawn: commands check the rule against the
-- state rebuilt from events before raising anything.  Its tests are in
-- spec/examples_spec.lua (given / when / expect of eventrocks.testing).
local er = require "eventrocks"

local apply = {
  AccountOpened = function(s, d) s.open, s.owner = true, d.owner end,
  Deposited = function(s, d) s.balance = s.balance + d.amount end,
  Withdrawn = function(s, d) s.balance = s.balance - d.amount end,
}
local function init() return { balance = 0, open = false } end

local Account = er.aggregate("account", {
  init = init,
  apply = apply,
  snapshot_every = 50,   -- store the state every 50 events, with them
  schema = 1,            -- bump when the state's shape changes
})

function Account:open(owner)
  if self.state.open then error("account already open") end
  self:raise("AccountOpened", { owner = owner })
end

function Account:deposit(amount)
  if not self.state.open then error("account is not open") end
  if math.type(amount) ~= "integer" or amount <= 0 then error("amount must be a positive integer (cents)") end
  self:raise("Deposited", { amount = amount })
end

function Account:withdraw(amount)
  if not self.state.open then error("account is not open") end
  if amount > self.state.balance then
    error(("insufficient funds: balance %d, asked %d"):format(self.state.balance, amount))
  end
  self:raise("Withdrawn", { amount = amount })
end

return Account, apply, init
