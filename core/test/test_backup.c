/*
 * test_backup.c -- er_backup: a consistent copy of a store taken while a
 * writer thread keeps appending at full speed to the same handle.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>

#include "test_util.h"

typedef struct writer {
  er_store *s;
  volatile int stop;
  volatile uint64_t acked; /* last position acknowledged to the writer */
  int failed;
} writer;

/* Appends of 1 to 8 events to 50 streams, round robin, until told to stop. */
static void *write_main(void *ud) {
  writer *w = ud;
  er_new_event evs[8];
  unsigned long i;
  for (i = 0; !w->stop; i++) {
    char stream[32];
    er_appended res;
    er_error err;
    size_t n = 1 + i % 8, k;
    snprintf(stream, sizeof stream, "acct-%lu", i % 50);
    for (k = 0; k < n; k++) tu_event(&evs[k], "Deposited", "\x81\xa1n\x01", 4);
    if (er_append(w->s, stream, strlen(stream), ER_ANY, evs, n, &res, &err) != ER_OK) {
      w->failed = 1;
      break;
    }
    w->acked = res.position;
  }
  return NULL;
}

static void report(void *ud, const char *problem) {
  (void)ud;
  print_error("check: %s\n", problem);
}

/* Open the copy in `dir`: it passes check and holds `position` events. */
static void check_copy(const char *dir, uint64_t position) {
  er_store *copy = tu_open(dir);
  uint64_t problems = 99;
  er_error err;
  assert_int_equal(er_check(copy, report, NULL, NULL, &problems, &err), ER_OK);
  assert_int_equal(problems, 0);
  assert_int_equal(er_last_position(copy), position);
  er_close(copy);
}

static void test_backup_beside_a_writer(void **state) {
  char *dir = tu_mkdtemp();
  er_store *s = tu_open(dir);
  writer w;
  pthread_t th;
  int i;
  (void)state;
  memset(&w, 0, sizeof w);
  w.s = s;
  assert_int_equal(pthread_create(&th, NULL, write_main, &w), 0);
  while (w.acked < 2000) usleep(1000);
  for (i = 0; i < 4; i++) {
    char name[32];
    char *copy;
    uint64_t before = w.acked, position = 0;
    er_error err;
    snprintf(name, sizeof name, "backup-%d", i);
    copy = tu_join(dir, name);
    if (er_backup(s, copy, &position, &err) != ER_OK) print_error("er_backup: %s\n", err.message);
    assert_true(position >= before); /* every append acknowledged before the call */
    check_copy(copy, position);      /* no torn append, whatever came during it */
    free(copy);
  }
  w.stop = 1;
  assert_int_equal(pthread_join(th, NULL), 0);
  assert_false(w.failed);
  er_close(s);
  tu_rmtree(dir);
  free(dir);
}

static void test_backup_refusals(void **state) {
  char *dir = tu_mkdtemp();
  er_store *s = tu_open(dir), *ro;
  char *copy = tu_join(dir, "copy");
  er_options o;
  er_error err = fresh_err();
  uint64_t position = 77;
  (void)state;
  /* an existing directory: refused, nothing written into it */
  assert_fails(er_backup(s, dir, &position, &err), ER_INVALID, err);
  assert_int_equal(position, 77);
  err = fresh_err();
  assert_fails(er_backup(s, "", &position, &err), ER_INVALID, err);
  /* a parent that does not exist */
  {
    char *deep = tu_join(dir, "no/such/parent");
    err = fresh_err();
    assert_int_equal(er_backup(s, deep, &position, &err) == ER_OK, 0);
    free(deep);
  }
  /* a read-only handle cannot flush the writer's memtables */
  er_options_init(&o);
  o.read_only = 1;
  assert_int_equal(er_open(dir, &o, &ro, &err), ER_OK);
  err = fresh_err();
  assert_fails(er_backup(ro, copy, &position, &err), ER_INVALID, err);
  assert_non_null(strstr(err.message, "read-only"));
  er_close(ro);
  /* an empty store backs up to an empty store */
  err = fresh_err();
  assert_int_equal(er_backup(s, copy, &position, &err), ER_OK);
  assert_int_equal(position, 0);
  check_copy(copy, 0);
  er_close(s);
  free(copy);
  tu_rmtree(dir);
  free(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_backup_beside_a_writer),
      cmocka_unit_test(test_backup_refusals),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
