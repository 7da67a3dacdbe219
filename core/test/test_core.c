/*
 * test_core.c -- cmocka tests of the eventrocks C core (single thread).
 *
 * The header core/include/eventrocks.h is the specification these tests
 * check: opening and closing, the on-disk format marker, appends and their
 * expected-version checks, idempotent retries, the readers, iterators that
 * outlive their store, event ids and code names.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <rocksdb/c.h>

#include <sys/wait.h>

#define TU_STORE_FIXTURE /* fx, fx_setup, fx_teardown */
#include "test_util.h"

/* ------------------------------------------------------------------------ */
/* Fixtures and helpers                                                      */

/* The fixture without a store: a fresh empty directory (f->s stays NULL;
 * fx_teardown closes NULL fine). */
static int fx_setup_dir(void **state) {
  fx *f = calloc(1, sizeof *f);
  assert_non_null(f);
  f->dir = tu_mkdtemp();
  *state = f;
  return 0;
}


/* Append one event of `type` with string `data` to `stream`. */
static int append1(er_store *s, const char *stream, int64_t expected,
                   const char *type, const char *data, er_appended *res,
                   er_error *err) {
  er_new_event e;
  tu_event(&e, type, data, data ? strlen(data) : 0);
  return er_append(s, stream, strlen(stream), expected, &e, 1, res, err);
}



/* An event read back, with its own copy of the bytes. */
typedef struct evc {
  er_event e;
  char *buf;
} evc;

static void evc_copy(evc *c, const er_event *ev) {
  size_t n = ev->stream_len + ev->type_len + ev->metadata_len + ev->data_len;
  char *p = malloc(n + 1);
  assert_non_null(p);
  c->e = *ev;
  c->buf = p;
  memcpy(p, ev->stream, ev->stream_len);
  c->e.stream = p;
  p += ev->stream_len;
  memcpy(p, ev->type, ev->type_len);
  c->e.type = p;
  p += ev->type_len;
  if (ev->metadata_len)
    memcpy(p, ev->metadata, ev->metadata_len);
  c->e.metadata = p;
  p += ev->metadata_len;
  if (ev->data_len)
    memcpy(p, ev->data, ev->data_len);
  c->e.data = p;
}

static void evc_free(evc *c, size_t n) {
  for (size_t i = 0; i < n; i++)
    free(c[i].buf);
}

/* Read everything `it` returns into `out` (at most `max`), free `it`, and
 * assert that the iteration ended with ER_NOT_FOUND. */
static size_t drain(er_iter *it, evc *out, size_t max) {
  size_t n = 0;
  er_event ev;
  er_error err = fresh_err();
  int rc;
  while ((rc = er_iter_next(it, &ev, &err)) == ER_OK) {
    assert_true(n < max);
    evc_copy(&out[n++], &ev);
  }
  if (rc != ER_NOT_FOUND)
    print_error("er_iter_next: %d %s\n", rc, err.message);
  assert_int_equal(rc, ER_NOT_FOUND);
  er_iter_free(it);
  return n;
}

static size_t read_stream(er_store *s, const char *stream, uint64_t from,
                          uint64_t count, int backward, evc *out,
                          size_t max) {
  er_iter *it = NULL;
  er_error err = fresh_err();
  int rc = er_read_stream(s, stream, strlen(stream), from, count, backward,
                          &it, &err);
  if (rc != ER_OK)
    print_error("er_read_stream(%s): %d %s\n", stream, rc, err.message);
  assert_int_equal(rc, ER_OK);
  assert_non_null(it);
  return drain(it, out, max);
}

static size_t read_all(er_store *s, uint64_t from, uint64_t count,
                       const er_filter *flt, evc *out, size_t max) {
  er_iter *it = NULL;
  er_error err = fresh_err();
  int rc = er_read_all(s, from, count, flt, &it, &err);
  if (rc != ER_OK)
    print_error("er_read_all: %d %s\n", rc, err.message);
  assert_int_equal(rc, ER_OK);
  assert_non_null(it);
  return drain(it, out, max);
}

static int ev_stream_is(const er_event *e, const char *stream) {
  return e->stream_len == strlen(stream) &&
         memcmp(e->stream, stream, e->stream_len) == 0;
}

static int ev_type_is(const er_event *e, const char *type) {
  return e->type_len == strlen(type) &&
         memcmp(e->type, type, e->type_len) == 0;
}

static int ev_data_is(const er_event *e, const char *data) {
  return e->data_len == strlen(data) &&
         memcmp(e->data, data, e->data_len) == 0;
}



/* ------------------------------------------------------------------------ */
/* Library                                                                   */

static void test_code_names(void **state) {
  (void)state;
  static const struct {
    int code;
    const char *name;
  } names[] = {
      {ER_OK, "ok"},
      {ER_WRONG_EXPECTED_VERSION, "wrong_expected_version"},
      {ER_DUPLICATE_EVENT, "duplicate_event"},
      {ER_STREAM_DELETED, "stream_deleted"},
      {ER_LOCKED, "locked"},
      {ER_NOT_FOUND, "not_found"},
      {ER_IO, "io"},
      {ER_CORRUPTION, "corruption"},
      {ER_INVALID, "invalid"},
      {ER_NOMEM, "nomem"},
  };
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    const char *n = er_code_name(names[i].code);
    assert_non_null(n);
    assert_string_equal(n, names[i].name);
  }
  /* codes are the documented numbers */
  assert_int_equal(ER_OK, 0);
  assert_int_equal(ER_NOMEM, 9);
}

/* The category rule: the bytes before the first '-', the whole id
 * without one. */
static void test_category(void **state) {
  (void)state;
  static const struct {
    const char *stream;
    size_t len, want;
  } rows[] = {
      {L("order-1"), 5}, {L("order"), 5},     {L("order-x-y"), 5},
      {L("-1"), 0},      {L("-"), 0},         {L("a-"), 1},
      {"a-b", 1, 1},     {L("\xc3\xa9-1"), 2}, {L("a\0b-c"), 3},
      {"", 0, 0},
  };
  for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
    assert_int_equal(er_category(rows[i].stream, rows[i].len), rows[i].want);
  assert_int_equal(er_category(NULL, 0), 0);
}

static void test_options_init(void **state) {
  (void)state;
  er_options o;
  memset(&o, 0xab, sizeof o);
  er_options_init(&o);
  assert_int_equal(o.create, 1);
  assert_int_equal(o.read_only, 0);
  assert_int_equal(o.sync, 0);
  assert_int_equal(o.max_event_size, ER_DEFAULT_MAX_EVENT_SIZE);
  assert_int_equal(ER_DEFAULT_MAX_EVENT_SIZE, 16u << 20);
}

static void test_free_null(void **state) {
  (void)state;
  er_free(NULL);
  er_iter_free(NULL);
  er_close(NULL);
}

static void test_uuid_format_parse(void **state) {
  (void)state;
  const uint8_t id[16] = {0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77,
                          0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff};
  char text[37];
  memset(text, 'x', sizeof text);
  er_uuid_format(id, text);
  assert_string_equal(text, "00112233-4455-6677-8899-aabbccddeeff");
  assert_int_equal(text[36], '\0');

  uint8_t back[16];
  memset(back, 0, sizeof back);
  assert_int_equal(er_uuid_parse(text, 36, back), ER_OK);
  assert_memory_equal(back, id, 16);

  memset(back, 0, sizeof back);
  assert_int_equal(
      er_uuid_parse("00112233-4455-6677-8899-AABBCCDDEEFF", 36, back), ER_OK);
  assert_memory_equal(back, id, 16);
  memset(back, 0, sizeof back);
  assert_int_equal(
      er_uuid_parse("00112233-4455-6677-8899-AaBbCcDdEeFf", 36, back), ER_OK);
  assert_memory_equal(back, id, 16);

  /* only `len` bytes are read: text need not be NUL-terminated */
  memset(back, 0, sizeof back);
  assert_int_equal(
      er_uuid_parse("00112233-4455-6677-8899-aabbccddeeffTRAILING", 36, back),
      ER_OK);
  assert_memory_equal(back, id, 16);

  /* round trip of random ids */
  for (int i = 0; i < 100; i++) {
    uint8_t u[16], v[16];
    assert_int_equal(er_uuid7(u), ER_OK);
    er_uuid_format(u, text);
    assert_int_equal(strlen(text), 36);
    for (int k = 0; k < 36; k++) {
      if (k == 8 || k == 13 || k == 18 || k == 23)
        assert_int_equal(text[k], '-');
      else
        assert_non_null(strchr("0123456789abcdef", text[k]));
    }
    assert_int_equal(text[14], '7'); /* version nibble */
    assert_int_equal(er_uuid_parse(text, 36, v), ER_OK);
    assert_memory_equal(u, v, 16);
  }
}

static void test_uuid_parse_invalid(void **state) {
  (void)state;
  static const char *bad[] = {
      "",
      "00112233-4455-6677-8899-aabbccddeef",   /* 35 */
      "00112233-4455-6677-8899-aabbccddeeff0", /* 37 */
      "00112233-4455-6677-8899-aabbccddeefg",  /* non-hex */
      "0011223z-4455-6677-8899-aabbccddeeff",  /* non-hex */
      "001122334-455-6677-8899-aabbccddeeff",  /* dash moved */
      "00112233-44556-677-8899-aabbccddeeff",  /* dash moved */
      "00112233-4455-66778-899-aabbccddeeff",  /* dash moved */
      "00112233-4455-6677-88990aabbccddeeff",  /* dash replaced */
      "00112233044550667708899aaabbccddeeff",  /* no dashes, 36 hex */
      "00112233 4455 6677 8899 aabbccddeeff",  /* spaces */
      "{0112233-4455-6677-8899-aabbccddeeff",  /* brace */
      "+0112233-4455-6677-8899-aabbccddeeff",  /* sign */
      "00112233-4455-6677-8899-aabbccddee\xff\xff", /* high bytes */
      "------------------------------------",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    uint8_t out[16];
    int rc = er_uuid_parse(bad[i], strlen(bad[i]), out);
    if (rc != ER_INVALID)
      print_error("er_uuid_parse accepted \"%s\"\n", bad[i]);
    assert_int_equal(rc, ER_INVALID);
  }
  /* an embedded NUL within the 36 bytes */
  uint8_t out[16];
  assert_int_equal(
      er_uuid_parse("00112233-4455-6677-8899-aabbccdd\0eff", 36, out),
      ER_INVALID);
}

static void test_uuid7(void **state) {
  (void)state;
  enum { N = 1000 };
  static uint8_t ids[N][16];
  int64_t before = tu_now_us() / 1000;
  for (int i = 0; i < N; i++)
    assert_int_equal(er_uuid7(ids[i]), ER_OK);
  int64_t after = tu_now_us() / 1000;
  for (int i = 0; i < N; i++) {
    assert_true(is_uuid7(ids[i]));
    int64_t ms = 0;
    for (int k = 0; k < 6; k++)
      ms = (ms << 8) | ids[i][k];
    assert_true(ms >= before - 1);
    assert_true(ms <= after + 1);
    for (int j = 0; j < i; j++)
      assert_true(memcmp(ids[i], ids[j], 16) != 0);
  }
}

/* ------------------------------------------------------------------------ */
/* Opening and closing                                                        */

static void test_open_existing_empty_dir(void **state) {
  fx *f = *state;
  er_store *s = NULL;
  er_error err = fresh_err();
  assert_int_equal(er_open(f->dir, NULL, &s, &err), ER_OK);
  assert_non_null(s);
  assert_string_equal(er_path(s), f->dir);
  assert_int_equal(er_is_read_only(s), 0);
  assert_int_equal(er_last_position(s), 0);
  er_close(s);
  /* and again: the store now exists */
  s = NULL;
  assert_int_equal(er_open(f->dir, NULL, &s, &err), ER_OK);
  assert_int_equal(er_last_position(s), 0);
  er_close(s);
}

static void test_open_creates_missing_dir(void **state) {
  fx *f = *state;
  char *sub = tu_join(f->dir, "store");
  er_options o;
  er_options_init(&o);
  er_store *s = NULL;
  er_error err = fresh_err();
  assert_int_equal(er_open(sub, &o, &s, &err), ER_OK);
  struct stat st;
  assert_int_equal(stat(sub, &st), 0);
  assert_true(S_ISDIR(st.st_mode));
  assert_int_equal(st.st_mode & 07777, 0700); /* its owner's only */
  ok1(s, "a-1", "T", "x");
  er_close(s);
  free(sub);
}

static void test_open_create0_missing(void **state) {
  fx *f = *state;
  char *sub = tu_join(f->dir, "nothing");
  er_options o;
  er_options_init(&o);
  o.create = 0;
  er_store *s = NULL;
  er_error err = fresh_err();
  assert_fails(er_open(sub, &o, &s, &err), ER_NOT_FOUND, err);
  struct stat st;
  assert_int_equal(stat(sub, &st), -1); /* nothing was created */
  /* an existing but empty directory holds no store either */
  err = fresh_err();
  assert_fails(er_open(f->dir, &o, &s, &err), ER_NOT_FOUND, err);
  /* err may be NULL */
  assert_int_equal(er_open(sub, &o, &s, NULL), ER_NOT_FOUND);
  free(sub);
}

static void test_open_read_only_missing(void **state) {
  fx *f = *state;
  char *sub = tu_join(f->dir, "nothing");
  er_options o;
  er_options_init(&o);
  o.read_only = 1; /* create stays 1: read_only wins */
  er_store *s = NULL;
  er_error err = fresh_err();
  assert_fails(er_open(sub, &o, &s, &err), ER_NOT_FOUND, err);
  struct stat st;
  assert_int_equal(stat(sub, &st), -1);
  err = fresh_err();
  assert_fails(er_open(f->dir, &o, &s, &err), ER_NOT_FOUND, err);
  free(sub);
}

static void test_open_regular_file(void **state) {
  fx *f = *state;
  char *file = tu_join(f->dir, "file");
  FILE *fp = fopen(file, "w");
  assert_non_null(fp);
  fputs("not a store\n", fp);
  fclose(fp);
  er_store *s = NULL;
  er_error err = fresh_err();
  assert_fails(er_open(file, NULL, &s, &err), ER_IO, err);
  /* a path under a regular file */
  char *under = tu_join(file, "sub");
  err = fresh_err();
  int rc = er_open(under, NULL, &s, &err);
  assert_int_not_equal(rc, ER_OK);
  assert_int_equal(err.code, rc);
  free(under);
  free(file);
}

static void test_open_locked(void **state) {
  fx *f = *state;
  er_store *s2 = NULL;
  er_error err = fresh_err();
  assert_fails(er_open(f->dir, NULL, &s2, &err), ER_LOCKED, err);
  /* the first handle still works */
  er_appended r = ok1(f->s, "a-1", "T", "x");
  assert_int_equal(r.position, 1);
  /* closing releases the lock */
  er_close(f->s);
  f->s = NULL;
  f->s = tu_open(f->dir);
  assert_int_equal(er_last_position(f->s), 1);
}

static void test_open_read_only_beside_writer(void **state) {
  fx *f = *state;
  ok1(f->s, "a-1", "T", "one");
  er_store *ro = tu_open_ro(f->dir);
  er_error err = fresh_err();
  assert_int_equal(er_is_read_only(ro), 1);
  assert_int_equal(er_is_read_only(f->s), 0);
  assert_int_equal(version_of(ro, "a-1"), 1);
  assert_int_equal(er_last_position(ro), 1);

  /* appending through the read-only handle is refused */
  err = fresh_err();
  assert_fails(append1(ro, "a-1", ER_ANY, "T", "no", NULL, &err), ER_INVALID,
               err);

  /* the writer goes on; the reader keeps the store as it was when opened */
  ok1(f->s, "a-1", "T", "two");
  assert_int_equal(version_of(f->s, "a-1"), 2);
  assert_int_equal(version_of(ro, "a-1"), 1);
  evc ev[4];
  size_t n = read_stream(ro, "a-1", 0, ER_UNLIMITED, 0, ev, 4);
  assert_int_equal(n, 1);
  assert_true(ev_data_is(&ev[0].e, "one"));
  evc_free(ev, n);

  /* two read-only handles at once */
  er_store *ro2 = tu_open_ro(f->dir);
  assert_int_equal(version_of(ro2, "a-1"), 2);
  er_close(ro2);
  er_close(ro);
}

static void test_open_read_only_alone(void **state) {
  fx *f = *state;
  ok1(f->s, "a-1", "T", "one");
  ok1(f->s, "b-1", "T", "two");
  er_close(f->s);
  f->s = NULL;
  er_store *ro = tu_open_ro(f->dir);
  er_error err = fresh_err();
  assert_int_equal(er_last_position(ro), 2);
  evc ev[4];
  size_t n = read_all(ro, 0, ER_UNLIMITED, NULL, ev, 4);
  assert_int_equal(n, 2);
  assert_true(ev_stream_is(&ev[1].e, "b-1"));
  evc_free(ev, n);
  err = fresh_err();
  assert_fails(append1(ro, "c-1", ER_ANY, "T", "x", NULL, &err), ER_INVALID,
               err);
  /* a writer may open beside it */
  f->s = tu_open(f->dir);
  ok1(f->s, "c-1", "T", "three");
  er_close(ro);
}

/* Raw RocksDB access to a store directory, all column families open. */
typedef struct raw {
  rocksdb_t *db;
  rocksdb_options_t *opts;
  char **names;
  size_t n;
  rocksdb_column_family_handle_t **h;
  rocksdb_column_family_handle_t *def;
} raw;

static void raw_open(raw *r, const char *dir) {
  char *err = NULL;
  memset(r, 0, sizeof *r);
  r->opts = rocksdb_options_create();
  r->names = rocksdb_list_column_families(r->opts, dir, &r->n, &err);
  if (err)
    print_error("list_column_families: %s\n", err);
  assert_null(err);
  assert_true(r->n >= 1);
  const rocksdb_options_t **cfo = malloc(r->n * sizeof *cfo);
  r->h = calloc(r->n, sizeof *r->h);
  assert_non_null(cfo);
  assert_non_null(r->h);
  for (size_t i = 0; i < r->n; i++)
    cfo[i] = r->opts;
  r->db = rocksdb_open_column_families(r->opts, dir, (int)r->n,
                                       (const char *const *)r->names, cfo,
                                       r->h, &err);
  free(cfo);
  if (err)
    print_error("open_column_families: %s\n", err);
  assert_null(err);
  for (size_t i = 0; i < r->n; i++)
    if (strcmp(r->names[i], "default") == 0)
      r->def = r->h[i];
  assert_non_null(r->def);
}

static void raw_close(raw *r) {
  for (size_t i = 0; i < r->n; i++)
    rocksdb_column_family_handle_destroy(r->h[i]);
  rocksdb_close(r->db);
  rocksdb_list_column_families_destroy(r->names, r->n);
  rocksdb_options_destroy(r->opts);
  free(r->h);
}

static void raw_put_format(const char *dir, uint32_t fmt) {
  raw r;
  raw_open(&r, dir);
  unsigned char v[4] = {(unsigned char)(fmt & 0xff),
                        (unsigned char)((fmt >> 8) & 0xff),
                        (unsigned char)((fmt >> 16) & 0xff),
                        (unsigned char)((fmt >> 24) & 0xff)};
  rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
  char *err = NULL;
  rocksdb_put_cf(r.db, wo, r.def, "format", 6, (const char *)v, 4, &err);
  assert_null(err);
  rocksdb_writeoptions_destroy(wo);
  raw_close(&r);
}

static void test_format_marker_on_disk(void **state) {
  fx *f = *state;
  ok1(f->s, "a-1", "T", "x");
  er_close(f->s);
  f->s = NULL;
  raw r;
  raw_open(&r, f->dir);
  rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
  char *err = NULL;
  size_t len = 0;
  char *v = rocksdb_get_cf(r.db, ro, r.def, "format", 6, &len, &err);
  assert_null(err);
  assert_non_null(v);
  assert_int_equal(len, 4);
  assert_memory_equal(v, "\x01\x00\x00\x00", 4);
  rocksdb_free(v);
  rocksdb_readoptions_destroy(ro);
  raw_close(&r);
  /* rewriting the same number keeps the store usable */
  raw_put_format(f->dir, ER_FORMAT);
  f->s = tu_open(f->dir);
  assert_int_equal(version_of(f->s, "a-1"), 1);
}

static void test_format_mismatch(void **state) {
  fx *f = *state;
  ok1(f->s, "a-1", "T", "x");
  er_close(f->s);
  f->s = NULL;
  raw_put_format(f->dir, ER_FORMAT + 1);

  er_store *s = NULL;
  er_error err = fresh_err();
  assert_fails(er_open(f->dir, NULL, &s, &err), ER_INVALID, err);
  if (strcasestr(err.message, "format") == NULL)
    print_error("message without 'format': %s\n", err.message);
  assert_non_null(strcasestr(err.message, "format"));

  er_options o;
  er_options_init(&o);
  o.read_only = 1;
  err = fresh_err();
  assert_fails(er_open(f->dir, &o, &s, &err), ER_INVALID, err);
  assert_non_null(strcasestr(err.message, "format"));

  /* a failed open leaves no lock behind: fix the marker and open */
  raw_put_format(f->dir, ER_FORMAT);
  f->s = tu_open(f->dir);
  assert_int_equal(version_of(f->s, "a-1"), 1);
}

static void test_plain_rocksdb_not_store(void **state) {
  fx *f = *state;
  rocksdb_options_t *o = rocksdb_options_create();
  rocksdb_options_set_create_if_missing(o, 1);
  char *e = NULL;
  rocksdb_t *db = rocksdb_open(o, f->dir, &e);
  assert_null(e);
  rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
  rocksdb_put(db, wo, "hello", 5, "world", 5, &e);
  assert_null(e);
  rocksdb_writeoptions_destroy(wo);
  rocksdb_close(db);
  rocksdb_options_destroy(o);

  er_store *s = NULL;
  er_error err = fresh_err();
  assert_fails(er_open(f->dir, NULL, &s, &err), ER_INVALID, err);
  er_options opts;
  er_options_init(&opts);
  opts.read_only = 1;
  err = fresh_err();
  assert_fails(er_open(f->dir, &opts, &s, &err), ER_INVALID, err);
  opts.read_only = 0;
  opts.create = 0;
  err = fresh_err();
  assert_fails(er_open(f->dir, &opts, &s, &err), ER_INVALID, err);
}

/* A writer killed while RocksDB creates a new store leaves CURRENT and a
 * manifest with only the empty 'default' family: the next writable open
 * finishes the creation; a read-only one says what to do. */
static void test_interrupted_creation_finished(void **state) {
  fx *f = *state;
  rocksdb_options_t *o = rocksdb_options_create();
  rocksdb_options_set_create_if_missing(o, 1);
  char *e = NULL;
  rocksdb_t *db = rocksdb_open(o, f->dir, &e);
  assert_null(e);
  rocksdb_close(db);

  er_store *s = NULL;
  er_options opts;
  er_options_init(&opts);
  opts.read_only = 1;
  er_error err = fresh_err();
  assert_fails(er_open(f->dir, &opts, &s, &err), ER_INVALID, err);
  assert_non_null(strstr(err.message, "interrupted"));

  s = tu_open(f->dir);
  assert_int_equal(ok1(s, "a-1", "A", "1").position, 1);
  er_close(s);
  s = tu_open(f->dir);
  assert_int_equal(version_of(s, "a-1"), 1);
  er_close(s);

  /* with data in its default family it is someone else's: no family added */
  tu_rmtree(f->dir);
  db = rocksdb_open(o, f->dir, &e);
  assert_null(e);
  rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
  rocksdb_put(db, wo, "k", 1, "v", 1, &e);
  assert_null(e);
  rocksdb_writeoptions_destroy(wo);
  rocksdb_close(db);
  err = fresh_err();
  assert_fails(er_open(f->dir, NULL, &s, &err), ER_INVALID, err);
  size_t n = 0;
  char **names = rocksdb_list_column_families(o, f->dir, &n, &e);
  assert_null(e);
  assert_int_equal(n, 1);
  rocksdb_list_column_families_destroy(names, n);
  rocksdb_options_destroy(o);
}

/* ------------------------------------------------------------------------ */
/* Appending                                                                  */

static void test_append_versions_positions(void **state) {
  fx *f = *state;
  er_store *s = f->s;
  er_new_event ev[3];
  tu_event(&ev[0], "A", "1", 1);
  tu_event(&ev[1], "B", "2", 1);
  tu_event(&ev[2], "C", "3", 1);
  er_appended r;
  memset(&r, 0xee, sizeof r);
  er_error err = fresh_err();
  assert_int_equal(er_append(s, "x-1", 3, ER_ANY, ev, 3, &r, &err), ER_OK);
  assert_int_equal(r.first_version, 1);
  assert_int_equal(r.version, 3);
  assert_int_equal(r.first_position, 1);
  assert_int_equal(r.position, 3);
  assert_int_equal(r.replayed, 0);

  r = ok1(s, "y-1", "A", "4");
  assert_int_equal(r.first_version, 1);
  assert_int_equal(r.version, 1);
  assert_int_equal(r.first_position, 4);
  assert_int_equal(r.position, 4);
  assert_int_equal(r.replayed, 0);

  tu_event(&ev[0], "D", "5", 1);
  tu_event(&ev[1], "E", "6", 1);
  memset(&r, 0xee, sizeof r);
  assert_int_equal(er_append(s, "x-1", 3, 3, ev, 2, &r, &err), ER_OK);
  assert_int_equal(r.first_version, 4);
  assert_int_equal(r.version, 5);
  assert_int_equal(r.first_position, 5);
  assert_int_equal(r.position, 6);
  assert_int_equal(r.replayed, 0);

  r = ok1(s, "y-1", "A", "7");
  assert_int_equal(r.version, 2);
  assert_int_equal(r.position, 7);

  assert_int_equal(version_of(s, "x-1"), 5);
  assert_int_equal(version_of(s, "y-1"), 2);
  assert_int_equal(er_last_position(s), 7);

  /* res may be NULL */
  assert_int_equal(append1(s, "z", ER_ANY, "T", "8", NULL, NULL), ER_OK);
  assert_int_equal(er_last_position(s), 8);

  evc out[16];
  size_t n = read_all(s, 1, ER_UNLIMITED, NULL, out, 16);
  assert_int_equal(n, 8);
  static const char *streams[] = {"x-1", "x-1", "x-1", "y-1",
                                  "x-1", "x-1", "y-1", "z"};
  static const uint64_t versions[] = {1, 2, 3, 1, 4, 5, 2, 1};
  for (size_t i = 0; i < n; i++) {
    assert_int_equal(out[i].e.position, i + 1);
    assert_true(ev_stream_is(&out[i].e, streams[i]));
    assert_int_equal(out[i].e.version, versions[i]);
    char d[2] = {(char)('1' + i), 0};
    assert_true(ev_data_is(&out[i].e, d));
  }
  evc_free(out, n);
}

static void test_append_ids(void **state) {
  fx *f = *state;
  er_store *s = f->s;
  er_new_event ev[3];
  tu_event(&ev[0], "A", "1", 1);
  tu_event(&ev[1], "B", "2", 1);
  tu_event(&ev[2], "C", "3", 1);
  set_id(&ev[1], 9);
  uint8_t given[16];
  memcpy(given, ev[1].id, 16);
  int64_t before = tu_now_us() / 1000;
  er_error err = fresh_err();
  assert_int_equal(er_append(s, "x", 1, ER_ANY, ev, 3, NULL, &err), ER_OK);
  int64_t after = tu_now_us() / 1000;
  for (int i = 0; i < 3; i++)
    assert_int_equal(ev[i].has_id, 1);
  assert_memory_equal(ev[1].id, given, 16); /* a given id is kept */
  for (int i = 0; i < 3; i += 2) {
    assert_true(is_uuid7(ev[i].id));
    int64_t ms = 0;
    for (int k = 0; k < 6; k++)
      ms = (ms << 8) | ev[i].id[k];
    assert_true(ms >= before - 1 && ms <= after + 1);
  }
  assert_true(memcmp(ev[0].id, ev[2].id, 16) != 0);

  evc out[4];
  size_t n = read_stream(s, "x", 1, ER_UNLIMITED, 0, out, 4);
  assert_int_equal(n, 3);
  for (size_t i = 0; i < n; i++)
    assert_memory_equal(out[i].e.id, ev[i].id, 16);
  evc_free(out, n);
}

/* Generated ids increase strictly in append order, within an append and
 * across appends and transactions, and stay valid UUID v7s. */
static void test_generated_ids_increase(void **state) {
  fx *f = *state;
  er_store *s = f->s;
  enum { PER = 300, ROUNDS = 20 };
  static er_new_event ev[PER];
  uint8_t last[16] = {0};
  er_error err = fresh_err();
  for (int r = 0; r < ROUNDS; r++) {
    char stream[16];
    int sl = snprintf(stream, sizeof stream, "s-%d", r % 3);
    size_t n = r % 2 ? PER : 1;
    for (size_t i = 0; i < n; i++) tu_event(&ev[i], "T", "x", 1);
    if (r % 5 == 4) {
      er_txn *t;
      assert_int_equal(er_txn_begin(s, &t, &err), ER_OK);
      assert_int_equal(er_txn_append(t, stream, (size_t)sl, ER_ANY, ev, n, &err), ER_OK);
      assert_int_equal(er_txn_commit(t, &err), ER_OK);
      er_txn_free(t);
      /* the transaction's copies got the ids: read them back */
    } else {
      assert_int_equal(er_append(s, stream, (size_t)sl, ER_ANY, ev, n, NULL, &err), ER_OK);
    }
  }
  /* the log in position order carries strictly increasing ids */
  er_iter *it;
  er_event e;
  uint64_t count = 0;
  assert_int_equal(er_read_all(s, 0, ER_UNLIMITED, NULL, &it, &err), ER_OK);
  while (er_iter_next(it, &e, &err) == ER_OK) {
    assert_true(is_uuid7(e.id));
    assert_true(memcmp(last, e.id, 16) < 0);
    memcpy(last, e.id, 16);
    count++;
  }
  er_iter_free(it);
  assert_int_equal(count, er_last_position(s));
  assert_true(count > PER * 5);
}

/* er_wait_idle: a store that has just taken appends becomes idle within a
 * generous time; an idle one answers at once, even with no time at all. */
static void test_wait_idle(void **state) {
  fx *f = *state;
  er_store *s = f->s;
  static er_new_event ev[200];
  er_error err = fresh_err();
  for (int r = 0; r < 50; r++) {
    for (int i = 0; i < 200; i++) tu_event(&ev[i], "T", "some data to fill a memtable", 1);
    assert_int_equal(er_append(s, L("w-1"), ER_ANY, ev, 200, NULL, &err), ER_OK);
  }
  assert_int_equal(er_wait_idle(s, 60000), 1);
  assert_int_equal(er_wait_idle(s, 0), 1);
  assert_int_equal(er_last_position(s), 10000);
}

/* Check that a failed append left the store as it was. */
static void assert_unchanged(er_store *s, const char *stream,
                             uint64_t version, uint64_t last) {
  assert_int_equal(version_of(s, stream), version);
  assert_int_equal(er_last_position(s), last);
  evc out[8];
  size_t n = read_all(s, 1, ER_UNLIMITED, NULL, out, 8);
  assert_int_equal(n, last);
  evc_free(out, n);
}

static void assert_wev(int rc, const er_error *err, int64_t expected,
                       uint64_t actual) {
  assert_int_equal(rc, ER_WRONG_EXPECTED_VERSION);
  assert_int_equal(err->code, ER_WRONG_EXPECTED_VERSION);
  assert_true(err->message[0] != '\0');
  assert_true(err->expected == expected);
  assert_int_equal(err->actual, actual);
}

/* An append to `stream` with `expected` is refused, the stream being at
 * version `actual`; nothing changed (`last` events in the store). */
static void assert_conflict(er_store *s, const char *stream, int64_t expected,
                            uint64_t actual, uint64_t last) {
  er_appended r;
  er_error err = fresh_err();
  assert_wev(append1(s, stream, expected, "T", "x", &r, &err), &err, expected,
             actual);
  assert_unchanged(s, stream, actual, last);
}

/* Appending `n` events of `ev` to `stream` (`len` bytes) is refused as
 * invalid. */
static void assert_invalid(er_store *s, const char *stream, size_t len,
                           er_new_event *ev, size_t n) {
  er_error err = fresh_err();
  assert_fails(er_append(s, stream, len, ER_ANY, ev, n, NULL, &err), ER_INVALID,
               err);
}

static void test_expected_any(void **state) {
  fx *f = *state;
  er_appended r;
  er_error err = fresh_err();
  assert_int_equal(append1(f->s, "s", ER_ANY, "T", "a", &r, &err), ER_OK);
  assert_int_equal(r.version, 1);
  assert_int_equal(append1(f->s, "s", ER_ANY, "T", "b", &r, &err), ER_OK);
  assert_int_equal(r.version, 2);
}

static void test_expected_no_stream(void **state) {
  fx *f = *state;
  er_appended r;
  er_error err = fresh_err();
  assert_int_equal(append1(f->s, "s", ER_NO_STREAM, "T", "a", &r, &err),
                   ER_OK);
  assert_int_equal(r.version, 1);
  assert_conflict(f->s, "s", ER_NO_STREAM, 1, 1);
  /* err may be NULL */
  assert_int_equal(append1(f->s, "s", ER_NO_STREAM, "T", "b", &r, NULL),
                   ER_WRONG_EXPECTED_VERSION);
  assert_unchanged(f->s, "s", 1, 1);
}

static void test_expected_stream_exists(void **state) {
  fx *f = *state;
  er_appended r;
  er_error err = fresh_err();
  assert_conflict(f->s, "s", ER_STREAM_EXISTS, 0, 0);
  assert_int_equal(append1(f->s, "s", ER_ANY, "T", "a", &r, &err), ER_OK);
  assert_int_equal(append1(f->s, "s", ER_STREAM_EXISTS, "T", "b", &r, &err),
                   ER_OK);
  assert_int_equal(r.version, 2);
  assert_int_equal(r.position, 2);
  /* another stream that does not exist */
  assert_conflict(f->s, "t", ER_STREAM_EXISTS, 0, 2);
}

static void test_expected_exact(void **state) {
  fx *f = *state;
  er_appended r;
  er_error err = fresh_err();
  /* 0 on a new stream */
  assert_int_equal(append1(f->s, "s", 0, "T", "a", &r, &err), ER_OK);
  assert_int_equal(r.version, 1);
  /* 0 on an existing stream */
  assert_conflict(f->s, "s", 0, 1, 1);
  /* right */
  assert_int_equal(append1(f->s, "s", 1, "T", "b", &r, &err), ER_OK);
  assert_int_equal(r.version, 2);
  assert_int_equal(append1(f->s, "s", 2, "T", "c", &r, &err), ER_OK);
  assert_int_equal(r.version, 3);
  /* wrong, below and above */
  assert_conflict(f->s, "s", 2, 3, 3);
  assert_conflict(f->s, "s", 4, 3, 3);
  assert_conflict(f->s, "s", 1000000, 3, 3);
  /* exact n on a stream that does not exist */
  assert_conflict(f->s, "new", 1, 0, 3);
  /* a batch with the right expectation */
  er_new_event ev[2];
  tu_event(&ev[0], "T", "d", 1);
  tu_event(&ev[1], "T", "e", 1);
  assert_int_equal(er_append(f->s, "s", 1, 3, ev, 2, &r, &err), ER_OK);
  assert_int_equal(r.first_version, 4);
  assert_int_equal(r.version, 5);
}

static void test_expected_invalid_sentinel(void **state) {
  fx *f = *state;
  /* values below ER_STREAM_EXISTS are no expectation at all */
  er_error err = fresh_err();
  int rc = append1(f->s, "s", -4, "T", "a", NULL, &err);
  assert_int_not_equal(rc, ER_OK);
  assert_unchanged(f->s, "s", 0, 0);
}

static void test_append_n_zero(void **state) {
  fx *f = *state;
  er_new_event ev[1];
  tu_event(&ev[0], "T", "a", 1);
  assert_invalid(f->s, "s", 1, ev, 0);
  assert_unchanged(f->s, "s", 0, 0);
}

static void test_append_stream_validation(void **state) {
  fx *f = *state;
  er_new_event ev[1];
  tu_event(&ev[0], "T", "a", 1);
  assert_invalid(f->s, "", 0, ev, 1);
  assert_invalid(f->s, "a\0b", 3, ev, 1);
  assert_invalid(f->s, "\0", 1, ev, 1);
  char *long_id = malloc(ER_MAX_STREAM_LEN + 2);
  assert_non_null(long_id);
  memset(long_id, 'q', ER_MAX_STREAM_LEN + 1);
  long_id[ER_MAX_STREAM_LEN + 1] = '\0';
  assert_invalid(f->s, long_id, ER_MAX_STREAM_LEN + 1, ev, 1);
  assert_int_equal(er_last_position(f->s), 0);
  er_appended r;
  er_error err = fresh_err();
  assert_int_equal(
      er_append(f->s, long_id, ER_MAX_STREAM_LEN, ER_ANY, ev, 1, &r, &err),
      ER_OK);
  assert_int_equal(r.position, 1);
  uint64_t v = 0;
  assert_int_equal(er_version(f->s, long_id, ER_MAX_STREAM_LEN, &v, &err),
                   ER_OK);
  assert_int_equal(v, 1);
  evc out[2];
  er_iter *it = NULL;
  assert_int_equal(er_read_stream(f->s, long_id, ER_MAX_STREAM_LEN, 0,
                                  ER_UNLIMITED, 0, &it, &err),
                   ER_OK);
  size_t n = drain(it, out, 2);
  assert_int_equal(n, 1);
  assert_int_equal(out[0].e.stream_len, ER_MAX_STREAM_LEN);
  assert_memory_equal(out[0].e.stream, long_id, ER_MAX_STREAM_LEN);
  evc_free(out, n);
  free(long_id);
  assert_int_equal(er_last_position(f->s), 1);
}

static void test_append_type_validation(void **state) {
  fx *f = *state;
  er_new_event ev[1];
  er_error err = fresh_err();
  tu_event(&ev[0], "", "a", 1);
  assert_invalid(f->s, "s", 1, ev, 1);
  tu_event(&ev[0], "T", "a", 1);
  ev[0].type = "A\0B";
  ev[0].type_len = 3;
  assert_invalid(f->s, "s", 1, ev, 1);
  char *t = malloc(ER_MAX_TYPE_LEN + 1);
  assert_non_null(t);
  memset(t, 'T', ER_MAX_TYPE_LEN + 1);
  ev[0].type = t;
  ev[0].type_len = ER_MAX_TYPE_LEN + 1;
  assert_invalid(f->s, "s", 1, ev, 1);
  assert_unchanged(f->s, "s", 0, 0);
  ev[0].type_len = ER_MAX_TYPE_LEN;
  assert_int_equal(er_append(f->s, "s", 1, ER_ANY, ev, 1, NULL, &err), ER_OK);
  evc out[2];
  size_t n = read_stream(f->s, "s", 0, ER_UNLIMITED, 0, out, 2);
  assert_int_equal(n, 1);
  assert_int_equal(out[0].e.type_len, ER_MAX_TYPE_LEN);
  assert_memory_equal(out[0].e.type, t, ER_MAX_TYPE_LEN);
  evc_free(out, n);
  free(t);
}

static void test_append_batch_atomic(void **state) {
  fx *f = *state;
  ok1(f->s, "s", "T", "0");
  er_new_event ev[3];
  tu_event(&ev[0], "T", "a", 1);
  tu_event(&ev[1], "T", "b", 1);
  tu_event(&ev[2], "", "c", 1); /* the last one is bad */
  er_error err = fresh_err();
  assert_fails(er_append(f->s, "s", 1, ER_ANY, ev, 3, NULL, &err), ER_INVALID,
               err);
  assert_unchanged(f->s, "s", 1, 1);
  /* the generated ids of the refused call did not reach the index: the
   * same events with them are accepted as new */
  tu_event(&ev[2], "T", "c", 1);
  assert_int_equal(er_append(f->s, "s", 1, 1, ev, 3, NULL, &err), ER_OK);
  assert_unchanged(f->s, "s", 4, 4);
}

static void test_append_max_event_size(void **state) {
  fx *f = *state;
  er_close(f->s);
  f->s = NULL;
  er_options o;
  er_options_init(&o);
  o.max_event_size = 100;
  er_error err = fresh_err();
  assert_int_equal(er_open(f->dir, &o, &f->s, &err), ER_OK);

  static char buf[200];
  memset(buf, 'z', sizeof buf);
  er_new_event ev[2];
  tu_event(&ev[0], "T", buf, 60);
  ev[0].metadata = buf;
  ev[0].metadata_len = 40;
  assert_int_equal(er_append(f->s, "s", 1, ER_ANY, ev, 1, NULL, &err), ER_OK);

  ev[0].data_len = 61;
  assert_invalid(f->s, "s", 1, ev, 1);
  tu_event(&ev[0], "T", buf, 101);
  assert_invalid(f->s, "s", 1, ev, 1);
  tu_event(&ev[0], "T", NULL, 0);
  ev[0].metadata = buf;
  ev[0].metadata_len = 101;
  assert_invalid(f->s, "s", 1, ev, 1);
  /* the limit is per event, and one big event fails the whole batch */
  tu_event(&ev[0], "T", buf, 100);
  tu_event(&ev[1], "T", buf, 101);
  assert_invalid(f->s, "s", 1, ev, 2);
  assert_unchanged(f->s, "s", 1, 1);
  tu_event(&ev[1], "T", buf, 100);
  assert_int_equal(er_append(f->s, "s", 1, ER_ANY, ev, 2, NULL, &err), ER_OK);
  assert_unchanged(f->s, "s", 3, 3);
}

static void test_append_default_max_event_size(void **state) {
  fx *f = *state;
  size_t max = ER_DEFAULT_MAX_EVENT_SIZE;
  char *big = calloc(1, max + 1);
  assert_non_null(big);
  er_new_event ev[1];
  tu_event(&ev[0], "T", big, max);
  ev[0].metadata = big;
  ev[0].metadata_len = 1;
  er_error err = fresh_err();
  assert_fails(er_append(f->s, "s", 1, ER_ANY, ev, 1, NULL, &err), ER_INVALID,
               err);
  tu_event(&ev[0], "T", big, max + 1);
  assert_invalid(f->s, "s", 1, ev, 1);
  assert_unchanged(f->s, "s", 0, 0);
  /* max_event_size 0 in the options means the default */
  er_close(f->s);
  f->s = NULL;
  er_options o;
  er_options_init(&o);
  o.max_event_size = 0;
  assert_int_equal(er_open(f->dir, &o, &f->s, &err), ER_OK);
  assert_invalid(f->s, "s", 1, ev, 1);
  tu_event(&ev[0], "T", big, 1000);
  assert_int_equal(er_append(f->s, "s", 1, ER_ANY, ev, 1, NULL, &err), ER_OK);
  free(big);
}

/* ------------------------------------------------------------------------ */
/* Idempotent retries                                                         */

static void make3(er_new_event ev[3], uint8_t seed) {
  tu_event(&ev[0], "A", "a", 1);
  tu_event(&ev[1], "B", "b", 1);
  tu_event(&ev[2], "C", "c", 1);
  for (int i = 0; i < 3; i++)
    set_id(&ev[i], (uint8_t)(seed + i));
}

static void assert_replayed(const er_appended *r, uint64_t fv, uint64_t v,
                            uint64_t fp, uint64_t p) {
  assert_int_equal(r->replayed, 1);
  assert_int_equal(r->first_version, fv);
  assert_int_equal(r->version, v);
  assert_int_equal(r->first_position, fp);
  assert_int_equal(r->position, p);
}

/* make3(ev, 1), appended to the new stream "s". */
static void append3(er_store *s, er_new_event ev[3]) {
  er_error err = fresh_err();
  make3(ev, 1);
  assert_int_equal(er_append(s, "s", 1, ER_NO_STREAM, ev, 3, NULL, &err),
                   ER_OK);
}

/* Appending `n` events of `ev` (copied) to `stream` with `expected` is
 * refused: ER_DUPLICATE_EVENT. */
static void assert_dup(er_store *s, const char *stream, int64_t expected,
                       const er_new_event *ev, size_t n) {
  er_new_event copy[8];
  er_appended r;
  er_error err = fresh_err();
  assert_true(n <= 8);
  memcpy(copy, ev, n * sizeof *ev);
  assert_fails(er_append(s, stream, strlen(stream), expected, copy, n, &r, &err),
               ER_DUPLICATE_EVENT, err);
}

/* The append of `n` events of `ev` to `stream` with `expected` is replayed
 * as the append of versions fv..v at positions fp..p. */
static void assert_retry(er_store *s, const char *stream, int64_t expected,
                         er_new_event *ev, size_t n, uint64_t fv, uint64_t v,
                         uint64_t fp, uint64_t p) {
  er_appended r;
  er_error err = fresh_err();
  int rc;
  memset(&r, 0, sizeof r);
  rc = er_append(s, stream, strlen(stream), expected, ev, n, &r, &err);
  if (rc != ER_OK)
    print_error("retry with expected %lld: %d %s\n", (long long)expected, rc,
                err.message);
  assert_int_equal(rc, ER_OK);
  assert_replayed(&r, fv, v, fp, p);
}

static void test_idem_retry(void **state) {
  fx *f = *state;
  er_store *s = f->s;
  ok1(s, "other", "T", "x"); /* positions do not start at 1 for "s" */
  er_new_event ev[3];
  make3(ev, 1);
  er_appended r;
  er_error err = fresh_err();
  assert_int_equal(er_append(s, "s", 1, ER_NO_STREAM, ev, 3, &r, &err), ER_OK);
  assert_int_equal(r.replayed, 0);
  assert_int_equal(r.first_position, 2);
  assert_int_equal(r.position, 4);

  int64_t ok_expectations[] = {ER_NO_STREAM, ER_ANY, 0};
  for (size_t i = 0; i < 3; i++) {
    er_new_event again[3];
    make3(again, 1);
    assert_retry(s, "s", ok_expectations[i], again, 3, 1, 3, 2, 4);
    assert_unchanged(s, "s", 3, 4);
  }
  /* a wrong exact expectation is a conflict */
  make3(ev, 1);
  err = fresh_err();
  assert_wev(er_append(s, "s", 1, 5, ev, 3, &r, &err), &err, 5, 3);
  assert_unchanged(s, "s", 3, 4);
  /* ER_STREAM_EXISTS was not met before the original append */
  assert_dup(s, "s", ER_STREAM_EXISTS, ev, 3);
  assert_unchanged(s, "s", 3, 4);
  /* exact 3 is the current version but not the one before that append */
  assert_dup(s, "s", 3, ev, 3);
  assert_unchanged(s, "s", 3, 4);
  /* the retry also works after the stream moved on */
  ok1(s, "s", "T", "later");
  make3(ev, 1);
  assert_retry(s, "s", ER_NO_STREAM, ev, 3, 1, 3, 2, 4);
  assert_unchanged(s, "s", 4, 5);
}

static void test_idem_retry_later_append(void **state) {
  fx *f = *state;
  er_store *s = f->s;
  er_new_event ev[3];
  append3(s, ev);
  er_new_event ev2[2];
  tu_event(&ev2[0], "D", "d", 1);
  tu_event(&ev2[1], "E", "e", 1);
  set_id(&ev2[0], 10);
  set_id(&ev2[1], 11);
  er_appended r;
  er_error err = fresh_err();
  assert_int_equal(er_append(s, "s", 1, 3, ev2, 2, &r, &err), ER_OK);
  assert_int_equal(r.first_version, 4);
  assert_int_equal(r.first_position, 4);
  ok1(s, "s", "F", "f");

  assert_retry(s, "s", 3, ev2, 2, 4, 5, 4, 5);
  assert_retry(s, "s", ER_ANY, ev2, 2, 4, 5, 4, 5);
  assert_retry(s, "s", ER_STREAM_EXISTS, ev2, 2, 4, 5, 4, 5);
  assert_unchanged(s, "s", 6, 6);
  /* ER_NO_STREAM was not met by the version before (3) */
  err = fresh_err();
  assert_wev(er_append(s, "s", 1, ER_NO_STREAM, ev2, 2, &r, &err), &err,
             ER_NO_STREAM, 6);
  /* exact 6 is met now, but no retry: the ids exist */
  assert_dup(s, "s", 6, ev2, 2);
  assert_unchanged(s, "s", 6, 6);
  /* ids of two earlier appends together are no retry of one */
  er_new_event mix[5];
  memcpy(mix, ev, 3 * sizeof ev[0]);
  memcpy(mix + 3, ev2, 2 * sizeof ev2[0]);
  assert_dup(s, "s", ER_ANY, mix, 5);
  assert_unchanged(s, "s", 6, 6);
}

static void test_idem_subset_and_order(void **state) {
  fx *f = *state;
  er_store *s = f->s;
  er_new_event ev[3];
  append3(s, ev);
  assert_dup(s, "s", ER_NO_STREAM, ev, 2); /* the first two of three */
  assert_unchanged(s, "s", 3, 3);
  assert_dup(s, "s", ER_ANY, ev, 2);
  assert_dup(s, "s", ER_ANY, ev + 1, 2); /* the last two */
  /* all three in another order */
  er_new_event rev[3] = {ev[2], ev[1], ev[0]};
  assert_dup(s, "s", ER_NO_STREAM, rev, 3);
  /* the three plus a new one */
  er_new_event more[4];
  memcpy(more, ev, sizeof ev);
  tu_event(&more[3], "D", "d", 1);
  assert_dup(s, "s", ER_NO_STREAM, more, 4);
  assert_unchanged(s, "s", 3, 3);
}

static void test_idem_other_stream(void **state) {
  fx *f = *state;
  er_store *s = f->s;
  er_new_event ev[3];
  append3(s, ev);
  int64_t exps[] = {ER_NO_STREAM, ER_ANY, 0};
  for (size_t i = 0; i < 3; i++) {
    assert_dup(s, "t", exps[i], ev, 3);
    assert_unchanged(s, "t", 0, 3);
  }
  /* a single id of it alone, to another stream */
  assert_dup(s, "t", ER_ANY, ev + 1, 1);
  assert_unchanged(s, "t", 0, 3);
}

static void test_idem_mixed(void **state) {
  fx *f = *state;
  er_store *s = f->s;
  er_new_event ev[3];
  make3(ev, 1);
  er_error err = fresh_err();
  assert_int_equal(er_append(s, "s", 1, ER_ANY, ev, 1, NULL, &err), ER_OK);
  /* ev[0] exists, ev[1] and ev[2] are new */
  assert_dup(s, "s", ER_ANY, ev, 3);
  er_new_event ev2[3] = {ev[1], ev[0], ev[2]};
  assert_dup(s, "s", ER_ANY, ev2, 3);
  assert_unchanged(s, "s", 1, 1);
  /* the new ids were not indexed by the failed calls */
  er_appended r;
  assert_int_equal(er_append(s, "s", 1, 1, ev + 1, 2, &r, &err), ER_OK);
  assert_int_equal(r.replayed, 0);
  assert_int_equal(r.version, 3);
}

static void test_idem_twice_in_call(void **state) {
  fx *f = *state;
  er_store *s = f->s;
  er_new_event ev[3];
  make3(ev, 1);
  ev[2] = ev[0];
  assert_dup(s, "s", ER_NO_STREAM, ev, 3);
  assert_unchanged(s, "s", 0, 0);
  ev[1] = ev[0]; /* adjacent */
  assert_dup(s, "s", ER_ANY, ev, 2);
  assert_unchanged(s, "s", 0, 0);
  /* once is fine */
  er_appended r;
  er_error err = fresh_err();
  assert_int_equal(er_append(s, "s", 1, ER_NO_STREAM, ev, 1, &r, &err),
                   ER_OK);
  assert_int_equal(r.version, 1);
}

static void test_idem_after_reopen(void **state) {
  fx *f = *state;
  er_new_event ev[3];
  append3(f->s, ev);
  er_close(f->s);
  f->s = tu_open(f->dir);
  assert_retry(f->s, "s", ER_NO_STREAM, ev, 3, 1, 3, 1, 3);
  assert_dup(f->s, "t", ER_ANY, ev, 3);
  assert_unchanged(f->s, "s", 3, 3);
}

/* ------------------------------------------------------------------------ */
/* Reading                                                                    */

/* Streams "a" (4 events), "a-b" (2), "ab" (2), "b" (1), interleaved. */
static void fill_prefix_streams(er_store *s) {
  ok1(s, "a", "T", "a1");
  ok1(s, "a-b", "T", "ab1");
  ok1(s, "a", "T", "a2");
  ok1(s, "ab", "T", "xb1");
  ok1(s, "a", "T", "a3");
  ok1(s, "b", "T", "b1");
  ok1(s, "a-b", "T", "ab2");
  ok1(s, "ab", "T", "xb2");
  ok1(s, "a", "T", "a4");
}

/* What a read gave, as text: "version:data" (`positions` 0) or "position"
 * (`positions` 1) of each event, separated by spaces; "" for none. */
static void render(const evc *ev, size_t n, int positions, char *out,
                   size_t cap) {
  size_t used = 0;
  out[0] = 0;
  for (size_t i = 0; i < n; i++) {
    const er_event *e = &ev[i].e;
    int w = positions
                ? snprintf(out + used, cap - used, "%s%llu", i ? " " : "",
                           (unsigned long long)e->position)
                : snprintf(out + used, cap - used, "%s%llu:%.*s", i ? " " : "",
                           (unsigned long long)e->version, (int)e->data_len,
                           (const char *)e->data);
    assert_true(w > 0 && (size_t)w < cap - used);
    used += (size_t)w;
  }
}

/* A read of one stream and what it must give (render, versions). */
typedef struct stream_read {
  const char *stream;
  uint64_t from, count;
  int backward;
  const char *want;
} stream_read;

static void check_stream_reads(er_store *s, const stream_read *r, size_t nr) {
  for (size_t i = 0; i < nr; i++) {
    evc ev[16];
    char got[256];
    size_t n = read_stream(s, r[i].stream, r[i].from, r[i].count,
                           r[i].backward, ev, 16);
    for (size_t k = 0; k < n; k++)
      assert_true(ev_stream_is(&ev[k].e, r[i].stream));
    render(ev, n, 0, got, sizeof got);
    evc_free(ev, n);
    if (strcmp(got, r[i].want) != 0)
      print_error("read %zu of '%s' from %llu\n", i, r[i].stream,
                  (unsigned long long)r[i].from);
    assert_string_equal(got, r[i].want);
  }
}

#define NROWS(a) (sizeof (a) / sizeof (a)[0])
#define ALL ER_UNLIMITED

static void test_read_stream_forward(void **state) {
  fx *f = *state;
  static const stream_read reads[] = {
      {"a", 1, ALL, 0, "1:a1 2:a2 3:a3 4:a4"},
      {"a", 0, ALL, 0, "1:a1 2:a2 3:a3 4:a4"}, /* 0: the first */
      {"a", 3, ALL, 0, "3:a3 4:a4"},
      {"a", 2, 2, 0, "2:a2 3:a3"},
      {"a", 1, 1, 0, "1:a1"},
      {"a", 4, 10, 0, "4:a4"},
      {"a", 1, 0, 0, ""},
      {"a", 5, ALL, 0, ""},
      {"a", 1000, ALL, 0, ""},
      {"a", UINT64_MAX, ALL, 0, ""},
  };
  evc ev[16];
  fill_prefix_streams(f->s);
  check_stream_reads(f->s, reads, NROWS(reads));
  static const uint64_t apos[] = {1, 3, 5, 9};
  size_t n = read_stream(f->s, "a", 1, ALL, 0, ev, 16);
  assert_int_equal(n, 4);
  for (size_t i = 0; i < n; i++)
    assert_int_equal(ev[i].e.position, apos[i]);
  evc_free(ev, n);
}

static void test_read_stream_backward(void **state) {
  fx *f = *state;
  static const stream_read reads[] = {
      {"a", 0, ALL, 1, "4:a4 3:a3 2:a2 1:a1"}, /* 0: the last */
      {"a", 4, ALL, 1, "4:a4 3:a3 2:a2 1:a1"},
      {"a", 2, ALL, 1, "2:a2 1:a1"},
      {"a", 0, 2, 1, "4:a4 3:a3"},
      {"a", 3, 1, 1, "3:a3"},
      {"a", 1, ALL, 1, "1:a1"},
      {"a", 0, 0, 1, ""},
      /* "ab" sorts after "a": reading "a" backward must not start inside it */
      {"a-b", 0, ALL, 1, "2:ab2 1:ab1"},
      {"ab", 0, ALL, 1, "2:xb2 1:xb1"},
      {"b", 0, ALL, 1, "1:b1"},
  };
  fill_prefix_streams(f->s);
  check_stream_reads(f->s, reads, NROWS(reads));
}

static void test_read_stream_prefix_isolation(void **state) {
  fx *f = *state;
  static const stream_read reads[] = {
      {"a-b", 0, ALL, 0, "1:ab1 2:ab2"},
      {"ab", 0, ALL, 0, "1:xb1 2:xb2"},
      /* streams that do not exist, some of them prefixes of existing ones */
      {"a-", 0, ALL, 0, ""},
      {"a-", 0, ALL, 1, ""},
      {"zzz", 0, ALL, 0, ""},
      {"zzz", 0, ALL, 1, ""},
      {"0", 0, ALL, 1, ""},
      {"aa", 0, ALL, 1, ""},
  };
  /* beside ids that extend "a" by the smallest and largest bytes */
  static const stream_read extended[] = {
      {"a", 0, ALL, 0, "1:a1 2:a2 3:a3 4:a4"},
      {"a", 0, ALL, 1, "4:a4 3:a3 2:a2 1:a1"},
      {"a\xff", 0, ALL, 0, "1:high"},
      {"a\xff", 0, ALL, 1, "1:high"},
      {"a\x01", 0, ALL, 0, "1:low"},
      {"a\x01", 0, ALL, 1, "1:low"},
  };
  fill_prefix_streams(f->s);
  check_stream_reads(f->s, reads, NROWS(reads));
  ok1(f->s, "a\x01", "T", "low");
  ok1(f->s, "a\xff", "T", "high");
  ok1(f->s, "a\xff\xff", "T", "higher");
  check_stream_reads(f->s, extended, NROWS(extended));
  assert_int_equal(version_of(f->s, "a-"), 0);
  assert_int_equal(version_of(f->s, "a"), 4);
  assert_int_equal(version_of(f->s, "a-b"), 2);
  assert_int_equal(version_of(f->s, "ab"), 2);
}

static void test_event_fields(void **state) {
  fx *f = *state;
  static const char bin[] = {'\0', 'a', '\0', 'b', '\xff', '\0'};
  static const char meta[] = {'m', '\0', '\x80'};
  er_new_event ev[4];
  tu_event(&ev[0], "Binary", bin, sizeof bin);
  ev[0].metadata = meta;
  ev[0].metadata_len = sizeof meta;
  tu_event(&ev[1], "Empty", NULL, 0); /* data and metadata NULL/0 */
  tu_event(&ev[2], "EmptyNonNull", "", 0);
  ev[2].metadata = "";
  ev[2].metadata_len = 0;
  tu_event(&ev[3], "MetaOnly", NULL, 0);
  ev[3].metadata = "{}";
  ev[3].metadata_len = 2;
  set_id(&ev[1], 42);
  int64_t before = tu_now_us();
  er_error err = fresh_err();
  assert_int_equal(er_append(f->s, "cat-1", 5, ER_ANY, ev, 4, NULL, &err),
                   ER_OK);
  ok1(f->s, "dog-1", "Barked", "woof");
  int64_t after = tu_now_us();

  evc out[8];
  size_t n = read_all(f->s, 1, ER_UNLIMITED, NULL, out, 8);
  assert_int_equal(n, 5);
  for (size_t i = 0; i < 4; i++) {
    const er_event *e = &out[i].e;
    assert_memory_equal(e->id, ev[i].id, 16);
    assert_int_equal(e->position, i + 1);
    assert_int_equal(e->version, i + 1);
    assert_true(ev_stream_is(e, "cat-1"));
    assert_int_equal(e->type_len, ev[i].type_len);
    assert_memory_equal(e->type, ev[i].type, e->type_len);
    assert_int_equal(e->data_len, ev[i].data_len);
    if (e->data_len)
      assert_memory_equal(e->data, ev[i].data, e->data_len);
    assert_int_equal(e->metadata_len, ev[i].metadata_len);
    if (e->metadata_len)
      assert_memory_equal(e->metadata, ev[i].metadata, e->metadata_len);
  }
  assert_true(ev_stream_is(&out[4].e, "dog-1"));
  assert_true(ev_type_is(&out[4].e, "Barked"));
  assert_true(ev_data_is(&out[4].e, "woof"));
  assert_int_equal(out[4].e.metadata_len, 0);
  assert_int_equal(out[4].e.version, 1);
  for (size_t i = 0; i < n; i++) {
    assert_true(out[i].e.time > 0);
    /* the store's clock is the wall clock, microseconds */
    assert_true(out[i].e.time >= before - 2000000);
    assert_true(out[i].e.time <= after + 2000000);
    if (i > 0)
      assert_true(out[i].e.time >= out[i - 1].e.time);
  }
  /* the same through the stream reader and er_event_at */
  evc_free(out, n);
  n = read_stream(f->s, "cat-1", 0, ER_UNLIMITED, 0, out, 8);
  assert_int_equal(n, 4);
  assert_int_equal(out[0].e.data_len, sizeof bin);
  assert_memory_equal(out[0].e.data, bin, sizeof bin);
  assert_int_equal(out[0].e.metadata_len, sizeof meta);
  assert_memory_equal(out[0].e.metadata, meta, sizeof meta);
  er_event one;
  void *mem = NULL;
  assert_int_equal(er_event_at(f->s, 1, &one, &mem, &err), ER_OK);
  assert_non_null(mem);
  assert_memory_equal(one.id, out[0].e.id, 16);
  assert_int_equal(one.time, out[0].e.time);
  assert_int_equal(one.data_len, sizeof bin);
  assert_memory_equal(one.data, bin, sizeof bin);
  assert_int_equal(one.metadata_len, sizeof meta);
  assert_memory_equal(one.metadata, meta, sizeof meta);
  assert_true(ev_stream_is(&one, "cat-1"));
  assert_true(ev_type_is(&one, "Binary"));
  er_free(mem);
  evc_free(out, n);
}

static void test_time_non_decreasing(void **state) {
  fx *f = *state;
  char d[16];
  for (int i = 0; i < 200; i++) {
    snprintf(d, sizeof d, "%d", i);
    ok1(f->s, (i % 3) ? "p-1" : "q-1", "T", d);
  }
  static evc out[256];
  size_t n = read_all(f->s, 0, ER_UNLIMITED, NULL, out, 256);
  assert_int_equal(n, 200);
  for (size_t i = 1; i < n; i++) {
    assert_int_equal(out[i].e.position, i + 1);
    assert_true(out[i].e.time >= out[i - 1].e.time);
  }
  evc_free(out, n);
}

/* A read of the global log and what it must give (render, positions).
 * check_log_reads reads through a filter of the row's category and the
 * given types; without either, with no filter at all (NULL). */
typedef struct log_read {
  const char *category; /* NULL: no category filter */
  size_t category_len;
  uint64_t from, count;
  const char *want;
} log_read;

static void check_log_reads(er_store *s, const char *const *types,
                            const size_t *type_lens, size_t ntypes,
                            const log_read *r, size_t nr) {
  for (size_t i = 0; i < nr; i++) {
    er_filter flt = {r[i].category, r[i].category_len, types, type_lens,
                     ntypes};
    evc ev[16];
    char got[256];
    size_t n = read_all(s, r[i].from, r[i].count,
                        r[i].category || ntypes ? &flt : NULL, ev, 16);
    render(ev, n, 1, got, sizeof got);
    evc_free(ev, n);
    if (strcmp(got, r[i].want) != 0)
      print_error("log read %zu, from %llu\n", i, (unsigned long long)r[i].from);
    assert_string_equal(got, r[i].want);
  }
}

static void test_read_all(void **state) {
  fx *f = *state;
  static const log_read reads[] = {
      {NULL, 0, 1, ALL, "1 2 3 4 5 6 7 8 9"},
      {NULL, 0, 0, ALL, "1 2 3 4 5 6 7 8 9"}, /* 0 means 1 */
      {NULL, 0, 4, ALL, "4 5 6 7 8 9"},
      {NULL, 0, 4, 3, "4 5 6"},
      {NULL, 0, 9, ALL, "9"},
      {NULL, 0, 1, 0, ""},
      {NULL, 0, 10, ALL, ""},
      {NULL, 0, UINT64_MAX, ALL, ""},
  };
  evc ev[16];
  size_t n;
  fill_prefix_streams(f->s);
  check_log_reads(f->s, NULL, NULL, 0, reads, NROWS(reads));
  n = read_all(f->s, 1, ALL, NULL, ev, 16);
  assert_true(ev_data_is(&ev[3].e, "xb1"));
  evc_free(ev, n);
  /* an all-empty filter matches everything */
  er_filter flt;
  memset(&flt, 0, sizeof flt);
  n = read_all(f->s, 1, ALL, &flt, ev, 16);
  assert_int_equal(n, 9);
  evc_free(ev, n);
}

static void fill_categories(er_store *s) {
  ok1(s, "order-1", "Placed", "1");     /* 1 */
  ok1(s, "orders-1", "Placed", "2");    /* 2 */
  ok1(s, "order", "Shipped", "3");      /* 3 */
  ok1(s, "order-2", "Shipped", "4");    /* 4 */
  ok1(s, "ord-1", "Placed", "5");       /* 5 */
  ok1(s, "order-x-y", "Paid", "6");     /* 6 */
  ok1(s, "order-1", "PlacedLate", "7"); /* 7 */
  ok1(s, "orderx", "Placed", "8");      /* 8 */
  ok1(s, "-1", "Placed", "9");          /* 9: category "" */
  ok1(s, "order-2", "Paid", "10");      /* 10 */
}

static void test_read_all_category(void **state) {
  fx *f = *state;
  static const log_read reads[] = {
      {L("order"), 1, ALL, "1 3 4 6 7 10"},
      {L("order"), 4, ALL, "4 6 7 10"},
      {L("order"), 0, 2, "1 3"},
      {L("order"), 2, 3, "3 4 6"},
      {L("order"), 8, 1, "10"},
      {L("order"), 11, ALL, ""},
      {L("orders"), 1, ALL, "2"},
      {L("ord"), 1, ALL, "5"},
      {L("orderx"), 1, ALL, "8"},
      {L("order-1"), 1, ALL, ""}, /* a category never contains '-' */
      {L("nothing"), 1, ALL, ""},
      {"orders", 5, 1, ALL, "1 3 4 6 7 10"}, /* the length counts, not the NUL */
  };
  fill_categories(f->s);
  check_log_reads(f->s, NULL, NULL, 0, reads, NROWS(reads));
}

static void test_read_all_types(void **state) {
  fx *f = *state;
  static const char *const types[] = {"Placed", "Paid"};
  static const size_t lens[] = {6, 4};
  static const log_read two[] = {
      {NULL, 0, 1, ALL, "1 2 5 6 8 9 10"}, /* "PlacedLate" (7) is not "Placed" */
      {NULL, 0, 3, 2, "5 6"},
  };
  static const log_read one[] = {{NULL, 0, 1, ALL, "1 2 5 8 9"}};
  static const char *const part[] = {"Pla"};
  static const size_t part_len[] = {3};
  static const log_read none[] = {{NULL, 0, 1, ALL, ""}};
  static const char *const late[] = {"PlacedLate", "Nope", "Shipped"};
  static const size_t late_len[] = {10, 4, 7};
  static const log_read three[] = {{NULL, 0, 1, ALL, "3 4 7"}};
  fill_categories(f->s);
  check_log_reads(f->s, types, lens, 2, two, NROWS(two));
  check_log_reads(f->s, types, lens, 1, one, NROWS(one));
  check_log_reads(f->s, part, part_len, 1, none, NROWS(none));
  check_log_reads(f->s, late, late_len, 3, three, NROWS(three));
}

static void test_read_all_category_and_types(void **state) {
  fx *f = *state;
  static const char *const types[] = {"Paid", "Placed"};
  static const size_t lens[] = {4, 6};
  static const log_read reads[] = {
      {L("order"), 1, ALL, "1 6 10"},
      {L("order"), 1, 2, "1 6"},
      {L("order"), 2, 1, "6"},
      {L("order"), 7, ALL, "10"},
      {L("order"), 1, 0, ""},
  };
  fill_categories(f->s);
  check_log_reads(f->s, types, lens, 2, reads, NROWS(reads));
}

static void test_read_all_filter_copied(void **state) {
  fx *f = *state;
  fill_categories(f->s);
  char cat[8], t1[8];
  strcpy(cat, "order");
  strcpy(t1, "Paid");
  const char *types[1] = {t1};
  size_t lens[1] = {4};
  er_filter flt;
  memset(&flt, 0, sizeof flt);
  flt.category = cat;
  flt.category_len = 5;
  flt.types = types;
  flt.type_lens = lens;
  flt.ntypes = 1;
  er_iter *it = NULL;
  er_error err = fresh_err();
  assert_int_equal(er_read_all(f->s, 1, ER_UNLIMITED, &flt, &it, &err), ER_OK);
  /* scribble over everything the filter pointed to */
  strcpy(cat, "xxxxx");
  strcpy(t1, "Nope");
  types[0] = "Shipped";
  lens[0] = 7;
  memset(&flt, 0, sizeof flt);
  evc ev[16];
  size_t n = drain(it, ev, 16);
  assert_int_equal(n, 2);
  assert_int_equal(ev[0].e.position, 6);
  assert_int_equal(ev[1].e.position, 10);
  evc_free(ev, n);
}

static void test_event_at(void **state) {
  fx *f = *state;
  er_error err = fresh_err();
  er_event ev;
  void *mem = (void *)&ev;
  assert_fails(er_event_at(f->s, 1, &ev, &mem, &err), ER_NOT_FOUND, err);
  fill_prefix_streams(f->s);
  for (uint64_t p = 1; p <= 9; p++) {
    mem = NULL;
    assert_int_equal(er_event_at(f->s, p, &ev, &mem, &err), ER_OK);
    assert_non_null(mem);
    assert_int_equal(ev.position, p);
    if (p == 7) {
      assert_true(ev_stream_is(&ev, "a-b"));
      assert_int_equal(ev.version, 2);
      assert_true(ev_data_is(&ev, "ab2"));
      assert_true(ev_type_is(&ev, "T"));
      assert_true(ev.time > 0);
    }
    er_free(mem);
  }
  err = fresh_err();
  assert_fails(er_event_at(f->s, 10, &ev, &mem, &err), ER_NOT_FOUND, err);
  err = fresh_err();
  assert_fails(er_event_at(f->s, 0, &ev, &mem, &err), ER_NOT_FOUND, err);
  err = fresh_err();
  assert_fails(er_event_at(f->s, UINT64_MAX, &ev, &mem, &err), ER_NOT_FOUND,
               err);
  assert_int_equal(er_event_at(f->s, 12345, &ev, &mem, NULL), ER_NOT_FOUND);
}

/* A listing of the streams under a prefix and what it must give:
 * "id:version" of each stream, separated by spaces. */
typedef struct streams_read {
  const char *prefix;
  size_t prefix_len;
  const char *want;
} streams_read;

static void check_stream_lists(er_store *s, const streams_read *r,
                               size_t nr) {
  for (size_t i = 0; i < nr; i++) {
    er_iter *it = NULL;
    er_error err = fresh_err();
    char got[256];
    size_t used = 0;
    const char *id;
    size_t len;
    uint64_t v;
    int rc;
    assert_int_equal(er_list_streams(s, r[i].prefix, r[i].prefix_len, &it, &err),
                     ER_OK);
    got[0] = 0;
    while ((rc = er_iter_next_stream(it, &id, &len, &v, &err)) == ER_OK) {
      int w = snprintf(got + used, sizeof got - used, "%s%.*s:%llu",
                       used ? " " : "", (int)len, id, (unsigned long long)v);
      assert_true(w > 0 && (size_t)w < sizeof got - used);
      used += (size_t)w;
    }
    assert_int_equal(rc, ER_NOT_FOUND);
    er_iter_free(it);
    if (strcmp(got, r[i].want) != 0) print_error("stream listing %zu\n", i);
    assert_string_equal(got, r[i].want);
  }
}

static void test_list_streams(void **state) {
  fx *f = *state;
  static const streams_read empty[] = {{"", 0, ""}, {NULL, 0, ""}};
  static const streams_read all[] = {
      /* uppercase sorts first, bytes >= 0x80 last */
      {"", 0, "B:1 a:4 a-:1 a-b:2 ab:2 b:1 \xc3\xa9t\xc3\xa9:1"},
      {NULL, 0, "B:1 a:4 a-:1 a-b:2 ab:2 b:1 \xc3\xa9t\xc3\xa9:1"},
  };
  check_stream_lists(f->s, empty, NROWS(empty));
  fill_prefix_streams(f->s);
  ok1(f->s, "\xc3\xa9t\xc3\xa9", "T", "e");
  ok1(f->s, "B", "T", "B");
  ok1(f->s, "a-", "T", "x");
  check_stream_lists(f->s, all, NROWS(all));
}

static void test_list_streams_prefix(void **state) {
  fx *f = *state;
  static const streams_read reads[] = {
      {L("a"), "a:4 a-b:2 ab:2"},
      {L("a-"), "a-b:2"},
      {L("ab"), "ab:2"},
      {L("a-bc"), ""},
      {L("b"), "b:1"},
      {L("c"), ""},
      {L("\xc3"), "\xc3\xa9:2 \xc3\xa9t\xc3\xa9:1"},
      {L("\xff"), ""},
      {"abc", 1, "a:4 a-b:2 ab:2"}, /* the length counts, not the NUL */
  };
  /* prefixes of 0xff bytes, which have no successor to bound them */
  static const streams_read high[] = {
      {L("\xff"), "\xff:1 \xff\xff:1 \xff\xffz:1"},
      {L("\xff\xff"), "\xff\xff:1 \xff\xffz:1"},
      {L("\xfe"), "\xfe\xff:1"},
  };
  fill_prefix_streams(f->s);
  ok1(f->s, "\xc3\xa9t\xc3\xa9", "T", "e");
  ok1(f->s, "\xc3\xa9", "T", "e");
  ok1(f->s, "\xc3\xa9", "T", "e");
  check_stream_lists(f->s, reads, NROWS(reads));
  ok1(f->s, "\xff", "T", "e");
  ok1(f->s, "\xff\xff", "T", "e");
  ok1(f->s, "\xff\xffz", "T", "e");
  ok1(f->s, "\xfe\xff", "T", "e");
  check_stream_lists(f->s, high, NROWS(high));
}

static void test_iter_kind_mismatch(void **state) {
  fx *f = *state;
  fill_prefix_streams(f->s);
  er_iter *it = NULL;
  er_error err = fresh_err();
  assert_int_equal(er_list_streams(f->s, "", 0, &it, &err), ER_OK);
  er_event ev;
  err = fresh_err();
  assert_fails(er_iter_next(it, &ev, &err), ER_INVALID, err);
  /* the streams iterator still works */
  const char *id;
  size_t len;
  uint64_t v;
  assert_int_equal(er_iter_next_stream(it, &id, &len, &v, &err), ER_OK);
  assert_int_equal(len, 1);
  assert_memory_equal(id, "a", 1);
  er_iter_free(it);
}

static void test_empty_store(void **state) {
  fx *f = *state;
  assert_int_equal(er_last_position(f->s), 0);
  assert_int_equal(version_of(f->s, "nothing"), 0);
  assert_int_equal(version_of(f->s, "a"), 0);
  evc ev[2];
  assert_int_equal(read_all(f->s, 0, ER_UNLIMITED, NULL, ev, 2), 0);
  assert_int_equal(read_stream(f->s, "a", 0, ER_UNLIMITED, 0, ev, 2), 0);
  assert_int_equal(read_stream(f->s, "a", 0, ER_UNLIMITED, 1, ev, 2), 0);
  ok1(f->s, "a-1", "T", "x");
  assert_int_equal(er_last_position(f->s), 1);
  assert_int_equal(version_of(f->s, "a"), 0);
  assert_int_equal(version_of(f->s, "a-"), 0);
  assert_int_equal(version_of(f->s, "a-1"), 1);
  assert_int_equal(version_of(f->s, "a-10"), 0);
}

static void test_iterator_snapshot(void **state) {
  fx *f = *state;
  ok1(f->s, "s", "T", "1");
  ok1(f->s, "s", "T", "2");
  er_iter *it = NULL;
  er_error err = fresh_err();
  assert_int_equal(er_read_stream(f->s, "s", 1, 0, ER_UNLIMITED, 0, &it, &err),
                   ER_OK);
  er_event ev;
  assert_int_equal(er_iter_next(it, &ev, &err), ER_OK);
  assert_int_equal(ev.version, 1);
  ok1(f->s, "s", "T", "3");
  assert_int_equal(er_iter_next(it, &ev, &err), ER_OK);
  assert_int_equal(ev.version, 2);
  assert_true(ev_data_is(&ev, "2"));
  assert_int_equal(er_iter_next(it, &ev, &err), ER_NOT_FOUND);
  er_iter_free(it);
  /* backward from the last: the last at creation time */
  assert_int_equal(er_read_stream(f->s, "s", 1, 0, ER_UNLIMITED, 1, &it, &err),
                   ER_OK);
  ok1(f->s, "s", "T", "4");
  assert_int_equal(er_iter_next(it, &ev, &err), ER_OK);
  assert_int_equal(ev.version, 3);
  er_iter_free(it);
}

static void test_interleaved_iterators(void **state) {
  fx *f = *state;
  fill_prefix_streams(f->s);
  er_iter *a = NULL, *b = NULL, *c = NULL;
  er_error err = fresh_err();
  assert_int_equal(er_read_stream(f->s, "a", 1, 0, ER_UNLIMITED, 0, &a, &err),
                   ER_OK);
  assert_int_equal(er_read_stream(f->s, "ab", 2, 0, ER_UNLIMITED, 1, &b, &err),
                   ER_OK);
  assert_int_equal(er_read_all(f->s, 2, ER_UNLIMITED, NULL, &c, &err), ER_OK);
  er_event ea, eb, ec;
  assert_int_equal(er_iter_next(a, &ea, &err), ER_OK);
  assert_int_equal(er_iter_next(b, &eb, &err), ER_OK);
  assert_int_equal(er_iter_next(c, &ec, &err), ER_OK);
  /* each event stays valid while the other iterators move */
  assert_true(ev_data_is(&ea, "a1"));
  assert_true(ev_data_is(&eb, "xb2"));
  assert_true(ev_data_is(&ec, "ab1"));
  assert_int_equal(er_iter_next(a, &ea, &err), ER_OK);
  assert_true(ev_data_is(&ea, "a2"));
  assert_true(ev_data_is(&eb, "xb2"));
  assert_true(ev_data_is(&ec, "ab1"));
  er_iter_free(b);
  er_iter_free(a);
  assert_int_equal(er_iter_next(c, &ec, &err), ER_OK);
  assert_int_equal(ec.position, 3);
  er_iter_free(c);
}

static void test_many_events_reopen(void **state) {
  fx *f = *state;
  char d[32];
  enum { N = 600 };
  uint64_t pos = 0;
  for (int b = 0; b < N / 10; b++) {
    er_new_event ev[10];
    char dd[10][16];
    for (int i = 0; i < 10; i++) {
      snprintf(dd[i], sizeof dd[i], "%d", b * 10 + i);
      tu_event(&ev[i], "T", dd[i], strlen(dd[i]));
    }
    const char *stream = (b % 3 == 0) ? "x-1" : (b % 3 == 1) ? "y-1" : "z-1";
    er_appended r;
    er_error err = fresh_err();
    assert_int_equal(er_append(f->s, stream, 3, ER_ANY, ev, 10, &r, &err),
                     ER_OK);
    assert_int_equal(r.first_position, pos + 1);
    assert_int_equal(r.position, pos + 10);
    pos += 10;
  }
  for (int round = 0; round < 2; round++) {
    assert_int_equal(er_last_position(f->s), N);
    static evc out[N + 8];
    size_t n = read_all(f->s, 1, ER_UNLIMITED, NULL, out, N + 8);
    assert_int_equal(n, N);
    uint64_t vx = 0, vy = 0, vz = 0;
    for (size_t i = 0; i < n; i++) {
      assert_int_equal(out[i].e.position, i + 1);
      snprintf(d, sizeof d, "%zu", i);
      assert_true(ev_data_is(&out[i].e, d));
      uint64_t *v = ev_stream_is(&out[i].e, "x-1")   ? &vx
                    : ev_stream_is(&out[i].e, "y-1") ? &vy
                                                      : &vz;
      assert_int_equal(out[i].e.version, ++*v);
    }
    assert_int_equal(vx, 200);
    assert_int_equal(vy, 200);
    assert_int_equal(vz, 200);
    evc_free(out, n);
    n = read_all(f->s, 300, 2, NULL, out, N);
    assert_int_equal(n, 2);
    assert_int_equal(out[0].e.position, 300);
    assert_int_equal(out[1].e.position, 301);
    evc_free(out, n);
    n = read_stream(f->s, "y-1", 0, ER_UNLIMITED, 1, out, N);
    assert_int_equal(n, 200);
    for (size_t i = 0; i < n; i++)
      assert_int_equal(out[i].e.version, 200 - i);
    evc_free(out, n);
    n = read_stream(f->s, "y-1", 255, 3, 0, out, N);
    assert_int_equal(n, 0);
    n = read_stream(f->s, "y-1", 127, 3, 0, out, N);
    assert_int_equal(n, 3);
    assert_int_equal(out[2].e.version, 129);
    evc_free(out, n);
    er_event one;
    void *mem = NULL;
    er_error err = fresh_err();
    assert_int_equal(er_event_at(f->s, 257, &one, &mem, &err), ER_OK);
    assert_int_equal(one.position, 257);
    assert_true(ev_data_is(&one, "256"));
    er_free(mem);
    er_close(f->s);
    f->s = tu_open(f->dir);
  }
}

/* More streams than the stream-head cache has slots, appended to in turns
 * with exact expected versions: every version the cache hands out after
 * evictions and refills must be the stored one. */
static void test_head_cache_many_streams(void **state) {
  fx *f = *state;
  enum { STREAMS = 6000, ROUNDS = 3 };
  char name[32];
  for (int r = 0; r < ROUNDS; r++) {
    for (int i = 0; i < STREAMS; i++) {
      int k = (i * 7919) % STREAMS, per = k % 3 + 1; /* versions differ */
      er_new_event ev[3];
      er_appended res;
      er_error err = fresh_err();
      int n = snprintf(name, sizeof name, "s-%d", k);
      for (int e = 0; e < per; e++) tu_event(&ev[e], "T", NULL, 0);
      assert_int_equal(er_append(f->s, name, (size_t)n, (int64_t)r * per, ev,
                                 (size_t)per, &res, &err),
                       ER_OK);
      assert_int_equal(res.version, (uint64_t)(r + 1) * per);
    }
  }
  for (int i = 0; i < STREAMS; i += 97) {
    snprintf(name, sizeof name, "s-%d", i);
    assert_int_equal(version_of(f->s, name), ROUNDS * (i % 3 + 1));
  }
  {
    er_new_event ev;
    er_appended res;
    er_error err = fresh_err();
    tu_event(&ev, "T", NULL, 0);
    assert_int_equal(er_append(f->s, "s-1", 3, 1, &ev, 1, &res, &err),
                     ER_WRONG_EXPECTED_VERSION);
    assert_int_equal(err.actual, ROUNDS * 2);
  }
}

static void test_reopen_continues(void **state) {
  fx *f = *state;
  fill_prefix_streams(f->s);
  er_close(f->s);
  f->s = NULL;
  f->s = tu_open(f->dir);
  assert_int_equal(er_last_position(f->s), 9);
  assert_int_equal(version_of(f->s, "a"), 4);
  assert_int_equal(version_of(f->s, "a-b"), 2);
  evc ev[16];
  size_t n = read_stream(f->s, "a", 0, ER_UNLIMITED, 0, ev, 16);
  assert_int_equal(n, 4);
  assert_true(ev_data_is(&ev[3].e, "a4"));
  evc_free(ev, n);

  er_appended r = ok1(f->s, "a", "T", "a5");
  assert_int_equal(r.version, 5);
  assert_int_equal(r.position, 10);
  r = ok1(f->s, "new", "T", "n1");
  assert_int_equal(r.version, 1);
  assert_int_equal(r.position, 11);
  er_error err = fresh_err();
  assert_wev(append1(f->s, "a-b", ER_NO_STREAM, "T", "x", &r, &err), &err,
             ER_NO_STREAM, 2);
  assert_int_equal(append1(f->s, "a-b", 2, "T", "ab3", &r, &err), ER_OK);
  assert_int_equal(r.version, 3);
  assert_int_equal(r.position, 12);

  /* twice, with a read-only open in between */
  er_close(f->s);
  f->s = NULL;
  er_options o;
  er_options_init(&o);
  o.read_only = 1;
  assert_int_equal(er_open(f->dir, &o, &f->s, &err), ER_OK);
  assert_int_equal(er_last_position(f->s), 12);
  er_close(f->s);
  f->s = tu_open(f->dir);
  r = ok1(f->s, "a", "T", "a6");
  assert_int_equal(r.version, 6);
  assert_int_equal(r.position, 13);
  n = read_all(f->s, 1, ER_UNLIMITED, NULL, ev, 16);
  assert_int_equal(n, 13);
  for (size_t i = 0; i < n; i++)
    assert_int_equal(ev[i].e.position, i + 1);
  evc_free(ev, n);
}

static void test_iter_outlives_close(void **state) {
  fx *f = *state;
  fill_prefix_streams(f->s);
  er_iter *a = NULL, *b = NULL, *c = NULL, *d = NULL;
  er_error err = fresh_err();
  assert_int_equal(er_read_stream(f->s, "a", 1, 0, ER_UNLIMITED, 0, &a, &err),
                   ER_OK);
  assert_int_equal(er_read_all(f->s, 0, ER_UNLIMITED, NULL, &b, &err), ER_OK);
  assert_int_equal(er_list_streams(f->s, "", 0, &c, &err), ER_OK);
  assert_int_equal(er_read_stream(f->s, "b", 1, 0, ER_UNLIMITED, 1, &d, &err),
                   ER_OK);
  er_event ev;
  assert_int_equal(er_iter_next(a, &ev, &err), ER_OK);
  assert_int_equal(er_iter_next(b, &ev, &err), ER_OK);
  er_iter_free(d); /* freed before the close: must not be touched by it */
  er_close(f->s);
  f->s = NULL;
  err = fresh_err();
  assert_fails(er_iter_next(a, &ev, &err), ER_INVALID, err);
  err = fresh_err();
  assert_fails(er_iter_next(b, &ev, &err), ER_INVALID, err);
  const char *id;
  size_t len;
  uint64_t v;
  err = fresh_err();
  assert_fails(er_iter_next_stream(c, &id, &len, &v, &err), ER_INVALID, err);
  assert_int_equal(er_iter_next(a, &ev, NULL), ER_INVALID);
  er_iter_free(a);
  er_iter_free(b);
  er_iter_free(c);
  /* the store opens again: nothing was left locked */
  f->s = tu_open(f->dir);
  assert_int_equal(er_last_position(f->s), 9);
}

/* After ER_NOT_FOUND, further calls keep returning ER_NOT_FOUND. */
static void test_iter_end_repeated(void **state) {
  fx *f = *state;
  fill_prefix_streams(f->s);
  er_error err = fresh_err();
  er_event ev;
  er_iter *it = NULL;
  /* forward and backward stream iterators, exhausted by their end */
  for (int backward = 0; backward < 2; backward++) {
    assert_int_equal(er_read_stream(f->s, "a", 1, 0, ER_UNLIMITED, backward,
                                    &it, &err),
                     ER_OK);
    for (int i = 0; i < 4; i++)
      assert_int_equal(er_iter_next(it, &ev, &err), ER_OK);
    for (int i = 0; i < 3; i++)
      assert_int_equal(er_iter_next(it, &ev, &err), ER_NOT_FOUND);
    er_iter_free(it);
  }
  /* a stream iterator exhausted by its count */
  assert_int_equal(er_read_stream(f->s, "a", 1, 0, 2, 0, &it, &err), ER_OK);
  assert_int_equal(er_iter_next(it, &ev, &err), ER_OK);
  assert_int_equal(er_iter_next(it, &ev, &err), ER_OK);
  assert_int_equal(er_iter_next(it, &ev, &err), ER_NOT_FOUND);
  assert_int_equal(er_iter_next(it, &ev, &err), ER_NOT_FOUND);
  er_iter_free(it);
  /* an empty stream */
  assert_int_equal(er_read_stream(f->s, "nope", 4, 0, ER_UNLIMITED, 0, &it,
                                  &err),
                   ER_OK);
  assert_int_equal(er_iter_next(it, &ev, &err), ER_NOT_FOUND);
  assert_int_equal(er_iter_next(it, &ev, &err), ER_NOT_FOUND);
  er_iter_free(it);
  /* the global log */
  assert_int_equal(er_read_all(f->s, 8, ER_UNLIMITED, NULL, &it, &err),
                   ER_OK);
  assert_int_equal(er_iter_next(it, &ev, &err), ER_OK);
  assert_int_equal(er_iter_next(it, &ev, &err), ER_OK);
  assert_int_equal(er_iter_next(it, &ev, &err), ER_NOT_FOUND);
  assert_int_equal(er_iter_next(it, &ev, &err), ER_NOT_FOUND);
  er_iter_free(it);
  /* the streams iterator */
  const char *id;
  size_t len;
  uint64_t v;
  assert_int_equal(er_list_streams(f->s, "a-", 2, &it, &err), ER_OK);
  assert_int_equal(er_iter_next_stream(it, &id, &len, &v, &err), ER_OK);
  assert_int_equal(er_iter_next_stream(it, &id, &len, &v, &err),
                   ER_NOT_FOUND);
  assert_int_equal(er_iter_next_stream(it, &id, &len, &v, &err),
                   ER_NOT_FOUND);
  er_iter_free(it);
  assert_int_equal(er_list_streams(f->s, "", 0, &it, &err), ER_OK);
  for (int i = 0; i < 4; i++)
    assert_int_equal(er_iter_next_stream(it, &id, &len, &v, &err), ER_OK);
  assert_int_equal(er_iter_next_stream(it, &id, &len, &v, &err),
                   ER_NOT_FOUND);
  assert_int_equal(er_iter_next_stream(it, &id, &len, &v, &err),
                   ER_NOT_FOUND);
  er_iter_free(it);
}

/* The usual retry: the same array again, ids now filled in by the first call. */
static void test_idem_generated_ids(void **state) {
  fx *f = *state;
  ok1(f->s, "x", "T", "0");
  er_new_event ev[2];
  tu_event(&ev[0], "A", "a", 1);
  tu_event(&ev[1], "B", "b", 1);
  er_appended r1, r2;
  er_error err = fresh_err();
  assert_int_equal(er_append(f->s, "s", 1, ER_NO_STREAM, ev, 2, &r1, &err),
                   ER_OK);
  assert_int_equal(ev[0].has_id, 1);
  assert_int_equal(er_append(f->s, "s", 1, ER_NO_STREAM, ev, 2, &r2, &err),
                   ER_OK);
  assert_replayed(&r2, r1.first_version, r1.version, r1.first_position,
                  r1.position);
  assert_unchanged(f->s, "s", 2, 3);
}

/* A non-NULL empty category is the category of "-1", not "no filter". */
static void test_read_all_empty_category(void **state) {
  fx *f = *state;
  static const log_read reads[] = {
      {"", 0, 1, ALL, "9"},
      {NULL, 0, 1, ALL, "1 2 3 4 5 6 7 8 9 10"},
  };
  fill_categories(f->s);
  check_log_reads(f->s, NULL, NULL, 0, reads, NROWS(reads));
}

static void test_sync_option(void **state) {
  fx *f = *state;
  er_close(f->s);
  f->s = NULL;
  er_options o;
  er_options_init(&o);
  o.sync = 1;
  er_error err = fresh_err();
  assert_int_equal(er_open(f->dir, &o, &f->s, &err), ER_OK);
  for (int i = 0; i < 5; i++)
    ok1(f->s, "s", "T", "synced");
  er_close(f->s);
  f->s = tu_open(f->dir);
  assert_int_equal(version_of(f->s, "s"), 5);
}

static void test_big_event_roundtrip(void **state) {
  fx *f = *state;
  size_t dlen = (size_t)1 << 20, mlen = 70000;
  unsigned char *data = malloc(dlen), *meta = malloc(mlen);
  assert_non_null(data);
  assert_non_null(meta);
  uint32_t x = 12345;
  for (size_t i = 0; i < dlen; i++) {
    x = x * 1103515245u + 12345u;
    data[i] = (unsigned char)(x >> 16);
  }
  for (size_t i = 0; i < mlen; i++)
    meta[i] = (unsigned char)(i * 7);
  er_new_event ev[2];
  tu_event(&ev[0], "Big", data, dlen);
  ev[0].metadata = meta;
  ev[0].metadata_len = mlen;
  tu_event(&ev[1], "Small", "s", 1);
  er_error err = fresh_err();
  assert_int_equal(er_append(f->s, "big-1", 5, ER_ANY, ev, 2, NULL, &err),
                   ER_OK);
  for (int round = 0; round < 2; round++) {
    evc out[4];
    size_t n = read_stream(f->s, "big-1", 0, ER_UNLIMITED, 0, out, 4);
    assert_int_equal(n, 2);
    assert_int_equal(out[0].e.data_len, dlen);
    assert_memory_equal(out[0].e.data, data, dlen);
    assert_int_equal(out[0].e.metadata_len, mlen);
    assert_memory_equal(out[0].e.metadata, meta, mlen);
    assert_true(ev_data_is(&out[1].e, "s"));
    evc_free(out, n);
    n = read_all(f->s, 1, ER_UNLIMITED, NULL, out, 4);
    assert_int_equal(n, 2);
    assert_memory_equal(out[0].e.data, data, dlen);
    evc_free(out, n);
    er_event one;
    void *mem = NULL;
    assert_int_equal(er_event_at(f->s, 1, &one, &mem, &err), ER_OK);
    assert_int_equal(one.data_len, dlen);
    assert_memory_equal(one.data, data, dlen);
    assert_memory_equal(one.metadata, meta, mlen);
    er_free(mem);
    er_close(f->s);
    f->s = tu_open(f->dir);
  }
  free(data);
  free(meta);
}

/* Replace, in every non-default column family, each value that contains
 * `marker` by `repl`.  Returns how many values were replaced. */
static int raw_replace_values(const char *dir, const char *marker,
                              const char *repl, size_t repl_len) {
  raw r;
  raw_open(&r, dir);
  rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
  rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
  int replaced = 0;
  for (size_t i = 0; i < r.n; i++) {
    if (r.h[i] == r.def)
      continue;
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(r.db, ro, r.h[i]);
    for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it);
         rocksdb_iter_next(it)) {
      size_t klen, vlen;
      const char *k = rocksdb_iter_key(it, &klen);
      const char *v = rocksdb_iter_value(it, &vlen);
      if (memmem(v, vlen, marker, strlen(marker)) == NULL)
        continue;
      char *err = NULL;
      rocksdb_put_cf(r.db, wo, r.h[i], k, klen, repl, repl_len, &err);
      assert_null(err);
      replaced++;
    }
    rocksdb_iter_destroy(it);
  }
  rocksdb_writeoptions_destroy(wo);
  rocksdb_readoptions_destroy(ro);
  raw_close(&r);
  return replaced;
}

static void test_corrupt_record(void **state) {
  fx *f = *state;
  ok1(f->s, "c-1", "T", "fine");
  ok1(f->s, "c-1", "T", "CORRUPT-ME-MARKER");
  ok1(f->s, "c-1", "T", "fine too");
  er_close(f->s);
  f->s = NULL;
  assert_true(raw_replace_values(f->dir, "CORRUPT-ME-MARKER", "zz", 2) >= 1);
  f->s = tu_open(f->dir);

  er_error err = fresh_err();
  er_event ev;
  void *mem = NULL;
  assert_fails(er_event_at(f->s, 2, &ev, &mem, &err), ER_CORRUPTION, err);
  assert_int_equal(err.position, 2);
  assert_int_equal(er_event_at(f->s, 1, &ev, &mem, &err), ER_OK);
  er_free(mem);
  assert_int_equal(er_event_at(f->s, 3, &ev, &mem, &err), ER_OK);
  er_free(mem);

  er_iter *it = NULL;
  assert_int_equal(er_read_all(f->s, 1, ER_UNLIMITED, NULL, &it, &err), ER_OK);
  assert_int_equal(er_iter_next(it, &ev, &err), ER_OK);
  assert_int_equal(ev.position, 1);
  err = fresh_err();
  assert_fails(er_iter_next(it, &ev, &err), ER_CORRUPTION, err);
  assert_int_equal(err.position, 2);
  er_iter_free(it);

  assert_int_equal(
      er_read_stream(f->s, "c-1", 3, 0, ER_UNLIMITED, 0, &it, &err), ER_OK);
  assert_int_equal(er_iter_next(it, &ev, &err), ER_OK);
  assert_int_equal(ev.version, 1);
  err = fresh_err();
  assert_fails(er_iter_next(it, &ev, &err), ER_CORRUPTION, err);
  er_iter_free(it);
}

/* An iterator whose count is used up still reports the closed store. */
static void test_iter_count_used_after_close(void **state) {
  fx *f = *state;
  fill_prefix_streams(f->s);
  er_iter *a = NULL, *b = NULL;
  er_error err = fresh_err();
  er_event ev;
  assert_int_equal(er_read_stream(f->s, "a", 1, 0, 1, 0, &a, &err), ER_OK);
  assert_int_equal(er_iter_next(a, &ev, &err), ER_OK);
  assert_int_equal(er_read_all(f->s, 1, 0, NULL, &b, &err), ER_OK);
  er_close(f->s);
  f->s = NULL;
  er_error err_a = fresh_err(), err_b = fresh_err();
  int rc_a = er_iter_next(a, &ev, &err_a);
  int rc_b = er_iter_next(b, &ev, &err_b);
  er_iter_free(a);
  er_iter_free(b);
  assert_fails(rc_a, ER_INVALID, err_a);
  assert_fails(rc_b, ER_INVALID, err_b);
}

/* ---- a writer in another process ----------------------------------------- */

static const char *self_exe = "/proc/self/exe"; /* argv[0] when it has a '/' */

/* Child mode: open `dir`, print "ready", wait for EOF on stdin, close. */
static int hold_lock(const char *dir) {
  er_store *s = NULL;
  er_error err;
  if (er_open(dir, NULL, &s, &err) != ER_OK) {
    fprintf(stderr, "child: %s\n", err.message);
    return 1;
  }
  printf("ready\n");
  fflush(stdout);
  char buf[16];
  while (fread(buf, 1, sizeof buf, stdin) > 0) {
  }
  er_close(s);
  return 0;
}

static void test_open_locked_other_process(void **state) {
  fx *f = *state;
  er_close(f->s);
  f->s = NULL;
  int to_child[2], from_child[2];
  assert_int_equal(pipe(to_child), 0);
  assert_int_equal(pipe(from_child), 0);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    dup2(to_child[0], 0);
    dup2(from_child[1], 1);
    close(to_child[1]);
    close(from_child[0]);
    execl(self_exe, "test_core", "--hold-lock", f->dir, (char *)NULL);
    _exit(127);
  }
  close(to_child[0]);
  close(from_child[1]);
  char line[16] = {0};
  ssize_t got = read(from_child[0], line, sizeof line - 1);
  int ready = got >= 5 && memcmp(line, "ready", 5) == 0;

  er_store *s = NULL;
  er_error err = fresh_err(), err_ro = fresh_err();
  int rc = ready ? er_open(f->dir, NULL, &s, &err) : -1;
  if (rc == ER_OK)
    er_close(s);
  er_options o;
  er_options_init(&o);
  o.read_only = 1;
  int rc_ro = ready ? er_open(f->dir, &o, &s, &err_ro) : -1;
  if (rc_ro == ER_OK)
    er_close(s);

  /* let the child close and exit before asserting anything */
  close(to_child[1]);
  int status = 0;
  pid_t waited = waitpid(pid, &status, 0);
  close(from_child[0]);
  assert_true(ready);
  assert_fails(rc, ER_LOCKED, err);
  assert_int_equal(rc_ro, ER_OK);
  assert_int_equal(waited, pid);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);
  f->s = tu_open(f->dir);
}

/* A test with a fresh store, or with a fresh empty directory only. */
#define WITH_STORE(t) cmocka_unit_test_setup_teardown(t, fx_setup, fx_teardown)
#define WITH_DIR(t) cmocka_unit_test_setup_teardown(t, fx_setup_dir, fx_teardown)

int main(int argc, char **argv) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_code_names),
      cmocka_unit_test(test_category),
      cmocka_unit_test(test_options_init),
      cmocka_unit_test(test_free_null),
      cmocka_unit_test(test_uuid_format_parse),
      cmocka_unit_test(test_uuid_parse_invalid),
      cmocka_unit_test(test_uuid7),
      WITH_DIR(test_open_existing_empty_dir),
      WITH_DIR(test_open_creates_missing_dir),
      WITH_DIR(test_open_create0_missing),
      WITH_DIR(test_open_read_only_missing),
      WITH_DIR(test_open_regular_file),
      WITH_STORE(test_open_locked),
      WITH_STORE(test_open_read_only_beside_writer),
      WITH_STORE(test_open_read_only_alone),
      WITH_STORE(test_format_marker_on_disk),
      WITH_STORE(test_format_mismatch),
      WITH_DIR(test_plain_rocksdb_not_store),
      WITH_DIR(test_interrupted_creation_finished),
      WITH_STORE(test_append_versions_positions),
      WITH_STORE(test_append_ids),
      WITH_STORE(test_generated_ids_increase),
      WITH_STORE(test_wait_idle),
      WITH_STORE(test_expected_any),
      WITH_STORE(test_expected_no_stream),
      WITH_STORE(test_expected_stream_exists),
      WITH_STORE(test_expected_exact),
      WITH_STORE(test_expected_invalid_sentinel),
      WITH_STORE(test_append_n_zero),
      WITH_STORE(test_append_stream_validation),
      WITH_STORE(test_append_type_validation),
      WITH_STORE(test_append_batch_atomic),
      WITH_STORE(test_append_max_event_size),
      WITH_STORE(test_append_default_max_event_size),
      WITH_STORE(test_idem_retry),
      WITH_STORE(test_idem_retry_later_append),
      WITH_STORE(test_idem_subset_and_order),
      WITH_STORE(test_idem_other_stream),
      WITH_STORE(test_idem_mixed),
      WITH_STORE(test_idem_twice_in_call),
      WITH_STORE(test_idem_after_reopen),
      WITH_STORE(test_read_stream_forward),
      WITH_STORE(test_read_stream_backward),
      WITH_STORE(test_read_stream_prefix_isolation),
      WITH_STORE(test_event_fields),
      WITH_STORE(test_time_non_decreasing),
      WITH_STORE(test_read_all),
      WITH_STORE(test_read_all_category),
      WITH_STORE(test_read_all_types),
      WITH_STORE(test_read_all_category_and_types),
      WITH_STORE(test_read_all_filter_copied),
      WITH_STORE(test_event_at),
      WITH_STORE(test_list_streams),
      WITH_STORE(test_list_streams_prefix),
      WITH_STORE(test_iter_kind_mismatch),
      WITH_STORE(test_empty_store),
      WITH_STORE(test_iterator_snapshot),
      WITH_STORE(test_interleaved_iterators),
      WITH_STORE(test_head_cache_many_streams),
      WITH_STORE(test_many_events_reopen),
      WITH_STORE(test_reopen_continues),
      WITH_STORE(test_iter_outlives_close),
      WITH_STORE(test_idem_generated_ids),
      WITH_STORE(test_read_all_empty_category),
      WITH_STORE(test_sync_option),
      WITH_STORE(test_big_event_roundtrip),
      WITH_STORE(test_corrupt_record),
      WITH_STORE(test_iter_count_used_after_close),
      WITH_STORE(test_open_locked_other_process),
      /* last: an implementation bug here may abort the process */
      WITH_STORE(test_iter_end_repeated),
  };
  if (argc == 3 && strcmp(argv[1], "--hold-lock") == 0)
    return hold_lock(argv[2]);
  if (argc >= 1 && strchr(argv[0], '/'))
    self_exe = argv[0];
  return cmocka_run_group_tests_name("eventrocks core", tests, NULL, NULL);
}
