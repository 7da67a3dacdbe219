--- What the JetStream specs and their child processes share.  Not a spec.
local M = {}

-- A projection counting events per stream and keeping the last version
-- seen, which must grow by one each time: a duplicate or a gap shows.
function M.counts_spec(source, hook)
  local function count(view, ev)
    if hook then hook() end
    local row = view:get(ev.stream) or { n = 0, last = 0, sum = 0 }
    if ev.version ~= row.last + 1 then
      error(string.format("%s: version %d after %d", ev.stream, ev.version, row.last))
    end
    row.n, row.last, row.sum = row.n + 1, ev.version, row.sum + ev.data.i
    view:put(ev.stream, row)
  end
  return { source = source, handlers = { Placed = count, Paid = count } }
end

-- Fill `store` with n events over `streams` streams, round-robin.
function M.fill(store, n, streams, from)
  from = from or 1
  for i = from, from + n - 1 do
    assert(store:append("order-" .. (i % streams), { type = i % 3 == 0 and "Paid" or "Placed",
      data = { i = i, note = "event " .. i } }))
  end
end

return M
