/*
 * er_value.h -- Lua values <-> MessagePack (msgpuck), for the binding.
 *
 * Mapping: nil -> nil; booleans -> bool; integers -> int (uint/int family);
 * floats -> float 64 (NaN and infinities included); strings -> str when they
 * are valid UTF-8, bin otherwise (both read back as Lua strings); tables
 * whose keys are exactly 1..n (n >= 1) -> array; other tables -> map with
 * string, integer, float or boolean keys.  Tables are read raw (metatables
 * are ignored).  Functions, userdata, threads, cycles, table keys and
 * nesting deeper than ER_MAX_DEPTH tables are refused.
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
 * the place inside the value, starting with `root` ("data", ...). */
void er_encode(lua_State *L, int idx, er_buf *b, int argn, const char *root);

/* Push the Lua value encoded in [p, p+len).  Returns 1, or 0 with nothing
 * pushed when the bytes are not one valid MessagePack value we can turn
 * into a Lua value. */
int er_decode(lua_State *L, const char *p, size_t len);

#endif
