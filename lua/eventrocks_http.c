/*
 * eventrocks.http: a small Lua binding to GNU libmicrohttpd, with just what
 * the web explorer (lua/eventrocks/ui.lua) needs: a server on one address
 * that answers GET and HEAD requests by calling a Lua function.
 *
 *   local http = require "eventrocks.http"
 *   local srv, err = http.listen({ address = "127.0.0.1", port = 0,
 *     handler = function(req) return 200, { ["Content-Type"] = "text/plain" }, "hi" end })
 *   srv.port                      -- the port bound (port = 0: one the kernel chose)
 *   while true do srv:run(250) end  -- waits at most 250 ms, answers what came
 *   srv:close()                   -- idempotent; also __close and __gc
 *
 * Threads: none.  The daemon runs in libmicrohttpd's "external" mode with
 * epoll: srv:run polls the daemon's one epoll descriptor and calls MHD_run
 * on the calling thread, and libmicrohttpd calls the access handler inside
 * that MHD_run.  The handler calls the Lua function there, with the
 * lua_State of srv:run, under lua_pcall: no Lua state is ever touched from
 * another thread, and no Lua error unwinds through libmicrohttpd's frames.
 *
 * req is { method =, path = (percent-decoded by libmicrohttpd), query =
 * { name = value } (the first value of each name), args = { {name, value},
 * ... } (every one, in order), headers = { lower-case name = value } }.
 * Values are exact bytes (a %00 in a query value is kept).  The handler
 * returns status, headers (table name -> string), body (string).  A Lua
 * error in it, or a return of the wrong shape, is answered with 500 and the
 * message as plain text.  Methods other than GET and HEAD get 405 without
 * calling it; libmicrohttpd leaves out the body of a HEAD answer.
 *
 * Failures to listen return nil, err (er_aux.h): code "io" with the
 * system's reason (address in use, not an address of this machine).
 * Misuse raises: a bad address, options of the wrong type, srv:run from
 * inside the handler, a closed server.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <lauxlib.h>
#include <lua.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

#include "er_aux.h"

#define SERVER_MT "eventrocks.http.server"

typedef struct {
  struct MHD_Daemon *d; /* NULL once closed */
  lua_State *L;         /* the state of the srv:run in progress, else NULL */
  int handler_ref;      /* registry reference to the Lua handler */
  int port;
  char address[INET6_ADDRSTRLEN];
  unsigned long served;  /* requests answered */
} Server;

/* ---- requests --------------------------------------------------------------- */

/* A table field key = value (string with length) of the table on top. */
static void set_lstring(lua_State *L, const char *key, const char *v, size_t n) {
  lua_pushlstring(L, v, n);
  lua_setfield(L, -2, key);
}

/* MHD_KeyValueIteratorN for the GET arguments: the table at -2 is query
 * (first value of each name wins), the table at -1 is args. */
static enum MHD_Result add_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                               size_t key_size, const char *value, size_t value_size) {
  lua_State *L = cls;
  (void)kind;
  if (!key) return MHD_YES;
  if (!value) value = "", value_size = 0;
  lua_createtable(L, 2, 0); /* {name, value} into args */
  lua_pushlstring(L, key, key_size);
  lua_rawseti(L, -2, 1);
  lua_pushlstring(L, value, value_size);
  lua_rawseti(L, -2, 2);
  lua_rawseti(L, -2, (lua_Integer)luaL_len(L, -2) + 1);
  lua_pushlstring(L, key, key_size); /* query[name] unless set */
  if (lua_rawget(L, -3) == LUA_TNIL) {
    lua_pushlstring(L, key, key_size);
    lua_pushlstring(L, value, value_size);
    lua_rawset(L, -5);
  }
  lua_pop(L, 1);
  return MHD_YES;
}

/* The same for the headers: names lower-cased into the table on top. */
static enum MHD_Result add_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                  size_t key_size, const char *value, size_t value_size) {
  lua_State *L = cls;
  luaL_Buffer b;
  size_t i;
  (void)kind;
  if (!key) return MHD_YES;
  luaL_buffinit(L, &b);
  for (i = 0; i < key_size; i++) {
    char c = key[i];
    luaL_addchar(&b, (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c);
  }
  luaL_pushresult(&b);
  lua_pushlstring(L, value ? value : "", value ? value_size : 0);
  lua_rawset(L, -3);
  return MHD_YES;
}

/* Build req and call the handler: protected, called by lua_pcall with the
 * connection, method and url as light userdata / strings.  Leaves status,
 * headers, body on the stack, checked. */
static int call_handler(lua_State *L) {
  struct MHD_Connection *c = lua_touserdata(L, 1);
  Server *s = lua_touserdata(L, 2);
  const char *method = lua_tostring(L, 3), *url = lua_tostring(L, 4);
  lua_settop(L, 0);
  lua_rawgeti(L, LUA_REGISTRYINDEX, s->handler_ref);
  lua_createtable(L, 0, 5);
  lua_pushstring(L, method);
  lua_setfield(L, -2, "method");
  set_lstring(L, "path", url, strlen(url));
  lua_newtable(L); /* query */
  lua_newtable(L); /* args */
  MHD_get_connection_values_n(c, MHD_GET_ARGUMENT_KIND, add_arg, L);
  lua_setfield(L, -3, "args");
  lua_setfield(L, -2, "query");
  lua_newtable(L);
  MHD_get_connection_values_n(c, MHD_HEADER_KIND, add_header, L);
  lua_setfield(L, -2, "headers");
  lua_call(L, 1, 3);
  if (!lua_isinteger(L, 1) || lua_tointeger(L, 1) < 100 || lua_tointeger(L, 1) > 599)
    return luaL_error(L, "the handler's status must be an integer from 100 to 599");
  if (!lua_isnoneornil(L, 2) && !lua_istable(L, 2))
    return luaL_error(L, "the handler's headers must be a table");
  if (lua_type(L, 3) != LUA_TSTRING) return luaL_error(L, "the handler's body must be a string");
  return 3;
}

/* A response of `body`, copied; NULL when out of memory. */
static struct MHD_Response *text_response(const char *body, size_t n, const char *type) {
  struct MHD_Response *r =
      MHD_create_response_from_buffer(n, (void *)(uintptr_t)body, MHD_RESPMEM_MUST_COPY);
  if (r) {
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
  }
  return r;
}

/* Whether a header name or value is safe to send: no CR, LF or NUL. */
static int header_ok(const char *v, size_t n) {
  return memchr(v, '\r', n) == NULL && memchr(v, '\n', n) == NULL && memchr(v, '\0', n) == NULL;
}

/* libmicrohttpd's access handler: called on the thread of srv:run. */
static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls) {
  Server *s = cls;
  lua_State *L = s->L;
  struct MHD_Response *r = NULL;
  unsigned int status = MHD_HTTP_INTERNAL_SERVER_ERROR;
  enum MHD_Result ret;
  int top;
  (void)version;
  (void)upload_data;
  if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
    *upload_data_size = 0; /* a body is not read: the answer closes the connection */
    r = text_response("only GET and HEAD\n", 18, "text/plain; charset=utf-8");
    if (!r) return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
    ret = MHD_queue_response(c, MHD_HTTP_METHOD_NOT_ALLOWED, r);
    MHD_destroy_response(r);
    return ret;
  }
  if (*con_cls == NULL) { /* the first call: headers only; answer on the next */
    *con_cls = s;
    return MHD_YES;
  }
  *upload_data_size = 0;
  if (L == NULL) return MHD_NO; /* cannot happen: MHD_run is only called by srv:run */
  top = lua_gettop(L);
  if (!lua_checkstack(L, 8)) return MHD_NO;
  lua_pushcfunction(L, call_handler);
  lua_pushlightuserdata(L, c);
  lua_pushlightuserdata(L, s);
  lua_pushstring(L, method);
  lua_pushstring(L, url ? url : "/");
  if (lua_pcall(L, 4, 3, 0) != LUA_OK) {
    size_t n;
    const char *msg = lua_tolstring(L, -1, &n);
    if (!msg) msg = "error in the handler (not a string)", n = strlen(msg);
    r = text_response(msg, n, "text/plain; charset=utf-8");
  } else {
    size_t n;
    const char *body = lua_tolstring(L, -1, &n);
    status = (unsigned int)lua_tointeger(L, -3);
    r = MHD_create_response_from_buffer(n, (void *)(uintptr_t)body, MHD_RESPMEM_MUST_COPY);
    if (r && lua_istable(L, -2)) {
      lua_pushnil(L);
      while (lua_next(L, -3)) {
        size_t kn, vn;
        const char *k, *v;
        if (lua_type(L, -2) == LUA_TSTRING && lua_type(L, -1) == LUA_TSTRING) {
          k = lua_tolstring(L, -2, &kn);
          v = lua_tolstring(L, -1, &vn);
          if (header_ok(k, kn) && header_ok(v, vn)) MHD_add_response_header(r, k, v);
        }
        lua_pop(L, 1);
      }
    }
  }
  lua_settop(L, top);
  if (!r) return MHD_NO;
  ret = MHD_queue_response(c, status, r);
  MHD_destroy_response(r);
  s->served++;
  return ret;
}

/* ---- the server ------------------------------------------------------------- */

static Server *check_server(lua_State *L) {
  Server *s = luaL_checkudata(L, 1, SERVER_MT);
  if (!s->d) luaL_error(L, "attempt to use a closed server");
  return s;
}

static void server_free(lua_State *L, Server *s) {
  if (s->d) {
    MHD_stop_daemon(s->d);
    s->d = NULL;
  }
  if (s->handler_ref != LUA_NOREF) {
    luaL_unref(L, LUA_REGISTRYINDEX, s->handler_ref);
    s->handler_ref = LUA_NOREF;
  }
}

/* srv:close(): stops listening and closes every connection; idempotent. */
static int server_close(lua_State *L) {
  Server *s = luaL_checkudata(L, 1, SERVER_MT);
  if (s->L) return luaL_error(L, "attempt to close a server from inside its handler");
  server_free(L, s);
  return 0;
}

static int server_gc(lua_State *L) {
  Server *s = luaL_checkudata(L, 1, SERVER_MT);
  server_free(L, s);
  return 0;
}

/* srv:run([timeout_ms]): waits at most timeout_ms (default 0: no waiting)
 * for activity and handles it, calling the handler for each complete
 * request.  Returns the number of requests answered so far (all runs).
 * An interrupted wait (a signal) returns early. */
static int server_run(lua_State *L) {
  Server *s = check_server(L);
  lua_Integer timeout = luaL_optinteger(L, 2, 0);
  const union MHD_DaemonInfo *info;
  MHD_UNSIGNED_LONG_LONG mhd_timeout;
  struct pollfd p;
  int rc;
  if (s->L) return luaL_error(L, "srv:run called from inside its handler");
  luaL_argcheck(L, timeout >= 0 && timeout <= INT32_MAX, 2, "timeout must be from 0 to 2^31-1 ms");
  if (MHD_get_timeout(s->d, &mhd_timeout) == MHD_YES && (lua_Integer)mhd_timeout < timeout)
    timeout = (lua_Integer)mhd_timeout;
  info = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_EPOLL_FD);
  if (!info) return luaL_error(L, "libmicrohttpd gave no epoll descriptor");
  p.fd = info->epoll_fd;
  p.events = POLLIN;
  p.revents = 0;
  rc = poll(&p, 1, (int)timeout);
  if (rc < 0 && errno != EINTR) return luaL_error(L, "poll: %s", strerror(errno));
  s->L = L;
  MHD_run(s->d);
  s->L = NULL;
  lua_pushinteger(L, (lua_Integer)s->served);
  return 1;
}

static int server_tostring(lua_State *L) {
  Server *s = luaL_checkudata(L, 1, SERVER_MT);
  if (!s->d) lua_pushliteral(L, "http server (closed)");
  else if (strchr(s->address, ':')) lua_pushfstring(L, "http server on [%s]:%d", s->address, s->port);
  else lua_pushfstring(L, "http server on %s:%d", s->address, s->port);
  return 1;
}

static int server_index(lua_State *L) {
  Server *s = luaL_checkudata(L, 1, SERVER_MT);
  const char *k = luaL_checkstring(L, 2);
  if (strcmp(k, "port") == 0) lua_pushinteger(L, s->port);
  else if (strcmp(k, "address") == 0) lua_pushstring(L, s->address);
  else if (strcmp(k, "closed") == 0) lua_pushboolean(L, s->d == NULL);
  else {
    luaL_getmetatable(L, SERVER_MT);
    lua_getfield(L, -1, "methods");
    lua_getfield(L, -1, k);
  }
  return 1;
}

static const char *const LISTEN_OPTS[] = {"address", "port", "handler", "connections", NULL};

/* http.listen({address =, port =, handler =, connections =}) -> srv, or
 * nil, err.  address: an IPv4 or IPv6 literal (default "127.0.0.1"); port
 * 0 (the default) lets the kernel choose; connections: the most at once
 * (default 64). */
static int http_listen(lua_State *L) {
  const char *addr;
  lua_Integer port, conns;
  Server *s;
  struct sockaddr_in sin;
  struct sockaddr_in6 sin6;
  struct sockaddr *sa;
  unsigned int flags = MHD_USE_EPOLL;
  const union MHD_DaemonInfo *info;
  luaL_checktype(L, 1, LUA_TTABLE);
  er_check_opts(L, 1, NULL, LISTEN_OPTS);
  addr = er_opt_string(L, 1, "address", NULL);
  if (!addr) addr = "127.0.0.1";
  port = er_opt_integer(L, 1, "port", 0, 65535, 0);
  conns = er_opt_integer(L, 1, "connections", 1, 1024, 64);
  lua_getfield(L, 1, "handler");
  luaL_argcheck(L, lua_isfunction(L, -1), 1, "handler must be a function");
  memset(&sin, 0, sizeof sin);
  memset(&sin6, 0, sizeof sin6);
  if (inet_pton(AF_INET, addr, &sin.sin_addr) == 1) {
    sin.sin_family = AF_INET;
    sin.sin_port = htons((uint16_t)port);
    sa = (struct sockaddr *)&sin;
  } else if (inet_pton(AF_INET6, addr, &sin6.sin6_addr) == 1) {
    sin6.sin6_family = AF_INET6;
    sin6.sin6_port = htons((uint16_t)port);
    sa = (struct sockaddr *)&sin6;
    flags |= MHD_USE_IPv6;
  } else {
    return luaL_argerror(L, 1, lua_pushfstring(L, "address '%s' is not an IPv4 or IPv6 address", addr));
  }
  s = lua_newuserdatauv(L, sizeof *s, 0);
  memset(s, 0, sizeof *s);
  s->handler_ref = LUA_NOREF;
  luaL_setmetatable(L, SERVER_MT);
  lua_pushvalue(L, -2);
  s->handler_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  errno = 0;
  s->d = MHD_start_daemon(flags, (uint16_t)port, NULL, NULL, on_request, s,
                          MHD_OPTION_SOCK_ADDR, sa,
                          MHD_OPTION_CONNECTION_LIMIT, (unsigned int)conns,
                          MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)30,
                          MHD_OPTION_END);
  if (!s->d) {
    int e = errno;
    lua_pushnil(L);
    lua_pushfstring(L, "cannot listen on %s port %d: %s", addr, (int)port,
                    e ? strerror(e) : "libmicrohttpd refused to start");
    er_new_error(L, "io", lua_tostring(L, -1));
    lua_remove(L, -2);
    return 2; /* the userdata is collected; its __gc only unrefs */
  }
  info = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
  s->port = info ? (int)info->port : (int)port;
  inet_ntop(sa->sa_family, sa->sa_family == AF_INET ? (void *)&sin.sin_addr : (void *)&sin6.sin6_addr,
            s->address, sizeof s->address);
  return 1;
}

static const luaL_Reg server_methods[] = {
    {"run", server_run},
    {"close", server_close},
    {NULL, NULL},
};

int luaopen_eventrocks_http(lua_State *L);
int luaopen_eventrocks_http(lua_State *L) {
  er_error_metatable(L);
  lua_pop(L, 1);
  if (luaL_newmetatable(L, SERVER_MT)) {
    luaL_newlib(L, server_methods);
    lua_setfield(L, -2, "methods");
    lua_pushcfunction(L, server_index);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, server_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, server_gc);
    lua_setfield(L, -2, "__close");
    lua_pushcfunction(L, server_tostring);
    lua_setfield(L, -2, "__tostring");
  }
  lua_pop(L, 1);
  lua_newtable(L);
  lua_pushcfunction(L, http_listen);
  lua_setfield(L, -2, "listen");
  lua_pushstring(L, MHD_get_version());
  lua_setfield(L, -2, "libmicrohttpd");
  return 1;
}
