/*
 * test_wait.c -- cmocka tests of er_wait_position: waiting for new events.
 *
 *  - a writable handle: a waiter is woken by a commit made in another
 *    thread, every commit of a sequence is seen, a timeout returns the
 *    position unchanged, and a position already passed returns at once;
 *  - a read-only handle (a RocksDB secondary, here in the same process as
 *    its writer) is woken by the writer's commits within milliseconds.
 *
 * Worker threads never call cmocka asserts; the main thread asserts.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define TU_STORE_FIXTURE /* fx, fx_setup, fx_teardown */
#include "test_util.h"

static int64_t mono_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void sleep_ms(int ms) {
  struct timespec ts;
  ts.tv_sec = ms / 1000;
  ts.tv_nsec = (long)(ms % 1000) * 1000000L;
  nanosleep(&ts, NULL);
}

/* A writer thread: `n` appends of one event, `gap_ms` apart. */
typedef struct writer {
  er_store *s;
  int n, gap_ms, failed;
} writer;

static void *writer_main(void *arg) {
  writer *w = arg;
  for (int i = 0; i < w->n; i++) {
    er_new_event e;
    er_error err;
    sleep_ms(w->gap_ms);
    memset(&e, 0, sizeof e);
    e.type = "Ticked";
    e.type_len = 6;
    if (er_append(w->s, "clock-1", 7, ER_ANY, &e, 1, NULL, &err) != ER_OK) w->failed++;
  }
  return NULL;
}

/* Nothing new: the wait lasts its timeout and reports the old position. */
static void test_timeout(void **state) {
  fx *f = *state;
  er_error err = fresh_err();
  uint64_t last = 99;
  int64_t t0;
  ok1(f->s, "a-1", "Made", NULL);
  t0 = mono_us();
  assert_int_equal(er_wait_position(f->s, 1, 50, &last, &err), ER_OK);
  assert_int_equal(last, 1);
  assert_true(mono_us() - t0 >= 45000);
  /* 0: only look */
  assert_int_equal(er_wait_position(f->s, 1, 0, &last, &err), ER_OK);
  assert_int_equal(last, 1);
}

/* A position already passed returns at once, whatever the timeout. */
static void test_already_there(void **state) {
  fx *f = *state;
  er_error err = fresh_err();
  uint64_t last = 0;
  int64_t t0;
  ok1(f->s, "a-1", "Made", NULL);
  ok1(f->s, "a-1", "Made", NULL);
  t0 = mono_us();
  assert_int_equal(er_wait_position(f->s, 1, -1, &last, &err), ER_OK);
  assert_int_equal(last, 2);
  assert_true(mono_us() - t0 < 100000);
}

/* Each commit of another thread wakes the waiter, well before any
 * timeout: every position is seen in turn. */
static void test_woken_by_commits(void **state) {
  fx *f = *state;
  writer w = { f->s, 20, 5, 0 };
  pthread_t th;
  uint64_t seen = 0;
  int64_t t0 = mono_us();
  assert_int_equal(pthread_create(&th, NULL, writer_main, &w), 0);
  while (seen < 20) {
    er_error err = fresh_err();
    uint64_t last = 0;
    assert_int_equal(er_wait_position(f->s, seen, 10000, &last, &err), ER_OK);
    assert_true(last > seen); /* woken by a commit, not by the 10 s timeout */
    seen = last;
  }
  assert_int_equal(pthread_join(th, NULL), 0);
  assert_int_equal(w.failed, 0);
  assert_int_equal(seen, 20);
  assert_true(mono_us() - t0 < 5000000);
}

/* Several threads waiting at once are all woken by one commit. */
typedef struct waiter {
  er_store *s;
  uint64_t after, last;
  int rc;
} waiter;

static void *waiter_main(void *arg) {
  waiter *w = arg;
  er_error err;
  w->rc = er_wait_position(w->s, w->after, 10000, &w->last, &err);
  return NULL;
}

static void test_broadcast(void **state) {
  fx *f = *state;
  waiter w[3];
  pthread_t th[3];
  for (int i = 0; i < 3; i++) {
    w[i].s = f->s;
    w[i].after = 0;
    w[i].last = 0;
    w[i].rc = -1;
    assert_int_equal(pthread_create(&th[i], NULL, waiter_main, &w[i]), 0);
  }
  sleep_ms(30);
  ok1(f->s, "a-1", "Made", NULL);
  for (int i = 0; i < 3; i++) {
    assert_int_equal(pthread_join(th[i], NULL), 0);
    assert_int_equal(w[i].rc, ER_OK);
    assert_int_equal(w[i].last, 1);
  }
}

/* A read-only handle on the same directory follows the writer's commits
 * (inotify and a catch-up): woken within milliseconds, not its timeout. */
static void test_read_only_follows(void **state) {
  fx *f = *state;
  er_store *ro = tu_open_ro(f->dir);
  writer w = { f->s, 10, 20, 0 };
  pthread_t th;
  uint64_t seen = 0;
  int64_t waits[16];
  int nwaits = 0;
  ok1(f->s, "a-1", "Made", NULL);
  {
    er_error err = fresh_err();
    uint64_t last = 0;
    assert_int_equal(er_wait_position(ro, 0, 5000, &last, &err), ER_OK);
    assert_int_equal(last, 1);
    seen = last;
  }
  assert_int_equal(pthread_create(&th, NULL, writer_main, &w), 0);
  while (seen < 11) {
    er_error err = fresh_err();
    uint64_t last = 0;
    int64_t t0 = mono_us();
    int rc = er_wait_position(ro, seen, 5000, &last, &err);
    if (rc != ER_OK) print_error("wait: %s\n", err.message);
    assert_int_equal(rc, ER_OK);
    assert_true(last > seen);
    if (nwaits < 16) waits[nwaits++] = mono_us() - t0;
    seen = last;
  }
  assert_int_equal(pthread_join(th, NULL), 0);
  assert_int_equal(w.failed, 0);
  /* writes come 20 ms apart: the waits end with them (inotify), not at the
   * 500 ms re-check -- the median, so that a slow scheduler (valgrind) may
   * delay one */
  for (int i = 1; i < nwaits; i++)
    for (int j = i; j > 0 && waits[j - 1] > waits[j]; j--) {
      int64_t x = waits[j];
      waits[j] = waits[j - 1];
      waits[j - 1] = x;
    }
  assert_true(nwaits > 0);
  assert_true(waits[nwaits / 2] < 300000);
  {
    er_error err = fresh_err();
    uint64_t last = 0;
    assert_int_equal(er_wait_position(ro, seen, 30, &last, &err), ER_OK);
    assert_int_equal(last, 11);
  }
  er_close(ro);
}

/* The inotify instances this process holds (/proc/self/fd). */
static int count_inotify(void) {
  DIR *d = opendir("/proc/self/fd");
  struct dirent *e;
  int n = 0;
  if (!d) return -1;
  while ((e = readdir(d)) != NULL) {
    char path[300], target[64];
    ssize_t len;
    if (e->d_name[0] == '.') continue;
    snprintf(path, sizeof path, "/proc/self/fd/%s", e->d_name);
    len = readlink(path, target, sizeof target - 1);
    if (len <= 0) continue;
    target[len] = 0;
    if (strcmp(target, "anon_inode:inotify") == 0) n++;
  }
  closedir(d);
  return n;
}

/* A read-only handle keeps its watch between waits (closing an inotify
 * instance waits for the kernel's RCU grace period: 10-20 ms a wait, which
 * was most of a follower's latency), and closes it with the handle. */
static void test_read_only_keeps_its_watch(void **state) {
  fx *f = *state;
  er_store *ro = tu_open_ro(f->dir);
  int before = count_inotify();
  assert_true(before >= 0);
  for (int i = 0; i < 3; i++) {
    er_error err = fresh_err();
    uint64_t last = 0;
    ok1(f->s, "a-1", "Made", NULL);
    assert_int_equal(er_wait_position(ro, (uint64_t)i, 5000, &last, &err), ER_OK);
    assert_int_equal(last, (uint64_t)i + 1);
    assert_int_equal(count_inotify(), before + 1);
  }
  {
    er_error err = fresh_err();
    uint64_t last = 0;
    assert_int_equal(er_wait_position(ro, 3, 20, &last, &err), ER_OK); /* a timeout */
    assert_int_equal(last, 3);
    assert_int_equal(count_inotify(), before + 1);
  }
  er_close(ro);
  assert_int_equal(count_inotify(), before);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_timeout, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_already_there, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_woken_by_commits, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_broadcast, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_read_only_follows, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_read_only_keeps_its_watch, fx_setup, fx_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
