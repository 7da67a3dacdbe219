/* record.c -- the event record: how one event is laid out in RocksDB.
 *
 *   offset size
 *   0      1    record format (1)
 *   1      1    flags (0)
 *   2      2    reserved (0)
 *   4      4    checksum: low 32 bits of XXH3-64 over bytes 8..end
 *   8      16   event id
 *   24     8    position          (all integers little-endian)
 *   32     8    version
 *   40     8    time, microseconds since the Unix epoch
 *   48     4    batch size: events in the append that wrote this record
 *   52     4    batch index: this record's index inside that append
 *   56     16   lengths of stream, type, metadata, data (u32 each)
 *   72     ...  stream, type, metadata, data
 *
 * A sealed record (flags 0x02, crypt.c) has the subject's length (u16) in
 * bytes 2-3 and, after the type, the subject then a box: an 8-byte key id,
 * a 24-byte nonce, metadata || data encrypted (the lengths above are the
 * plaintext's), a 16-byte tag.  A forgotten event copied in (key id 0) has
 * lengths 0 and a box of zeros.
 *
 * The batch fields let an idempotent retry recognise "exactly the events of
 * one earlier append"; the checksum catches records damaged below RocksDB's
 * own block checksums (a bad write, a bug, an offline edit). */
#include "internal.h"
#include <xxhash.h>


#define RECORD_FORMAT 1

size_t er__record_size(size_t stream_len, const er_new_event *ev) {
  return ER_RECORD_HEADER + stream_len + ev->type_len + ev->metadata_len +
         ev->data_len +
         (ev->subject_len ? ev->subject_len + ER_BOX_OVERHEAD : 0);
}

/* The header of a record (flags, the subject's length, id, position,
 * version, time, batch and lengths; the checksum is written last), then its
 * stream and type.  Returns where the rest of the record goes. */
static uint8_t *put_head(uint8_t *out, uint8_t flags, const char *stream,
                         size_t stream_len, const er_new_event *ev, uint64_t position,
                         uint64_t version, int64_t time, uint32_t batch_size,
                         uint32_t batch_index) {
  uint8_t *p = out + ER_RECORD_HEADER;
  out[0] = RECORD_FORMAT;
  out[1] = flags;
  out[2] = (uint8_t)ev->subject_len;
  out[3] = (uint8_t)(ev->subject_len >> 8);
  memcpy(out + 8, ev->id, 16);
  er__put_le64(out + 24, position);
  er__put_le64(out + 32, version);
  er__put_le64(out + 40, (uint64_t)time);
  er__put_le32(out + 48, batch_size);
  er__put_le32(out + 52, batch_index);
  er__put_le32(out + 56, (uint32_t)stream_len);
  er__put_le32(out + 60, (uint32_t)ev->type_len);
  er__put_le32(out + 64, (uint32_t)ev->metadata_len);
  er__put_le32(out + 68, (uint32_t)ev->data_len);
  memcpy(p, stream, stream_len);
  p += stream_len;
  memcpy(p, ev->type, ev->type_len);
  p += ev->type_len;
  return p;
}

void er__record_encode_sealed(uint8_t *out, const char *stream,
                              size_t stream_len, const er_new_event *ev,
                              uint64_t position, uint64_t version, int64_t time,
                              uint32_t batch_size, uint32_t batch_index,
                              const uint8_t *key, const uint8_t *key_id,
                              const uint8_t *nonce) {
  size_t total = er__record_size(stream_len, ev);
  uint8_t *p;
  assert(ev->subject_len > 0 && ev->subject_len <= ER_MAX_SUBJECT_LEN);
  p = put_head(out, ER_RECORD_SEALED, stream, stream_len, ev, position, version, time,
               batch_size, batch_index);
  memcpy(p, ev->subject, ev->subject_len);
  p += ev->subject_len;
  if (key) {
    uint8_t *q = p + ER_KEY_ID_LEN + ER_NONCE_LEN;
    memcpy(p, key_id, ER_KEY_ID_LEN);
    memcpy(p + ER_KEY_ID_LEN, nonce, ER_NONCE_LEN);
    if (ev->metadata_len) memcpy(q, ev->metadata, ev->metadata_len);
    if (ev->data_len) memcpy(q + ev->metadata_len, ev->data, ev->data_len);
  }
  er__seal_box(p, ev->metadata_len + ev->data_len, key, ev->id, version, stream,
               stream_len, ev->subject, ev->subject_len);
  er__put_le32(out + 4, (uint32_t)XXH3_64bits(out + 8, total - 8));
}

void er__record_encode(uint8_t *out, const char *stream, size_t stream_len,
                       const er_new_event *ev, uint64_t position,
                       uint64_t version, int64_t time, uint32_t batch_size,
                       uint32_t batch_index) {
  size_t total = er__record_size(stream_len, ev);
  uint8_t *p = put_head(out, 0, stream, stream_len, ev, position, version, time,
                        batch_size, batch_index);
  if (ev->metadata_len) memcpy(p, ev->metadata, ev->metadata_len);
  p += ev->metadata_len;
  if (ev->data_len) memcpy(p, ev->data, ev->data_len);
  er__put_le32(out + 4, (uint32_t)XXH3_64bits(out + 8, total - 8));
}

/* Decode `buf` into `ev` (pointers into `buf`) and `info` (may be NULL).
 * Returns ER_OK or ER_CORRUPTION when the bytes are not a valid record.
 * Flags and reserved bytes must be 0, as the encoder writes them: they are
 * outside the checksum, so this is what catches damage there, and a record
 * has exactly one encoding (the bytes accepted are the bytes
 * er__record_encode writes for the decoded event). */
int er__record_decode(const void *buf, size_t len, er_event *ev,
                      er_record_info *info) {
  const uint8_t *b = buf;
  uint64_t sl, tl, ml, dl, subl = 0, extra = 0;
  if (len < ER_RECORD_HEADER || b[0] != RECORD_FORMAT) return ER_CORRUPTION;
  if (b[1] == ER_RECORD_SEALED) {
    subl = (uint64_t)b[2] | (uint64_t)b[3] << 8;
    if (subl == 0 || subl > ER_MAX_SUBJECT_LEN) return ER_CORRUPTION;
    extra = subl + ER_BOX_OVERHEAD;
  } else if (b[1] != 0 || b[2] != 0 || b[3] != 0) {
    return ER_CORRUPTION;
  }
  sl = er__get_le32(b + 56);
  tl = er__get_le32(b + 60);
  ml = er__get_le32(b + 64);
  dl = er__get_le32(b + 68);
  if (ER_RECORD_HEADER + sl + tl + ml + dl + extra != len) return ER_CORRUPTION;
  if (er__get_le32(b + 4) != (uint32_t)XXH3_64bits(b + 8, len - 8))
    return ER_CORRUPTION;
  memcpy(ev->id, b + 8, 16);
  ev->position = er__get_le64(b + 24);
  ev->version = er__get_le64(b + 32);
  ev->time = (int64_t)er__get_le64(b + 40);
  if (info) {
    info->batch_size = er__get_le32(b + 48);
    info->batch_index = er__get_le32(b + 52);
  }
  b += ER_RECORD_HEADER;
  ev->stream = (const char *)b;
  ev->stream_len = (size_t)sl;
  b += sl;
  ev->type = (const char *)b;
  ev->type_len = (size_t)tl;
  b += tl;
  ev->forgotten = 0;
  if (subl) {
    ev->subject = (const char *)b;
    ev->subject_len = (size_t)subl;
    b += subl;
    /* the payload needs er__unseal_event: its plaintext lengths for it */
    ev->metadata = ev->data = NULL;
    ev->metadata_len = info ? (size_t)ml : 0;
    ev->data_len = info ? (size_t)dl : 0;
    if (info) {
      info->sealed = 1;
      info->box = b;
      info->box_len = (size_t)(ml + dl) + ER_BOX_OVERHEAD;
    }
    return ER_OK;
  }
  ev->subject = NULL;
  ev->subject_len = 0;
  if (info) {
    info->sealed = 0;
    info->box = NULL;
    info->box_len = 0;
  }
  ev->metadata = b;
  ev->metadata_len = (size_t)ml;
  b += ml;
  ev->data = b;
  ev->data_len = (size_t)dl;
  return ER_OK;
}

/* ---- removed positions ----------------------------------------------------
 *
 * Where `compact` removed an event (or an import reproduced a hole of the
 * store it came from), the log keeps a 32-byte hole record under the first
 * position of the hole, so that the log still accounts for every position:
 *
 *   0  1  record format (1)        8   8  first position (the key)
 *   1  1  flags: 0x01 (a hole)     16  8  last position of the hole
 *   2  2  reserved (0)             24  8  time of the removed event (i64)
 *   4  4  checksum over bytes 8..31
 *
 * None of the removed event's bytes but its position and time. */
#define HOLE_FLAG 0x01

void er__hole_encode(uint8_t out[ER_HOLE_LEN], uint64_t first, uint64_t last,
                     int64_t time) {
  out[0] = RECORD_FORMAT;
  out[1] = HOLE_FLAG;
  out[2] = out[3] = 0;
  er__put_le64(out + 8, first);
  er__put_le64(out + 16, last);
  er__put_le64(out + 24, (uint64_t)time);
  er__put_le32(out + 4, (uint32_t)XXH3_64bits(out + 8, ER_HOLE_LEN - 8));
}

int er__hole_decode(const void *buf, size_t len, uint64_t *first,
                    uint64_t *last, int64_t *time) {
  const uint8_t *b = buf;
  if (len != ER_HOLE_LEN || b[0] != RECORD_FORMAT || b[1] != HOLE_FLAG ||
      b[2] != 0 || b[3] != 0 ||
      er__get_le32(b + 4) != (uint32_t)XXH3_64bits(b + 8, ER_HOLE_LEN - 8))
    return ER_CORRUPTION;
  *first = er__get_le64(b + 8);
  *last = er__get_le64(b + 16);
  if (time) *time = (int64_t)er__get_le64(b + 24);
  if (*last < *first) return ER_CORRUPTION;
  return ER_OK;
}

int er__is_hole(const void *buf, size_t len) {
  const uint8_t *b = buf;
  return len == ER_HOLE_LEN && b[1] == HOLE_FLAG;
}
