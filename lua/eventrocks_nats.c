/*
 * eventrocks.nats: a thin Lua binding to the NATS C client (libnats), with
 * just what the JetStream relay and consumer (lua/eventrocks/jetstream.lua)
 * need: connections, stream and consumer management, asynchronous publishing
 * with acknowledgements counted in C, and pull fetches.  It knows bytes,
 * subjects and headers; what an event is lives in the Lua module.
 *
 * Failures return nil, err with err an error value of er_aux.h, the
 * store's shape: {code, message [, js_code]}, tostring(err) its message.
 * Codes: "io" (unreachable, disconnected, timed out), "not_found" (stream,
 * consumer or message missing), "permission_denied", "too_large" (over the
 * server's max_payload or the stream's max_msg_size), "invalid" (rejected
 * by the server).  Options tables follow er_aux.h too: an unknown key, a
 * value of the wrong type or out of range raises.
 *
 * Threads: libnats calls the acknowledgement and error handlers on its own
 * threads.  They never touch Lua; they update counters under a mutex that
 * the Lua side reads.
 */
#define _GNU_SOURCE /* RTLD_NODELETE, dladdr */
#include <dlfcn.h>
#include <lauxlib.h>
#include <limits.h>
#include <lua.h>
#include <nats/nats.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "er_aux.h"

#define CONN_MT "eventrocks.nats.connection"
#define PUB_MT "eventrocks.nats.publisher"
#define SUB_MT "eventrocks.nats.subscription"
#define BATCH_MT "eventrocks.nats.batch"
#define OPTS_MT "eventrocks.nats.options"

/* the longest duration in ms that libnats' nanoseconds can hold */
#define MS_MAX ((lua_Integer)(INT64_MAX / 1000000))

/* ---- errors --------------------------------------------------------------- */

static const char *code_of(natsStatus s, jsErrCode jerr, const char *text) {
  if (jerr == JSStreamNotFoundErr || jerr == JSConsumerNotFoundErr) return "not_found";
  if (jerr == JSStreamMessageExceedsMaximumErr) return "too_large";
  if (jerr == JSNotEnabledErr || jerr == JSNotEnabledForAccountErr) return "invalid";
  if (text && (strstr(text, "ermission") || strstr(text, "uthorization"))) return "permission_denied";
  switch (s) {
  case NATS_NOT_PERMITTED: return "permission_denied";
  case NATS_NOT_FOUND: return "not_found";
  case NATS_MAX_PAYLOAD: return "too_large";
  case NATS_INVALID_ARG:
  case NATS_INVALID_SUBJECT:
  case NATS_INVALID_SUBSCRIPTION: return "invalid";
  case NATS_ERR: return jerr ? "invalid" : "io";
  default: return "io";
  }
}

/* Push nil, err; returns 2. */
static int push_err(lua_State *L, const char *code, const char *fmt, ...) {
  va_list ap;
  lua_pushnil(L);
  va_start(ap, fmt);
  lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  er_new_error(L, code, lua_tostring(L, -1));
  lua_remove(L, -2); /* the message */
  return 2;
}

/* Add err.js_code to the error on top of the stack. */
static int with_js_code(lua_State *L, jsErrCode jerr) {
  if (jerr) {
    lua_pushinteger(L, (lua_Integer)jerr);
    lua_setfield(L, -2, "js_code");
  }
  return 2;
}

static int push_nerr(lua_State *L, natsStatus s, jsErrCode jerr, const char *what) {
  const char *text = nats_GetLastError(NULL), *p;
  char buf[512];
  if (!text || !*text) text = natsStatus_GetText(s);
  /* libnats prefixes "(file.c:123): " */
  if (text[0] == '(' && (p = strstr(text, "): ")) != NULL) text = p + 3;
  snprintf(buf, sizeof buf, "%s", text);
  if (jerr)
    push_err(L, code_of(s, jerr, buf), "%s: %s (JetStream error %d)", what, buf, (int)jerr);
  else
    push_err(L, code_of(s, jerr, buf), "%s: %s", what, buf);
  return with_js_code(L, jerr);
}

static int push_stream_missing(lua_State *L, const char *stream, const char *urls) {
  return push_err(L, "not_found", "JetStream stream '%s' does not exist on %s", stream, urls);
}

static int push_consumer_missing(lua_State *L, const char *stream, const char *name) {
  return push_err(L, "not_found", "JetStream consumer '%s' of stream '%s' does not exist", name,
                  stream);
}

/* ---- options (er_aux.h) --------------------------------------------------- */

static const char *const CONNECT_OPTS[] = {
  "url", "name", "user", "password", "token", "credentials", "tls", "timeout", "reconnect",
  "max_reconnect", "reconnect_wait", "ping_interval", NULL};
static const char *const TLS_OPTS[] = {"ca", "cert", "key", "hostname", NULL};
static const char *const STREAM_OPTS[] = {"name", "subjects", "duplicate_window", "storage",
                                          "max_msg_size", NULL};
static const char *const CONSUMER_OPTS[] = {"durable", "filter", "start_seq", "ack_wait",
                                            "max_ack_pending", "max_deliver", NULL};
static const char *const PUBLISHER_OPTS[] = {"max_pending", "stall_wait", NULL};

/* ---- connections ---------------------------------------------------------- */

/* What libnats' threads report about a connection.  malloc'd, and freed
 * by the connection's closed callback: libnats delivers a connection's
 * callbacks in order, the closed one last, so no error callback can come
 * after it (the Lua userdata may be gone by then). */
typedef struct {
  pthread_mutex_t mu;
  natsStatus async_err;    /* last asynchronous error (e.g. a permission violation) */
  char async_text[256];
} connstate;

typedef struct {
  natsConnection *nc;
  jsCtx *js;               /* for management calls and fetches */
  connstate *st;
  char urls[512];          /* as given, for messages */
} lconn;

static void on_async_error(natsConnection *nc, natsSubscription *sub, natsStatus s,
                           void *closure) {
  connstate *st = closure;
  const char *text = NULL;
  (void)sub;
  natsConnection_GetLastError(nc, &text);
  pthread_mutex_lock(&st->mu);
  st->async_err = s;
  snprintf(st->async_text, sizeof st->async_text, "%s",
           text && *text ? text : natsStatus_GetText(s));
  pthread_mutex_unlock(&st->mu);
}

static void free_connstate(connstate *st) {
  pthread_mutex_destroy(&st->mu);
  free(st);
}

static void on_closed(natsConnection *nc, void *closure) {
  (void)nc;
  free_connstate(closure);
}

/* The last asynchronous error, cleared; NATS_OK when none. */
static natsStatus take_async_error(lconn *c, char *text, size_t len) {
  natsStatus s;
  if (!c->st) return NATS_OK;
  pthread_mutex_lock(&c->st->mu);
  s = c->st->async_err;
  if (text) snprintf(text, len, "%s", c->st->async_text);
  c->st->async_err = NATS_OK;
  c->st->async_text[0] = '\0';
  pthread_mutex_unlock(&c->st->mu);
  return s;
}

static lconn *check_conn(lua_State *L, int i) {
  lconn *c = luaL_checkudata(L, i, CONN_MT);
  if (!c->nc) luaL_error(L, "attempt to use a closed NATS connection");
  return c;
}

static int conn_close(lua_State *L) {
  lconn *c = luaL_checkudata(L, 1, CONN_MT);
  if (c->js) jsCtx_Destroy(c->js);
  c->js = NULL;
  if (c->nc) {
    c->st = NULL; /* on_closed frees it */
    natsConnection_Close(c->nc);
    natsConnection_Destroy(c->nc);
    c->nc = NULL;
  }
  return 0;
}

/* Set the options from the Lua table at index 1.  Returns NATS_OK or the
 * failing status, with a description in `what`. */
static natsStatus set_options(lua_State *L, natsOptions *o, lconn *c, const char **what) {
  natsStatus s = NATS_OK;
  const char *str, *str2;
  lua_Integer n;
  /* servers: url = "nats://a,nats://b" or an array */
  *what = "url";
  if (lua_getfield(L, 1, "url") == LUA_TTABLE) {
    int i, cnt = (int)lua_rawlen(L, -1);
    const char **list;
    luaL_argcheck(L, cnt > 0 && cnt <= 64, 1, "url must be a string or an array of 1 to 64 strings");
    list = lua_newuserdatauv(L, (size_t)cnt * sizeof *list, 0);
    c->urls[0] = '\0';
    for (i = 0; i < cnt; i++) {
      if (lua_rawgeti(L, -2, i + 1) != LUA_TSTRING)
        luaL_argerror(L, 1, "url must be a string or an array of strings");
      list[i] = lua_tostring(L, -1);
      if (strlen(c->urls) + strlen(list[i]) + 2 < sizeof c->urls) {
        if (i) strcat(c->urls, ",");
        strcat(c->urls, list[i]);
      }
      lua_pop(L, 1); /* anchored by the array */
    }
    s = natsOptions_SetServers(o, list, cnt);
    lua_pop(L, 1);
  } else if (lua_type(L, -1) == LUA_TSTRING || lua_isnil(L, -1)) {
    const char *url = lua_isnil(L, -1) ? NATS_DEFAULT_URL : lua_tostring(L, -1);
    snprintf(c->urls, sizeof c->urls, "%s", url);
    s = natsOptions_SetURL(o, url);
  } else {
    luaL_argerror(L, 1, "url must be a string or an array of strings");
  }
  lua_pop(L, 1);
  if (s != NATS_OK) return s;
  *what = "name";
  if ((str = er_opt_string(L, 1, "name", NULL)) && (s = natsOptions_SetName(o, str)) != NATS_OK)
    return s;
  *what = "user/password";
  str = er_opt_string(L, 1, "user", NULL);
  str2 = er_opt_string(L, 1, "password", NULL);
  if ((str || str2) && (s = natsOptions_SetUserInfo(o, str, str2)) != NATS_OK) return s;
  *what = "token";
  if ((str = er_opt_string(L, 1, "token", NULL)) && (s = natsOptions_SetToken(o, str)) != NATS_OK)
    return s;
  *what = "credentials";
  if ((str = er_opt_string(L, 1, "credentials", NULL)) &&
      (s = natsOptions_SetUserCredentialsFromFiles(o, str, NULL)) != NATS_OK)
    return s;
  *what = "tls";
  switch (lua_getfield(L, 1, "tls")) {
  case LUA_TNIL:
    break;
  case LUA_TBOOLEAN:
  case LUA_TTABLE:
    if (lua_toboolean(L, -1) && (s = natsOptions_SetSecure(o, true)) != NATS_OK) return s;
    break;
  default:
    luaL_argerror(L, 1, "tls must be a boolean or a table");
  }
  lua_pop(L, 1);
  *what = "tls.ca";
  if ((str = er_opt_string(L, 1, "tls.ca", NULL)) &&
      (s = natsOptions_LoadCATrustedCertificates(o, str)) != NATS_OK)
    return s;
  *what = "tls.cert/tls.key";
  str = er_opt_string(L, 1, "tls.cert", NULL);
  str2 = er_opt_string(L, 1, "tls.key", NULL);
  if ((str || str2) && (s = natsOptions_LoadCertificatesChain(o, str, str2)) != NATS_OK)
    return s;
  *what = "tls.hostname";
  if ((str = er_opt_string(L, 1, "tls.hostname", NULL)) &&
      (s = natsOptions_SetExpectedHostname(o, str)) != NATS_OK)
    return s;
  *what = "timeout";
  n = er_opt_integer(L, 1, "timeout", 1, ER_NO_MAX, 2000);
  if ((s = natsOptions_SetTimeout(o, n)) != NATS_OK) return s;
  *what = "reconnect";
  if ((s = natsOptions_SetAllowReconnect(o, er_opt_boolean(L, 1, "reconnect", 1))) != NATS_OK)
    return s;
  n = er_opt_integer(L, 1, "max_reconnect", -1, INT_MAX, 60);
  if ((s = natsOptions_SetMaxReconnect(o, (int)n)) != NATS_OK) return s;
  n = er_opt_integer(L, 1, "reconnect_wait", 0, ER_NO_MAX, 500);
  if ((s = natsOptions_SetReconnectWait(o, n)) != NATS_OK) return s;
  *what = "ping_interval";
  n = er_opt_integer(L, 1, "ping_interval", 0, ER_NO_MAX, 0);
  if (n && (s = natsOptions_SetPingInterval(o, n)) != NATS_OK) return s;
  return NATS_OK;
}

/* nats.connect(opts) -> connection | nil, err */
static int l_connect(lua_State *L) {
  natsOptions *o = NULL, **box;
  natsStatus s;
  const char *what = "options";
  lconn *c;
  if (lua_isnoneornil(L, 1)) {
    lua_settop(L, 0);
    lua_newtable(L);
  }
  er_check_opts(L, 1, NULL, CONNECT_OPTS);
  er_check_opts(L, 1, "tls", TLS_OPTS);
  lua_settop(L, 1);
  c = lua_newuserdatauv(L, sizeof *c, 0); /* 2 */
  memset(c, 0, sizeof *c);
  /* the options live in a box whose __gc destroys them, so that a bad
   * option raising in set_options leaks nothing */
  box = lua_newuserdatauv(L, sizeof *box, 0); /* 3 */
  *box = NULL;
  luaL_setmetatable(L, OPTS_MT);
  if (natsOptions_Create(box) != NATS_OK) return luaL_error(L, "out of memory");
  o = *box;
  s = set_options(L, o, c, &what); /* may raise (a bad option) */
  if (s != NATS_OK) return push_nerr(L, s, 0, what);
  c->st = calloc(1, sizeof *c->st);
  if (!c->st) return luaL_error(L, "out of memory");
  pthread_mutex_init(&c->st->mu, NULL);
  s = natsOptions_SetErrorHandler(o, on_async_error, c->st);
  if (s == NATS_OK) s = natsOptions_SetClosedCB(o, on_closed, c->st);
  if (s != NATS_OK) {
    free_connstate(c->st);
    c->st = NULL;
    return push_nerr(L, s, 0, "callbacks");
  }
  s = natsConnection_Connect(&c->nc, o);
  natsOptions_Destroy(o);
  *box = NULL;
  lua_settop(L, 2);
  if (s != NATS_OK) {
    /* no connection, no closed callback */
    free_connstate(c->st);
    c->st = NULL;
    c->nc = NULL;
    return push_err(L, code_of(s, 0, NULL), "cannot connect to %s: %s", c->urls,
                    natsStatus_GetText(s));
  }
  luaL_setmetatable(L, CONN_MT);
  s = natsConnection_JetStream(&c->js, c->nc, NULL);
  if (s != NATS_OK) {
    c->js = NULL;
    c->st = NULL; /* on_closed frees it */
    natsConnection_Close(c->nc);
    natsConnection_Destroy(c->nc);
    c->nc = NULL;
    return push_nerr(L, s, 0, "JetStream context");
  }
  return 1;
}

static int conn_url(lua_State *L) {
  lconn *c = check_conn(L, 1);
  char buf[256];
  if (natsConnection_GetConnectedUrl(c->nc, buf, sizeof buf) == NATS_OK && buf[0])
    lua_pushstring(L, buf);
  else
    lua_pushnil(L);
  return 1;
}

static int conn_urls(lua_State *L) {
  lconn *c = check_conn(L, 1);
  lua_pushstring(L, c->urls);
  return 1;
}

static int conn_max_payload(lua_State *L) {
  lconn *c = check_conn(L, 1);
  lua_pushinteger(L, (lua_Integer)natsConnection_GetMaxPayload(c->nc));
  return 1;
}

static int conn_status(lua_State *L) {
  static const char *const names[] = {"disconnected", "connecting", "connected", "closed",
                                      "reconnecting", "draining_subs", "draining_pubs"};
  lconn *c = check_conn(L, 1);
  natsConnStatus st = natsConnection_Status(c->nc);
  lua_pushstring(L, (int)st >= 0 && (int)st < 7 ? names[st] : "unknown");
  return 1;
}

/* conn:async_error() -> code, message of the last asynchronous error
 * (cleared), or nothing */
static int conn_async_error(lua_State *L) {
  lconn *c = check_conn(L, 1);
  char text[256];
  natsStatus s = take_async_error(c, text, sizeof text);
  if (s == NATS_OK) return 0;
  lua_pushstring(L, code_of(s, 0, text));
  lua_pushstring(L, text);
  return 2;
}

static int conn_flush(lua_State *L) {
  lconn *c = check_conn(L, 1);
  natsStatus s = natsConnection_FlushTimeout(c->nc, luaL_optinteger(L, 2, 5000));
  if (s != NATS_OK) return push_nerr(L, s, 0, "flush");
  lua_pushboolean(L, 1);
  return 1;
}

/* conn:request(subject, payload, timeout_ms) -> reply data | nil, err: a
 * plain NATS request (e.g. to the JetStream API, whose answers hold a
 * stored message's header bytes as the server keeps them). */
static int conn_request(lua_State *L) {
  lconn *c = check_conn(L, 1);
  const char *subject = luaL_checkstring(L, 2);
  size_t len;
  const char *data = luaL_optlstring(L, 3, "", &len);
  lua_Integer timeout = luaL_optinteger(L, 4, 5000);
  natsMsg *reply = NULL;
  natsStatus s;
  luaL_argcheck(L, len <= INT32_MAX, 3, "payload too large");
  luaL_argcheck(L, timeout >= 1, 4, "timeout must be >= 1 ms");
  s = natsConnection_Request(&reply, c->nc, subject, data, (int)len, timeout);
  if (s != NATS_OK) return push_nerr(L, s, 0, "request");
  lua_pushlstring(L, natsMsg_GetData(reply), (size_t)natsMsg_GetDataLength(reply));
  natsMsg_Destroy(reply);
  return 1;
}

/* ---- streams -------------------------------------------------------------- */

static void push_stream_info(lua_State *L, jsStreamInfo *si) {
  int i;
  lua_createtable(L, 0, 10);
  lua_pushstring(L, si->Config->Name);
  lua_setfield(L, -2, "name");
  lua_createtable(L, si->Config->SubjectsLen, 0);
  for (i = 0; i < si->Config->SubjectsLen; i++) {
    lua_pushstring(L, si->Config->Subjects[i]);
    lua_rawseti(L, -2, i + 1);
  }
  lua_setfield(L, -2, "subjects");
  lua_pushinteger(L, (lua_Integer)si->State.Msgs);
  lua_setfield(L, -2, "messages");
  lua_pushinteger(L, (lua_Integer)si->State.Bytes);
  lua_setfield(L, -2, "bytes");
  lua_pushinteger(L, (lua_Integer)si->State.FirstSeq);
  lua_setfield(L, -2, "first_seq");
  lua_pushinteger(L, (lua_Integer)si->State.LastSeq);
  lua_setfield(L, -2, "last_seq");
  lua_pushinteger(L, (lua_Integer)(si->Config->Duplicates / 1000000));
  lua_setfield(L, -2, "duplicate_window");
  lua_pushinteger(L, (lua_Integer)si->Config->MaxMsgSize);
  lua_setfield(L, -2, "max_msg_size");
  lua_pushstring(L, si->Config->Storage == js_MemoryStorage ? "memory" : "file");
  lua_setfield(L, -2, "storage");
  lua_pushinteger(L, (lua_Integer)si->State.Consumers);
  lua_setfield(L, -2, "consumers");
}

/* conn:stream_info(name) -> info | nil, err */
static int conn_stream_info(lua_State *L) {
  lconn *c = check_conn(L, 1);
  const char *name = luaL_checkstring(L, 2);
  jsStreamInfo *si = NULL;
  jsErrCode jerr = 0;
  natsStatus s = js_GetStreamInfo(&si, c->js, name, NULL, &jerr);
  if (s != NATS_OK) {
    if (s == NATS_NOT_FOUND || jerr == JSStreamNotFoundErr)
      return push_stream_missing(L, name, c->urls);
    return push_nerr(L, s, jerr, "stream info");
  }
  push_stream_info(L, si);
  jsStreamInfo_Destroy(si);
  return 1;
}

/* conn:add_stream{name=, subjects={...}, duplicate_window=ms,
 *   storage="file"|"memory", max_msg_size=bytes} -> info | nil, err */
static int conn_add_stream(lua_State *L) {
  lconn *c = check_conn(L, 1);
  jsStreamConfig cfg;
  jsStreamInfo *si = NULL;
  jsErrCode jerr = 0;
  natsStatus s;
  const char *subjects_small[16], **subjects = subjects_small;
  const char *storage;
  int i, n;
  luaL_checktype(L, 2, LUA_TTABLE);
  er_check_opts(L, 2, NULL, STREAM_OPTS);
  lua_settop(L, 2);
  jsStreamConfig_Init(&cfg);
  cfg.Name = er_opt_string(L, 2, "name", NULL);
  luaL_argcheck(L, cfg.Name && *cfg.Name, 2, "name must be a non-empty string");
  if (lua_getfield(L, 2, "subjects") != LUA_TTABLE) /* 3 */
    luaL_argerror(L, 2, "subjects must be an array of strings");
  n = (int)lua_rawlen(L, 3);
  luaL_argcheck(L, n > 0, 2, "subjects must not be empty");
  if (n > 16) subjects = lua_newuserdatauv(L, (size_t)n * sizeof *subjects, 0);
  for (i = 0; i < n; i++) {
    if (lua_rawgeti(L, 3, i + 1) != LUA_TSTRING)
      luaL_argerror(L, 2, "subjects must be an array of strings");
    subjects[i] = lua_tostring(L, -1);
    lua_pop(L, 1);
  }
  cfg.Subjects = subjects;
  cfg.SubjectsLen = n;
  cfg.Duplicates = (int64_t)er_opt_integer(L, 2, "duplicate_window", 1, MS_MAX, 120000) * 1000000;
  cfg.MaxMsgSize = (int32_t)er_opt_integer(L, 2, "max_msg_size", -1, INT32_MAX, -1);
  storage = er_opt_string(L, 2, "storage", NULL);
  if (storage && strcmp(storage, "memory") == 0) cfg.Storage = js_MemoryStorage;
  else if (storage && strcmp(storage, "file") != 0)
    luaL_argerror(L, 2, "storage must be \"file\" or \"memory\"");
  s = js_AddStream(&si, c->js, &cfg, NULL, &jerr);
  if (s != NATS_OK) return push_nerr(L, s, jerr, "create JetStream stream");
  push_stream_info(L, si);
  jsStreamInfo_Destroy(si);
  return 1;
}

static int conn_delete_stream(lua_State *L) {
  lconn *c = check_conn(L, 1);
  const char *name = luaL_checkstring(L, 2);
  jsErrCode jerr = 0;
  natsStatus s = js_DeleteStream(c->js, name, NULL, &jerr);
  if (s != NATS_OK) return push_nerr(L, s, jerr, "delete JetStream stream");
  lua_pushboolean(L, 1);
  return 1;
}

/* Push a stored message as {subject, data, seq, time, headers = {k = v}}. */
static void push_stored_msg(lua_State *L, natsMsg *m) {
  const char **keys = NULL;
  int nkeys = 0, i;
  lua_createtable(L, 0, 5);
  lua_pushstring(L, natsMsg_GetSubject(m));
  lua_setfield(L, -2, "subject");
  lua_pushlstring(L, natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m));
  lua_setfield(L, -2, "data");
  lua_pushinteger(L, (lua_Integer)natsMsg_GetSequence(m));
  lua_setfield(L, -2, "seq");
  lua_pushinteger(L, (lua_Integer)(natsMsg_GetTime(m) / 1000)); /* µs */
  lua_setfield(L, -2, "time");
  lua_newtable(L);
  if (natsMsgHeader_Keys(m, &keys, &nkeys) == NATS_OK) {
    for (i = 0; i < nkeys; i++) {
      const char *v = NULL;
      if (natsMsgHeader_Get(m, keys[i], &v) == NATS_OK && v) {
        lua_pushstring(L, v);
        lua_setfield(L, -2, keys[i]);
      }
    }
    free((void *)keys);
  }
  lua_setfield(L, -2, "headers");
}

/* conn:last_msg(stream, subject) / conn:get_msg(stream, seq) -> msg | nil, err
 * (err.code "not_found" when there is none) */
static int get_msg(lua_State *L, int last) {
  lconn *c = check_conn(L, 1);
  const char *stream = luaL_checkstring(L, 2);
  natsMsg *m = NULL;
  jsErrCode jerr = 0;
  natsStatus s;
  if (last) {
    s = js_GetLastMsg(&m, c->js, stream, luaL_checkstring(L, 3), NULL, &jerr);
  } else {
    lua_Integer seq = luaL_checkinteger(L, 3);
    luaL_argcheck(L, seq > 0, 3, "sequence must be >= 1");
    s = js_GetMsg(&m, c->js, stream, (uint64_t)seq, NULL, &jerr);
  }
  if (s != NATS_OK) {
    if (s == NATS_NOT_FOUND || jerr == JSNoMessageFoundErr)
      return push_err(L, "not_found", "no such message in JetStream stream '%s'", stream);
    return push_nerr(L, s, jerr, "get message");
  }
  push_stored_msg(L, m);
  natsMsg_Destroy(m);
  return 1;
}

static int conn_last_msg(lua_State *L) { return get_msg(L, 1); }
static int conn_get_msg(lua_State *L) { return get_msg(L, 0); }

/* ---- consumers ------------------------------------------------------------ */

static void push_consumer_info(lua_State *L, jsConsumerInfo *ci) {
  lua_createtable(L, 0, 8);
  lua_pushstring(L, ci->Name);
  lua_setfield(L, -2, "name");
  lua_pushstring(L, ci->Stream);
  lua_setfield(L, -2, "stream");
  lua_pushinteger(L, (lua_Integer)ci->Delivered.Stream);
  lua_setfield(L, -2, "delivered_seq");
  lua_pushinteger(L, (lua_Integer)ci->AckFloor.Stream);
  lua_setfield(L, -2, "ack_floor_seq");
  lua_pushinteger(L, (lua_Integer)ci->NumAckPending);
  lua_setfield(L, -2, "ack_pending");
  lua_pushinteger(L, (lua_Integer)ci->NumPending);
  lua_setfield(L, -2, "pending");
  lua_pushinteger(L, (lua_Integer)ci->NumRedelivered);
  lua_setfield(L, -2, "redelivered");
  lua_pushstring(L, ci->Config && ci->Config->FilterSubject ? ci->Config->FilterSubject : "");
  lua_setfield(L, -2, "filter");
}

static int conn_consumer_info(lua_State *L) {
  lconn *c = check_conn(L, 1);
  const char *stream = luaL_checkstring(L, 2), *name = luaL_checkstring(L, 3);
  jsConsumerInfo *ci = NULL;
  jsErrCode jerr = 0;
  natsStatus s = js_GetConsumerInfo(&ci, c->js, stream, name, NULL, &jerr);
  if (s != NATS_OK) {
    if (s == NATS_NOT_FOUND || jerr == JSConsumerNotFoundErr)
      return push_consumer_missing(L, stream, name);
    return push_nerr(L, s, jerr, "consumer info");
  }
  push_consumer_info(L, ci);
  jsConsumerInfo_Destroy(ci);
  return 1;
}

/* conn:add_consumer(stream, {durable=, filter=, start_seq=, ack_wait=ms,
 *   max_ack_pending=, max_deliver=}) -> info | nil, err.  A durable pull
 * consumer whose acknowledgements cover every earlier message (AckAll). */
static int conn_add_consumer(lua_State *L) {
  lconn *c = check_conn(L, 1);
  const char *stream = luaL_checkstring(L, 2);
  jsConsumerConfig cfg;
  jsConsumerInfo *ci = NULL;
  jsErrCode jerr = 0;
  natsStatus s;
  lua_Integer start;
  luaL_checktype(L, 3, LUA_TTABLE);
  er_check_opts(L, 3, NULL, CONSUMER_OPTS);
  lua_settop(L, 3);
  jsConsumerConfig_Init(&cfg);
  cfg.Durable = er_opt_string(L, 3, "durable", NULL);
  luaL_argcheck(L, cfg.Durable && *cfg.Durable, 3, "durable must be a non-empty string");
  cfg.FilterSubject = er_opt_string(L, 3, "filter", NULL);
  start = er_opt_integer(L, 3, "start_seq", 1, ER_NO_MAX, 1);
  if (start > 1) {
    cfg.DeliverPolicy = js_DeliverByStartSequence;
    cfg.OptStartSeq = (uint64_t)start;
  } else {
    cfg.DeliverPolicy = js_DeliverAll;
  }
  cfg.AckPolicy = js_AckAll;
  cfg.AckWait = (int64_t)er_opt_integer(L, 3, "ack_wait", 1, MS_MAX, 30000) * 1000000;
  cfg.MaxAckPending = (int64_t)er_opt_integer(L, 3, "max_ack_pending", 1, ER_NO_MAX, 20000);
  cfg.MaxDeliver = (int64_t)er_opt_integer(L, 3, "max_deliver", -1, ER_NO_MAX, -1);
  s = js_AddConsumer(&ci, c->js, stream, &cfg, NULL, &jerr);
  if (s != NATS_OK) {
    if (jerr == JSStreamNotFoundErr)
      return push_stream_missing(L, stream, c->urls);
    return push_nerr(L, s, jerr, "create JetStream consumer");
  }
  push_consumer_info(L, ci);
  jsConsumerInfo_Destroy(ci);
  return 1;
}

static int conn_delete_consumer(lua_State *L) {
  lconn *c = check_conn(L, 1);
  const char *stream = luaL_checkstring(L, 2), *name = luaL_checkstring(L, 3);
  jsErrCode jerr = 0;
  natsStatus s = js_DeleteConsumer(c->js, stream, name, NULL, &jerr);
  if (s != NATS_OK) {
    if (s == NATS_NOT_FOUND || jerr == JSConsumerNotFoundErr)
      return push_consumer_missing(L, stream, name);
    return push_nerr(L, s, jerr, "delete JetStream consumer");
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* ---- pull subscriptions and fetched batches ------------------------------- */

typedef struct {
  natsSubscription *sub;
} lsub;

typedef struct {
  natsMsgList list;
  int live;
} lbatch;

/* conn:pull_subscribe(stream, durable, filter) -> sub | nil, err: binds to
 * an existing durable pull consumer. */
static int conn_pull_subscribe(lua_State *L) {
  lconn *c = check_conn(L, 1);
  const char *stream = luaL_checkstring(L, 2), *durable = luaL_checkstring(L, 3);
  const char *filter = luaL_checkstring(L, 4);
  jsSubOptions so;
  jsErrCode jerr = 0;
  natsStatus s;
  lsub *ls = lua_newuserdatauv(L, sizeof *ls, 1);
  ls->sub = NULL;
  luaL_setmetatable(L, SUB_MT);
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, 1); /* the connection outlives the subscription */
  jsSubOptions_Init(&so);
  so.Stream = stream;
  so.Consumer = durable;
  s = js_PullSubscribe(&ls->sub, c->js, filter, durable, NULL, &so, &jerr);
  if (s != NATS_OK) {
    ls->sub = NULL;
    return push_nerr(L, s, jerr, "subscribe to JetStream consumer");
  }
  return 1;
}

static int sub_close(lua_State *L) {
  lsub *ls = luaL_checkudata(L, 1, SUB_MT);
  if (ls->sub) {
    natsSubscription_Destroy(ls->sub); /* not Unsubscribe: the durable stays */
    ls->sub = NULL;
  }
  return 0;
}

/* sub:fetch(n, timeout_ms) -> batch | nil, err.  A timeout with nothing
 * fetched is an empty batch, not an error. */
static int sub_fetch(lua_State *L) {
  lsub *ls = luaL_checkudata(L, 1, SUB_MT);
  lua_Integer n = luaL_checkinteger(L, 2), timeout = luaL_optinteger(L, 3, 1000);
  jsErrCode jerr = 0;
  natsStatus s;
  lbatch *b;
  if (!ls->sub) return luaL_error(L, "attempt to use a closed subscription");
  luaL_argcheck(L, n >= 1 && n <= 1000000, 2, "batch size must be 1 to 1000000");
  luaL_argcheck(L, timeout >= 1, 3, "timeout must be >= 1 ms");
  b = lua_newuserdatauv(L, sizeof *b, 0);
  memset(b, 0, sizeof *b);
  luaL_setmetatable(L, BATCH_MT);
  s = natsSubscription_Fetch(&b->list, ls->sub, (int)n, timeout, &jerr);
  if (s == NATS_TIMEOUT) {
    b->live = b->list.Count > 0;
    return 1;
  }
  if (s != NATS_OK) return push_nerr(L, s, jerr, "fetch");
  b->live = 1;
  return 1;
}

static lbatch *check_batch(lua_State *L, lua_Integer *i) {
  lbatch *b = luaL_checkudata(L, 1, BATCH_MT);
  *i = luaL_checkinteger(L, 2);
  luaL_argcheck(L, b->live && *i >= 1 && *i <= b->list.Count, 2, "no such message in the batch");
  return b;
}

static int batch_count(lua_State *L) {
  lbatch *b = luaL_checkudata(L, 1, BATCH_MT);
  lua_pushinteger(L, b->live ? b->list.Count : 0);
  return 1;
}

/* batch:msg(i) -> data, subject, stream_seq, num_delivered, num_pending
 * (the messages the consumer still has for us after this one) */
static int batch_msg(lua_State *L) {
  lua_Integer i;
  lbatch *b = check_batch(L, &i);
  natsMsg *m = b->list.Msgs[i - 1];
  jsMsgMetaData *md = NULL;
  lua_pushlstring(L, natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m));
  lua_pushstring(L, natsMsg_GetSubject(m));
  if (natsMsg_GetMetaData(&md, m) != NATS_OK) {
    lua_pushnil(L);
    lua_pushnil(L);
    lua_pushnil(L);
    return 5;
  }
  lua_pushinteger(L, (lua_Integer)md->Sequence.Stream);
  lua_pushinteger(L, (lua_Integer)md->NumDelivered);
  lua_pushinteger(L, (lua_Integer)md->NumPending);
  jsMsgMetaData_Destroy(md);
  return 5;
}

/* batch:header(i, key) -> value | nil */
static int batch_header(lua_State *L) {
  lua_Integer i;
  lbatch *b = check_batch(L, &i);
  const char *v = NULL;
  if (natsMsgHeader_Get(b->list.Msgs[i - 1], luaL_checkstring(L, 3), &v) == NATS_OK && v)
    lua_pushstring(L, v);
  else
    lua_pushnil(L);
  return 1;
}

/* batch:ack(i) -> true | nil, err: waits for the server to confirm; with the
 * consumer's AckAll policy it acknowledges every message up to this one. */
static int batch_ack(lua_State *L) {
  lua_Integer i;
  lbatch *b = check_batch(L, &i);
  jsErrCode jerr = 0;
  natsStatus s = natsMsg_AckSync(b->list.Msgs[i - 1], NULL, &jerr);
  if (s != NATS_OK) return push_nerr(L, s, jerr, "acknowledge");
  lua_pushboolean(L, 1);
  return 1;
}

static int batch_free(lua_State *L) {
  lbatch *b = luaL_checkudata(L, 1, BATCH_MT);
  if (b->live || b->list.Msgs) natsMsgList_Destroy(&b->list);
  memset(b, 0, sizeof *b);
  return 0;
}

/* ---- asynchronous publishing ---------------------------------------------- */

typedef struct {
  pthread_mutex_t mu;
  pthread_cond_t cond; /* signalled at every acknowledgement or failure */
  int64_t acked, duplicates, failed;
  uint64_t last_seq; /* the highest stream sequence acknowledged */
  natsStatus first_status;
  jsErrCode first_code;
  char first_text[256];
} pubstate;

typedef struct {
  jsCtx *js;
  pubstate *st; /* malloc'd: libnats threads write to it */
  int used; /* published at least once: libnats 3.4 crashes listing the
             * pending messages of a context that never published */
} lpub;

static void on_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure) {
  pubstate *st = closure;
  (void)js;
  pthread_mutex_lock(&st->mu);
  if (pa) {
    st->acked++;
    if (pa->Duplicate) st->duplicates++;
    if (pa->Sequence > st->last_seq) st->last_seq = pa->Sequence;
  } else if (pae) {
    if (st->failed++ == 0) {
      st->first_status = pae->Err;
      st->first_code = pae->ErrCode;
      snprintf(st->first_text, sizeof st->first_text, "%s",
               pae->ErrText ? pae->ErrText : natsStatus_GetText(pae->Err));
    }
  }
  pthread_cond_broadcast(&st->cond);
  pthread_mutex_unlock(&st->mu);
  natsMsg_Destroy(msg);
}

/* conn:publisher{max_pending = 256, stall_wait = ms} -> pub | nil, err */
static int conn_publisher(lua_State *L) {
  lconn *c = check_conn(L, 1);
  jsOptions jo;
  natsStatus s;
  lpub *p;
  lua_Integer max_pending, stall;
  er_check_opts(L, 2, NULL, PUBLISHER_OPTS);
  max_pending = er_opt_integer(L, 2, "max_pending", 1, ER_NO_MAX, 256);
  stall = er_opt_integer(L, 2, "stall_wait", 1, ER_NO_MAX, 1000);
  p = lua_newuserdatauv(L, sizeof *p, 1);
  memset(p, 0, sizeof *p);
  luaL_setmetatable(L, PUB_MT);
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, 1);
  p->st = calloc(1, sizeof *p->st);
  if (!p->st) return luaL_error(L, "out of memory");
  pthread_mutex_init(&p->st->mu, NULL);
  pthread_cond_init(&p->st->cond, NULL);
  jsOptions_Init(&jo);
  jo.PublishAsync.MaxPending = max_pending;
  jo.PublishAsync.StallWait = stall;
  jo.PublishAsync.AckHandler = on_ack;
  jo.PublishAsync.AckHandlerClosure = p->st;
  s = natsConnection_JetStream(&p->js, c->nc, &jo);
  if (s != NATS_OK) {
    p->js = NULL;
    return push_nerr(L, s, 0, "JetStream context");
  }
  return 1;
}

static lpub *check_pub(lua_State *L) {
  lpub *p = luaL_checkudata(L, 1, PUB_MT);
  if (!p->js) luaL_error(L, "attempt to use a closed publisher");
  return p;
}

/* Drop the messages still waiting for an acknowledgement. */
static void drop_pending(lpub *p) {
  natsMsgList pending;
  if (!p->used) return;
  memset(&pending, 0, sizeof pending);
  if (js_PublishAsyncGetPendingList(&pending, p->js) == NATS_OK) natsMsgList_Destroy(&pending);
}

static int pub_close(lua_State *L) {
  lpub *p = luaL_checkudata(L, 1, PUB_MT);
  if (p->js) {
    drop_pending(p);
    jsCtx_Destroy(p->js);
    p->js = NULL;
    /* the pending messages are dropped, so no handler is due any more;
     * taking the lock waits for one that is running */
    pthread_mutex_lock(&p->st->mu);
    pthread_mutex_unlock(&p->st->mu);
    pthread_mutex_destroy(&p->st->mu);
    pthread_cond_destroy(&p->st->cond);
    free(p->st);
    p->st = NULL;
  }
  return 0;
}

/* Hand `m`, built with status `s` so far, to the library: true, or nil, err
 * (the message destroyed unless the library took it). */
static int send(lua_State *L, lpub *p, natsMsg *m, natsStatus s, const char *subject) {
  if (s == NATS_OK) s = js_PublishMsgAsync(p->js, &m, NULL);
  natsMsg_Destroy(m); /* NULL once the library owns it */
  if (s != NATS_OK) {
    if (s == NATS_TIMEOUT)
      return push_err(L, "io", "publish to '%s': too many messages waiting for an acknowledgement",
                      subject);
    return push_nerr(L, s, 0, "publish");
  }
  p->used = 1;
  lua_pushboolean(L, 1);
  return 1;
}

/* `v` in decimal, written at the end of `buf` (24 bytes); returns where
 * it starts.  (snprintf costs as much as the rest of a header.) */
static const char *decimal(char *buf, lua_Integer v) {
  char *p = buf + 23;
  unsigned long long u = v < 0 ? 0ull - (unsigned long long)v : (unsigned long long)v;
  *p = '\0';
  do {
    *--p = (char)('0' + u % 10);
    u /= 10;
  } while (u);
  if (v < 0) *--p = '-';
  return p;
}

/* Set the headers of `m` from the table at `idx`: { name = value }, each
 * value a string or an integer (written in decimal).  Returns the status;
 * on a bad header raises, `m` destroyed. */
static natsStatus set_headers(lua_State *L, int idx, natsMsg *m) {
  natsStatus s = NATS_OK;
  lua_pushnil(L);
  while (s == NATS_OK && lua_next(L, idx)) {
    char num[24];
    const char *v = NULL;
    if (lua_type(L, -2) != LUA_TSTRING) {
      natsMsg_Destroy(m);
      luaL_argerror(L, idx, "header names must be strings");
    }
    if (lua_type(L, -1) == LUA_TSTRING)
      v = lua_tostring(L, -1);
    else if (lua_isinteger(L, -1))
      v = decimal(num, lua_tointeger(L, -1));
    else {
      const char *k = lua_tostring(L, -2);
      natsMsg_Destroy(m);
      luaL_argerror(L, idx, lua_pushfstring(L, "header '%s' must be a string or an integer", k));
    }
    s = natsMsgHeader_Set(m, lua_tostring(L, -2), v);
    lua_pop(L, 1);
  }
  if (s != NATS_OK) lua_pop(L, 1); /* the key lua_next left */
  return s;
}

/* pub:publish(subject, body [, headers]) -> true | nil, err, headers a
 * table { name = string or integer }.  Asynchronous: returns once the
 * message is handed to the connection; blocks while max_pending messages
 * wait for their acknowledgement. */
static int pub_publish(lua_State *L) {
  lpub *p = check_pub(L);
  const char *subject = luaL_checkstring(L, 2);
  size_t blen;
  const char *body = luaL_checklstring(L, 3, &blen);
  natsMsg *m = NULL;
  natsStatus s;
  luaL_argcheck(L, blen <= INT32_MAX, 3, "body too large");
  if (!lua_isnoneornil(L, 4)) luaL_checktype(L, 4, LUA_TTABLE);
  s = natsMsg_Create(&m, subject, NULL, body, (int)blen);
  if (s == NATS_OK && !lua_isnoneornil(L, 4)) s = set_headers(L, 4, m);
  return send(L, p, m, s, subject);
}

/* ---- escaping names in headers and subjects ------------------------------
 *
 * Stream ids and types are any bytes but NUL.  NATS clients read header
 * values and subjects as text: Node's and Go's trim the blanks around a
 * header value, Node's turns bytes that are not UTF-8 into U+FFFD, and a
 * subject token cannot hold blanks, dots, wildcards or control bytes.  So
 * the unsafe bytes are written %XX (upper-case hex), and '%' itself, so
 * that decoding is unambiguous: every '%' starts an escape.
 *
 * Unsafe everywhere: '%', control bytes (0x00-0x1F, 0x7F), and every byte
 * that is not part of a valid UTF-8 sequence (strict: no overlong forms,
 * surrogates or code points above U+10FFFF).  Valid UTF-8 is kept as it is.
 * In a header value also the first and last character when it is
 * white space to any client (' ', U+0085, U+00A0, U+1680, U+2000-U+200A,
 * U+2028, U+2029, U+202F, U+205F, U+3000, U+FEFF: JavaScript's trim, Go's
 * unicode.IsSpace, Python's strip), all of its bytes.  In a subject token
 * also ' ', '.', '*' and '>', and the empty token is "%00" (names never hold
 * NUL).  A name that needs none of it (the usual case) is used as it is. */

enum { ESC_HEADER, ESC_TOKEN };

/* Bytes that are safe in the middle of a value, per mode: printable ASCII
 * but '%' (and, in tokens, ' ', '.', '*', '>'). */
static unsigned char safe_ascii[2][256];

static void init_safe_ascii(void) {
  int c;
  for (c = 0x20; c < 0x7f; c++) safe_ascii[ESC_HEADER][c] = safe_ascii[ESC_TOKEN][c] = 1;
  safe_ascii[ESC_HEADER]['%'] = 0;
  safe_ascii[ESC_TOKEN]['%'] = safe_ascii[ESC_TOKEN][' '] = safe_ascii[ESC_TOKEN]['.'] = 0;
  safe_ascii[ESC_TOKEN]['*'] = safe_ascii[ESC_TOKEN]['>'] = 0;
}

/* The length of the valid UTF-8 sequence starting a non-ASCII byte at s
 * (n bytes left), with its code point in *cp; 0 when it is not one. */
static size_t utf8_seq(const unsigned char *s, size_t n, uint32_t *cp) {
  unsigned char c = s[0];
  if (c >= 0xC2 && c <= 0xDF) {
    if (n < 2 || (s[1] & 0xC0) != 0x80) return 0;
    *cp = ((uint32_t)(c & 0x1F) << 6) | (s[1] & 0x3F);
    return 2;
  }
  if (c >= 0xE0 && c <= 0xEF) {
    if (n < 3 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80) return 0;
    if (c == 0xE0 && s[1] < 0xA0) return 0; /* overlong */
    if (c == 0xED && s[1] > 0x9F) return 0; /* surrogate */
    *cp = ((uint32_t)(c & 0x0F) << 12) | ((uint32_t)(s[1] & 0x3F) << 6) | (s[2] & 0x3F);
    return 3;
  }
  if (c >= 0xF0 && c <= 0xF4) {
    if (n < 4 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80)
      return 0;
    if (c == 0xF0 && s[1] < 0x90) return 0; /* overlong */
    if (c == 0xF4 && s[1] > 0x8F) return 0; /* above U+10FFFF */
    *cp = ((uint32_t)(c & 0x07) << 18) | ((uint32_t)(s[1] & 0x3F) << 12) |
          ((uint32_t)(s[2] & 0x3F) << 6) | (s[3] & 0x3F);
    return 4;
  }
  return 0;
}

/* Non-ASCII white space that some client trims off a header value. */
static int trimmed_space(uint32_t cp) {
  return cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) ||
         cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000 ||
         cp == 0xFEFF;
}

/* True when `s` can be used as it is: printable ASCII only, safe for the
 * mode, no blank at either end of a header value, not an empty token. */
static int escape_clean(const char *s, size_t len, int mode) {
  const unsigned char *u = (const unsigned char *)s, *safe = safe_ascii[mode];
  size_t i;
  if (len == 0) return mode == ESC_HEADER;
  if (mode == ESC_HEADER && (u[0] == ' ' || u[len - 1] == ' ')) return 0;
  for (i = 0; i < len; i++)
    if (!safe[u[i]]) return 0;
  return 1;
}

/* Escape `s` into `out` (at least 3 * len + 4 bytes), NUL-terminated;
 * returns the length written. */
static size_t escape_into(const char *s, size_t len, int mode, char *out) {
  static const char hex[] = "0123456789ABCDEF";
  const unsigned char *u = (const unsigned char *)s, *safe = safe_ascii[mode];
  size_t i = 0, o = 0, k, n;
  uint32_t cp;
  int esc;
  if (len == 0 && mode == ESC_TOKEN) {
    memcpy(out, "%00", 4);
    return 3;
  }
  while (i < len) {
    if (u[i] < 0x80) {
      n = 1;
      esc = !safe[u[i]] || (mode == ESC_HEADER && u[i] == ' ' && (i == 0 || i == len - 1));
    } else if ((n = utf8_seq(u + i, len - i, &cp)) != 0) {
      esc = mode == ESC_HEADER && (i == 0 || i + n == len) && trimmed_space(cp);
    } else {
      n = 1;
      esc = 1; /* not UTF-8 */
    }
    for (k = 0; k < n; k++, i++) {
      if (esc) {
        out[o++] = '%';
        out[o++] = hex[u[i] >> 4];
        out[o++] = hex[u[i] & 15];
      } else {
        out[o++] = (char)u[i];
      }
    }
  }
  out[o] = '\0';
  return o;
}

static int hexval(int c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

/* nats.escape(s, "header" | "token") -> the escaped text */
static int l_escape(lua_State *L) {
  static const char *const modes[] = {"header", "token", NULL};
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  int mode = luaL_checkoption(L, 2, NULL, modes);
  luaL_Buffer b;
  if (escape_clean(s, len, mode)) {
    lua_settop(L, 1);
    return 1;
  }
  escape_into(s, len, mode, luaL_buffinitsize(L, &b, 3 * len + 4));
  luaL_pushresultsize(&b, strlen(b.b));
  return 1;
}

/* nats.unescape(text) -> the bytes | nil, message: every %XX decoded; a '%'
 * not followed by two hex digits is an error. */
static int l_unescape(lua_State *L) {
  size_t len, i, o = 0;
  const char *s = luaL_checklstring(L, 1, &len);
  char *out;
  luaL_Buffer b;
  if (!memchr(s, '%', len)) {
    lua_settop(L, 1);
    return 1;
  }
  out = luaL_buffinitsize(L, &b, len);
  for (i = 0; i < len; i++) {
    if (s[i] != '%') {
      out[o++] = s[i];
    } else {
      int hi = i + 2 < len ? hexval((unsigned char)s[i + 1]) : -1;
      int lo = i + 2 < len ? hexval((unsigned char)s[i + 2]) : -1;
      if (hi < 0 || lo < 0) {
        lua_pushnil(L);
        lua_pushfstring(L, "a '%%' not followed by two hex digits at byte %I", (LUAI_UACINT)(i + 1));
        return 2;
      }
      out[o++] = (char)(hi << 4 | lo);
      i += 2;
    }
  }
  luaL_pushresultsize(&b, o);
  return 1;
}

/* pub:wait(count, timeout_ms) -> true | nil, err: waits until the first
 * `count` messages published since the last complete have their answer
 * (the others may still be in flight), without dropping anything; a
 * failed message or the time running out is an error (then call complete
 * to drop what is pending). */
static int pub_wait(lua_State *L) {
  lpub *p = check_pub(L);
  lua_Integer count = luaL_checkinteger(L, 2), timeout = luaL_optinteger(L, 3, 10000);
  struct timespec until;
  int64_t failed, done;
  natsStatus fs;
  jsErrCode fcode;
  char ftext[256], atext[256];
  lconn *c;
  int rc = 0;
  clock_gettime(CLOCK_REALTIME, &until);
  until.tv_sec += (time_t)(timeout / 1000);
  until.tv_nsec += (long)(timeout % 1000) * 1000000L;
  if (until.tv_nsec >= 1000000000L) {
    until.tv_sec++;
    until.tv_nsec -= 1000000000L;
  }
  pthread_mutex_lock(&p->st->mu);
  while (p->st->acked + p->st->failed < count && p->st->failed == 0 && rc == 0)
    rc = pthread_cond_timedwait(&p->st->cond, &p->st->mu, &until);
  failed = p->st->failed;
  done = p->st->acked + p->st->failed;
  fs = p->st->first_status;
  fcode = p->st->first_code;
  snprintf(ftext, sizeof ftext, "%s", p->st->first_text);
  pthread_mutex_unlock(&p->st->mu);
  if (failed) {
    push_err(L, code_of(fs, fcode, ftext), "%I of the messages failed; the first: %s",
             (lua_Integer)failed, ftext);
    return with_js_code(L, fcode);
  }
  if (done >= count) {
    lua_pushboolean(L, 1);
    return 1;
  }
  lua_getiuservalue(L, 1, 1);
  c = lua_touserdata(L, -1);
  lua_pop(L, 1);
  if (c && c->nc && take_async_error(c, atext, sizeof atext) == NATS_NOT_PERMITTED)
    return push_err(L, "permission_denied", "publish refused by the server: %s", atext);
  return push_err(L, "io", "no acknowledgement from JetStream within %I ms (%I of %I answered)",
                  timeout, (lua_Integer)done, count);
}

/* pub:complete(timeout_ms) -> acked, duplicates, last_seq | nil, err.
 * last_seq: the highest stream sequence acknowledged so far.  Waits for the
 * acknowledgement of every message published since the last complete; on
 * a timeout or any failed message, drops what is still pending and
 * returns the first failure.  The counters restart either way. */
static int pub_complete(lua_State *L) {
  lpub *p = check_pub(L);
  lconn *c;
  jsPubOptions po;
  natsStatus s;
  int64_t acked, dups, failed;
  uint64_t last_seq;
  natsStatus fs;
  jsErrCode fcode;
  char ftext[256], atext[256];
  natsStatus as;
  jsPubOptions_Init(&po);
  po.MaxWait = luaL_optinteger(L, 2, 10000);
  s = js_PublishAsyncComplete(p->js, &po);
  if (s != NATS_OK) drop_pending(p);
  pthread_mutex_lock(&p->st->mu);
  acked = p->st->acked;
  dups = p->st->duplicates;
  last_seq = p->st->last_seq;
  failed = p->st->failed;
  fs = p->st->first_status;
  fcode = p->st->first_code;
  snprintf(ftext, sizeof ftext, "%s", p->st->first_text);
  p->st->acked = p->st->duplicates = p->st->failed = 0;
  p->st->first_text[0] = '\0';
  pthread_mutex_unlock(&p->st->mu);
  lua_getiuservalue(L, 1, 1);
  c = lua_touserdata(L, -1);
  lua_pop(L, 1);
  as = c && c->nc ? take_async_error(c, atext, sizeof atext) : NATS_OK;
  if (as == NATS_NOT_PERMITTED)
    return push_err(L, "permission_denied", "publish refused by the server: %s", atext);
  if (failed) {
    push_err(L, code_of(fs, fcode, ftext), "%I of the messages failed; the first: %s",
             (lua_Integer)failed, ftext);
    return with_js_code(L, fcode);
  }
  if (s != NATS_OK) {
    if (s == NATS_TIMEOUT)
      return push_err(L, "io", "no acknowledgement from JetStream within %I ms (%I acknowledged)",
                      (lua_Integer)po.MaxWait, (lua_Integer)acked);
    return push_nerr(L, s, 0, "waiting for acknowledgements");
  }
  lua_pushinteger(L, (lua_Integer)acked);
  lua_pushinteger(L, (lua_Integer)dups);
  lua_pushinteger(L, (lua_Integer)last_seq);
  return 3;
}

/* ---- module --------------------------------------------------------------- */

static int opts_gc(lua_State *L) {
  natsOptions **box = luaL_checkudata(L, 1, OPTS_MT);
  if (*box) natsOptions_Destroy(*box);
  *box = NULL;
  return 0;
}

static const luaL_Reg conn_methods[] = {
  {"close", conn_close},
  {"url", conn_url},
  {"urls", conn_urls},
  {"max_payload", conn_max_payload},
  {"status", conn_status},
  {"async_error", conn_async_error},
  {"flush", conn_flush},
  {"request", conn_request},
  {"stream_info", conn_stream_info},
  {"add_stream", conn_add_stream},
  {"delete_stream", conn_delete_stream},
  {"last_msg", conn_last_msg},
  {"get_msg", conn_get_msg},
  {"consumer_info", conn_consumer_info},
  {"add_consumer", conn_add_consumer},
  {"delete_consumer", conn_delete_consumer},
  {"pull_subscribe", conn_pull_subscribe},
  {"publisher", conn_publisher},
  {NULL, NULL}};

static const luaL_Reg pub_methods[] = {
  {"publish", pub_publish}, {"wait", pub_wait},
  {"complete", pub_complete},
  {"close", pub_close}, {NULL, NULL}};

static const luaL_Reg sub_methods[] = {{"fetch", sub_fetch}, {"close", sub_close}, {NULL, NULL}};

static const luaL_Reg batch_methods[] = {{"count", batch_count}, {"msg", batch_msg},
                                         {"header", batch_header}, {"ack", batch_ack},
                                         {"free", batch_free}, {NULL, NULL}};

static void new_class(lua_State *L, const char *name, const luaL_Reg *methods,
                      lua_CFunction gc) {
  luaL_newmetatable(L, name);
  lua_newtable(L);
  luaL_setfuncs(L, methods, 0);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, gc);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, gc);
  lua_setfield(L, -2, "__close");
  lua_pushstring(L, name);
  lua_setfield(L, -2, "__name");
  lua_pop(L, 1);
}

int luaopen_eventrocks_nats(lua_State *L);

int luaopen_eventrocks_nats(lua_State *L) {
  static const luaL_Reg fns[] = {
    {"connect", l_connect}, {"escape", l_escape}, {"unescape", l_unescape}, {NULL, NULL}};
  Dl_info lib;
  er_error_metatable(L);
  lua_pop(L, 1);
  /* libnats keeps process-wide state (its threads, timers, the library's
   * own allocations) until the process ends: keep it loaded when Lua
   * unloads this module, rather than pull it from under its threads.  The
   * library is the one that holds nats_Open, whatever its file name. */
  if (dladdr((void *)(uintptr_t)nats_Open, &lib) && lib.dli_fname)
    (void)dlopen(lib.dli_fname, RTLD_LAZY | RTLD_NOLOAD | RTLD_NODELETE);
  init_safe_ascii();
  new_class(L, CONN_MT, conn_methods, conn_close);
  new_class(L, PUB_MT, pub_methods, pub_close);
  new_class(L, SUB_MT, sub_methods, sub_close);
  new_class(L, BATCH_MT, batch_methods, batch_free);
  luaL_newmetatable(L, OPTS_MT);
  lua_pushcfunction(L, opts_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  luaL_newlib(L, fns);
  lua_pushstring(L, nats_GetVersion());
  lua_setfield(L, -2, "version");
  return 1;
}
