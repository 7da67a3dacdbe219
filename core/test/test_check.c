/*
 * test_check.c -- cmocka tests of the newer parts of the eventrocks C core:
 * commit hooks (er_set_commit_hook), appends with a given time
 * (er_txn_append_at), the store checker (er_check) and the raw-key tools
 * (er_debug_put, er_debug_delete).
 *
 * core/include/eventrocks.h is the specification.  The corruption tests use
 * the storage layout documented in core/src/internal.h (keys and values of
 * the column families) and core/src/record.c (the event record), to break
 * one invariant at a time and check that er_check names it.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <ctype.h>
#include <sys/wait.h>
#include <xxhash.h>
#include <rocksdb/c.h>

#define TU_STORE_FIXTURE /* fx, fx_setup, fx_teardown */
#include "test_util.h"

/* ------------------------------------------------------------------------ */
/* Fixtures and helpers                                                      */


/* Close and reopen the fixture's store. */
static void reopen(fx *f) {
  er_close(f->s);
  f->s = tu_open(f->dir);
}


/* Queue one event of `type` with string `data` at `time` (0 = now). */
static void tappend_at(er_txn *t, const char *stream, int64_t expected,
                       const char *type, const char *data, int64_t time) {
  er_new_event e;
  er_error err = fresh_err();
  tu_event(&e, type, data, strlen(data));
  int rc = er_txn_append_at(t, stream, strlen(stream), expected, &e, 1, time,
                            &err);
  if (rc != ER_OK)
    print_error("er_txn_append_at(%s): %d %s\n", stream, rc, err.message);
  assert_int_equal(rc, ER_OK);
}

static void tappend(er_txn *t, const char *stream, int64_t expected,
                    const char *type, const char *data) {
  er_new_event e;
  er_error err = fresh_err();
  tu_event(&e, type, data, strlen(data));
  int rc = er_txn_append(t, stream, strlen(stream), expected, &e, 1, &err);
  if (rc != ER_OK)
    print_error("er_txn_append(%s): %d %s\n", stream, rc, err.message);
  assert_int_equal(rc, ER_OK);
}

static void put_ok(er_txn *t, er_space sp, const char *k, const char *v) {
  er_error err = fresh_err();
  assert_int_equal(er_txn_put(t, sp, k, strlen(k), v, strlen(v), &err),
                   ER_OK);
}


/* The value of `key` in ER_VIEWS into `buf` (NUL-terminated); 1 when
 * present, 0 when absent. */
static int view_get(er_store *s, const char *key, char *buf, size_t cap) {
  void *val = NULL;
  size_t len = 0;
  er_error err = fresh_err();
  int rc = er_get(s, ER_VIEWS, key, strlen(key), &val, &len, &err);
  assert_true(rc == ER_OK || rc == ER_NOT_FOUND);
  if (rc == ER_NOT_FOUND) {
    assert_null(val);
    return 0;
  }
  assert_true(len < cap);
  if (len)
    memcpy(buf, val, len);
  buf[len] = 0;
  er_free(val);
  return 1;
}




static int64_t time_at(er_store *s, uint64_t pos) {
  void *mem = NULL;
  er_event ev = event_at(s, pos, &mem);
  int64_t t = ev.time;
  er_free(mem);
  return t;
}

/* ------------------------------------------------------------------------ */
/* Commit hook: a recorder                                                   */

#define MAX_SEEN 16
#define FIELD 64

typedef struct seen {
  uint8_t id[16];
  uint64_t position, version;
  int64_t time;
  char stream[FIELD], type[FIELD], data[FIELD], meta[FIELD];
  size_t stream_len, type_len, data_len, meta_len;
} seen;

typedef struct hook_state {
  er_store *s;
  /* what the hook saw */
  int calls;
  size_t n;             /* events of the last call */
  seen ev[MAX_SEEN];    /* copies of them */
  int too_big;          /* an event did not fit the copies */
  int err_null;         /* the last call got err == NULL */
  uint64_t last_position; /* er_last_position in the last call */
  uint64_t version_s;   /* er_version("s") in the last call */
  /* what the hook does */
  const char *put_key, *put_val; /* queue this put in ER_VIEWS */
  const char *del_key;           /* queue this delete in ER_VIEWS */
  const char *del_prefix;        /* queue this prefix delete in ER_VIEWS */
  int try_append;                /* try to append and commit on t */
  int fail;                      /* return this code */
  const char *fail_message;      /* ... with this message (NULL: none) */
  /* results of the hook's own calls */
  int put_rc, del_rc, del_prefix_rc, append_rc, append_at_rc, commit_rc;
  int append_code, append_msg; /* err of the refused append */
} hook_state;

static void copy_field(char *dst, size_t *dst_len, const void *src,
                       size_t len, int *too_big) {
  if (len > FIELD) {
    *too_big = 1;
    len = FIELD;
  }
  if (len)
    memcpy(dst, src, len);
  *dst_len = len;
}

static int recording_hook(void *ud, er_txn *t, const er_event *evs, size_t n,
                          er_error *err) {
  hook_state *h = ud;
  er_error e;
  h->calls++;
  h->n = n;
  h->err_null = err == NULL;
  for (size_t i = 0; i < n && i < MAX_SEEN; i++) {
    seen *d = &h->ev[i];
    memcpy(d->id, evs[i].id, 16);
    d->position = evs[i].position;
    d->version = evs[i].version;
    d->time = evs[i].time;
    copy_field(d->stream, &d->stream_len, evs[i].stream, evs[i].stream_len,
               &h->too_big);
    copy_field(d->type, &d->type_len, evs[i].type, evs[i].type_len,
               &h->too_big);
    copy_field(d->data, &d->data_len, evs[i].data, evs[i].data_len,
               &h->too_big);
    copy_field(d->meta, &d->meta_len, evs[i].metadata, evs[i].metadata_len,
               &h->too_big);
  }
  if (n > MAX_SEEN)
    h->too_big = 1;
  h->last_position = er_last_position(h->s);
  memset(&e, 0, sizeof e);
  h->version_s = 999999;
  (void)er_version(h->s, L("s"), &h->version_s, &e);
  if (h->put_key) {
    memset(&e, 0, sizeof e);
    h->put_rc = er_txn_put(t, ER_VIEWS, h->put_key, strlen(h->put_key),
                           h->put_val, strlen(h->put_val), &e);
  }
  if (h->del_key) {
    memset(&e, 0, sizeof e);
    h->del_rc = er_txn_delete(t, ER_VIEWS, h->del_key, strlen(h->del_key),
                              &e);
  }
  if (h->del_prefix) {
    memset(&e, 0, sizeof e);
    h->del_prefix_rc = er_txn_delete_prefix(
        t, ER_VIEWS, h->del_prefix, strlen(h->del_prefix), &e);
  }
  if (h->try_append) {
    er_new_event x;
    tu_event(&x, "Sneaky", "x", 1);
    memset(&e, 0, sizeof e);
    h->append_rc = er_txn_append(t, L("sneaky"), ER_ANY, &x, 1, &e);
    h->append_code = e.code;
    h->append_msg = e.message[0] != 0;
    memset(&e, 0, sizeof e);
    h->append_at_rc =
        er_txn_append_at(t, L("sneaky"), ER_ANY, &x, 1, 1000000, &e);
    memset(&e, 0, sizeof e);
    h->commit_rc = er_txn_commit(t, &e);
  }
  if (h->fail) {
    if (h->fail_message && err) {
      err->code = h->fail;
      snprintf(err->message, sizeof err->message, "%s", h->fail_message);
    }
    return h->fail;
  }
  return ER_OK;
}

/* Static storage, so that a failing test leaks nothing. */
static hook_state hook_states[2];

/* Hook state `i`, reset, for store `s`. */
static hook_state *blank_hook(er_store *s, int i) {
  hook_state *h = &hook_states[i];
  memset(h, 0, sizeof *h);
  h->s = s;
  return h;
}

/* Hook state 0, reset and installed as the hook of `s`. */
static hook_state *new_hook(er_store *s) {
  hook_state *h = blank_hook(s, 0);
  er_set_commit_hook(s, recording_hook, h);
  return h;
}

static void assert_seen(const seen *d, const uint8_t id[16], uint64_t pos,
                        uint64_t ver, const char *stream, const char *type,
                        const void *data, size_t data_len, const void *meta,
                        size_t meta_len) {
  assert_memory_equal(d->id, id, 16);
  assert_int_equal(d->position, pos);
  assert_int_equal(d->version, ver);
  assert_int_equal(d->stream_len, strlen(stream));
  assert_memory_equal(d->stream, stream, d->stream_len);
  assert_int_equal(d->type_len, strlen(type));
  assert_memory_equal(d->type, type, d->type_len);
  assert_int_equal(d->data_len, data_len);
  if (data_len)
    assert_memory_equal(d->data, data, data_len);
  assert_int_equal(d->meta_len, meta_len);
  if (meta_len)
    assert_memory_equal(d->meta, meta, meta_len);
}

/* The stored event at `pos` is the one the hook saw (time and id too). */
static void assert_stored_as_seen(er_store *s, const seen *d) {
  void *mem = NULL;
  er_event ev = event_at(s, d->position, &mem);
  assert_memory_equal(ev.id, d->id, 16);
  assert_int_equal(ev.version, d->version);
  assert_int_equal(ev.time, d->time);
  assert_int_equal(ev.stream_len, d->stream_len);
  assert_memory_equal(ev.stream, d->stream, d->stream_len);
  assert_int_equal(ev.data_len, d->data_len);
  if (d->data_len)
    assert_memory_equal(ev.data, d->data, d->data_len);
  er_free(mem);
}

/* ------------------------------------------------------------------------ */
/* Commit hook                                                                */

static void test_hook_er_append(void **state) {
  fx *f = *state;
  er_store *s = f->s;
  ok1(s, "before", "T", "b"); /* position 1, before the hook */
  hook_state *h = new_hook(s);
  assert_int_equal(h->calls, 0);

  static const char d0[] = {'a', 0, 'b', (char)0xff};
  static const char m0[] = {'m', 0};
  er_new_event ev[2];
  tu_event(&ev[0], "Created", d0, sizeof d0);
  ev[0].metadata = m0;
  ev[0].metadata_len = sizeof m0;
  set_id(&ev[0], 3);
  tu_event(&ev[1], "Renamed", NULL, 0); /* generated id, empty data */
  er_appended r;
  er_error err = fresh_err();
  int64_t t0 = tu_now_us();
  assert_int_equal(er_append(s, L("s"), ER_NO_STREAM, ev, 2, &r, &err),
                   ER_OK);
  int64_t t1 = tu_now_us();
  assert_int_equal(h->calls, 1);
  assert_int_equal(h->n, 2);
  assert_false(h->too_big);
  assert_true(ev[1].has_id);
  assert_true(is_uuid7(ev[1].id));
  assert_seen(&h->ev[0], ev[0].id, 2, 1, "s", "Created", d0, sizeof d0, m0,
              sizeof m0);
  assert_seen(&h->ev[1], ev[1].id, 3, 2, "s", "Renamed", NULL, 0, NULL, 0);
  assert_true(h->ev[0].time >= t0 && h->ev[0].time <= t1);
  assert_int_equal(h->ev[1].time, h->ev[0].time);
  assert_stored_as_seen(s, &h->ev[0]);
  assert_stored_as_seen(s, &h->ev[1]);

  /* a second append: one more call, with only its own event */
  er_appended r2 = ok1(s, "other", "O", "o");
  assert_int_equal(h->calls, 2);
  assert_int_equal(h->n, 1);
  {
    void *mem = NULL;
    er_event e = event_at(s, 4, &mem);
    assert_seen(&h->ev[0], e.id, 4, 1, "other", "O", "o", 1, NULL, 0);
    er_free(mem);
  }
  assert_int_equal(r2.position, 4);
  assert_int_equal(er_last_position(s), 4);
  er_set_commit_hook(s, NULL, NULL);
}

static void test_hook_txn_commit(void **state) {
  fx *f = *state;
  er_store *s = f->s;
  hook_state *h = new_hook(s);
  ok1(s, "b", "B", "b1"); /* position 1; call 1 */
  assert_int_equal(h->calls, 1);

  er_txn *t = begin(s);
  tappend(t, "a", ER_NO_STREAM, "A1", "a1");
  put_ok(t, ER_VIEWS, "kv", "v");
  er_new_event two[2];
  tu_event(&two[0], "B2", "b2", 2);
  tu_event(&two[1], "B3", "b3", 2);
  set_id(&two[1], 9);
  er_error err = fresh_err();
  assert_int_equal(er_txn_append(t, L("b"), 1, two, 2, &err), ER_OK);
  tappend(t, "a", 1, "A2", "a2");
  assert_int_equal(h->calls, 1); /* nothing before the commit */
  commit_ok(t);
  assert_int_equal(h->calls, 2);
  assert_int_equal(h->n, 4);
  assert_false(h->too_big);
  /* in commit order: a@1, b@2, b@3, a@2 at positions 2..5 */
  const char *streams[4] = {"a", "b", "b", "a"};
  const char *types[4] = {"A1", "B2", "B3", "A2"};
  const char *datas[4] = {"a1", "b2", "b3", "a2"};
  uint64_t versions[4] = {1, 2, 3, 2};
  for (int i = 0; i < 4; i++) {
    void *mem = NULL;
    er_event e = event_at(s, (uint64_t)i + 2, &mem);
    assert_seen(&h->ev[i], e.id, (uint64_t)i + 2, versions[i], streams[i],
                types[i], datas[i], 2, NULL, 0);
    assert_int_equal(h->ev[i].time, e.time);
    assert_true(is_uuid7(e.id) || i == 2);
    er_free(mem);
  }
  assert_memory_equal(h->ev[2].id, two[1].id, 16);
  assert_int_equal(h->ev[0].time, h->ev[3].time); /* one commit, one time */
  assert_int_equal(er_txn_result(t, 1)->first_position, 3);
  er_txn_free(t);
  er_set_commit_hook(s, NULL, NULL);
}

static void test_hook_not_called_kv_only(void **state) {
  fx *f = *state;
  er_store *s = f->s;
  hook_state *h = new_hook(s);
  h->put_key = "from-hook";
  h->put_val = "x";
  er_txn *t = begin(s);
  put_ok(t, ER_VIEWS, "k", "v");
  commit_ok(t);
  er_txn_free(t);
  assert_int_equal(h->calls, 0);
  char buf[16];
  assert_true(view_get(s, "k", buf, sizeof buf));
  assert_false(view_get(s, "from-hook", buf, sizeof buf));
  /* an empty transaction neither */
  t = begin(s);
  commit_ok(t);
  er_txn_free(t);
  assert_int_equal(h->calls, 0);
  assert_int_equal(er_last_position(s), 0);
  er_set_commit_hook(s, NULL, NULL);
}

static void test_hook_not_called_replay(void **state) {
  fx *f = *state;
  er_store *s = f->s;
  hook_state *h = new_hook(s);
  er_new_event ev[2];
  tu_event(&ev[0], "A", "1", 1);
  tu_event(&ev[1], "B", "2", 1);
  set_id(&ev[0], 1);
  set_id(&ev[1], 2);
  er_appended r;
  er_error err = fresh_err();
  assert_int_equal(er_append(s, L("s"), ER_NO_STREAM, ev, 2, &r, &err),
                   ER_OK);
  assert_int_equal(h->calls, 1);
  /* the retry writes nothing and does not call the hook */
  h->put_key = "replay";
  h->put_val = "x";
  err = fresh_err();
  assert_int_equal(er_append(s, L("s"), ER_NO_STREAM, ev, 2, &r, &err),
                   ER_OK);
  assert_int_equal(r.replayed, 1);
  assert_int_equal(h->calls, 1);
  char buf[16];
  assert_false(view_get(s, "replay", buf, sizeof buf));
  /* a transaction holding only the retry: not called */
  er_txn *t = begin(s);
  err = fresh_err();
  assert_int_equal(er_txn_append(t, L("s"), ER_NO_STREAM, ev, 2, &err), ER_OK);
  commit_ok(t);
  assert_int_equal(er_txn_result(t, 0)->replayed, 1);
  er_txn_free(t);
  assert_int_equal(h->calls, 1);
  /* a retry beside a new append: called with the new events only */
  t = begin(s);
  err = fresh_err();
  assert_int_equal(er_txn_append(t, L("s"), ER_NO_STREAM, ev, 2, &err), ER_OK);
  tappend(t, "s", 2, "C", "3");
  commit_ok(t);
  assert_int_equal(er_txn_result(t, 0)->replayed, 1);
  er_txn_free(t);
  assert_int_equal(h->calls, 2);
  assert_int_equal(h->n, 1);
  assert_int_equal(h->ev[0].position, 3);
  assert_int_equal(h->ev[0].version, 3);
  assert_true(view_get(s, "replay", buf, sizeof buf));
  er_set_commit_hook(s, NULL, NULL);
}

static void test_hook_kv_writes_committed(void **state) {
  fx *f = *state;
  er_store *s = f->s;
  er_txn *t = begin(s);
  put_ok(t, ER_VIEWS, "old", "1");
  put_ok(t, ER_VIEWS, "p:1", "1");
  put_ok(t, ER_VIEWS, "p:2", "2");
  put_ok(t, ER_VIEWS, "q", "3");
  commit_ok(t);
  er_txn_free(t);

  hook_state *h = new_hook(s);
  h->put_key = "new";
  h->put_val = "from er_append";
  h->del_key = "old";
  ok1(s, "s", "T", "1");
  assert_int_equal(h->put_rc, ER_OK);
  assert_int_equal(h->del_rc, ER_OK);
  char buf[64];
  assert_true(view_get(s, "new", buf, sizeof buf));
  assert_string_equal(buf, "from er_append");
  assert_false(view_get(s, "old", buf, sizeof buf));

  /* through a transaction, beside the transaction's own writes */
  h->put_key = "new2";
  h->put_val = "from the txn";
  h->del_key = NULL;
  h->del_prefix = "p:";
  t = begin(s);
  tappend(t, "s", 1, "T", "2");
  put_ok(t, ER_VIEWS, "mine", "m");
  commit_ok(t);
  er_txn_free(t);
  assert_int_equal(h->del_prefix_rc, ER_OK);
  assert_true(view_get(s, "new2", buf, sizeof buf));
  assert_string_equal(buf, "from the txn");
  assert_true(view_get(s, "mine", buf, sizeof buf));
  assert_false(view_get(s, "p:1", buf, sizeof buf));
  assert_false(view_get(s, "p:2", buf, sizeof buf));
  assert_true(view_get(s, "q", buf, sizeof buf));
  /* durable with the events */
  er_set_commit_hook(s, NULL, NULL);
  reopen(f);
  assert_true(view_get(f->s, "new", buf, sizeof buf));
  assert_true(view_get(f->s, "new2", buf, sizeof buf));
  assert_int_equal(version_of(f->s, "s"), 2);
}

static void test_hook_error_aborts_append(void **state) {
  fx *f = *state;
  er_store *s = f->s;
  ok1(s, "s", "T", "1"); /* s@1, position 1 */
  hook_state *h = new_hook(s);
  h->put_key = "hook-key";
  h->put_val = "v";
  h->fail = ER_DUPLICATE_EVENT;
  h->fail_message = "the hook refuses: projection p failed";

  er_new_event e;
  tu_event(&e, "T", "2", 1);
  er_appended r;
  memset(&r, 0x5a, sizeof r);
  er_error err = fresh_err();
  int rc = er_append(s, L("s"), 1, &e, 1, &r, &err);
  assert_fails(rc, ER_DUPLICATE_EVENT, err);
  assert_string_equal(err.message, "the hook refuses: projection p failed");
  assert_int_equal(h->calls, 1);
  assert_int_equal(h->put_rc, ER_OK);
  assert_int_equal(er_last_position(s), 1);
  assert_int_equal(version_of(s, "s"), 1);
  assert_no_event(s, 2);
  char buf[16];
  assert_false(view_get(s, "hook-key", buf, sizeof buf));

  /* a code without a message: the caller still gets a message */
  h->fail = ER_IO;
  h->fail_message = NULL;
  tu_event(&e, "T", "2", 1);
  err = fresh_err();
  rc = er_append(s, L("s"), 1, &e, 1, &r, &err);
  assert_int_equal(rc, ER_IO);
  assert_int_equal(err.code, ER_IO);
  assert_true(err.message[0] != 0);
  assert_int_equal(er_last_position(s), 1);

  /* err == NULL: still refused */
  tu_event(&e, "T", "2", 1);
  rc = er_append(s, L("s"), 1, &e, 1, NULL, NULL);
  assert_int_equal(rc, ER_IO);
  assert_int_equal(er_last_position(s), 1);

  /* nothing of the refused commits stuck: the next one is normal */
  h->fail = 0;
  tu_event(&e, "T", "2", 1);
  err = fresh_err();
  assert_int_equal(er_append(s, L("s"), 1, &e, 1, &r, &err), ER_OK);
  assert_int_equal(r.version, 2);
  assert_int_equal(r.position, 2);
  assert_true(view_get(s, "hook-key", buf, sizeof buf));
  reopen(f);
  assert_int_equal(er_last_position(f->s), 2);
  assert_int_equal(version_of(f->s, "s"), 2);
}

static void test_hook_error_aborts_txn(void **state) {
  fx *f = *state;
  er_store *s = f->s;
  ok1(s, "a", "T", "1");
  hook_state *h = new_hook(s);
  h->put_key = "hook-key";
  h->put_val = "v";
  h->fail = ER_INVALID;
  h->fail_message = "no thanks";

  er_txn *t = begin(s);
  tappend(t, "a", 1, "T", "2");
  tappend(t, "b", ER_NO_STREAM, "T", "3");
  put_ok(t, ER_VIEWS, "txn-key", "v");
  er_error err = fresh_err();
  assert_fails(er_txn_commit(t, &err), ER_INVALID, err);
  assert_string_equal(err.message, "no thanks");
  assert_int_equal(h->calls, 1);
  assert_int_equal(h->n, 2);
  assert_null(er_txn_result(t, 0));
  err = fresh_err();
  assert_fails(er_txn_commit(t, &err), ER_INVALID, err); /* at most once */
  assert_int_equal(h->calls, 1);
  er_txn_free(t);
  assert_int_equal(er_last_position(s), 1);
  assert_int_equal(version_of(s, "a"), 1);
  assert_int_equal(version_of(s, "b"), 0);
  assert_no_event(s, 2);
  char buf[16];
  assert_false(view_get(s, "hook-key", buf, sizeof buf));
  assert_false(view_get(s, "txn-key", buf, sizeof buf));

  /* the same transaction again without the failure */
  h->fail = 0;
  t = begin(s);
  tappend(t, "a", 1, "T", "2");
  tappend(t, "b", ER_NO_STREAM, "T", "3");
  commit_ok(t);
  assert_int_equal(er_txn_result(t, 1)->position, 3);
  er_txn_free(t);
  assert_int_equal(version_of(s, "a"), 2);
  assert_int_equal(version_of(s, "b"), 1);
  assert_true(view_get(s, "hook-key", buf, sizeof buf));
  er_set_commit_hook(s, NULL, NULL);
}

static void test_hook_cannot_append(void **state) {
  fx *f = *state;
  er_store *s = f->s;
  hook_state *h = new_hook(s);
  h->try_append = 1;
  ok1(s, "s", "T", "1");
  assert_int_equal(h->calls, 1);
  assert_int_equal(h->append_rc, ER_INVALID);
  assert_int_equal(h->append_code, ER_INVALID);
  assert_true(h->append_msg);
  assert_int_equal(h->append_at_rc, ER_INVALID);
  assert_int_equal(h->commit_rc, ER_INVALID);
  /* the commit itself went through, without the hook's attempts */
  assert_int_equal(er_last_position(s), 1);
  assert_int_equal(version_of(s, "sneaky"), 0);

  er_txn *t = begin(s);
  tappend(t, "s", 1, "T", "2");
  commit_ok(t);
  er_txn_free(t);
  assert_int_equal(h->calls, 2);
  assert_int_equal(h->append_rc, ER_INVALID);
  assert_int_equal(h->append_at_rc, ER_INVALID);
  assert_int_equal(h->commit_rc, ER_INVALID);
  assert_int_equal(er_last_position(s), 2);
  assert_int_equal(version_of(s, "sneaky"), 0);
  assert_no_event(s, 3);
  er_set_commit_hook(s, NULL, NULL);
}

static void test_hook_sees_state_before(void **state) {
  fx *f = *state;
  er_store *s = f->s;
  ok1(s, "s", "T", "1");
  ok1(s, "s", "T", "2");
  hook_state *h = new_hook(s);
  ok1(s, "s", "T", "3");
  assert_int_equal(h->last_position, 2);
  assert_int_equal(h->version_s, 2);
  er_txn *t = begin(s);
  tappend(t, "s", 3, "T", "4");
  tappend(t, "x", ER_ANY, "T", "5");
  commit_ok(t);
  er_txn_free(t);
  assert_int_equal(h->calls, 2);
  assert_int_equal(h->last_position, 3);
  assert_int_equal(h->version_s, 3);
  assert_int_equal(er_last_position(s), 5);
  er_set_commit_hook(s, NULL, NULL);
}

static void test_hook_remove_replace(void **state) {
  fx *f = *state;
  er_store *s = f->s;
  hook_state *h = new_hook(s);
  ok1(s, "s", "T", "1");
  assert_int_equal(h->calls, 1);
  er_set_commit_hook(s, NULL, NULL);
  ok1(s, "s", "T", "2");
  er_txn *t = begin(s);
  tappend(t, "s", 2, "T", "3");
  commit_ok(t);
  er_txn_free(t);
  assert_int_equal(h->calls, 1);
  /* a failing hook removed: commits work again */
  h->fail = ER_INVALID;
  er_set_commit_hook(s, recording_hook, h);
  er_error err = fresh_err();
  er_new_event e;
  tu_event(&e, "T", "4", 1);
  assert_int_equal(er_append(s, L("s"), ER_ANY, &e, 1, NULL, &err), ER_INVALID);
  assert_int_equal(h->calls, 2);
  er_set_commit_hook(s, NULL, NULL);
  ok1(s, "s", "T", "4");
  /* replacing: only the new hook (and its ud) is called */
  hook_state *h2 = blank_hook(s, 1);
  er_set_commit_hook(s, recording_hook, h);
  er_set_commit_hook(s, recording_hook, h2);
  h->fail = 0;
  ok1(s, "s", "T", "5");
  assert_int_equal(h->calls, 2);
  assert_int_equal(h2->calls, 1);
  assert_int_equal(h2->ev[0].position, 5);
  er_set_commit_hook(s, NULL, NULL);
}

/* ------------------------------------------------------------------------ */
/* er_txn_append_at                                                          */

#define T_2009 INT64_C(1234567890123456)

static void test_append_at_exact_time(void **state) {
  fx *f = *state;
  er_store *s = f->s;
  hook_state *h = new_hook(s);
  er_txn *t = begin(s);
  er_new_event ev[3];
  tu_event(&ev[0], "I", "1", 1);
  tu_event(&ev[1], "I", "2", 1);
  tu_event(&ev[2], "I", "3", 1);
  set_id(&ev[2], 7);
  er_error err = fresh_err();
  assert_int_equal(
      er_txn_append_at(t, L("imp"), ER_NO_STREAM, ev, 3, T_2009, &err), ER_OK);
  tappend_at(t, "imp2", ER_ANY, "I", "4", T_2009 + 1);
  commit_ok(t);
  er_txn_free(t);
  assert_int_equal(h->calls, 1);
  assert_int_equal(h->n, 4);
  for (uint64_t p = 1; p <= 3; p++) {
    assert_int_equal(time_at(s, p), T_2009);
    assert_int_equal(h->ev[p - 1].time, T_2009);
  }
  assert_int_equal(time_at(s, 4), T_2009 + 1);
  assert_int_equal(h->ev[3].time, T_2009 + 1);
  /* ids: generated for the first two (distinct UUID v7), kept for the third */
  void *m1 = NULL, *m2 = NULL, *m3 = NULL;
  er_event e1 = event_at(s, 1, &m1), e2 = event_at(s, 2, &m2),
           e3 = event_at(s, 3, &m3);
  assert_true(is_uuid7(e1.id));
  assert_true(is_uuid7(e2.id));
  assert_memory_not_equal(e1.id, e2.id, 16);
  assert_memory_equal(e3.id, ev[2].id, 16);
  er_free(m1);
  er_free(m2);
  er_free(m3);

  /* time 0 means now */
  int64_t t0 = tu_now_us();
  t = begin(s);
  tappend_at(t, "imp", 3, "I", "5", 0);
  commit_ok(t);
  er_txn_free(t);
  int64_t t1 = tu_now_us();
  int64_t tt = time_at(s, 5);
  assert_true(tt >= t0 && tt <= t1);
  /* survives reopening */
  er_set_commit_hook(s, NULL, NULL);
  reopen(f);
  assert_int_equal(time_at(f->s, 2), T_2009);
  assert_int_equal(time_at(f->s, 5), tt);
}

static void test_append_at_older_accepted(void **state) {
  fx *f = *state;
  er_store *s = f->s;
  ok1(s, "s", "T", "1");
  int64_t newest = time_at(s, 1);
  er_txn *t = begin(s);
  tappend_at(t, "old", ER_NO_STREAM, "I", "1", 1000000); /* 1970 */
  commit_ok(t);
  er_txn_free(t);
  assert_int_equal(time_at(s, 2), 1000000);
  ok1(s, "s", "T", "2");
  assert_true(time_at(s, 3) >= newest);
  /* in a transaction beside an append timed now */
  t = begin(s);
  tappend_at(t, "old", 1, "I", "2", 2000000);
  tappend(t, "s", 2, "T", "3");
  commit_ok(t);
  er_txn_free(t);
  assert_int_equal(time_at(s, 4), 2000000);
  assert_true(time_at(s, 5) >= time_at(s, 3));
}

/* An imported time never moves the store's own clock: events the store
 * times itself carry the real time, before and after a reopen, whatever
 * the newest record's time is. */
static void test_append_at_future(void **state) {
  fx *f = *state;
  er_store *s = f->s;
  int64_t times[] = { tu_now_us() + INT64_C(3600000000), INT64_MAX };
  size_t i;
  ok1(s, "s", "T", "1");
  for (i = 0; i < 2; i++) {
    uint64_t p = er_last_position(f->s);
    er_txn *t = begin(f->s);
    tappend_at(t, "imp", ER_ANY, "I", "1", times[i]);
    commit_ok(t);
    er_txn_free(t);
    assert_int_equal(time_at(f->s, p + 1), times[i]);
    int64_t before = tu_now_us();
    ok1(f->s, "s", "T", "2");
    int64_t after = tu_now_us();
    assert_true(time_at(f->s, p + 2) >= before - 1000000);
    assert_true(time_at(f->s, p + 2) <= after);
    /* the import is the newest record when the store opens again */
    t = begin(f->s);
    tappend_at(t, "imp", ER_ANY, "I", "2", times[i]);
    commit_ok(t);
    er_txn_free(t);
    reopen(f);
    before = tu_now_us();
    ok1(f->s, "s", "T", "3");
    after = tu_now_us();
    assert_true(time_at(f->s, p + 4) >= before - 1000000);
    assert_true(time_at(f->s, p + 4) <= after);
  }
}

/* The store's own times never go back, across reopening too, when an
 * import with an older time is the newest record. */
static void test_append_at_reopen_keeps_time_order(void **state) {
  fx *f = *state;
  er_store *s = f->s;
  ok1(s, "s", "T", "1");
  int64_t self_timed = time_at(s, 1);
  er_txn *t = begin(s);
  tappend_at(t, "imp", ER_ANY, "I", "2", 1000000); /* the newest record */
  commit_ok(t);
  er_txn_free(t);
  reopen(f);
  ok1(f->s, "s", "T", "2");
  int64_t after = time_at(f->s, 3);
  if (after < self_timed)
    print_error("self-timed event at position 3 has time %lld, older than "
                "the self-timed event at position 1 (%lld)\n",
                (long long)after, (long long)self_timed);
  assert_true(after >= self_timed);
}

static void test_append_at_validation(void **state) {
  fx *f = *state;
  er_store *s = f->s;
  er_txn *t = begin(s);
  er_new_event e;
  tu_event(&e, "", "x", 1); /* empty type */
  er_error err = fresh_err();
  assert_fails(er_txn_append_at(t, L("s"), ER_ANY, &e, 1, T_2009, &err),
               ER_INVALID, err);
  tu_event(&e, "T", "x", 1);
  err = fresh_err();
  assert_fails(er_txn_append_at(t, "", 0, ER_ANY, &e, 1, T_2009, &err),
               ER_INVALID, err);
  err = fresh_err();
  assert_fails(er_txn_append_at(t, L("s"), ER_ANY, &e, 0, T_2009, &err),
               ER_INVALID, err);
  assert_int_equal(er_txn_appends(t), 0);
  commit_ok(t);
  err = fresh_err();
  assert_fails(er_txn_append_at(t, L("s"), ER_ANY, &e, 1, T_2009, &err),
               ER_INVALID, err);
  er_txn_free(t);
  assert_int_equal(er_last_position(s), 0);
}

/* ------------------------------------------------------------------------ */
/* er_check: a recorder                                                      */

#define MAX_REPORTS 64

typedef struct reports {
  char msg[MAX_REPORTS][600];
  size_t n;              /* reports received (all counted, 64 kept) */
  size_t progress_calls;
  uint64_t last_done, last_total;
  int bad_progress;      /* done > total, or done or total going back */
} reports;

static void on_report(void *ud, const char *problem) {
  reports *r = ud;
  if (r->n < MAX_REPORTS)
    snprintf(r->msg[r->n], sizeof r->msg[0], "%s", problem);
  r->n++;
}

static void on_progress(void *ud, uint64_t done, uint64_t total) {
  reports *r = ud;
  if (done > total)
    r->bad_progress = 1;
  if (r->progress_calls && (done < r->last_done || total < r->last_total))
    r->bad_progress = 1;
  r->progress_calls++;
  r->last_done = done;
  r->last_total = total;
}

static void dump_reports(const reports *r) {
  for (size_t i = 0; i < r->n && i < MAX_REPORTS; i++)
    print_message("  report: %s\n", r->msg[i]);
}

/* Run er_check with both callbacks into a new `reports` (caller frees);
 * asserts ER_OK, that the count equals the reports, and that a run without
 * callbacks counts the same. */
static reports report_states[2]; /* static: nothing leaks on failure */

static reports *blank_reports(int i) {
  memset(&report_states[i], 0, sizeof report_states[i]);
  return &report_states[i];
}

static reports *run_check(er_store *s, uint64_t *problems) {
  reports *r = blank_reports(0);
  er_error err = fresh_err();
  uint64_t n = 999999;
  int rc = er_check(s, on_report, on_progress, r, &n, &err);
  if (rc != ER_OK)
    print_error("er_check: %d %s\n", rc, err.message);
  assert_int_equal(rc, ER_OK);
  assert_int_equal(n, r->n);
  assert_true(r->progress_calls >= 1);
  assert_false(r->bad_progress);
  assert_int_equal(r->last_done, r->last_total); /* the final call */
  uint64_t quiet = 999999;
  err = fresh_err();
  assert_int_equal(er_check(s, NULL, NULL, NULL, &quiet, &err), ER_OK);
  assert_int_equal(quiet, n);
  *problems = n;
  return r;
}

static void assert_healthy(er_store *s) {
  uint64_t n;
  reports *r = run_check(s, &n);
  if (n)
    dump_reports(r);
  assert_int_equal(n, 0);
}

/* `tok` occurs in `msg` with no letter or digit right before or after. */
static int has_token(const char *msg, const char *tok) {
  size_t tl = strlen(tok);
  for (const char *p = msg; (p = strstr(p, tok)) != NULL; p++) {
    int before = p > msg && isalnum((unsigned char)p[-1]);
    int after = isalnum((unsigned char)p[tl]);
    if (!before && !after)
      return 1;
  }
  return 0;
}

/* Some report holds every token of the NULL-terminated list. */
static int has_report(const reports *r, ...) {
  for (size_t i = 0; i < r->n && i < MAX_REPORTS; i++) {
    va_list ap;
    const char *tok;
    int all = 1;
    va_start(ap, r);
    while ((tok = va_arg(ap, const char *)) != NULL)
      if (!has_token(r->msg[i], tok))
        all = 0;
    va_end(ap);
    if (all)
      return 1;
  }
  return 0;
}

#define expect_report(r, ...)                                                 \
  do {                                                                       \
    if (!has_report((r), __VA_ARGS__, (const char *)NULL)) {                 \
      print_error("no report with: %s\n", #__VA_ARGS__);                     \
      dump_reports(r);                                                       \
      fail();                                                                \
    }                                                                        \
  } while (0)

/* A store of single-event appends with known positions:
 *   1 alpha@1  2 beta-1@1  3 gamma@1  4 alpha@2  5 beta-1@2
 *   6 beta-1@3 7 gamma@2   8 alpha@3  9 beta-1@4
 * reopened and checked healthy. */
static void make_base(fx *f) {
  static const char *const order[9] = {"alpha", "beta-1", "gamma", "alpha",
                                       "beta-1", "beta-1", "gamma", "alpha",
                                       "beta-1"};
  for (int i = 0; i < 9; i++) {
    char data[32];
    snprintf(data, sizeof data, "data of event %d", i + 1);
    er_appended r = ok1(f->s, order[i], "Happened", data);
    assert_int_equal(r.position, (uint64_t)i + 1);
  }
  reopen(f);
  assert_int_equal(er_last_position(f->s), 9);
  assert_int_equal(version_of(f->s, "beta-1"), 4);
  assert_healthy(f->s);
}

static void be64(uint8_t *p, uint64_t v) {
  for (int i = 7; i >= 0; i--) {
    p[i] = (uint8_t)(v & 0xff);
    v >>= 8;
  }
}

static void le64(uint8_t *p, uint64_t v) {
  for (int i = 0; i < 8; i++) {
    p[i] = (uint8_t)(v & 0xff);
    v >>= 8;
  }
}

static void le32(uint8_t *p, uint32_t v) {
  for (int i = 0; i < 4; i++) {
    p[i] = (uint8_t)(v & 0xff);
    v >>= 8;
  }
}

/* Stream index key: stream, 0x00, version (big-endian); returns length. */
static size_t stream_key(uint8_t *out, const char *stream, uint64_t version) {
  size_t n = strlen(stream);
  memcpy(out, stream, n);
  out[n] = 0;
  be64(out + n + 1, version);
  return n + 9;
}

static void debug_put(er_store *s, const char *family, const void *key,
                      size_t klen, const void *val, size_t vlen) {
  er_error err = fresh_err();
  int rc = er_debug_put(s, family, key, klen, val, vlen, &err);
  if (rc != ER_OK)
    print_error("er_debug_put(%s): %d %s\n", family, rc, err.message);
  assert_int_equal(rc, ER_OK);
}

static void debug_delete(er_store *s, const char *family, const void *key,
                         size_t klen) {
  er_error err = fresh_err();
  int rc = er_debug_delete(s, family, key, klen, &err);
  if (rc != ER_OK)
    print_error("er_debug_delete(%s): %d %s\n", family, rc, err.message);
  assert_int_equal(rc, ER_OK);
}

/* The id of the event at `pos`, and its text form. */
static void id_of(er_store *s, uint64_t pos, uint8_t id[16], char text[37]) {
  void *mem = NULL;
  er_event e = event_at(s, pos, &mem);
  memcpy(id, e.id, 16);
  er_uuid_format(id, text);
  er_free(mem);
}

/* Rebuild the raw record of the single-event append at `pos` (layout of
 * core/src/record.c; batch size 1, index 0) into `b`; returns its length. */
#define RAW_MAX 256
static size_t raw_record(er_store *s, uint64_t pos, uint8_t b[RAW_MAX]) {
  void *mem = NULL;
  er_event e = event_at(s, pos, &mem);
  size_t n = 72 + e.stream_len + e.type_len + e.metadata_len + e.data_len;
  if (n > RAW_MAX)
    er_free(mem);
  assert_true(n <= RAW_MAX);
  memset(b, 0, n);
  b[0] = 1;
  memcpy(b + 8, e.id, 16);
  le64(b + 24, e.position);
  le64(b + 32, e.version);
  le64(b + 40, (uint64_t)e.time);
  le32(b + 48, 1);
  le32(b + 52, 0);
  le32(b + 56, (uint32_t)e.stream_len);
  le32(b + 60, (uint32_t)e.type_len);
  le32(b + 64, (uint32_t)e.metadata_len);
  le32(b + 68, (uint32_t)e.data_len);
  uint8_t *p = b + 72;
  memcpy(p, e.stream, e.stream_len);
  p += e.stream_len;
  memcpy(p, e.type, e.type_len);
  p += e.type_len;
  if (e.metadata_len)
    memcpy(p, e.metadata, e.metadata_len);
  p += e.metadata_len;
  if (e.data_len)
    memcpy(p, e.data, e.data_len);
  le32(b + 4, (uint32_t)XXH3_64bits(b + 8, n - 8));
  er_free(mem);
  return n;
}

/* ------------------------------------------------------------------------ */
/* er_check                                                                   */

static void test_check_empty(void **state) {
  fx *f = *state;
  assert_healthy(f->s);
  reopen(f);
  assert_healthy(f->s);
  /* key-value spaces are not the log's business */
  er_txn *t = begin(f->s);
  put_ok(t, ER_VIEWS, "k", "v");
  put_ok(t, ER_SNAPSHOTS, "s", "v");
  commit_ok(t);
  er_txn_free(t);
  assert_healthy(f->s);
}

static void test_check_healthy_big(void **state) {
  fx *f = *state;
  static const char *const streams[5] = {"order-1", "order-2", "cart-7",
                                         "user-x", "a"};
  uint64_t expect_pos = 0;
  int i = 0;
  while (expect_pos < 400) {
    const char *st = streams[i % 5];
    if (i % 7 == 3) {
      /* a transaction of two appends */
      er_txn *t = begin(f->s);
      tappend(t, st, ER_ANY, "InTxn", "t1");
      tappend(t, streams[(i + 2) % 5], ER_ANY, "InTxn", "t2");
      commit_ok(t);
      er_txn_free(t);
      expect_pos += 2;
    } else {
      er_new_event ev[3];
      size_t n = (size_t)(i % 3) + 1;
      for (size_t k = 0; k < n; k++)
        tu_event(&ev[k], "Batch", "payload", 7);
      er_appended r;
      er_error err = fresh_err();
      assert_int_equal(
          er_append(f->s, st, strlen(st), ER_ANY, ev, n, &r, &err), ER_OK);
      expect_pos += n;
      assert_int_equal(r.position, expect_pos);
    }
    i++;
  }
  assert_healthy(f->s);
  reopen(f);
  assert_int_equal(er_last_position(f->s), expect_pos);
  uint64_t n;
  reports *r = run_check(f->s, &n);
  if (n)
    dump_reports(r);
  assert_int_equal(n, 0);
  assert_int_equal(r->n, 0);
  /* several hundred events: progress "now and then", then a final call */
  assert_true(r->progress_calls >= 2);
  assert_true(r->last_total > 0);
  /* a read-only handle checks too */
  er_store *ro = tu_open_ro(f->dir);
  assert_healthy(ro);
  er_close(ro);
}

static void test_check_index_entry_deleted(void **state) {
  fx *f = *state;
  make_base(f);
  uint8_t key[64];
  debug_delete(f->s, "streams", key, stream_key(key, "beta-1", 2));
  uint64_t n;
  reports *r = run_check(f->s, &n);
  assert_true(n > 0);
  expect_report(r, "beta-1", "index", "5"); /* no index entry, position 5 */
}

static void test_check_head_deleted(void **state) {
  fx *f = *state;
  make_base(f);
  debug_delete(f->s, "heads", L("beta-1"));
  uint64_t n;
  reports *r = run_check(f->s, &n);
  assert_true(n > 0);
  expect_report(r, "beta-1", "head");
}

static void test_check_head_wrong(void **state) {
  fx *f = *state;
  make_base(f);
  uint8_t head[9];
  le64(head, 7);
  head[8] = 0;
  debug_put(f->s, "heads", L("beta-1"), head, sizeof head);
  uint64_t n;
  reports *r = run_check(f->s, &n);
  assert_true(n > 0);
  expect_report(r, "beta-1", "head", "7", "4");
  /* and one version short */
  le64(head, 3);
  debug_put(f->s, "heads", L("beta-1"), head, sizeof head);
  r = run_check(f->s, &n);
  assert_true(n > 0);
  expect_report(r, "beta-1", "head", "3", "4");
}

/* A head for a stream without events: "every head equals its stream's last
 * version" (0 for a stream without events). */
static void test_check_head_without_stream(void **state) {
  fx *f = *state;
  make_base(f);
  uint8_t head[9];
  le64(head, 5);
  head[8] = 0;
  debug_put(f->s, "heads", L("ghost"), head, sizeof head);
  uint64_t n;
  reports *r = run_check(f->s, &n);
  assert_true(n > 0);
  expect_report(r, "heads");
  /* beside a missing head, which evens out the number of heads */
  debug_delete(f->s, "heads", L("beta-1"));
  r = run_check(f->s, &n);
  assert_true(n >= 2);
  expect_report(r, "beta-1", "head");
  expect_report(r, "ghost");
}

static void test_check_id_deleted(void **state) {
  fx *f = *state;
  make_base(f);
  uint8_t id[16];
  char text[37];
  id_of(f->s, 5, id, text);
  debug_delete(f->s, "ids", id, 16);
  uint64_t n;
  reports *r = run_check(f->s, &n);
  assert_true(n > 0);
  expect_report(r, text, "5");
}

static void test_check_id_elsewhere(void **state) {
  fx *f = *state;
  make_base(f);
  uint8_t id[16], pos[8];
  char text[37];
  id_of(f->s, 5, id, text);
  le64(pos, 8);
  debug_put(f->s, "ids", id, 16, pos, 8);
  uint64_t n;
  reports *r = run_check(f->s, &n);
  assert_true(n > 0);
  expect_report(r, text, "8"); /* points at position 8 */
  expect_report(r, text, "5"); /* position 5 has no id entry */
  /* an id entry pointing at no event at all */
  le64(pos, 99);
  debug_put(f->s, "ids", id, 16, pos, 8);
  r = run_check(f->s, &n);
  assert_true(n > 0);
  expect_report(r, text, "99");
}

static void test_check_log_deleted(void **state) {
  fx *f = *state;
  make_base(f);
  uint8_t key[8];
  be64(key, 5);
  debug_delete(f->s, "log", key, 8);
  uint64_t n;
  reports *r = run_check(f->s, &n);
  assert_true(n >= 2);
  expect_report(r, "log", "6", "4");    /* the gap: 6 follows 4 */
  expect_report(r, "beta-1", "2", "5"); /* beta-1@2 -> position 5: nothing */
  /* the same after reopening */
  reopen(f);
  r = run_check(f->s, &n);
  assert_true(n >= 2);
  expect_report(r, "log", "6", "4");
  expect_report(r, "beta-1", "2", "5");
}

static void test_check_last_log_deleted(void **state) {
  fx *f = *state;
  make_base(f);
  uint8_t key[8];
  be64(key, 9);
  debug_delete(f->s, "log", key, 8);
  uint64_t n;
  reports *r = run_check(f->s, &n);
  assert_true(n > 0);
  expect_report(r, "beta-1", "4", "9"); /* beta-1@4 -> position 9: nothing */
}

static void test_check_log_garbage(void **state) {
  fx *f = *state;
  make_base(f);
  uint8_t key[8];
  be64(key, 5);
  debug_put(f->s, "log", key, 8, L("garbage"));
  uint64_t n;
  reports *r = run_check(f->s, &n);
  assert_true(n > 0);
  expect_report(r, "damaged", "5");
  /* an empty value too */
  debug_put(f->s, "log", key, 8, NULL, 0);
  r = run_check(f->s, &n);
  assert_true(n > 0);
  expect_report(r, "damaged", "5");
}

static void test_check_log_flipped_byte(void **state) {
  fx *f = *state;
  make_base(f);
  uint8_t key[8];
  be64(key, 5);
  uint8_t rec[RAW_MAX], good[RAW_MAX];
  size_t len = raw_record(f->s, 5, rec);
  /* the rebuilt record is byte for byte the stored one: still healthy */
  debug_put(f->s, "log", key, 8, rec, len);
  assert_healthy(f->s);
  /* one bit of the data flipped: the checksum no longer holds */
  rec[len - 1] ^= 0x01;
  debug_put(f->s, "log", key, 8, rec, len);
  uint64_t n;
  reports *r = run_check(f->s, &n);
  assert_true(n > 0);
  expect_report(r, "damaged", "5");
  /* flipped with a matching checksum: the log and the index differ */
  le32(rec + 4, (uint32_t)XXH3_64bits(rec + 8, len - 8));
  debug_put(f->s, "log", key, 8, rec, len);
  r = run_check(f->s, &n);
  assert_true(n > 0);
  expect_report(r, "beta-1", "5", "differs");
  /* the stream index entry damaged instead of the log record */
  len = raw_record(f->s, 6, good);
  uint8_t skey[64];
  good[len - 1] ^= 0x40;
  debug_put(f->s, "streams", skey, stream_key(skey, "beta-1", 3), good, len);
  r = run_check(f->s, &n);
  assert_true(n > 0);
  expect_report(r, "beta-1", "3", "damaged");
}

static void test_check_several_problems(void **state) {
  fx *f = *state;
  make_base(f);
  uint8_t key[64], id[16];
  char text[37];
  debug_delete(f->s, "heads", L("gamma"));
  id_of(f->s, 1, id, text);
  debug_delete(f->s, "ids", id, 16);
  debug_delete(f->s, "streams", key, stream_key(key, "alpha", 3));
  uint64_t n;
  reports *r = run_check(f->s, &n);
  assert_true(n >= 3);
  expect_report(r, "gamma", "head");
  expect_report(r, text, "1");
  expect_report(r, "alpha", "index", "8");
}

/* check reports events timed more than a day ahead: each of the first
 * ten, then how many more. */
static void test_check_time_ahead(void **state) {
  fx *f = *state;
  int64_t ahead = tu_now_us() + INT64_C(2) * 86400000000;
  int i;
  ok1(f->s, "s", "T", "1");
  er_txn *t = begin(f->s);
  tappend_at(t, "imp", ER_ANY, "I", "1", tu_now_us() + 3600000000); /* an hour: fine */
  commit_ok(t);
  er_txn_free(t);
  uint64_t n;
  reports *r = run_check(f->s, &n);
  assert_int_equal(n, 0);
  for (i = 0; i < 12; i++) {
    t = begin(f->s);
    tappend_at(t, "imp", ER_ANY, "I", "x", i == 0 ? INT64_MAX : ahead);
    commit_ok(t);
    er_txn_free(t);
  }
  r = run_check(f->s, &n);
  assert_int_equal(n, 11);
  expect_report(r, "position", "3", "ahead", "9223372036854775807");
  expect_report(r, "position", "12", "ahead", "UTC");
  expect_report(r, "2", "more events", "ahead");
}

/* Flip one byte at `at` of the file `path`. */
static void flip_byte(const char *path, long at) {
  FILE *fh = fopen(path, "r+b");
  assert_non_null(fh);
  assert_int_equal(fseek(fh, at, SEEK_SET), 0);
  int ch = fgetc(fh);
  assert_true(ch != EOF);
  assert_int_equal(fseek(fh, at, SEEK_SET), 0);
  assert_true(fputc(ch ^ 0xff, fh) != EOF);
  assert_int_equal(fclose(fh), 0);
}

/* The largest table file of column family `family` in the closed store
 * at `dir` (malloc'd path; its size in `*size`), found with RocksDB's own
 * list of live files. */
static char *largest_table_file(const char *dir, const char *family, size_t *size) {
  char *rerr = NULL, *path = NULL;
  size_t ncf = 0, i;
  rocksdb_options_t *o = rocksdb_options_create();
  char **names = rocksdb_list_column_families(o, dir, &ncf, &rerr);
  assert_null(rerr);
  const rocksdb_options_t **opts = calloc(ncf, sizeof *opts);
  rocksdb_column_family_handle_t **h = calloc(ncf, sizeof *h);
  assert_non_null(opts);
  assert_non_null(h);
  for (i = 0; i < ncf; i++) opts[i] = o;
  rocksdb_t *db = rocksdb_open_for_read_only_column_families(
      o, dir, (int)ncf, (const char *const *)names, opts, h, 0, &rerr);
  assert_null(rerr);
  const rocksdb_livefiles_t *lf = rocksdb_livefiles(db);
  *size = 0;
  for (int j = 0; j < rocksdb_livefiles_count(lf); j++)
    if (strcmp(rocksdb_livefiles_column_family_name(lf, j), family) == 0 &&
        rocksdb_livefiles_size(lf, j) > *size) {
      *size = rocksdb_livefiles_size(lf, j);
      free(path);
      path = tu_join(dir, rocksdb_livefiles_name(lf, j));
    }
  rocksdb_livefiles_destroy(lf);
  for (i = 0; i < ncf; i++) rocksdb_column_family_handle_destroy(h[i]);
  rocksdb_close(db);
  rocksdb_options_destroy(o);
  rocksdb_list_column_families_destroy(names, ncf);
  free(opts);
  free(h);
  return path;
}

/* Two damaged blocks in the middle of the log's table file: check reports
 * each range of positions it could not read, goes on past both, and checks
 * the other families too. */
static void test_check_damaged_log_blocks(void **state) {
  fx *f = *state;
  char data[1000], *path;
  uint64_t x = 7, n;
  size_t best = 0;
  int i;
  for (i = 0; i < 3000; i++) {
    er_new_event e;
    er_error err = fresh_err();
    size_t j;
    for (j = 0; j < sizeof data; j++) { /* incompressible: blocks stay many */
      x = x * 6364136223846793005u + 1442695040888963407u;
      data[j] = (char)(x >> 56);
    }
    tu_event(&e, "T", data, sizeof data);
    assert_int_equal(er_append(f->s, i % 2 ? "odd" : "even", i % 2 ? 3 : 4,
                               ER_ANY, &e, 1, NULL, &err), ER_OK);
  }
  er_close(f->s); /* the memtables go to table files */
  f->s = NULL;
  path = largest_table_file(f->dir, "log", &best);
  assert_non_null(path);
  assert_true(best > 1000000);
  flip_byte(path, (long)(best * 3 / 10));
  flip_byte(path, (long)(best * 6 / 10));
  free(path);
  f->s = tu_open(f->dir);
  reports *r = run_check(f->s, &n);
  size_t ranges = 0, j;
  uint64_t prev_end = 0;
  for (j = 0; j < r->n && j < MAX_REPORTS; j++) {
    unsigned long long a, b;
    if (sscanf(r->msg[j], "log: positions %llu to %llu could not be read", &a, &b) == 2) {
      assert_true(a > prev_end + 1); /* two separate ranges, in order */
      assert_true(b >= a && b < 3000);
      prev_end = b;
      ranges++;
    }
  }
  if (ranges != 2) dump_reports(r);
  assert_int_equal(ranges, 2);
  /* the stream index (undamaged) was checked against the log: its entries
   * for the unreadable positions are reported as unreadable there */
  expect_report(r, "log", "could not be read");
  assert_true(n >= 2);
}

static void test_check_null_report(void **state) {
  fx *f = *state;
  make_base(f);
  uint8_t key[8];
  be64(key, 3);
  debug_delete(f->s, "log", key, 8);
  uint64_t n = 0;
  er_error err = fresh_err();
  assert_int_equal(er_check(f->s, NULL, NULL, NULL, &n, &err), ER_OK);
  assert_true(n > 0);
  /* progress without report */
  reports *r = blank_reports(1);
  uint64_t n2 = 0;
  assert_int_equal(er_check(f->s, NULL, on_progress, r, &n2, &err), ER_OK);
  assert_int_equal(n2, n);
  assert_int_equal(r->n, 0);
  assert_true(r->progress_calls >= 1);
}

/* ------------------------------------------------------------------------ */
/* er_debug_put / er_debug_delete                                             */

static void test_debug_invalid(void **state) {
  fx *f = *state;
  er_error err = fresh_err();
  assert_fails(er_debug_put(f->s, "nope", L("k"), L("v"), &err), ER_INVALID,
               err);
  err = fresh_err();
  assert_fails(er_debug_delete(f->s, "nope", L("k"), &err), ER_INVALID, err);
  err = fresh_err();
  assert_fails(er_debug_put(f->s, "log2", L("k"), L("v"), &err), ER_INVALID,
               err);
  err = fresh_err();
  assert_fails(er_debug_put(f->s, "", L("k"), L("v"), &err), ER_INVALID, err);
  /* every documented family is known */
  static const char *const fams[8] = {"default", "log",       "streams",
                                      "heads",   "ids",       "snapshots",
                                      "checkpoints", "views"};
  for (int i = 0; i < 8; i++) {
    debug_put(f->s, fams[i], L("zz-test-key"), L("v"));
    debug_delete(f->s, fams[i], L("zz-test-key"));
  }
  /* a put in "views" is what er_get reads */
  debug_put(f->s, "views", L("k"), L("raw"));
  char buf[16];
  assert_true(view_get(f->s, "k", buf, sizeof buf));
  assert_string_equal(buf, "raw");
  debug_delete(f->s, "views", L("k"));
  assert_false(view_get(f->s, "k", buf, sizeof buf));
}

/* Run as `test_check --debug-read-only DIR` in a child process, so that a
 * crash is one failure and not the end of the run: both raw-key tools
 * refuse a read-only handle with ER_INVALID.  Exit status: 0 ok, 1 the put
 * answered wrong, 2 the delete answered wrong, 3 the open failed. */
static int debug_read_only_child(const char *dir) {
  er_options o;
  er_options_init(&o);
  o.read_only = 1;
  er_store *ro = NULL;
  er_error err = fresh_err();
  if (er_open(dir, &o, &ro, &err) != ER_OK)
    return 3;
  int rc = er_debug_put(ro, "views", L("k"), L("v"), &err);
  if (rc != ER_INVALID || err.code != ER_INVALID || !err.message[0]) {
    er_close(ro);
    return 1;
  }
  err = fresh_err();
  rc = er_debug_delete(ro, "heads", L("s"), &err);
  er_close(ro);
  if (rc != ER_INVALID || err.code != ER_INVALID || !err.message[0])
    return 2;
  return 0;
}

static const char *self_exe = "/proc/self/exe"; /* argv[0] when it has a '/' */

static void test_debug_read_only(void **state) {
  fx *f = *state;
  ok1(f->s, "s", "T", "1");
  fflush(NULL);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    execl(self_exe, "test_check", "--debug-read-only", f->dir, (char *)NULL);
    _exit(127);
  }
  int status = 0;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  if (WIFSIGNALED(status))
    print_error("er_debug_put/er_debug_delete on a read-only store killed "
                "the process with signal %d\n", WTERMSIG(status));
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);
  assert_int_equal(version_of(f->s, "s"), 1);
}

static void test_debug_clears_head_cache(void **state) {
  fx *f = *state;
  er_store *s = f->s;
  ok1(s, "s", "T", "1");
  ok1(s, "s", "T", "2"); /* the cache knows s@2 */
  uint8_t head[9];
  le64(head, 5);
  head[8] = 0;
  debug_put(s, "heads", L("s"), head, sizeof head);
  assert_int_equal(version_of(s, "s"), 5);
  er_new_event e;
  tu_event(&e, "T", "3", 1);
  er_appended r;
  er_error err = fresh_err();
  assert_fails(er_append(s, L("s"), 2, &e, 1, &r, &err),
               ER_WRONG_EXPECTED_VERSION, err);
  assert_int_equal(err.actual, 5);
  err = fresh_err();
  assert_int_equal(er_append(s, L("s"), 5, &e, 1, &r, &err), ER_OK);
  assert_int_equal(r.first_version, 6);
  assert_int_equal(r.version, 6);
  assert_int_equal(r.position, 3);
  assert_int_equal(version_of(s, "s"), 6);

  /* a deleted head: the stream looks new to the next append */
  ok1(s, "t", "T", "1"); /* the cache knows t@1 */
  debug_delete(s, "heads", L("t"));
  tu_event(&e, "T", "again", 5);
  err = fresh_err();
  assert_int_equal(er_append(s, L("t"), ER_NO_STREAM, &e, 1, &r, &err),
                   ER_OK);
  assert_int_equal(r.version, 1);
  /* a transaction sees the new head as well */
  le64(head, 10);
  debug_put(s, "heads", L("t"), head, sizeof head);
  er_txn *t = begin(s);
  tappend(t, "t", 10, "T", "x");
  commit_ok(t);
  assert_int_equal(er_txn_result(t, 0)->version, 11);
  er_txn_free(t);
}

/* er_debug_get: the raw bytes of a key (what er_debug_put wrote, or the
 * record an append stored), ER_NOT_FOUND when absent, ER_INVALID on an
 * unknown family. */
static void test_debug_get(void **state) {
  fx *f = *state;
  void *val = NULL;
  size_t len = 0;
  er_error err = fresh_err();
  ok1(f->s, "s", "T", "payload");
  uint8_t pos[8];
  for (int i = 0; i < 8; i++) pos[i] = i == 7 ? 1 : 0;
  assert_int_equal(er_debug_get(f->s, "log", pos, 8, &val, &len, &err), ER_OK);
  assert_int_equal(len, 72 + 1 + 1 + 7); /* header, stream, type, data */
  assert_memory_equal((const char *)val + len - 7, "payload", 7); /* data is last */
  er_free(val);
  debug_put(f->s, "views", L("k"), L("raw"));
  assert_int_equal(er_debug_get(f->s, "views", L("k"), &val, &len, &err), ER_OK);
  assert_int_equal(len, 3);
  assert_memory_equal(val, "raw", 3);
  er_free(val);
  err = fresh_err();
  assert_fails(er_debug_get(f->s, "views", L("absent"), &val, &len, &err), ER_NOT_FOUND, err);
  assert_null(val);
  err = fresh_err();
  assert_fails(er_debug_get(f->s, "nope", L("k"), &val, &len, &err), ER_INVALID, err);
}

/* ------------------------------------------------------------------------ */

int main(int argc, char **argv) {
  if (argc == 3 && strcmp(argv[1], "--debug-read-only") == 0)
    return debug_read_only_child(argv[2]);
  if (argc >= 1 && strchr(argv[0], '/'))
    self_exe = argv[0];
  const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, fx_setup, fx_teardown)
      T(test_hook_er_append),
      T(test_hook_txn_commit),
      T(test_hook_not_called_kv_only),
      T(test_hook_not_called_replay),
      T(test_hook_kv_writes_committed),
      T(test_hook_error_aborts_append),
      T(test_hook_error_aborts_txn),
      T(test_hook_cannot_append),
      T(test_hook_sees_state_before),
      T(test_hook_remove_replace),
      T(test_append_at_exact_time),
      T(test_append_at_older_accepted),
      T(test_append_at_future),
      T(test_append_at_reopen_keeps_time_order),
      T(test_append_at_validation),
      T(test_check_empty),
      T(test_check_healthy_big),
      T(test_check_index_entry_deleted),
      T(test_check_head_deleted),
      T(test_check_head_wrong),
      T(test_check_head_without_stream),
      T(test_check_id_deleted),
      T(test_check_id_elsewhere),
      T(test_check_log_deleted),
      T(test_check_last_log_deleted),
      T(test_check_log_garbage),
      T(test_check_log_flipped_byte),
      T(test_check_several_problems),
      T(test_check_null_report),
      T(test_check_time_ahead),
      T(test_check_damaged_log_blocks),
      T(test_debug_invalid),
      T(test_debug_read_only),
      T(test_debug_clears_head_cache),
      T(test_debug_get),
#undef T
  };
  return cmocka_run_group_tests_name("eventrocks hooks, imports and checks",
                                     tests, NULL, NULL);
}
