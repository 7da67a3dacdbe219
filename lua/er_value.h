/*
 * er_value.h -- Lua values <-> MessagePack (msgpuck), for the binding.
 *
 * Mapping: nil -> nil; booleans -> bool; integers -> int (uint/int family);
 * floats -> float 64 (NaN and infinities included); strings -> str when they
 * are valid UTF-8, bin otherwise (both read back as Lua strings); tables
 * whose keys are exactly 1..n (n >= 1) -> array; other tables -> map with
 * string, integer, float or boolean keys.  Tables are read raw (metatables
 * are ignored).  Functions, userdata, threads, cycles, table keys and
 * nesting deeper than ER_MAX_DEPTH tables are refused (raw values, below,
 * are the one userdata a message may hold).
 */
#ifndef ER_VALUE_H
#define ER_VALUE_H

#include <lua.h>
#include <stddef.h>

#define ER_MAX_DEPTH 200

/* A growable byte buffer.  Its memory comes from the Lua allocator and is
 * released with er_buf_free. */
typedef struct er_buf {
  char *p;
  size_t len, cap;
} er_buf;

/* Make room for `extra` more bytes; raises a memory error on failure. */
void er_buf_reserve(lua_State *L, er_buf *b, size_t extra);
void er_buf_free(lua_State *L, er_buf *b);

/* Append the MessagePack form of the value at stack index `idx` to `b`.
 * On a value that cannot be stored raises
 * "bad argument #argn to '<fn>' (<where>: <problem>)", where <where> names
 * the place inside the value, starting with `root` ("data", ...); with
 * argn 0 raises an error value instead, whose fields name the place
 * (code "invalid", message "<where>: <problem>", path, index: see
 * enc_fail), for callers that test fields rather than read messages. */
void er_encode(lua_State *L, int idx, er_buf *b, int argn, const char *root);

/* er_encode whose messages start with "<root>[<index>].<field>" ("events[3].data"),
 * or "<root>.<field>" when index is 0: the name is only made for an error. */
void er_encode_field(lua_State *L, int idx, er_buf *b, int argn,
                     const char *root, lua_Integer index, const char *field);

/* er_encode for a message that leaves the store (core.encode: the relay's
 * bodies, the projections' view values): raw values (below) are written
 * as they are. */
void er_encode_message(lua_State *L, int idx, er_buf *b, int argn, const char *root);

/* Maps of fixed keys, as a message writes one per event: the keys are
 * checked and encoded once, and each map takes its values in the keys'
 * order, nil values included, so that the same values always give the
 * same bytes.
 *
 * er_prepare_map: the array at stack index `keys` (1 to ER_MAP_MAX_KEYS
 * distinct strings or integers; else raises on argument `argn`), with `b`
 * as scratch space.  Pushes the prepared keys (a userdata that keeps a
 * copy of the array).
 * er_encode_map: append the map of the prepared keys at stack index
 * `prepared` whose values are at stack slots first, first + 1, ... (nil
 * beyond the top; more values than keys raise), raising on a value as
 * er_encode_message does, the place named "<root>.<key>". */
#define ER_MAP_MAX_KEYS 200
void er_prepare_map(lua_State *L, int keys, er_buf *b, int argn);
void er_encode_map(lua_State *L, int first, int prepared, er_buf *b, int argn,
                   const char *root);

/* Raw values: one MessagePack value kept as its bytes, a userdata whose
 * metatable is ER_RAW_MT.  A store read with raw = true gives data and
 * metadata so, to be sent on without decoding them.  er_encode_message
 * and er_encode_map write a raw value verbatim where it stands (inside at most
 * ER_RAW_MAX_DEPTH tables: the bytes nest at most ER_MAX_DEPTH deep, and
 * the whole must still decode).  er_encode and er_encode_field (appends,
 * txn:put) refuse it like any userdata: an event's data is always a value
 * checked as it was encoded. */
#define ER_RAW_MT "eventrocks.msgpack"
#define ER_RAW_MAX_DEPTH 56

/* Register the metatable of raw values; once per Lua state, before the
 * functions below. */
void er_raw_init(lua_State *L);

/* Push a raw value holding a copy of [p, p+len): one MessagePack value
 * that er_encode wrote (the caller's guarantee: the store's own bytes). */
void er_push_raw(lua_State *L, const void *p, size_t len);

/* The bytes of the raw value at `idx` (their length in *len), or NULL when
 * the value there is not one. */
const char *er_to_raw(lua_State *L, int idx, size_t *len);

/* Push the Lua value encoded in [p, p+len).  Returns 1, or 0 with nothing
 * pushed when the bytes are not one valid MessagePack value we can turn
 * into a Lua value.  A uint 64 above 2^63-1 (only another publisher writes
 * one: er_encode writes Lua integers) is refused, never made a float. */
int er_decode(lua_State *L, const char *p, size_t len);

/* er_decode that says why it refuses: returns 1 with the value pushed, or
 * 0 with one string pushed: "<path>: integer N is outside the 64-bit range"
 * for a uint 64 above 2^63-1 (the path as in "data.amount", "items[2]",
 * "[\"a b\"]: key", none for the whole value), else `malformed`. */
int er_decode_msg(lua_State *L, const char *p, size_t len, const char *malformed);

/* A cache of short strings for a reader that makes the same strings again
 * and again (the keys of every event's data, its type, its stream): a hit
 * costs a comparison of the bytes instead of hashing them into a new Lua
 * string.  The C side holds the bytes; the strings themselves live in a
 * Lua table (the "anchors", at integer keys ER_STRCACHE_BASE + slot) so
 * that the collector keeps them. */
#define ER_STRCACHE_SLOTS 256
#define ER_STRCACHE_MAXLEN 40 /* Lua's short strings */
#define ER_STRCACHE_BASE 16   /* anchors[1..15] are the caller's */

typedef struct er_strcache {
  unsigned char len[ER_STRCACHE_SLOTS]; /* 0: empty */
  char bytes[ER_STRCACHE_SLOTS][ER_STRCACHE_MAXLEN];
} er_strcache;

/* Push the string [s, s+len), from the cache `c` whose anchors table is at
 * stack index `anchors` when it is there (strings of 1 to
 * ER_STRCACHE_MAXLEN bytes), else made and remembered. */
void er_push_cached(lua_State *L, const char *s, size_t len, er_strcache *c,
                    int anchors);

/* er_decode that takes the keys of maps from the cache `c` (anchors at
 * stack index `anchors`). */
int er_decode_cached(lua_State *L, const char *p, size_t len, er_strcache *c,
                     int anchors);

#endif
