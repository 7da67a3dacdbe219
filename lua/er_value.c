/* er_value.c -- Lua values <-> MessagePack with msgpuck (see er_value.h). */
#define MP_SOURCE 1 /* msgpuck: compile its functions into this file */
#include <msgpuck.h>

#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
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

/* er_buf_reserve without a call (through the PLT: it is exported) when the
 * room is there, as it nearly always is */
static void reserve(lua_State *L, er_buf *b, size_t extra) {
  if (extra > b->cap - b->len) er_buf_reserve(L, b, extra);
}

void er_buf_free(lua_State *L, er_buf *b) {
  void *ud;
  lua_Alloc f = lua_getallocf(L, &ud);
  if (b->p) f(ud, b->p, b->cap, 0);
  b->p = NULL;
  b->len = b->cap = 0;
}

/* ---- encoding ------------------------------------------------------------- */

#define PREPARED_KEY (-1) /* a keyslot[] naming a prepared key */

typedef struct enc {
  lua_State *L;
  er_buf *b;
  int argn;
  const char *root;                  /* errors name the place from here: */
  lua_Integer root_index;            /* root[root_index].root_field when */
  const char *root_field;            /* root_field is not NULL */
  int raw_ok;                        /* raw values are written (messages) */
  const void *raw_mt;                /* their metatable, once looked up */
  int depth;                         /* tables open */
  const void *open[ER_MAX_DEPTH + 1]; /* those tables, for cycle checks */
  int keyslot[ER_MAX_DEPTH + 1];      /* stack slot of the current key, or 0;
                                       * PREPARED_KEY: key index[] of the
                                       * prepared keys (er_encode_map) */
  int prepared;                      /* their index, for an error message */
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

/* Push the path below the root to the current place, e.g. ".items[3]". */
static void push_inner_path(enc *e) {
  lua_State *L = e->L;
  luaL_Buffer B;
  int d;
  luaL_buffinit(L, &B);
  for (d = 1; d <= e->depth; d++) {
    int slot = e->keyslot[d], fetched = slot == PREPARED_KEY;
    if (fetched) {
      lua_getiuservalue(L, e->prepared, 1);
      lua_rawgeti(L, -1, e->index[d]);
      lua_remove(L, -2);
      slot = lua_gettop(L);
    }
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
    if (fetched) lua_remove(L, -2);
    luaL_addvalue(&B);
  }
  luaL_pushresult(&B);
}

/* Raise with the path to the current place, e.g. "data.items[3]: ...":
 * an argument error, or with argn 0 an error value {code = "invalid",
 * message, path, reason, index}: path the place inside the root's value
 * ("items[3]", "" for the value itself; below its field when there is
 * one: "data.items[3]"), index the root's index (events[index]). */
static void enc_fail(enc *e, const char *problem) {
  lua_State *L = e->L;
  int inner;
  luaL_checkstack(L, 8, NULL);
  push_inner_path(e);
  inner = lua_gettop(L);
  if (e->root_field && e->root_index > 0)
    lua_pushfstring(L, "%s[%I].%s%s: %s", e->root, (LUAI_UACINT)e->root_index, e->root_field,
                    lua_tostring(L, inner), problem);
  else if (e->root_field)
    lua_pushfstring(L, "%s.%s%s: %s", e->root, e->root_field, lua_tostring(L, inner), problem);
  else
    lua_pushfstring(L, "%s%s: %s", e->root, lua_tostring(L, inner), problem);
  if (e->argn != 0) luaL_argerror(L, e->argn, lua_tostring(L, -1));
  lua_createtable(L, 0, 5);
  lua_pushliteral(L, "invalid");
  lua_setfield(L, -2, "code");
  lua_insert(L, -2);
  lua_setfield(L, -2, "message");
  if (e->root_field)
    lua_pushfstring(L, "%s%s", e->root_field, lua_tostring(L, inner));
  else {
    const char *p = lua_tostring(L, inner);
    lua_pushstring(L, p[0] == '.' ? p + 1 : p);
  }
  lua_setfield(L, -2, "path");
  lua_pushstring(L, problem);
  lua_setfield(L, -2, "reason");
  if (e->root_index > 0) {
    lua_pushinteger(L, e->root_index);
    lua_setfield(L, -2, "index");
  }
  luaL_setmetatable(L, "eventrocks.error");
  lua_error(L);
}

static int utf8_valid(const unsigned char *s, size_t len) {
  size_t i = 0;
  while (i < len) {
    unsigned char c = s[i];
    size_t n, k;
    unsigned long cp;
    if (c < 0x80) {
      uint64_t w;
      i++;
      /* ASCII runs eight bytes at a time */
      while (len - i >= 8) {
        memcpy(&w, s + i, 8);
        if (w & 0x8080808080808080u) break;
        i += 8;
      }
      continue;
    }
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
    reserve(e->L, b, mp_sizeof_strl((uint32_t)len) + len);
    b->len = (size_t)(mp_encode_str(b->p + b->len, s, (uint32_t)len) - b->p);
  } else {
    reserve(e->L, b, mp_sizeof_binl((uint32_t)len) + len);
    b->len = (size_t)(mp_encode_bin(b->p + b->len, s, (uint32_t)len) - b->p);
  }
}

static void enc_integer(enc *e, lua_Integer i) {
  er_buf *b = e->b;
  reserve(e->L, b, 9);
  if (i >= 0) b->len = (size_t)(mp_encode_uint(b->p + b->len, (uint64_t)i) - b->p);
  else b->len = (size_t)(mp_encode_int(b->p + b->len, (int64_t)i) - b->p);
}

static void enc_value(enc *e, int idx);

/* The key at stack slot `slot`, the current one of the table open at
 * depth d. */
static void enc_key(enc *e, int slot, int d) {
  lua_State *L = e->L;
  int t = lua_type(L, slot);
  e->keyslot[d] = slot;
  if (t == LUA_TSTRING || t == LUA_TNUMBER || t == LUA_TBOOLEAN) {
    enc_value(e, slot);
  } else {
    const char *what = lua_pushfstring(
        L, "a %s cannot be a key (keys may be strings, numbers or booleans)",
        luaL_typename(L, slot));
    enc_fail(e, what);
  }
}

/* The key-value pairs of the table at `idx` (open at depth d); returns
 * their number. */
static lua_Unsigned enc_entries(enc *e, int idx, int d) {
  lua_State *L = e->L;
  lua_Unsigned count = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    int top = lua_gettop(L);
    enc_key(e, top - 1, d);
    enc_value(e, top);
    lua_pop(L, 1);
    count++;
  }
  return count;
}

/* A table without a border (#t == 0) is a map whatever its keys: encode it
 * in one pass, behind a one-byte header that grows (the entries move up)
 * when it has more than 15 of them. */
static void enc_map(enc *e, int idx, int d) {
  er_buf *b = e->b;
  size_t at, h;
  lua_Unsigned count;
  reserve(e->L, b, 1);
  at = b->len++;
  count = enc_entries(e, idx, d);
  if (count > UINT32_MAX) enc_fail(e, "table too large");
  h = mp_sizeof_map((uint32_t)count);
  if (h > 1) {
    reserve(e->L, b, h - 1);
    memmove(b->p + at + h, b->p + at + 1, b->len - at - 1);
    b->len += h - 1;
  }
  mp_encode_map(b->p + at, (uint32_t)count);
}

/* Open the table at `idx` one level deeper; returns that depth. */
static int enc_open(enc *e, int idx) {
  const void *ptr = lua_topointer(e->L, idx);
  int d;
  for (d = 1; d <= e->depth; d++)
    if (e->open[d] == ptr) enc_fail(e, "cyclic table (a table that contains itself)");
  if (e->depth >= ER_MAX_DEPTH) enc_fail(e, "nesting deeper than 200 tables");
  luaL_checkstack(e->L, 6, "value nested too deeply");
  d = ++e->depth;
  e->open[d] = ptr;
  e->keyslot[d] = 0;
  e->index[d] = 0;
  return d;
}

/* A table at absolute index `idx`: array when its keys are exactly 1..n. */
static void enc_table(enc *e, int idx) {
  lua_State *L = e->L;
  er_buf *b = e->b;
  lua_Unsigned n = lua_rawlen(L, idx), count = 0;
  int is_array = n > 0, d = enc_open(e, idx);
  if (n == 0) {
    enc_map(e, idx, d);
    e->depth--;
    return;
  }
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
  reserve(L, b, 5);
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
    enc_entries(e, idx, d);
  }
  e->depth--;
}

static const char raw_key = 0; /* its address keys the raw values' metatable
                                * in the registry */
static const char *raw_bytes(lua_State *L, int idx, size_t *len);

/* The bytes of the raw value at `idx`, or NULL: er_to_raw with the
 * metatable looked up once per encoding. */
static const char *enc_raw(enc *e, int idx, size_t *len) {
  lua_State *L = e->L;
  const void *mt;
  if (!lua_getmetatable(L, idx)) return NULL;
  if (!e->raw_mt) {
    lua_rawgetp(L, LUA_REGISTRYINDEX, &raw_key);
    e->raw_mt = lua_topointer(L, -1);
    lua_pop(L, 1);
  }
  mt = lua_topointer(L, -1);
  lua_pop(L, 1);
  return mt == e->raw_mt ? raw_bytes(L, idx, len) : NULL;
}

static void enc_value(enc *e, int idx) {
  lua_State *L = e->L;
  er_buf *b = e->b;
  switch (lua_type(L, idx)) {
  case LUA_TNIL:
    reserve(L, b, 1);
    b->len = (size_t)(mp_encode_nil(b->p + b->len) - b->p);
    break;
  case LUA_TBOOLEAN:
    reserve(L, b, 1);
    b->len = (size_t)(mp_encode_bool(b->p + b->len, lua_toboolean(L, idx)) - b->p);
    break;
  case LUA_TNUMBER:
    if (lua_isinteger(L, idx)) enc_integer(e, lua_tointeger(L, idx));
    else {
      reserve(L, b, 9);
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
  case LUA_TUSERDATA: {
    size_t len = 0;
    const char *bytes = enc_raw(e, idx, &len);
    if (!bytes) enc_fail(e, "cannot store a userdata");
    if (!e->raw_ok) enc_fail(e, "cannot store a raw value (one read with raw = true)");
    if (e->depth > ER_RAW_MAX_DEPTH) enc_fail(e, "a raw value inside more than 56 tables");
    reserve(L, b, len);
    memcpy(b->p + b->len, bytes, len);
    b->len += len;
    break;
  }
  case LUA_TLIGHTUSERDATA:
    enc_fail(e, "cannot store a userdata");
    break;
  default:
    enc_fail(e, lua_pushfstring(L, "cannot store a %s", luaL_typename(L, idx)));
  }
}

void er_encode(lua_State *L, int idx, er_buf *b, int argn, const char *root) {
  er_encode_field(L, idx, b, argn, root, 0, NULL);
}

static void enc_init(enc *e, lua_State *L, er_buf *b, int argn, const char *root) {
  e->L = L;
  e->b = b;
  e->argn = argn;
  e->root = root;
  e->root_index = 0;
  e->root_field = NULL;
  e->raw_ok = 0;
  e->raw_mt = NULL;
  e->depth = 0;
}

void er_encode_field(lua_State *L, int idx, er_buf *b, int argn,
                     const char *root, lua_Integer index, const char *field) {
  enc e;
  enc_init(&e, L, b, argn, root);
  e.root_index = index;
  e.root_field = field;
  enc_value(&e, lua_absindex(L, idx));
}

void er_encode_message(lua_State *L, int idx, er_buf *b, int argn, const char *root) {
  enc e;
  enc_init(&e, L, b, argn, root);
  e.raw_ok = 1;
  enc_value(&e, lua_absindex(L, idx));
}

/* ---- maps of prepared keys ------------------------------------------------ */

/* The userdata of er_prepare_map: n keys, key i (0-based) encoded at
 * bytes + off[i] up to bytes + off[i + 1]; its user value is a copy of the
 * keys array. */
typedef struct keys {
  size_t n;
  size_t off[]; /* n + 1 offsets, then the bytes */
} keys;

#define KEY_BYTES(k) ((char *)((k)->off + (k)->n + 1))
#define PREPARED_MT "eventrocks.map_keys"

void er_prepare_map(lua_State *L, int arr, er_buf *b, int argn) {
  lua_Unsigned n, i;
  keys *k;
  size_t *off;
  int top = lua_gettop(L), copy;
  enc e;
  arr = lua_absindex(L, arr);
  luaL_checktype(L, arr, LUA_TTABLE);
  n = lua_rawlen(L, arr);
  luaL_argcheck(L, n >= 1 && n <= ER_MAP_MAX_KEYS, argn, "keys must be an array of 1 to 200 keys");
  enc_init(&e, L, b, argn, "keys");
  off = lua_newuserdatauv(L, (size_t)(n + 1) * sizeof *off, 0); /* top + 1 */
  lua_createtable(L, (int)n, 0);                                 /* top + 2: the copy */
  lua_createtable(L, 0, (int)n);                                 /* top + 3: a set */
  copy = top + 2;
  b->len = 0;
  for (i = 1; i <= n; i++) {
    int t = lua_rawgeti(L, arr, (lua_Integer)i);
    if (t != LUA_TSTRING && !lua_isinteger(L, -1))
      luaL_argerror(L, argn, lua_pushfstring(L, "keys[%I] must be a string or an integer",
                                             (LUAI_UACINT)i));
    lua_pushvalue(L, -1);
    if (lua_rawget(L, top + 3) != LUA_TNIL)
      luaL_argerror(L, argn, lua_pushfstring(L, "keys[%I] repeats a key", (LUAI_UACINT)i));
    lua_pop(L, 1);
    lua_pushvalue(L, -1);
    lua_pushboolean(L, 1);
    lua_rawset(L, top + 3);
    off[i - 1] = b->len;
    enc_key(&e, top + 4, 0);
    lua_rawseti(L, copy, (lua_Integer)i);
  }
  off[n] = b->len;
  lua_pop(L, 1); /* the set */
  k = lua_newuserdatauv(L, sizeof *k + (size_t)(n + 1) * sizeof *off + b->len, 1);
  k->n = (size_t)n;
  memcpy(k->off, off, (size_t)(n + 1) * sizeof *off);
  memcpy(KEY_BYTES(k), b->p, b->len);
  lua_insert(L, copy);       /* top + 2: k, top + 3: the copy */
  lua_setiuservalue(L, copy, 1);
  luaL_newmetatable(L, PREPARED_MT);
  lua_setmetatable(L, copy);
  lua_replace(L, top + 1);   /* k where the offsets were */
}

void er_encode_map(lua_State *L, int first, int prepared, er_buf *b, int argn,
                   const char *root) {
  keys *k = lua_touserdata(L, prepared);
  const char *kb = KEY_BYTES(k);
  int top = lua_gettop(L);
  size_t i;
  enc e;
  first = lua_absindex(L, first);
  if (top - first + 1 > (int)k->n)
    luaL_argerror(L, argn + (int)k->n, lua_pushfstring(L, "%s: more values than its %d keys",
                                                      root, (int)k->n));
  enc_init(&e, L, b, argn, root);
  e.raw_ok = 1;
  e.depth = 1; /* the map's entries name the places */
  e.open[1] = NULL;
  e.keyslot[1] = PREPARED_KEY;
  e.prepared = lua_absindex(L, prepared);
  reserve(L, b, 5);
  b->len = (size_t)(mp_encode_map(b->p + b->len, (uint32_t)k->n) - b->p);
  for (i = 0; i < k->n; i++) {
    size_t klen = k->off[i + 1] - k->off[i];
    int at = first + (int)i;
    reserve(L, b, klen + 1);
    memcpy(b->p + b->len, kb + k->off[i], klen);
    b->len += klen;
    e.index[1] = (lua_Integer)i + 1;
    if (at <= top) enc_value(&e, at);
    else b->len = (size_t)(mp_encode_nil(b->p + b->len) - b->p); /* a value not given */
  }
}

/* ---- raw values ----------------------------------------------------------- */

typedef struct raw {
  size_t len;
  char bytes[];
} raw;

static int raw_tostring(lua_State *L) {
  raw *r = luaL_checkudata(L, 1, ER_RAW_MT);
  lua_pushfstring(L, ER_RAW_MT " (%I bytes)", (LUAI_UACINT)r->len);
  return 1;
}

void er_raw_init(lua_State *L) {
  luaL_newmetatable(L, ER_RAW_MT);
  lua_pushcfunction(L, raw_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_rawsetp(L, LUA_REGISTRYINDEX, &raw_key);
}

void er_push_raw(lua_State *L, const void *p, size_t len) {
  raw *r = lua_newuserdatauv(L, sizeof(raw) + len, 0);
  r->len = len;
  if (len) memcpy(r->bytes, p, len);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &raw_key);
  lua_setmetatable(L, -2);
}

static const char *raw_bytes(lua_State *L, int idx, size_t *len) {
  raw *r = lua_touserdata(L, idx);
  *len = r->len;
  return r->bytes;
}

const char *er_to_raw(lua_State *L, int idx, size_t *len) {
  int same;
  if (lua_type(L, idx) != LUA_TUSERDATA || !lua_getmetatable(L, idx)) return NULL;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &raw_key);
  same = lua_rawequal(L, -1, -2);
  lua_pop(L, 2);
  return same ? raw_bytes(L, idx, len) : NULL;
}

/* ---- decoding ------------------------------------------------------------- */

/* tolerate a little foreign data, and raw values embedded in a message */
#define DECODE_DEPTH (ER_MAX_DEPTH + ER_RAW_MAX_DEPTH)

/* One pass over the bytes: every read is checked against the end, so a
 * value is refused (0, nothing pushed) the moment its bytes stop making
 * sense.  msgpuck's mp_check is not used: it counts the values still to
 * read in an int, and an array or map header of about 2^31 or 2^32 entries
 * overflows it.  Here an array or map may never claim more entries than
 * there are bytes left (every value takes at least one), which also bounds
 * what lua_createtable preallocates. */
typedef struct dec {
  lua_State *L;
  const unsigned char *p, *end;
  er_strcache *cache; /* for map keys, or NULL */
  int anchors;        /* absolute index of the cache's anchors table */
  /* A refusal of a uint 64 above 2^63-1 (Lua has no such integer, and a
   * float would change the value): `big` holds it.  When `where` is set,
   * the tables it is in push the path to it while they give up, one string
   * each ("[2]", ".amount", the innermost first): `segs` of them. */
  int range, where, segs;
  uint64_t big;
} dec;

void er_push_cached(lua_State *L, const char *s, size_t len, er_strcache *c,
                    int anchors) {
  const unsigned char *u = (const unsigned char *)s;
  unsigned h, slot;
  if (len == 0 || len > ER_STRCACHE_MAXLEN) {
    lua_pushlstring(L, s, len);
    return;
  }
  h = (unsigned)len;
  h = h * 31 + u[0];
  h = h * 31 + u[len / 2];
  h = h * 31 + u[len - 1];
  slot = (h ^ (h >> 8)) % ER_STRCACHE_SLOTS;
  if (c->len[slot] == len && memcmp(c->bytes[slot], s, len) == 0) {
    lua_rawgeti(L, anchors, ER_STRCACHE_BASE + (lua_Integer)slot);
    return;
  }
  lua_pushlstring(L, s, len);
  lua_pushvalue(L, -1);
  lua_rawseti(L, anchors, ER_STRCACHE_BASE + (lua_Integer)slot);
  memcpy(c->bytes[slot], s, len);
  c->len[slot] = (unsigned char)len;
}

static uint64_t be(const unsigned char *p, int n) {
  uint64_t v = 0;
  while (n-- > 0) v = (v << 8) | *p++;
  return v;
}

/* The next n bytes as a big-endian number into *v; 0 when they run out. */
static int dec_uint(dec *d, int n, uint64_t *v) {
  if (d->end - d->p < n) return 0;
  *v = be(d->p, n);
  d->p += n;
  return 1;
}

static int dec_str(dec *d, uint64_t len) {
  if (len > (uint64_t)(d->end - d->p)) return 0;
  lua_pushlstring(d->L, (const char *)d->p, (size_t)len);
  d->p += len;
  return 1;
}

static int dec_value(dec *d, int depth);

/* A map key: strings through the cache when there is one (returns 2 for
 * those: a string key needs no further check). */
static int dec_key(dec *d, int depth) {
  unsigned char c;
  uint64_t len;
  if (!d->cache || d->p >= d->end) return dec_value(d, depth);
  c = *d->p;
  if (c >= 0xa0 && c <= 0xbf) len = c & 0x1f;
  else if (c == 0xd9 && d->end - d->p >= 2) len = d->p[1];
  else return dec_value(d, depth);
  if (len > (uint64_t)(d->end - d->p) - (c == 0xd9 ? 2 : 1)) return 0;
  d->p += c == 0xd9 ? 2 : 1;
  er_push_cached(d->L, (const char *)d->p, (size_t)len, d->cache, d->anchors);
  d->p += len;
  return 2;
}

/* On a refusal for `range`: push the path segment of the entry that held
 * it, the key at stack index `key` (0: the entry `index` of an array, -1:
 * the key itself).  Runs only while a refusal unwinds.  Returns 0. */
static int dec_where(dec *d, int key, uint64_t index) {
  lua_State *L = d->L;
  if (!d->range || !d->where) return 0;
  if (d->segs < 0 || !lua_checkstack(L, 2)) {
    d->segs = -1; /* no room: the message goes without the path */
    return 0;
  }
  if (key == -1) lua_pushliteral(L, ": key");
  else if (key == 0) lua_pushfstring(L, "[%I]", (LUAI_UACINT)index);
  else switch (lua_type(L, key)) {
  case LUA_TSTRING: {
    size_t len, i;
    const char *k = lua_tolstring(L, key, &len);
    if (is_name(k, len)) lua_pushfstring(L, ".%s", k);
    else {
      luaL_Buffer B;
      luaL_buffinit(L, &B);
      luaL_addstring(&B, "[\"");
      for (i = 0; i < len && i < 40; i++) {
        unsigned char c = (unsigned char)k[i];
        if (c < 0x20 || c == 0x7f || c == '"' || c == '\\' || c >= 0x80) {
          char esc[5];
          snprintf(esc, sizeof esc, "\\x%02x", c);
          luaL_addstring(&B, esc);
        } else {
          luaL_addchar(&B, (char)c);
        }
      }
      luaL_addstring(&B, len > 40 ? "...\"]" : "\"]");
      luaL_pushresult(&B);
    }
    break;
  }
  case LUA_TNUMBER:
    if (lua_isinteger(L, key)) lua_pushfstring(L, "[%I]", (LUAI_UACINT)lua_tointeger(L, key));
    else lua_pushfstring(L, "[%f]", (LUAI_UACNUMBER)lua_tonumber(L, key));
    break;
  case LUA_TBOOLEAN:
    lua_pushstring(L, lua_toboolean(L, key) ? "[true]" : "[false]");
    break;
  default:
    lua_pushliteral(L, "[?]");
  }
  d->segs++;
  return 0;
}

/* n entries (2n values for a map) into a new table. */
static int dec_table(dec *d, uint64_t n, int map, int depth) {
  lua_State *L = d->L;
  uint64_t i;
  int t;
  if (depth >= DECODE_DEPTH || n > (uint64_t)(d->end - d->p) >> map ||
      !lua_checkstack(L, 3))
    return 0;
  if (!map) {
    lua_createtable(L, (int)(n > 1u << 20 ? 1u << 20 : n), 0);
    for (i = 1; i <= n; i++) {
      if (!dec_value(d, depth + 1)) return dec_where(d, 0, i);
      lua_rawseti(L, -2, (lua_Integer)i);
    }
    return 1;
  }
  lua_createtable(L, 0, (int)(n > 1u << 20 ? 1u << 20 : n));
  t = lua_gettop(L);
  for (i = 0; i < n; i++) {
    int got = dec_key(d, depth + 1);
    if (!got) return dec_where(d, -1, 0);
    if (got == 2) {
      /* a string */
    } else if (lua_type(L, -1) == LUA_TNUMBER) {
      lua_Number k = lua_tonumber(L, -1);
      if (k != k) return 0; /* NaN */
    } else if (lua_isnil(L, -1)) {
      return 0;
    }
    if (!dec_value(d, depth + 1)) return dec_where(d, t + 1, 0); /* the key */
    lua_rawset(L, -3);
  }
  return 1;
}

/* Push the value at d->p (the caller has made room for one more slot).
 * Returns 0 on bytes that are not MessagePack and on values Lua cannot
 * hold (ext types, nil/NaN keys, depth). */
static int dec_value(dec *d, int depth) {
  lua_State *L = d->L;
  uint64_t u;
  unsigned char c;
  if (d->p >= d->end) return 0;
  c = *d->p++;
  if (c <= 0x7f) {
    lua_pushinteger(L, (lua_Integer)c);
    return 1;
  }
  if (c >= 0xe0) {
    lua_pushinteger(L, (lua_Integer)(int8_t)c);
    return 1;
  }
  if (c <= 0x8f) return dec_table(d, c & 0x0f, 1, depth);
  if (c <= 0x9f) return dec_table(d, c & 0x0f, 0, depth);
  if (c <= 0xbf) return dec_str(d, c & 0x1f);
  switch (c) {
  case 0xc0:
    lua_pushnil(L);
    return 1;
  case 0xc2:
  case 0xc3:
    lua_pushboolean(L, c == 0xc3);
    return 1;
  case 0xc4: case 0xd9: /* bin 8, str 8 */
    return dec_uint(d, 1, &u) && dec_str(d, u);
  case 0xc5: case 0xda: /* bin 16, str 16 */
    return dec_uint(d, 2, &u) && dec_str(d, u);
  case 0xc6: case 0xdb: /* bin 32, str 32 */
    return dec_uint(d, 4, &u) && dec_str(d, u);
  case 0xca: { /* float 32 */
    uint32_t w;
    float f;
    if (!dec_uint(d, 4, &u)) return 0;
    w = (uint32_t)u;
    memcpy(&f, &w, 4);
    lua_pushnumber(L, (lua_Number)f);
    return 1;
  }
  case 0xcb: { /* float 64 */
    double f;
    if (!dec_uint(d, 8, &u)) return 0;
    memcpy(&f, &u, 8);
    lua_pushnumber(L, (lua_Number)f);
    return 1;
  }
  case 0xcc: case 0xcd: case 0xce: case 0xcf: /* uint 8 .. 64 */
    if (!dec_uint(d, 1 << (c - 0xcc), &u)) return 0;
    if (u > (uint64_t)LUA_MAXINTEGER) { /* another publisher's: refused */
      d->range = 1;
      d->big = u;
      return 0;
    }
    lua_pushinteger(L, (lua_Integer)u);
    return 1;
  case 0xd0: /* int 8 .. 64 */
    if (!dec_uint(d, 1, &u)) return 0;
    lua_pushinteger(L, (lua_Integer)(int8_t)u);
    return 1;
  case 0xd1:
    if (!dec_uint(d, 2, &u)) return 0;
    lua_pushinteger(L, (lua_Integer)(int16_t)u);
    return 1;
  case 0xd2:
    if (!dec_uint(d, 4, &u)) return 0;
    lua_pushinteger(L, (lua_Integer)(int32_t)u);
    return 1;
  case 0xd3:
    if (!dec_uint(d, 8, &u)) return 0;
    lua_pushinteger(L, (lua_Integer)(int64_t)u);
    return 1;
  case 0xdc: /* array 16, 32 */
    return dec_uint(d, 2, &u) && dec_table(d, u, 0, depth);
  case 0xdd:
    return dec_uint(d, 4, &u) && dec_table(d, u, 0, depth);
  case 0xde: /* map 16, 32 */
    return dec_uint(d, 2, &u) && dec_table(d, u, 1, depth);
  case 0xdf:
    return dec_uint(d, 4, &u) && dec_table(d, u, 1, depth);
  default: /* 0xc1 (never used) and the ext types */
    return 0;
  }
}

/* The message of a refusal for `range`: the path from the `segs` strings
 * on top of the stack (the innermost lowest), then the number. */
static void range_message(dec *d) {
  lua_State *L = d->L;
  luaL_Buffer B;
  int top = lua_gettop(L), i;
  char num[24];
  luaL_checkstack(L, 4, NULL);
  luaL_buffinit(L, &B);
  for (i = 0; i < d->segs; i++) {
    const char *s = lua_tostring(L, top - i);
    /* "data.amount", not ".data.amount"; "key: ...", not ": key: ..." */
    if (i == 0 && s[0] == '.') s++;
    else if (i == 0 && s[0] == ':') s += 2;
    luaL_addstring(&B, s);
  }
  if (d->segs > 0) luaL_addstring(&B, ": ");
  snprintf(num, sizeof num, "%llu", (unsigned long long)d->big);
  luaL_addstring(&B, "integer ");
  luaL_addstring(&B, num);
  luaL_addstring(&B, " is outside the 64-bit range");
  luaL_pushresult(&B);
}

static int decode(lua_State *L, const char *p, size_t len, er_strcache *c,
                  int anchors, const char *malformed) {
  int top = lua_gettop(L);
  dec d;
  d.L = L;
  d.p = (const unsigned char *)p;
  d.end = d.p + len;
  d.cache = c;
  d.anchors = anchors;
  d.range = d.segs = 0;
  d.where = malformed != NULL;
  d.big = 0;
  if (len == 0 || !lua_checkstack(L, 3)) {
    if (malformed) lua_pushstring(L, malformed);
    return 0;
  }
  if (!dec_value(&d, 0) || d.p != d.end) {
    if (malformed) {
      if (d.range) {
        if (d.segs < 0) d.segs = 0;
        range_message(&d);
      } else {
        lua_pushstring(L, malformed);
      }
      lua_copy(L, -1, top + 1);
      lua_settop(L, top + 1);
    } else {
      lua_settop(L, top);
    }
    return 0;
  }
  return 1;
}

int er_decode(lua_State *L, const char *p, size_t len) {
  return decode(L, p, len, NULL, 0, NULL);
}

int er_decode_msg(lua_State *L, const char *p, size_t len, const char *malformed) {
  return decode(L, p, len, NULL, 0, malformed ? malformed : "not MessagePack");
}

int er_decode_cached(lua_State *L, const char *p, size_t len, er_strcache *c,
                     int anchors) {
  return decode(L, p, len, c, lua_absindex(L, anchors), NULL);
}
