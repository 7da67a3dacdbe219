/* read.c -- reading events: iterators over a stream, the global log and
 * the list of streams, and the lookup of one event by position. */
#include "internal.h"
#include <stdio.h>
#include <stdlib.h>


int er_read_stream(er_store *s, const char *stream, size_t stream_len,
                   uint64_t from, uint64_t count, int backward, er_iter **out,
                   er_error *err) {
  uint8_t *key, *upper;
  int rc;
  er_iter *it = NULL;
  er__life l;
  uint64_t min_version = 1;
  int64_t min_time = INT64_MIN;
  *out = NULL;
  if ((rc = er__check_stream(stream, stream_len, err)) != ER_OK) return rc;
  if (er__life_get(s, stream, stream_len, &l)) {
    /* what the stream's lifecycle removes or hides, as of now */
    int64_t now = er__life_now(s);
    if (l.flags & ER_LIFE_HARD)
      return er__fail(err, ER_STREAM_DELETED, "stream '%.*s' was deleted",
                      (int)(stream_len > 200 ? 200 : stream_len), stream);
    if (l.before > min_version) min_version = l.before;
    if (l.hidden_before > min_version) min_version = l.hidden_before;
    if (l.max_count && l.head >= l.max_count && l.head - l.max_count + 1 > min_version)
      min_version = l.head - l.max_count + 1;
    if (l.expired_before) min_time = l.expired_before;
    if (l.max_age && now - (int64_t)(l.max_age * 1000000) > min_time)
      min_time = now - (int64_t)(l.max_age * 1000000);
  }
  key = malloc(stream_len + 9);
  upper = malloc(stream_len + 1);
  if (!key || !upper) {
    free(key);
    free(upper);
    return er__fail(err, ER_NOMEM, "out of memory");
  }
  /* bounds: the keys that start with stream, 0x00 are this stream's */
  er__stream_key(key, stream, stream_len, 0);
  er__prefix_end(key, stream_len + 1, upper);
  rc = er__iter_new(s, ITER_STREAM, CF_STREAMS, key, stream_len + 1, upper,
                    stream_len + 1, &it, err);
  if (rc == ER_OK && !(it->name = er__memdup(stream, stream_len))) {
    er_iter_free(it);
    rc = er__fail(err, ER_NOMEM, "out of memory");
  }
  if (rc == ER_OK) {
    it->name_len = stream_len;
    it->backward = backward != 0;
    it->remaining = count;
    it->min_version = min_version;
    it->min_time = min_time;
    if (backward) {
      er__stream_key(key, stream, stream_len, from ? from : UINT64_MAX);
      rocksdb_iter_seek_for_prev(it->it, (const char *)key, stream_len + 9);
    } else {
      er__stream_key(key, stream, stream_len,
                     from > min_version ? from : min_version);
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
  rc = er__iter_new(s, ITER_ALL, CF_LOG, NULL, 0, NULL, 0, &it, err);
  if (rc != ER_OK) return rc;
  it->remaining = count;
  if (filter && filter->category) {
    it->has_category = 1;
    it->category_len = filter->category_len;
    if (!(it->category = er__memdup(filter->category, filter->category_len)))
      goto nomem;
  }
  if (filter && filter->ntypes) {
    it->types = calloc(filter->ntypes, sizeof *it->types);
    it->type_lens = calloc(filter->ntypes, sizeof *it->type_lens);
    if (!it->types || !it->type_lens) goto nomem;
    for (i = 0; i < filter->ntypes; i++) {
      if (!(it->types[i] = er__memdup(filter->types[i], filter->type_lens[i])))
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

int er_list_streams(er_store *s, const char *prefix, size_t prefix_len,
                    er_iter **out, er_error *err) {
  return er__prefix_iter(s, ITER_STREAMS, CF_HEADS, prefix, prefix_len, out,
                         err);
}

static int category_matches(const er_iter *it, const er_event *ev) {
  size_t len = er_category(ev->stream, ev->stream_len);
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
  er_record_info info;
  if (it->kind != ITER_STREAM && it->kind != ITER_ALL)
    return er__fail(err, ER_INVALID, "not an event iterator");
  if (!it->store || !it->it)
    return er__fail(err, ER_INVALID, "the store of this iterator is closed");
  for (;;) {
    size_t klen, vlen;
    const char *k, *v;
    if (it->remaining == 0) return ER_NOT_FOUND;
    if ((rc = er__iter_step(it, err)) != ER_OK) return rc;
    k = rocksdb_iter_key(it->it, &klen);
    v = rocksdb_iter_value(it->it, &vlen);
    if (it->kind == ITER_STREAM) {
      uint64_t ver = klen == it->name_len + 9
                         ? er__get_be64((const uint8_t *)k + it->name_len + 1)
                         : 0;
      if (er__record_decode(v, vlen, ev, &info) != ER_OK || ev->version != ver ||
          ev->stream_len != it->name_len ||
          memcmp(ev->stream, it->name, it->name_len) != 0) {
        char where[300];
        snprintf(where, sizeof where, "at version %llu of stream '%.*s'",
                 (unsigned long long)ver,
                 (int)(it->name_len > 200 ? 200 : it->name_len), it->name);
        return corrupt(err, 0, where);
      }
      if (ev->version < it->min_version) { /* (backward) the rest is removed too */
        it->done = 1;
        return ER_NOT_FOUND;
      }
      if (ev->time < it->min_time) continue;
    } else {
      uint64_t pos = klen == 8 ? er__get_be64((const uint8_t *)k) : 0;
      er__life l;
      if (er__is_hole(v, vlen)) {
        uint64_t first, last;
        if (er__hole_decode(v, vlen, &first, &last, NULL) == ER_OK && first == pos)
          continue;
      }
      if (er__record_decode(v, vlen, ev, &info) != ER_OK || ev->position != pos) {
        char where[64];
        snprintf(where, sizeof where, "at position %llu",
                 (unsigned long long)pos);
        return corrupt(err, pos, where);
      }
      if (it->has_category && !category_matches(it, ev)) continue;
      if (it->ntypes && !type_matches(it, ev)) continue;
      if (er__life_get(it->store, ev->stream, ev->stream_len, &l) &&
          er__life_removes(it->store, &l, ev->version, ev->time))
        continue;
    }
    if (info.sealed &&
        (rc = er__unseal_event(it->store, ev, &info, &it->plain, &it->plain_cap, err)) != ER_OK)
      return rc;
    if (it->remaining != ER_UNLIMITED) it->remaining--;
    return ER_OK;
  }
}

int er_iter_next_stream(er_iter *it, const char **stream, size_t *stream_len,
                        uint64_t *version, er_error *err) {
  size_t vlen;
  const char *v;
  int rc;
  if (it->kind != ITER_STREAMS)
    return er__fail(err, ER_INVALID, "not a streams iterator");
  for (;;) {
    er__life l;
    if ((rc = er__prefix_step(it, stream, stream_len, err)) != ER_OK) return rc;
    /* deleted streams are not listed */
    if (!er__life_get(it->store, *stream, *stream_len, &l) ||
        !(l.flags & (ER_LIFE_SOFT | ER_LIFE_HARD)))
      break;
  }
  v = rocksdb_iter_value(it->it, &vlen);
  if (vlen < 8)
    return er__fail(err, ER_CORRUPTION, "damaged head of stream '%.*s'",
                    (int)(*stream_len > 200 ? 200 : *stream_len), *stream);
  *version = er__get_le64((const uint8_t *)v);
  return ER_OK;
}

int er_event_at(er_store *s, uint64_t position, er_event *ev, void **mem,
                er_error *err) {
  er_record_info info;
  er__life l;
  uint8_t key[8];
  size_t len;
  int rc;
  er__put_be64(key, position);
  rc = er__get(s, CF_LOG, key, 8, mem, &len, "reading the log", err);
  if (rc == ER_NOT_FOUND)
    return er__fail(err, ER_NOT_FOUND, "no event at position %llu",
                    (unsigned long long)position);
  if (rc != ER_OK) return rc;
  if (er__is_hole(*mem, len) || (er__record_decode(*mem, len, ev, NULL) == ER_OK &&
                                  ev->position == position &&
                                  er__life_get(s, ev->stream, ev->stream_len, &l) &&
                                  er__life_removes(s, &l, ev->version, ev->time))) {
    er_free(*mem);
    *mem = NULL;
    return er__fail(err, ER_NOT_FOUND, "the event at position %llu was removed",
                    (unsigned long long)position);
  }
  if (er__record_decode(*mem, len, ev, &info) != ER_OK || ev->position != position) {
    char where[64];
    er_free(*mem);
    *mem = NULL;
    snprintf(where, sizeof where, "at position %llu",
             (unsigned long long)position);
    return corrupt(err, position, where);
  }
  if (info.sealed) {
    /* one block for the caller: the record, then the plaintext */
    size_t plain = info.box_len - ER_BOX_OVERHEAD, cap = plain;
    uint8_t *block = realloc(*mem, len + (plain ? plain : 1)), *buf;
    if (!block) {
      er_free(*mem);
      *mem = NULL;
      return er__fail(err, ER_NOMEM, "out of memory");
    }
    *mem = block;
    er__record_decode(block, len, ev, &info); /* pointers into the new block */
    buf = block + len;
    rc = er__unseal_event(s, ev, &info, &buf, &cap, err);
    if (rc != ER_OK) {
      er_free(*mem);
      *mem = NULL;
    }
    return rc;
  }
  return ER_OK;
}
