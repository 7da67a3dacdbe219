/*
 * record_decode.c -- libFuzzer target: the event record decoder
 * (er__record_decode, core/src/record.c).
 *
 * Every input is decoded twice: as it is, and with its checksum (bytes 4..7)
 * replaced by the right one, so that the fuzzer reaches the code behind the
 * checksum without having to guess XXH3.  The decoder must never crash or
 * read outside the buffer (ASan), and when it accepts the bytes:
 *  - every field lies inside the buffer, in the documented order, and the
 *    lengths add up to the record's size;
 *  - encoding the decoded event again (er__record_encode) gives back the
 *    same bytes: a record has one encoding, so the bytes the decoder
 *    accepts are exactly those the encoder writes.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "internal.h"

#define CHECK(cond)                                                       \
  do {                                                                    \
    if (!(cond)) {                                                        \
      fprintf(stderr, "record_decode: %s:%d: check failed: %s\n", __FILE__, \
              __LINE__, #cond);                                           \
      abort();                                                            \
    }                                                                     \
  } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* `ptr` points at `len` bytes inside [base, base + size). */
static int inside(const uint8_t *base, size_t size, const void *ptr,
                  size_t len) {
  const uint8_t *p = ptr;
  return p >= base && p <= base + size && len <= (size_t)(base + size - p);
}

/* A sealed record (personal data): stream, type, subject and box lie one
 * after the other and fill the record; its payload is not decoded here
 * (that needs the subject's key: er__unseal_event), and re-encoding it
 * without a key (a forgotten event's form) gives the same bytes up to the
 * box, the checksum aside. */
static void check_sealed(const uint8_t *buf, size_t size, const er_event *ev,
                         const er_record_info *info) {
  er_new_event ne;
  uint8_t *again;
  size_t before_box;
  CHECK((const uint8_t *)ev->stream == buf + ER_RECORD_HEADER);
  CHECK((const uint8_t *)ev->type == (const uint8_t *)ev->stream + ev->stream_len);
  CHECK((const uint8_t *)ev->subject == (const uint8_t *)ev->type + ev->type_len);
  CHECK(ev->subject_len >= 1 && ev->subject_len <= ER_MAX_SUBJECT_LEN);
  CHECK(info->box == (const uint8_t *)ev->subject + ev->subject_len);
  CHECK(inside(buf, size, info->box, info->box_len));
  CHECK(info->box + info->box_len == buf + size);
  CHECK(info->box_len == ev->metadata_len + ev->data_len + ER_BOX_OVERHEAD);
  CHECK(ev->metadata == NULL && ev->data == NULL);
  memset(&ne, 0, sizeof ne);
  memcpy(ne.id, ev->id, 16);
  ne.has_id = 1;
  ne.type = ev->type;
  ne.type_len = ev->type_len;
  ne.subject = ev->subject;
  ne.subject_len = ev->subject_len;
  ne.metadata_len = ev->metadata_len;
  ne.data_len = ev->data_len;
  CHECK(er__record_size(ev->stream_len, &ne) == size);
  again = malloc(size);
  CHECK(again != NULL);
  er__record_encode_sealed(again, ev->stream, ev->stream_len, &ne, ev->position,
                           ev->version, ev->time, info->batch_size,
                           info->batch_index, NULL, NULL, NULL);
  before_box = (size_t)(info->box - buf);
  CHECK(memcmp(again, buf, 4) == 0);
  CHECK(memcmp(again + 8, buf + 8, before_box - 8) == 0);
  free(again);
}

static void check_decoded(const uint8_t *buf, size_t size) {
  er_event ev;
  er_record_info info;
  er_new_event ne;
  uint8_t *again;
  memset(&ev, 0xa5, sizeof ev);
  if (er__record_decode(buf, size, &ev, &info) != ER_OK) return;

  CHECK(size >= ER_RECORD_HEADER);
  if (info.sealed) {
    check_sealed(buf, size, &ev, &info);
    return;
  }
  /* the fields lie inside the buffer, one after the other */
  CHECK((const uint8_t *)ev.stream == buf + ER_RECORD_HEADER);
  CHECK(inside(buf, size, ev.stream, ev.stream_len));
  CHECK((const uint8_t *)ev.type == (const uint8_t *)ev.stream + ev.stream_len);
  CHECK(inside(buf, size, ev.type, ev.type_len));
  CHECK((const uint8_t *)ev.metadata == (const uint8_t *)ev.type + ev.type_len);
  CHECK(inside(buf, size, ev.metadata, ev.metadata_len));
  CHECK((const uint8_t *)ev.data ==
        (const uint8_t *)ev.metadata + ev.metadata_len);
  CHECK(inside(buf, size, ev.data, ev.data_len));
  CHECK(ER_RECORD_HEADER + ev.stream_len + ev.type_len + ev.metadata_len +
            ev.data_len == size);
  CHECK(memcmp(ev.id, buf + 8, 16) == 0);

  /* one encoding per record: encoding the event again gives the same bytes */
  memset(&ne, 0, sizeof ne);
  memcpy(ne.id, ev.id, 16);
  ne.has_id = 1;
  ne.type = ev.type;
  ne.type_len = ev.type_len;
  ne.data = ev.data;
  ne.data_len = ev.data_len;
  ne.metadata = ev.metadata;
  ne.metadata_len = ev.metadata_len;
  CHECK(er__record_size(ev.stream_len, &ne) == size);
  again = malloc(size);
  CHECK(again != NULL);
  er__record_encode(again, ev.stream, ev.stream_len, &ne, ev.position,
                    ev.version, ev.time, info.batch_size, info.batch_index);
  if (memcmp(again, buf, size) != 0) {
    size_t i;
    for (i = 0; i < size && again[i] == buf[i]; i++) {}
    fprintf(stderr, "record_decode: re-encoding differs at byte %zu "
            "(decoded 0x%02x, encoded 0x%02x)\n", i, buf[i], again[i]);
    abort();
  }
  free(again);
  /* info may be NULL */
  CHECK(er__record_decode(buf, size, &ev, NULL) == ER_OK);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  uint8_t *fixed;
  check_decoded(data, size);
  if (size < 8) return 0;
  /* the same bytes with the checksum they need */
  fixed = malloc(size);
  CHECK(fixed != NULL);
  memcpy(fixed, data, size);
  er__put_le32(fixed + 4, (uint32_t)XXH3_64bits(fixed + 8, size - 8));
  check_decoded(fixed, size);
  free(fixed);
  return 0;
}
