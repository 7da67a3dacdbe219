/*
 * seeds.c -- writes the seed corpora of the fuzz targets (`make fuzz-seeds`):
 *
 *   build-fuzz/seeds DIR    DIR/record_decode/, DIR/msgpack_decode/,
 *                           DIR/jsonl_import/, DIR/ops/ (usually fuzz/corpus)
 *
 * The seeds are made by the code under test: records by er__record_encode,
 * MessagePack by er_encode from Lua values, JSON lines by
 * eventrocks.jsonl.encode_event, and operation sequences in the byte format
 * fuzz/ops.c reads (the helpers below mirror its reader: keep them in step).
 * Files named regress-* in the corpus are crash inputs kept by hand; this
 * program leaves them alone.
 */
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "er_value.h"
#include "internal.h"

#ifndef ER_SOURCE_DIR
#define ER_SOURCE_DIR "."
#endif

static const char *outdir;

static void put_file(const char *target, const char *name, const void *p,
                     size_t len) {
  char path[4096];
  FILE *f;
  snprintf(path, sizeof path, "%s/%s", outdir, target);
  mkdir(path, 0755);
  snprintf(path, sizeof path, "%s/%s/%s", outdir, target, name);
  f = fopen(path, "wb");
  if (!f || fwrite(p, 1, len, f) != len || fclose(f) != 0) {
    perror(path);
    exit(1);
  }
}

/* ------------------------------------------------------------------------ */
/* record_decode                                                             */

static void record(const char *name, const char *stream, const char *type,
                   const char *meta, size_t meta_len, const char *data,
                   size_t data_len, uint64_t pos, uint64_t ver, int64_t time,
                   uint32_t bsize, uint32_t bindex) {
  er_new_event e;
  uint8_t *buf;
  size_t n;
  int i;
  memset(&e, 0, sizeof e);
  for (i = 0; i < 16; i++) e.id[i] = (uint8_t)(0x01 + 17 * i);
  e.has_id = 1;
  e.type = type;
  e.type_len = strlen(type);
  e.metadata = meta;
  e.metadata_len = meta_len;
  e.data = data;
  e.data_len = data_len;
  n = er__record_size(strlen(stream), &e);
  buf = malloc(n);
  er__record_encode(buf, stream, strlen(stream), &e, pos, ver, time, bsize, bindex);
  put_file("record_decode", name, buf, n);
  free(buf);
}

/* A sealed record (personal data) under a fixed key and nonce; `key` NULL:
 * a forgotten one (no payload). */
static void sealed_record(const char *name, const char *stream, const char *subject,
                          const char *data, size_t data_len, int forgotten) {
  static const uint8_t key[32] = "fuzz-seed-key-fuzz-seed-key-0123";
  static const uint8_t key_id[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  static const uint8_t nonce[24] = "fuzz-seed-nonce-fuzz-sd";
  er_new_event e;
  uint8_t *buf;
  size_t n;
  int i;
  memset(&e, 0, sizeof e);
  for (i = 0; i < 16; i++) e.id[i] = (uint8_t)(0x02 + 13 * i);
  e.has_id = 1;
  e.type = "Registered";
  e.type_len = 10;
  e.subject = subject;
  e.subject_len = strlen(subject);
  e.forgotten = forgotten;
  if (!forgotten) {
    e.data = data;
    e.data_len = data_len;
    e.metadata = "\x80";
    e.metadata_len = 1;
  }
  n = er__record_size(strlen(stream), &e);
  buf = malloc(n);
  er__record_encode_sealed(buf, stream, strlen(stream), &e, 7, 2,
                           INT64_C(1764282000000000), 1, 0,
                           forgotten ? NULL : key, key_id, nonce);
  put_file("record_decode", name, buf, n);
  free(buf);
}

static void records(void) {
  sealed_record("record-sealed", "user-42", "user-42", "\x81\xa5" "email\xa1" "a", 9, 0);
  sealed_record("record-forgotten", "user-43", "person-43", NULL, 0, 1);
  static const char big[] = "\x85\xa4name\xa6Kettle\xa5price\xcd\x09\xc4\xa4tags"
                            "\x92\xa3new\xa4sale\xa3ok?\xc3\xa5ratio\xcb\x3f\xf8\x00"
                            "\x00\x00\x00\x00\x00";
  record("record-min", "s", "T", NULL, 0, NULL, 0, 1, 1, 1, 1, 0);
  record("record-typical", "order-7", "Placed", "\x81\xa4user\xa5" "alice", 12,
         "\x82\xa1" "a\x01\xa1" "b\x92\xc3\xc0", 9, 42, 3, INT64_C(1764282000000000), 1, 0);
  record("record-batch", "product-kettle-1", "PriceIncreased", NULL, 0, "\x81\xa5" "delta\xcd\x01\x2c",
         10, UINT64_C(1) << 40, UINT64_C(1) << 33, -5, 3, 2);
  record("record-big", "a-\xff\xfe", "Binary\x01", big, sizeof big - 1, big, sizeof big - 1,
         7, 7, INT64_MAX, 100000, 99999);
}

/* ------------------------------------------------------------------------ */
/* msgpack_decode and jsonl_import: from Lua values                          */

static er_buf buf;

static int l_put_msgpack(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  lua_settop(L, 2);
  buf.len = 0;
  er_encode(L, 2, &buf, 2, "value");
  put_file("msgpack_decode", name, buf.p, buf.len);
  return 0;
}

static int l_put_line(lua_State *L) {
  size_t len;
  const char *name = luaL_checkstring(L, 1);
  const char *line = luaL_checklstring(L, 2, &len);
  put_file("jsonl_import", name, line, len);
  return 0;
}

static const char lua_seeds[] =
    "local put_msgpack, put_line = ...\n"
    "local jsonl = require 'eventrocks.jsonl'\n"
    "local bytes = {} for i = 0, 255 do bytes[#bytes + 1] = string.char(i) end\n"
    "bytes = table.concat(bytes)\n"
    "local function nest(n) local v = { 'leaf' } for _ = 2, n do v = { v } end return v end\n"
    "put_msgpack('mp-scalars', { 0, 1, -1, 127, 128, -33, 65536, math.maxinteger, math.mininteger,\n"
    "  1.5, -0.0, 0 / 0, math.huge, 2.0 ^ 63, 5e-324, true, false, '', 'text' })\n"
    "put_msgpack('mp-strings', { utf = 'h\\195\\169llo \\226\\156\\147', bin = '\\255\\254\\0', all = bytes:sub(1, 64) })\n"
    "put_msgpack('mp-map-keys', { [1] = 'a', [3] = 'c', [1.5] = 'f', [true] = 'y', [false] = 'n',\n"
    "  [-7] = 'neg', ['$x'] = { ['$y'] = 1 }, n = 2 })\n"
    "put_msgpack('mp-nested', { a = { b = { c = { 1, 2, { d = true, e = { -0.0, 1.0, 1 } } } } }, list = { {}, { {} } } })\n"
    "put_msgpack('mp-deep', nest(30))\n"
    "local arr = {} for i = 1, 40 do arr[i] = i % 3 == 0 and i + 0.5 or i end\n"
    "put_msgpack('mp-array16', arr)\n"
    "local id = '0186c0de-0000-7000-8000-00000000000'\n"
    "local function line(name, ev) put_line(name, jsonl.encode_event(ev) .. '\\n') end\n"
    "line('line-typical', { position = 1, stream = 'product-42', version = 1, type = 'ProductCreated',\n"
    "  time = 1764282000000000, id = id .. '1', data = { name = 'Kettle', price = 2500 }, metadata = { user = 'alice' } })\n"
    "line('line-numbers', { position = 2, stream = 'values-1', version = 2, type = 'Numbers', time = 1764282000000001,\n"
    "  id = id .. '2', data = { int = 1, float = 1.0, negzero = -0.0, third = 0.1 + 0.2, nan = 0 / 0, inf = math.huge,\n"
    "  ninf = -math.huge, max = math.maxinteger, big = 2.0 ^ 63, e = 1e100 }, metadata = {} })\n"
    "line('line-strings', { position = 3, stream = 'bin-\\255\\254', version = 1, type = 'T\\128\\1x', time = 1,\n"
    "  id = id .. '3', data = { bytes = bytes:sub(1, 40), utf = 'h\\195\\169llo', invalid = '\\255\\254', tag = '$float' },\n"
    "  metadata = { ['$meta'] = true } })\n"
    "line('line-maps', { position = 4, stream = 'values-2', version = 3, type = 'Keys', time = 1764282000000003,\n"
    "  id = id .. '4', data = { [1] = 'one', [2] = 'two', [3.5] = 'x', [true] = 'yes', [-1] = 'm', ['$map'] = {},\n"
    "  holes = { [1] = 1, [3] = 3 }, n = { n = 1 }, arr = { 1, 2.0, 'x', false, { 0 / 0 } } },\n"
    "  metadata = { [7] = 7.0, nested = { { {} } } } })\n"
    "line('line-scalar', { stream = 'c', version = 9, type = 'Scalar', time = 1764282000000004, id = id .. '5', data = 42 })\n"
    "line('line-nothing', { position = 6, stream = 'c', version = 10, type = 'Nothing', time = 1764282000000004,\n"
    "  id = id .. '6', metadata = {} })\n";

static void lua_values(void) {
  lua_State *L = luaL_newstate();
  const char *src = getenv("EVENTROCKS_SRC");
  if (!src || !*src) src = ER_SOURCE_DIR;
  luaL_openlibs(L);
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "path");
  lua_pushfstring(L, "%s/lua/?.lua;%s/lua/?/init.lua;%s", src, src, lua_tostring(L, -1));
  lua_setfield(L, -3, "path");
  lua_pop(L, 2);
  if (luaL_loadstring(L, lua_seeds) != LUA_OK) goto fail;
  lua_pushcfunction(L, l_put_msgpack);
  lua_pushcfunction(L, l_put_line);
  if (lua_pcall(L, 2, 0, 0) != LUA_OK) goto fail;
  er_buf_free(L, &buf);
  lua_close(L);
  return;
fail:
  fprintf(stderr, "seeds: %s\n", lua_tostring(L, -1));
  exit(1);
}

/* ------------------------------------------------------------------------ */
/* ops: the byte format of fuzz/ops.c's run()                                */

typedef struct out {
  uint8_t b[512];
  size_t n;
} out;

static void put(out *o, int v) {
  if (o->n < sizeof o->b) o->b[o->n++] = (uint8_t)v;
}

/* expected versions, as pick_expected reads them */
enum { X_ANY = 0, X_NO_STREAM = 2, X_EXISTS = 3, X_CUR = 4, X_CUR_PLUS_1 = 6 };

/* One event of pick_batch: id mode (0 generated, 6 fresh, 8 a stored
 * event's (extra: which), 9 one of this batch's (extra: which)), type,
 * data, one byte of metadata when `meta`. */
static void ev(out *o, int mode, int extra, int type, const char *data, int meta) {
  size_t i, n = strlen(data);
  put(o, mode);
  put(o, type);
  put(o, (int)n);
  for (i = 0; i < n; i++) put(o, data[i]);
  put(o, meta ? 1 : 0);
  if (meta) put(o, 'm');
  if (mode == 8 || mode == 9) put(o, extra);
}

/* The header of an append (op 0) of n (1..4) events to stream s; the
 * events follow, then the expectation (exp()). */
static void append(out *o, int s, int n) {
  put(o, 0);
  put(o, s);
  put(o, 1);
  put(o, n >= 3 ? 2 : n - 1);
  put(o, n == 4 ? 0 : 1);
  if (n == 4) put(o, 1);
}

static void exp_(out *o, int kind) { put(o, kind); }

/* A retry (op 4) of stored append a: how 0 exact, 2 cut short, 3
 * reordered, 4 to another stream, 5 one more event; with the version
 * before that append as expectation. */
static void retry(out *o, int a, int how) {
  put(o, 4);
  put(o, a);
  put(o, how);
  if (how == 4) put(o, 0);
  put(o, 0); /* expected = the version before */
}

static void read_stream(out *o, int s, int from, int count, int backward) {
  put(o, 7); put(o, s); put(o, from); put(o, count); put(o, backward);
}

static void read_all(out *o, int from, int count, int filter) {
  put(o, 9); put(o, from); put(o, count); put(o, filter);
}

static void ops_file(const char *name, const out *o) { put_file("ops", name, o->b, o->n); }

static void ops(void) {
  out o;

  /* appends, a conflict, reads, a reopen */
  memset(&o, 0, sizeof o);
  append(&o, 0, 2); ev(&o, 0, 0, 0, "ab", 1); ev(&o, 0, 0, 1, "", 0); exp_(&o, X_NO_STREAM);
  append(&o, 0, 3); ev(&o, 0, 0, 1, "c", 0); ev(&o, 0, 0, 1, "", 1); ev(&o, 0, 0, 2, "xyz", 0);
  exp_(&o, X_CUR);
  append(&o, 0, 1); ev(&o, 0, 0, 2, "late", 0); exp_(&o, X_NO_STREAM);  /* conflict */
  append(&o, 2, 1); ev(&o, 0, 0, 0, "", 0); exp_(&o, X_ANY);
  read_stream(&o, 0, 0, 4, 0);
  read_stream(&o, 0, 0, 2, 1);
  read_all(&o, 0, 4, 0);
  put(&o, 12); put(&o, 1); /* reopen, an iterator left open */
  append(&o, 0, 1); ev(&o, 0, 0, 0, "again", 0); exp_(&o, X_CUR);
  put(&o, 11); put(&o, 0); /* list all streams */
  ops_file("ops-basic", &o);

  /* given ids: retries exact and altered, a stored id reused */
  memset(&o, 0, sizeof o);
  append(&o, 1, 2); ev(&o, 6, 0, 0, "1", 0); ev(&o, 6, 0, 0, "2", 0); exp_(&o, X_NO_STREAM);
  append(&o, 1, 1); ev(&o, 0, 0, 1, "3", 0); exp_(&o, X_CUR);
  retry(&o, 0, 0);
  retry(&o, 0, 2);
  retry(&o, 0, 3);
  retry(&o, 0, 4);
  retry(&o, 0, 5);
  append(&o, 3, 2); ev(&o, 8, 1, 0, "", 0); ev(&o, 6, 0, 0, "", 0); exp_(&o, X_ANY);
  append(&o, 3, 2); ev(&o, 6, 0, 0, "", 0); ev(&o, 9, 0, 0, "", 0); exp_(&o, X_ANY);
  read_all(&o, 0, 4, 0);
  ops_file("ops-ids", &o);

  /* expectations on new and existing streams, invalid ones, no events */
  memset(&o, 0, sizeof o);
  append(&o, 3, 1); ev(&o, 0, 0, 0, "", 0); exp_(&o, X_EXISTS);
  append(&o, 3, 1); ev(&o, 0, 0, 0, "", 0); exp_(&o, X_CUR_PLUS_1);
  append(&o, 3, 1); ev(&o, 0, 0, 0, "", 0); exp_(&o, X_NO_STREAM);
  append(&o, 3, 1); ev(&o, 0, 0, 0, "", 0); exp_(&o, X_EXISTS);
  append(&o, 3, 1); ev(&o, 0, 0, 0, "", 0); put(&o, 8); put(&o, 1); /* invalid */
  put(&o, 0); put(&o, 3); put(&o, 0); exp_(&o, X_ANY);                /* no events */
  put(&o, 0); put(&o, 15); put(&o, 1); put(&o, 0); put(&o, 1);         /* bad stream */
  ev(&o, 0, 0, 0, "", 0); exp_(&o, X_ANY);
  put(&o, 13); /* a second writable open */
  put(&o, 10); put(&o, 1);
  ops_file("ops-expected", &o);

  /* transactions: two appends to one stream, a key-value put; a given
   * time in the future, then the store's clock */
  memset(&o, 0, sizeof o);
  put(&o, 6); put(&o, 1);                                  /* 2 appends */
  put(&o, 1); put(&o, 2); put(&o, 1); ev(&o, 0, 0, 0, "t1", 0); ev(&o, 6, 0, 1, "t2", 0);
  exp_(&o, X_NO_STREAM); put(&o, 0);                        /* now */
  put(&o, 1); put(&o, 2); put(&o, 0); ev(&o, 0, 0, 2, "t3", 1);
  exp_(&o, X_ANY); put(&o, 5);                              /* 2096 */
  put(&o, 1); put(&o, 0); put(&o, 3); put(&o, 'k'); put(&o, 'v'); put(&o, '1');
  append(&o, 2, 1); ev(&o, 0, 0, 0, "after", 0); exp_(&o, X_CUR);
  put(&o, 6); put(&o, 0);                                  /* 1 append, failing */
  put(&o, 1); put(&o, 2); put(&o, 0); ev(&o, 0, 0, 0, "no", 0); exp_(&o, X_NO_STREAM);
  put(&o, 4);                                               /* 1970 */
  put(&o, 1); put(&o, 1); put(&o, 2); put(&o, 'n'); put(&o, 'o'); /* a put, lost */
  put(&o, 12); put(&o, 0); /* reopen */
  append(&o, 2, 1); ev(&o, 0, 0, 0, "clock", 0); exp_(&o, X_ANY);
  ops_file("ops-txn", &o);

  /* every stream, then reads with filters and prefixes */
  memset(&o, 0, sizeof o);
  {
    int s;
    for (s = 0; s < 5; s++) {
      append(&o, s, 2); ev(&o, 0, 0, s % 3, "p", 0); ev(&o, 0, 0, (s + 1) % 3, "q", 1);
      exp_(&o, X_ANY);
    }
  }
  read_all(&o, 2, 4, 1); read_all(&o, 0, 4, 2); read_all(&o, 0, 2, 3); read_all(&o, 3, 4, 4);
  read_all(&o, 0, 4, 5);
  read_stream(&o, 1, 5, 4, 1); read_stream(&o, 4, 2, 1, 0);
  put(&o, 11); put(&o, 2); put(&o, 11); put(&o, 4); put(&o, 11); put(&o, 5);
  put(&o, 10); put(&o, 7); put(&o, 10); put(&o, 0);
  ops_file("ops-reads", &o);

  /* the lifecycle: a truncation, a soft delete and a restart, a max_count,
   * a hard delete and an append refused after it, reads, a compaction, a
   * retry of removed events (their ids are free again), a reopen */
  memset(&o, 0, sizeof o);
  append(&o, 0, 3); ev(&o, 6, 0, 0, "a", 0); ev(&o, 6, 0, 1, "b", 0); ev(&o, 0, 0, 2, "c", 1);
  exp_(&o, X_NO_STREAM);
  append(&o, 1, 2); ev(&o, 0, 0, 0, "d", 0); ev(&o, 0, 0, 1, "e", 0); exp_(&o, X_ANY);
  append(&o, 2, 3); ev(&o, 0, 0, 0, "f", 0); ev(&o, 0, 0, 1, "g", 0); ev(&o, 0, 0, 2, "h", 0);
  exp_(&o, X_ANY);
  append(&o, 0, 2); ev(&o, 0, 0, 0, "i", 0); ev(&o, 0, 0, 1, "j", 0); exp_(&o, X_CUR);
  put(&o, 16); put(&o, 2); put(&o, 0); put(&o, 3);          /* truncate stream 0 before 3 */
  put(&o, 16); put(&o, 0); put(&o, 1); exp_(&o, X_CUR);     /* soft delete of stream 1 */
  append(&o, 1, 1); ev(&o, 0, 0, 0, "k", 0); exp_(&o, X_ANY); /* restarts it */
  put(&o, 16); put(&o, 3); put(&o, 2); put(&o, 2);          /* max_count 2 on stream 2 */
  put(&o, 16); put(&o, 1); put(&o, 0); exp_(&o, X_ANY);     /* hard delete of stream 0 */
  append(&o, 0, 1); ev(&o, 0, 0, 0, "no", 0); exp_(&o, X_ANY); /* stream_deleted */
  read_stream(&o, 0, 0, 4, 0); read_stream(&o, 1, 0, 4, 0); read_stream(&o, 2, 0, 4, 1);
  read_all(&o, 0, 4, 0); put(&o, 10); put(&o, 1); put(&o, 11); put(&o, 0);
  put(&o, 19);                                              /* compact */
  read_all(&o, 0, 4, 0);
  append(&o, 3, 2); ev(&o, 8, 0, 0, "", 0); ev(&o, 8, 1, 0, "", 0); exp_(&o, X_ANY); /* freed ids */
  put(&o, 12); put(&o, 0);                                  /* reopen */
  read_all(&o, 0, 4, 0); read_stream(&o, 2, 0, 4, 0);
  ops_file("ops-lifecycle", &o);
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: seeds DIR\n");
    return 2;
  }
  outdir = argv[1];
  mkdir(outdir, 0755);
  records();
  lua_values();
  ops();
  return 0;
}
