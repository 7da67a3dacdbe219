/* er_aux.c -- options tables and error values of the Lua bindings (see
 * er_aux.h). */
#include <lauxlib.h>
#include <string.h>

#include "er_aux.h"

/* ---- options -------------------------------------------------------------- */

/* Push opts[name] (opts at argument `arg`, absent: nil), following one
 * "a.b" step into a nested table (not a table there: nil).  Returns its
 * type. */
static int get_opt(lua_State *L, int arg, const char *name) {
  const char *dot = strchr(name, '.');
  if (lua_isnoneornil(L, arg)) {
    lua_pushnil(L);
    return LUA_TNIL;
  }
  if (!dot) return lua_getfield(L, arg, name);
  lua_pushlstring(L, name, (size_t)(dot - name));
  if (lua_gettable(L, arg) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_pushnil(L);
    return LUA_TNIL;
  }
  lua_getfield(L, -1, dot + 1);
  lua_remove(L, -2);
  return lua_type(L, -1);
}

void er_check_opts(lua_State *L, int arg, const char *field,
                   const char *const known[]) {
  int t;
  if (lua_isnoneornil(L, arg)) return;
  luaL_checktype(L, arg, LUA_TTABLE);
  if (field) {
    if (lua_getfield(L, arg, field) != LUA_TTABLE) {
      lua_pop(L, 1);
      return;
    }
  } else {
    lua_pushvalue(L, arg);
  }
  t = lua_gettop(L);
  lua_pushnil(L);
  while (lua_next(L, t)) {
    size_t i;
    lua_pop(L, 1); /* the value */
    if (lua_type(L, -1) == LUA_TSTRING) {
      const char *k = lua_tostring(L, -1);
      for (i = 0; known[i]; i++)
        if (strcmp(k, known[i]) == 0) break;
      if (known[i]) continue;
      luaL_argerror(L, arg, lua_pushfstring(L, "unknown option '%s%s%s'",
                                            field ? field : "", field ? "." : "", k));
    }
    luaL_argerror(L, arg, lua_pushfstring(L, "unknown option %s%s%s",
                                          field ? field : "", field ? "." : "",
                                          luaL_tolstring(L, -1, NULL)));
  }
  lua_pop(L, 1);
}

lua_Integer er_opt_integer(lua_State *L, int arg, const char *name,
                           lua_Integer min, lua_Integer max, lua_Integer def) {
  lua_Integer v = def;
  if (get_opt(L, arg, name) != LUA_TNIL) {
    int ok;
    v = lua_tointegerx(L, -1, &ok);
    if (!ok || v < min || v > max) {
      if (max == ER_NO_MAX)
        luaL_argerror(L, arg, lua_pushfstring(L, "%s must be an integer >= %I", name,
                                              (LUAI_UACINT)min));
      luaL_argerror(L, arg, lua_pushfstring(L, "%s must be an integer from %I to %I", name,
                                            (LUAI_UACINT)min, (LUAI_UACINT)max));
    }
  }
  lua_pop(L, 1);
  return v;
}

int er_opt_boolean(lua_State *L, int arg, const char *name, int def) {
  int v = def;
  if (get_opt(L, arg, name) != LUA_TNIL) {
    if (!lua_isboolean(L, -1))
      luaL_argerror(L, arg, lua_pushfstring(L, "%s must be a boolean", name));
    v = lua_toboolean(L, -1);
  }
  lua_pop(L, 1);
  return v;
}

const char *er_opt_string(lua_State *L, int arg, const char *name, size_t *len) {
  const char *s = NULL;
  switch (get_opt(L, arg, name)) {
  case LUA_TNIL:
    break;
  case LUA_TSTRING:
    s = lua_tolstring(L, -1, len); /* the options table holds it */
    break;
  default:
    luaL_argerror(L, arg, lua_pushfstring(L, "%s must be a string", name));
  }
  lua_pop(L, 1);
  return s;
}

/* ---- errors --------------------------------------------------------------- */

static int error_tostring(lua_State *L) {
  lua_getfield(L, 1, "message");
  if (!lua_isstring(L, -1)) lua_pushliteral(L, "eventrocks error");
  return 1;
}

void er_error_metatable(lua_State *L) {
  if (luaL_newmetatable(L, ER_ERROR_MT)) {
    lua_pushcfunction(L, error_tostring);
    lua_setfield(L, -2, "__tostring");
  }
}

int er_new_error(lua_State *L, const char *code, const char *message) {
  lua_createtable(L, 0, 4);
  lua_pushstring(L, code);
  lua_setfield(L, -2, "code");
  lua_pushstring(L, message);
  lua_setfield(L, -2, "message");
  luaL_setmetatable(L, ER_ERROR_MT);
  return lua_gettop(L);
}
