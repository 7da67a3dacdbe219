/*
 * eventrocks_core.c -- the Lua binding of the C core: module "eventrocks.core".
 *
 * Handles follow Lua's io library: a store userdata is created closed before
 * anything is opened; close(), __close and __gc share one idempotent
 * function; every method raises on a closed store.  Iterator factories
 * return four values (next, iterator, nil, iterator) so that a generic `for`
 * closes the iterator on break.  Iterators keep their store alive (user
 * value) and the core destroys live iterators when the store closes.
 */
#define _POSIX_C_SOURCE 200809L /* nanosleep, isatty */
#include <dirent.h>
#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>
#include <lauxlib.h>
#include <lua.h>
#include <time.h>
#include <stdio.h>
#include <limits.h>
#include <string.h>

#include "eventrocks.h"
#include <sodium.h>
#include <xxhash.h>
#include "er_aux.h"
#include "er_value.h"

#define STORE_MT "eventrocks.store"
#define ITER_MT "eventrocks.iterator"
#define EVENT_MT "eventrocks.event"
#define MEM_MT "eventrocks.memory"
#define TXN_MT "eventrocks.txn"

#define S_ANY "any"
#define S_NO_STREAM "no_stream"
#define S_STREAM_EXISTS "stream_exists"

typedef struct lstore {
  er_store *s;          /* NULL when closed */
  er_buf buf;           /* encoded data, metadata of the append in progress */
  er_new_event *evs;    /* the events of the append in progress */
  size_t *offs;         /* 4 per event: data off/len, metadata off/len */
  size_t evs_cap;
  er_buf kvbuf;         /* encoded key-value value (txn:put) */
  lua_State *L;         /* the thread running the current commit, for the hook */
  int hook_ref;         /* registry ref of the commit hook function, or LUA_NOREF */
  int hook_err_ref;     /* registry ref of the error the hook raised, or LUA_NOREF */
  int in_hook;          /* 1 while the hook runs: no appends, commits, close */
  int reader_ref;       /* registry ref of its class's reader (get_reader) */
  int upcast_ref;       /* registry ref of its upcasters (type -> function), or LUA_NOREF */
  lua_Integer n_upcasters; /* their number: a longer chain is a loop */
  int forget_ref;       /* registry ref of er.open's on_forget, or LUA_NOREF */
} lstore;

typedef struct ltxn {
  er_txn *t;     /* NULL once freed */
  int borrowed;  /* 1: the commit hook's transaction, not ours to free */
  lstore *owner; /* borrowed: the store whose commit is running */
} ltxn;

enum { LI_EVENTS, LI_STREAMS, LI_KV };

typedef struct liter {
  er_iter *it; /* NULL once exhausted or closed */
  int kind;    /* LI_EVENTS, LI_STREAMS (stream, version), LI_KV (key, value) */
  int raw;     /* LI_EVENTS: 1: data and metadata as raw values (push_event_raw);
                  2: lazy event tables (push_event_lazy) */
  int in_handler; /* iter_each is in a handler's call */
  lua_Integer each_n, each_last; /* iter_each: events read, the last position */
  struct lazy_arena *arena; /* raw == 2: where its lazy events' bytes go
                               (user value 3; their metatable is user value 2) */
} liter;

/* ---- helpers -------------------------------------------------------------- */

static liter *new_iter(lua_State *L, int kind);
static int return_iter(lua_State *L, const lstore *ls);

static void *lalloc(lua_State *L, void *p, size_t old, size_t size) {
  void *ud;
  lua_Alloc f = lua_getallocf(L, &ud);
  void *np = f(ud, p, old, size);
  if (!np && size) luaL_error(L, "eventrocks: not enough memory");
  return np;
}

/* Keys (their addresses) of the registry and of store metatables. */
static const char store_tag = 0;   /* a store metatable holds true here */
static const char reader_key = 0;  /* a store metatable holds its reader here */
static const char classes_key = 0; /* registry: class table -> store metatable */

/* The store at idx, open or closed; raises when it is not a store.  Stores
 * of different classes (core.open's third argument) have different
 * metatables, all tagged with store_tag. */
static lstore *to_store(lua_State *L, int idx) {
  lstore *ls = lua_touserdata(L, idx);
  if (ls && lua_getmetatable(L, idx)) {
    int is_store = lua_rawgetp(L, -1, &store_tag) == LUA_TBOOLEAN;
    lua_pop(L, 2);
    if (is_store) return ls;
  }
  luaL_typeerror(L, idx, STORE_MT);
  return NULL;
}

static lstore *check_store(lua_State *L, int idx) {
  lstore *ls = to_store(L, idx);
  if (!ls->s) luaL_error(L, "attempt to use a closed store");
  return ls;
}

/* Push nil, err and return 2.  err = { code, message, ... }. */
static int push_error(lua_State *L, const er_error *err) {
  if (err->code == ER_NOMEM) return luaL_error(L, "eventrocks: not enough memory");
  lua_pushnil(L);
  er_new_error(L, er_code_name(err->code), err->message);
  if (err->code == ER_CORRUPTION && err->position) {
    lua_pushinteger(L, (lua_Integer)err->position);
    lua_setfield(L, -2, "position");
  }
  return 2;
}

/* Raise the error object of `err` (for failures inside iterators). */
static int raise_error(lua_State *L, const er_error *err) {
  push_error(L, err);
  return lua_error(L);
}

static const char *check_stream(lua_State *L, int arg, size_t *len) {
  const char *s;
  luaL_checktype(L, arg, LUA_TSTRING); /* no silent number conversion */
  s = lua_tolstring(L, arg, len);
  if (*len == 0) luaL_argerror(L, arg, "stream id must not be empty");
  if (*len > ER_MAX_STREAM_LEN)
    luaL_argerror(L, arg, lua_pushfstring(L, "stream id longer than %d bytes",
                                          ER_MAX_STREAM_LEN));
  if (memchr(s, 0, *len)) luaL_argerror(L, arg, "stream id contains a NUL byte");
  return s;
}

/* Options tables (er_aux.h): a misspelt option must never be dropped
 * silently (`{expectd = 0}` would append without its concurrency check). */
static const char *const OPEN_OPTS[] = {"create", "sync", "read_only",
                                        "max_event_size", "upcasters", "key",
                                        "on_forget", NULL};
static const char *const APPEND_OPTS[] = {"expected", "subject", NULL};
/* restore, position: er_txn_restore, for imports and mirrors of a store
 * with removed events */
/* subject, forgotten: an import's events of a subject, or forgotten ones
 * (stored without data, metadata or key) */
static const char *const TXN_APPEND_OPTS[] = {"expected", "time", "restore", "position",
                                              "subject", "forgotten", NULL};
static const char *const READ_OPTS[] = {"from", "count", "backward", "raw", NULL};
static const char *const ALL_OPTS[] = {"from", "count", "category", "types", "raw", "_lazy", NULL};
static const char *const STREAMS_OPTS[] = {"prefix", NULL};

static int raise_corrupt(lua_State *L, uint64_t position) {
  er_error err;
  err.code = ER_CORRUPTION;
  err.position = position;
  snprintf(err.message, sizeof err.message,
           "the data of the event at position %llu does not decode",
           (unsigned long long)position);
  return raise_error(L, &err);
}

/* What push_event needs at every event, made once per Lua state by
 * luaopen: a userdata holding the string cache of the decoder, whose user
 * value is the cache's anchors table (er_value.h); the table also holds the
 * event field names at 1..8, the event metatable at 9 and the raw value of
 * an empty map at 10, so that each field is set without looking its name
 * up from a C string. */
enum { F_ID = 1, F_STREAM, F_VERSION, F_POSITION, F_TYPE, F_TIME, F_DATA,
       F_METADATA, F_MT, F_NO_METADATA, F_SUBJECT, F_FORGOTTEN };
static const char *const field_names[] = {
  "id", "stream", "version", "position", "type", "time", "data", "metadata"
};

typedef struct reader {
  er_strcache *cache;
  int ud; /* stack index of the reader's userdata (the cache's) */
  int t;  /* stack index of the anchors table */
} reader;

/* The reader's userdata: the decoder's string cache, and how many lazy
 * events it made and how many of them were then decoded (projections
 * choose lazy or eager events by that share: store:_lazy_counts). */
typedef struct reader_ud {
  er_strcache cache; /* first: the userdata's address is the cache's */
  lua_Integer lazy_made, lazy_read;
} reader_ud;

/* Push the reader of the store's class and its table (two slots; the
 * caller pops them or returns above them) and fill `r`. */
static void get_reader(lua_State *L, const lstore *ls, reader *r) {
  luaL_checkstack(L, 2, NULL);
  lua_rawgeti(L, LUA_REGISTRYINDEX, ls->reader_ref);
  r->cache = lua_touserdata(L, -1);
  r->ud = lua_gettop(L);
  lua_getiuservalue(L, -1, 1);
  r->t = lua_gettop(L);
}

/* ---- lazy events ----------------------------------------------------------
 * A projection's catch-up hands every event to a handler that often reads
 * only its type and stream: decoding the data of each (about half the cost
 * of an event table) is work nobody reads.  A lazy event is the event
 * table without id, data and metadata, whose metatable is its arena's: the
 * iterator copies the stored bytes of its lazy events into an arena (one
 * buffer for up to ARENA_EVENTS events or ARENA_BYTES bytes, then a new
 * one), indexed by position, and the arena is an upvalue of the metatable,
 * so that it lives as long as one of its events still waits.  The first
 * access to id, data or metadata, pairs, tostring or a write makes it a
 * whole event (lazy_materialize): the three fields set, the plain event
 * metatable back.  Only next(), rawget() and rawset() see the difference.
 * (No Lua string or table entry per event: keeping the bytes costs a copy.)
 * The arena's buffers are userdata (its user values 1 and 2), grown by
 * doubling from ARENA_FIRST bytes: the collector counts them, so that
 * arenas do not pile up outside its sight while their events wait. */

#define ARENA_MT "eventrocks.lazy_arena"
enum { ARENA_EVENTS = 4096, ARENA_BYTES = 1 << 20, ARENA_FIRST = 4096, ARENA_FIRST_SLOTS = 64 };

typedef struct lazy_slot {
  uint64_t position;
  size_t off;          /* in bytes: id (16), data, metadata */
  uint32_t dlen, mlen;
} lazy_slot;

typedef struct lazy_arena {
  char *bytes;       /* user value 1's */
  size_t len, cap;
  lazy_slot *slots;  /* user value 2's; by position, ascending (the iterator's order) */
  size_t n, cap_slots;
  int personal; /* it holds the plaintext of an event with a subject: wiped */
} lazy_arena;

/* (The buffers an arena refers to stay alive while it is finalized.) */
static int arena_gc(lua_State *L) {
  lazy_arena *a = luaL_checkudata(L, 1, ARENA_MT);
  if (a->bytes && a->personal) sodium_memzero(a->bytes, a->len); /* plaintext of personal data */
  memset(a, 0, sizeof *a);
  return 0;
}

/* The slot of the lazy event at `position`, or NULL. */
static const lazy_slot *arena_find(const lazy_arena *a, uint64_t position) {
  size_t lo = 0, hi = a->n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (a->slots[mid].position < position) lo = mid + 1;
    else hi = mid;
  }
  return lo < a->n && a->slots[lo].position == position ? &a->slots[lo] : NULL;
}

/* Upvalues of the lazy metamethods: 1 the reader's userdata, 2 the arena. */
static void lazy_materialize(lua_State *L, int t) {
  reader r;
  lazy_arena *a = lua_touserdata(L, lua_upvalueindex(2));
  const lazy_slot *sl;
  int top = lua_gettop(L);
  lua_Integer position;
  t = lua_absindex(L, t);
  luaL_checkstack(L, 6, NULL);
  r.cache = lua_touserdata(L, lua_upvalueindex(1));
  r.ud = lua_upvalueindex(1);
  lua_getiuservalue(L, lua_upvalueindex(1), 1);
  r.t = lua_gettop(L);
  lua_rawgeti(L, r.t, F_POSITION);
  lua_rawget(L, t);
  position = lua_tointeger(L, -1);
  sl = a->bytes ? arena_find(a, (uint64_t)position) : NULL;
  if (!sl) {
    lua_settop(L, top);
    luaL_error(L, "this event's stored bytes are gone (its position was changed with rawset)");
    return;
  }
  {
    const char *p = a->bytes + sl->off;
    char id[37];
    ((reader_ud *)r.cache)->lazy_read++;
    er_uuid_format((const uint8_t *)p, id);
    lua_rawgeti(L, r.t, F_ID);
    lua_pushlstring(L, id, 36);
    lua_rawset(L, t);
    if (sl->dlen) {
      lua_rawgeti(L, r.t, F_DATA);
      if (!er_decode_cached(L, p + 16, sl->dlen, r.cache, r.t)) goto corrupt;
      lua_rawset(L, t);
    }
    lua_rawgeti(L, r.t, F_METADATA);
    if (sl->mlen) {
      if (!er_decode_cached(L, p + 16 + sl->dlen, sl->mlen, r.cache, r.t)) goto corrupt;
      if (!lua_istable(L, -1)) goto corrupt;
    } else {
      lua_createtable(L, 0, 0);
    }
    lua_rawset(L, t);
  }
  lua_rawgeti(L, r.t, F_MT);
  lua_setmetatable(L, t);
  lua_settop(L, top);
  return;
corrupt:
  lua_settop(L, top);
  raise_corrupt(L, (uint64_t)position);
}

static int lazy_index(lua_State *L) {
  size_t len;
  const char *k = lua_tolstring(L, 2, &len);
  if (lua_type(L, 2) != LUA_TSTRING ||
      !((len == 4 && memcmp(k, "data", 4) == 0) || (len == 2 && memcmp(k, "id", 2) == 0) ||
        (len == 8 && memcmp(k, "metadata", 8) == 0)))
    return 0; /* nil: the other fields are in the table, or absent */
  lazy_materialize(L, 1);
  lua_settop(L, 2);
  lua_rawget(L, 1);
  return 1;
}

static int lazy_newindex(lua_State *L) {
  lazy_materialize(L, 1);
  lua_settop(L, 3);
  lua_rawset(L, 1);
  return 0;
}

static int lazy_next(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 2);
  if (lua_next(L, 1)) return 2;
  lua_pushnil(L);
  return 1;
}

static int lazy_pairs(lua_State *L) {
  lazy_materialize(L, 1);
  lua_pushcfunction(L, lazy_next);
  lua_pushvalue(L, 1);
  lua_pushnil(L);
  return 3;
}

static int lazy_tostring(lua_State *L) {
  lazy_materialize(L, 1);
  lua_settop(L, 1);
  luaL_tolstring(L, 1, NULL); /* the plain metatable's __tostring */
  return 1;
}

static const luaL_Reg lazy_meta[] = {
  {"__index", lazy_index},
  {"__newindex", lazy_newindex},
  {"__pairs", lazy_pairs},
  {"__tostring", lazy_tostring},
  {NULL, NULL}
};

/* A new arena for the lazy events of the iterator at `iter`, with its
 * metatable as the iterator's user value 2; returns the arena. */
static lazy_arena *new_arena(lua_State *L, int iter, const reader *r) {
  lazy_arena *a;
  liter *li = lua_touserdata(L, iter);
  luaL_checkstack(L, 5, NULL);
  lua_createtable(L, 0, 5); /* the metatable */
  lua_pushvalue(L, r->ud);
  a = lua_newuserdatauv(L, sizeof *a, 2);
  memset(a, 0, sizeof *a);
  luaL_setmetatable(L, ARENA_MT);
  lua_pushvalue(L, -1);
  lua_setiuservalue(L, iter, 3); /* where arena_grow finds it */
  luaL_setfuncs(L, lazy_meta, 2);
  lua_rawgeti(L, r->t, F_MT);
  if (lua_getfield(L, -1, "__name") == LUA_TNIL) {
    lua_pop(L, 1);
    lua_pushliteral(L, EVENT_MT);
  }
  lua_setfield(L, -3, "__name");
  lua_pop(L, 1);
  lua_setiuservalue(L, iter, 2);
  li->arena = a;
  return a;
}

/* Whether the event's id, data and metadata go into the arena (else a
 * new arena is due): not past ARENA_EVENTS events or ARENA_BYTES bytes,
 * unless it is the first. */
static int arena_takes(const lazy_arena *a, const er_event *ev) {
  size_t need = 16 + ev->data_len + ev->metadata_len;
  return a->n < ARENA_EVENTS && (a->n == 0 || a->len + need <= ARENA_BYTES);
}

/* Make room in the arena of the iterator at `iter` for `need` more bytes
 * and one more slot: larger buffers, as new userdata (copied; the old ones
 * wiped when they held personal data). */
static void arena_grow(lua_State *L, lazy_arena *a, int iter, size_t need) {
  luaL_checkstack(L, 3, NULL);
  lua_getiuservalue(L, iter, 3);
  if (a->len + need > a->cap) {
    size_t cap = a->cap ? a->cap : ARENA_FIRST;
    char *p;
    while (cap < a->len + need) cap *= 2;
    p = lua_newuserdatauv(L, cap, 0);
    if (a->len) memcpy(p, a->bytes, a->len);
    if (a->bytes && a->personal) sodium_memzero(a->bytes, a->len);
    lua_setiuservalue(L, -2, 1);
    a->bytes = p;
    a->cap = cap;
  }
  if (a->n == a->cap_slots) {
    size_t cap = a->cap_slots ? a->cap_slots * 2 : ARENA_FIRST_SLOTS;
    lazy_slot *sl = lua_newuserdatauv(L, cap * sizeof *sl, 0);
    if (a->n) memcpy(sl, a->slots, a->n * sizeof *sl);
    lua_setiuservalue(L, -2, 2);
    a->slots = sl;
    a->cap_slots = cap;
  }
  lua_pop(L, 1);
}

/* Copy the event's id, data and metadata into the arena (arena_takes) of
 * the iterator at `iter`. */
static void arena_add(lua_State *L, lazy_arena *a, int iter, const er_event *ev) {
  size_t need = 16 + ev->data_len + ev->metadata_len;
  if (a->len + need > a->cap || a->n == a->cap_slots) arena_grow(L, a, iter, need);
  memcpy(a->bytes + a->len, ev->id, 16);
  if (ev->data_len) memcpy(a->bytes + a->len + 16, ev->data, ev->data_len);
  if (ev->metadata_len)
    memcpy(a->bytes + a->len + 16 + ev->data_len, ev->metadata, ev->metadata_len);
  if (ev->subject_len) a->personal = 1;
  a->slots[a->n].position = ev->position;
  a->slots[a->n].off = a->len;
  a->slots[a->n].dlen = (uint32_t)ev->data_len;
  a->slots[a->n].mlen = (uint32_t)ev->metadata_len;
  a->n++;
  a->len += need;
}

/* Push a new reader whose events get the metatable at index mt. */
static void new_reader(lua_State *L, int mt) {
  reader_ud *c = lua_newuserdatauv(L, sizeof *c, 1);
  int i;
  memset(c, 0, sizeof *c);
  lua_createtable(L, ER_STRCACHE_BASE + ER_STRCACHE_SLOTS, 0);
  for (i = 0; i < F_MT - 1; i++) {
    lua_pushstring(L, field_names[i]);
    lua_rawseti(L, -2, i + 1);
  }
  lua_pushvalue(L, mt);
  lua_rawseti(L, -2, F_MT);
  er_push_raw(L, "\x80", 1); /* {} */
  lua_rawseti(L, -2, F_NO_METADATA);
  lua_pushliteral(L, "subject");
  lua_rawseti(L, -2, F_SUBJECT);
  lua_pushliteral(L, "forgotten");
  lua_rawseti(L, -2, F_FORGOTTEN);
  lua_setiuservalue(L, -2, 1);
}

/* Set the fields every event table has right away, in the table on top of
 * the stack: stream, version, position, type, time, and for personal data
 * its subject (and forgotten once erased). */
static void set_plain_fields(lua_State *L, const er_event *ev, const reader *r) {
  lua_rawgeti(L, r->t, F_STREAM);
  er_push_cached(L, ev->stream, ev->stream_len, r->cache, r->t);
  lua_rawset(L, -3);
  lua_rawgeti(L, r->t, F_VERSION);
  lua_pushinteger(L, (lua_Integer)ev->version);
  lua_rawset(L, -3);
  lua_rawgeti(L, r->t, F_POSITION);
  lua_pushinteger(L, (lua_Integer)ev->position);
  lua_rawset(L, -3);
  lua_rawgeti(L, r->t, F_TYPE);
  er_push_cached(L, ev->type, ev->type_len, r->cache, r->t);
  lua_rawset(L, -3);
  lua_rawgeti(L, r->t, F_TIME);
  lua_pushinteger(L, (lua_Integer)ev->time);
  lua_rawset(L, -3);
  if (ev->subject_len) {
    lua_rawgeti(L, r->t, F_SUBJECT);
    er_push_cached(L, ev->subject, ev->subject_len, r->cache, r->t);
    lua_rawset(L, -3);
    if (ev->forgotten) {
      lua_rawgeti(L, r->t, F_FORGOTTEN);
      lua_pushboolean(L, 1);
      lua_rawset(L, -3);
    }
  }
}

/* Push the event as a table with exactly the fields doc/api.md lists, using
 * the reader `r`.  Returns 0 with nothing pushed when its data or metadata
 * do not decode. */
static int push_event(lua_State *L, const er_event *ev, const reader *r) {
  char id[37];
  int top = lua_gettop(L);
  luaL_checkstack(L, 5, NULL);
  lua_createtable(L, 0, 8);
  er_uuid_format(ev->id, id);
  lua_rawgeti(L, r->t, F_ID);
  lua_pushlstring(L, id, 36);
  lua_rawset(L, -3);
  set_plain_fields(L, ev, r);
  if (ev->data_len) {
    lua_rawgeti(L, r->t, F_DATA);
    if (!er_decode_cached(L, ev->data, ev->data_len, r->cache, r->t)) goto corrupt;
    lua_rawset(L, -3);
  }
  lua_rawgeti(L, r->t, F_METADATA);
  if (ev->metadata_len) {
    if (!er_decode_cached(L, ev->metadata, ev->metadata_len, r->cache, r->t))
      goto corrupt;
    if (!lua_istable(L, -1)) goto corrupt;
  } else {
    lua_createtable(L, 0, 0);
  }
  lua_rawset(L, -3);
  lua_rawgeti(L, r->t, F_MT);
  lua_setmetatable(L, -2);
  return 1;
corrupt:
  lua_settop(L, top);
  return 0;
}

/* Push the event as a lazy event table (see lazy_materialize) of the
 * iterator at `iter`: the fields stream, version, position, type and time
 * now (subject and forgotten too); id, data and metadata on first access,
 * from its bytes in the iterator's arena.  Returns 1. */
static int push_event_lazy(lua_State *L, const er_event *ev, const reader *r, int iter) {
  liter *li = lua_touserdata(L, iter);
  lazy_arena *a = li->arena;
  if (!a || !arena_takes(a, ev)) a = new_arena(L, iter, r);
  arena_add(L, a, iter, ev);
  luaL_checkstack(L, 6, NULL);
  lua_createtable(L, 0, 8);
  set_plain_fields(L, ev, r);
  lua_getiuservalue(L, iter, 2);
  lua_setmetatable(L, -2);
  ((reader_ud *)r->cache)->lazy_made++;
  return 1;
}

/* Push the event of a raw read as values, no table: id, stream, version,
 * position, type, time, data, metadata, with data and metadata raw values
 * of the bytes read (er_value.h: nothing decoded, for messages that carry
 * them on; decrypted when sealed), data nil when there is none and
 * metadata an empty map; then, for an event with a subject only, its
 * subject and whether it was forgotten.  Returns 8 or 10. */
static int push_event_raw(lua_State *L, const er_event *ev, const reader *r) {
  char id[37];
  luaL_checkstack(L, 10, NULL);
  er_uuid_format(ev->id, id);
  lua_pushlstring(L, id, 36);
  er_push_cached(L, ev->stream, ev->stream_len, r->cache, r->t);
  lua_pushinteger(L, (lua_Integer)ev->version);
  lua_pushinteger(L, (lua_Integer)ev->position);
  er_push_cached(L, ev->type, ev->type_len, r->cache, r->t);
  lua_pushinteger(L, (lua_Integer)ev->time);
  if (ev->data_len) er_push_raw(L, ev->data, ev->data_len);
  else lua_pushnil(L);
  if (ev->metadata_len) er_push_raw(L, ev->metadata, ev->metadata_len);
  else lua_rawgeti(L, r->t, F_NO_METADATA);
  if (!ev->subject_len) return 8;
  er_push_cached(L, ev->subject, ev->subject_len, r->cache, r->t);
  lua_pushboolean(L, ev->forgotten);
  return 10;
}

/* ---- upcasters ------------------------------------------------------------ */

/* er.open's `upcasters` (argument 2's field): a table of event type ->
 * function, copied (later changes to the caller's table change nothing)
 * and kept in the store's registry ref.  Raises on anything else. */
static void set_upcasters(lua_State *L, lstore *ls) {
  int t, copy;
  if (lua_isnoneornil(L, 2)) return;
  lua_getfield(L, 2, "upcasters");
  t = lua_gettop(L);
  if (lua_isnil(L, t)) {
    lua_pop(L, 1);
    return;
  }
  if (!lua_istable(L, t))
    luaL_argerror(L, 2, lua_pushfstring(L, "upcasters must be a table of event type -> function, got %s",
                                        luaL_typename(L, t)));
  lua_newtable(L);
  copy = lua_gettop(L);
  lua_pushnil(L);
  while (lua_next(L, t)) {
    if (lua_type(L, -2) != LUA_TSTRING)
      luaL_argerror(L, 2, "upcasters must be keyed by event type names (strings)");
    if (!lua_isfunction(L, -1))
      luaL_argerror(L, 2, lua_pushfstring(L, "upcasters.%s must be a function, got %s",
                                          lua_tostring(L, -2), luaL_typename(L, -1)));
    lua_pushvalue(L, -2);
    lua_insert(L, -2);
    lua_rawset(L, copy);
    ls->n_upcasters++;
  }
  if (ls->n_upcasters > 0) ls->upcast_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_settop(L, t - 1);
}

/* Apply the store's upcasters to the event table at index ev (in place):
 * while its type has an upcaster, fn(data, event) -> new_type, new_data
 * replaces both.  An upcaster that returns its own type ends the chain;
 * a chain longer than the number of upcasters is a loop, and raises, as
 * does a type that is not a string.  Only called when there are upcasters. */
static void upcast_event(lua_State *L, const lstore *ls, int ev) {
  int t, top = lua_gettop(L);
  lua_Integer steps = 0;
  ev = lua_absindex(L, ev);
  luaL_checkstack(L, 6, NULL);
  lua_rawgeti(L, LUA_REGISTRYINDEX, ls->upcast_ref);
  t = lua_gettop(L);
  for (;;) {
    int same;
    lua_pushliteral(L, "type");
    lua_rawget(L, ev);                    /* the type */
    lua_pushvalue(L, -1);
    if (lua_rawget(L, t) == LUA_TNIL) break; /* no upcaster: done */
    if (++steps > ls->n_upcasters)
      luaL_error(L, "upcasters loop: '%s' comes back to itself", lua_tostring(L, -2));
    lua_pushliteral(L, "data");
    lua_rawget(L, ev);
    lua_pushvalue(L, ev);
    lua_call(L, 2, 2);                    /* type, new_type, new_data */
    if (lua_type(L, -2) != LUA_TSTRING)
      luaL_error(L, "the upcaster of '%s' returned a type that is not a string (%s)",
                 lua_tostring(L, -3), luaL_typename(L, -2));
    same = lua_rawequal(L, -2, -3);
    lua_pushliteral(L, "data");
    lua_insert(L, -2);
    lua_rawset(L, ev);                    /* type, new_type */
    lua_pushliteral(L, "type");
    lua_insert(L, -2);
    lua_rawset(L, ev);                    /* type */
    lua_pop(L, 1);
    if (same) break;
  }
  lua_settop(L, top);
}

/* store:_upcast(event) -> event, with the store's upcasters applied (the
 * inline projections' events, which come from the commit hook). */
static int l_upcast(lua_State *L) {
  lstore *ls = check_store(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  if (ls->upcast_ref != LUA_NOREF) upcast_event(L, ls, 2);
  lua_settop(L, 2);
  return 1;
}

/* store:_upcasting() -> whether the store has upcasters */
static int l_upcasting(lua_State *L) {
  lstore *ls = check_store(L, 1);
  lua_pushboolean(L, ls->upcast_ref != LUA_NOREF);
  return 1;
}

/* ---- module functions ----------------------------------------------------- */

static void push_store_class(lua_State *L, int cls);

/* A directory argument: a string (no silent number conversion), not empty
 * and without NUL (the C path would stop at it: another directory). */
static const char *check_path(lua_State *L, int arg) {
  size_t len;
  const char *s;
  luaL_checktype(L, arg, LUA_TSTRING);
  s = lua_tolstring(L, arg, &len);
  if (len == 0) luaL_argerror(L, arg, "path must not be empty");
  if (memchr(s, 0, len)) luaL_argerror(L, arg, "path contains a NUL byte");
  return s;
}

/* The open of l_open and of the openers: the class table at index 3 or
 * nil there (the plain class). */
static int open_store(lua_State *L) {
  const char *path = check_path(L, 1);
  er_options o;
  er_error err;
  lstore *ls;
  int rc;
  uint8_t key[ER_KEY_LEN];
  er_options_init(&o);
  er_check_opts(L, 2, NULL, OPEN_OPTS);
  if (!lua_isnoneornil(L, 2)) {
    size_t klen;
    const char *k;
    lua_getfield(L, 2, "key");
    if (!lua_isnil(L, -1)) {
      if (lua_type(L, -1) != LUA_TSTRING)
        luaL_argerror(L, 2, lua_pushfstring(L, "key must be a string of %d bytes, got %s",
                                            ER_KEY_LEN, luaL_typename(L, -1)));
      k = lua_tolstring(L, -1, &klen);
      if (klen != ER_KEY_LEN)
        luaL_argerror(L, 2, lua_pushfstring(L, "key must be %d bytes, got %d", ER_KEY_LEN,
                                            (int)klen));
      memcpy(key, k, ER_KEY_LEN);
      o.key = key;
    }
    lua_pop(L, 1);
    lua_getfield(L, 2, "on_forget");
    if (!lua_isnil(L, -1) && !lua_isfunction(L, -1))
      luaL_argerror(L, 2, lua_pushfstring(L, "on_forget must be a function, got %s",
                                          luaL_typename(L, -1)));
    lua_pop(L, 1);
  }
  o.create = er_opt_boolean(L, 2, "create", 1);
  o.sync = er_opt_boolean(L, 2, "sync", 0);
  o.read_only = er_opt_boolean(L, 2, "read_only", 0);
  o.max_event_size = (size_t)er_opt_integer(L, 2, "max_event_size", 1, ER_NO_MAX,
                                            (lua_Integer)ER_DEFAULT_MAX_EVENT_SIZE);
  push_store_class(L, lua_isnil(L, 3) ? 0 : 3); /* 4 */
  ls = lua_newuserdatauv(L, sizeof *ls, 1);
  memset(ls, 0, sizeof *ls);
  ls->hook_ref = ls->hook_err_ref = ls->reader_ref = ls->upcast_ref = LUA_NOREF;
  ls->forget_ref = LUA_NOREF;
  lua_pushvalue(L, 4);
  lua_setmetatable(L, -2);
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, 1); /* the path, for tostring */
  lua_rawgetp(L, 4, &reader_key);
  ls->reader_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  set_upcasters(L, ls); /* raises on a bad one: before anything is opened */
  if (!lua_isnoneornil(L, 2)) {
    if (lua_getfield(L, 2, "on_forget") == LUA_TFUNCTION)
      ls->forget_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    else
      lua_pop(L, 1);
  }
  rc = er_open(path, &o, &ls->s, &err);
  sodium_memzero(key, sizeof key);
  if (rc != ER_OK) return push_error(L, &err);
  return 1;
}

/* core.open(path [, opts [, class]]) -> store, or nil, err.  class: the
 * methods written in Lua ({methods = {name = function}}) and the metatable
 * of the events read ({event = mt}); none: the core's methods only. */
static int l_open(lua_State *L) {
  if (!lua_isnoneornil(L, 3)) luaL_checktype(L, 3, LUA_TTABLE);
  lua_settop(L, 3);
  return open_store(L);
}

/* The function core.opener returns: open(path [, opts]). */
static int open_class(lua_State *L) {
  lua_settop(L, 2);
  lua_pushvalue(L, lua_upvalueindex(1));
  return open_store(L);
}

/* core.opener(class) -> open(path [, opts]) opening stores of that class
 * (see core.open); the class is checked now.  The eventrocks module's
 * open is one, so that argument errors name the caller's line. */
static int l_opener(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  push_store_class(L, 1);
  lua_pop(L, 1);
  lua_pushcclosure(L, open_class, 1);
  return 1;
}

/* store:_wait_idle([timeout_ms = 60000]) -> true when RocksDB has no
 * flush or compaction running or due, false when the time ran out */
static int l_wait_idle(lua_State *L) {
  lstore *ls = check_store(L, 1);
  lua_Integer ms = luaL_optinteger(L, 2, 60000);
  luaL_argcheck(L, ms >= 0 && ms <= INT_MAX, 2, "timeout out of range");
  lua_pushboolean(L, er_wait_idle(ls->s, (int)ms));
  return 1;
}

/* core.category(stream) -> the stream's category: the text before its
 * first '-', the whole id when it has none (the core's rule) */
static int l_category(lua_State *L) {
  size_t len;
  const char *stream;
  luaL_checktype(L, 1, LUA_TSTRING); /* no silent number conversion */
  stream = lua_tolstring(L, 1, &len);
  lua_pushlstring(L, stream, er_category(stream, len));
  return 1;
}

static int l_uuid(lua_State *L) {
  uint8_t id[16];
  char text[37];
  if (er_uuid7(id) != ER_OK) return luaL_error(L, "eventrocks: no random source");
  er_uuid_format(id, text);
  lua_pushlstring(L, text, 36);
  return 1;
}

/* ---- store: append -------------------------------------------------------- */

static int64_t check_expected(lua_State *L, int arg) {
  int64_t e = ER_ANY;
  if (lua_isnoneornil(L, arg)) return e;
  switch (lua_getfield(L, arg, "expected")) {
  case LUA_TNIL:
    break;
  case LUA_TSTRING: {
    const char *s = lua_tostring(L, -1);
    if (strcmp(s, S_ANY) == 0) e = ER_ANY;
    else if (strcmp(s, S_NO_STREAM) == 0) e = ER_NO_STREAM;
    else if (strcmp(s, S_STREAM_EXISTS) == 0) e = ER_STREAM_EXISTS;
    else goto bad;
    break;
  }
  case LUA_TNUMBER: {
    int ok;
    lua_Integer v = lua_tointegerx(L, -1, &ok);
    if (!ok || v < 0) goto bad;
    e = (int64_t)v;
    break;
  }
  default:
    goto bad;
  }
  lua_pop(L, 1);
  return e;
bad:
  luaL_argerror(L, arg,
                "expected must be er.ANY, er.NO_STREAM, er.STREAM_EXISTS or "
                "an integer >= 0");
  return 0;
}

static void reserve_events(lua_State *L, lstore *ls, size_t n) {
  size_t cap;
  if (n <= ls->evs_cap) return;
  cap = ls->evs_cap ? ls->evs_cap : 8;
  while (cap < n) cap *= 2;
  /* grow offs first: when evs then fails, both stay consistent with evs_cap
   * (offs being larger than needed is harmless; its size is recomputed) */
  ls->offs = lalloc(L, ls->offs, ls->evs_cap * 4 * sizeof *ls->offs,
                    cap * 4 * sizeof *ls->offs);
  ls->evs = lalloc(L, ls->evs, ls->evs_cap * sizeof *ls->evs, cap * sizeof *ls->evs);
  ls->evs_cap = cap;
}

/* The name of event `index` in error messages: "event" for a lone one
 * (index 0), else "events[<index>]"; pushed, and only made on an error. */
static const char *event_label(lua_State *L, lua_Integer index) {
  if (index == 0) return lua_pushliteral(L, "event");
  return lua_pushfstring(L, "events[%I]", (LUAI_UACINT)index);
}

/* Read event table at stack top into ls->evs[i]; `index` names it in errors
 * (event_label); `names` is the stack index of the reader's table, whose
 * field names spare a lookup of C strings. */
static void collect_event(lua_State *L, lstore *ls, size_t i, lua_Integer index,
                          int names, int enc_argn) {
  int t = lua_gettop(L);
  er_new_event *e = &ls->evs[i];
  size_t *off = &ls->offs[4 * i];
  const char *type, *got;
  memset(e, 0, sizeof *e);
  if (!lua_istable(L, t)) {
    got = luaL_typename(L, t);
    luaL_argerror(L, 3, lua_pushfstring(L, "%s must be an event table, got %s",
                                        event_label(L, index), got));
  }
  lua_rawgeti(L, names, F_TYPE);
  if (lua_rawget(L, t) != LUA_TSTRING) {
    got = luaL_typename(L, -1);
    luaL_argerror(L, 3, lua_pushfstring(L, "%s.type must be a string, got %s",
                                        event_label(L, index), got));
  }
  type = lua_tolstring(L, -1, &e->type_len); /* anchored by the event table */
  if (e->type_len == 0 || e->type_len > ER_MAX_TYPE_LEN || memchr(type, 0, e->type_len))
    luaL_argerror(L, 3, lua_pushfstring(L, "%s.type must be 1 to %d bytes without NUL",
                                        event_label(L, index), ER_MAX_TYPE_LEN));
  e->type = type;
  lua_pop(L, 1);

  lua_rawgeti(L, names, F_ID);
  switch (lua_rawget(L, t)) {
  case LUA_TNIL:
    break;
  case LUA_TSTRING: {
    size_t len;
    const char *id = lua_tolstring(L, -1, &len);
    if (er_uuid_parse(id, len, e->id) != ER_OK)
      luaL_argerror(L, 3, lua_pushfstring(L, "%s.id is not a UUID: '%s'",
                                          event_label(L, index), id));
    e->has_id = 1;
    break;
  }
  default:
    luaL_argerror(L, 3, lua_pushfstring(L, "%s.id must be a UUID string",
                                        event_label(L, index)));
  }
  lua_pop(L, 1);

  lua_rawgeti(L, names, F_DATA);
  off[0] = ls->buf.len;
  if (lua_rawget(L, t) != LUA_TNIL)
    er_encode_field(L, -1, &ls->buf, enc_argn, index ? "events" : "event", index, "data");
  off[1] = ls->buf.len - off[0];
  lua_settop(L, t);

  lua_rawgeti(L, names, F_METADATA);
  off[2] = ls->buf.len;
  switch (lua_rawget(L, t)) {
  case LUA_TNIL:
    break;
  case LUA_TTABLE:
    er_encode_field(L, -1, &ls->buf, enc_argn, index ? "events" : "event", index, "metadata");
    break;
  default:
    got = luaL_typename(L, -1);
    luaL_argerror(L, 3, lua_pushfstring(L, "%s.metadata must be a table, got %s",
                                        event_label(L, index), got));
  }
  off[3] = ls->buf.len - off[2];
  lua_settop(L, t);
}

/* Validate and encode the arguments (stream, events, opts) at 2, 3, 4 into
 * ls->evs; returns the number of events.  Raises on bad input.  Leaves the
 * reader (get_reader) at 5 and 6. */
static size_t collect_events(lua_State *L, lstore *ls, int enc_argn) {
  size_t n, i;
  reader r;
  luaL_checktype(L, 3, LUA_TTABLE);
  ls->buf.len = 0;
  lua_settop(L, 4);
  get_reader(L, ls, &r); /* 5, 6 */
  lua_rawgeti(L, r.t, F_TYPE);
  if (lua_rawget(L, 3) != LUA_TNIL) { /* one event */
    lua_pop(L, 1);
    n = 1;
    reserve_events(L, ls, 1);
    lua_pushvalue(L, 3);
    collect_event(L, ls, 0, 0, r.t, enc_argn);
    lua_settop(L, 6);
  } else {
    lua_pop(L, 1);
    n = (size_t)lua_rawlen(L, 3);
    if (n == 0) {
      /* {} is no event; {data = ...} is one event that forgot its type */
      lua_pushnil(L);
      luaL_argerror(L, 3, lua_next(L, 3) ? "event 1 has no type"
                                          : "no events to append");
    }
    reserve_events(L, ls, n);
    for (i = 0; i < n; i++) {
      lua_rawgeti(L, 3, (lua_Integer)(i + 1));
      collect_event(L, ls, i, (lua_Integer)(i + 1), r.t, enc_argn);
      lua_settop(L, 6);
    }
  }
  for (i = 0; i < n; i++) { /* the buffer has stopped moving: point into it */
    size_t *off = &ls->offs[4 * i];
    /* (not when empty: before the first value the buffer is NULL, and
     * NULL + 0 is undefined) */
    ls->evs[i].data = off[1] ? ls->buf.p + off[0] : NULL;
    ls->evs[i].data_len = off[1];
    ls->evs[i].metadata = off[3] ? ls->buf.p + off[2] : NULL;
    ls->evs[i].metadata_len = off[3];
  }
  return n;
}

static void push_expected(lua_State *L, int64_t e) {
  switch (e) {
  case ER_ANY: lua_pushliteral(L, S_ANY); break;
  case ER_NO_STREAM: lua_pushliteral(L, S_NO_STREAM); break;
  case ER_STREAM_EXISTS: lua_pushliteral(L, S_STREAM_EXISTS); break;
  default: lua_pushinteger(L, (lua_Integer)e);
  }
}

/* nil, err for a failed append of `stream` (pushed by the caller at top). */
/* Add the fields of an append's error to the error table on top:
 * expected and actual of wrong_expected_version, id of duplicate_event. */
static void set_append_error_fields(lua_State *L, const er_error *err) {
  if (err->code == ER_WRONG_EXPECTED_VERSION) {
    push_expected(L, err->expected);
    lua_setfield(L, -2, "expected");
    lua_pushinteger(L, (lua_Integer)err->actual);
    lua_setfield(L, -2, "actual");
  } else if (err->code == ER_DUPLICATE_EVENT) {
    char id[37];
    er_uuid_format(err->id, id);
    lua_pushlstring(L, id, 36);
    lua_setfield(L, -2, "id");
  }
}

/* nil, err of a failed append of the stream at the top of the stack. */
static int push_append_error(lua_State *L, const er_error *err) {
  int stream = lua_gettop(L);
  push_error(L, err);
  set_append_error_fields(L, err);
  if (err->code == ER_WRONG_EXPECTED_VERSION) {
    lua_pushvalue(L, stream);
    lua_setfield(L, -2, "stream");
  }
  return 2;
}

/* ---- the commit hook (inline projections) --------------------------------- */

/* Runs inside every commit of the store: calls the Lua hook function with
 * (txn, events) under lua_pcall, so no error crosses the core's lock. */
/* The `subject` option at `opts` for the `n` events collected: raises on
 * a bad one, or on a store opened without a key (its events would be
 * stored in clear).  The string stays in the options table. */
static void set_subject(lua_State *L, lstore *ls, int opts, size_t n) {
  size_t len, i;
  const char *subject;
  if (lua_isnoneornil(L, opts)) return;
  lua_getfield(L, opts, "subject");
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    return;
  }
  if (lua_type(L, -1) != LUA_TSTRING)
    luaL_argerror(L, opts, lua_pushfstring(L, "subject must be a string, got %s",
                                           luaL_typename(L, -1)));
  subject = lua_tolstring(L, -1, &len);
  lua_pop(L, 1);
  if (len == 0 || len > ER_MAX_SUBJECT_LEN || memchr(subject, 0, len))
    luaL_argerror(L, opts, lua_pushfstring(L, "subject must be 1 to %d bytes without NUL",
                                           ER_MAX_SUBJECT_LEN));
  if (!er_has_key(ls->s))
    luaL_error(L, "a subject needs a store opened with a key (er.open(path, { key = ... })): "
                  "its events would be stored in clear");
  for (i = 0; i < n; i++) {
    ls->evs[i].subject = subject;
    ls->evs[i].subject_len = len;
  }
}

static int lua_commit_hook(void *ud, er_txn *t, const er_event *evs, size_t n,
                           er_error *err) {
  lstore *ls = ud;
  lua_State *L = ls->L;
  int top, rc = ER_OK;
  size_t i;
  ltxn *lt;
  reader r;
  if (!L || ls->hook_ref == LUA_NOREF) return ER_OK;
  top = lua_gettop(L);
  if (!lua_checkstack(L, 10)) {
    snprintf(err->message, sizeof err->message, "Lua stack overflow in the commit hook");
    err->code = ER_NOMEM;
    return ER_NOMEM;
  }
  get_reader(L, ls, &r);
  lua_rawgeti(L, LUA_REGISTRYINDEX, ls->hook_ref);
  lt = lua_newuserdatauv(L, sizeof *lt, 0);
  memset(lt, 0, sizeof *lt);
  lt->t = t;
  lt->borrowed = 1;
  lt->owner = ls;
  luaL_setmetatable(L, TXN_MT);
  lua_createtable(L, (int)(n > 1u << 20 ? 1u << 20 : n), 0);
  for (i = 0; i < n; i++) {
    if (!push_event(L, &evs[i], &r)) {
      lt->t = NULL;
      lua_settop(L, top);
      err->code = ER_CORRUPTION;
      err->position = evs[i].position;
      snprintf(err->message, sizeof err->message, "an event to commit does not decode");
      return ER_CORRUPTION;
    }
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  ls->in_hook = 1;
  if (lua_pcall(L, 2, 0, 0) != LUA_OK) {
    /* keep the error value: the binding raises it once the commit is over */
    luaL_unref(L, LUA_REGISTRYINDEX, ls->hook_err_ref);
    ls->hook_err_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    err->code = rc = ER_INVALID;
    snprintf(err->message, sizeof err->message, "the commit hook raised an error");
  }
  ls->in_hook = 0;
  lt->t = NULL; /* the borrowed transaction is gone after the hook */
  lua_settop(L, top);
  return rc;
}

/* Before a commit: remember the running thread; refuse nested commits. */
static void before_commit(lua_State *L, lstore *ls) {
  if (ls->in_hook)
    luaL_error(L, "cannot append inside an inline projection handler (its commit is in progress)");
  ls->L = L;
}

/* After a commit: raise the error of a failed hook, if any. */
static void after_commit(lua_State *L, lstore *ls) {
  ls->L = NULL;
  if (ls->hook_err_ref != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, ls->hook_err_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, ls->hook_err_ref);
    ls->hook_err_ref = LUA_NOREF;
    lua_error(L);
  }
}

/* store:_set_hook(fn or nil) */
static int l_set_hook(lua_State *L) {
  lstore *ls = check_store(L, 1);
  if (!lua_isnoneornil(L, 2)) luaL_checktype(L, 2, LUA_TFUNCTION);
  if (ls->in_hook) return luaL_error(L, "cannot change the hook inside the hook");
  luaL_unref(L, LUA_REGISTRYINDEX, ls->hook_ref);
  ls->hook_ref = LUA_NOREF;
  if (lua_isnoneornil(L, 2)) {
    er_set_commit_hook(ls->s, NULL, NULL);
  } else {
    lua_pushvalue(L, 2);
    ls->hook_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    er_set_commit_hook(ls->s, lua_commit_hook, ls);
  }
  return 0;
}

static int store_append(lua_State *L) {
  lstore *ls = check_store(L, 1);
  size_t slen, n;
  const char *stream = check_stream(L, 2, &slen);
  int64_t expected;
  er_appended res;
  er_error err;
  int rc;
  er_check_opts(L, 4, NULL, APPEND_OPTS);
  expected = check_expected(L, 4);
  n = collect_events(L, ls, 3);
  set_subject(L, ls, 4, n);
  before_commit(L, ls);
  rc = er_append(ls->s, stream, slen, expected, ls->evs, n, &res, &err);
  after_commit(L, ls);
  if (rc != ER_OK) {
    lua_pushvalue(L, 2);
    return push_append_error(L, &err);
  }
  lua_pushinteger(L, (lua_Integer)res.version);
  lua_pushinteger(L, (lua_Integer)res.position);
  return 2;
}

/* ---- transactions and key-value spaces (for the Lua modules) --------------
 * store:_txn() -> txn; txn:append(stream, events [, opts]) -> true or
 * nil, err; txn:put(space, key, value); txn:delete(space, key);
 * txn:delete_prefix(space, prefix); txn:commit() -> results or nil, err,
 * where results[i] = { version =, position =, replayed = } for the i-th
 * append; txn:close() releases it (as do __close and __gc; idempotent).
 * append.  store:_get(space, key) -> value or nil;
 * store:_scan(space [, prefix]) -> iterator of key, value.  Values are
 * Lua values stored as MessagePack like event data. */


static const char *const space_names[] = {"snapshots", "checkpoints", "views", NULL};

static lstore *txn_store(lua_State *L, ltxn **out) {
  ltxn *lt = luaL_checkudata(L, 1, TXN_MT);
  lstore *ls = NULL;
  if (!lt->t) luaL_error(L, "attempt to use a finished transaction");
  *out = lt;
  if (lt->borrowed) return lt->owner;
  lua_getiuservalue(L, 1, 1);
  ls = lua_touserdata(L, -1);
  lua_pop(L, 1);
  if (!ls || !ls->s) luaL_error(L, "attempt to use a closed store");
  return ls;
}

static int l_txn(lua_State *L) {
  lstore *ls = check_store(L, 1);
  ltxn *lt = lua_newuserdatauv(L, sizeof *lt, 1);
  er_error err;
  memset(lt, 0, sizeof *lt);
  luaL_setmetatable(L, TXN_MT);
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, 1);
  if (er_txn_begin(ls->s, &lt->t, &err) != ER_OK) return push_error(L, &err);
  return 1;
}

static int txn_gc(lua_State *L) {
  ltxn *lt = luaL_checkudata(L, 1, TXN_MT);
  if (!lt->borrowed) er_txn_free(lt->t); /* does not touch the store */
  lt->t = NULL;
  return 0;
}

static int txn_append(lua_State *L) {
  ltxn *lt;
  lstore *ls = txn_store(L, &lt);
  size_t slen, n;
  const char *stream = check_stream(L, 2, &slen);
  int64_t expected;
  lua_Integer time_at, position;
  int restore;
  er_error err;
  if (lt->borrowed) return luaL_error(L, "cannot append inside a commit hook");
  er_check_opts(L, 4, NULL, TXN_APPEND_OPTS);
  expected = check_expected(L, 4);
  time_at = er_opt_integer(L, 4, "time", 0, ER_NO_MAX, 0); /* imports keep their times */
  restore = er_opt_boolean(L, 4, "restore", 0);
  position = er_opt_integer(L, 4, "position", 0, ER_NO_MAX, 0);
  if (restore && expected < 0) luaL_argerror(L, 4, "restore needs expected = the version before");
  /* a value that cannot be stored raises an error value (code, path,
   * index): the Lua modules above report it in their own terms */
  n = collect_events(L, ls, 0);
  set_subject(L, ls, 4, n);
  if (er_opt_boolean(L, 4, "forgotten", 0)) {
    size_t i;
    for (i = 0; i < n; i++) ls->evs[i].forgotten = 1;
  }
  if ((restore ? er_txn_restore(lt->t, stream, slen, expected, (uint64_t)position, ls->evs, n,
                                (int64_t)time_at, &err)
               : er_txn_append_at(lt->t, stream, slen, expected, ls->evs, n, (int64_t)time_at,
                                  &err)) != ER_OK) {
    lua_pushvalue(L, 2);
    return push_append_error(L, &err);
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* The (space, key) arguments 2 and 3 of txn:put/put_encoded/delete. */
static const char *txn_space_key(lua_State *L, er_space *space, size_t *klen) {
  const char *key;
  *space = (er_space)luaL_checkoption(L, 2, NULL, space_names);
  key = luaL_checklstring(L, 3, klen);
  luaL_argcheck(L, *klen > 0, 3, "empty key");
  return key;
}

static int txn_put(lua_State *L) {
  ltxn *lt;
  lstore *ls = txn_store(L, &lt);
  er_space space;
  size_t klen;
  const char *key = txn_space_key(L, &space, &klen);
  er_error err;
  er_buf *b;
  luaL_checkany(L, 4);
  b = &ls->kvbuf;
  b->len = 0;
  er_encode(L, 4, b, 0, "value"); /* an error value: see txn:put */
  if (er_txn_put(lt->t, space, key, klen, b->p, b->len, &err) != ER_OK)
    return push_error(L, &err);
  lua_pushboolean(L, 1);
  return 1;
}

/* txn:put_encoded(space, key, bytes): like put, with a value already
 * encoded by core.encode (the projection views encode at put time, to raise
 * where the handler is, and write each key once per batch). */
static int txn_put_encoded(lua_State *L) {
  ltxn *lt;
  size_t klen, vlen;
  const char *key, *val;
  er_space space;
  er_error err;
  txn_store(L, &lt);
  key = txn_space_key(L, &space, &klen);
  val = luaL_checklstring(L, 4, &vlen);
  if (er_txn_put(lt->t, space, key, klen, val, vlen, &err) != ER_OK)
    return push_error(L, &err);
  lua_pushboolean(L, 1);
  return 1;
}

/* core.encode(value [, name]) -> the MessagePack bytes the store would
 * write for `value`; raises as an append would (`name`, default "value",
 * starts the path in the message).  Raw values (a read with raw = true)
 * are written as they are.  Upvalue 1: a reused buffer. */
static int l_encode(lua_State *L) {
  er_buf *b = lua_touserdata(L, lua_upvalueindex(1));
  const char *name = luaL_optstring(L, 2, "value");
  luaL_checkany(L, 1);
  b->len = 0;
  er_encode_message(L, 1, b, 1, name);
  lua_pushlstring(L, b->p ? b->p : "", b->len);
  return 1;
}

/* The function of core.map_encoder: (values...) -> bytes.  Upvalues: the
 * buffer, the prepared keys, the name. */
static int encode_map(lua_State *L) {
  er_buf *b = lua_touserdata(L, lua_upvalueindex(1));
  b->len = 0;
  er_encode_map(L, 1, lua_upvalueindex(2), b, 1, lua_tostring(L, lua_upvalueindex(3)));
  lua_pushlstring(L, b->p, b->len);
  return 1;
}

/* core.map_encoder(keys [, name]) -> function(v1, v2, ...) -> the
 * MessagePack map keys[1] = v1, keys[2] = v2, ... of every key in `keys`
 * (1 to 200 strings or integers), in that order, nil values included; it
 * raises as core.encode does, naming "<name>.<key>" (name: "value" by
 * default).  Made once for messages of fixed fields, such as the relay's
 * bodies: the same values give the same bytes.  Upvalue 1: the buffer. */
static int l_map_encoder(lua_State *L) {
  er_buf *b = lua_touserdata(L, lua_upvalueindex(1));
  luaL_optstring(L, 2, "value");
  lua_settop(L, 2);
  if (lua_isnil(L, 2)) {
    lua_pushliteral(L, "value");
    lua_replace(L, 2);
  }
  lua_pushvalue(L, lua_upvalueindex(1));
  er_prepare_map(L, 1, b, 1);
  lua_pushvalue(L, 2);
  lua_pushcclosure(L, encode_map, 3);
  return 1;
}

/* core.decode(bytes) -> value | nil, why: the inverse of core.encode, for
 * values that arrive from elsewhere (JetStream), and for raw values.  why
 * names the place of an integer Lua cannot hold ("data.amount: integer ...
 * is outside the 64-bit range"), else says the bytes do not decode. */
static int l_decode(lua_State *L) {
  size_t len;
  const char *p = er_to_raw(L, 1, &len);
  if (!p) p = luaL_checklstring(L, 1, &len);
  if (er_decode_msg(L, p, len, "not a well-formed stored value (MessagePack)")) return 1;
  lua_pushnil(L);
  lua_insert(L, -2);
  return 2;
}

static int encode_buffer_gc(lua_State *L) {
  er_buf_free(L, lua_touserdata(L, 1));
  return 0;
}

static int txn_delete_kind(lua_State *L, int prefix) {
  ltxn *lt;
  er_space space;
  size_t klen;
  const char *key;
  er_error err;
  int rc;
  txn_store(L, &lt);
  key = txn_space_key(L, &space, &klen);
  rc = prefix ? er_txn_delete_prefix(lt->t, space, key, klen, &err)
              : er_txn_delete(lt->t, space, key, klen, &err);
  if (rc != ER_OK) return push_error(L, &err);
  lua_pushboolean(L, 1);
  return 1;
}

static int txn_delete(lua_State *L) { return txn_delete_kind(L, 0); }
static int txn_delete_prefix(lua_State *L) { return txn_delete_kind(L, 1); }

static int txn_commit(lua_State *L) {
  ltxn *lt;
  size_t i, n;
  er_error err;
  lstore *ls = txn_store(L, &lt);
  int rc;
  if (lt->borrowed) return luaL_error(L, "cannot commit inside a commit hook");
  before_commit(L, ls);
  rc = er_txn_commit(lt->t, &err);
  after_commit(L, ls);
  if (rc != ER_OK) {
    push_error(L, &err);
    lua_pushinteger(L, (lua_Integer)err.append_index + 1);
    lua_setfield(L, -2, "index");
    set_append_error_fields(L, &err);
    return 2;
  }
  n = er_txn_appends(lt->t);
  lua_createtable(L, (int)n, 0);
  for (i = 0; i < n; i++) {
    const er_appended *r = er_txn_result(lt->t, i);
    lua_createtable(L, 0, 3);
    lua_pushinteger(L, (lua_Integer)r->version);
    lua_setfield(L, -2, "version");
    lua_pushinteger(L, (lua_Integer)r->position);
    lua_setfield(L, -2, "position");
    lua_pushboolean(L, r->replayed);
    lua_setfield(L, -2, "replayed");
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  return 1;
}

static int l_get(lua_State *L) {
  lstore *ls = check_store(L, 1);
  er_space space = (er_space)luaL_checkoption(L, 2, NULL, space_names);
  size_t klen, vlen;
  const char *key = luaL_checklstring(L, 3, &klen);
  void **box;
  er_error err;
  int rc;
  box = lua_newuserdatauv(L, sizeof *box, 0);
  *box = NULL;
  luaL_setmetatable(L, MEM_MT);
  rc = er_get(ls->s, space, key, klen, box, &vlen, &err);
  if (rc == ER_NOT_FOUND) {
    lua_pushnil(L);
    return 1;
  }
  if (rc != ER_OK) return push_error(L, &err);
  rc = er_decode(L, *box, vlen);
  er_free(*box);
  *box = NULL;
  if (!rc) {
    err.code = ER_CORRUPTION;
    err.position = 0;
    snprintf(err.message, sizeof err.message, "stored %s value does not decode",
             space_names[space]);
    return push_error(L, &err);
  }
  return 1;
}

static int l_scan(lua_State *L) {
  lstore *ls = check_store(L, 1);
  er_space space = (er_space)luaL_checkoption(L, 2, NULL, space_names);
  size_t plen = 0;
  const char *prefix = luaL_optlstring(L, 3, "", &plen);
  er_error err;
  liter *li;
  li = new_iter(L, LI_KV);
  if (er_scan(ls->s, space, prefix, plen, &li->it, &err) != ER_OK)
    return raise_error(L, &err);
  return return_iter(L, ls);
}

/* ---- store: reads --------------------------------------------------------- */

static int store_version(lua_State *L) {
  lstore *ls = check_store(L, 1);
  size_t len;
  const char *stream = check_stream(L, 2, &len);
  uint64_t v;
  er_error err;
  if (er_version(ls->s, stream, len, &v, &err) != ER_OK) return push_error(L, &err);
  lua_pushinteger(L, (lua_Integer)v);
  return 1;
}

/* store:refresh(): a read-only handle catches up with the writer. */
static int store_refresh(lua_State *L) {
  lstore *ls = check_store(L, 1);
  er_error err;
  if (er_refresh(ls->s, &err) != ER_OK) return push_error(L, &err);
  lua_pushboolean(L, 1);
  return 1;
}

/* store:_wait(after [, timeout_ms]) -> the last position once it is above
 * `after`, or at most `after` when timeout_ms (default: no limit; 0: only
 * look) ran out; nil, err when a read-only handle cannot catch up.  Blocks
 * the calling Lua state (er_wait_position); eventrocks.subscription waits
 * in slices so that a Lua signal hook (Ctrl-C) runs between them. */
static int l_wait(lua_State *L) {
  lstore *ls = check_store(L, 1);
  lua_Integer after = luaL_checkinteger(L, 2);
  lua_Integer ms = luaL_optinteger(L, 3, -1);
  uint64_t last = 0;
  er_error err;
  luaL_argcheck(L, after >= 0, 2, "position must be >= 0");
  luaL_argcheck(L, ms >= -1 && ms <= INT_MAX, 3, "timeout out of range");
  if (er_wait_position(ls->s, (uint64_t)after, (int)ms, &last, &err) != ER_OK)
    return push_error(L, &err);
  lua_pushinteger(L, (lua_Integer)last);
  return 1;
}

/* store:_is_read_only() -> boolean */
static int l_is_read_only(lua_State *L) {
  lstore *ls = check_store(L, 1);
  lua_pushboolean(L, er_is_read_only(ls->s));
  return 1;
}

static int store_last_position(lua_State *L) {
  lstore *ls = check_store(L, 1);
  lua_pushinteger(L, (lua_Integer)er_last_position(ls->s));
  return 1;
}

static int mem_gc(lua_State *L) {
  void **box = lua_touserdata(L, 1);
  er_free(*box);
  *box = NULL;
  return 0;
}

static int store_event(lua_State *L) {
  lstore *ls = check_store(L, 1);
  lua_Integer pos = luaL_checkinteger(L, 2);
  er_event ev;
  er_error err;
  reader r;
  void **box;
  int rc;
  if (pos < 1) {
    lua_pushnil(L);
    return 1;
  }
  /* the record's memory lives in a box that the collector frees even when
   * decoding raises (out of memory) */
  box = lua_newuserdatauv(L, sizeof *box, 0);
  *box = NULL;
  luaL_setmetatable(L, MEM_MT);
  rc = er_event_at(ls->s, (uint64_t)pos, &ev, box, &err);
  if (rc == ER_NOT_FOUND) {
    lua_pushnil(L);
    return 1;
  }
  if (rc != ER_OK) return push_error(L, &err);
  get_reader(L, ls, &r);
  rc = push_event(L, &ev, &r);
  er_free(*box);
  *box = NULL;
  if (!rc) {
    err.code = ER_CORRUPTION;
    err.position = (uint64_t)pos;
    snprintf(err.message, sizeof err.message,
             "the data of the event at position %llu does not decode",
             (unsigned long long)pos);
    return push_error(L, &err);
  }
  if (ls->upcast_ref != LUA_NOREF) upcast_event(L, ls, -1);
  return 1;
}

/* The iterator userdata for `store` (at index 1), closed state. */
static liter *new_iter(lua_State *L, int kind) {
  liter *li = lua_newuserdatauv(L, sizeof *li, 3);
  li->it = NULL;
  li->arena = NULL;
  li->kind = kind;
  li->raw = 0;
  li->in_handler = 0;
  luaL_setmetatable(L, ITER_MT);
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, 1);
  return li;
}

static int iter_close(lua_State *L) {
  liter *li = luaL_checkudata(L, 1, ITER_MT);
  er_iter_free(li->it);
  li->it = NULL;
  return 0;
}

/* The store of the iterator at index 1; raises, closing the iterator, when
 * the store was closed. */
static lstore *iter_store(lua_State *L) {
  lstore *ls;
  lua_getiuservalue(L, 1, 1);
  ls = lua_touserdata(L, -1);
  lua_pop(L, 1);
  if (!ls || !ls->s) {
    iter_close(L);
    luaL_error(L, "attempt to use a closed store");
  }
  return ls;
}

/* The `next` function of the generic for: (iterator) -> values or nil.
 * Upvalues (return_iter): the reader's userdata and table, the iterator
 * metatable (checked by identity: luaL_checkudata looks its name up in the
 * registry at every call), and the iterator itself, used when the function
 * is called without arguments. */
static int iter_next(lua_State *L) {
  const lstore *ls;
  liter *li;
  er_error err;
  int rc;
  if (lua_isnoneornil(L, 1)) { /* `store:read(s)()`: no for loop around it */
    lua_settop(L, 0);
    lua_pushvalue(L, lua_upvalueindex(4));
  }
  li = lua_touserdata(L, 1);
  if (li && lua_getmetatable(L, 1) && lua_rawequal(L, -1, lua_upvalueindex(3)))
    lua_pop(L, 1);
  else
    li = luaL_checkudata(L, 1, ITER_MT); /* raises */
  if (!li->it) return 0;
  ls = iter_store(L); /* raises when the store was closed */
  if (li->kind == LI_KV) {
    const void *k, *v;
    size_t klen, vlen;
    rc = er_iter_next_kv(li->it, &k, &klen, &v, &vlen, &err);
    if (rc == ER_OK) {
      lua_pushlstring(L, k, klen);
      if (er_decode(L, v, vlen)) return 2;
      err.code = ER_CORRUPTION;
      err.position = 0;
      snprintf(err.message, sizeof err.message, "the stored value of '%.*s' does not decode",
               (int)(klen > 200 ? 200 : klen), (const char *)k); /* k dies with the iterator */
      iter_close(L);
      return raise_error(L, &err);
    }
  } else if (li->kind == LI_STREAMS) {
    const char *name;
    size_t len;
    uint64_t version;
    rc = er_iter_next_stream(li->it, &name, &len, &version, &err);
    if (rc == ER_OK) {
      lua_pushlstring(L, name, len);
      lua_pushinteger(L, (lua_Integer)version);
      return 2;
    }
  } else {
    er_event ev;
    rc = er_iter_next(li->it, &ev, &err);
    if (rc == ER_OK) {
      reader r;
      r.cache = lua_touserdata(L, lua_upvalueindex(1));
      r.ud = lua_upvalueindex(1);
      r.t = lua_upvalueindex(2);
      if (li->raw == 1) return push_event_raw(L, &ev, &r);
      if (li->raw == 2 && ls->upcast_ref == LUA_NOREF) {
        if (push_event_lazy(L, &ev, &r, 1)) return 1;
      } else if (push_event(L, &ev, &r)) {
        if (ls->upcast_ref != LUA_NOREF) upcast_event(L, ls, -1);
        return 1;
      }
      iter_close(L);
      return raise_corrupt(L, ev.position);
    }
  }
  iter_close(L);
  if (rc == ER_NOT_FOUND) return 0;
  return raise_error(L, &err);
}

static int return_iter(lua_State *L, const lstore *ls) {
  reader r;
  get_reader(L, ls, &r);
  luaL_getmetatable(L, ITER_MT);
  lua_pushvalue(L, -4); /* the iterator, for a call without arguments */
  lua_pushcclosure(L, iter_next, 4);
  lua_insert(L, -2);
  lua_pushnil(L);
  lua_pushvalue(L, -2);
  return 4;
}

static int store_read(lua_State *L) {
  lstore *ls = check_store(L, 1);
  size_t len;
  const char *stream = check_stream(L, 2, &len);
  lua_Integer from, count;
  int backward, raw, rc;
  er_error err;
  liter *li;
  er_check_opts(L, 3, NULL, READ_OPTS);
  from = er_opt_integer(L, 3, "from", 1, ER_NO_MAX, 0);
  count = er_opt_integer(L, 3, "count", 0, ER_NO_MAX, -1);
  backward = er_opt_boolean(L, 3, "backward", 0);
  raw = er_opt_boolean(L, 3, "raw", 0);
  li = new_iter(L, LI_EVENTS);
  li->raw = raw;
  rc = er_read_stream(ls->s, stream, len, (uint64_t)from,
                      count < 0 ? ER_UNLIMITED : (uint64_t)count, backward,
                      &li->it, &err);
  if (rc == ER_STREAM_DELETED) return push_error(L, &err); /* nil, err: an expected failure */
  if (rc != ER_OK) return raise_error(L, &err);
  return return_iter(L, ls);
}

/* store:_fold(stream, from, count, max_time, apply, state)
 *   -> true, state, version | false, message, type, version | nil, err
 * The loop of an aggregate's load (lua/eventrocks/aggregate.lua) in C, for
 * stores and aggregates without upcasters: for each event of `stream` from
 * version `from` (at most `count` of them, -1: all; none timed after
 * `max_time` unless it is nil), calls apply[type](state, data [, event])
 * and takes a result other than nil as the new state.  The event table is
 * built only for a handler that declares a third parameter (or `...`):
 * most folds read the data alone.  `version` is the last event applied
 * (nil when none).  A missing handler gives false, nil, type, version; a
 * failed one false, its error, type, version; a hard-deleted stream nil,
 * err.  Damaged data raises, as a read does. */
static int store_fold(lua_State *L) {
  lstore *ls = check_store(L, 1);
  size_t len;
  const char *stream = check_stream(L, 2, &len);
  lua_Integer from = luaL_checkinteger(L, 3), count = luaL_checkinteger(L, 4);
  int has_max = !lua_isnil(L, 5), rc, applied = 0;
  lua_Integer max_time = has_max ? luaL_checkinteger(L, 5) : 0;
  uint64_t version = 0;
  er_error err;
  liter *li;
  reader r;
  luaL_checktype(L, 6, LUA_TTABLE);
  luaL_checkany(L, 7);
  lua_settop(L, 7);
  if (from < 1) from = 1;
  li = new_iter(L, LI_EVENTS); /* 8 */
  rc = er_read_stream(ls->s, stream, len, (uint64_t)from,
                      count < 0 ? ER_UNLIMITED : (uint64_t)count, 0, &li->it, &err);
  if (rc == ER_STREAM_DELETED) return push_error(L, &err);
  if (rc != ER_OK) return raise_error(L, &err);
  get_reader(L, ls, &r); /* 9, 10 */
  lua_createtable(L, 0, 4); /* 11: handler -> whether it takes the event */
  luaL_checkstack(L, 8, NULL);
  for (;;) {
    er_event ev;
    int takes_ev, nargs;
    rc = er_iter_next(li->it, &ev, &err);
    if (rc != ER_OK) break;
    if (has_max && ev.time > max_time) {
      rc = ER_NOT_FOUND; /* the end of what is asked for */
      break;
    }
    er_push_cached(L, ev.type, ev.type_len, r.cache, r.t); /* 12: the type */
    lua_pushvalue(L, 12);
    if (lua_rawget(L, 6) != LUA_TFUNCTION) { /* 13: the handler */
      lua_pushboolean(L, 0);
      lua_pushnil(L);
      lua_pushvalue(L, 12);
      lua_pushinteger(L, (lua_Integer)ev.version);
      er_iter_free(li->it);
      li->it = NULL;
      return 4;
    }
    lua_pushvalue(L, 13);
    if (lua_rawget(L, 11) == LUA_TNIL) {
      lua_Debug ar;
      lua_pop(L, 1);
      lua_pushvalue(L, 13);
      lua_getinfo(L, ">u", &ar);
      lua_pushvalue(L, 13);
      lua_pushboolean(L, ar.nparams >= 3 || ar.isvararg);
      lua_rawset(L, 11);
      takes_ev = ar.nparams >= 3 || ar.isvararg;
    } else {
      takes_ev = lua_toboolean(L, -1);
      lua_pop(L, 1);
    }
    lua_pushvalue(L, 7); /* the state */
    if (ev.data_len == 0) lua_pushnil(L);
    else if (!er_decode_cached(L, ev.data, ev.data_len, r.cache, r.t)) {
      er_iter_free(li->it);
      li->it = NULL;
      return raise_corrupt(L, ev.position);
    }
    nargs = 2;
    if (takes_ev) {
      if (!push_event(L, &ev, &r)) {
        er_iter_free(li->it);
        li->it = NULL;
        return raise_corrupt(L, ev.position);
      }
      nargs = 3;
    }
    version = ev.version; /* ev borrows the iterator: copied before the call */
    if (lua_pcall(L, nargs, 1, 0) != LUA_OK) {
      er_iter_free(li->it);
      li->it = NULL;
      lua_pushboolean(L, 0);
      lua_insert(L, -2);
      lua_pushvalue(L, 12);
      lua_pushinteger(L, (lua_Integer)version);
      return 4;
    }
    if (!lua_isnil(L, -1)) lua_replace(L, 7);
    lua_settop(L, 11);
    applied = 1;
  }
  er_iter_free(li->it);
  li->it = NULL;
  if (rc != ER_NOT_FOUND) return raise_error(L, &err);
  lua_pushboolean(L, 1);
  lua_pushvalue(L, 7);
  if (applied) lua_pushinteger(L, (lua_Integer)version);
  else lua_pushnil(L);
  return 3;
}

static int store_all(lua_State *L) {
  lstore *ls = check_store(L, 1);
  lua_Integer from, count;
  er_filter f;
  const char *types_small[16];
  size_t lens_small[16];
  const char **types = types_small;
  size_t *lens = lens_small;
  er_error err;
  liter *li;
  int rc, raw;
  memset(&f, 0, sizeof f);
  er_check_opts(L, 2, NULL, ALL_OPTS);
  lua_settop(L, 2);
  from = er_opt_integer(L, 2, "from", 1, ER_NO_MAX, 1);
  count = er_opt_integer(L, 2, "count", 0, ER_NO_MAX, -1);
  raw = er_opt_boolean(L, 2, "raw", 0);
  /* _lazy (projections' catch-up): lazy event tables */
  if (!raw && er_opt_boolean(L, 2, "_lazy", 0)) raw = 2;
  /* (the strings stay in the options table during the call) */
  f.category = er_opt_string(L, 2, "category", &f.category_len);
  if (!lua_isnoneornil(L, 2) && lua_getfield(L, 2, "types") != LUA_TNIL) { /* 3 */
    size_t i, n;
    if (!lua_istable(L, 3)) luaL_argerror(L, 2, "types must be an array of strings");
    n = (size_t)lua_rawlen(L, 3);
    if (n == 0) luaL_argerror(L, 2, "types must not be empty");
    if (n > 16) {
      types = lua_newuserdatauv(L, n * sizeof *types, 0); /* 4 */
      lens = lua_newuserdatauv(L, n * sizeof *lens, 0);   /* 5 */
    }
    for (i = 0; i < n; i++) {
      if (lua_rawgeti(L, 3, (lua_Integer)(i + 1)) != LUA_TSTRING)
        luaL_argerror(L, 2, "types must be an array of strings");
      types[i] = lua_tolstring(L, -1, &lens[i]); /* anchored by the table */
      lua_pop(L, 1);
    }
    f.types = types;
    f.type_lens = lens;
    f.ntypes = n;
  }
  li = new_iter(L, LI_EVENTS);
  li->raw = raw;
  rc = er_read_all(ls->s, (uint64_t)from, count < 0 ? ER_UNLIMITED : (uint64_t)count,
                   &f, &li->it, &err);
  if (rc != ER_OK) return raise_error(L, &err);
  return return_iter(L, ls);
}

static int store_streams(lua_State *L) {
  lstore *ls = check_store(L, 1);
  size_t len = 0;
  const char *prefix;
  er_error err;
  liter *li;
  int rc;
  er_check_opts(L, 2, NULL, STREAMS_OPTS);
  lua_settop(L, 2);
  prefix = er_opt_string(L, 2, "prefix", &len);
  li = new_iter(L, LI_STREAMS);
  rc = er_list_streams(ls->s, prefix ? prefix : "", len, &li->it, &err);
  if (rc != ER_OK) return raise_error(L, &err);
  return return_iter(L, ls);
}

/* ---- store: life cycle ---------------------------------------------------- */

static int store_close(lua_State *L) {
  lstore *ls = to_store(L, 1);
  if (ls->in_hook) return luaL_error(L, "cannot close a store inside its commit hook");
  if (ls->s) er_close(ls->s);
  ls->s = NULL;
  luaL_unref(L, LUA_REGISTRYINDEX, ls->hook_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, ls->hook_err_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, ls->reader_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, ls->upcast_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, ls->forget_ref);
  ls->hook_ref = ls->hook_err_ref = ls->reader_ref = ls->upcast_ref = LUA_NOREF;
  ls->forget_ref = LUA_NOREF;
  er_buf_free(L, &ls->kvbuf);
  er_buf_free(L, &ls->buf);
  lalloc(L, ls->evs, ls->evs_cap * sizeof *ls->evs, 0);
  lalloc(L, ls->offs, ls->evs_cap * 4 * sizeof *ls->offs, 0);
  ls->evs = NULL;
  ls->offs = NULL;
  ls->evs_cap = 0;
  return 0;
}

static int store_tostring(lua_State *L) {
  lstore *ls = to_store(L, 1);
  lua_getiuservalue(L, 1, 1);
  if (!ls->s) lua_pushfstring(L, STORE_MT " (%s, closed)", lua_tostring(L, -1));
  else if (er_is_read_only(ls->s))
    lua_pushfstring(L, STORE_MT " (%s, read-only)", lua_tostring(L, -1));
  else lua_pushfstring(L, STORE_MT " (%s)", lua_tostring(L, -1));
  return 1;
}

static int iter_tostring(lua_State *L) {
  liter *li = luaL_checkudata(L, 1, ITER_MT);
  lua_pushfstring(L, ITER_MT " (%s)", li->it ? "open" : "closed");
  return 1;
}


/* iter:_each(handlers, view[, parked]) -> count, last position[, event,
 * what, error]: the loop of a projection's catch-up, for an iterator of
 * events or lazy events (store:all, with _lazy or not) when the core has
 * filtered them already and no upcaster runs.  Each event goes to
 * handlers[event.type], when there is one, as handler(view, event), with
 * view._event set to it first.  Returns the number of events read and the
 * last one's position (0 when none).
 *
 * Without `parked` (on_error stops) an error, the handler's or the
 * iterator's, propagates: the caller's pcall tells them apart with
 * iter:_in_handler().  With `parked` (the streams with a dead letter: the
 * handlers may fail without stopping the projection) each handler runs
 * under pcall, and the loop stops at an event the caller must settle,
 * returning it after the count (which includes it) with what happened:
 * "parked" (its stream is in `parked`: the handler was not called),
 * "failed" (and the error), or "emits" (the handler queued events:
 * view._emits); otherwise the view's journal length view._jn goes back to
 * 0 after each handler.  Call it again to go on. */
/* The stack of iter_each: 1 iterator, 2 handlers, 3 view, 4 parked, 5-6
 * the reader, 7-9 the view's field names, 10 the event, 11 its handler
 * (then the error).  Handlers may yield (a projection run by a coroutine
 * scheduler): the loop goes on in each_k, with its counts in the iterator
 * and the options in the continuation's context. */
enum { EACH_HANDLERS = 2, EACH_VIEW, EACH_PARKED, EACH_K_EVENT = 7, EACH_K_EMITS, EACH_K_JN,
       EACH_EV, EACH_FN };
enum { EACH_GUARDED = 1, EACH_ANY_PARKED = 2 };

/* Return the counts, then the event at EACH_EV and what follows it (nret
 * values in all). */
static int each_return(lua_State *L, const liter *li, int nret) {
  lua_pushinteger(L, li->each_n);
  lua_pushinteger(L, li->each_last);
  if (nret == 2) return 2;
  lua_insert(L, EACH_EV);
  lua_insert(L, EACH_EV);
  return nret;
}

/* Hand the event at EACH_EV back to the caller with `what` happened. */
static int each_hand_back(lua_State *L, const liter *li, const char *what) {
  lua_settop(L, EACH_EV);
  lua_pushstring(L, what);
  return each_return(L, li, 4);
}

/* After the handler of the event at EACH_EV returned, or failed (guarded:
 * the error on top).  Returns how many values iter_each returns, or -1 to
 * go on with the next event. */
static int each_after(lua_State *L, liter *li, lua_KContext ctx, int failed) {
  li->in_handler = 0;
  if (failed) {
    lua_pushliteral(L, "failed");
    lua_insert(L, -2);
    return each_return(L, li, 5);
  }
  if (ctx & EACH_GUARDED) {
    lua_pushvalue(L, EACH_K_EMITS);
    if (lua_rawget(L, EACH_VIEW) != LUA_TNIL) return each_hand_back(L, li, "emits");
    lua_pop(L, 1);
    lua_pushvalue(L, EACH_K_JN);
    lua_pushinteger(L, 0);
    lua_rawset(L, EACH_VIEW); /* view._jn = 0 */
  }
  /* the handler may have closed this iterator or the store */
  if (!li->it) return each_return(L, li, 2);
  iter_store(L); /* raises when the store was closed */
  lua_settop(L, EACH_K_JN);
  return -1;
}

static int each_loop(lua_State *L, lua_KContext ctx);

static int each_k(lua_State *L, int status, lua_KContext ctx) {
  liter *li = lua_touserdata(L, 1);
  int nret = each_after(L, li, ctx, status != LUA_OK && status != LUA_YIELD);
  return nret >= 0 ? nret : each_loop(L, ctx);
}

static int each_loop(lua_State *L, lua_KContext ctx) {
  liter *li = lua_touserdata(L, 1);
  reader r;
  r.cache = lua_touserdata(L, 5);
  r.ud = 5;
  r.t = 6;
  while (li->it) {
    er_event ev;
    er_error err;
    int rc = er_iter_next(li->it, &ev, &err), nret, failed = 0;
    if (rc != ER_OK) {
      iter_close(L);
      if (rc == ER_NOT_FOUND) break;
      return raise_error(L, &err);
    }
    li->each_n++;
    li->each_last = (lua_Integer)ev.position;
    if (!(li->raw == 2 ? push_event_lazy(L, &ev, &r, 1) : push_event(L, &ev, &r))) {
      iter_close(L);
      return raise_corrupt(L, ev.position);
    }
    er_push_cached(L, ev.type, ev.type_len, r.cache, r.t);
    if (lua_rawget(L, EACH_HANDLERS) != LUA_TFUNCTION) {
      lua_settop(L, EACH_K_JN);
      continue;
    }
    if (ctx & EACH_ANY_PARKED) {
      lua_rawgeti(L, r.t, F_STREAM);
      lua_rawget(L, EACH_EV);
      if (lua_rawget(L, EACH_PARKED) != LUA_TNIL) return each_hand_back(L, li, "parked");
      lua_pop(L, 1);
    }
    lua_pushvalue(L, EACH_K_EVENT);
    lua_pushvalue(L, EACH_EV);
    lua_rawset(L, EACH_VIEW); /* view._event = event */
    lua_pushvalue(L, EACH_VIEW);
    lua_pushvalue(L, EACH_EV);
    li->in_handler = 1;
    if (ctx & EACH_GUARDED) failed = lua_pcallk(L, 2, 0, 0, ctx, each_k) != LUA_OK;
    else lua_callk(L, 2, 0, ctx, each_k);
    nret = each_after(L, li, ctx, failed);
    if (nret >= 0) return nret;
  }
  return each_return(L, li, 2);
}

static int iter_each(lua_State *L) {
  liter *li = luaL_checkudata(L, 1, ITER_MT);
  reader r;
  lstore *ls;
  lua_KContext ctx = 0;
  luaL_checktype(L, EACH_HANDLERS, LUA_TTABLE);
  luaL_checktype(L, EACH_VIEW, LUA_TTABLE);
  if (!lua_isnoneornil(L, EACH_PARKED)) {
    luaL_checktype(L, EACH_PARKED, LUA_TTABLE);
    lua_settop(L, EACH_PARKED);
    lua_pushnil(L);
    ctx = EACH_GUARDED | (lua_next(L, EACH_PARKED) != 0 ? EACH_ANY_PARKED : 0);
  }
  lua_settop(L, EACH_PARKED);
  if (li->kind != LI_EVENTS || li->raw == 1)
    return luaL_error(L, "_each: not an iterator of event tables");
  li->in_handler = 0;
  li->each_n = li->each_last = 0;
  if (!li->it) return each_return(L, li, 2);
  ls = iter_store(L);
  if (ls->upcast_ref != LUA_NOREF) return luaL_error(L, "_each: the store has upcasters");
  get_reader(L, ls, &r); /* 5, 6 */
  lua_pushliteral(L, "_event");
  lua_pushliteral(L, "_emits");
  lua_pushliteral(L, "_jn");
  return each_loop(L, ctx);
}

/* iter:_in_handler() -> whether the last iter:_each stopped inside a
 * handler (its error is the handler's) rather than between handlers. */
static int iter_in_handler(lua_State *L) {
  liter *li = luaL_checkudata(L, 1, ITER_MT);
  lua_pushboolean(L, li->in_handler);
  return 1;
}

static const luaL_Reg iter_meta[] = {
  {"_each", iter_each},
  {"_in_handler", iter_in_handler},
  {"__gc", iter_close},
  {"__close", iter_close},
  {"__tostring", iter_tostring},
  {"close", iter_close},
  {NULL, NULL}
};

/* ---- checking and raw keys (the eventrocks command, tests) ---------------- */

#define CHECK_MAX_MESSAGES 1000

typedef struct check_ctx {
  lua_State *L;
  int messages; /* stack index of the messages table */
  int progress; /* stack index of the progress function, or 0 */
  lua_Integer n;
} check_ctx;

static void check_report(void *ud, const char *problem) {
  check_ctx *c = ud;
  if (c->n >= CHECK_MAX_MESSAGES) return;
  lua_pushstring(c->L, problem);
  lua_rawseti(c->L, c->messages, ++c->n);
}

static void check_progress(void *ud, uint64_t done, uint64_t total) {
  check_ctx *c = ud;
  if (!c->progress) return;
  lua_pushvalue(c->L, c->progress);
  lua_pushinteger(c->L, (lua_Integer)done);
  lua_pushinteger(c->L, (lua_Integer)total);
  if (lua_pcall(c->L, 2, 0, 0) != LUA_OK) lua_pop(c->L, 1); /* progress is advisory */
}

/* store:_check([progress]) -> problems (count), messages (at most
 * 1000), or nil, err */
static int l_check(lua_State *L) {
  lstore *ls = check_store(L, 1);
  check_ctx c;
  uint64_t problems = 0;
  er_error err;
  if (!lua_isnoneornil(L, 2)) luaL_checktype(L, 2, LUA_TFUNCTION);
  lua_settop(L, 2);
  lua_newtable(L);
  c.L = L;
  c.messages = 3;
  c.progress = lua_isnil(L, 2) ? 0 : 2;
  c.n = 0;
  if (er_check(ls->s, check_report, check_progress, &c, &problems, &err) != ER_OK)
    return push_error(L, &err);
  lua_pushinteger(L, (lua_Integer)problems);
  lua_insert(L, 3);
  return 2;
}

static int l_debug_put(lua_State *L) {
  lstore *ls = check_store(L, 1);
  const char *fam = luaL_checkstring(L, 2);
  size_t klen, vlen;
  const char *key = luaL_checklstring(L, 3, &klen);
  const char *val = luaL_checklstring(L, 4, &vlen);
  er_error err;
  if (er_debug_put(ls->s, fam, key, klen, val, vlen, &err) != ER_OK) return push_error(L, &err);
  lua_pushboolean(L, 1);
  return 1;
}

static int l_debug_delete(lua_State *L) {
  lstore *ls = check_store(L, 1);
  const char *fam = luaL_checkstring(L, 2);
  size_t klen;
  const char *key = luaL_checklstring(L, 3, &klen);
  er_error err;
  if (er_debug_delete(ls->s, fam, key, klen, &err) != ER_OK) return push_error(L, &err);
  lua_pushboolean(L, 1);
  return 1;
}

/* store:_debug_get(family, key) -> raw bytes, or nil when absent,
 * or nil, err (tests: corrupting a record needs its bytes) */
/* core._xxh3_32(bytes) -> the low 32 bits of XXH3-64 (the record
 * checksum), for specs that forge records */
static int l_xxh3_32(lua_State *L) {
  size_t len;
  const char *b = luaL_checklstring(L, 1, &len);
  lua_pushinteger(L, (lua_Integer)(uint32_t)XXH3_64bits(b, len));
  return 1;
}

static int l_debug_get(lua_State *L) {
  lstore *ls = check_store(L, 1);
  const char *fam = luaL_checkstring(L, 2);
  size_t klen, vlen;
  const char *key = luaL_checklstring(L, 3, &klen);
  void *val;
  er_error err;
  int rc = er_debug_get(ls->s, fam, key, klen, &val, &vlen, &err);
  if (rc == ER_NOT_FOUND) {
    lua_pushnil(L);
    return 1;
  }
  if (rc != ER_OK) return push_error(L, &err);
  lua_pushlstring(L, val, vlen);
  er_free(val);
  return 1;
}

/* store:stats() -> { events, streams, last_position, bytes_on_disk,
 * families = { [name] = { bytes, keys } } }, or nil, err */
static int store_stats(lua_State *L) {
  lstore *ls = check_store(L, 1);
  er_store_stats st;
  er_error err;
  size_t i;
  if (er_stats(ls->s, &st, &err) != ER_OK) return push_error(L, &err);
  lua_createtable(L, 0, 5);
  lua_pushinteger(L, (lua_Integer)st.events);
  lua_setfield(L, -2, "events");
  lua_pushinteger(L, (lua_Integer)st.streams);
  lua_setfield(L, -2, "streams");
  lua_pushinteger(L, (lua_Integer)st.last_position);
  lua_setfield(L, -2, "last_position");
  lua_pushinteger(L, (lua_Integer)st.bytes_on_disk);
  lua_setfield(L, -2, "bytes_on_disk");
  lua_createtable(L, 0, (int)st.n_families);
  for (i = 0; i < st.n_families; i++) {
    lua_createtable(L, 0, 2);
    lua_pushinteger(L, (lua_Integer)st.families[i].bytes);
    lua_setfield(L, -2, "bytes");
    lua_pushinteger(L, (lua_Integer)st.families[i].keys);
    lua_setfield(L, -2, "keys");
    lua_setfield(L, -2, st.families[i].name);
  }
  lua_setfield(L, -2, "families");
  return 1;
}

/* store:backup(dir) -> the last position the copy holds, or nil, err */
static int store_backup(lua_State *L) {
  lstore *ls = check_store(L, 1);
  const char *dir = check_path(L, 2);
  uint64_t position = 0;
  er_error err;
  if (er_backup(ls->s, dir, &position, &err) != ER_OK) return push_error(L, &err);
  lua_pushinteger(L, (lua_Integer)position);
  return 1;
}

/* ---- store: the data lifecycle ------------------------------------------- */

static const char *const DELETE_OPTS[] = {"expected", "hard", NULL};
static const char *const META_FIELDS[] = {"max_count", "max_age", NULL};

static int store_delete(lua_State *L) {
  lstore *ls = check_store(L, 1);
  size_t slen;
  const char *stream = check_stream(L, 2, &slen);
  int64_t expected;
  int hard = 0;
  er_error err;
  er_check_opts(L, 3, NULL, DELETE_OPTS);
  expected = check_expected(L, 3);
  if (lua_istable(L, 3)) {
    int t = lua_getfield(L, 3, "hard");
    if (t != LUA_TNIL && t != LUA_TBOOLEAN) luaL_argerror(L, 3, "hard must be a boolean");
    hard = lua_toboolean(L, -1);
    lua_pop(L, 1);
  }
  if (er_delete_stream(ls->s, stream, slen, expected, hard, &err) != ER_OK) {
    lua_pushvalue(L, 2);
    return push_append_error(L, &err);
  }
  lua_pushboolean(L, 1);
  return 1;
}

static int store_truncate(lua_State *L) {
  lstore *ls = check_store(L, 1);
  size_t slen;
  const char *stream = check_stream(L, 2, &slen);
  int ok;
  lua_Integer before = lua_tointegerx(L, 3, &ok);
  er_error err;
  if (!ok || before < 1)
    luaL_argerror(L, 3, "the version to truncate before must be an integer >= 1");
  if (er_truncate(ls->s, stream, slen, (uint64_t)before, &err) != ER_OK) {
    /* a version past the stream's is a bad argument, not a failure */
    if (err.code == ER_INVALID && !er_is_read_only(ls->s)) luaL_argerror(L, 3, err.message);
    return push_error(L, &err);
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* A limit of set_stream_meta: nil (none) or an integer >= 1. */
static uint64_t meta_limit(lua_State *L, const char *field) {
  int ok;
  lua_Integer v;
  uint64_t r = 0;
  if (lua_getfield(L, 3, field) != LUA_TNIL) {
    v = lua_tointegerx(L, -1, &ok);
    if (!ok || v < 1 || lua_type(L, -1) != LUA_TNUMBER)
      luaL_argerror(L, 3, lua_pushfstring(L, "%s must be nil or an integer >= 1", field));
    r = (uint64_t)v;
  }
  lua_pop(L, 1);
  return r;
}

static int store_set_stream_meta(lua_State *L) {
  lstore *ls = check_store(L, 1);
  size_t slen;
  const char *stream = check_stream(L, 2, &slen);
  er_stream_meta meta;
  er_error err;
  luaL_checktype(L, 3, LUA_TTABLE);
  er_check_opts(L, 3, NULL, META_FIELDS);
  meta.max_count = meta_limit(L, "max_count");
  meta.max_age = meta_limit(L, "max_age");
  if (meta.max_age > ER_MAX_AGE_LIMIT)
    luaL_argerror(L, 3, lua_pushfstring(L, "max_age is limited to %I seconds",
                                        (lua_Integer)ER_MAX_AGE_LIMIT));
  if (er_set_stream_meta(ls->s, stream, slen, &meta, &err) != ER_OK)
    return push_error(L, &err);
  lua_pushboolean(L, 1);
  return 1;
}

static int store_stream_meta(lua_State *L) {
  lstore *ls = check_store(L, 1);
  size_t slen;
  const char *stream = check_stream(L, 2, &slen);
  er_stream_meta meta;
  er_error err;
  if (er_get_stream_meta(ls->s, stream, slen, &meta, &err) != ER_OK)
    return push_error(L, &err);
  lua_createtable(L, 0, 2);
  if (meta.max_count) {
    lua_pushinteger(L, (lua_Integer)meta.max_count);
    lua_setfield(L, -2, "max_count");
  }
  if (meta.max_age) {
    lua_pushinteger(L, (lua_Integer)meta.max_age);
    lua_setfield(L, -2, "max_age");
  }
  return 1;
}

/* store:_removed(from, to): whether positions from..to are all removed
 * (holes): the relay and tail --follow step over them. */
static int l_removed(lua_State *L) {
  lstore *ls = check_store(L, 1);
  lua_Integer from = luaL_checkinteger(L, 2), to = luaL_checkinteger(L, 3);
  int removed = 0;
  er_error err;
  if (from < 1 || to < 0) luaL_argerror(L, 2, "positions must be >= 1");
  if (er_removed_range(ls->s, (uint64_t)from, (uint64_t)to, &removed, &err) != ER_OK)
    return push_error(L, &err);
  lua_pushboolean(L, removed);
  return 1;
}

static int store_compact(lua_State *L) {
  lstore *ls = check_store(L, 1);
  uint64_t removed = 0;
  er_error err;
  if (er_compact(ls->s, &removed, &err) != ER_OK) return push_error(L, &err);
  lua_pushinteger(L, (lua_Integer)removed);
  return 1;
}

/* store:forget(subject) -> true when a key was destroyed, false when the
 * subject had none; then er.open's on_forget(subject), if given. */
static int store_forget(lua_State *L) {
  lstore *ls = check_store(L, 1);
  size_t len;
  const char *subject = luaL_checklstring(L, 2, &len);
  int forgotten = 0, rc;
  er_error err;
  luaL_argcheck(L, len > 0 && len <= ER_MAX_SUBJECT_LEN && !memchr(subject, 0, len), 2,
                "subject must be 1 to 1024 bytes without NUL");
  if (!er_has_key(ls->s))
    return luaL_error(L, "forget needs a store opened with a key");
  rc = er_forget(ls->s, subject, len, &forgotten, &err);
  if (rc != ER_OK) return push_error(L, &err);
  if (ls->forget_ref != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, ls->forget_ref);
    lua_pushvalue(L, 2);
    lua_call(L, 1, 0);
  }
  lua_pushboolean(L, forgotten);
  return 1;
}

/* store:_has_key() -> whether the store was opened with a key */
static int l_has_key(lua_State *L) {
  lstore *ls = check_store(L, 1);
  lua_pushboolean(L, er_has_key(ls->s));
  return 1;
}

/* store:_seal(subject, ad, bytes) -> sealed bytes, or nil when the subject
 * has no key; store:_unseal(subject, ad, sealed) -> bytes, or nil when the
 * subject was forgotten (raises on bytes that do not open). */
static int seal_kind(lua_State *L, int open) {
  lstore *ls = check_store(L, 1);
  size_t slen, alen, len, olen;
  const char *subject = luaL_checklstring(L, 2, &slen);
  const char *ad = luaL_checklstring(L, 3, &alen);
  const char *bytes = luaL_checklstring(L, 4, &len);
  void **box;
  er_error err;
  int rc;
  box = lua_newuserdatauv(L, sizeof *box, 0);
  *box = NULL;
  luaL_setmetatable(L, MEM_MT);
  rc = open ? er_unseal(ls->s, subject, slen, ad, alen, bytes, len, box, &olen, &err)
            : er_seal(ls->s, subject, slen, ad, alen, bytes, len, box, &olen, &err);
  if (rc == ER_NOT_FOUND) {
    lua_pushnil(L);
    return 1;
  }
  if (rc != ER_OK) return raise_error(L, &err);
  lua_pushlstring(L, *box, olen);
  if (open) sodium_memzero(*box, olen);
  er_free(*box);
  *box = NULL;
  return 1;
}
static int l_seal(lua_State *L) { return seal_kind(L, 0); }

/* store:_lazy_counts() -> how many lazy events the reader of this store's
 * class has made, and how many of them were decoded on access (running
 * totals, shared by the stores of the class: callers take differences). */
static int store_lazy_counts(lua_State *L) {
  lstore *ls = check_store(L, 1);
  reader r;
  get_reader(L, ls, &r);
  lua_pushinteger(L, ((reader_ud *)r.cache)->lazy_made);
  lua_pushinteger(L, ((reader_ud *)r.cache)->lazy_read);
  return 2;
}
static int l_unseal(lua_State *L) { return seal_kind(L, 1); }

static const luaL_Reg store_methods[] = {
  {"forget", store_forget},
  {"_has_key", l_has_key},
  {"_seal", l_seal},
  {"_unseal", l_unseal},
  {"_lazy_counts", store_lazy_counts},
  {"append", store_append},
  {"version", store_version},
  {"read", store_read},
  {"_fold", store_fold},
  {"all", store_all},
  {"event", store_event},
  {"last_position", store_last_position},
  {"refresh", store_refresh},
  {"streams", store_streams},
  {"close", store_close},
  {"backup", store_backup},
  {"stats", store_stats},
  {"delete", store_delete},
  {"truncate", store_truncate},
  {"set_stream_meta", store_set_stream_meta},
  {"stream_meta", store_stream_meta},
  {"compact", store_compact},
  /* for the Lua modules, the command line and the tests */
  {"_txn", l_txn},
  {"_removed", l_removed},
  {"_set_hook", l_set_hook},
  {"_wait_idle", l_wait_idle},
  {"_check", l_check},
  {"_get", l_get},
  {"_scan", l_scan},
  {"_is_read_only", l_is_read_only},
  {"_wait", l_wait},
  {"_upcast", l_upcast},
  {"_upcasting", l_upcasting},
  {"_debug_put", l_debug_put},
  {"_debug_delete", l_debug_delete},
  {"_debug_get", l_debug_get},
  {NULL, NULL}
};

static const luaL_Reg store_meta[] = {
  {"__gc", store_close},
  {"__close", store_close},
  {"__tostring", store_tostring},
  {NULL, NULL}
};

/* ---- store classes -------------------------------------------------------- */

/* Add the methods of the class table at index cls (its field `methods`, a
 * table of functions, or nothing) to the methods table on top.  Raises on a
 * name that is not a string or that the store has already. */
static void add_class_methods(lua_State *L, int cls) {
  int methods = lua_gettop(L), extra;
  if (lua_getfield(L, cls, "methods") == LUA_TNIL) {
    lua_pop(L, 1);
    return;
  }
  if (!lua_istable(L, -1)) luaL_argerror(L, cls, "methods must be a table");
  extra = lua_gettop(L);
  lua_pushnil(L);
  while (lua_next(L, extra)) {
    if (lua_type(L, -2) != LUA_TSTRING || !lua_isfunction(L, -1))
      luaL_argerror(L, cls, "methods must map names to functions");
    lua_pushvalue(L, -2);
    if (lua_rawget(L, methods) != LUA_TNIL)
      luaL_argerror(L, cls, lua_pushfstring(L, "'%s' is a method of the store already",
                                          lua_tostring(L, -3)));
    lua_pop(L, 1);
    lua_pushvalue(L, -2);
    lua_insert(L, -2);
    lua_rawset(L, methods);
  }
  lua_pop(L, 1);
}

/* Push the event metatable of the class table at index cls (its field
 * `event`), or the plain one when cls is 0 or has none. */
static void push_event_metatable(lua_State *L, int cls) {
  if (cls && lua_getfield(L, cls, "event") != LUA_TNIL) {
    if (!lua_istable(L, -1)) luaL_argerror(L, cls, "event must be a metatable");
    return;
  }
  if (cls) lua_pop(L, 1);
  luaL_getmetatable(L, EVENT_MT);
}

/* Push the store metatable of the class table at index cls (0: the plain
 * class), made at its first use and kept as long as the class table lives.
 * As liolib's createmeta, the metamethods live in the metatable and the
 * methods in a table of their own, its __index. */
static void push_store_class(lua_State *L, int cls) {
  static const char *const class_keys[] = {"methods", "event", NULL};
  int classes, mt;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &classes_key);
  classes = lua_gettop(L);
  if (cls) lua_pushvalue(L, cls);
  else lua_pushboolean(L, 1); /* the plain class */
  if (lua_rawget(L, classes) != LUA_TNIL) {
    lua_remove(L, classes);
    return;
  }
  lua_pop(L, 1);
  if (cls) er_check_opts(L, cls, NULL, class_keys);
  lua_createtable(L, 0, 6);
  mt = lua_gettop(L);
  luaL_setfuncs(L, store_meta, 0);
  lua_pushliteral(L, STORE_MT);
  lua_setfield(L, mt, "__name");
  lua_pushboolean(L, 1);
  lua_rawsetp(L, mt, &store_tag);
  luaL_newlib(L, store_methods);
  if (cls) add_class_methods(L, cls);
  lua_setfield(L, mt, "__index");
  push_event_metatable(L, cls);
  new_reader(L, lua_gettop(L));
  lua_rawsetp(L, mt, &reader_key);
  lua_pop(L, 1); /* the event metatable */
  if (cls) lua_pushvalue(L, cls);
  else lua_pushboolean(L, 1); /* the plain class */
  lua_pushvalue(L, mt);
  lua_rawset(L, classes);
  lua_remove(L, classes);
}

static int txn_tostring(lua_State *L) {
  ltxn *lt = luaL_checkudata(L, 1, TXN_MT);
  lua_pushfstring(L, TXN_MT " (%s)", lt->t ? "open" : "finished");
  return 1;
}

static const luaL_Reg txn_meta[] = {
  {"__gc", txn_gc},
  {"__tostring", txn_tostring},
  {"__close", txn_gc},
  {"append", txn_append},
  {"put", txn_put},
  {"put_encoded", txn_put_encoded},
  {"delete", txn_delete},
  {"delete_prefix", txn_delete_prefix},
  {"commit", txn_commit},
  {"close", txn_gc},
  {NULL, NULL}
};

/* ---- write-back buffers (a projection's view) -----------------------------
 * A projection's handler reads and writes its read model through a view
 * that buffers the batch's writes in two Lua tables: `values` (key -> the
 * value a later get sees, or the `deleted` marker) and `pending` (key ->
 * true for a value encoded at flush, or the bytes, or false to delete).
 * get and put run per event; these are their common cases in C, each
 * handing every other case to the module's own function (`slow_get`,
 * `slow_put`, called as (view, key[, value])): a key written earlier in the
 * batch read back as a number, string or boolean, and such a value put.
 * While a handler that may fail without stopping the projection runs
 * (view[guarded_key] true), a put first journals what the key held, for
 * its undo: the key, its pending mark and its value appended to the array
 * `journal`, whose length is view[length_key]. */

enum { WB_VALUES = 1, WB_PENDING, WB_DELETED, WB_SLOW_GET, WB_SLOW_PUT, WB_ROOM, WB_GUARDED,
       WB_JOURNAL, WB_JN, WB_NUPVALUES = WB_JN };

static void wb_check_key(lua_State *L, const char *fname, int check_room) {
  size_t len;
  lua_Integer room;
  if (lua_type(L, 2) != LUA_TSTRING || (lua_tolstring(L, 2, &len), len == 0))
    luaL_error(L, "bad argument #1 to '%s' (key must be a non-empty string)", fname);
  room = lua_tointeger(L, lua_upvalueindex(WB_ROOM));
  if (check_room && (lua_Integer)len > room)
    luaL_error(L, "bad argument #1 to '%s' (key is %d bytes: with the projection's name the "
               "stored key would be %d bytes, over the limit of %d)", fname, (int)len,
               (int)(ER_MAX_KEY_LEN - room + (lua_Integer)len), (int)ER_MAX_KEY_LEN);
}

static int wb_slow(lua_State *L, int which, int nresults) {
  lua_pushvalue(L, lua_upvalueindex(which));
  lua_insert(L, 1);
  lua_call(L, lua_gettop(L) - 1, nresults);
  return nresults;
}

static int wb_get(lua_State *L) {
  lua_settop(L, 2);
  wb_check_key(L, "get", 0);
  lua_pushvalue(L, 2);
  switch (lua_rawget(L, lua_upvalueindex(WB_VALUES))) {
  case LUA_TNUMBER: case LUA_TSTRING: case LUA_TBOOLEAN:
    return 1;
  case LUA_TTABLE:
    if (lua_rawequal(L, -1, lua_upvalueindex(WB_DELETED))) {
      lua_pushnil(L);
      return 1;
    }
    break;
  default:
    break;
  }
  lua_settop(L, 2);
  return wb_slow(L, WB_SLOW_GET, 1);
}

static int wb_put(lua_State *L) {
  int t;
  lua_settop(L, 3);
  wb_check_key(L, "put", 1);
  t = lua_type(L, 3);
  if ((t == LUA_TNUMBER || t == LUA_TSTRING || t == LUA_TBOOLEAN) && lua_type(L, 1) == LUA_TTABLE) {
    lua_pushvalue(L, lua_upvalueindex(WB_GUARDED));
    if (lua_rawget(L, 1) != LUA_TNIL && lua_toboolean(L, -1)) {
      lua_Integer jn;
      int isnum;
      lua_pushvalue(L, lua_upvalueindex(WB_JN));
      lua_rawget(L, 1);
      jn = lua_tointegerx(L, -1, &isnum);
      if (!isnum) {
        lua_settop(L, 3);
        return wb_slow(L, WB_SLOW_PUT, 0);
      }
      lua_pushvalue(L, 2);
      lua_rawseti(L, lua_upvalueindex(WB_JOURNAL), jn + 1);
      lua_pushvalue(L, 2);
      lua_rawget(L, lua_upvalueindex(WB_PENDING));
      lua_rawseti(L, lua_upvalueindex(WB_JOURNAL), jn + 2);
      lua_pushvalue(L, 2);
      lua_rawget(L, lua_upvalueindex(WB_VALUES));
      lua_rawseti(L, lua_upvalueindex(WB_JOURNAL), jn + 3);
      lua_pushvalue(L, lua_upvalueindex(WB_JN));
      lua_pushinteger(L, jn + 3);
      lua_rawset(L, 1);
    }
    lua_settop(L, 3);
    lua_pushvalue(L, 2);
    lua_pushboolean(L, 1);
    lua_rawset(L, lua_upvalueindex(WB_PENDING));
    lua_pushvalue(L, 2);
    lua_pushvalue(L, 3);
    lua_rawset(L, lua_upvalueindex(WB_VALUES));
    return 0;
  }
  return wb_slow(L, WB_SLOW_PUT, 0);
}

/* core._write_back(values, pending, deleted, slow_get, slow_put, room,
 * guarded_key, journal, length_key) -> get, put: the common cases above
 * over these tables; `room` is the longest key a put takes. */
static int l_write_back(lua_State *L) {
  int i;
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_checktype(L, 2, LUA_TTABLE);
  luaL_checktype(L, 3, LUA_TTABLE);
  luaL_checktype(L, 4, LUA_TFUNCTION);
  luaL_checktype(L, 5, LUA_TFUNCTION);
  luaL_checkinteger(L, 6);
  luaL_checktype(L, 7, LUA_TSTRING);
  luaL_checktype(L, 8, LUA_TTABLE);
  luaL_checktype(L, 9, LUA_TSTRING);
  lua_settop(L, WB_NUPVALUES);
  for (i = 1; i <= WB_NUPVALUES; i++) lua_pushvalue(L, i);
  lua_pushcclosure(L, wb_get, WB_NUPVALUES);
  for (i = 1; i <= WB_NUPVALUES; i++) lua_pushvalue(L, i);
  lua_pushcclosure(L, wb_put, WB_NUPVALUES);
  return 2;
}

static const luaL_Reg functions[] = {
  {"open", l_open},
  {"_write_back", l_write_back},
  {"opener", l_opener},
  {"uuid", l_uuid},
  {"_xxh3_32", l_xxh3_32},
  {"category", l_category},
  {"decode", l_decode},
  {NULL, NULL}
};

int luaopen_eventrocks_core(lua_State *L);

int luaopen_eventrocks_core(lua_State *L) {
  er_buf *b;
  luaL_newlib(L, functions);
  b = lua_newuserdatauv(L, sizeof *b, 0);
  memset(b, 0, sizeof *b);
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, encode_buffer_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  lua_pushvalue(L, -1);
  lua_pushcclosure(L, l_encode, 1);
  lua_setfield(L, -3, "encode");
  lua_pushcclosure(L, l_map_encoder, 1);
  lua_setfield(L, -2, "map_encoder");
  lua_pushinteger(L, ER_MAX_KEY_LEN);
  lua_setfield(L, -2, "MAX_KEY_LEN");
  lua_pushinteger(L, ER_MAX_STREAM_LEN);
  lua_setfield(L, -2, "MAX_STREAM_LEN");
  lua_pushinteger(L, ER_MAX_TYPE_LEN);
  lua_setfield(L, -2, "MAX_TYPE_LEN");

  /* the store metatables of the classes (push_store_class), weak keys */
  lua_createtable(L, 0, 1);
  lua_createtable(L, 0, 1);
  lua_pushliteral(L, "k");
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &classes_key);

  luaL_newmetatable(L, ARENA_MT);
  lua_pushcfunction(L, arena_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);

  luaL_newmetatable(L, ITER_MT);
  luaL_setfuncs(L, iter_meta, 0);
  lua_pushvalue(L, -1);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);

  luaL_newmetatable(L, TXN_MT);
  luaL_setfuncs(L, txn_meta, 0);
  lua_pushvalue(L, -1);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);

  luaL_newmetatable(L, EVENT_MT); /* the events of the plain class */
  lua_pop(L, 1);
  er_raw_init(L);

  luaL_newmetatable(L, MEM_MT);
  lua_pushcfunction(L, mem_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);

  er_error_metatable(L);
  lua_setfield(L, -2, "error_metatable");

  lua_pushliteral(L, S_ANY);
  lua_setfield(L, -2, "ANY");
  lua_pushliteral(L, S_NO_STREAM);
  lua_setfield(L, -2, "NO_STREAM");
  lua_pushliteral(L, S_STREAM_EXISTS);
  lua_setfield(L, -2, "STREAM_EXISTS");
  lua_pushliteral(L, ER_VERSION_STRING);
  lua_setfield(L, -2, "version");
  lua_pushinteger(L, ER_FORMAT);
  lua_setfield(L, -2, "FORMAT");
  lua_pushinteger(L, ER_MAX_DEPTH);
  lua_setfield(L, -2, "MAX_DEPTH");
  return 1;
}
