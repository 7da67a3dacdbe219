--- eventrocks.ui: the web explorer (`eventrocks ui`).
--
-- Server-rendered HTML pages over a read-only store: streams, a stream's
-- events, the global log, one event with its causation and correlation,
-- projections, stats with an events-over-time chart, and the state of an
-- aggregate (defined in the user's own file) at every version with what each
-- event changed.  The server is eventrocks.http (libmicrohttpd), driven from
-- this Lua thread.
--
-- Safety: the store handle is read-only and nothing read from it is ever
-- executed; every value that reaches a page goes through `text` (made
-- printable by pretty.escape, then HTML-escaped) or `href` (percent-encoded,
-- then HTML-escaped).  Pages carry a Content-Security-Policy that allows
-- only this server's own script and style, and requests whose Host is not
-- this server's loopback address are refused (a web page elsewhere cannot
-- read the store through DNS rebinding).
local core = require "eventrocks.core"
local pretty = require "eventrocks.pretty"
local jsonl = require "eventrocks.jsonl"
local projection = require "eventrocks.projection"
local aggregate = require "eventrocks.aggregate"

local M = {}

local fmt, concat, mtype = string.format, table.concat, math.type

M.PAGE = 50          -- rows a page
M.LINK_WINDOW = 20000 -- events searched each way for causation and correlation
M.EXACT_CHART = 20000 -- up to this many events the chart counts them all
M.COUNT_LIMIT = 100000 -- the streams page counts matching streams up to this many

-- ---------------------------------------------------------------------------
-- Escaping

local HTML = { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;", ["'"] = "&#39;" }

--- HTML-escape `s` (a string that is valid UTF-8 already).
local function html(s) return (tostring(s):gsub("[&<>\"']", HTML)) end
M.html = html

--- Any bytes as HTML text: control bytes and bytes that are not UTF-8 shown
-- as \xNN (pretty.escape), then HTML-escaped.
local function text(s) return html(pretty.escape(s)) end
M.text = text

--- Percent-encode every byte but the unreserved ones (RFC 3986).
local function url(s)
  return (tostring(s):gsub("[^%w%-%._~]", function(c) return fmt("%%%02X", c:byte()) end))
end
M.url = url

--- The value of an href attribute: path and query parameters (an array of
-- {name, value}; nil values left out), encoded and escaped.
local function href(path, params)
  local q = {}
  for _, p in ipairs(params or {}) do
    if p[2] ~= nil and p[2] ~= "" then q[#q + 1] = url(p[1]) .. "=" .. url(p[2]) end
  end
  return html(#q > 0 and (path .. "?" .. concat(q, "&")) or path)
end
M.href = href

local function a(path, params, label, class)
  return fmt('<a href="%s"%s>%s</a>', href(path, params), class and fmt(' class="%s"', class) or "", label)
end

local function stream_link(stream)
  return a("/stream", { { "id", stream } }, text(stream), "stream")
end

local function event_link(position, label)
  return a("/event", { { "pos", position } }, label or ("#" .. position))
end

local function time_html(us)
  local t = pretty.time(us)
  return fmt('<time datetime="%s">%s</time>', html(t), html(t))
end

-- ---------------------------------------------------------------------------
-- Values: one line (tables) and a block (one event)

local function is_binary(v) return type(v) == "string" and not utf8.len(v) end

--- A value on one line, cut to `max` bytes; binary strings marked.
local function value_line(v, max)
  local s = html(pretty.compact(v, max or 300))
  if is_binary(v) then s = s .. fmt(' <span class="bin">binary, %d bytes</span>', #v) end
  return s
end

local function key_text(k)
  if type(k) == "string" and k:match("^[%a_][%w_]*$") then return k end
  return "[" .. pretty.compact(k) .. "]"
end

-- The value laid out over lines, indented, as HTML.
local function block(v, out, indent, depth)
  if type(v) ~= "table" then
    out[#out + 1] = value_line(v, 100000)
    return
  end
  if depth > 20 then out[#out + 1] = "{...}" return end
  local keys, n = {}, #v
  for k in pairs(v) do
    if not (mtype(k) == "integer" and k >= 1 and k <= n) then keys[#keys + 1] = k end
  end
  if n == 0 and #keys == 0 then out[#out + 1] = "{}" return end
  table.sort(keys, pretty.key_order)
  local pad = string.rep("  ", indent + 1)
  out[#out + 1] = "{\n"
  for i = 1, n do
    out[#out + 1] = pad
    block(v[i], out, indent + 1, depth + 1)
    out[#out + 1] = ",\n"
  end
  for _, k in ipairs(keys) do
    out[#out + 1] = pad .. '<span class="key">' .. html(key_text(k)) .. "</span> = "
    block(v[k], out, indent + 1, depth + 1)
    out[#out + 1] = ",\n"
  end
  out[#out + 1] = string.rep("  ", indent) .. "}"
end

--- The value as a <pre> block: Lua-like (default) or JSON (as export writes it).
local function value_block(v, as_json)
  if as_json then return '<pre class="value json">' .. html(jsonl.encode_value(v)) .. "</pre>" end
  local out = {}
  block(v, out, 0, 0)
  return '<pre class="value">' .. concat(out) .. "</pre>"
end

-- ---------------------------------------------------------------------------
-- Diffs of two states: the changed leaves, by path

local function flatten(v, path, out, depth)
  if type(v) ~= "table" or depth > 20 then
    out[#out + 1] = path
    out[path] = v
    return
  end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = k end
  table.sort(keys, pretty.key_order)
  if #keys == 0 then
    out[#out + 1] = path
    out[path] = v
    return
  end
  for _, k in ipairs(keys) do
    local name = key_text(k)
    local p = path == "" and name or (name:sub(1, 1) == "[" and path .. name or path .. "." .. name)
    flatten(v[k], p, out, depth + 1)
  end
end

local function same(x, y)
  if type(x) == "table" and type(y) == "table" then return next(x) == nil and next(y) == nil end
  if x ~= x and y ~= y then return true end -- NaN
  return x == y and mtype(x) == mtype(y)
end

--- The changes from state a to state b: an array of { path, before, after,
-- kind = "added" | "removed" | "changed" }, in path order.
function M.diff(a_state, b_state)
  local fa, fb = {}, {}
  flatten(a_state, "", fa, 0)
  flatten(b_state, "", fb, 0)
  local out, seen = {}, {}
  for _, p in ipairs(fb) do
    seen[p] = true
    if fa[p] == nil then out[#out + 1] = { path = p, after = fb[p], kind = "added" }
    elseif not same(fa[p], fb[p]) then out[#out + 1] = { path = p, before = fa[p], after = fb[p], kind = "changed" } end
  end
  for _, p in ipairs(fa) do
    if not seen[p] then out[#out + 1] = { path = p, before = fa[p], kind = "removed" } end
  end
  table.sort(out, function(x, y) return x.path < y.path end)
  return out
end

-- ---------------------------------------------------------------------------
-- Requests and pages

local function bad_request(msg) error({ status = 400, message = msg }, 0) end
local function not_found(msg) error({ status = 404, message = msg }, 0) end

-- query parameter `name` as an integer >= min, or nil when absent
local function int_param(q, name, min)
  local s = q[name]
  if s == nil or s == "" then return nil end
  local n = math.tointeger(tonumber(s))
  if not n or n < (min or 1) then bad_request(fmt("%s must be an integer >= %d", name, min or 1)) end
  return n
end

local NAV = {
  { "/streams", "Streams" }, { "/log", "Log" }, { "/projections", "Projections" },
  { "/stats", "Stats" }, { "/aggregates", "Aggregates" },
}

local App = {}
App.__index = App

function App:page(title, current, body)
  local nav = {}
  for _, n in ipairs(NAV) do
    nav[#nav + 1] = fmt('<a href="%s"%s>%s</a>', n[1], n[1] == current and ' aria-current="page"' or "", n[2])
  end
  return concat({
    '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">',
    '<meta name="viewport" content="width=device-width, initial-scale=1">',
    "<title>", title, " · eventrocks</title>",
    '<link rel="stylesheet" href="/static/ui.css"><script src="/static/ui.js" defer></script>',
    '</head><body><header><a class="brand" href="/">eventrocks</a><nav>', concat(nav, " "),
    '</nav><span class="store" title="store directory">', text(self.dir or ""), "</span></header>\n<main>",
    body, "</main></body></html>\n",
  })
end

-- A pager: links as an array of {label, path, params} (nil entries left out).
local function pager(links)
  local out = {}
  for _, l in ipairs(links) do
    if l then out[#out + 1] = a(l[2], l[3], html(l[1])) end
  end
  return '<p class="pager">' .. concat(out, " ") .. "</p>"
end

-- Streams: filter by prefix and category, paged, counted.
function App:streams(q)
  local prefix, category = q.prefix, q.category
  local page = int_param(q, "page") or 1
  local size = M.PAGE
  local scan = prefix or ""
  if category and category ~= "" then
    if scan == "" or (category:sub(1, #scan) == scan) then scan = category
    elseif scan:sub(1, #category) ~= category then scan = nil end -- nothing can match
  else
    category = nil
  end
  -- Counting stops past COUNT_LIMIT streams (and past the page asked for):
  -- a page costs at most that many steps whatever the size of the store.
  local rows, n, events, more = {}, 0, 0, false
  local first, last = (page - 1) * size + 1, page * size
  local stop = math.max(M.COUNT_LIMIT, last)
  if scan then
    for stream, version in self.store:streams({ prefix = scan ~= "" and scan or nil }) do
      if not category or core.category(stream) == category then
        if n >= stop then more = true break end
        n = n + 1
        events = events + version
        if n >= first and n <= last then rows[#rows + 1] = { stream, version } end
      end
    end
  end
  local counted = more and fmt("more than %d streams", n)
    or fmt('<span id="stream-count">%d</span> streams, %d events (versions added up)', n, events)
  local out = { "<h1>Streams</h1>",
    '<form method="get" action="/streams" class="filter">',
    '<label>prefix <input name="prefix" value="', text(prefix or ""), '"></label> ',
    '<label>category <input name="category" value="', text(category or ""), '"></label> ',
    '<button type="submit">filter</button></form>',
    fmt('<p class="count">%s%s</p>', counted,
      n > 0 and fmt("; showing %d to %d", math.min(first, n), math.min(last, n)) or ""),
    '<table class="streams"><thead><tr><th>stream</th><th>category</th><th>version</th></tr></thead><tbody>' }
  for _, r in ipairs(rows) do
    local cat = core.category(r[1])
    out[#out + 1] = fmt("<tr><td>%s</td><td>%s</td><td class=num>%d</td></tr>", stream_link(r[1]),
      a("/streams", { { "category", cat } }, text(cat)), r[2])
  end
  out[#out + 1] = "</tbody></table>"
  local params = function(p) return { { "prefix", prefix }, { "category", category }, { "page", p } } end
  local pages = math.max(1, (n + size - 1) // size)
  out[#out + 1] = pager({
    page > 1 and { "« first", "/streams", params(1) } or false,
    page > 1 and { "‹ previous", "/streams", params(page - 1) } or false,
    (more or page < pages) and { "next ›", "/streams", params(page + 1) } or false,
    not more and page < pages and { "last »", "/streams", params(pages) } or false,
  }) .. (more and fmt('<p class="count">page %d</p>', page) or fmt('<p class="count">page %d of %d</p>', page, pages))
  return self:page("Streams", "/streams", concat(out))
end

-- The rows of a table of events; `with_stream` adds the stream column.
local function event_rows(evs, with_stream, as_json)
  local out = { "<table class=events><thead><tr><th>position</th>",
    with_stream and "<th>stream@version</th>" or "<th>version</th>",
    "<th>type</th><th>time</th><th>data</th><th>metadata</th></tr></thead><tbody>" }
  for _, ev in ipairs(evs) do
    local data = as_json and html(jsonl.encode_value(ev.data)) or value_line(ev.data)
    local meta = next(ev.metadata) == nil and "" or (as_json and html(jsonl.encode_value(ev.metadata)) or value_line(ev.metadata))
    out[#out + 1] = fmt("<tr><td class=num>%s</td><td>%s</td><td>%s</td><td>%s</td><td><code>%s</code></td><td><code>%s</code></td></tr>",
      event_link(ev.position),
      with_stream and (stream_link(ev.stream) .. "@" .. ev.version) or tostring(ev.version),
      a("/log", { { "type", ev.type } }, text(ev.type), "type"),
      time_html(ev.time), data, meta)
  end
  out[#out + 1] = "</tbody></table>"
  return concat(out)
end

local function format_links(path, params, as_json)
  local lua_p, json_p = {}, {}
  for i, p in ipairs(params) do lua_p[i], json_p[i] = p, p end
  json_p[#json_p + 1] = { "format", "json" }
  return fmt('<p class="formats">data as %s · %s</p>',
    as_json and a(path, lua_p, "Lua") or "<b>Lua</b>", as_json and "<b>JSON</b>" or a(path, json_p, "JSON"))
end

function App:aggregate_of(stream)
  local cat = core.category(stream)
  if self.aggregates[cat] and #stream > #cat + 1 then return cat, stream:sub(#cat + 2) end
end

-- One stream's events, paged both ways: `to` (a backward page ending
-- there; the default ends at the last version) or `from` (forward).
function App:stream(q)
  local id = q.id
  if not id or id == "" then bad_request("which stream? (id=...)") end
  local store = self.store
  local version = store:version(id)
  local from, to = int_param(q, "from"), int_param(q, "to")
  local as_json = q.format == "json"
  local evs, deleted = {}, false
  local function each(opts)
    local it, err = store:read(id, opts)
    if not it then
      if err.code ~= "stream_deleted" then error(err, 0) end
      deleted = true
      return function() end
    end
    return it
  end
  if from then
    for ev in each({ from = from, count = M.PAGE }) do evs[#evs + 1] = ev end
  elseif (to or version) >= 1 then
    for ev in each({ from = to or version, count = M.PAGE, backward = true }) do
      table.insert(evs, 1, ev)
    end
  end
  local meta = store:stream_meta(id)
  local out = { "<h1>Stream <code>", text(id), "</code></h1>",
    fmt('<p class="count">version <span id="stream-version">%d</span> · category %s', version,
      a("/streams", { { "category", core.category(id) } }, text(core.category(id)))) }
  if meta.max_count then out[#out + 1] = fmt(" · keeps its newest %d events", meta.max_count) end
  if meta.max_age then out[#out + 1] = fmt(" · keeps events younger than %d s", meta.max_age) end
  local agg = self:aggregate_of(id)
  if agg then
    local _, agg_id = self:aggregate_of(id)
    out[#out + 1] = " · " .. a("/aggregate", { { "name", agg }, { "id", agg_id } }, "state over time")
  end
  out[#out + 1] = "</p>"
  if deleted then
    out[#out + 1] = '<p id="stream-deleted">This stream was deleted for good (a hard delete): its events are gone.</p>'
  elseif version == 0 and #evs == 0 then
    out[#out + 1] = "<p>No such stream.</p>"
  elseif #evs == 0 and not from and not to then
    out[#out + 1] = "<p>No events to show: they were deleted or truncated.</p>"
  end
  local fmtp = as_json and "json" or nil
  out[#out + 1] = format_links("/stream", { { "id", id }, from and { "from", from } or { "to", to } }, as_json)
  out[#out + 1] = event_rows(evs, false, as_json)
  local lo, hi = evs[1] and evs[1].version, evs[#evs] and evs[#evs].version
  out[#out + 1] = pager({
    lo and lo > 1 and { "« first", "/stream", { { "id", id }, { "from", 1 }, { "format", fmtp } } } or false,
    lo and lo > 1 and { "‹ older", "/stream", { { "id", id }, { "to", lo - 1 }, { "format", fmtp } } } or false,
    hi and hi < version and { "newer ›", "/stream", { { "id", id }, { "from", hi + 1 }, { "format", fmtp } } } or false,
    hi and hi < version and { "latest »", "/stream", { { "id", id }, { "format", fmtp } } } or false,
  })
  return self:page("Stream " .. text(id), "/streams", concat(out))
end

-- The global log, filtered by type (repeatable) and category, from a position.
function App:log(q, args)
  local types = {}
  for _, p in ipairs(args) do if p[1] == "type" and p[2] ~= "" then types[#types + 1] = p[2] end end
  local category = q.category ~= "" and q.category or nil
  local filtered = #types > 0 or category ~= nil
  local last = self.store:last_position()
  local from, before = int_param(q, "from"), int_param(q, "before")
  local as_json = q.format == "json"
  local opts = { category = category, types = #types > 0 and types or nil }
  local evs = {}
  if before then
    -- a page that ends before `before`: read back in growing chunks
    local chunk, hi = M.PAGE * 4, before - 1
    while hi >= 1 and #evs < M.PAGE do
      local lo, got = math.max(1, hi - chunk + 1), {}
      opts.from, opts.count = lo, nil
      for ev in self.store:all(opts) do
        if ev.position > hi then break end
        got[#got + 1] = ev
      end
      for i = #got, 1, -1 do
        if #evs >= M.PAGE then break end
        table.insert(evs, 1, got[i])
      end
      hi, chunk = lo - 1, chunk * 2
    end
  else
    if not from then from = filtered and 1 or math.max(1, last - M.PAGE + 1) end
    opts.from, opts.count = from, M.PAGE
    for ev in self.store:all(opts) do evs[#evs + 1] = ev end
  end
  local out = { "<h1>Global log</h1>",
    '<form method="get" action="/log" class="filter">',
    '<label>type <input name="type" value="', text(types[1] or ""), '"></label> ',
    '<label>category <input name="category" value="', text(category or ""), '"></label> ',
    '<button type="submit">filter</button></form>',
    fmt('<p class="count">last position %d%s</p>', last, filtered and " · filtered" or "") }
  if #types > 1 then
    local names = {}
    for i, t in ipairs(types) do names[i] = "<code>" .. text(t) .. "</code>" end
    out[#out + 1] = "<p>types: " .. concat(names, ", ") .. "</p>"
  end
  local base = {}
  for _, t in ipairs(types) do base[#base + 1] = { "type", t } end
  base[#base + 1] = { "category", category }
  local function with(k, v)
    local p = { table.unpack(base) }
    p[#p + 1] = { k, v }
    if as_json then p[#p + 1] = { "format", "json" } end
    return p
  end
  out[#out + 1] = format_links("/log", with(from and "from" or "before", from or before), as_json)
  out[#out + 1] = event_rows(evs, true, as_json)
  local lo, hi = evs[1] and evs[1].position, evs[#evs] and evs[#evs].position
  out[#out + 1] = pager({
    { "« first", "/log", with("from", 1) },
    lo and lo > 1 and { "‹ earlier", "/log", with("before", lo) } or false,
    hi and hi < last and { "later ›", "/log", with("from", hi + 1) } or false,
    { "latest »", "/log", with("before", last + 1) },
  })
  return self:page("Log", "/log", concat(out))
end

-- Search the log around `pos` (M.LINK_WINDOW each way) for the event with
-- id `cause`, the events caused by `id`, and those of correlation `corr`.
function App:links(pos, id, cause, corr)
  local found = { caused = {}, correlated = {} }
  local lo = math.max(1, pos - M.LINK_WINDOW)
  local hi = math.min(self.store:last_position(), pos + M.LINK_WINDOW)
  for ev in self.store:all({ from = lo, count = hi - lo + 1 }) do
    if ev.position > hi then break end
    if ev.position ~= pos then
      local m = ev.metadata
      if cause and ev.id == cause then found.cause = ev end
      if m.causation_id == id then found.caused[#found.caused + 1] = ev end
      if corr and (m.correlation_id == corr or ev.id == corr) then
        found.correlated[#found.correlated + 1] = ev
      end
    end
  end
  found.lo, found.hi = lo, hi
  return found
end

local function short_event(ev)
  return fmt("<li>%s %s@%d <span class=type>%s</span> %s</li>", event_link(ev.position), stream_link(ev.stream),
    ev.version, text(ev.type), time_html(ev.time))
end

function App:event(q)
  local pos = int_param(q, "pos")
  if not pos then bad_request("which event? (pos=...)") end
  local ev = self.store:event(pos)
  if not ev then not_found(fmt("no event at position %d", pos)) end
  local as_json = q.format == "json"
  local out = { fmt('<h1>Event <span id="event-position">#%d</span></h1>', pos),
    "<table class=fields><tbody>",
    "<tr><th>id</th><td><code>", text(ev.id), "</code></td></tr>",
    "<tr><th>stream</th><td>", stream_link(ev.stream), "</td></tr>",
    "<tr><th>version</th><td>", a("/stream", { { "id", ev.stream }, { "from", ev.version } }, tostring(ev.version)), "</td></tr>",
    "<tr><th>type</th><td>", a("/log", { { "type", ev.type } }, text(ev.type), "type"), "</td></tr>",
    "<tr><th>time</th><td>", time_html(ev.time), "</td></tr>" }
  if ev.subject then out[#out + 1] = "<tr><th>subject</th><td><code>" .. text(ev.subject) .. "</code></td></tr>" end
  if ev.forgotten then out[#out + 1] = "<tr><th>forgotten</th><td>yes: its subject's key was destroyed</td></tr>" end
  out[#out + 1] = "</tbody></table>"
  out[#out + 1] = format_links("/event", { { "pos", pos } }, as_json)
  out[#out + 1] = "<h2>data</h2>" .. value_block(ev.data, as_json)
  out[#out + 1] = "<h2>metadata</h2>" .. value_block(ev.metadata, as_json)
  local m = ev.metadata
  local cause = type(m.causation_id) == "string" and m.causation_id or nil
  local corr = type(m.correlation_id) == "string" and m.correlation_id or ev.id
  local l = self:links(pos, ev.id, cause, corr)
  out[#out + 1] = fmt('<h2>causation and correlation</h2><p class="note">searched positions %d to %d</p>', l.lo, l.hi)
  if cause then
    out[#out + 1] = "<p>caused by: " .. (l.cause and (event_link(l.cause.position) .. " " .. stream_link(l.cause.stream)
      .. "@" .. l.cause.version .. " <span class=type>" .. text(l.cause.type) .. "</span>")
      or ("<code>" .. text(cause) .. "</code> (not found in the positions searched)")) .. "</p>"
  end
  out[#out + 1] = fmt('<p>caused %d event%s:</p><ul class="caused">', #l.caused, #l.caused == 1 and "" or "s")
  for _, e in ipairs(l.caused) do out[#out + 1] = short_event(e) end
  out[#out + 1] = fmt('</ul><p>correlation <code>%s</code>: %d other event%s</p><ul class="correlated">', text(corr),
    #l.correlated, #l.correlated == 1 and "" or "s")
  for _, e in ipairs(l.correlated) do out[#out + 1] = short_event(e) end
  out[#out + 1] = "</ul>"
  out[#out + 1] = pager({
    pos > 1 and { "‹ previous position", "/event", { { "pos", pos - 1 } } } or false,
    pos < self.store:last_position() and { "next position ›", "/event", { { "pos", pos + 1 } } } or false,
  })
  return self:page("Event #" .. pos, "/log", concat(out))
end

function App:projections()
  local list = projection.list(self.store)
  local out = { "<h1>Projections</h1>",
    "<table class=projections><thead><tr><th>name</th><th>source</th><th>position</th><th>lag</th>",
    "<th>dead letters</th><th>skipped</th><th>last error</th></tr></thead><tbody>" }
  for _, p in ipairs(list) do
    out[#out + 1] = fmt("<tr><td>%s</td><td>%s</td><td class=num>%s</td><td class=num>%s</td><td class=num>%s</td><td class=num>%d</td><td>%s</td></tr>",
      a("/projection", { { "name", p.name } }, text(p.name)), text(p.source),
      p.position and event_link(p.position, tostring(p.position)) or "damaged",
      p.lag and tostring(p.lag) or "", p.dead_letters > 0 and a("/projection", { { "name", p.name } }, tostring(p.dead_letters)) or "0",
      p.skipped, p.last_error and ("<code>" .. text(p.last_error) .. "</code>") or "")
  end
  out[#out + 1] = "</tbody></table>"
  if #list == 0 then out[#out + 1] = "<p>No projections in this store.</p>" end
  return self:page("Projections", "/projections", concat(out))
end

function App:projection(q)
  local name = q.name
  if not name or name == "" then bad_request("which projection? (name=...)") end
  local p
  for _, x in ipairs(projection.list(self.store)) do if x.name == name then p = x end end
  if not p then not_found("no projection named " .. pretty.escape(name)) end
  local out = { "<h1>Projection <code>", text(name), "</code></h1>",
    fmt('<p>position %s · lag %s · %d dead letters · %d skipped</p>',
      p.position and event_link(p.position, tostring(p.position)) or "damaged", p.lag and tostring(p.lag) or "?",
      p.dead_letters, p.skipped),
    "<h2>dead letters</h2><table class=dead><thead><tr><th>position</th><th>stream@version</th><th>type</th><th>failed at</th><th>error</th></tr></thead><tbody>" }
  for _, l in ipairs(projection.dead_letters_of(self.store, name)) do
    local pos = mtype(l.position) == "integer" and l.position
    out[#out + 1] = fmt("<tr><td class=num>%s</td><td>%s@%s</td><td>%s</td><td>%s</td><td><code>%s</code></td></tr>",
      pos and event_link(pos) or "?", type(l.stream) == "string" and stream_link(l.stream) or "?",
      text(tostring(l.version)), text(tostring(l.type)), mtype(l.at) == "integer" and time_html(l.at) or "",
      text(tostring(l.error)))
  end
  out[#out + 1] = "</tbody></table>"
  return self:page("Projection " .. text(name), "/projections", concat(out))
end

-- Events over time: `buckets` counts between the first and the last
-- event's time.  Exact up to M.EXACT_CHART events; beyond, estimated from
-- evenly spaced positions (the events between two samples spread over the
-- time between them).
function App:histogram(last, buckets)
  local store = self.store
  local counts = {}
  for i = 1, buckets do counts[i] = 0 end
  if last == 0 then return counts end
  local samples, exact = {}, last <= M.EXACT_CHART
  if exact then
    for ev in store:all() do samples[#samples + 1] = { ev.time, ev.position } end
  else
    local n = 400
    for i = 0, n do
      local p = 1 + (last - 1) * i // n
      for ev in store:all({ from = p, count = 1 }) do
        if samples[#samples] == nil or samples[#samples][2] < ev.position then samples[#samples + 1] = { ev.time, ev.position } end
      end
    end
  end
  if #samples == 0 then return counts end
  local t0, t1 = math.huge, -math.huge
  for _, s in ipairs(samples) do t0, t1 = math.min(t0, s[1]), math.max(t1, s[1]) end
  local width = math.max(1, (t1 - t0 + 1) / buckets)
  local function bucket(t) return math.min(buckets, 1 + math.floor((t - t0) / width)) end
  if exact then
    for _, s in ipairs(samples) do local b = bucket(s[1]) counts[b] = counts[b] + 1 end
  else
    counts[bucket(samples[1][1])] = counts[bucket(samples[1][1])] + 1
    for i = 2, #samples do
      local ta, tb = samples[i - 1][1], samples[i][1]
      if ta > tb then ta, tb = tb, ta end
      local n = samples[i][2] - samples[i - 1][2]
      local ba, bb = bucket(ta), bucket(tb)
      for b = ba, bb do counts[b] = counts[b] + n / (bb - ba + 1) end
    end
  end
  return counts, t0, t1, exact
end

local function chart_svg(counts, t0, t1, exact)
  local w, h, n = 800, 200, #counts
  local max = 0
  for _, c in ipairs(counts) do max = math.max(max, c) end
  local out = { fmt('<svg id="chart" class="chart" viewBox="0 0 %d %d" width="%d" height="%d" role="img" aria-label="events over time">',
    w, h + 30, w, h + 30) }
  local bw = w / n
  for i, c in ipairs(counts) do
    local bh = max > 0 and (c / max) * h or 0
    out[#out + 1] = fmt('<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="#4a7bd0"><title>%s%d events</title></rect>',
      (i - 1) * bw, h - bh, math.max(1, bw - 1), bh, exact and "" or "about ", math.floor(c + 0.5))
  end
  out[#out + 1] = fmt('<line x1="0" y1="%d" x2="%d" y2="%d" stroke="#888"/>', h, w, h)
  if t0 then
    out[#out + 1] = fmt('<text x="0" y="%d" font-size="12" fill="#555">%s</text>', h + 18, html(pretty.time(math.floor(t0))))
    out[#out + 1] = fmt('<text x="%d" y="%d" font-size="12" fill="#555" text-anchor="end">%s</text>', w, h + 18,
      html(pretty.time(math.floor(t1))))
  end
  out[#out + 1] = fmt('<text x="4" y="14" font-size="12" fill="#555">max %d / bucket</text></svg>', math.floor(max + 0.5))
  return concat(out)
end

function App:stats()
  local st = self.store:stats()
  local out = { "<h1>Stats</h1><table class=fields><tbody>",
    fmt('<tr><th>events</th><td id="stat-events">%d</td></tr>', st.events),
    fmt("<tr><th>streams</th><td>%d</td></tr>", st.streams),
    fmt("<tr><th>last position</th><td>%d</td></tr>", st.last_position),
    fmt("<tr><th>bytes on disk</th><td>%d (%.1f MiB)</td></tr>", st.bytes_on_disk, st.bytes_on_disk / 1048576),
    "</tbody></table><h2>events over time</h2>" }
  local counts, t0, t1, exact = self:histogram(st.last_position, 60)
  out[#out + 1] = chart_svg(counts, t0, t1, exact)
  out[#out + 1] = fmt('<p class="note">%s</p>', exact and "every event counted"
    or "estimated from 400 evenly spaced positions")
  out[#out + 1] = "<h2>column families</h2><table><thead><tr><th>family</th><th>bytes</th><th>keys</th></tr></thead><tbody>"
  local names = {}
  for name in pairs(st.families or {}) do names[#names + 1] = name end
  table.sort(names)
  for _, name in ipairs(names) do
    local f = st.families[name]
    out[#out + 1] = fmt("<tr><td>%s</td><td class=num>%s</td><td class=num>%s</td></tr>", text(name),
      text(tostring(f.bytes)), text(tostring(f.keys)))
  end
  out[#out + 1] = "</tbody></table>"
  return self:page("Stats", "/stats", concat(out))
end

function App:aggregates_page()
  local out = { "<h1>Aggregates</h1>" }
  if #self.aggregate_names == 0 then
    out[#out + 1] = "<p>No aggregates defined: start with <code>eventrocks ui --aggregates FILE.lua</code>, "
      .. "a file that returns the <code>er.aggregate</code> definitions of the application.</p>"
  else
    out[#out + 1] = "<ul class=aggregates>"
    for _, name in ipairs(self.aggregate_names) do
      out[#out + 1] = "<li>" .. a("/streams", { { "category", name } }, text(name)) .. "</li>"
    end
    out[#out + 1] = "</ul><p>Open one of their streams and follow “state over time”.</p>"
  end
  return self:page("Aggregates", "/aggregates", concat(out))
end

local DIFF_MARK = { added = "+", removed = "−", changed = "~" }

local function diff_list(changes)
  if #changes == 0 then return '<p class="note">no change</p>' end
  local out = { '<table class="diff"><tbody>' }
  for _, c in ipairs(changes) do
    out[#out + 1] = fmt('<tr class="%s"><td>%s</td><td><code>%s</code></td><td><code>%s</code></td><td>→</td><td><code>%s</code></td></tr>',
      c.kind, DIFF_MARK[c.kind], html(c.path == "" and "(state)" or c.path),
      c.kind == "added" and "" or value_line(c.before), c.kind == "removed" and "" or value_line(c.after))
  end
  out[#out + 1] = "</tbody></table>"
  return concat(out)
end

-- An aggregate's state at version v (default: the last), the events of a
-- page around it, each with what it changed; the snapshot marked.
function App:aggregate(q)
  local name, id = q.name, q.id
  local class = name and self.aggregates[name]
  if not class then not_found("no aggregate named " .. pretty.escape(tostring(name)) .. " (see --aggregates)") end
  if not id or id == "" then bad_request("which aggregate? (id=...)") end
  local repo = self.store:repository(class)
  local stream = name .. "-" .. id
  local version = self.store:version(stream)
  local v = int_param(q, "v", 0) or version
  if v > version then v = version end
  local from = int_param(q, "from") or math.max(1, v - M.PAGE // 2)
  local ok, rows, before = pcall(repo.history, repo, id, { from = from, count = M.PAGE })
  local out = { "<h1>Aggregate <code>", text(name), "</code> <code>", text(id), "</code></h1>",
    fmt('<p>stream %s · version %d</p>', stream_link(stream), version) }
  if not ok then
    out[#out + 1] = '<p class="error">the state cannot be rebuilt: <code>' .. text(tostring(rows)) .. "</code></p>"
    return self:page("Aggregate " .. text(stream), "/aggregates", concat(out))
  end
  local snap = self.store:_get("snapshots", stream)
  local snap_v = type(snap) == "table" and mtype(snap.version) == "integer" and snap.version or nil
  if snap_v then
    out[#out + 1] = fmt('<p class="snapshot-note">snapshot at version <span id="snapshot-version">%d</span> (schema %s)</p>',
      snap_v, text(tostring(snap.schema)))
  end
  -- the state at v: from the rows, else loaded
  local state_v, prev = nil, before
  local changes_v, ev_v
  for _, r in ipairs(rows) do
    local changes = M.diff(prev, r.state)
    r.changes = changes
    if r.version == v then state_v, changes_v, ev_v = r.state, changes, r end
    prev = r.state
  end
  if not state_v then
    local agg_ok, agg = pcall(repo.load, repo, id, { version = v })
    if agg_ok then state_v = agg.state
    else out[#out + 1] = '<p class="error">' .. text(tostring(agg)) .. "</p>" end
  end
  out[#out + 1] = '<div class="cols"><section><h2>events</h2><table class="history"><thead><tr><th>version</th><th>type</th><th>time</th><th>changed</th></tr></thead><tbody>'
  for _, r in ipairs(rows) do
    local paths = {}
    for i, c in ipairs(r.changes) do
      if i > 4 then paths[#paths + 1] = "…" break end
      paths[#paths + 1] = DIFF_MARK[c.kind] .. html(c.path == "" and "(state)" or c.path)
    end
    out[#out + 1] = fmt('<tr%s><td class=num>%s%s</td><td>%s</td><td>%s</td><td><code>%s</code></td></tr>',
      r.version == v and ' class="current"' or "",
      a("/aggregate", { { "name", name }, { "id", id }, { "v", r.version }, { "from", from } }, tostring(r.version)),
      r.version == snap_v and ' <span class="snap" title="snapshot stored at this version">snapshot</span>' or "",
      text(r.type), time_html(r.time), concat(paths, " "))
  end
  out[#out + 1] = "</tbody></table>"
  out[#out + 1] = pager({
    from > 1 and { "‹ earlier", "/aggregate", { { "name", name }, { "id", id }, { "v", v }, { "from", math.max(1, from - M.PAGE) } } } or false,
    from + M.PAGE <= version and { "later ›", "/aggregate", { { "name", name }, { "id", id }, { "v", v }, { "from", from + M.PAGE } } } or false,
  })
  out[#out + 1] = fmt('</section><section><h2>state at version <span id="state-version">%d</span></h2>', v)
  out[#out + 1] = value_block(state_v)
  if ev_v then
    out[#out + 1] = fmt("<h2>what version %d changed</h2><p>%s</p>", v,
      text(ev_v.type) .. " · " .. value_line(ev_v.data))
    out[#out + 1] = diff_list(changes_v)
  end
  out[#out + 1] = "</section></div>"
  return self:page("Aggregate " .. text(stream), "/aggregates", concat(out))
end

-- ---------------------------------------------------------------------------
-- Static files (our own; nothing from elsewhere)

M.CSS = [[
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#222;background:#fafafa}
header{display:flex;gap:1em;align-items:center;background:#233;color:#fff;padding:.5em 1em}
header a{color:#dfe;text-decoration:none}header .brand{font-weight:bold;color:#fff}
nav a{margin-right:.8em}nav a[aria-current]{text-decoration:underline}
header .store{margin-left:auto;opacity:.7;font-family:monospace}
main{padding:1em}h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.2em}
table{border-collapse:collapse;background:#fff}td,th{border:1px solid #ddd;padding:.2em .5em;text-align:left;vertical-align:top}
td.num{text-align:right;font-variant-numeric:tabular-nums}
code,pre{font-family:ui-monospace,monospace;font-size:13px}
pre.value{background:#fff;border:1px solid #ddd;padding:.5em;white-space:pre-wrap;word-break:break-all}
.events td code{word-break:break-all}.bin{background:#fde;color:#805;padding:0 .3em;border-radius:3px;font-size:11px}
.key{color:#256}.type{color:#075}.pager a{margin-right:1em}.note,.count{color:#666}
.filter input{width:14em}.error{color:#a00}
tr.current{background:#eef6ff}.snap{background:#ffe9a8;padding:0 .3em;border-radius:3px;font-size:11px}
.diff tr.added td{background:#e9f8e9}.diff tr.removed td{background:#fbe9e9}.diff tr.changed td{background:#fff6e0}
.cols{display:flex;gap:2em;flex-wrap:wrap}.cols section{min-width:20em}
]]

-- Our only script: times shown in the browser's time zone as a tooltip,
-- and a mark that scripts run (the browser spec checks it).
M.JS = [[
document.documentElement.setAttribute("data-js", "on");
for (const t of document.querySelectorAll("time[datetime]")) {
  const d = new Date(t.getAttribute("datetime"));
  if (!isNaN(d)) t.title = d.toString();
}
]]

-- ---------------------------------------------------------------------------
-- Dispatch

local SECURITY = {
  ["Content-Security-Policy"] = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    .. "form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
  ["X-Frame-Options"] = "DENY",
  ["Referrer-Policy"] = "no-referrer",
  ["Cache-Control"] = "no-store",
}

local function headers(ctype)
  local h = { ["Content-Type"] = ctype }
  for k, v in pairs(SECURITY) do h[k] = v end
  return h
end

local ROUTES = {
  ["/"] = "streams", ["/streams"] = "streams", ["/stream"] = "stream", ["/log"] = "log",
  ["/event"] = "event", ["/projections"] = "projections", ["/projection"] = "projection",
  ["/stats"] = "stats", ["/aggregates"] = "aggregates_page", ["/aggregate"] = "aggregate",
}

--- Answer one request (the table eventrocks.http passes): status, headers, body.
function App:handle(req)
  if self.hosts and not self.hosts[(req.headers.host or ""):lower()] then
    return 421, headers("text/plain; charset=utf-8"), "this server answers requests for its own address only\n"
  end
  if req.path == "/static/ui.css" then return 200, headers("text/css; charset=utf-8"), M.CSS end
  if req.path == "/static/ui.js" then return 200, headers("text/javascript; charset=utf-8"), M.JS end
  if req.path == "/favicon.ico" then return 204, headers("text/plain"), "" end
  local route = ROUTES[req.path]
  if not route then
    return 404, headers("text/html; charset=utf-8"), self:page("Not found", nil,
      "<h1>Not found</h1><p>No page <code>" .. text(req.path) .. "</code>.</p>")
  end
  if self.store._is_read_only and self.store:_is_read_only() then self.store:refresh() end
  local ok, body = pcall(self[route], self, req.query, req.args)
  if ok then return 200, headers("text/html; charset=utf-8"), body end
  local status, msg = 500, body
  if type(body) == "table" and body.status then status, msg = body.status, body.message end
  return status, headers("text/html; charset=utf-8"), self:page("Error", nil,
    fmt("<h1>%d</h1><p class=error>%s</p>", status, text(tostring(msg))))
end

--- The aggregates a file defines: `path` is run (it is the user's own
-- code, like the application's) and must return an aggregate class, or a
-- table of them (array or by name).  Returns a table name -> class.
function M.load_aggregates(path)
  local chunk, err = loadfile(path, "t")
  if not chunk then return nil, err end
  local ok, res = pcall(chunk)
  if not ok then return nil, path .. ": " .. tostring(res) end
  local out = {}
  local function add(x)
    local name = aggregate.name_of(x)
    if name then out[name] = x return true end
  end
  if not add(res) then
    if type(res) ~= "table" then
      return nil, path .. " must return an aggregate (er.aggregate) or a table of them"
    end
    for _, x in pairs(res) do add(x) end
    if next(out) == nil then return nil, path .. " returned no aggregate (er.aggregate definitions)" end
  end
  return out
end

--- new(store, {dir =, aggregates = {name = class}, hosts = {"host:port", ...}})
-- -> app, whose app:handle(req) answers a request.
function M.new(store, opts)
  opts = opts or {}
  local names = {}
  for name in pairs(opts.aggregates or {}) do names[#names + 1] = name end
  table.sort(names)
  local hosts
  if opts.hosts then
    hosts = {}
    for _, h in ipairs(opts.hosts) do hosts[h:lower()] = true end
  end
  return setmetatable({ store = store, dir = opts.dir, aggregates = opts.aggregates or {},
    aggregate_names = names, hosts = hosts }, App)
end

local function loopback(addr) return addr == "127.0.0.1" or addr == "::1" or addr:match("^127%.") ~= nil end

--- serve{store =, dir =, port =, listen =, aggregates =, out =, ready =}:
-- listen, print the URL to `out` (default io.stdout), and answer requests
-- until SIGINT or SIGTERM (or `stop()` returns true); then close the
-- server.  Returns true, or nil, err when it cannot listen.
function M.serve(o)
  local http = require "eventrocks.http"
  local uv = require "luv"
  local address = o.listen or "127.0.0.1"
  local app
  local srv, err = http.listen({ address = address, port = o.port or 8080,
    handler = function(req) return app:handle(req) end })
  if not srv then return nil, err end
  local _ <close> = srv
  local host = address:find(":", 1, true) and ("[" .. address .. "]") or address
  local hosts
  if loopback(address) then
    hosts = { host .. ":" .. srv.port, "localhost:" .. srv.port }
  end
  app = M.new(o.store, { dir = o.dir, aggregates = o.aggregates, hosts = hosts })
  local out = o.out or io.stdout
  out:write(fmt("eventrocks ui: http://%s:%d/ (Ctrl-C to stop)\n", host, srv.port))
  out:flush()
  -- SIGINT and SIGTERM through libuv: its handler interrupts srv:run's
  -- wait, and the callback below runs at the next uv.run
  local stopping = false
  local signals = {}
  for _, name in ipairs({ "sigint", "sigterm" }) do
    local s = uv.new_signal()
    s:start(name, function() stopping = true end)
    signals[#signals + 1] = s
  end
  local ok, rerr = pcall(function()
    while not stopping and not (o.stop and o.stop()) do
      srv:run(200)
      uv.run("nowait")
    end
  end)
  for _, s in ipairs(signals) do s:stop() s:close() end
  uv.run("nowait")
  srv:close()
  if not ok then error(rerr, 0) end
  return true
end

return M
