/* read.c -- iterators over a stream, the global log and the stream list,
 * and the lookup of one event by position. */
#include "internal.h"
#include <stdio.h>
#include <stdlib.h>


static char *dup_bytes(const void *p, size_t len) {
  char *c = malloc(len ? len : 1);
  if (c && len) memcpy(c, p, len);
  return c;
}

/* A new iterator on column family `cf`; the bounds are copied and owned by
 * it (RocksDB keeps only a pointer to them). */
static int iter_new(er_store *s, iter_kind kind, int cf, const void *lower,
                    size_t lower_len, const void *upper, size_t upper_len,
                    er_iter **out, er_error *err) {
  er_iter *it = calloc(1, sizeof *it);
  *out = NULL;
  if (!it) return er__fail(err, ER_NOMEM, "out of memory");
  it->kind = kind;
  it->remaining = ER_UNLIMITED;
  it->ropts = rocksdb_readoptions_create();
  /* A pass over the global log reads each block once: keeping it would
   * only push the hot blocks (stream heads, recent events) out of the
   * cache, and make a scan of a large store grow the process. */
  if (cf == CF_LOG) rocksdb_readoptions_set_fill_cache(it->ropts, 0);
  if (lower) {
    if (!(it->lower = dup_bytes(lower, lower_len))) goto nomem;
    it->lower_len = lower_len;
    rocksdb_readoptions_set_iterate_lower_bound(it->ropts, it->lower, lower_len);
  }
  if (upper) {
    if (!(it->upper = dup_bytes(upper, upper_len))) goto nomem;
    it->upper_len = upper_len;
    rocksdb_readoptions_set_iterate_upper_bound(it->ropts, it->upper, upper_len);
  }
  it->it = rocksdb_create_iterator_cf(s->db, it->ropts, s->cf[cf]);
  er__iter_register(s, it);
  *out = it;
  return ER_OK;
nomem:
  er_iter_free(it);
  return er__fail(err, ER_NOMEM, "out of memory");
}

int er_read_stream(er_store *s, const char *stream, size_t stream_len,
                   uint64_t from, uint64_t count, int backward, er_iter **out,
                   er_error *err) {
  uint8_t *key, *upper;
  int rc;
  er_iter *it = NULL;
  *out = NULL;
  if ((rc = er__check_stream(stream, stream_len, err)) != ER_OK) return rc;
  key = malloc(stream_len + 9);
  upper = malloc(stream_len + 1);
  if (!key || !upper) {
    free(key);
    free(upper);
    return er__fail(err, ER_NOMEM, "out of memory");
  }
  /* bounds: [stream 0x00, stream 0x01) holds exactly this stream's keys */
  er__stream_key(key, stream, stream_len, 0);
  memcpy(upper, stream, stream_len);
  upper[stream_len] = 1;
  rc = iter_new(s, ITER_STREAM, CF_STREAMS, key, stream_len + 1, upper,
                stream_len + 1, &it, err);
  if (rc == ER_OK && !(it->name = dup_bytes(stream, stream_len))) {
    er_iter_free(it);
    rc = er__fail(err, ER_NOMEM, "out of memory");
  }
  if (rc == ER_OK) {
    it->name_len = stream_len;
    it->backward = backward != 0;
    it->remaining = count;
    if (backward) {
      er__stream_key(key, stream, stream_len, from ? from : UINT64_MAX);
      rocksdb_iter_seek_for_prev(it->it, (const char *)key, stream_len + 9);
    } else {
      er__stream_key(key, stream, stream_len, from ? from : 1);
      rocksdb_iter_seek(it->it, (const char *)key, stream_len + 9);
    }
    *out = it;
  }
  free(key);
  free(upper);
  return rc;
}

int er_read_all(er_store *s, uint64_t from, uint64_t count,
                const er_filter *filter, er_iter **out, er_error *err) {
  uint8_t key[8];
  er_iter *it;
  size_t i;
  int rc;
  *out = NULL;
  er__put_be64(key, from ? from : 1);
  rc = iter_new(s, ITER_ALL, CF_LOG, NULL, 0, NULL, 0, &it, err);
  if (rc != ER_OK) return rc;
  it->remaining = count;
  if (filter && filter->category) {
    it->has_category = 1;
    it->category_len = filter->category_len;
    if (!(it->category = dup_bytes(filter->category, filter->category_len)))
      goto nomem;
  }
  if (filter && filter->ntypes) {
    it->types = calloc(filter->ntypes, sizeof *it->types);
    it->type_lens = calloc(filter->ntypes, sizeof *it->type_lens);
    if (!it->types || !it->type_lens) goto nomem;
    for (i = 0; i < filter->ntypes; i++) {
      if (!(it->types[i] = dup_bytes(filter->types[i], filter->type_lens[i])))
        goto nomem;
      it->type_lens[i] = filter->type_lens[i];
      it->ntypes = i + 1;
    }
  }
  rocksdb_iter_seek(it->it, (const char *)key, 8);
  *out = it;
  return ER_OK;
nomem:
  er_iter_free(it);
  return er__fail(err, ER_NOMEM, "out of memory");
}

/* An iterator over the keys of `cf` that start with `prefix`. */
static int prefix_iter(er_store *s, iter_kind kind, int cf, const char *prefix,
                       size_t prefix_len, er_iter **out, er_error *err) {
  er_iter *it;
  char *upper = NULL;
  size_t upper_len = prefix_len;
  int rc;
  *out = NULL;
  /* upper bound: the prefix with its last non-0xff byte incremented */
  if (prefix_len) {
    if (!(upper = dup_bytes(prefix, prefix_len)))
      return er__fail(err, ER_NOMEM, "out of memory");
    while (upper_len > 0 && (unsigned char)upper[upper_len - 1] == 0xff)
      upper_len--;
    if (upper_len > 0) upper[upper_len - 1]++;
  }
  rc = iter_new(s, kind, cf, prefix_len ? prefix : NULL, prefix_len,
                upper_len ? upper : NULL, upper_len, &it, err);
  free(upper);
  if (rc != ER_OK) return rc;
  if (prefix_len && !(it->name = dup_bytes(prefix, prefix_len))) {
    er_iter_free(it);
    return er__fail(err, ER_NOMEM, "out of memory");
  }
  it->name_len = prefix_len;
  rocksdb_iter_seek_to_first(it->it);
  *out = it;
  return ER_OK;
}

int er_list_streams(er_store *s, const char *prefix, size_t prefix_len,
                    er_iter **out, er_error *err) {
  return prefix_iter(s, ITER_STREAMS, CF_HEADS, prefix, prefix_len, out, err);
}

int er_scan(er_store *s, er_space space, const void *prefix,
            size_t prefix_len, er_iter **out, er_error *err) {
  *out = NULL;
  if ((int)space < 0 || (int)space >= ER_SPACE_COUNT)
    return er__fail(err, ER_INVALID, "no key-value space %d", (int)space);
  return prefix_iter(s, ITER_KV, CF_OF_SPACE(space), prefix, prefix_len, out,
                     err);
}

/* Common preamble of the next functions: closed store, exhausted iterator,
 * RocksDB errors.  Returns ER_OK when the iterator sits on an entry. */
static int iter_step(er_iter *it, er_error *err) {
  if (!it->store || !it->it)
    return er__fail(err, ER_INVALID, "the store of this iterator is closed");
  if (it->done) return ER_NOT_FOUND;
  if (it->started) {
    if (it->backward) rocksdb_iter_prev(it->it);
    else rocksdb_iter_next(it->it);
  }
  it->started = 1;
  if (!rocksdb_iter_valid(it->it)) {
    char *rerr = NULL;
    it->done = 1;
    rocksdb_iter_get_error(it->it, &rerr);
    if (rerr) return er__rocks_fail(err, "reading", rerr);
    return ER_NOT_FOUND;
  }
  return ER_OK;
}

static int category_matches(const er_iter *it, const er_event *ev) {
  const char *dash = memchr(ev->stream, '-', ev->stream_len);
  size_t len = dash ? (size_t)(dash - ev->stream) : ev->stream_len;
  return len == it->category_len && memcmp(ev->stream, it->category, len) == 0;
}

static int type_matches(const er_iter *it, const er_event *ev) {
  size_t i;
  for (i = 0; i < it->ntypes; i++)
    if (it->type_lens[i] == ev->type_len &&
        memcmp(it->types[i], ev->type, ev->type_len) == 0)
      return 1;
  return 0;
}

static int corrupt(er_error *err, uint64_t position, const char *where) {
  er__fail(err, ER_CORRUPTION, "damaged event record %s", where);
  if (err) err->position = position;
  return ER_CORRUPTION;
}

int er_iter_next(er_iter *it, er_event *ev, er_error *err) {
  int rc;
  if (it->kind != ITER_STREAM && it->kind != ITER_ALL)
    return er__fail(err, ER_INVALID, "not an event iterator");
  if (!it->store || !it->it)
    return er__fail(err, ER_INVALID, "the store of this iterator is closed");
  for (;;) {
    size_t klen, vlen;
    const char *k, *v;
    if (it->remaining == 0) return ER_NOT_FOUND;
    if ((rc = iter_step(it, err)) != ER_OK) return rc;
    k = rocksdb_iter_key(it->it, &klen);
    v = rocksdb_iter_value(it->it, &vlen);
    if (it->kind == ITER_STREAM) {
      uint64_t ver = klen == it->name_len + 9
                         ? er__get_be64((const uint8_t *)k + it->name_len + 1)
                         : 0;
      if (er__record_decode(v, vlen, ev, NULL) != ER_OK || ev->version != ver ||
          ev->stream_len != it->name_len ||
          memcmp(ev->stream, it->name, it->name_len) != 0) {
        char where[300];
        snprintf(where, sizeof where, "at version %llu of stream '%.*s'",
                 (unsigned long long)ver,
                 (int)(it->name_len > 200 ? 200 : it->name_len), it->name);
        return corrupt(err, 0, where);
      }
    } else {
      uint64_t pos = klen == 8 ? er__get_be64((const uint8_t *)k) : 0;
      if (er__record_decode(v, vlen, ev, NULL) != ER_OK || ev->position != pos) {
        char where[64];
        snprintf(where, sizeof where, "at position %llu",
                 (unsigned long long)pos);
        return corrupt(err, pos, where);
      }
      if (it->has_category && !category_matches(it, ev)) continue;
      if (it->ntypes && !type_matches(it, ev)) continue;
    }
    if (it->remaining != ER_UNLIMITED) it->remaining--;
    return ER_OK;
  }
}

/* Move a prefix iterator (streams or kv) to its next entry. */
static int prefix_step(er_iter *it, const char **key, size_t *key_len,
                       er_error *err) {
  int rc;
  if ((rc = iter_step(it, err)) != ER_OK) return rc;
  *key = rocksdb_iter_key(it->it, key_len);
  if (it->name_len && (*key_len < it->name_len ||
                       memcmp(*key, it->name, it->name_len) != 0)) {
    it->done = 1;
    return ER_NOT_FOUND; /* past the prefix (only without an upper bound) */
  }
  return ER_OK;
}

int er_iter_next_stream(er_iter *it, const char **stream, size_t *stream_len,
                        uint64_t *version, er_error *err) {
  size_t vlen;
  const char *v;
  int rc;
  if (it->kind != ITER_STREAMS)
    return er__fail(err, ER_INVALID, "not a streams iterator");
  if ((rc = prefix_step(it, stream, stream_len, err)) != ER_OK) return rc;
  v = rocksdb_iter_value(it->it, &vlen);
  if (vlen < 8)
    return er__fail(err, ER_CORRUPTION, "damaged head of stream '%.*s'",
                    (int)(*stream_len > 200 ? 200 : *stream_len), *stream);
  *version = er__get_le64((const uint8_t *)v);
  return ER_OK;
}

int er_iter_next_kv(er_iter *it, const void **key, size_t *key_len,
                    const void **val, size_t *val_len, er_error *err) {
  const char *k;
  int rc;
  if (it->kind != ITER_KV) return er__fail(err, ER_INVALID, "not a scan iterator");
  if ((rc = prefix_step(it, &k, key_len, err)) != ER_OK) return rc;
  *key = k;
  *val = rocksdb_iter_value(it->it, val_len);
  return ER_OK;
}

int er_event_at(er_store *s, uint64_t position, er_event *ev, void **mem,
                er_error *err) {
  uint8_t key[8];
  char *rerr = NULL, *val, *copy;
  size_t len = 0;
  *mem = NULL;
  er__put_be64(key, position);
  val = rocksdb_get_cf(s->db, s->ropts, s->cf[CF_LOG], (const char *)key, 8,
                       &len, &rerr);
  if (rerr) return er__rocks_fail(err, "reading the log", rerr);
  if (!val)
    return er__fail(err, ER_NOT_FOUND, "no event at position %llu",
                    (unsigned long long)position);
  /* hand out memory the caller frees with er_free (RocksDB's may differ) */
  copy = dup_bytes(val, len);
  rocksdb_free(val);
  if (!copy) return er__fail(err, ER_NOMEM, "out of memory");
  if (er__record_decode(copy, len, ev, NULL) != ER_OK || ev->position != position) {
    char where[64];
    free(copy);
    snprintf(where, sizeof where, "at position %llu",
             (unsigned long long)position);
    return corrupt(err, position, where);
  }
  *mem = copy;
  return ER_OK;
}
