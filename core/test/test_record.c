/*
 * test_record.c -- cmocka tests of the event record codec (core/src/record.c,
 * internal: er__record_encode / er__record_decode) and of what a damaged
 * record does through the public API.
 *
 * fuzz/record_decode checks the same properties on arbitrary bytes; the
 * cases here are the ones it found or that guard its assumptions.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <xxhash.h>

#define TU_STORE_FIXTURE /* fx, fx_setup, fx_teardown */
#include "test_util.h"

#include "../src/internal.h"

/* ------------------------------------------------------------------------ */
/* Helpers                                                                   */

/* A record of stream "order-7", type "Placed", metadata "m" and data "dd"
 * into `out` (at least 128 bytes); returns its length. */
static size_t sample(uint8_t *out) {
  er_new_event e;
  size_t n;
  tu_event(&e, "Placed", "dd", 2);
  e.metadata = "m";
  e.metadata_len = 1;
  for (int i = 0; i < 16; i++) e.id[i] = (uint8_t)(0xa0 + i);
  e.has_id = 1;
  n = er__record_size(7, &e);
  assert_true(n <= 128);
  er__record_encode(out, "order-7", 7, &e, 42, 3, INT64_C(1700000000000000), 5, 4);
  return n;
}

/* Recompute the checksum of a record changed by hand. */
static void reseal(uint8_t *rec, size_t len) {
  uint32_t h = (uint32_t)XXH3_64bits(rec + 8, len - 8);
  for (int i = 0; i < 4; i++) rec[4 + i] = (uint8_t)(h >> (8 * i));
}

static int decodes(const uint8_t *rec, size_t len) {
  er_event ev;
  er_record_info info;
  return er__record_decode(rec, len, &ev, &info) == ER_OK;
}

/* ------------------------------------------------------------------------ */
/* The codec                                                                 */

static void test_record_round_trip(void **state) {
  (void)state;
  uint8_t rec[128], again[128];
  size_t n = sample(rec);
  er_event ev;
  er_record_info info;
  assert_int_equal(n, ER_RECORD_HEADER + 7 + 6 + 1 + 2);
  assert_int_equal(er__record_decode(rec, n, &ev, &info), ER_OK);
  assert_int_equal(ev.position, 42);
  assert_int_equal(ev.version, 3);
  assert_true(ev.time == INT64_C(1700000000000000));
  assert_int_equal(info.batch_size, 5);
  assert_int_equal(info.batch_index, 4);
  assert_memory_equal(ev.stream, "order-7", 7);
  assert_memory_equal(ev.type, "Placed", 6);
  assert_memory_equal(ev.metadata, "m", 1);
  assert_memory_equal(ev.data, "dd", 2);
  assert_int_equal(ev.data_len, 2);
  /* encoding the decoded event gives the same bytes */
  er_new_event e;
  memset(&e, 0, sizeof e);
  memcpy(e.id, ev.id, 16);
  e.has_id = 1;
  e.type = ev.type;
  e.type_len = ev.type_len;
  e.data = ev.data;
  e.data_len = ev.data_len;
  e.metadata = ev.metadata;
  e.metadata_len = ev.metadata_len;
  er__record_encode(again, ev.stream, ev.stream_len, &e, ev.position,
                    ev.version, ev.time, info.batch_size, info.batch_index);
  assert_memory_equal(again, rec, n);
  /* info may be NULL */
  assert_int_equal(er__record_decode(rec, n, &ev, NULL), ER_OK);
}

/* Found by fuzz/record_decode: bytes 1-3 (flags, reserved) are outside the
 * checksum and were not checked, so damage there went unnoticed and two
 * byte strings decoded to the same record. */
static void test_record_refuses_flags_and_reserved(void **state) {
  (void)state;
  uint8_t rec[128];
  size_t n = sample(rec);
  for (int byte = 1; byte <= 3; byte++) {
    for (int bit = 0; bit < 8; bit++) {
      sample(rec);
      rec[byte] ^= (uint8_t)(1u << bit);
      assert_false(decodes(rec, n));
      reseal(rec, n); /* the checksum does not cover these bytes anyway */
      assert_false(decodes(rec, n));
    }
  }
  sample(rec);
  assert_true(decodes(rec, n));
}

static void test_record_refuses_malformed(void **state) {
  (void)state;
  uint8_t rec[128];
  size_t n = sample(rec);
  /* too short for the header, or cut anywhere */
  for (size_t len = 0; len < n; len++) assert_false(decodes(rec, len));
  /* another record format */
  rec[0] = 2;
  reseal(rec, n);
  assert_false(decodes(rec, n));
  /* lengths that do not add up to the record's size, however large */
  static const uint32_t bad[] = {0, 6, 8, 0x7fffffff, 0xffffffff};
  for (int field = 0; field < 4; field++) {
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
      sample(rec);
      er__put_le32(rec + 56 + 4 * field, bad[i]);
      reseal(rec, n);
      if (field == 1 && bad[i] == 6) continue; /* the true type length */
      assert_false(decodes(rec, n));
    }
  }
  /* every length at 0xffffffff: the sum must not wrap around */
  sample(rec);
  for (int field = 0; field < 4; field++) er__put_le32(rec + 56 + 4 * field, 0xffffffff);
  reseal(rec, n);
  assert_false(decodes(rec, n));
  /* one bit flipped anywhere the checksum covers */
  for (size_t i = 8; i < n; i++) {
    sample(rec);
    rec[i] ^= 0x10;
    assert_false(decodes(rec, n));
  }
}

/* ------------------------------------------------------------------------ */
/* Through the store                                                         */

/* A record whose flags byte is set, with a valid checksum, is corruption
 * for every reader and for er_check. */
static void test_record_flag_in_store(void **state) {
  fx *f = *state;
  er_new_event e;
  er_error err = fresh_err();
  tu_event(&e, "T", "x", 1);
  assert_int_equal(er_append(f->s, L("s-1"), ER_ANY, &e, 1, NULL, &err), ER_OK);

  uint8_t key[8];
  er__put_be64(key, 1);
  void *val = NULL;
  size_t len = 0;
  assert_int_equal(er_debug_get(f->s, "log", key, 8, &val, &len, &err), ER_OK);
  uint8_t *rec = val;
  rec[1] = 0x01;
  reseal(rec, len); /* unchanged: the checksum starts at byte 8 */
  assert_int_equal(er_debug_put(f->s, "log", key, 8, rec, len, &err), ER_OK);
  er_free(val);

  er_event ev;
  void *mem = NULL;
  err = fresh_err();
  assert_fails(er_event_at(f->s, 1, &ev, &mem, &err), ER_CORRUPTION, err);
  er_free(mem);

  er_iter *it = NULL;
  assert_int_equal(er_read_all(f->s, 0, ER_UNLIMITED, NULL, &it, &err), ER_OK);
  err = fresh_err();
  assert_fails(er_iter_next(it, &ev, &err), ER_CORRUPTION, err);
  assert_int_equal(err.position, 1);
  er_iter_free(it);

  uint64_t problems = 0;
  assert_int_equal(er_check(f->s, NULL, NULL, NULL, &problems, &err), ER_OK);
  assert_true(problems > 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_record_round_trip),
      cmocka_unit_test(test_record_refuses_flags_and_reserved),
      cmocka_unit_test(test_record_refuses_malformed),
      cmocka_unit_test_setup_teardown(test_record_flag_in_store, fx_setup,
                                      fx_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
