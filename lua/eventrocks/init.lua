--- eventrocks: an embedded event store for Lua 5.4 on RocksDB.
-- The store itself lives in the C module `eventrocks.core`; this module
-- gives it its public face (see README.md and API.md).
local core = require "eventrocks.core"
local pretty = require "eventrocks.pretty"
local aggregate = require "eventrocks.aggregate"
local projection = require "eventrocks.projection"
local rocks = require "eventrocks.rocks" -- JetStream: a rock of its own, loaded when first used

local M = {
  _VERSION = "eventrocks " .. core.version,
  ANY = core.ANY,
  NO_STREAM = core.NO_STREAM,
  STREAM_EXISTS = core.STREAM_EXISTS,
  FORMAT = core.FORMAT,
  MAX_DEPTH = core.MAX_DEPTH,
  open = core.open,
  uuid = core.uuid,
  aggregate = aggregate.aggregate,
  jetstream_source = function(opts) return rocks.need_jetstream("er.jetstream_source").source(opts) end,
  jetstream_connect = function(opts) return rocks.need_jetstream("er.jetstream_connect").connect(opts) end,
}

-- store methods written in Lua
core.store_methods.repository = aggregate.repository
core.store_methods.projection = projection.projection
core.store_methods.relay = function(store, ...) return rocks.need_jetstream("store:relay").relay(store, ...) end

--- A one-line summary of an event, e.g.
-- `#42 product-1@3 PriceIncreased 2026-11-27T21:41:06.123456Z {delta = 5}`
-- (control bytes in the stream id and type escaped: see pretty.escape).
core.event_metatable.__tostring = pretty.event
core.event_metatable.__name = "eventrocks.event"

return M
