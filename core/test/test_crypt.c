/*
 * test_crypt.c -- personal data (core/src/crypt.c): sealed records read
 * back as plaintext, never appear in clear in the store's files, are bound
 * to their event (a moved box reads as corruption, in reads and in
 * er_check), need their key to open the store, and read as forgotten once
 * er_forget destroyed the subject's key, which er_compact then removes
 * from every file.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <dirent.h>
#include <xxhash.h>

#include "test_util.h"

static const uint8_t master[ER_KEY_LEN] = "0123456789abcdef0123456789abcde";
static const uint8_t other[ER_KEY_LEN] = "ZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZ";

static int open_with(const char *dir, const uint8_t *key, er_store **s) {
  er_options o;
  er_error err;
  er_options_init(&o);
  o.key = key;
  return er_open(dir, &o, s, &err);
}

static void append_one(er_store *s, const char *stream, const char *subject,
                       const char *data) {
  er_new_event e;
  er_error err;
  memset(&e, 0, sizeof e);
  e.type = "Registered";
  e.type_len = 10;
  e.data = data;
  e.data_len = strlen(data);
  e.metadata = subject ? "meta-secret" : "plain-meta!";
  e.metadata_len = 11;
  e.subject = subject;
  e.subject_len = subject ? strlen(subject) : 0;
  assert_int_equal(er_append(s, stream, strlen(stream), ER_ANY, &e, 1, NULL, &err), ER_OK);
}

/* Whether any regular file under `dir` contains `needle`. */
static int dir_contains(const char *dir, const void *needle, size_t len) {
  DIR *d = opendir(dir);
  struct dirent *e;
  int found = 0;
  assert_non_null(d);
  while (!found && (e = readdir(d)) != NULL) {
    char *p;
    FILE *f;
    long n;
    char *buf;
    if (e->d_name[0] == '.') continue;
    p = tu_join(dir, e->d_name);
    f = fopen(p, "rb");
    free(p);
    if (!f) continue;
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    rewind(f);
    buf = malloc((size_t)n + 1);
    if (n > 0 && fread(buf, 1, (size_t)n, f) == (size_t)n && (size_t)n >= len) {
      long i;
      for (i = 0; i + (long)len <= n && !found; i++)
        found = memcmp(buf + i, needle, len) == 0;
    }
    free(buf);
    fclose(f);
  }
  closedir(d);
  return found;
}

static void read_at(er_store *s, uint64_t pos, er_event *ev, void **mem, int expect) {
  er_error err;
  assert_int_equal(er_event_at(s, pos, ev, mem, &err), expect);
}

static void test_sealed_roundtrip_and_keys(void **state) {
  char *dir = tu_mkdtemp();
  er_store *s = NULL;
  er_event ev;
  void *mem = NULL;
  (void)state;
  assert_int_equal(open_with(dir, master, &s), ER_OK);
  append_one(s, "user-1", "alice", "PLAINTEXT-MARKER-ALICE");
  append_one(s, "note-1", NULL, "clear note");
  read_at(s, 1, &ev, &mem, ER_OK);
  assert_int_equal(ev.data_len, 22);
  assert_memory_equal(ev.data, "PLAINTEXT-MARKER-ALICE", 22);
  assert_memory_equal(ev.metadata, "meta-secret", 11);
  assert_int_equal(ev.subject_len, 5);
  assert_memory_equal(ev.subject, "alice", 5);
  assert_int_equal(ev.forgotten, 0);
  er_free(mem);
  er_close(s);
  assert_false(dir_contains(dir, "PLAINTEXT-MARKER-ALICE", 22));
  assert_false(dir_contains(dir, "meta-secret", 11));
  /* without the key, or with another one: refused */
  s = NULL;
  assert_int_equal(open_with(dir, NULL, &s), ER_INVALID);
  assert_null(s);
  assert_int_equal(open_with(dir, other, &s), ER_INVALID);
  assert_null(s);
  assert_int_equal(open_with(dir, master, &s), ER_OK);
  er_close(s);
  tu_rmtree(dir);
  free(dir);
}

static void test_subject_needs_a_key(void **state) {
  char *dir = tu_mkdtemp();
  er_store *s = tu_open(dir);
  er_new_event e;
  er_error err;
  (void)state;
  memset(&e, 0, sizeof e);
  e.type = "T";
  e.type_len = 1;
  e.subject = "bob";
  e.subject_len = 3;
  assert_int_equal(er_append(s, "a", 1, ER_ANY, &e, 1, NULL, &err), ER_INVALID);
  assert_int_equal(er_forget(s, "bob", 3, NULL, &err), ER_INVALID);
  er_close(s);
  tu_rmtree(dir);
  free(dir);
}

/* Copy the box of the record at position 1 over the one at 2 (the same
 * sizes), with a valid checksum: the associated data tells them apart. */
static void test_moved_box_is_corruption(void **state) {
  char *dir = tu_mkdtemp();
  er_store *s = NULL;
  er_error err;
  void *a = NULL, *b = NULL, *mem = NULL;
  size_t alen, blen;
  uint8_t k1[8] = {0, 0, 0, 0, 0, 0, 0, 1}, k2[8] = {0, 0, 0, 0, 0, 0, 0, 2};
  uint64_t problems = 0;
  er_event ev;
  size_t box;
  (void)state;
  assert_int_equal(open_with(dir, master, &s), ER_OK);
  append_one(s, "user-1", "alice", "data-of-event-one");
  append_one(s, "user-1", "alice", "data-of-event-two");
  assert_int_equal(er_debug_get(s, "log", k1, 8, &a, &alen, &err), ER_OK);
  assert_int_equal(er_debug_get(s, "log", k2, 8, &b, &blen, &err), ER_OK);
  assert_int_equal(alen, blen);
  box = 8 + 24 + 11 + 17 + 16; /* key id, nonce, metadata, data, tag */
  memcpy((uint8_t *)b + blen - box, (uint8_t *)a + alen - box, box);
  {
    uint32_t sum = (uint32_t)XXH3_64bits((uint8_t *)b + 8, blen - 8);
    uint8_t *p = (uint8_t *)b + 4;
    p[0] = (uint8_t)sum; p[1] = (uint8_t)(sum >> 8);
    p[2] = (uint8_t)(sum >> 16); p[3] = (uint8_t)(sum >> 24);
  }
  assert_int_equal(er_debug_put(s, "log", k2, 8, b, blen, &err), ER_OK);
  read_at(s, 2, &ev, &mem, ER_CORRUPTION);
  read_at(s, 1, &ev, &mem, ER_OK);
  er_free(mem);
  assert_int_equal(er_check(s, NULL, NULL, NULL, &problems, &err), ER_OK);
  assert_true(problems >= 1);
  er_free(a);
  er_free(b);
  er_close(s);
  tu_rmtree(dir);
  free(dir);
}

static void test_forget(void **state) {
  char *dir = tu_mkdtemp();
  er_store *s = NULL;
  er_error err;
  er_event ev;
  void *mem = NULL, *wrapped = NULL, *snap = NULL;
  size_t wlen, slen;
  int forgotten = -1;
  uint64_t problems = 0;
  er_txn *t;
  (void)state;
  assert_int_equal(open_with(dir, master, &s), ER_OK);
  append_one(s, "user-1", "alice", "alice's data");
  append_one(s, "user-2", "bob", "bob's data");
  assert_int_equal(er_txn_begin(s, &t, &err), ER_OK);
  assert_int_equal(er_txn_put(t, ER_SNAPSHOTS, "user-1", 6, "snap", 4, &err), ER_OK);
  assert_int_equal(er_txn_commit(t, &err), ER_OK);
  er_txn_free(t);
  assert_int_equal(er_debug_get(s, "keys", "alice", 5, &wrapped, &wlen, &err), ER_OK);
  assert_int_equal(er_forget(s, "alice", 5, &forgotten, &err), ER_OK);
  assert_int_equal(forgotten, 1);
  assert_int_equal(er_forget(s, "alice", 5, &forgotten, &err), ER_OK);
  assert_int_equal(forgotten, 0);
  read_at(s, 1, &ev, &mem, ER_OK);
  assert_int_equal(ev.forgotten, 1);
  assert_int_equal(ev.data_len, 0);
  assert_int_equal(ev.metadata_len, 0);
  assert_int_equal(ev.version, 1);
  er_free(mem);
  read_at(s, 2, &ev, &mem, ER_OK);
  assert_int_equal(ev.forgotten, 0);
  assert_memory_equal(ev.data, "bob's data", 10);
  er_free(mem);
  assert_int_equal(er_get(s, ER_SNAPSHOTS, "user-1", 6, &snap, &slen, &err), ER_NOT_FOUND);
  assert_int_equal(er_check(s, NULL, NULL, NULL, &problems, &err), ER_OK);
  assert_int_equal(problems, 0);
  assert_int_equal(er_compact(s, NULL, &err), ER_OK);
  er_close(s);
  assert_false(dir_contains(dir, wrapped, wlen));
  assert_int_equal(open_with(dir, master, &s), ER_OK);
  read_at(s, 1, &ev, &mem, ER_OK);
  assert_int_equal(ev.forgotten, 1);
  er_free(mem);
  /* the subject comes back: a new key, the old events stay forgotten */
  append_one(s, "user-1", "alice", "alice again");
  read_at(s, 3, &ev, &mem, ER_OK);
  assert_int_equal(ev.forgotten, 0);
  assert_memory_equal(ev.data, "alice again", 11);
  er_free(mem);
  read_at(s, 1, &ev, &mem, ER_OK);
  assert_int_equal(ev.forgotten, 1);
  er_free(mem);
  /* an event stored as forgotten already (an import) */
  {
    er_new_event e;
    memset(&e, 0, sizeof e);
    e.type = "Imported";
    e.type_len = 8;
    e.subject = "carol";
    e.subject_len = 5;
    e.forgotten = 1;
    assert_int_equal(er_append(s, "user-3", 6, ER_ANY, &e, 1, NULL, &err), ER_OK);
    read_at(s, 4, &ev, &mem, ER_OK);
    assert_int_equal(ev.forgotten, 1);
    assert_int_equal(ev.subject_len, 5);
    er_free(mem);
  }
  assert_int_equal(er_check(s, NULL, NULL, NULL, &problems, &err), ER_OK);
  assert_int_equal(problems, 0);
  er_close(s);
  er_free(wrapped);
  tu_rmtree(dir);
  free(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_sealed_roundtrip_and_keys),
      cmocka_unit_test(test_subject_needs_a_key),
      cmocka_unit_test(test_moved_box_is_corruption),
      cmocka_unit_test(test_forget),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
