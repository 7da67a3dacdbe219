/* er_value.c -- Lua values <-> MessagePack with msgpuck (see er_value.h). */
#define MP_SOURCE 1 /* msgpuck: compile its functions into this file */
#include <msgpuck.h>

#include <lauxlib.h>
#include <math.h>
#include <string.h>

#include "er_value.h"

/* ---- buffer --------------------------------------------------------------- */

void er_buf_reserve(lua_State *L, er_buf *b, size_t extra) {
  size_t need = b->len + extra, cap;
  void *ud, *np;
  lua_Alloc f;
  if (need <= b->cap) return;
  if (need < b->len) luaL_error(L, "eventrocks: value too large");
  cap = b->cap ? b->cap : 256;
  while (cap < need) cap = cap * 2 > cap ? cap * 2 : need;
  f = lua_getallocf(L, &ud);
  np = f(ud, b->p, b->cap, cap);
  if (!np) luaL_error(L, "eventrocks: not enough memory");
  b->p = np;
  b->cap = cap;
}

void er_buf_free(lua_State *L, er_buf *b) {
  void *ud;
  lua_Alloc f = lua_getallocf(L, &ud);
  if (b->p) f(ud, b->p, b->cap, 0);
  b->p = NULL;
  b->len = b->cap = 0;
}

/* ---- encoding ------------------------------------------------------------- */

typedef struct enc {
  lua_State *L;
  er_buf *b;
  int argn;
  const char *root;
  int depth;                         /* tables open */
  const void *open[ER_MAX_DEPTH + 1]; /* those tables, for cycle checks */
  int keyslot[ER_MAX_DEPTH + 1];      /* stack slot of the current key, or 0 */
  lua_Integer index[ER_MAX_DEPTH + 1]; /* the array index when keyslot is 0 */
} enc;

static int is_name(const char *s, size_t len) {
  size_t i;
  if (len == 0 || (s[0] >= '0' && s[0] <= '9')) return 0;
  for (i = 0; i < len; i++) {
    char c = s[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
          (c >= '0' && c <= '9') || c == '_'))
      return 0;
  }
  return 1;
}

/* Raise with the path to the current place, e.g. "data.items[3]: ...". */
static void enc_fail(enc *e, const char *problem) {
  lua_State *L = e->L;
  luaL_Buffer B;
  int d;
  luaL_checkstack(L, 4, NULL);
  luaL_buffinit(L, &B);
  luaL_addstring(&B, e->root);
  for (d = 1; d <= e->depth; d++) {
    int slot = e->keyslot[d];
    if (slot == 0) {
      lua_pushfstring(L, "[%I]", (LUAI_UACINT)e->index[d]);
    } else {
      switch (lua_type(L, slot)) {
      case LUA_TSTRING: {
        size_t len;
        const char *k = lua_tolstring(L, slot, &len);
        if (is_name(k, len)) lua_pushfstring(L, ".%s", k);
        else {
          lua_pushfstring(L, "[\"%s\"]", len > 40 ? "..." : k);
        }
        break;
      }
      case LUA_TNUMBER:
        if (lua_isinteger(L, slot))
          lua_pushfstring(L, "[%I]", (LUAI_UACINT)lua_tointeger(L, slot));
        else lua_pushfstring(L, "[%f]", (LUAI_UACNUMBER)lua_tonumber(L, slot));
        break;
      case LUA_TBOOLEAN:
        lua_pushstring(L, lua_toboolean(L, slot) ? "[true]" : "[false]");
        break;
      default:
        lua_pushfstring(L, "[%s key]", luaL_typename(L, slot));
      }
    }
    luaL_addvalue(&B);
  }
  luaL_addstring(&B, ": ");
  luaL_addstring(&B, problem);
  luaL_pushresult(&B);
  luaL_argerror(L, e->argn, lua_tostring(L, -1));
}

static int utf8_valid(const unsigned char *s, size_t len) {
  size_t i = 0;
  while (i < len) {
    unsigned char c = s[i];
    size_t n, k;
    unsigned long cp;
    if (c < 0x80) { i++; continue; }
    if (c >= 0xc2 && c <= 0xdf) { n = 1; cp = c & 0x1f; }
    else if (c >= 0xe0 && c <= 0xef) { n = 2; cp = c & 0x0f; }
    else if (c >= 0xf0 && c <= 0xf4) { n = 3; cp = c & 0x07; }
    else return 0;
    if (len - i <= n) return 0; /* truncated sequence */
    for (k = 1; k <= n; k++) {
      if ((s[i + k] & 0xc0) != 0x80) return 0;
      cp = (cp << 6) | (s[i + k] & 0x3f);
    }
    if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff))
      return 0;
    i += n + 1;
  }
  return 1;
}

static void enc_string(enc *e, const char *s, size_t len) {
  er_buf *b = e->b;
  if (len > UINT32_MAX) enc_fail(e, "string too long");
  if (utf8_valid((const unsigned char *)s, len)) {
    er_buf_reserve(e->L, b, mp_sizeof_strl((uint32_t)len) + len);
    b->len = (size_t)(mp_encode_str(b->p + b->len, s, (uint32_t)len) - b->p);
  } else {
    er_buf_reserve(e->L, b, mp_sizeof_binl((uint32_t)len) + len);
    b->len = (size_t)(mp_encode_bin(b->p + b->len, s, (uint32_t)len) - b->p);
  }
}

static void enc_integer(enc *e, lua_Integer i) {
  er_buf *b = e->b;
  er_buf_reserve(e->L, b, 9);
  if (i >= 0) b->len = (size_t)(mp_encode_uint(b->p + b->len, (uint64_t)i) - b->p);
  else b->len = (size_t)(mp_encode_int(b->p + b->len, (int64_t)i) - b->p);
}

static void enc_value(enc *e, int idx);

/* A table at absolute index `idx`: array when its keys are exactly 1..n. */
static void enc_table(enc *e, int idx) {
  lua_State *L = e->L;
  er_buf *b = e->b;
  const void *ptr = lua_topointer(L, idx);
  lua_Unsigned n = lua_rawlen(L, idx), count = 0;
  int is_array = n > 0, d;
  for (d = 1; d <= e->depth; d++)
    if (e->open[d] == ptr) enc_fail(e, "cyclic table (a table that contains itself)");
  if (e->depth >= ER_MAX_DEPTH) enc_fail(e, "nesting deeper than 200 tables");
  luaL_checkstack(L, 6, "value nested too deeply");
  d = ++e->depth;
  e->open[d] = ptr;
  e->keyslot[d] = 0;
  e->index[d] = 0;
  /* first pass: count keys and see whether they are exactly 1..n */
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    count++;
    if (is_array && !(lua_isinteger(L, -2) && lua_tointeger(L, -2) >= 1 &&
                      (lua_Unsigned)lua_tointeger(L, -2) <= n))
      is_array = 0;
    lua_pop(L, 1);
  }
  if (is_array && count != n) is_array = 0;
  if (count > UINT32_MAX) enc_fail(e, "table too large");
  er_buf_reserve(L, b, 5);
  if (is_array) {
    lua_Unsigned i;
    b->len = (size_t)(mp_encode_array(b->p + b->len, (uint32_t)n) - b->p);
    for (i = 1; i <= n; i++) {
      e->index[d] = (lua_Integer)i;
      lua_rawgeti(L, idx, (lua_Integer)i);
      enc_value(e, lua_gettop(L));
      lua_pop(L, 1);
    }
  } else {
    b->len = (size_t)(mp_encode_map(b->p + b->len, (uint32_t)count) - b->p);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
      int top = lua_gettop(L);
      e->keyslot[d] = top - 1;
      switch (lua_type(L, top - 1)) {
      case LUA_TSTRING: {
        size_t len;
        const char *k = lua_tolstring(L, top - 1, &len);
        enc_string(e, k, len);
        break;
      }
      case LUA_TNUMBER:
      case LUA_TBOOLEAN:
        enc_value(e, top - 1);
        break;
      default: {
        const char *what = lua_pushfstring(
            L, "a %s cannot be a key (keys may be strings, numbers or booleans)",
            luaL_typename(L, top - 1));
        enc_fail(e, what);
      }
      }
      enc_value(e, top);
      lua_pop(L, 1);
    }
  }
  e->depth--;
}

static void enc_value(enc *e, int idx) {
  lua_State *L = e->L;
  er_buf *b = e->b;
  switch (lua_type(L, idx)) {
  case LUA_TNIL:
    er_buf_reserve(L, b, 1);
    b->len = (size_t)(mp_encode_nil(b->p + b->len) - b->p);
    break;
  case LUA_TBOOLEAN:
    er_buf_reserve(L, b, 1);
    b->len = (size_t)(mp_encode_bool(b->p + b->len, lua_toboolean(L, idx)) - b->p);
    break;
  case LUA_TNUMBER:
    if (lua_isinteger(L, idx)) enc_integer(e, lua_tointeger(L, idx));
    else {
      er_buf_reserve(L, b, 9);
      b->len = (size_t)(mp_encode_double(b->p + b->len, (double)lua_tonumber(L, idx)) - b->p);
    }
    break;
  case LUA_TSTRING: {
    size_t len;
    const char *s = lua_tolstring(L, idx, &len);
    enc_string(e, s, len);
    break;
  }
  case LUA_TTABLE:
    enc_table(e, idx);
    break;
  case LUA_TFUNCTION:
    enc_fail(e, "cannot store a function");
    break;
  case LUA_TTHREAD:
    enc_fail(e, "cannot store a thread (coroutine)");
    break;
  case LUA_TUSERDATA:
  case LUA_TLIGHTUSERDATA:
    enc_fail(e, "cannot store a userdata");
    break;
  default:
    enc_fail(e, lua_pushfstring(L, "cannot store a %s", luaL_typename(L, idx)));
  }
}

void er_encode(lua_State *L, int idx, er_buf *b, int argn, const char *root) {
  enc e;
  e.L = L;
  e.b = b;
  e.argn = argn;
  e.root = root;
  e.depth = 0;
  enc_value(&e, lua_absindex(L, idx));
}

/* ---- decoding ------------------------------------------------------------- */

#define DECODE_DEPTH (ER_MAX_DEPTH + 56) /* tolerate a little foreign data */

static uint64_t be(const unsigned char *p, int n) {
  uint64_t v = 0;
  while (n-- > 0) v = (v << 8) | *p++;
  return v;
}

/* 1 when [p, end) is exactly one MessagePack value without ext types, else
 * 0.  Replaces msgpuck's mp_check, which counts the values still to read in
 * an int: an array or map header of about 2^31 or 2^32 entries overflows
 * it, a few bytes then pass as a complete value, and decoding them reads
 * far past the buffer.  Here the count is 64-bit and may never exceed the
 * bytes left (every value takes at least one), which also bounds what
 * dec_value preallocates. */
static int check_value(const char *p, const char *end) {
  const unsigned char *b = (const unsigned char *)p,
                      *e = (const unsigned char *)end;
  uint64_t k = 1; /* values still to read */
  while (k > 0) {
    unsigned char c;
    uint64_t skip = 0, add = 0; /* bytes after the header; values inside */
    int h = 0;                   /* bytes of the length field */
    if ((uint64_t)(e - b) < k) return 0;
    c = *b++;
    k--;
    if (c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3) {
      /* fixint, nil, bool: done */
    } else if (c <= 0x8f) add = 2 * (uint64_t)(c & 0x0f);
    else if (c <= 0x9f) add = c & 0x0f;
    else if (c <= 0xbf) skip = c & 0x1f;
    else {
      switch (c) {
      case 0xc4: case 0xd9: h = 1; break;             /* bin 8, str 8 */
      case 0xc5: case 0xda: h = 2; break;             /* bin 16, str 16 */
      case 0xc6: case 0xdb: h = 4; break;             /* bin 32, str 32 */
      case 0xca: case 0xce: case 0xd2: skip = 4; break; /* 32-bit numbers */
      case 0xcb: case 0xcf: case 0xd3: skip = 8; break; /* 64-bit numbers */
      case 0xcc: case 0xd0: skip = 1; break;
      case 0xcd: case 0xd1: skip = 2; break;
      case 0xdc: case 0xdd: case 0xde: case 0xdf: {   /* array, map 16/32 */
        int n = c & 1 ? 4 : 2;
        if (e - b < n) return 0;
        add = be(b, n) * (c >= 0xde ? 2 : 1);
        b += n;
        break;
      }
      default: return 0; /* 0xc1 (never used) and the ext types */
      }
      if (h) {
        if (e - b < h) return 0;
        skip = be(b, h);
        b += h;
      }
    }
    if (skip > (uint64_t)(e - b)) return 0;
    b += skip;
    k += add;
  }
  return b == e;
}

/* Push the value at *p; check_value has already checked the bytes.
 * Returns 0 on a value Lua cannot hold (ext types, nil/NaN keys, depth). */
static int dec_value(lua_State *L, const char **p, int depth) {
  uint32_t n, i;
  if (depth > DECODE_DEPTH || !lua_checkstack(L, 3)) return 0;
  switch (mp_typeof(**p)) {
  case MP_NIL:
    mp_decode_nil(p);
    lua_pushnil(L);
    return 1;
  case MP_BOOL:
    lua_pushboolean(L, mp_decode_bool(p));
    return 1;
  case MP_UINT: {
    uint64_t u = mp_decode_uint(p);
    if (u > (uint64_t)LUA_MAXINTEGER) lua_pushnumber(L, (lua_Number)u);
    else lua_pushinteger(L, (lua_Integer)u);
    return 1;
  }
  case MP_INT:
    lua_pushinteger(L, (lua_Integer)mp_decode_int(p));
    return 1;
  case MP_FLOAT:
    lua_pushnumber(L, (lua_Number)mp_decode_float(p));
    return 1;
  case MP_DOUBLE:
    lua_pushnumber(L, (lua_Number)mp_decode_double(p));
    return 1;
  case MP_STR: {
    const char *s = mp_decode_str(p, &n);
    lua_pushlstring(L, s, n);
    return 1;
  }
  case MP_BIN: {
    const char *s = mp_decode_bin(p, &n);
    lua_pushlstring(L, s, n);
    return 1;
  }
  case MP_ARRAY:
    n = mp_decode_array(p);
    lua_createtable(L, (int)(n > 1u << 20 ? 1u << 20 : n), 0);
    for (i = 1; i <= n; i++) {
      if (!dec_value(L, p, depth + 1)) return 0;
      lua_rawseti(L, -2, (lua_Integer)i);
    }
    return 1;
  case MP_MAP:
    n = mp_decode_map(p);
    lua_createtable(L, 0, (int)(n > 1u << 20 ? 1u << 20 : n));
    for (i = 0; i < n; i++) {
      if (!dec_value(L, p, depth + 1)) return 0;
      if (lua_isnil(L, -1) ||
          (lua_type(L, -1) == LUA_TNUMBER && isnan(lua_tonumber(L, -1))))
        return 0;
      if (!dec_value(L, p, depth + 1)) return 0;
      lua_rawset(L, -3);
    }
    return 1;
  default: /* MP_EXT */
    return 0;
  }
}

int er_decode(lua_State *L, const char *p, size_t len) {
  int top = lua_gettop(L);
  if (len == 0 || !check_value(p, p + len)) return 0;
  if (!dec_value(L, &p, 0)) {
    lua_settop(L, top);
    return 0;
  }
  return 1;
}
