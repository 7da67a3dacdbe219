-- What the web explorer's specs share: stores to look at (the examples'
-- one, a hostile one), `eventrocks ui` started as a child process on a free
-- port, and curl as the client.
local H = require "helper"

local U = {}

U.url_encode = require("eventrocks.ui").url

-- The elements the explorer's pages are made of: any other one on a page
-- came from the store.
U.TAGS = {}
for t in ([[html head meta title link script body header a nav span main h1 h2 form label input
  button p table thead tbody tr th td code pre b time ul li svg rect line text div section]]):gmatch("%a%w*") do
  U.TAGS[t] = true
end

-- The event values a hostile store is made of: markup that would run
-- script or change the page's title if it reached the page unescaped.
U.IMG = "<img src=x onerror=\"document.title='pwned'\">"
U.SCRIPT = "<script>document.title='pwned'</script>"
U.HOSTILE_STREAMS = {
  U.IMG, U.SCRIPT .. "-1", "q\"'`<b>-2", "ctl\1\27[31m\127-3", "bad\255\254utf-4",
  "a&b=c?d#e/f%20+x-5", "onerror=alert(1)-6", "x\" onmouseover=\"document.title='pwned'-7",
}

--- Fill the store at `dir` with hostile names and data; returns the streams.
function U.hostile_store(dir)
  local s = assert(H.er.open(dir))
  for _, st in ipairs(U.HOSTILE_STREAMS) do
    assert(s:append(st, {
      { type = U.IMG, data = { [U.IMG] = U.SCRIPT, bin = "\0\1\255\254", nested = { U.SCRIPT, U.IMG, "\"'<>&" } },
        metadata = { [U.SCRIPT] = U.IMG, causation_id = U.IMG } },
      { type = U.SCRIPT, data = U.SCRIPT .. U.IMG, metadata = { correlation_id = U.SCRIPT } },
    }))
  end
  -- a projection whose handler fails on every event, parking them: its
  -- name, error and dead letters are hostile too
  local p = s:projection(U.SCRIPT, { on_error = "park", handlers = {
    [U.IMG] = function() error(U.IMG, 0) end,
  } })
  p:run()
  s:close()
  return U.HOSTILE_STREAMS
end

--- The aggregates file of the specs: a product with snapshots every 2 versions.
U.AGGREGATES = [[
local er = require "eventrocks"
local Product = er.aggregate("product", {
  init = function(id) return { sku = id, price = 0 } end,
  snapshot_every = 2,
  apply = {
    ProductCreated = function(s, d) s.name, s.price = d.name, d.price end,
    PriceIncreased = function(s, d) s.price = s.price + d.delta end,
    Tagged = function(s, d) s.tags = s.tags or {}; s.tags[#s.tags + 1] = d.tag end,
    Untagged = function(s) s.tags = nil end,
  },
})
return { Product }
]]

--- Start `eventrocks ui` on a free port; returns { url, pid, out, err }.
function U.start(dir, extra)
  local srv = { out = os.tmpname(), err = os.tmpname() }
  local cmd = H.CMD .. " ui --store " .. H.shquote(dir) .. " --port 0 " .. (extra or "")
    .. " >" .. H.shquote(srv.out) .. " 2>" .. H.shquote(srv.err) .. " & echo $!"
  local p = assert(io.popen(cmd))
  srv.pid = math.tointeger(tonumber(p:read("l")))
  p:close()
  for _ = 1, 200 do
    local s = H.read_file(srv.out) or ""
    srv.url = s:match("(http://127%.0%.0%.1:%d+/)")
    if srv.url then break end
    if not U.alive(srv.pid) then break end
    os.execute("sleep 0.05")
  end
  assert(srv.url, "no URL printed: " .. tostring(H.read_file(srv.out)) .. tostring(H.read_file(srv.err)))
  return srv
end

function U.alive(pid)
  return os.execute("kill -0 " .. pid .. " 2>/dev/null") == true
end

--- Stop the server with `signal` (default TERM); returns whether it exited
-- within 5 s.
function U.stop(srv, signal)
  if not srv or not srv.pid then return true end
  os.execute("kill -" .. (signal or "TERM") .. " " .. srv.pid .. " 2>/dev/null")
  for _ = 1, 100 do
    if not U.alive(srv.pid) then
      os.remove(srv.out)
      os.remove(srv.err)
      return true
    end
    os.execute("sleep 0.05")
  end
  os.execute("kill -KILL " .. srv.pid .. " 2>/dev/null")
  return false
end

--- GET path (already encoded) with curl; returns status, body, headers.
function U.get(srv, path, curl_args)
  local body, hdr = os.tmpname(), os.tmpname()
  local code, out = H.sh(H.OTHER .. "curl -s -g -m 20 -o " .. H.shquote(body) .. " -D " .. H.shquote(hdr) .. " -w '%{http_code}' "
    .. (curl_args or "") .. " " .. H.shquote(srv.url .. path:gsub("^/", "")))
  local b, h = H.read_file(body), H.read_file(hdr)
  os.remove(body)
  os.remove(hdr)
  assert(code == 0, "curl failed: " .. tostring(code))
  return math.tointeger(tonumber(out)), b, h
end

--- The hrefs of a page (HTML-unescaped: the form a browser follows).
function U.links(body)
  local out = {}
  for h in body:gmatch('href="([^"]*)"') do
    out[#out + 1] = (h:gsub("&amp;", "&"):gsub("&quot;", '"'):gsub("&#39;", "'"):gsub("&lt;", "<"):gsub("&gt;", ">"))
  end
  return out
end

return U
