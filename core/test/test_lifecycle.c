/*
 * test_lifecycle.c -- deletes, truncation, retention and er_compact at the
 * core's API: the refusals, and a compaction (with max_count trimming every
 * stream) while a writer thread keeps appending to the same handle.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>

#include "test_util.h"

static void report(void *ud, const char *problem) {
  (void)ud;
  print_error("check: %s\n", problem);
}

static uint64_t problems_of(er_store *s) {
  uint64_t problems = 99;
  er_error err;
  assert_int_equal(er_check(s, report, NULL, NULL, &problems, &err), ER_OK);
  return problems;
}

/* The versions of `stream` a read yields, into `out` (at most `cap`). */
static size_t read_versions(er_store *s, const char *stream, uint64_t *out, size_t cap) {
  er_iter *it = NULL;
  er_event ev;
  er_error err;
  size_t n = 0;
  int rc;
  assert_int_equal(er_read_stream(s, stream, strlen(stream), 1, ER_UNLIMITED, 0, &it, &err), ER_OK);
  while ((rc = er_iter_next(it, &ev, &err)) == ER_OK)
    if (n < cap) out[n++] = ev.version;
  assert_int_equal(rc, ER_NOT_FOUND);
  er_iter_free(it);
  return n;
}

static void test_refusals(void **state) {
  char *dir = tu_mkdtemp();
  er_store *s = tu_open(dir), *ro;
  er_error err = fresh_err();
  er_stream_meta m = {0, 0};
  er_iter *it = NULL;
  (void)state;
  ok1(s, "a-1", "T", "x");
  ok1(s, "a-1", "T", "y");
  assert_fails(er_delete_stream(s, L("a-1"), 1, 0, &err), ER_WRONG_EXPECTED_VERSION, err);
  assert_int_equal(err.actual, 2);
  err = fresh_err();
  assert_fails(er_delete_stream(s, L("none-1"), ER_ANY, 0, &err), ER_NOT_FOUND, err);
  err = fresh_err();
  assert_fails(er_delete_stream(s, L("a-1"), -9, 0, &err), ER_INVALID, err);
  err = fresh_err();
  assert_fails(er_delete_stream(s, "", 0, ER_ANY, 0, &err), ER_INVALID, err);
  err = fresh_err();
  assert_fails(er_truncate(s, L("a-1"), 0, &err), ER_INVALID, err);
  err = fresh_err();
  assert_fails(er_truncate(s, L("a-1"), 4, &err), ER_INVALID, err);
  m.max_age = ER_MAX_AGE_LIMIT + 1;
  err = fresh_err();
  assert_fails(er_set_stream_meta(s, L("a-1"), &m, &err), ER_INVALID, err);
  /* none of these changed anything */
  assert_int_equal(er_get_stream_meta(s, L("a-1"), &m, &err), ER_OK);
  assert_int_equal(m.max_count + m.max_age, 0);
  assert_int_equal(version_of(s, "a-1"), 2);
  /* a hard delete: appends, reads and further changes are refused */
  assert_int_equal(er_delete_stream(s, L("a-1"), 2, 1, &err), ER_OK);
  {
    er_new_event e;
    er_appended res;
    tu_event(&e, "T", "z", 1);
    err = fresh_err();
    assert_fails(er_append(s, L("a-1"), ER_ANY, &e, 1, &res, &err), ER_STREAM_DELETED, err);
  }
  err = fresh_err();
  assert_fails(er_read_stream(s, L("a-1"), 1, ER_UNLIMITED, 0, &it, &err), ER_STREAM_DELETED, err);
  assert_null(it);
  err = fresh_err();
  m.max_count = 3;
  m.max_age = 0;
  assert_fails(er_set_stream_meta(s, L("a-1"), &m, &err), ER_STREAM_DELETED, err);
  /* a read-only handle changes nothing */
  ro = tu_open_ro(dir);
  err = fresh_err();
  assert_fails(er_truncate(ro, L("b-1"), 1, &err), ER_INVALID, err);
  err = fresh_err();
  assert_fails(er_compact(ro, NULL, &err), ER_INVALID, err);
  er_close(ro);
  assert_int_equal(problems_of(s), 0);
  er_close(s);
  tu_rmtree(dir);
  free(dir);
}

typedef struct writer {
  er_store *s;
  volatile int stop;
  volatile uint64_t acked;
  int failed;
} writer;

static void *write_main(void *ud) {
  writer *w = ud;
  er_new_event evs[4];
  unsigned long i;
  for (i = 0; !w->stop; i++) {
    char stream[32];
    er_appended res;
    er_error err;
    size_t n = 1 + i % 4, k;
    snprintf(stream, sizeof stream, "log-%lu", i % 20);
    for (k = 0; k < n; k++) tu_event(&evs[k], "Line", "\x81\xa1n\x01", 4);
    if (er_append(w->s, stream, strlen(stream), ER_ANY, evs, n, &res, &err) != ER_OK) {
      print_error("append: %s\n", err.message);
      w->failed = 1;
      break;
    }
    w->acked = res.position;
  }
  return NULL;
}

static void test_compact_beside_a_writer(void **state) {
  char *dir = tu_mkdtemp();
  er_store *s = tu_open(dir);
  writer w;
  pthread_t th;
  er_error err;
  er_stream_meta m = {5, 0};
  uint64_t v[16];
  int i, round;
  (void)state;
  for (i = 0; i < 20; i++) {
    char stream[32];
    snprintf(stream, sizeof stream, "log-%d", i);
    assert_int_equal(er_set_stream_meta(s, stream, strlen(stream), &m, &err), ER_OK);
  }
  memset(&w, 0, sizeof w);
  w.s = s;
  assert_int_equal(pthread_create(&th, NULL, write_main, &w), 0);
  for (round = 0; round < 3; round++) {
    uint64_t removed = 0, target = w.acked + 3000;
    while (w.acked < target && !w.failed) usleep(1000);
    assert_int_equal(er_compact(s, &removed, &err), ER_OK);
    assert_true(removed > 0);
  }
  w.stop = 1;
  assert_int_equal(pthread_join(th, NULL), 0);
  assert_false(w.failed);
  /* every stream reads as its newest five versions */
  for (i = 0; i < 20; i++) {
    char stream[32];
    uint64_t head;
    size_t n;
    snprintf(stream, sizeof stream, "log-%d", i);
    head = version_of(s, stream);
    n = read_versions(s, stream, v, 16);
    assert_int_equal(n, head < 5 ? head : 5);
    assert_int_equal(v[n - 1], head);
    assert_int_equal(v[0], head - n + 1);
  }
  assert_int_equal(problems_of(s), 0);
  er_close(s);
  s = tu_open(dir);
  assert_int_equal(problems_of(s), 0);
  er_close(s);
  tu_rmtree(dir);
  free(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_refusals),
      cmocka_unit_test(test_compact_beside_a_writer),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
