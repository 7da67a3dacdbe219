/*
 * jsonl_import.c -- libFuzzer target: one line of `eventrocks import`.
 *
 * Embeds Lua 5.4 with the repository's lua/ modules (lua/eventrocks/jsonl.lua
 * on the system's dkjson) and the binding linked in (eventrocks.core, for
 * the checks an append makes), and runs fuzz/jsonl_import.lua on every
 * input; that file says what is checked.  A Lua error that escapes it, or a
 * crash anywhere below (dkjson, the binding, er_encode / er_decode), is a
 * finding.
 *
 * The sources are found in ER_SOURCE_DIR (set by mk/fuzz.mk to the checkout)
 * or in $EVENTROCKS_SRC.  The store the appends are checked against is
 * opened in a temporary directory (fuzz_util.h) that is removed at once:
 * nothing is ever committed to it.
 */
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdint.h>

#include "er_value.h"
#include "fuzz_util.h"

#ifndef ER_SOURCE_DIR
#define ER_SOURCE_DIR "."
#endif

int luaopen_eventrocks_core(lua_State *L);
int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static lua_State *L;
static char *dir;
static int run_ref = LUA_NOREF;
static er_buf buf;

/* stored(v): what the store keeps of v, er_decode(er_encode(v)); raises as
 * an append does for a value it refuses. */
static int l_stored(lua_State *l) {
  lua_settop(l, 1);
  buf.len = 0;
  er_encode(l, 1, &buf, 1, "value");
  if (!er_decode(l, buf.p, buf.len))
    return luaL_error(l, "FUZZ: er_decode refuses the %d bytes er_encode wrote",
                      (int)buf.len);
  return 1;
}

static int traceback(lua_State *l) {
  const char *msg = lua_tostring(l, 1);
  luaL_traceback(l, l, msg ? msg : "(error object is not a string)", 1);
  return 1;
}

static void cleanup(void) {
  if (L) {
    er_buf_free(L, &buf);
    lua_close(L); /* closes the store */
    L = NULL;
  }
  fu_rmtree(dir);
  free(dir);
  dir = NULL;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  const char *src = getenv("EVENTROCKS_SRC");
  (void)argc;
  (void)argv;
  if (!src || !*src) src = ER_SOURCE_DIR;
  L = luaL_newstate();
  CHECK(L != NULL);
  luaL_openlibs(L);
  luaL_requiref(L, "eventrocks.core", luaopen_eventrocks_core, 0);
  lua_pop(L, 1);
  /* package.path: the checkout's lua/ first, then the system's (dkjson) */
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "path");
  lua_pushfstring(L, "%s/lua/?.lua;%s/lua/?/init.lua;%s", src, src,
                  lua_tostring(L, -1));
  lua_setfield(L, -3, "path");
  lua_pop(L, 2);

  dir = fu_mkdtemp();
  lua_pushcfunction(L, traceback);
  lua_pushfstring(L, "%s/fuzz/jsonl_import.lua", src);
  if (luaL_loadfile(L, lua_tostring(L, -1)) != LUA_OK) {
    fprintf(stderr, "jsonl_import: %s\n", lua_tostring(L, -1));
    abort();
  }
  lua_remove(L, -2);
  /* (store, stored) */
  luaL_requiref(L, "eventrocks.core", luaopen_eventrocks_core, 0);
  lua_getfield(L, -1, "open");
  lua_remove(L, -2);
  lua_pushstring(L, dir);
  if (lua_pcall(L, 1, 2, 0) != LUA_OK || lua_isnil(L, -2)) {
    fprintf(stderr, "jsonl_import: cannot open a store in %s: %s\n", dir,
            luaL_tolstring(L, -1, NULL));
    abort();
  }
  lua_pop(L, 1);
  /* Nothing is ever written to the store: its files can go now (the open
   * ones live on until the close), so that a crash leaves nothing behind. */
  fu_rmtree(dir);
  /* registered after the open: at exit, before the destructors of the
   * statics RocksDB made while opening */
  atexit(cleanup);
  lua_pushcfunction(L, l_stored);
  if (lua_pcall(L, 2, 1, 1) != LUA_OK) {
    fprintf(stderr, "jsonl_import: %s\n", lua_tostring(L, -1));
    abort();
  }
  CHECK(lua_isfunction(L, -1));
  run_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_settop(L, 0);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  lua_settop(L, 0);
  lua_pushcfunction(L, traceback);
  lua_rawgeti(L, LUA_REGISTRYINDEX, run_ref);
  lua_pushlstring(L, (const char *)data, size);
  if (lua_pcall(L, 1, 0, 1) != LUA_OK) {
    size_t len;
    const char *msg = lua_tolstring(L, -1, &len); /* may hold NULs */
    fputs("jsonl_import: ", stderr);
    fwrite(msg, 1, len, stderr);
    fputc('\n', stderr);
    abort();
  }
  lua_settop(L, 0);
  return 0;
}
