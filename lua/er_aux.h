/*
 * er_aux.h -- what the two Lua bindings (eventrocks.core, eventrocks.nats)
 * share: reading options tables and making error values.  Each binding
 * compiles er_aux.c in; neither needs the other loaded.
 *
 * Options.  A function's options are a table argument, absent or nil for
 * none.  Every key must be one the function knows (er_check_opts): a
 * misspelt option is never dropped silently.  A value of the wrong type or
 * out of range raises "bad argument #arg to 'fn' (<name> must be ...)".
 * A name may reach into a nested table: "tls.ca" is opts.tls.ca.
 *
 * Errors.  Operational failures return nil, err with err a table
 * { code = "<code>", message = "<text>", ... } whose metatable is the one
 * registered as ER_ERROR_MT (both bindings use the same table), and
 * tostring(err) is its message.
 */
#ifndef ER_AUX_H
#define ER_AUX_H

#include <lua.h>
#include <stddef.h>

#define ER_ERROR_MT "eventrocks.error"
#define ER_NO_MAX LUA_MAXINTEGER /* er_opt_integer without an upper bound */

/* Raise unless the table at argument `arg` (absent or nil: nothing to
 * check) has only keys among `known` (NULL-terminated); with `field`, the
 * keys of its nested table opts[field], when that is a table, are checked
 * and named "<field>.<key>" in the message. */
void er_check_opts(lua_State *L, int arg, const char *field,
                   const char *const known[]);

/* opts[name] as an integer from min to max, or `def` when absent. */
lua_Integer er_opt_integer(lua_State *L, int arg, const char *name,
                           lua_Integer min, lua_Integer max, lua_Integer def);

/* opts[name] as a boolean, or `def` when absent. */
int er_opt_boolean(lua_State *L, int arg, const char *name, int def);

/* opts[name] as a string, or NULL when absent.  The string stays valid
 * while the options table holds it; *len (when len is not NULL) gets its
 * length.  Nothing is left on the stack. */
const char *er_opt_string(lua_State *L, int arg, const char *name, size_t *len);

/* Push the error metatable, registering it (with its __tostring) when this
 * Lua state has none yet. */
void er_error_metatable(lua_State *L);

/* Push a new error table { code = code, message = message }; returns its
 * stack index.  er_error_metatable must have run in this state. */
int er_new_error(lua_State *L, const char *code, const char *message);

#endif
