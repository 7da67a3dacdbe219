/*
 * test_txn.c -- cmocka tests of the transactions and the key-value spaces of
 * the eventrocks C core (er_txn_*, er_get, er_scan, er_iter_next_kv).
 *
 * The section "Transactions" of core/include/eventrocks.h is the
 * specification: several appends and key-value writes commit atomically,
 * appends to one stream see each other, a failing commit writes nothing,
 * queued data is copied, idempotent retries work inside a transaction, the
 * spaces survive reopening and are visible read-only.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#define TU_STORE_FIXTURE /* fx, fx_setup, fx_teardown */
#include "test_util.h"

/* ------------------------------------------------------------------------ */
/* Fixtures and helpers                                                      */


/* Queue one event of `type` with string `data` to `stream`. */
static int tappend(er_txn *t, const char *stream, int64_t expected,
                   const char *type, const char *data, er_error *err) {
  er_new_event e;
  tu_event(&e, type, data, strlen(data));
  return er_txn_append(t, stream, strlen(stream), expected, &e, 1, err);
}

static void tappend_ok(er_txn *t, const char *stream, int64_t expected,
                       const char *type, const char *data) {
  er_error err = fresh_err();
  int rc = tappend(t, stream, expected, type, data, &err);
  if (rc != ER_OK)
    print_error("er_txn_append(%s): %d %s\n", stream, rc, err.message);
  assert_int_equal(rc, ER_OK);
}

static void put_ok(er_txn *t, er_space sp, const char *k, size_t kl,
                   const char *v, size_t vl) {
  er_error err = fresh_err();
  assert_int_equal(er_txn_put(t, sp, k, kl, v, vl, &err), ER_OK);
}

static void del_ok(er_txn *t, er_space sp, const char *k, size_t kl) {
  er_error err = fresh_err();
  assert_int_equal(er_txn_delete(t, sp, k, kl, &err), ER_OK);
}

static void delpfx_ok(er_txn *t, er_space sp, const char *k, size_t kl) {
  er_error err = fresh_err();
  int rc = er_txn_delete_prefix(t, sp, k, kl, &err);
  if (rc != ER_OK)
    print_error("er_txn_delete_prefix: %d %s\n", rc, err.message);
  assert_int_equal(rc, ER_OK);
}

/* Put the pairs in one transaction of its own. */
typedef struct kv {
  const char *k;
  size_t kl;
  const char *v;
  size_t vl;
} kv;
#define KV(k, v) {L(k), L(v)}

static void put_all(er_store *s, er_space sp, const kv *p, size_t n) {
  er_txn *t = begin(s);
  for (size_t i = 0; i < n; i++)
    put_ok(t, sp, p[i].k, p[i].kl, p[i].v, p[i].vl);
  commit_ok(t);
  er_txn_free(t);
}

static void get_is(er_store *s, er_space sp, const char *k, size_t kl,
                   const char *v, size_t vl) {
  void *val = (void *)&val; /* must be replaced */
  size_t len = 99999;
  er_error err = fresh_err();
  int rc = er_get(s, sp, k, kl, &val, &len, &err);
  if (rc != ER_OK)
    print_error("er_get(%d, %.*s): %d %s\n", (int)sp, (int)kl, k, rc,
                err.message);
  assert_int_equal(rc, ER_OK);
  assert_int_equal(len, vl);
  if (vl) {
    assert_non_null(val);
    assert_memory_equal(val, v, vl);
  }
  er_free(val);
}

static void get_absent(er_store *s, er_space sp, const char *k, size_t kl) {
  void *val = NULL;
  size_t len = 0;
  er_error err = fresh_err();
  int rc = er_get(s, sp, k, kl, &val, &len, &err);
  if (rc != ER_NOT_FOUND) {
    print_error("er_get(%d, %.*s): %d, expected not_found\n", (int)sp,
                (int)kl, k, rc);
    er_free(val);
  }
  assert_fails(rc, ER_NOT_FOUND, err);
  assert_null(val);
}

/* 1 when `key` is in `sp`, 0 when it is not (asserts no other outcome). */
static int is_present(er_store *s, er_space sp, const char *k, size_t kl) {
  void *val = NULL;
  size_t len = 0;
  er_error err = fresh_err();
  int rc = er_get(s, sp, k, kl, &val, &len, &err);
  assert_true(rc == ER_OK || rc == ER_NOT_FOUND);
  er_free(val);
  return rc == ER_OK;
}

/* A scan of `sp` with `prefix` returns exactly `exp`, in this order, then
 * ER_NOT_FOUND twice. */
static void assert_scan(er_store *s, er_space sp, const char *prefix,
                        size_t plen, const kv *exp, size_t n) {
  er_iter *it = NULL;
  er_error err = fresh_err();
  int rc = er_scan(s, sp, prefix, plen, &it, &err);
  assert_int_equal(rc, ER_OK);
  assert_non_null(it);
  size_t i = 0;
  const void *k, *v;
  size_t kl, vl;
  while ((rc = er_iter_next_kv(it, &k, &kl, &v, &vl, &err)) == ER_OK) {
    if (i >= n || kl != exp[i].kl || memcmp(k, exp[i].k, kl) != 0) {
      print_error("scan #%zu: unexpected key of %zu bytes (%.*s)\n", i, kl,
                  (int)kl, (const char *)k);
      fail();
    }
    assert_int_equal(vl, exp[i].vl);
    if (vl)
      assert_memory_equal(v, exp[i].v, vl);
    i++;
  }
  assert_int_equal(rc, ER_NOT_FOUND);
  if (i != n)
    print_error("scan returned %zu keys, expected %zu\n", i, n);
  assert_int_equal(i, n);
  assert_int_equal(er_iter_next_kv(it, &k, &kl, &v, &vl, &err), ER_NOT_FOUND);
  assert_int_equal(er_iter_next_kv(it, &k, &kl, &v, &vl, &err), ER_NOT_FOUND);
  er_iter_free(it);
}

/* Sort `p` into byte order of the keys (memcmp, shorter first on ties). */
static int kv_cmp(const void *a, const void *b) {
  const kv *x = a, *y = b;
  size_t n = x->kl < y->kl ? x->kl : y->kl;
  int c = memcmp(x->k, y->k, n);
  if (c)
    return c;
  return x->kl < y->kl ? -1 : x->kl > y->kl;
}

/* The pairs of `all` (sorted in place) whose key does not start with
 * `prefix`, into `out`; returns how many. */
static size_t kv_without(kv *all, size_t n, const char *prefix, size_t plen,
                         kv *out) {
  size_t m = 0;
  qsort(all, n, sizeof *all, kv_cmp);
  for (size_t i = 0; i < n; i++)
    if (!(all[i].kl >= plen && memcmp(all[i].k, prefix, plen) == 0))
      out[m++] = all[i];
  return m;
}



static void assert_result(const er_appended *r, uint64_t fv, uint64_t v,
                          uint64_t fp, uint64_t p, int replayed) {
  assert_non_null(r);
  assert_int_equal(r->first_version, fv);
  assert_int_equal(r->version, v);
  assert_int_equal(r->first_position, fp);
  assert_int_equal(r->position, p);
  assert_int_equal(r->replayed, replayed);
}




static void assert_event(er_store *s, uint64_t pos, const char *stream,
                         uint64_t version, const char *type,
                         const char *data) {
  void *mem = NULL;
  er_event ev = event_at(s, pos, &mem);
  assert_int_equal(ev.position, pos);
  assert_int_equal(ev.version, version);
  assert_int_equal(ev.stream_len, strlen(stream));
  assert_memory_equal(ev.stream, stream, ev.stream_len);
  assert_int_equal(ev.type_len, strlen(type));
  assert_memory_equal(ev.type, type, ev.type_len);
  assert_int_equal(ev.data_len, strlen(data));
  if (ev.data_len)
    assert_memory_equal(ev.data, data, ev.data_len);
  er_free(mem);
}

/* ------------------------------------------------------------------------ */
/* Appends                                                                    */

static void test_txn_three_streams(void **state) {
  fx *f = *state;
  er_store *s = f->s;
  ok1(s, "other", "T", "o"); /* position 1 */
  ok1(s, "b", "B1", "b1");   /* position 2, b at version 1 */
  int64_t before = tu_now_us();

  er_txn *t = begin(s);
  er_error err = fresh_err();
  er_new_event a[2], c[3];
  tu_event(&a[0], "A1", "a1", 2);
  tu_event(&a[1], "A2", "a2", 2);
  tu_event(&c[0], "C1", "c1", 2);
  tu_event(&c[1], "C2", "c2", 2);
  tu_event(&c[2], "C3", "c3", 2);
  assert_int_equal(er_txn_appends(t), 0);
  assert_int_equal(er_txn_append(t, L("a"), ER_NO_STREAM, a, 2, &err), ER_OK);
  tappend_ok(t, "b", 1, "B2", "b2");
  assert_int_equal(er_txn_append(t, L("c"), ER_NO_STREAM, c, 3, &err), ER_OK);
  assert_int_equal(er_txn_appends(t), 3);
  assert_null(er_txn_result(t, 0));
  /* nothing is written before the commit */
  assert_int_equal(er_last_position(s), 2);
  assert_int_equal(version_of(s, "a"), 0);
  assert_int_equal(version_of(s, "b"), 1);
  commit_ok(t);
  int64_t after = tu_now_us();
  assert_int_equal(er_txn_appends(t), 3);

  /* positions are contiguous in queue order; versions per stream */
  assert_result(er_txn_result(t, 0), 1, 2, 3, 4, 0);
  assert_result(er_txn_result(t, 1), 2, 2, 5, 5, 0);
  assert_result(er_txn_result(t, 2), 1, 3, 6, 8, 0);
  assert_null(er_txn_result(t, 3));
  assert_null(er_txn_result(t, SIZE_MAX));
  er_txn_free(t);

  assert_int_equal(er_last_position(s), 8);
  assert_int_equal(version_of(s, "a"), 2);
  assert_int_equal(version_of(s, "b"), 2);
  assert_int_equal(version_of(s, "c"), 3);
  assert_event(s, 3, "a", 1, "A1", "a1");
  assert_event(s, 4, "a", 2, "A2", "a2");
  assert_event(s, 5, "b", 2, "B2", "b2");
  assert_event(s, 6, "c", 1, "C1", "c1");
  assert_event(s, 7, "c", 2, "C2", "c2");
  assert_event(s, 8, "c", 3, "C3", "c3");
  assert_no_event(s, 9);

  /* generated ids are UUID v7 and distinct; one time for the whole commit */
  uint8_t ids[6][16];
  int64_t time0 = 0;
  for (uint64_t p = 3; p <= 8; p++) {
    void *mem = NULL;
    er_event ev = event_at(s, p, &mem);
    assert_true(is_uuid7(ev.id));
    memcpy(ids[p - 3], ev.id, 16);
    for (uint64_t q = 3; q < p; q++)
      assert_true(memcmp(ids[q - 3], ev.id, 16) != 0);
    if (p == 3)
      time0 = ev.time;
    assert_true(ev.time == time0);
    assert_true(ev.time >= before - 1000 && ev.time <= after + 1000);
    er_free(mem);
  }

  /* the stream reader agrees */
  er_iter *it = NULL;
  assert_int_equal(er_read_stream(s, L("c"), 0, ER_UNLIMITED, 0, &it, &err),
                   ER_OK);
  er_event ev;
  for (uint64_t v = 1; v <= 3; v++) {
    assert_int_equal(er_iter_next(it, &ev, &err), ER_OK);
    assert_int_equal(ev.version, v);
    assert_int_equal(ev.position, 5 + v);
  }
  assert_int_equal(er_iter_next(it, &ev, &err), ER_NOT_FOUND);
  er_iter_free(it);

  /* later appends go on from there */
  er_appended r = ok1(s, "a", "A3", "a3");
  assert_int_equal(r.version, 3);
  assert_int_equal(r.position, 9);
}

static void test_txn_same_stream_twice(void **state) {
  fx *f = *state;
  er_store *s = f->s;
  ok1(s, "x", "X", "x");
  er_txn *t = begin(s);
  er_new_event two[2];
  tu_event(&two[0], "A", "1", 1);
  tu_event(&two[1], "A", "2", 1);
  er_error err = fresh_err();
  assert_int_equal(er_txn_append(t, L("s"), ER_NO_STREAM, two, 2, &err),
                   ER_OK);
  tappend_ok(t, "s", 2, "A", "3");               /* exact: after the first */
  tappend_ok(t, "s", ER_STREAM_EXISTS, "A", "4"); /* exists: after the first */
  tappend_ok(t, "t", ER_NO_STREAM, "B", "1");
  tappend_ok(t, "s", ER_ANY, "A", "5");
  tappend_ok(t, "s", 5, "A", "6");
  commit_ok(t);
  assert_result(er_txn_result(t, 0), 1, 2, 2, 3, 0);
  assert_result(er_txn_result(t, 1), 3, 3, 4, 4, 0);
  assert_result(er_txn_result(t, 2), 4, 4, 5, 5, 0);
  assert_result(er_txn_result(t, 3), 1, 1, 6, 6, 0);
  assert_result(er_txn_result(t, 4), 5, 5, 7, 7, 0);
  assert_result(er_txn_result(t, 5), 6, 6, 8, 8, 0);
  er_txn_free(t);
  assert_int_equal(version_of(s, "s"), 6);
  assert_int_equal(version_of(s, "t"), 1);
  assert_int_equal(er_last_position(s), 8);
  const char *data[] = {"1", "2", "3", "4"};
  for (uint64_t v = 1; v <= 4; v++)
    assert_event(s, v + 1, "s", v, "A", data[v - 1]);
  assert_event(s, 6, "t", 1, "B", "1");
  assert_event(s, 7, "s", 5, "A", "5");
  assert_event(s, 8, "s", 6, "A", "6");
}

/* Everything `test_txn_conflict*` queued is absent. */
static void assert_nothing_written(er_store *s, uint64_t last) {
  assert_int_equal(er_last_position(s), last);
  assert_no_event(s, last + 1);
  get_absent(s, ER_SNAPSHOTS, L("k1"));
  get_absent(s, ER_CHECKPOINTS, L("k2"));
  get_absent(s, ER_VIEWS, L("k3"));
}

static void test_txn_conflict_same_stream(void **state) {
  fx *f = *state;
  er_store *s = f->s;
  ok1(s, "x", "X", "x");
  put_all(s, ER_VIEWS, (const kv[]){KV("gone", "still here")}, 1);
  er_txn *t = begin(s);
  put_ok(t, ER_SNAPSHOTS, L("k1"), L("v1"));
  tappend_ok(t, "s", ER_NO_STREAM, "A", "1");
  tappend_ok(t, "t", ER_NO_STREAM, "B", "1");
  put_ok(t, ER_CHECKPOINTS, L("k2"), L("v2"));
  tappend_ok(t, "s", ER_NO_STREAM, "A", "2"); /* the stream exists by then */
  put_ok(t, ER_VIEWS, L("k3"), L("v3"));
  del_ok(t, ER_VIEWS, L("gone"));
  er_error err = fresh_err();
  int rc = er_txn_commit(t, &err);
  assert_fails(rc, ER_WRONG_EXPECTED_VERSION, err);
  assert_int_equal(err.append_index, 2);
  assert_int_equal(err.expected, ER_NO_STREAM);
  assert_int_equal(err.actual, 1);
  assert_null(er_txn_result(t, 0));
  assert_null(er_txn_result(t, 1));
  assert_null(er_txn_result(t, 2));
  er_txn_free(t);

  assert_nothing_written(s, 1);
  assert_int_equal(version_of(s, "s"), 0);
  assert_int_equal(version_of(s, "t"), 0);
  get_is(s, ER_VIEWS, L("gone"), L("still here"));

  /* the store goes on without a gap, and "s" is still absent */
  er_appended r;
  er_new_event e;
  tu_event(&e, "A", "ok", 2);
  assert_int_equal(er_append(s, L("s"), ER_NO_STREAM, &e, 1, &r, &err), ER_OK);
  assert_result(&r, 1, 1, 2, 2, 0);
  t = begin(s);
  tappend_ok(t, "t", ER_NO_STREAM, "B", "1");
  commit_ok(t);
  assert_result(er_txn_result(t, 0), 1, 1, 3, 3, 0);
  er_txn_free(t);
}

static void test_txn_conflict_exact(void **state) {
  fx *f = *state;
  er_store *s = f->s;
  ok1(s, "s", "A", "1");
  ok1(s, "s", "A", "2");
  /* exact 2 then exact 2 again: the second sees version 3 */
  er_txn *t = begin(s);
  put_ok(t, ER_SNAPSHOTS, L("k1"), L("v1"));
  tappend_ok(t, "s", 2, "A", "3");
  tappend_ok(t, "s", 2, "A", "4");
  put_ok(t, ER_CHECKPOINTS, L("k2"), L("v2"));
  put_ok(t, ER_VIEWS, L("k3"), L("v3"));
  er_error err = fresh_err();
  assert_fails(er_txn_commit(t, &err), ER_WRONG_EXPECTED_VERSION, err);
  assert_int_equal(err.append_index, 1);
  assert_int_equal(err.expected, 2);
  assert_int_equal(err.actual, 3);
  er_txn_free(t);
  assert_nothing_written(s, 2);
  assert_int_equal(version_of(s, "s"), 2);

  /* the first append fails against the stored version */
  t = begin(s);
  tappend_ok(t, "s", 5, "A", "3");
  tappend_ok(t, "u", ER_NO_STREAM, "U", "1");
  put_ok(t, ER_SNAPSHOTS, L("k1"), L("v1"));
  err = fresh_err();
  assert_fails(er_txn_commit(t, &err), ER_WRONG_EXPECTED_VERSION, err);
  assert_int_equal(err.append_index, 0);
  assert_int_equal(err.expected, 5);
  assert_int_equal(err.actual, 2);
  er_txn_free(t);
  assert_nothing_written(s, 2);
  assert_int_equal(version_of(s, "u"), 0);

  /* ER_STREAM_EXISTS on an absent stream, as the last append */
  t = begin(s);
  tappend_ok(t, "u", ER_NO_STREAM, "U", "1");
  tappend_ok(t, "v", ER_STREAM_EXISTS, "V", "1");
  put_ok(t, ER_VIEWS, L("k3"), L("v3"));
  err = fresh_err();
  assert_fails(er_txn_commit(t, &err), ER_WRONG_EXPECTED_VERSION, err);
  assert_int_equal(err.append_index, 1);
  assert_int_equal(err.actual, 0);
  er_txn_free(t);
  assert_nothing_written(s, 2);
  assert_int_equal(version_of(s, "u"), 0);
  assert_int_equal(version_of(s, "v"), 0);
}

static void test_txn_append_copies(void **state) {
  fx *f = *state;
  er_store *s = f->s;
  static const char data0[] = "d\0ata-0\xff";
  static const char meta0[] = "\0meta";
  static const char data1[] = "second";
  char *stream = strdup("copied-1");
  char *type0 = strdup("Type0");
  char *type1 = strdup("Type1");
  char *d0 = malloc(sizeof data0), *m0 = malloc(sizeof meta0);
  char *d1 = malloc(sizeof data1);
  er_new_event *ev = calloc(2, sizeof *ev);
  assert_true(stream && type0 && type1 && d0 && m0 && d1 && ev);
  memcpy(d0, data0, sizeof data0);
  memcpy(m0, meta0, sizeof meta0);
  memcpy(d1, data1, sizeof data1);
  tu_event(&ev[0], type0, d0, sizeof data0 - 1);
  ev[0].metadata = m0;
  ev[0].metadata_len = sizeof meta0 - 1;
  set_id(&ev[0], 3);
  uint8_t id0[16];
  memcpy(id0, ev[0].id, 16);
  tu_event(&ev[1], type1, d1, sizeof data1 - 1);

  er_txn *t = begin(s);
  er_error err = fresh_err();
  assert_int_equal(er_txn_append(t, stream, strlen(stream), ER_NO_STREAM, ev,
                                 2, &err),
                   ER_OK);
  /* the caller's memory changes and goes before the commit */
  memset(stream, 'X', strlen(stream));
  memset(type0, 'X', strlen(type0));
  memset(type1, 'X', strlen(type1));
  memset(d0, 'X', sizeof data0);
  memset(m0, 'X', sizeof meta0);
  memset(d1, 'X', sizeof data1);
  memset(ev, 0x5a, 2 * sizeof *ev);
  free(stream);
  free(type0);
  free(type1);
  free(d0);
  free(m0);
  free(d1);
  free(ev);
  commit_ok(t);
  assert_result(er_txn_result(t, 0), 1, 2, 1, 2, 0);
  er_txn_free(t);

  assert_int_equal(version_of(s, "copied-1"), 2);
  void *mem = NULL;
  er_event e = event_at(s, 1, &mem);
  assert_int_equal(e.stream_len, 8);
  assert_memory_equal(e.stream, "copied-1", 8);
  assert_int_equal(e.type_len, 5);
  assert_memory_equal(e.type, "Type0", 5);
  assert_int_equal(e.data_len, sizeof data0 - 1);
  assert_memory_equal(e.data, data0, sizeof data0 - 1);
  assert_int_equal(e.metadata_len, sizeof meta0 - 1);
  assert_memory_equal(e.metadata, meta0, sizeof meta0 - 1);
  assert_memory_equal(e.id, id0, 16);
  er_free(mem);
  e = event_at(s, 2, &mem);
  assert_int_equal(e.version, 2);
  assert_memory_equal(e.type, "Type1", 5);
  assert_int_equal(e.data_len, sizeof data1 - 1);
  assert_memory_equal(e.data, data1, sizeof data1 - 1);
  assert_int_equal(e.metadata_len, 0);
  assert_true(is_uuid7(e.id));
  er_free(mem);
}

static void test_txn_kv_copies(void **state) {
  fx *f = *state;
  er_store *s = f->s;
  char *k = strdup("key"), *v = strdup("value");
  char *dk = strdup("dead"), *pk = strdup("pre");
  assert_true(k && v && dk && pk);
  put_all(s, ER_VIEWS,
          (const kv[]){KV("dead", "1"), KV("pre1", "2"), KV("prf", "3")}, 3);
  er_txn *t = begin(s);
  put_ok(t, ER_VIEWS, k, 3, v, 5);
  del_ok(t, ER_VIEWS, dk, 4);
  delpfx_ok(t, ER_VIEWS, pk, 3);
  memset(k, 'X', 3);
  memset(v, 'X', 5);
  memset(dk, 'X', 4);
  memset(pk, 'X', 3);
  free(k);
  free(v);
  free(dk);
  free(pk);
  commit_ok(t);
  er_txn_free(t);
  assert_scan(s, ER_VIEWS, NULL, 0,
              (const kv[]){KV("key", "value"), KV("prf", "3")}, 2);
}

/* ------------------------------------------------------------------------ */
/* Key-value spaces                                                           */

static void test_txn_kv_with_appends(void **state) {
  fx *f = *state;
  er_store *s = f->s;
  er_txn *t = begin(s);
  tappend_ok(t, "acc-1", ER_NO_STREAM, "Opened", "o");
  put_ok(t, ER_SNAPSHOTS, L("acc-1"), L("snap\0shot"));
  put_ok(t, ER_CHECKPOINTS, L("acc-1"), L("checkpoint"));
  put_ok(t, ER_VIEWS, L("balance\0acc-1"), L("100"));
  put_ok(t, ER_VIEWS, L("empty"), NULL, 0);
  put_ok(t, ER_VIEWS, L("\0\xff"), L("binary key"));
  tappend_ok(t, "acc-2", ER_NO_STREAM, "Opened", "o");
  commit_ok(t);
  assert_result(er_txn_result(t, 1), 1, 1, 2, 2, 0);
  er_txn_free(t);
  assert_int_equal(er_last_position(s), 2);

  /* one key, three spaces, three values */
  get_is(s, ER_SNAPSHOTS, L("acc-1"), L("snap\0shot"));
  get_is(s, ER_CHECKPOINTS, L("acc-1"), L("checkpoint"));
  get_absent(s, ER_VIEWS, L("acc-1"));
  get_is(s, ER_VIEWS, L("balance\0acc-1"), L("100"));
  get_absent(s, ER_VIEWS, L("balance"));
  get_absent(s, ER_VIEWS, L("balance\0acc-"));
  get_is(s, ER_VIEWS, L("empty"), NULL, 0);
  get_is(s, ER_VIEWS, L("\0\xff"), L("binary key"));
  get_absent(s, ER_VIEWS, L("\0"));
  get_absent(s, ER_SNAPSHOTS, L("acc-2"));
  /* keys of the log are not visible as a space */
  get_absent(s, ER_SNAPSHOTS, L("format"));

  /* delete one, overwrite another, leave the third */
  t = begin(s);
  del_ok(t, ER_SNAPSHOTS, L("acc-1"));
  put_ok(t, ER_CHECKPOINTS, L("acc-1"), L("checkpoint 2"));
  del_ok(t, ER_VIEWS, L("never existed"));
  tappend_ok(t, "acc-1", 1, "Deposited", "10");
  commit_ok(t);
  er_txn_free(t);
  get_absent(s, ER_SNAPSHOTS, L("acc-1"));
  get_is(s, ER_CHECKPOINTS, L("acc-1"), L("checkpoint 2"));
  get_is(s, ER_VIEWS, L("balance\0acc-1"), L("100"));
  assert_int_equal(er_last_position(s), 3);

  /* writes of one transaction apply in queue order */
  t = begin(s);
  put_ok(t, ER_VIEWS, L("a"), L("1"));
  del_ok(t, ER_VIEWS, L("a"));
  del_ok(t, ER_VIEWS, L("b"));
  put_ok(t, ER_VIEWS, L("b"), L("2"));
  put_ok(t, ER_VIEWS, L("c"), L("old"));
  put_ok(t, ER_VIEWS, L("c"), L("new"));
  commit_ok(t);
  er_txn_free(t);
  get_absent(s, ER_VIEWS, L("a"));
  get_is(s, ER_VIEWS, L("b"), L("2"));
  get_is(s, ER_VIEWS, L("c"), L("new"));
}

static void test_txn_kv_only(void **state) {
  fx *f = *state;
  er_store *s = f->s;
  /* on an empty store */
  er_txn *t = begin(s);
  put_ok(t, ER_CHECKPOINTS, L("proj"), L("0"));
  assert_int_equal(er_txn_appends(t), 0);
  commit_ok(t);
  assert_null(er_txn_result(t, 0));
  er_txn_free(t);
  assert_int_equal(er_last_position(s), 0);
  get_is(s, ER_CHECKPOINTS, L("proj"), L("0"));

  ok1(s, "s", "A", "1");
  ok1(s, "s", "A", "2");
  t = begin(s);
  put_ok(t, ER_CHECKPOINTS, L("proj"), L("2"));
  put_ok(t, ER_VIEWS, L("v"), L("x"));
  del_ok(t, ER_SNAPSHOTS, L("s"));
  commit_ok(t);
  er_txn_free(t);
  assert_int_equal(er_last_position(s), 2);
  assert_no_event(s, 3);
  get_is(s, ER_CHECKPOINTS, L("proj"), L("2"));
  get_is(s, ER_VIEWS, L("v"), L("x"));
  /* the next append continues right after */
  er_appended r = ok1(s, "s", "A", "3");
  assert_result(&r, 3, 3, 3, 3, 0);

  /* an empty transaction commits and changes nothing */
  t = begin(s);
  commit_ok(t);
  assert_int_equal(er_txn_appends(t), 0);
  er_txn_free(t);
  assert_int_equal(er_last_position(s), 3);
}

/* Keys for the prefix deletions; values are the keys' names. */
static const kv prefix_keys[] = {
    KV("p", "p"),
    KV("p\0", "p0"),
    KV("p\0a", "p0a"),
    KV("p\0b", "p0b"),
    KV("p\0\0", "p00"),
    KV("p\0\xff", "p0ff"),
    KV("p\1", "p1"),
    KV("p\1a", "p1a"),
    KV("o\xff", "off"),
    KV("a", "a"),
    KV("aa", "aa"),
    KV("ab", "ab"),
    KV("abc", "abc"),
    KV("ab\0", "ab0"),
    KV("ab\xff\xff", "abffff"),
    KV("ac", "ac"),
    KV("b", "b"),
    KV("ba", "ba"),
    KV("a\xff", "aff"),
    KV("a\xff\1", "aff1"),
    KV("a\xfe\xff", "afeff"),
    KV("\xfe", "fe"),
    KV("\xfe\xff", "feff"),
    KV("\xff", "ff"),
    KV("\xff\0", "ff0"),
    KV("\xff\xfe", "fffe"),
    KV("\xff\xff", "ffff"),
    KV("\xff\xff\0", "ffff0"),
    KV("\xff\xffz", "ffffz"),
    KV("\xff\xff\xff", "ffffff"),
    KV("\xff\xff\xff\xff\xff", "ff*5"),
};
#define N_PREFIX_KEYS (sizeof prefix_keys / sizeof prefix_keys[0])

/* With every key of prefix_keys in VIEWS and SNAPSHOTS, delete `prefix`
 * from VIEWS (together with an append) and check what is left. */
static void check_delete_prefix(er_store *s, const char *prefix,
                                size_t plen) {
  kv all[N_PREFIX_KEYS], left[N_PREFIX_KEYS];
  memcpy(all, prefix_keys, sizeof all);
  size_t n = kv_without(all, N_PREFIX_KEYS, prefix, plen, left);
  assert_true(n < N_PREFIX_KEYS); /* the prefix matches something */

  put_all(s, ER_VIEWS, prefix_keys, N_PREFIX_KEYS);
  put_all(s, ER_SNAPSHOTS, prefix_keys, N_PREFIX_KEYS);
  uint64_t last = er_last_position(s);
  er_txn *t = begin(s);
  delpfx_ok(t, ER_VIEWS, prefix, plen);
  tappend_ok(t, "s", ER_ANY, "Deleted", "x");
  commit_ok(t);
  er_txn_free(t);
  assert_int_equal(er_last_position(s), last + 1);

  assert_scan(s, ER_VIEWS, NULL, 0, left, n);
  for (size_t i = 0; i < N_PREFIX_KEYS; i++) {
    const kv *p = &prefix_keys[i];
    if (p->kl >= plen && memcmp(p->k, prefix, plen) == 0)
      get_absent(s, ER_VIEWS, p->k, p->kl);
    else
      get_is(s, ER_VIEWS, p->k, p->kl, p->v, p->vl);
  }
  /* another space is untouched */
  assert_scan(s, ER_SNAPSHOTS, NULL, 0, all, N_PREFIX_KEYS);

  /* deleting the same prefix again is harmless */
  t = begin(s);
  delpfx_ok(t, ER_VIEWS, prefix, plen);
  commit_ok(t);
  er_txn_free(t);
  assert_scan(s, ER_VIEWS, NULL, 0, left, n);
}

static void test_txn_delete_prefix_nul(void **state) {
  fx *f = *state;
  check_delete_prefix(f->s, L("p\0"));
  check_delete_prefix(f->s, L("p\1"));
  check_delete_prefix(f->s, L("p"));
}

static void test_txn_delete_prefix_ab(void **state) {
  fx *f = *state;
  check_delete_prefix(f->s, L("abc"));
  check_delete_prefix(f->s, L("ab"));
  check_delete_prefix(f->s, L("b"));
  check_delete_prefix(f->s, L("a"));
}

static void test_txn_delete_prefix_trailing_ff(void **state) {
  fx *f = *state;
  check_delete_prefix(f->s, L("a\xff"));
  check_delete_prefix(f->s, L("\xfe"));
  check_delete_prefix(f->s, L("\xff\0"));
}

static void test_txn_delete_prefix_all_ff(void **state) {
  fx *f = *state;
  check_delete_prefix(f->s, L("\xff\xff\xff"));
  check_delete_prefix(f->s, L("\xff\xff"));
  check_delete_prefix(f->s, L("\xff"));
}

static void test_txn_delete_prefix_nothing_matches(void **state) {
  fx *f = *state;
  er_store *s = f->s;
  put_all(s, ER_VIEWS, prefix_keys, N_PREFIX_KEYS);
  kv all[N_PREFIX_KEYS];
  memcpy(all, prefix_keys, sizeof all);
  qsort(all, N_PREFIX_KEYS, sizeof *all, kv_cmp);
  er_txn *t = begin(s);
  delpfx_ok(t, ER_VIEWS, L("zz"));
  delpfx_ok(t, ER_VIEWS, L("\xff\xff\xff\xff\xff\xff"));
  delpfx_ok(t, ER_VIEWS, L("p\2"));
  delpfx_ok(t, ER_CHECKPOINTS, L("\xff"));
  commit_ok(t);
  er_txn_free(t);
  assert_scan(s, ER_VIEWS, NULL, 0, all, N_PREFIX_KEYS);
}

/* A put queued before a prefix deletion in the same transaction is deleted
 * with the stored keys, and one queued after it survives -- whichever way
 * the prefix is implemented. */
static void check_put_then_delete_prefix(er_store *s, const char *prefix,
                                         size_t plen) {
  char key[16], key2[16];
  assert_true(plen + 1 < sizeof key);
  memcpy(key, prefix, plen);
  key[plen] = 'q';
  memcpy(key2, prefix, plen);
  key2[plen] = 'r';
  put_all(s, ER_VIEWS, (const kv[]){{key2, plen + 1, L("stored")}}, 1);
  er_txn *t = begin(s);
  put_ok(t, ER_VIEWS, key, plen + 1, L("queued before"));
  put_ok(t, ER_VIEWS, prefix, plen, L("exact, queued before"));
  delpfx_ok(t, ER_VIEWS, prefix, plen);
  put_ok(t, ER_VIEWS, key2, plen + 1, L("queued after"));
  commit_ok(t);
  er_txn_free(t);
  int exact_left = is_present(s, ER_VIEWS, prefix, plen);
  int key_left = is_present(s, ER_VIEWS, key, plen + 1);
  if (exact_left || key_left)
    print_error("left after the prefix deletion:%s%s\n",
                exact_left ? " the prefix itself" : "",
                key_left ? " prefix+'q'" : "");
  assert_false(exact_left || key_left);
  get_is(s, ER_VIEWS, key2, plen + 1, L("queued after"));
}

static void test_txn_delete_prefix_queued_put(void **state) {
  fx *f = *state;
  check_put_then_delete_prefix(f->s, L("ab"));
  check_put_then_delete_prefix(f->s, L("p\0"));
}

static void test_txn_delete_prefix_queued_put_ff(void **state) {
  fx *f = *state;
  check_put_then_delete_prefix(f->s, L("\xff\xff"));
}

/* The prefix deletion applies to the keys there are at commit time, also
 * those another transaction wrote after it was queued. */
static void check_delete_prefix_at_commit(er_store *s, const char *prefix,
                                          size_t plen) {
  char key[16];
  assert_true(plen + 1 < sizeof key);
  memcpy(key, prefix, plen);
  key[plen] = 'n';
  put_all(s, ER_VIEWS, (const kv[]){{prefix, plen, L("old")}}, 1);
  er_txn *t = begin(s);
  delpfx_ok(t, ER_VIEWS, prefix, plen);
  put_all(s, ER_VIEWS, (const kv[]){{key, plen + 1, L("new")}}, 1);
  commit_ok(t);
  er_txn_free(t);
  get_absent(s, ER_VIEWS, prefix, plen);
  get_absent(s, ER_VIEWS, key, plen + 1);
}

static void test_txn_delete_prefix_at_commit(void **state) {
  fx *f = *state;
  check_delete_prefix_at_commit(f->s, L("ab"));
}

static void test_txn_delete_prefix_at_commit_ff(void **state) {
  fx *f = *state;
  check_delete_prefix_at_commit(f->s, L("\xff\xff"));
}

/* ------------------------------------------------------------------------ */
/* Scans                                                                      */

static void test_scan(void **state) {
  fx *f = *state;
  er_store *s = f->s;
  static const kv keys[] = {
      KV("b", "vb"),       KV("a\0x", "va0x"), KV("ab", "vab"),
      KV("a", "va"),       KV("\x80", "v80"),  KV("a\1", "va1"),
      KV("a\0", "va0"),    KV("\xff", "vff"),  KV("A", "vA"),
      KV("\xff\xff", "vffff"), KV("\1", "v1"), KV("aa\xff", "vaaff"),
  };
  enum { N = sizeof keys / sizeof keys[0] };
  put_all(s, ER_CHECKPOINTS, keys, N);
  /* the same keys with other values elsewhere */
  put_all(s, ER_VIEWS, (const kv[]){KV("a", "views-a"), KV("c", "views-c")},
          2);

  /* byte order, unsigned: \1 < A < a < ... < \x80 < \xff */
  static const kv sorted[] = {
      KV("\1", "v1"),   KV("A", "vA"),       KV("a", "va"),
      KV("a\0", "va0"), KV("a\0x", "va0x"),  KV("a\1", "va1"),
      KV("aa\xff", "vaaff"), KV("ab", "vab"), KV("b", "vb"),
      KV("\x80", "v80"), KV("\xff", "vff"),   KV("\xff\xff", "vffff"),
  };
  assert_scan(s, ER_CHECKPOINTS, NULL, 0, sorted, N);
  assert_scan(s, ER_CHECKPOINTS, "", 0, sorted, N);
  assert_scan(s, ER_CHECKPOINTS, L("a"), sorted + 2, 6);
  assert_scan(s, ER_CHECKPOINTS, L("a\0"), sorted + 3, 2);
  assert_scan(s, ER_CHECKPOINTS, L("a\0x"), sorted + 4, 1);
  assert_scan(s, ER_CHECKPOINTS, L("a\1"), sorted + 5, 1);
  assert_scan(s, ER_CHECKPOINTS, L("aa"), sorted + 6, 1);
  assert_scan(s, ER_CHECKPOINTS, L("aa\xff"), sorted + 6, 1);
  assert_scan(s, ER_CHECKPOINTS, L("b"), sorted + 8, 1);
  assert_scan(s, ER_CHECKPOINTS, L("\xff"), sorted + 10, 2);
  assert_scan(s, ER_CHECKPOINTS, L("\xff\xff"), sorted + 11, 1);
  assert_scan(s, ER_CHECKPOINTS, L("\xff\xff\xff"), NULL, 0);
  assert_scan(s, ER_CHECKPOINTS, L("zz"), NULL, 0);
  assert_scan(s, ER_CHECKPOINTS, L("a\2"), NULL, 0);
  assert_scan(s, ER_CHECKPOINTS, L("B"), NULL, 0);
  assert_scan(s, ER_VIEWS, NULL, 0,
              (const kv[]){KV("a", "views-a"), KV("c", "views-c")}, 2);
  assert_scan(s, ER_VIEWS, L("a"), (const kv[]){KV("a", "views-a")}, 1);
  /* an empty space */
  assert_scan(s, ER_SNAPSHOTS, NULL, 0, NULL, 0);
  assert_scan(s, ER_SNAPSHOTS, L("a"), NULL, 0);
  /* events are not in any space */
  ok1(s, "a-1", "T", "x");
  assert_scan(s, ER_SNAPSHOTS, NULL, 0, NULL, 0);
  assert_scan(s, ER_VIEWS, NULL, 0,
              (const kv[]){KV("a", "views-a"), KV("c", "views-c")}, 2);
}

static void test_iter_kinds(void **state) {
  fx *f = *state;
  er_store *s = f->s;
  ok1(s, "a-1", "T", "x");
  put_all(s, ER_VIEWS, (const kv[]){KV("a", "1")}, 1);

  er_iter *it = NULL;
  er_error err = fresh_err();
  er_event ev;
  const void *k, *v;
  size_t kl, vl;
  assert_int_equal(er_scan(s, ER_VIEWS, NULL, 0, &it, &err), ER_OK);
  err = fresh_err();
  assert_fails(er_iter_next(it, &ev, &err), ER_INVALID, err);
  const char *sid;
  size_t sl;
  uint64_t ver;
  err = fresh_err();
  assert_fails(er_iter_next_stream(it, &sid, &sl, &ver, &err), ER_INVALID,
               err);
  /* still usable as a scan */
  assert_int_equal(er_iter_next_kv(it, &k, &kl, &v, &vl, &err), ER_OK);
  assert_memory_equal(k, "a", 1);
  assert_int_equal(er_iter_next_kv(it, &k, &kl, &v, &vl, &err), ER_NOT_FOUND);
  err = fresh_err();
  assert_fails(er_iter_next(it, &ev, &err), ER_INVALID, err);
  er_iter_free(it);

  assert_int_equal(er_read_stream(s, L("a-1"), 0, ER_UNLIMITED, 0, &it, &err),
                   ER_OK);
  err = fresh_err();
  assert_fails(er_iter_next_kv(it, &k, &kl, &v, &vl, &err), ER_INVALID, err);
  assert_int_equal(er_iter_next(it, &ev, &err), ER_OK);
  assert_int_equal(ev.version, 1);
  er_iter_free(it);

  assert_int_equal(er_read_all(s, 0, ER_UNLIMITED, NULL, &it, &err), ER_OK);
  err = fresh_err();
  assert_fails(er_iter_next_kv(it, &k, &kl, &v, &vl, &err), ER_INVALID, err);
  er_iter_free(it);

  assert_int_equal(er_list_streams(s, NULL, 0, &it, &err), ER_OK);
  err = fresh_err();
  assert_fails(er_iter_next_kv(it, &k, &kl, &v, &vl, &err), ER_INVALID, err);
  er_iter_free(it);

  /* a scan iterator whose store is closed reports ER_INVALID */
  er_close(f->s);
  f->s = tu_open(f->dir);
  assert_int_equal(er_scan(f->s, ER_VIEWS, NULL, 0, &it, &err), ER_OK);
  er_close(f->s);
  f->s = NULL;
  err = fresh_err();
  assert_fails(er_iter_next_kv(it, &k, &kl, &v, &vl, &err), ER_INVALID, err);
  er_iter_free(it);
  f->s = tu_open(f->dir);
}

/* ------------------------------------------------------------------------ */
/* Lifecycle and invalid input                                                */

static void test_txn_commit_once(void **state) {
  fx *f = *state;
  er_store *s = f->s;
  er_txn *t = begin(s);
  tappend_ok(t, "s", ER_NO_STREAM, "A", "1");
  put_ok(t, ER_VIEWS, L("k"), L("v"));
  assert_null(er_txn_result(t, 0));
  assert_null(er_txn_result(t, 1));
  commit_ok(t);
  assert_non_null(er_txn_result(t, 0));
  assert_null(er_txn_result(t, 1));

  er_error err = fresh_err();
  assert_fails(er_txn_commit(t, &err), ER_INVALID, err);
  assert_int_equal(er_txn_commit(t, NULL), ER_INVALID);
  err = fresh_err();
  assert_fails(tappend(t, "s", ER_ANY, "A", "2", &err), ER_INVALID, err);
  err = fresh_err();
  assert_fails(er_txn_put(t, ER_VIEWS, L("k2"), L("v"), &err), ER_INVALID,
               err);
  err = fresh_err();
  assert_fails(er_txn_delete(t, ER_VIEWS, L("k"), &err), ER_INVALID, err);
  err = fresh_err();
  assert_fails(er_txn_delete_prefix(t, ER_VIEWS, L("k"), &err), ER_INVALID,
               err);
  /* the result survives the refused calls */
  assert_int_equal(er_txn_appends(t), 1);
  assert_result(er_txn_result(t, 0), 1, 1, 1, 1, 0);
  er_txn_free(t);
  assert_int_equal(er_last_position(s), 1);
  assert_int_equal(version_of(s, "s"), 1);
  get_is(s, ER_VIEWS, L("k"), L("v"));
  get_absent(s, ER_VIEWS, L("k2"));
}

static void test_txn_failed_commit_final(void **state) {
  fx *f = *state;
  er_store *s = f->s;
  ok1(s, "s", "A", "1");
  er_txn *t = begin(s);
  tappend_ok(t, "t", ER_NO_STREAM, "B", "1");
  tappend_ok(t, "s", ER_NO_STREAM, "A", "2");
  er_error err = fresh_err();
  assert_fails(er_txn_commit(t, &err), ER_WRONG_EXPECTED_VERSION, err);
  assert_int_equal(err.append_index, 1);
  assert_null(er_txn_result(t, 0));
  assert_null(er_txn_result(t, 1));
  assert_null(er_txn_result(t, 2));
  /* a failed transaction cannot be retried or extended */
  err = fresh_err();
  assert_fails(er_txn_commit(t, &err), ER_INVALID, err);
  err = fresh_err();
  assert_fails(tappend(t, "u", ER_ANY, "U", "1", &err), ER_INVALID, err);
  err = fresh_err();
  assert_fails(er_txn_put(t, ER_VIEWS, L("k"), L("v"), &err), ER_INVALID,
               err);
  assert_null(er_txn_result(t, 0));
  er_txn_free(t);
  assert_int_equal(er_last_position(s), 1);
  assert_int_equal(version_of(s, "t"), 0);
  get_absent(s, ER_VIEWS, L("k"));
}

static void test_txn_bad_space_and_key(void **state) {
  fx *f = *state;
  er_store *s = f->s;
  put_all(s, ER_VIEWS, (const kv[]){KV("k", "v")}, 1);
  er_txn *t = begin(s);
  const er_space bad[] = {(er_space)7, (er_space)ER_SPACE_COUNT,
                          (er_space)-1, (er_space)1000000};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    er_error err = fresh_err();
    assert_fails(er_txn_put(t, bad[i], L("k"), L("v"), &err), ER_INVALID,
                 err);
    err = fresh_err();
    assert_fails(er_txn_delete(t, bad[i], L("k"), &err), ER_INVALID, err);
    err = fresh_err();
    assert_fails(er_txn_delete_prefix(t, bad[i], L("k"), &err), ER_INVALID,
                 err);
    void *val = NULL;
    size_t vl = 0;
    err = fresh_err();
    assert_fails(er_get(s, bad[i], L("k"), &val, &vl, &err), ER_INVALID, err);
    assert_null(val);
    er_iter *it = (er_iter *)&val; /* must be reset */
    err = fresh_err();
    assert_fails(er_scan(s, bad[i], L("k"), &it, &err), ER_INVALID, err);
    assert_null(it);
    assert_int_equal(er_txn_put(t, bad[i], L("k"), L("v"), NULL), ER_INVALID);
  }
  /* empty keys and prefixes */
  er_error err = fresh_err();
  assert_fails(er_txn_put(t, ER_VIEWS, "", 0, L("v"), &err), ER_INVALID, err);
  err = fresh_err();
  assert_fails(er_txn_put(t, ER_SNAPSHOTS, "k", 0, L("v"), &err), ER_INVALID,
               err);
  err = fresh_err();
  assert_fails(er_txn_delete(t, ER_VIEWS, "k", 0, &err), ER_INVALID, err);
  err = fresh_err();
  assert_fails(er_txn_delete_prefix(t, ER_VIEWS, "k", 0, &err), ER_INVALID,
               err);
  err = fresh_err();
  assert_fails(er_txn_delete_prefix(t, ER_VIEWS, NULL, 0, &err), ER_INVALID,
               err);
  /* keys up to ER_MAX_KEY_LEN bytes */
  char *longk = malloc(ER_MAX_KEY_LEN + 1);
  assert_non_null(longk);
  memset(longk, 'z', ER_MAX_KEY_LEN + 1);
  err = fresh_err();
  assert_fails(er_txn_put(t, ER_VIEWS, longk, ER_MAX_KEY_LEN + 1, L("v"), &err),
               ER_INVALID, err);
  err = fresh_err();
  assert_fails(er_txn_delete(t, ER_VIEWS, longk, ER_MAX_KEY_LEN + 1, &err),
               ER_INVALID, err);
  err = fresh_err();
  assert_fails(er_txn_delete_prefix(t, ER_VIEWS, longk, ER_MAX_KEY_LEN + 1,
                                    &err),
               ER_INVALID, err);
  put_ok(t, ER_SNAPSHOTS, longk, ER_MAX_KEY_LEN, L("longest"));
  /* the transaction is still usable, and the refused calls queued nothing */
  put_ok(t, ER_VIEWS, L("k2"), L("v2"));
  commit_ok(t);
  er_txn_free(t);
  assert_scan(s, ER_VIEWS, NULL, 0,
              (const kv[]){KV("k", "v"), KV("k2", "v2")}, 2);
  get_is(s, ER_SNAPSHOTS, longk, ER_MAX_KEY_LEN, L("longest"));
  free(longk);
}

static void test_txn_invalid_appends(void **state) {
  fx *f = *state;
  er_store *s = f->s;
  er_txn *t = begin(s);
  tappend_ok(t, "good-1", ER_NO_STREAM, "A", "1");
  er_new_event e;
  tu_event(&e, "T", "x", 1);
  er_error err = fresh_err();
  /* empty stream */
  assert_fails(er_txn_append(t, "", 0, ER_ANY, &e, 1, &err), ER_INVALID, err);
  /* stream with a NUL, too long a stream */
  err = fresh_err();
  assert_fails(er_txn_append(t, L("a\0b"), ER_ANY, &e, 1, &err), ER_INVALID,
               err);
  char *longs = malloc(ER_MAX_STREAM_LEN + 1);
  assert_non_null(longs);
  memset(longs, 's', ER_MAX_STREAM_LEN + 1);
  err = fresh_err();
  assert_fails(er_txn_append(t, longs, ER_MAX_STREAM_LEN + 1, ER_ANY, &e, 1,
                             &err),
               ER_INVALID, err);
  free(longs);
  /* n == 0 */
  err = fresh_err();
  assert_fails(er_txn_append(t, L("s"), ER_ANY, &e, 0, &err), ER_INVALID, err);
  /* empty type, NULL type, type with a NUL; in the second event */
  er_new_event two[2];
  tu_event(&two[0], "T", "x", 1);
  tu_event(&two[1], "T", "x", 1);
  two[1].type_len = 0;
  err = fresh_err();
  assert_fails(er_txn_append(t, L("s"), ER_ANY, two, 2, &err), ER_INVALID,
               err);
  two[1].type = NULL;
  two[1].type_len = 1;
  err = fresh_err();
  assert_fails(er_txn_append(t, L("s"), ER_ANY, two, 2, &err), ER_INVALID,
               err);
  tu_event(&two[1], "T", "x", 1);
  two[1].type = "T\0U";
  two[1].type_len = 3;
  err = fresh_err();
  assert_fails(er_txn_append(t, L("s"), ER_ANY, two, 2, &err), ER_INVALID,
               err);
  /* NULL data with a length */
  tu_event(&two[1], "T", NULL, 4);
  err = fresh_err();
  assert_fails(er_txn_append(t, L("s"), ER_ANY, two, 2, &err), ER_INVALID,
               err);
  /* an expectation below the sentinels */
  err = fresh_err();
  assert_fails(er_txn_append(t, L("s"), -4, &e, 1, &err), ER_INVALID, err);
  assert_int_equal(er_txn_append(t, L("s"), INT64_MIN, &e, 1, NULL),
                   ER_INVALID);
  /* too big an event */
  er_new_event big;
  char *bigdata = malloc(ER_DEFAULT_MAX_EVENT_SIZE + 1);
  assert_non_null(bigdata);
  memset(bigdata, 'b', ER_DEFAULT_MAX_EVENT_SIZE + 1);
  tu_event(&big, "Big", bigdata, ER_DEFAULT_MAX_EVENT_SIZE + 1);
  err = fresh_err();
  assert_fails(er_txn_append(t, L("s"), ER_ANY, &big, 1, &err), ER_INVALID,
               err);
  free(bigdata);

  /* only the valid appends are queued; the transaction still works */
  assert_int_equal(er_txn_appends(t), 1);
  tappend_ok(t, "good-2", ER_NO_STREAM, "B", "1");
  assert_int_equal(er_txn_appends(t), 2);
  commit_ok(t);
  assert_result(er_txn_result(t, 0), 1, 1, 1, 1, 0);
  assert_result(er_txn_result(t, 1), 1, 1, 2, 2, 0);
  assert_null(er_txn_result(t, 2));
  er_txn_free(t);
  assert_int_equal(er_last_position(s), 2);
  assert_int_equal(version_of(s, "s"), 0);
  assert_event(s, 1, "good-1", 1, "A", "1");
  assert_event(s, 2, "good-2", 1, "B", "1");
}

static void test_txn_read_only(void **state) {
  fx *f = *state;
  er_store *ro = tu_open_ro(f->dir);
  er_txn *t = (er_txn *)&t; /* must be reset */
  er_error err = fresh_err();
  assert_fails(er_txn_begin(ro, &t, &err), ER_INVALID, err);
  assert_null(t);
  er_close(ro);
  /* alone, without the writer */
  er_close(f->s);
  f->s = NULL;
  ro = tu_open_ro(f->dir);
  t = (er_txn *)&t;
  err = fresh_err();
  assert_fails(er_txn_begin(ro, &t, &err), ER_INVALID, err);
  assert_null(t);
  er_close(ro);
  f->s = tu_open(f->dir);
}

/* ------------------------------------------------------------------------ */
/* Event ids                                                                  */

static void make_ids(er_new_event *ev, size_t n, uint8_t seed) {
  static const char *const types[] = {"A", "B", "C", "D"};
  for (size_t i = 0; i < n; i++) {
    tu_event(&ev[i], types[i % 4], "d", 1);
    set_id(&ev[i], (uint8_t)(seed + i));
  }
}

static void test_txn_idem_retry(void **state) {
  fx *f = *state;
  er_store *s = f->s;
  ok1(s, "other", "T", "o"); /* position 1 */
  er_new_event ev[3];
  make_ids(ev, 3, 1);
  er_appended r;
  er_error err = fresh_err();
  assert_int_equal(er_append(s, L("s"), ER_NO_STREAM, ev, 3, &r, &err), ER_OK);
  assert_result(&r, 1, 3, 2, 4, 0);
  ok1(s, "other", "T", "o2"); /* position 5 */

  er_txn *t = begin(s);
  er_new_event again[3], fresh[1];
  make_ids(again, 3, 1);
  make_ids(fresh, 1, 9);
  assert_int_equal(er_txn_append(t, L("s"), ER_NO_STREAM, again, 3, &err),
                   ER_OK);
  assert_int_equal(er_txn_append(t, L("t"), ER_NO_STREAM, fresh, 1, &err),
                   ER_OK);
  /* "s" goes on from its stored version, not from the replayed append */
  tappend_ok(t, "s", 3, "E", "e");
  put_ok(t, ER_CHECKPOINTS, L("p"), L("6"));
  commit_ok(t);
  assert_result(er_txn_result(t, 0), 1, 3, 2, 4, 1);
  assert_result(er_txn_result(t, 1), 1, 1, 6, 6, 0);
  assert_result(er_txn_result(t, 2), 4, 4, 7, 7, 0);
  er_txn_free(t);
  assert_int_equal(er_last_position(s), 7);
  assert_int_equal(version_of(s, "s"), 4);
  assert_event(s, 6, "t", 1, "A", "d");
  assert_event(s, 7, "s", 4, "E", "e");
  get_is(s, ER_CHECKPOINTS, L("p"), L("6"));
  void *mem = NULL;
  er_event e = event_at(s, 6, &mem);
  assert_memory_equal(e.id, fresh[0].id, 16);
  er_free(mem);

  /* a transaction of retries only writes nothing new */
  t = begin(s);
  make_ids(again, 3, 1);
  assert_int_equal(er_txn_append(t, L("s"), ER_ANY, again, 3, &err), ER_OK);
  make_ids(fresh, 1, 9);
  assert_int_equal(er_txn_append(t, L("t"), 0, fresh, 1, &err), ER_OK);
  commit_ok(t);
  assert_result(er_txn_result(t, 0), 1, 3, 2, 4, 1);
  assert_result(er_txn_result(t, 1), 1, 1, 6, 6, 1);
  er_txn_free(t);
  assert_int_equal(er_last_position(s), 7);
  assert_int_equal(version_of(s, "s"), 4);
  assert_int_equal(version_of(s, "t"), 1);
  ok1(s, "u", "U", "u");
  assert_int_equal(er_last_position(s), 8);

  /* not a retry: the expectation fails against the version before; the
   * other append is not written either */
  t = begin(s);
  tappend_ok(t, "v", ER_NO_STREAM, "V", "v");
  make_ids(again, 3, 1);
  assert_int_equal(er_txn_append(t, L("s"), 1, again, 3, &err), ER_OK);
  err = fresh_err();
  assert_fails(er_txn_commit(t, &err), ER_WRONG_EXPECTED_VERSION, err);
  assert_int_equal(err.append_index, 1);
  er_txn_free(t);
  /* ids that exist in another stream */
  t = begin(s);
  tappend_ok(t, "v", ER_NO_STREAM, "V", "v");
  make_ids(again, 3, 1);
  assert_int_equal(er_txn_append(t, L("w"), ER_ANY, again, 3, &err), ER_OK);
  err = fresh_err();
  assert_fails(er_txn_commit(t, &err), ER_DUPLICATE_EVENT, err);
  assert_int_equal(err.append_index, 1);
  er_txn_free(t);
  assert_int_equal(er_last_position(s), 8);
  assert_int_equal(version_of(s, "v"), 0);
  assert_int_equal(version_of(s, "w"), 0);
}

static void test_txn_duplicate_id(void **state) {
  fx *f = *state;
  er_store *s = f->s;
  ok1(s, "x", "X", "x");
  /* one id in two appends to two streams */
  er_txn *t = begin(s);
  er_new_event a[2], b[1];
  make_ids(a, 2, 1);
  make_ids(b, 1, 2); /* the id of a[1] */
  er_error err = fresh_err();
  put_ok(t, ER_SNAPSHOTS, L("k1"), L("v1"));
  assert_int_equal(er_txn_append(t, L("s"), ER_NO_STREAM, a, 2, &err), ER_OK);
  assert_int_equal(er_txn_append(t, L("t"), ER_NO_STREAM, b, 1, &err), ER_OK);
  put_ok(t, ER_CHECKPOINTS, L("k2"), L("v2"));
  put_ok(t, ER_VIEWS, L("k3"), L("v3"));
  err = fresh_err();
  assert_fails(er_txn_commit(t, &err), ER_DUPLICATE_EVENT, err);
  assert_null(er_txn_result(t, 0));
  er_txn_free(t);
  assert_nothing_written(s, 1);
  assert_int_equal(version_of(s, "s"), 0);
  assert_int_equal(version_of(s, "t"), 0);

  /* one id in two appends to the same stream */
  t = begin(s);
  make_ids(a, 2, 1);
  make_ids(b, 1, 1);
  assert_int_equal(er_txn_append(t, L("s"), ER_NO_STREAM, a, 2, &err), ER_OK);
  assert_int_equal(er_txn_append(t, L("s"), 2, b, 1, &err), ER_OK);
  put_ok(t, ER_SNAPSHOTS, L("k1"), L("v1"));
  err = fresh_err();
  assert_fails(er_txn_commit(t, &err), ER_DUPLICATE_EVENT, err);
  er_txn_free(t);
  assert_nothing_written(s, 1);
  assert_int_equal(version_of(s, "s"), 0);

  /* the ids were not indexed: they can be used now */
  t = begin(s);
  make_ids(a, 2, 1);
  assert_int_equal(er_txn_append(t, L("s"), ER_NO_STREAM, a, 2, &err), ER_OK);
  commit_ok(t);
  assert_result(er_txn_result(t, 0), 1, 2, 2, 3, 0);
  er_txn_free(t);
}

/* err.append_index names an append that repeats an id of another one (not
 * the clean append 0). */
static void test_txn_duplicate_id_index(void **state) {
  fx *f = *state;
  er_store *s = f->s;
  er_txn *t = begin(s);
  er_new_event a[1], c[1];
  make_ids(a, 1, 1);
  make_ids(c, 1, 1);
  er_error err = fresh_err();
  tappend_ok(t, "u", ER_ANY, "U", "u");
  assert_int_equal(er_txn_append(t, L("s"), ER_ANY, a, 1, &err), ER_OK);
  assert_int_equal(er_txn_append(t, L("t"), ER_ANY, c, 1, &err), ER_OK);
  err = fresh_err();
  int rc = er_txn_commit(t, &err);
  er_txn_free(t);
  assert_fails(rc, ER_DUPLICATE_EVENT, err);
  if (err.append_index != 1 && err.append_index != 2)
    print_error("append_index = %zu, expected 2 (or 1)\n", err.append_index);
  assert_true(err.append_index == 1 || err.append_index == 2);
  assert_int_equal(er_last_position(s), 0);
}

/* ------------------------------------------------------------------------ */
/* Persistence                                                                */

static void test_txn_reopen(void **state) {
  fx *f = *state;
  er_txn *t = begin(f->s);
  tappend_ok(t, "acc-1", ER_NO_STREAM, "Opened", "o");
  put_ok(t, ER_SNAPSHOTS, L("acc-1"), L("snap"));
  put_ok(t, ER_CHECKPOINTS, L("proj"), L("1"));
  put_ok(t, ER_VIEWS, L("bal\0acc-1"), L("0"));
  put_ok(t, ER_VIEWS, L("bal\0acc-2"), L("5"));
  put_ok(t, ER_VIEWS, L("other\0x"), L("y"));
  commit_ok(t);
  er_txn_free(t);
  t = begin(f->s);
  del_ok(t, ER_VIEWS, L("bal\0acc-2"));
  commit_ok(t);
  er_txn_free(t);

  static const kv views[] = {KV("bal\0acc-1", "0"), KV("other\0x", "y")};
  er_close(f->s);
  f->s = tu_open(f->dir);
  assert_int_equal(er_last_position(f->s), 1);
  get_is(f->s, ER_SNAPSHOTS, L("acc-1"), L("snap"));
  get_is(f->s, ER_CHECKPOINTS, L("proj"), L("1"));
  get_absent(f->s, ER_VIEWS, L("bal\0acc-2"));
  assert_scan(f->s, ER_VIEWS, NULL, 0, views, 2);
  assert_scan(f->s, ER_VIEWS, L("bal\0"), views, 1);

  /* a read-only handle beside the writer */
  er_store *ro = tu_open_ro(f->dir);
  get_is(ro, ER_SNAPSHOTS, L("acc-1"), L("snap"));
  get_is(ro, ER_CHECKPOINTS, L("proj"), L("1"));
  get_absent(ro, ER_VIEWS, L("bal\0acc-2"));
  assert_scan(ro, ER_VIEWS, NULL, 0, views, 2);
  assert_scan(ro, ER_VIEWS, L("bal\0"), views, 1);
  assert_scan(ro, ER_SNAPSHOTS, NULL, 0, (const kv[]){KV("acc-1", "snap")},
              1);
  /* it keeps the store as it was when opened */
  t = begin(f->s);
  put_ok(t, ER_CHECKPOINTS, L("proj"), L("2"));
  commit_ok(t);
  er_txn_free(t);
  get_is(f->s, ER_CHECKPOINTS, L("proj"), L("2"));
  get_is(ro, ER_CHECKPOINTS, L("proj"), L("1"));
  er_close(ro);

  /* read-only without a writer */
  er_close(f->s);
  f->s = NULL;
  ro = tu_open_ro(f->dir);
  get_is(ro, ER_CHECKPOINTS, L("proj"), L("2"));
  assert_scan(ro, ER_VIEWS, NULL, 0, views, 2);
  assert_int_equal(er_last_position(ro), 1);
  er_close(ro);
  f->s = tu_open(f->dir);
  get_is(f->s, ER_CHECKPOINTS, L("proj"), L("2"));
}

/* ------------------------------------------------------------------------ */
/* Freeing, er_append                                                         */

static void test_txn_free(void **state) {
  fx *f = *state;
  er_store *s = f->s;
  er_txn_free(NULL);
  put_all(s, ER_VIEWS, (const kv[]){KV("\xff\xff" "a", "1")}, 1);
  /* an uncommitted transaction with everything in it */
  er_txn *t = begin(s);
  er_new_event ev[2];
  make_ids(ev, 2, 1);
  er_error err = fresh_err();
  for (int i = 0; i < 20; i++) /* several reallocations of the queue */
    tappend_ok(t, "s", ER_ANY, "A", "payload");
  assert_int_equal(er_txn_append(t, L("t"), ER_ANY, ev, 2, &err), ER_OK);
  put_ok(t, ER_SNAPSHOTS, L("k"), L("v"));
  del_ok(t, ER_CHECKPOINTS, L("k"));
  delpfx_ok(t, ER_VIEWS, L("ab"));
  delpfx_ok(t, ER_VIEWS, L("\xff\xff"));
  assert_int_equal(er_txn_appends(t), 21);
  er_txn_free(t);
  assert_int_equal(er_last_position(s), 0);
  get_absent(s, ER_SNAPSHOTS, L("k"));
  get_is(s, ER_VIEWS, L("\xff\xff" "a"), L("1"));
  /* a begun, empty transaction */
  t = begin(s);
  er_txn_free(t);
  /* after a successful and after a failed commit */
  t = begin(s);
  tappend_ok(t, "s", ER_NO_STREAM, "A", "x");
  put_ok(t, ER_VIEWS, L("k"), L("v"));
  commit_ok(t);
  er_txn_free(t);
  t = begin(s);
  tappend_ok(t, "s", ER_NO_STREAM, "A", "y");
  put_ok(t, ER_VIEWS, L("k2"), L("v"));
  assert_int_equal(er_txn_commit(t, &err), ER_WRONG_EXPECTED_VERSION);
  er_txn_free(t);
  assert_int_equal(er_last_position(s), 1);
}

static void test_append_smoke(void **state) {
  fx *f = *state;
  er_store *s = f->s;
  er_new_event ev[2];
  tu_event(&ev[0], "A", "1", 1);
  tu_event(&ev[1], "B", "2", 1);
  er_appended r;
  er_error err = fresh_err();
  assert_int_equal(er_append(s, L("s"), ER_NO_STREAM, ev, 2, &r, &err), ER_OK);
  assert_result(&r, 1, 2, 1, 2, 0);
  /* generated ids are written back into the caller's events */
  assert_true(ev[0].has_id && ev[1].has_id);
  assert_true(is_uuid7(ev[0].id) && is_uuid7(ev[1].id));
  void *mem = NULL;
  er_event e = event_at(s, 2, &mem);
  assert_memory_equal(e.id, ev[1].id, 16);
  er_free(mem);
  /* a retry of it */
  memset(&r, 0, sizeof r);
  assert_int_equal(er_append(s, L("s"), ER_NO_STREAM, ev, 2, &r, &err), ER_OK);
  assert_result(&r, 1, 2, 1, 2, 1);
  /* a conflict */
  er_new_event one;
  tu_event(&one, "C", "3", 1);
  err = fresh_err();
  assert_fails(er_append(s, L("s"), 1, &one, 1, &r, &err),
               ER_WRONG_EXPECTED_VERSION, err);
  assert_int_equal(err.actual, 2);
  /* appends and transactions interleave */
  er_txn *t = begin(s);
  tappend_ok(t, "s", 2, "C", "3");
  commit_ok(t);
  assert_result(er_txn_result(t, 0), 3, 3, 3, 3, 0);
  er_txn_free(t);
  tu_event(&one, "D", "4", 1);
  assert_int_equal(er_append(s, L("s"), 3, &one, 1, &r, &err), ER_OK);
  assert_result(&r, 4, 4, 4, 4, 0);
  assert_int_equal(er_last_position(s), 4);
  assert_event(s, 3, "s", 3, "C", "3");
  assert_event(s, 4, "s", 4, "D", "4");
}

int main(void) {
  const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, fx_setup, fx_teardown)
      T(test_txn_three_streams),
      T(test_txn_same_stream_twice),
      T(test_txn_conflict_same_stream),
      T(test_txn_conflict_exact),
      T(test_txn_append_copies),
      T(test_txn_kv_copies),
      T(test_txn_kv_with_appends),
      T(test_txn_kv_only),
      T(test_txn_delete_prefix_nul),
      T(test_txn_delete_prefix_ab),
      T(test_txn_delete_prefix_trailing_ff),
      T(test_txn_delete_prefix_all_ff),
      T(test_txn_delete_prefix_nothing_matches),
      T(test_txn_delete_prefix_queued_put),
      T(test_txn_delete_prefix_queued_put_ff),
      T(test_txn_delete_prefix_at_commit),
      T(test_txn_delete_prefix_at_commit_ff),
      T(test_scan),
      T(test_iter_kinds),
      T(test_txn_commit_once),
      T(test_txn_failed_commit_final),
      T(test_txn_bad_space_and_key),
      T(test_txn_invalid_appends),
      T(test_txn_read_only),
      T(test_txn_idem_retry),
      T(test_txn_duplicate_id),
      T(test_txn_duplicate_id_index),
      T(test_txn_reopen),
      T(test_txn_free),
      T(test_append_smoke),
#undef T
  };
  return cmocka_run_group_tests_name("eventrocks transactions", tests, NULL,
                                     NULL);
}
