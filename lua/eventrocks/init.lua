--- eventrocks: an embedded event store for Lua 5.4 on RocksDB.
-- The store itself lives in the C module `eventrocks.core`; this module
-- gives it its public face (see README.md and doc/api.md): the stores it
-- opens have the methods written in Lua below besides the core's own, and
-- their events print with pretty.event.
local core = require "eventrocks.core"
local pretty = require "eventrocks.pretty"
local aggregate = require "eventrocks.aggregate"
local projection = require "eventrocks.projection"
local subscription = require "eventrocks.subscription"
local rocks = require "eventrocks.rocks" -- JetStream: a rock of its own, loaded when first used

-- The class of the stores eventrocks.open opens (see core.open).
local STORE = {
  methods = {
    repository = aggregate.repository,
    projection = projection.projection,
    subscribe = subscription.subscribe,
    relay = function(store, ...) return rocks.need_jetstream("store:relay").relay(store, ...) end,
  },
  event = pretty.event_metatable,
}

local M = {
  _VERSION = "eventrocks " .. core.version,
  ANY = core.ANY,
  NO_STREAM = core.NO_STREAM,
  STREAM_EXISTS = core.STREAM_EXISTS,
  FORMAT = core.FORMAT,
  MAX_DEPTH = core.MAX_DEPTH,
  --- open(path [, opts]) -> store, or nil, err
  open = core.opener(STORE),
  uuid = core.uuid,
  aggregate = aggregate.aggregate,
  jetstream_source = function(opts) return rocks.need_jetstream("er.jetstream_source").source(opts) end,
  jetstream_connect = function(opts) return rocks.need_jetstream("er.jetstream_connect").connect(opts) end,
}

return M
