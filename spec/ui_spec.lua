-- The web explorer: eventrocks.http (the libmicrohttpd binding) in this
-- process, then `eventrocks ui` as a child process asked with curl, over
-- ordinary stores, a live writer, and a hostile store.
local H = require "helper"
local U = require "ui_common"
local er = H.er

-- ---------------------------------------------------------------------------
describe("eventrocks.http", function()
  local http = require "eventrocks.http"

  -- run curl in the background and serve until it is done; returns what
  -- curl printed (-w and the body) and the requests seen by the handler
  local function ask(srv, curl_args, seen)
    local out = os.tmpname()
    os.execute("(" .. H.OTHER .. "curl -s -g -m 5 " .. curl_args .. " >" .. H.shquote(out) .. " 2>&1; echo done >>"
      .. H.shquote(out) .. ") &")
    for _ = 1, 400 do
      srv:run(20)
      local s = H.read_file(out) or ""
      if s:find("done\n$") then
        os.remove(out)
        return s:gsub("done\n$", "")
      end
    end
    os.remove(out)
    error("curl did not finish; seen " .. #seen)
  end

  local srv, seen
  before_each(function()
    seen = {}
    srv = assert(http.listen({ port = 0, handler = function(req)
      seen[#seen + 1] = req
      if req.path == "/fail" then error("handler failed on purpose") end
      if req.path == "/shape" then return "200", {}, {} end
      return 200, { ["Content-Type"] = "text/plain", ["X-Bad"] = "a\r\nInjected: yes", ["X-Good"] = "ok" },
        "path=" .. req.path .. "\n"
    end }))
  end)
  after_each(function() srv:close() end)

  it("listens on 127.0.0.1 on a port the kernel chose, and answers GET from Lua", function()
    assert.equal("127.0.0.1", srv.address)
    assert.is_true(srv.port > 0)
    assert.matches("http server on 127.0.0.1:%d+", tostring(srv))
    local base = "http://127.0.0.1:" .. srv.port
    local out = ask(srv, "-D - " .. H.shquote(base .. "/a%20b/c?x=1&y=%00z&x=2&empty&uni=%C3%A9"), seen)
    assert.matches("^HTTP/1.1 200", out)
    assert.matches("X%-Good: ok", out)
    assert.not_matches("Injected", out) -- a header value with CR LF is not sent
    assert.matches("path=/a b/c\n$", out)
    local req = seen[1]
    assert.equal("GET", req.method)
    assert.equal("1", req.query.x) -- the first value of a name
    assert.equal("\0z", req.query.y) -- exact bytes
    assert.equal("", req.query.empty)
    assert.equal("é", req.query.uni)
    assert.same({ { "x", "1" }, { "y", "\0z" }, { "x", "2" }, { "empty", "" }, { "uni", "é" } }, req.args)
    assert.matches("^127%.0%.0%.1:", req.headers.host)
    assert.is_string(req.headers["user-agent"])
  end)

  it("answers HEAD without a body, other methods with 405 and without calling the handler", function()
    local base = "http://127.0.0.1:" .. srv.port
    local out = ask(srv, "-I " .. H.shquote(base .. "/h"), seen)
    assert.matches("^HTTP/1.1 200", out)
    assert.not_matches("path=", out)
    out = ask(srv, "-o /dev/null -w '%{http_code}' -X POST -d 'x=1' " .. H.shquote(base .. "/p"), seen)
    assert.equal("405", out)
    out = ask(srv, "-o /dev/null -w '%{http_code}' -X DELETE " .. H.shquote(base .. "/p"), seen)
    assert.equal("405", out)
    assert.equal(1, #seen) -- the HEAD only
  end)

  it("answers a handler's error and a return of the wrong shape with 500, and goes on", function()
    local base = "http://127.0.0.1:" .. srv.port
    local out = ask(srv, "-w ' %{http_code}' " .. H.shquote(base .. "/fail"), seen)
    assert.matches("handler failed on purpose 500$", out)
    out = ask(srv, "-w ' %{http_code}' " .. H.shquote(base .. "/shape"), seen)
    assert.matches("status must be an integer.* 500$", out)
    out = ask(srv, "-w ' %{http_code}' " .. H.shquote(base .. "/ok"), seen)
    assert.equal("path=/ok\n 200", out)
  end)

  it("returns nil, err for a port in use; raises on misuse; close is idempotent", function()
    local other, err = http.listen({ port = srv.port, handler = function() end })
    assert.is_nil(other)
    assert.equal("io", err.code)
    assert.matches("in use", tostring(err))
    assert.has_error(function() http.listen({ address = "localhost", handler = function() end }) end,
      "bad argument #1 to 'listen' (address 'localhost' is not an IPv4 or IPv6 address)")
    assert.has_error(function() http.listen({ handler = 1 }) end)
    assert.has_error(function() http.listen({ hander = function() end }) end)
    assert.has_error(function() http.listen({ port = 70000, handler = function() end }) end)
    srv:close()
    srv:close()
    assert.is_true(srv.closed)
    assert.has_error(function() srv:run(0) end, "attempt to use a closed server")
    assert.equal("http server (closed)", tostring(srv))
  end)
end)

-- ---------------------------------------------------------------------------
describe("eventrocks ui", function()
  local dir, srv
  after_each(function()
    if srv then assert.is_true(U.stop(srv)) end
    srv = nil
    H.rmrf(dir)
  end)

  local function page(path)
    local status, body, hdr = U.get(srv, path)
    return status, body, hdr
  end

  -- a store of products (an aggregate with snapshots), orders and a projection
  local function shop()
    dir = H.mkdtemp()
    local s = assert(er.open(dir .. "/store"))
    local agg_file = dir .. "/aggregates.lua"
    H.write_file(agg_file, U.AGGREGATES)
    local Product = dofile(agg_file)[1]
    local repo = s:repository(Product)
    local p = repo:load("kettle")
    p:raise("ProductCreated", { name = "Kettle", price = 2500 })
    p:raise("PriceIncreased", { delta = 300 })
    p:raise("Tagged", { tag = "kitchen" })
    assert(repo:save(p))
    p = repo:load("kettle")
    p:raise("Untagged", {})
    assert(repo:save(p))
    for i = 1, 120 do
      assert(s:append("order-" .. i, { type = "OrderPlaced", data = { n = i } }))
    end
    for i = 1, 120 do assert(s:append("log-1", { type = i % 2 == 0 and "Even" or "Odd", data = i })) end
    local cause = s:event(1)
    assert(s:append("mail-1", { type = "MailSent", data = {},
      metadata = { causation_id = cause.id, correlation_id = cause.id } }))
    s:projection("orders", { category = "order", handlers = { OrderPlaced = function(view, ev)
      if ev.data.n == 7 then error("seven is refused") end
      view:put(ev.stream, ev.data)
    end }, on_error = "park" }):run()
    s:close()
    return dir .. "/store", agg_file
  end

  it("prints its URL on 127.0.0.1 and serves every page of a store", function()
    local store, agg = shop()
    srv = U.start(store, "--aggregates " .. H.shquote(agg))
    for _, path in ipairs({ "/", "/streams", "/stream?id=order-1", "/log", "/event?pos=1", "/projections",
      "/projection?name=orders", "/stats", "/aggregates", "/aggregate?name=product&id=kettle" }) do
      local status, body, hdr = page(path)
      assert.equal(200, status, path)
      assert.matches("^<!doctype html>", body)
      assert.matches("Content%-Security%-Policy: default%-src 'none'", hdr)
      assert.matches("charset=utf%-8", hdr)
    end
    assert.equal(404, (page("/nope")))
    assert.equal(400, (page("/stream")))
    assert.equal(400, (page("/log?from=abc")))
    assert.equal(404, (page("/event?pos=999999")))
  end)

  it("lists streams by prefix and category, paged, with counts", function()
    srv = U.start((shop()))
    local _, body = page("/streams")
    assert.matches('<span id="stream%-count">123</span> streams', body)
    local _, cat = page("/streams?category=order")
    assert.matches('<span id="stream%-count">120</span> streams, 120 events', cat)
    assert.matches("showing 1 to 50", cat)
    assert.matches("page 1 of 3", cat)
    local _, p3 = page("/streams?category=order&page=3")
    assert.matches("showing 101 to 120", p3)
    local n = 0
    for _ in p3:gmatch('class="stream"') do n = n + 1 end
    assert.equal(20, n)
    local _, pre = page("/streams?prefix=order-11")
    assert.matches('<span id="stream%-count">11</span>', pre) -- order-11, order-110..119
    local _, none = page("/streams?prefix=zzz")
    assert.matches('<span id="stream%-count">0</span>', none)
  end)

  it("pages a stream's events both ways", function()
    srv = U.start((shop()))
    local function versions(body)
      local v = {}
      for n in body:gmatch("<tr><td class=num><a href=\"/event%?pos=%d+\">#%d+</a></td><td>(%d+)</td>") do
        v[#v + 1] = tonumber(n)
      end
      return v
    end
    local _, last = page("/stream?id=log-1")
    local v = versions(last)
    assert.equal(50, #v)
    assert.same({ 71, 120 }, { v[1], v[50] })
    assert.matches('href="/stream%?id=log%-1&amp;to=70"', last)
    local _, older = page("/stream?id=log-1&to=70")
    v = versions(older)
    assert.same({ 21, 70 }, { v[1], v[#v] })
    local _, first = page("/stream?id=log-1&from=1")
    v = versions(first)
    assert.same({ 1, 50 }, { v[1], v[#v] })
    assert.matches('href="/stream%?id=log%-1&amp;from=51"', first)
    local _, json = page("/stream?id=log-1&from=1&format=json")
    assert.matches("<b>JSON</b>", json)
  end)

  it("shows the global log filtered by type and category", function()
    srv = U.start((shop()))
    local _, body = page("/log?type=Even&from=1")
    assert.not_matches(">Odd<", body)
    assert.matches(">Even<", body)
    local _, cat = page("/log?category=mail")
    assert.matches("MailSent", cat)
    assert.not_matches("OrderPlaced", cat)
    local _, two = page("/log?type=Even&type=MailSent&from=1")
    assert.matches("MailSent", two)
    assert.matches("Even", two)
    -- earlier pages of a filtered log read back from the end
    local _, latest = page("/log?type=Odd&before=999999")
    assert.matches("log%-1</a>@119", latest)
  end)

  it("links an event to its cause and its effects, both ways", function()
    srv = U.start((shop()))
    local _, mail = page("/event?pos=245") -- the MailSent event
    assert.matches("MailSent", mail)
    assert.matches('caused by: <a href="/event%?pos=1">#1</a>', mail)
    local _, cause = page("/event?pos=1")
    assert.matches("caused 1 event:", cause)
    assert.matches('<ul class="caused"><li><a href="/event%?pos=245">', cause)
    assert.matches("1 other event", cause)
  end)

  it("shows projections with position, lag and dead letters", function()
    srv = U.start((shop()))
    local _, body = page("/projections")
    assert.matches("orders", body)
    assert.matches('href="/projection%?name=orders">1</a>', body) -- one dead letter
    local _, dl = page("/projection?name=orders")
    assert.matches("seven is refused", dl)
    assert.matches("order%-7</a>@1", dl)
  end)

  it("shows stats with an events-over-time chart", function()
    srv = U.start((shop()))
    local _, body = page("/stats")
    assert.matches('<td id="stat%-events">245</td>', body)
    assert.matches('<svg id="chart"', body)
    local bars = 0
    for _ in body:gmatch("<rect ") do bars = bars + 1 end
    assert.equal(60, bars)
    assert.matches("every event counted", body)
  end)

  it("shows an aggregate's state at any version with what each event changed, snapshots marked", function()
    local store, agg = shop()
    srv = U.start(store, "--aggregates " .. H.shquote(agg))
    local _, now = page("/aggregate?name=product&id=kettle")
    assert.matches('state at version <span id="state%-version">4</span>', now)
    assert.matches('snapshot at version <span id="snapshot%-version">4</span>', now)
    assert.matches('class="snap"', now)
    assert.matches('<tr class="removed"><td>−</td><td><code>tags%[1%]</code></td>', now)
    local _, v2 = page("/aggregate?name=product&id=kettle&v=2")
    assert.matches('state at version <span id="state%-version">2</span>', v2)
    assert.matches('<span class="key">price</span> = 2800', v2)
    assert.matches('<tr class="changed"><td>~</td><td><code>price</code></td><td><code>2500</code></td><td>→</td><td><code>2800</code></td></tr>', v2)
    local _, v1 = page("/aggregate?name=product&id=kettle&v=1")
    assert.matches('<tr class="added"><td>%+</td><td><code>name</code></td>', v1)
    local _, stream = page("/stream?id=product-kettle")
    assert.matches('href="/aggregate%?name=product&amp;id=kettle"', stream)
    assert.equal(404, (page("/aggregate?name=nope&id=1")))
  end)

  it("follows a live writer: a new event shows at the next request", function()
    local store = shop()
    srv = U.start(store)
    local _, before = page("/stream?id=late-1")
    assert.matches('<span id="stream%-version">0</span>', before)
    local s = assert(er.open(store))
    assert(s:append("late-1", { type = "Arrived", data = { at = "now" } }))
    local _, after = page("/stream?id=late-1")
    s:close()
    assert.matches('<span id="stream%-version">1</span>', after)
    assert.matches("Arrived", after)
  end)

  it("shows deleted and truncated streams, and retention limits, without failing", function()
    local store = shop()
    local s = assert(er.open(store))
    assert(s:delete("order-3", { hard = true }))
    assert(s:truncate("log-1", 101))
    assert(s:set_stream_meta("log-1", { max_count = 15 }))
    assert(s:delete("order-4"))
    s:close()
    srv = U.start(store)
    local status, body = page("/stream?id=order-3")
    assert.equal(200, status)
    assert.matches('id="stream%-deleted"', body)
    status, body = page("/stream?id=log-1")
    assert.equal(200, status)
    assert.matches("keeps its newest 15 events", body)
    assert.matches(">106<", body) -- the first version shown: 120 - 15 + 1
    assert.not_matches(">105<", body)
    status, body = page("/stream?id=order-4")
    assert.equal(200, status)
    assert.matches("No events to show", body)
    assert.equal(404, (page("/event?pos=7"))) -- order-3's event (after the 4 of product-kettle) is gone
  end)

  it("refuses requests for another host name (DNS rebinding), and stops cleanly on SIGINT", function()
    srv = U.start((shop()))
    local status = U.get(srv, "/streams", "-H 'Host: evil.example:80'")
    assert.equal(421, status)
    assert.equal(200, (U.get(srv, "/streams", "-H 'Host: localhost:" .. srv.url:match(":(%d+)/") .. "'")))
    local err_file = srv.err
    local pid = srv.pid
    srv.err = os.tmpname() -- keep the log for the check below
    assert.is_true(U.stop(srv, "INT"))
    srv = nil
    assert.is_false(U.alive(pid))
    assert.matches("eventrocks ui: stopped", H.read_file(err_file))
    os.remove(err_file)
  end)

  it("says what is wrong with a bad --aggregates file, address or port", function()
    local store = shop()
    H.write_file(dir .. "/bad.lua", "return 42")
    local code, _, err = H.sh(H.CMD .. " ui --store " .. H.shquote(store) .. " --aggregates " .. H.shquote(dir .. "/bad.lua"))
    assert.equal(1, code)
    assert.matches("must return an aggregate", err)
    code, _, err = H.sh(H.CMD .. " ui --store " .. H.shquote(store) .. " --listen nowhere --port 0")
    assert.equal(1, code)
    assert.matches("is not an IPv4 or IPv6 address", err)
    code, _, err = H.sh(H.CMD .. " ui --store " .. H.shquote(dir .. "/missing") .. " --port 0")
    assert.equal(1, code)
    assert.matches("no store at", err)
  end)

  it("escapes every name and value of a hostile store, on every page it links to", function()
    dir = H.mkdtemp()
    U.hostile_store(dir)
    srv = U.start(dir)
    local seen, queue, pages = {}, { "/", "/log?from=1", "/projections", "/stats" }, 0
    -- the index pages, then every link they and the pages they lead to hold
    while #queue > 0 and pages < 120 do
      local path = table.remove(queue, 1)
      if not seen[path] and path:sub(1, 1) == "/" and not path:find("^/static/") then
        seen[path] = true
        pages = pages + 1
        -- the link as a browser sends it: the path and query percent-encoded
        local status, body = U.get(srv, (path:gsub("[^%w%-%._~/?=&%%]", function(c)
          return string.format("%%%02X", c:byte()) end)))
        assert.equal(200, status, path)
        local _, scripts = body:gsub("<script", "")
        assert.equal(1, scripts, path) -- our own only
        assert.matches('<script src="/static/ui.js" defer></script>', body, 1, true)
        assert.not_matches("<img", body, 1, true)
        -- every tag is one of ours, and no attribute is an event handler
        for tag, attrs in body:gmatch("<(%a%w*)([^>]*)>") do
          assert.is_true(U.TAGS[tag:lower()] or false, path .. ": tag <" .. tag .. ">")
          for name in attrs:gsub('"[^"]*"', ""):gmatch("([%w%-]+)=") do
            assert.not_matches("^on", name:lower(), nil, false, path .. ": attribute " .. name)
          end
        end
        assert.is_truthy(utf8.len(body), path .. ": not UTF-8")
        assert.not_matches("[%z\1-\8\11\12\14-\31\127]", body)
        for _, l in ipairs(U.links(body)) do if not seen[l] then queue[#queue + 1] = l end end
      end
    end
    assert.is_true(pages >= 20, "only " .. pages .. " pages reached")
    -- the stream pages of every hostile stream were among them
    for _, st in ipairs(U.HOSTILE_STREAMS) do
      local found = false
      for p in pairs(seen) do
        if p == "/stream?id=" .. U.url_encode(st) then found = true end
      end
      assert.is_true(found, "no page of stream " .. st:gsub("%c", "?"))
    end
  end)
end)

-- ---------------------------------------------------------------------------
-- The pages as functions of a store, in this process (no server).
describe("eventrocks.ui streams page", function()
  local ui = require "eventrocks.ui"
  local t, saved = {}, {}
  before_each(function()
    H.setup(t)
    for i = 1, 30 do assert(t.store:append(("s-%02d"):format(i), H.evs(2, "X"))) end
    saved.page, saved.limit = ui.PAGE, ui.COUNT_LIMIT
    ui.PAGE, ui.COUNT_LIMIT = 5, 10
  end)
  after_each(function()
    ui.PAGE, ui.COUNT_LIMIT = saved.page, saved.limit
    H.teardown(t)
  end)
  local function get(query)
    local status, _, body = ui.new(t.store):handle({ path = "/streams", query = query, headers = {} })
    assert.equal(200, status)
    local names = {}
    for name in body:gmatch('href="/stream%?id=(s%-%d+)"') do names[#names + 1] = name end
    return body, names
  end

  it("stops counting past its limit, and still pages on to the last stream", function()
    local body, names = get({})
    assert.matches("more than 10 streams; showing 1 to 5", body)
    assert.same({ "s-01", "s-02", "s-03", "s-04", "s-05" }, names)
    assert.matches("next ›", body)
    assert.not_matches("last »", body)
    assert.matches('<p class="count">page 1</p>', body)
    body, names = get({ page = "4" }) -- past the limit: counted up to its own last row
    assert.matches("more than 20 streams; showing 16 to 20", body)
    assert.same({ "s-16", "s-17", "s-18", "s-19", "s-20" }, names)
    body, names = get({ page = "6" }) -- the end is in sight: an exact count again
    assert.matches('<span id="stream%-count">30</span> streams, 60 events', body)
    assert.same({ "s-26", "s-27", "s-28", "s-29", "s-30" }, names)
    assert.matches("page 6 of 6", body)
    assert.not_matches("next ›", body)
    ui.COUNT_LIMIT = 100 -- under the limit: the whole count, and a last page
    body = get({ prefix = "s-1" })
    assert.matches('<span id="stream%-count">10</span> streams, 20 events', body)
    assert.matches("last »", body)
  end)
end)
