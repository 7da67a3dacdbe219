/*
 * test_threads.c -- cmocka tests of the eventrocks C core under concurrent
 * use of one store handle from several pthreads.
 *
 *  - optimistic concurrency: threads race to append to one stream with an
 *    exact expected version; exactly one append wins per version;
 *  - ER_ANY appends to private and shared streams at once: global positions
 *    and stream versions stay contiguous, and a concurrent reader of the
 *    global log never sees a gap.
 *
 * Worker threads never call cmocka asserts (they longjmp); they count what
 * they see and the main thread asserts afterwards.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <sched.h>

#define TU_STORE_FIXTURE /* fx, fx_setup, fx_teardown */
#include "test_util.h"


static void put_u32(unsigned char *p, uint32_t v) {
  for (int i = 0; i < 4; i++)
    p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get_u32(const unsigned char *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
         (uint32_t)p[3] << 24;
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

/* ------------------------------------------------------------------------ */
/* Exact expected version: one winner per version                            */

enum { RACE_THREADS = 4 };
/* Events to race for; ER_TEST_RACE_TARGET lowers it where threads are slow
 * (make valgrind, which runs one thread at a time). */
static uint64_t RACE_TARGET = 2000;

typedef struct racer {
  er_store *s;
  uint32_t tid;
  uint64_t ok, wrong, other, bad;
  int other_code;
  char other_msg[512];
} racer;

static void *race_main(void *arg) {
  racer *w = arg;
  uint32_t counter = 0;
  for (;;) {
    uint64_t v = 0;
    er_error err;
    memset(&err, 0, sizeof err);
    int rc = er_version(w->s, "race-1", 6, &v, &err);
    if (rc != ER_OK) {
      w->other++;
      w->other_code = rc;
      memcpy(w->other_msg, err.message, sizeof err.message);
      break;
    }
    if (v >= RACE_TARGET)
      break;
    if (counter % 2)
      sched_yield(); /* widen the window between the read and the append */
    unsigned char data[8];
    put_u32(data, w->tid);
    put_u32(data + 4, counter++);
    er_new_event e;
    tu_event(&e, "Raced", data, sizeof data);
    er_appended r;
    memset(&r, 0, sizeof r);
    memset(&err, 0, sizeof err);
    rc = er_append(w->s, "race-1", 6, (int64_t)v, &e, 1, &r, &err);
    if (rc == ER_OK) {
      w->ok++;
      if (r.version != v + 1 || r.first_version != v + 1 || r.replayed ||
          r.position != r.first_position)
        w->bad++;
    } else if (rc == ER_WRONG_EXPECTED_VERSION) {
      w->wrong++;
      if (err.code != ER_WRONG_EXPECTED_VERSION || err.expected != (int64_t)v ||
          err.actual <= v || err.actual > RACE_TARGET)
        w->bad++;
    } else {
      w->other++;
      w->other_code = rc;
      memcpy(w->other_msg, err.message, sizeof err.message);
      break;
    }
  }
  return NULL;
}

static void test_race_exact_expected(void **state) {
  fx *f = *state;
  racer w[RACE_THREADS];
  pthread_t th[RACE_THREADS];
  memset(w, 0, sizeof w);
  for (int i = 0; i < RACE_THREADS; i++) {
    w[i].s = f->s;
    w[i].tid = (uint32_t)i;
    assert_int_equal(pthread_create(&th[i], NULL, race_main, &w[i]), 0);
  }
  for (int i = 0; i < RACE_THREADS; i++)
    assert_int_equal(pthread_join(th[i], NULL), 0);

  uint64_t ok = 0, wrong = 0;
  for (int i = 0; i < RACE_THREADS; i++) {
    if (w[i].other)
      print_error("thread %d: unexpected code %d: %s\n", i, w[i].other_code,
                  w[i].other_msg);
    assert_int_equal(w[i].other, 0);
    assert_int_equal(w[i].bad, 0);
    ok += w[i].ok;
    wrong += w[i].wrong;
  }
  print_message("race: %llu appends won, %llu lost\n", (unsigned long long)ok,
                (unsigned long long)wrong);
  assert_int_equal(ok, RACE_TARGET);

  uint64_t v = 0;
  er_error err;
  assert_int_equal(er_version(f->s, "race-1", 6, &v, &err), ER_OK);
  assert_int_equal(v, RACE_TARGET);
  assert_int_equal(er_last_position(f->s), RACE_TARGET);

  er_iter *it = NULL;
  assert_int_equal(
      er_read_stream(f->s, "race-1", 6, 1, ER_UNLIMITED, 0, &it, &err), ER_OK);
  uint64_t *keys = calloc(RACE_TARGET, sizeof *keys);
  uint64_t per_thread[RACE_THREADS] = {0};
  assert_non_null(keys);
  er_event ev;
  size_t n = 0;
  int rc;
  while ((rc = er_iter_next(it, &ev, &err)) == ER_OK) {
    assert_true(n < RACE_TARGET);
    assert_int_equal(ev.version, n + 1);
    assert_int_equal(ev.position, n + 1);
    assert_int_equal(ev.data_len, 8);
    uint32_t tid = get_u32(ev.data);
    assert_true(tid < RACE_THREADS);
    per_thread[tid]++;
    keys[n++] = (uint64_t)tid << 32 | get_u32((const unsigned char *)ev.data + 4);
  }
  assert_int_equal(rc, ER_NOT_FOUND);
  er_iter_free(it);
  assert_int_equal(n, RACE_TARGET);
  for (int i = 0; i < RACE_THREADS; i++)
    assert_int_equal(per_thread[i], w[i].ok);
  qsort(keys, n, sizeof *keys, cmp_u64);
  for (size_t i = 1; i < n; i++)
    assert_true(keys[i] != keys[i - 1]);
  free(keys);

  /* positions in the global log as well */
  assert_int_equal(er_read_all(f->s, 1, ER_UNLIMITED, NULL, &it, &err), ER_OK);
  n = 0;
  while ((rc = er_iter_next(it, &ev, &err)) == ER_OK) {
    assert_int_equal(ev.position, ++n);
    assert_int_equal(ev.version, n);
  }
  assert_int_equal(rc, ER_NOT_FOUND);
  assert_int_equal(n, RACE_TARGET);
  er_iter_free(it);
}

/* ------------------------------------------------------------------------ */
/* ER_ANY to private and shared streams, with a reader of the global log     */

enum { MIX_THREADS = 4, MIX_ITERS = 300 };

typedef struct mixer {
  er_store *s;
  uint32_t tid;
  uint64_t events, own_events, shared_events;
  uint64_t bad, failed;
  int fail_code;
  char fail_msg[512];
} mixer;

typedef struct reader {
  er_store *s;
  int *stop;
  uint64_t reads, gaps, failed, max_seen;
} reader;

static void *mix_main(void *arg) {
  mixer *w = arg;
  char own[32];
  snprintf(own, sizeof own, "own-%u", (unsigned)w->tid);
  for (uint32_t i = 0; i < MIX_ITERS; i++) {
    size_t n = 1 + i % 3;
    unsigned char data[3][12];
    er_new_event ev[3];
    for (size_t j = 0; j < n; j++) {
      put_u32(data[j], w->tid);
      put_u32(data[j] + 4, i);
      put_u32(data[j] + 8, (uint32_t)j);
      tu_event(&ev[j], "Mixed", data[j], sizeof data[j]);
    }
    const char *stream = (i % 2) ? "shared" : own;
    er_appended r;
    er_error err;
    memset(&err, 0, sizeof err);
    int rc = er_append(w->s, stream, strlen(stream), ER_ANY, ev, n, &r, &err);
    if (rc != ER_OK) {
      w->failed++;
      w->fail_code = rc;
      memcpy(w->fail_msg, err.message, sizeof err.message);
      continue;
    }
    if (r.position - r.first_position != n - 1 ||
        r.version - r.first_version != n - 1 || r.replayed ||
        r.first_position == 0 || r.first_version == 0)
      w->bad++;
    w->events += n;
    if (i % 2)
      w->shared_events += n;
    else
      w->own_events += n;
  }
  return NULL;
}

static void *read_main(void *arg) {
  reader *r = arg;
  while (!__atomic_load_n(r->stop, __ATOMIC_ACQUIRE)) {
    er_iter *it = NULL;
    er_error err;
    if (er_read_all(r->s, 1, ER_UNLIMITED, NULL, &it, &err) != ER_OK) {
      r->failed++;
      break;
    }
    er_event ev;
    uint64_t expect = 1;
    int rc;
    while ((rc = er_iter_next(it, &ev, &err)) == ER_OK) {
      if (ev.position != expect)
        r->gaps++;
      expect = ev.position + 1;
    }
    if (rc != ER_NOT_FOUND)
      r->failed++;
    if (expect - 1 > r->max_seen)
      r->max_seen = expect - 1;
    er_iter_free(it);
    /* the stream reader too: versions from 1 without holes */
    if (er_read_stream(r->s, "shared", 6, 0, ER_UNLIMITED, 0, &it, &err) !=
        ER_OK) {
      r->failed++;
      break;
    }
    expect = 1;
    while ((rc = er_iter_next(it, &ev, &err)) == ER_OK) {
      if (ev.version != expect)
        r->gaps++;
      expect = ev.version + 1;
    }
    if (rc != ER_NOT_FOUND)
      r->failed++;
    er_iter_free(it);
    r->reads++;
  }
  return NULL;
}

/* The global log after the mixers: positions 1..total, every stream's
 * versions contiguous (counted into next_version: own-0..3, then shared), a
 * batch's events adjacent, each thread's batches in its order. */
static void check_mixed_log(er_store *s, const mixer *w, uint64_t total,
                            uint64_t next_version[MIX_THREADS + 1]) {
  er_iter *it = NULL;
  er_error err;
  assert_int_equal(er_read_all(s, 0, ER_UNLIMITED, NULL, &it, &err), ER_OK);
  int64_t last_iter[MIX_THREADS][2];
  uint64_t seen[MIX_THREADS] = {0};
  for (int i = 0; i < MIX_THREADS; i++)
    last_iter[i][0] = last_iter[i][1] = -1;
  uint32_t cur_tid = UINT32_MAX, cur_iter = 0, cur_j = 0;
  er_event ev;
  uint64_t n = 0;
  int rc;
  while ((rc = er_iter_next(it, &ev, &err)) == ER_OK) {
    assert_int_equal(ev.position, ++n);
    assert_int_equal(ev.data_len, 12);
    const unsigned char *d = ev.data;
    uint32_t tid = get_u32(d), iter = get_u32(d + 4), j = get_u32(d + 8);
    assert_true(tid < MIX_THREADS);
    assert_true(iter < MIX_ITERS);
    assert_true(j < 1 + iter % 3);
    int is_shared = iter % 2;
    char own[32];
    snprintf(own, sizeof own, "own-%u", (unsigned)tid);
    const char *stream = is_shared ? "shared" : own;
    assert_int_equal(ev.stream_len, strlen(stream));
    assert_memory_equal(ev.stream, stream, ev.stream_len);
    size_t k = is_shared ? MIX_THREADS : tid;
    assert_int_equal(ev.version, ++next_version[k]);
    if (j > 0) {
      /* inside a batch: the previous event is the one before it */
      assert_int_equal(cur_tid, tid);
      assert_int_equal(cur_iter, iter);
      assert_int_equal(cur_j + 1, j);
    } else {
      /* a batch starts after the previous one ended */
      if (cur_tid != UINT32_MAX)
        assert_int_equal(cur_j + 1, 1 + cur_iter % 3);
      assert_true((int64_t)iter > last_iter[tid][is_shared]);
      last_iter[tid][is_shared] = iter;
    }
    cur_tid = tid;
    cur_iter = iter;
    cur_j = j;
    seen[tid]++;
  }
  assert_int_equal(rc, ER_NOT_FOUND);
  er_iter_free(it);
  assert_int_equal(n, total);
  for (int i = 0; i < MIX_THREADS; i++)
    assert_int_equal(seen[i], w[i].events);
}

/* Each stream read back on its own: versions 1..n in position order. */
static void check_mixed_streams(er_store *s, const mixer *w, uint64_t shared,
                                const uint64_t next_version[MIX_THREADS + 1]) {
  er_iter *it = NULL;
  er_error err;
  er_event ev;
  int rc;
  for (int k = 0; k <= MIX_THREADS; k++) {
    char name[32];
    if (k < MIX_THREADS)
      snprintf(name, sizeof name, "own-%d", k);
    else
      strcpy(name, "shared");
    uint64_t v = 0;
    assert_int_equal(er_version(s, name, strlen(name), &v, &err), ER_OK);
    assert_int_equal(v, next_version[k]);
    if (k < MIX_THREADS)
      assert_int_equal(v, w[k].own_events);
    else
      assert_int_equal(v, shared);
    assert_int_equal(
        er_read_stream(s, name, strlen(name), 0, ER_UNLIMITED, 0, &it, &err),
        ER_OK);
    uint64_t m = 0, lastpos = 0;
    while ((rc = er_iter_next(it, &ev, &err)) == ER_OK) {
      assert_int_equal(ev.version, ++m);
      assert_true(ev.position > lastpos);
      lastpos = ev.position;
    }
    assert_int_equal(rc, ER_NOT_FOUND);
    assert_int_equal(m, v);
    er_iter_free(it);
  }
}

static void test_mixed_any(void **state) {
  fx *f = *state;
  mixer w[MIX_THREADS];
  pthread_t th[MIX_THREADS], rth;
  int stop = 0;
  reader rd;
  memset(w, 0, sizeof w);
  memset(&rd, 0, sizeof rd);
  rd.s = f->s;
  rd.stop = &stop;
  assert_int_equal(pthread_create(&rth, NULL, read_main, &rd), 0);
  for (int i = 0; i < MIX_THREADS; i++) {
    w[i].s = f->s;
    w[i].tid = (uint32_t)i;
    assert_int_equal(pthread_create(&th[i], NULL, mix_main, &w[i]), 0);
  }
  for (int i = 0; i < MIX_THREADS; i++)
    assert_int_equal(pthread_join(th[i], NULL), 0);
  __atomic_store_n(&stop, 1, __ATOMIC_RELEASE);
  assert_int_equal(pthread_join(rth, NULL), 0);

  uint64_t total = 0, shared = 0;
  for (int i = 0; i < MIX_THREADS; i++) {
    if (w[i].failed)
      print_error("thread %d: %llu appends failed, last %d: %s\n", i,
                  (unsigned long long)w[i].failed, w[i].fail_code,
                  w[i].fail_msg);
    assert_int_equal(w[i].failed, 0);
    assert_int_equal(w[i].bad, 0);
    total += w[i].events;
    shared += w[i].shared_events;
  }
  print_message("mixed: %llu events, reader made %llu passes\n",
                (unsigned long long)total, (unsigned long long)rd.reads);
  assert_int_equal(rd.failed, 0);
  assert_int_equal(rd.gaps, 0);
  assert_true(rd.max_seen <= total);
  assert_int_equal(total, MIX_THREADS * (uint64_t)(MIX_ITERS / 3) * 6);
  assert_int_equal(er_last_position(f->s), total);
  uint64_t next_version[MIX_THREADS + 1] = {0};
  check_mixed_log(f->s, w, total, next_version);
  check_mixed_streams(f->s, w, shared, next_version);
}

int main(void) {
  const char *target = getenv("ER_TEST_RACE_TARGET");
  if (target && atoi(target) > 0) RACE_TARGET = (uint64_t)atoi(target);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_race_exact_expected, fx_setup,
                                      fx_teardown),
      cmocka_unit_test_setup_teardown(test_mixed_any, fx_setup, fx_teardown),
  };
  return cmocka_run_group_tests_name("eventrocks threads", tests, NULL, NULL);
}
