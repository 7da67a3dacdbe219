/*
 * test_util.h -- helpers shared by the C tests of the eventrocks core:
 * fresh temporary directories (mkdtemp under /tmp) and their recursive
 * removal (nftw).  Include after <cmocka.h>.  Everything here is static
 * inline so that a test file may leave any of it unused.
 */
#ifndef TEST_UTIL_H
#define TEST_UTIL_H

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "eventrocks.h"

/* A new empty directory /tmp/eventrocks-test-XXXXXX; malloc'd path. */
static inline char *tu_mkdtemp(void) {
  char *dir = strdup("/tmp/eventrocks-test-XXXXXX");
  assert_non_null(dir);
  assert_non_null(mkdtemp(dir));
  return dir;
}

/* `dir`/`name` in a malloc'd string. */
static inline char *tu_join(const char *dir, const char *name) {
  size_t n = strlen(dir) + strlen(name) + 2;
  char *p = malloc(n);
  assert_non_null(p);
  snprintf(p, n, "%s/%s", dir, name);
  return p;
}

static inline int tu_rm_entry(const char *path, const struct stat *sb,
                              int flag, struct FTW *ftw) {
  (void)sb;
  (void)ftw;
  if (flag == FTW_DP || flag == FTW_D)
    return rmdir(path) == 0 ? 0 : -1;
  return unlink(path) == 0 ? 0 : -1;
}

/* Remove `dir` and everything under it; NULL is fine. */
static inline void tu_rmtree(const char *dir) {
  if (dir != NULL)
    (void)nftw(dir, tu_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Wall clock in microseconds since the Unix epoch. */
static inline int64_t tu_now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Open (creating) the store in `dir` with default options; asserts. */
static inline er_store *tu_open(const char *dir) {
  er_store *s = NULL;
  er_error err;
  memset(&err, 0, sizeof err);
  int rc = er_open(dir, NULL, &s, &err);
  if (rc != ER_OK)
    print_error("er_open(%s): %d %s\n", dir, rc, err.message);
  assert_int_equal(rc, ER_OK);
  assert_non_null(s);
  return s;
}

/* Open the store in `dir` read-only; asserts. */
static inline er_store *tu_open_ro(const char *dir) {
  er_options o;
  er_store *ro = NULL;
  er_error err;
  er_options_init(&o);
  o.read_only = 1;
  memset(&err, 0, sizeof err);
  int rc = er_open(dir, &o, &ro, &err);
  if (rc != ER_OK)
    print_error("read-only open of %s: %d %s\n", dir, rc, err.message);
  assert_int_equal(rc, ER_OK);
  assert_non_null(ro);
  return ro;
}

/* Fill `e` as an event without id. */
static inline void tu_event(er_new_event *e, const char *type,
                            const void *data, size_t data_len) {
  memset(e, 0, sizeof *e);
  e->type = type;
  e->type_len = strlen(type);
  e->data = data;
  e->data_len = data_len;
}

/* A string literal as (pointer, length), embedded NULs included. */
#define L(lit) (lit), (sizeof(lit) - 1)

/* A failing call returned `code` and filled `err` accordingly. */
#define assert_fails(rc, code_, err)                                         \
  do {                                                                       \
    assert_int_equal((rc), (code_));                                         \
    assert_int_equal((err).code, (code_));                                   \
    assert_true((err).message[0] != '\0');                                   \
    assert_non_null(memchr((err).message, '\0', sizeof (err).message));      \
  } while (0)

/* An error record a failing call must overwrite: code and index are bogus. */
static inline er_error fresh_err(void) {
  er_error e;
  memset(&e, 0, sizeof e);
  e.code = -12345;
  e.append_index = 12345;
  return e;
}

static inline er_txn *begin(er_store *s) {
  er_txn *t = NULL;
  er_error err = fresh_err();
  int rc = er_txn_begin(s, &t, &err);
  if (rc != ER_OK)
    print_error("er_txn_begin: %d %s\n", rc, err.message);
  assert_int_equal(rc, ER_OK);
  assert_non_null(t);
  return t;
}

static inline void commit_ok(er_txn *t) {
  er_error err = fresh_err();
  int rc = er_txn_commit(t, &err);
  if (rc != ER_OK)
    print_error("er_txn_commit: %d %s\n", rc, err.message);
  assert_int_equal(rc, ER_OK);
}

/* Append one event of `type` with `data` (a string, or NULL for none) to
 * `stream`, expecting anything; asserts success and returns what it did. */
static inline er_appended ok1(er_store *s, const char *stream,
                              const char *type, const char *data) {
  er_new_event e;
  er_appended res;
  er_error err = fresh_err();
  tu_event(&e, type, data, data ? strlen(data) : 0);
  int rc = er_append(s, stream, strlen(stream), ER_ANY, &e, 1, &res, &err);
  if (rc != ER_OK)
    print_error("append to %s: %d %s\n", stream, rc, err.message);
  assert_int_equal(rc, ER_OK);
  return res;
}

/* The current version of `stream` (asserts the call succeeds). */
static inline uint64_t version_of(er_store *s, const char *stream) {
  uint64_t v = 999999;
  er_error err = fresh_err();
  assert_int_equal(er_version(s, stream, strlen(stream), &v, &err), ER_OK);
  return v;
}

static inline int is_uuid7(const uint8_t id[16]) {
  return (id[6] >> 4) == 7 && (id[8] & 0xc0) == 0x80;
}

/* A caller-given id derived from `seed` (a valid UUID v4). */
static inline void set_id(er_new_event *e, uint8_t seed) {
  for (int i = 0; i < 16; i++)
    e->id[i] = (uint8_t)(seed * 16 + i);
  e->id[6] = (uint8_t)(0x40 | (e->id[6] & 0x0f));
  e->id[8] = (uint8_t)(0x80 | (e->id[8] & 0x3f));
  e->has_id = 1;
}

/* The event at `pos` (asserts it exists); release *mem with er_free. */
static inline er_event event_at(er_store *s, uint64_t pos, void **mem) {
  er_event ev;
  er_error err = fresh_err();
  int rc = er_event_at(s, pos, &ev, mem, &err);
  if (rc != ER_OK)
    print_error("er_event_at(%llu): %d %s\n", (unsigned long long)pos, rc,
                err.message);
  assert_int_equal(rc, ER_OK);
  return ev;
}

/* There is no event at `pos`: ER_NOT_FOUND, no memory handed out. */
static inline void assert_no_event(er_store *s, uint64_t pos) {
  void *mem = NULL;
  er_event ev;
  er_error err = fresh_err();
  assert_fails(er_event_at(s, pos, &ev, &mem, &err), ER_NOT_FOUND, err);
  assert_null(mem);
}

#ifdef TU_STORE_FIXTURE
/* A cmocka fixture: a fresh store in a fresh directory, removed after. */
typedef struct fx {
  char *dir;
  er_store *s;
} fx;

static int fx_setup(void **state) {
  fx *f = calloc(1, sizeof *f);
  assert_non_null(f);
  f->dir = tu_mkdtemp();
  f->s = tu_open(f->dir);
  *state = f;
  return 0;
}

static int fx_teardown(void **state) {
  fx *f = *state;
  er_close(f->s);
  tu_rmtree(f->dir);
  free(f->dir);
  free(f);
  return 0;
}
#endif

#endif
