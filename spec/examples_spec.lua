-- The examples' own tests: their domain code, through eventrocks.testing
-- (given events, when a command, expect events or an error).
local given = require("eventrocks.testing").given

local Account = dofile("examples/account.lua")

local opened = { { type = "AccountOpened", data = { owner = "Alice" } },
  { type = "Deposited", data = { amount = 10000 } } }

describe("examples/account.lua (bank_account.lua)", function()
  it("opens an account once", function()
    given(Account, "alice", {}):when(function(a) a:open("Alice") end)
      :expect({ { type = "AccountOpened", data = { owner = "Alice" } } })
      :expect_state({ open = true, owner = "Alice", balance = 0 })
    given(Account, "alice", opened):when(function(a) a:open("Alice") end):expect_error("already open")
  end)

  it("takes deposits of positive whole cents only", function()
    given(Account, "alice", opened):when(function(a) a:deposit(250) end)
      :expect({ { type = "Deposited", data = { amount = 250 } } })
      :expect_state({ open = true, owner = "Alice", balance = 10250 })
    given(Account, "alice", opened):when(function(a) a:deposit(0) end):expect_error("positive integer")
    given(Account, "alice", opened):when(function(a) a:deposit(2.5) end):expect_error("positive integer")
    given(Account, "bob", {}):when(function(a) a:deposit(5) end):expect_error("not open")
  end)

  it("never lets an account be overdrawn", function()
    given(Account, "alice", opened):when(function(a) a:withdraw(10000) end)
      :expect({ { type = "Withdrawn", data = { amount = 10000 } } })
      :expect_state({ open = true, owner = "Alice", balance = 0 })
    given(Account, "alice", opened):when(function(a) a:withdraw(10001) end)
      :expect_error("insufficient funds: balance 10000, asked 10001")
  end)
end)
