-- Every options table is checked: an unknown key raises
-- `bad argument #n to 'NAME' (unknown option 'KEY')` and nothing happens,
-- so that a misspelt option never drops a guarantee silently.
local H = require "helper"
local er = H.er

describe("an unknown option", function()
  local t = {}
  before_each(function() H.setup(t) end)
  after_each(function() H.teardown(t) end)

  local function refused(fn, argn, fname, key)
    local ok, err = pcall(fn)
    assert.is_false(ok, "the call succeeded")
    local want = ("bad argument #%d to '%s' (unknown option '%s')"):format(argn, fname, key)
    assert.is_truthy(tostring(err):find(want, 1, true), ("%q does not contain %q"):format(tostring(err), want))
  end

  it("in append ({expectd = 0}) raises and appends nothing", function()
    local s = t.store
    assert(s:append("a-1", H.ev("A", 1)))
    refused(function() return s:append("a-1", H.ev("A", 2), { expectd = 0 }) end, 3, "append", "expectd")
    assert.equal(1, s:version("a-1"))
    assert.equal(1, s:last_position())
    -- the right spelling is still checked
    local v, err = s:append("a-1", H.ev("A", 2), { expected = 0 })
    assert.is_nil(v)
    H.check_err(err, "wrong_expected_version")
  end)

  it("in er.open raises and creates nothing", function()
    local dir = t.dir .. "/new"
    refused(function() return er.open(dir, { readonly = true }) end, 2, "open", "readonly")
    assert.is_false(H.exists(dir))
  end)

  it("in read, all and streams raises", function()
    local s = t.store
    assert(s:append("a-1", H.ev("A", 1)))
    refused(function() return s:read("a-1", { form = 1 }) end, 2, "read", "form")
    refused(function() return s:all({ catgory = "a" }) end, 1, "all", "catgory")
    refused(function() return s:streams({ prefx = "a" }) end, 1, "streams", "prefx")
    local ok, err = pcall(function() return s:all({ [1] = "x" }) end)
    assert.is_false(ok)
    assert.matches("unknown option 1", tostring(err), 1, true)
  end)

  it("in repository, load and update raises", function()
    local s = t.store
    local A = er.aggregate("acct", { apply = { Opened = function() end } })
    function A:open() self:raise("Opened", {}) end
    refused(function() return s:repository(A, { snapshot = true }) end, 2, "repository", "snapshot")
    local repo = s:repository(A)
    refused(function() return repo:load("1", { verison = 1 }) end, 2, "load", "verison")
    refused(function() return repo:update("1", function(a) a:open() end, { retry = 5 }) end, 3, "update", "retry")
    assert.equal(0, s:version("acct-1"))
  end)

  it("in projection and run raises, and the projection runs nothing", function()
    local s = t.store
    assert(s:append("a-1", H.ev("A", 1)))
    local calls = 0
    refused(function()
      return s:projection("p", { handlers = { A = function() calls = calls + 1 end }, categroy = "a" })
    end, 2, "projection", "categroy")
    local p = s:projection("p", { handlers = { A = function() calls = calls + 1 end } })
    refused(function() return p:run({ bacth = 10 }) end, 1, "run", "bacth")
    assert.equal(0, calls)
    assert.equal(0, p:position())
  end)
end)
