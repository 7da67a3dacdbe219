-- The web explorer in a real browser: headless Chromium (Debian's chromium,
-- tools/deps.sh browser) loads the pages of `eventrocks ui`, runs their
-- script, and the DOM it ends with is checked; links are followed as the
-- browser rendered them.  A hostile store must never run script: a value
-- like <img src=x onerror="document.title='pwned'"> must stay text.
--
--   make test-browser   (busted --pattern=ui_chromium spec/browser)
local H = require "helper"
local U = require "ui_common"

local CHROMIUM = os.getenv("CHROMIUM") or "chromium"

-- The DOM of `url` once loaded and its scripts run (chromium --dump-dom).
local function dom(url)
  local code, out, err = H.sh(CHROMIUM .. " --headless --no-sandbox --disable-gpu --no-first-run "
    .. "--virtual-time-budget=3000 --dump-dom " .. H.shquote(url))
  assert(code == 0 and out:find("</html>", 1, true), "chromium failed (" .. code .. "): " .. err:sub(-500))
  return out
end

local function title(d) return d:match("<title>(.-)</title>") end

local function links(d)
  local out = {}
  for _, h in ipairs(U.links(d)) do
    if h:sub(1, 1) == "/" and not h:find("^/static/") then out[#out + 1] = h end
  end
  return out
end

local function first_link(d, prefix)
  for _, h in ipairs(links(d)) do
    if h:sub(1, #prefix) == prefix then return h end
  end
end

describe("eventrocks ui in headless Chromium", function()
  local dir, srv
  after_each(function()
    if srv then U.stop(srv) end
    srv = nil
    H.rmrf(dir)
  end)

  it("notices script that runs: a page of the hostile value itself, unescaped, changes the title", function()
    -- the control of the checks below: the same payload, served as markup
    dir = H.mkdtemp()
    H.write_file(dir .. "/control.html", "<!doctype html><html><head><title>control</title></head><body>"
      .. U.IMG .. "</body></html>")
    assert.equal("pwned", title(dom("file://" .. dir .. "/control.html")))
  end)

  it("loads each page of the examples' store, follows its links, and runs only its own script", function()
    dir = H.mkdtemp()
    local store = dir .. "/shop"
    local env = H.CHILD_VARS .. " lua5.4 "
    assert.equal(0, (H.sh("env " .. env .. "examples/products.lua " .. H.shquote(store))))
    assert.equal(0, (H.sh("env " .. env .. "examples/order_flow.lua " .. H.shquote(store))))
    srv = U.start(store, "--aggregates examples/ui_aggregates.lua")
    local base = srv.url:gsub("/$", "")
    local streams = dom(srv.url .. "streams")
    assert.matches('data%-js="on"', streams) -- our script ran
    assert.equal("Streams · eventrocks", title(streams))
    assert.matches('<span id="stream%-count">7</span>', streams)
    -- a stream, one of its events, its aggregate's state over time
    local stream = dom(base .. assert(first_link(streams, "/stream?id=order")))
    assert.matches("^Stream order%-", title(stream))
    assert.matches("OrderPlaced", stream)
    local event = dom(base .. assert(first_link(stream, "/event?pos=")))
    assert.matches('<span id="event%-position">#%d+</span>', event)
    assert.matches("caused", event)
    local agg = dom(base .. assert(first_link(stream, "/aggregate?")))
    assert.matches('state at version <span id="state%-version">%d+</span>', agg)
    assert.matches('<span class="key">total</span>', agg)
    -- an earlier version from the history table, with what it changed
    local v1 = dom(base .. assert(first_link(agg, "/aggregate?name=order&id=1001&v=1")))
    assert.matches('state at version <span id="state%-version">1</span>', v1)
    assert.matches('class="added"', v1)
    -- the other pages of the navigation
    for _, path in ipairs({ "/log", "/projections", "/stats", "/aggregates" }) do
      local d = dom(base .. path)
      assert.matches('data%-js="on"', d, 1, false, path)
      assert.matches(" · eventrocks$", title(d))
    end
    local stats = dom(base .. "/stats")
    assert.matches('<svg id="chart"', stats)
  end)

  it("never runs script from a hostile store", function()
    dir = H.mkdtemp()
    U.hostile_store(dir)
    srv = U.start(dir)
    local base = srv.url:gsub("/$", "")
    local pages = { "/streams", "/log?from=1", "/projections", "/stats", "/event?pos=1", "/event?pos=2" }
    local streams = dom(base .. "/streams")
    for _, h in ipairs(links(streams)) do
      if h:find("^/stream%?id=") then pages[#pages + 1] = h end
    end
    local projections = dom(base .. "/projections")
    pages[#pages + 1] = assert(first_link(projections, "/projection?name="))
    assert.is_true(#pages >= 14)
    for _, path in ipairs(pages) do
      local d = dom(base .. path)
      assert.matches('data%-js="on"', d, 1, false, path) -- scripts do run on this page
      local t = title(d)
      assert.not_equal("pwned", t, path)
      assert.matches(" · eventrocks$", t, 1, false, path)
      assert.not_matches("<img", d, 1, true)
      assert.not_matches("<script>", d, 1, true)
    end
    -- and the hostile values are there, as text
    local s1 = dom(base .. "/event?pos=1")
    assert.matches("&lt;img src=x onerror=", s1, 1, true)
  end)
end)
