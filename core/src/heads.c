/* heads.c -- stream heads: the stored version of each stream, and the
 * set-associative cache of them that appends consult under write_lock. */
#include "internal.h"
#include <stdlib.h>
#include <xxhash.h>

/* The stored version of `stream` (0 when absent), straight from RocksDB. */
int er__head_get(er_store *s, const char *stream, size_t len,
                 uint64_t *version, er_error *err) {
  char *rerr = NULL;
  size_t vlen = 0;
  char *val =
      rocksdb_get_cf(s->db, s->ropts, s->cf[CF_HEADS], stream, len, &vlen, &rerr);
  if (rerr) return er__rocks_fail(err, "reading a stream head", rerr);
  if (!val) {
    *version = 0;
    return ER_OK;
  }
  if (vlen < 8) {
    rocksdb_free(val);
    return er__fail(err, ER_CORRUPTION, "damaged head of stream '%.*s'",
                    (int)len, stream);
  }
  *version = er__get_le64((const uint8_t *)val);
  rocksdb_free(val);
  return ER_OK;
}

int er_version(er_store *s, const char *stream, size_t stream_len,
               uint64_t *version, er_error *err) {
  int rc = er__check_stream(stream, stream_len, err);
  if (rc != ER_OK) return rc;
  return er__head_get(s, stream, stream_len, version, err);
}

/* ---- the cache (guarded by write_lock) ----------------------------------- */

/* The ER_HEAD_CACHE_WAYS slots (a set) where `stream` may be cached: the
 * cache is set associative, a set's most recently used slot first.
 * (Direct mapped, 1,000 streams in 4,096 slots collide for about one in
 * five of them, and each collision costs a RocksDB read per append.) */
static er_head_slot *head_set(er_store *s, const char *stream, size_t len) {
  return &s->heads[XXH3_64bits(stream, len) %
                   (ER_HEAD_CACHE_SLOTS / ER_HEAD_CACHE_WAYS) * ER_HEAD_CACHE_WAYS];
}

/* The slot of `stream` in `set`, moved first; NULL when it is not cached. */
static er_head_slot *head_find(er_head_slot *set, const char *stream, size_t len) {
  int i;
  for (i = 0; i < ER_HEAD_CACHE_WAYS; i++) {
    er_head_slot *slot = &set[i];
    if (slot->stream && slot->len == len && memcmp(slot->stream, stream, len) == 0) {
      er_head_slot t = *slot;
      memmove(set + 1, set, (size_t)i * sizeof *set);
      set[0] = t;
      return &set[0];
    }
  }
  return NULL;
}

static void head_remember(er_head_slot *set, const char *stream, size_t len,
                          uint64_t version) {
  er_head_slot *slot = head_find(set, stream, len);
  if (!slot) {
    char *copy = malloc(len);
    if (!copy) return; /* not cached: the next lookup reads the store */
    memcpy(copy, stream, len);
    free(set[ER_HEAD_CACHE_WAYS - 1].stream); /* the least recently used goes */
    memmove(set + 1, set, (ER_HEAD_CACHE_WAYS - 1) * sizeof *set);
    slot = &set[0];
    slot->stream = copy;
    slot->len = len;
  }
  slot->version = version;
}

/* Current version of `stream`; the cache is authoritative because every
 * write to the heads goes through this handle under write_lock. */
int er__head_current(er_store *s, const char *stream, size_t len,
                     uint64_t *version, er_error *err) {
  er_head_slot *set = head_set(s, stream, len), *slot;
  int rc;
  assert(er__locked(s));
  if ((slot = head_find(set, stream, len)) != NULL) {
    *version = slot->version;
    return ER_OK;
  }
  rc = er__head_get(s, stream, len, version, err);
  if (rc == ER_OK) head_remember(set, stream, len, *version);
  return rc;
}

void er__head_cached(er_store *s, const char *stream, size_t len,
                     uint64_t version) {
  assert(er__locked(s));
  head_remember(head_set(s, stream, len), stream, len, version);
}

void er__head_cache_clear(er_store *s) {
  size_t i;
  if (!s->heads) return;
  for (i = 0; i < ER_HEAD_CACHE_SLOTS; i++) {
    free(s->heads[i].stream);
    s->heads[i].stream = NULL;
  }
}
