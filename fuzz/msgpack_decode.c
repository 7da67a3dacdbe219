/*
 * msgpack_decode.c -- libFuzzer target: MessagePack -> Lua (er_decode,
 * lua/er_value.c), the decoder of every stored data and metadata value.
 *
 * er_decode must never crash or read outside its buffer (ASan), and must
 * leave the Lua stack as it found it when it refuses the bytes.  When it
 * accepts them (value v1), what er_value.h guarantees is checked:
 *  - er_encode(v1) succeeds, except where the decoder is knowingly more
 *    lenient than the encoder: table keys (a map or array used as a map
 *    key) and nesting between 201 and 256 tables deep;
 *  - its bytes decode again (v2), to a value equal to v1: same types, same
 *    math.type, NaN, -0.0 and every byte of strings kept;
 *  - er_encode(v2) has exactly the length of er_encode(v1) (the bytes may
 *    differ only in the order of map entries).
 * er_decode_cached (the binding's decoder of events, map keys through a
 * string cache kept from input to input) must accept exactly what
 * er_decode accepts and, where v1 encodes, return a value equal to it.
 * er_decode_msg (core.decode's) too, pushing one string when it refuses:
 * the fallback, or for a uint 64 above 2^63-1 (refused, never a float) a
 * message that ends with the number.
 * Equality is structural, not byte for byte: "bin" that is valid UTF-8
 * comes back as "str", float 32 as float 64, integers in their smallest
 * form, maps with duplicate or nil-valued keys without them.
 */
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "er_value.h"

#define CHECK(cond)                                                          \
  do {                                                                       \
    if (!(cond)) {                                                           \
      fprintf(stderr, "msgpack_decode: %s:%d: check failed: %s\n", __FILE__, \
              __LINE__, #cond);                                              \
      abort();                                                               \
    }                                                                        \
  } while (0)

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static lua_State *L;
static er_buf enc1, enc2; /* reused between inputs */
static er_strcache cache;   /* kept between inputs, as the binding does */
static int anchors_ref;     /* its anchors table */

/* Structural equality of two decoded values (no table keys in them). */
static const char same_lua[] =
    "local mtype = math.type\n"
    "local function same(a, b)\n"
    "  if type(a) ~= type(b) then return false end\n"
    "  if type(a) == 'number' then\n"
    "    if mtype(a) ~= mtype(b) then return false end\n"
    "    if a ~= a then return b ~= b end\n"
    "    if a == 0 and mtype(a) == 'float' then return 1 / a == 1 / b end\n"
    "    return a == b\n"
    "  end\n"
    "  if type(a) ~= 'table' then return a == b end\n"
    "  for k, v in next, a do\n"
    "    local w = rawget(b, k)\n"
    "    if w == nil or not same(v, w) then return false end\n"
    "  end\n"
    "  for k in next, b do\n"
    "    if rawget(a, k) == nil then return false end\n"
    "  end\n"
    "  return true\n"
    "end\n"
    "return same\n";
static int same_ref;

/* encode(value): er_encode into the er_buf of upvalue 1; raises like the
 * binding does. */
static int l_encode(lua_State *l) {
  er_buf *b = lua_touserdata(l, lua_upvalueindex(1));
  b->len = 0;
  er_encode(l, 1, b, 1, "value");
  return 0;
}

/* er_encode(value at `idx`) into `b` under pcall.  Returns 1, or 0 with the
 * error message in `*msg` (valid until the next call). */
static int encode(int idx, er_buf *b, const char **msg) {
  static char *copy;
  int top = lua_gettop(L);
  idx = lua_absindex(L, idx);
  lua_pushlightuserdata(L, b);
  lua_pushcclosure(L, l_encode, 1);
  lua_pushvalue(L, idx);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
    const char *m = lua_tostring(L, -1);
    free(copy);
    copy = strdup(m ? m : "(no message)");
    CHECK(copy != NULL);
    *msg = copy;
    lua_settop(L, top);
    return 0;
  }
  lua_settop(L, top);
  return 1;
}

static int same(int a, int b) {
  int r, top = lua_gettop(L);
  a = lua_absindex(L, a);
  b = lua_absindex(L, b);
  lua_rawgeti(L, LUA_REGISTRYINDEX, same_ref);
  lua_pushvalue(L, a);
  lua_pushvalue(L, b);
  CHECK(lua_pcall(L, 2, 1, 0) == LUA_OK);
  r = lua_toboolean(L, -1);
  lua_settop(L, top);
  return r;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  L = luaL_newstate();
  CHECK(L != NULL);
  luaL_openlibs(L);
  CHECK(luaL_loadstring(L, same_lua) == LUA_OK);
  CHECK(lua_pcall(L, 0, 1, 0) == LUA_OK);
  same_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_newtable(L);
  anchors_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return 0;
}

/* er_decode_msg agrees with er_decode (`accepted`): one value pushed
 * either way, the same value or a message; the stack as it was after. */
static void check_msg(const uint8_t *data, size_t size, int accepted) {
  int top = lua_gettop(L), got;
  got = er_decode_msg(L, (const char *)data, size, "FALLBACK");
  CHECK(got == accepted);
  CHECK(lua_gettop(L) == top + 1);
  if (got) {
    CHECK(lua_type(L, -1) == lua_type(L, top)); /* same() cannot take table keys */
  } else {
    const char *m = lua_tostring(L, -1);
    CHECK(m != NULL);
    if (strcmp(m, "FALLBACK") != 0) {
      size_t n = strlen(m);
      const char *tail = " is outside the 64-bit range";
      CHECK(n > strlen(tail) && strcmp(m + n - strlen(tail), tail) == 0);
      CHECK(strstr(m, "integer ") != NULL);
    }
  }
  lua_settop(L, top);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *msg;
  int cached;
  lua_settop(L, 0);
  lua_rawgeti(L, LUA_REGISTRYINDEX, anchors_ref); /* 1 */
  cached = er_decode_cached(L, (const char *)data, size, &cache, 1);
  CHECK(lua_gettop(L) == 1 + cached); /* nothing pushed on refusal */
  if (!er_decode(L, (const char *)data, size)) {
    CHECK(!cached);
    CHECK(lua_gettop(L) == 1); /* nothing pushed on refusal */
    check_msg(data, size, 0);
    return 0;
  }
  CHECK(cached);
  check_msg(data, size, 1);
  lua_remove(L, 1); /* the anchors */
  CHECK(lua_gettop(L) == 2); /* the cached decode, v1 */
  lua_insert(L, 1);

  if (!encode(1, &enc1, &msg)) {
    /* the decoder takes maps as keys and 256 levels of foreign data; the
     * encoder does not: nothing else may fail */
    if (!strstr(msg, "cannot be a key") && !strstr(msg, "nesting deeper than 200")) {
      fprintf(stderr, "msgpack_decode: a decoded value does not encode: %s\n", msg);
      abort();
    }
    return 0;
  }
  if (!same(1, 2)) {
    fprintf(stderr, "msgpack_decode: er_decode_cached differs from er_decode\n");
    abort();
  }
  lua_settop(L, 1);
  if (!er_decode(L, enc1.p, enc1.len)) {
    fprintf(stderr, "msgpack_decode: er_encode wrote %zu bytes er_decode refuses\n",
            enc1.len);
    abort();
  }
  CHECK(lua_gettop(L) == 2); /* v2 */
  if (!same(1, 2)) {
    fprintf(stderr, "msgpack_decode: decode(encode(v)) differs from v\n");
    abort();
  }
  if (!encode(2, &enc2, &msg)) {
    fprintf(stderr, "msgpack_decode: a re-decoded value does not encode: %s\n", msg);
    abort();
  }
  CHECK(enc2.len == enc1.len);
  lua_settop(L, 0);
  return 0;
}
