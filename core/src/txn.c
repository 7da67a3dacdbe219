/* txn.c -- transactions: several appends and key-value writes committed in
 * one WriteBatch (the commit itself is er__commit, in append.c). */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>

/* Writes may be queued while the transaction is open, and by the commit
 * hook during its commit. */
static int check_open_txn(er_txn *t, er_error *err) {
  assert(!t->in_hook || t->state == TXN_COMMITTING);
  if (t->state != TXN_OPEN && !t->in_hook)
    return er__fail(err, ER_INVALID, "the transaction was already committed");
  return ER_OK;
}

int er_txn_begin(er_store *s, er_txn **out, er_error *err) {
  er_txn *t;
  *out = NULL;
  if (s->read_only)
    return er__fail(err, ER_INVALID, "%s: the store is open read-only", s->path);
  t = calloc(1, sizeof *t);
  if (!t) return er__fail(err, ER_NOMEM, "out of memory");
  t->store = s;
  t->wb = rocksdb_writebatch_create();
  *out = t;
  return ER_OK;
}

int er_txn_append(er_txn *t, const char *stream, size_t stream_len,
                  int64_t expected, const er_new_event *events, size_t n,
                  er_error *err) {
  return er_txn_append_at(t, stream, stream_len, expected, events, n, 0, err);
}

static int txn_add(er_txn *t, const char *stream, size_t stream_len,
                   int64_t expected, const er_new_event *events, size_t n,
                   int64_t time, int restore, uint64_t position,
                   er_error *err);

int er_txn_append_at(er_txn *t, const char *stream, size_t stream_len,
                     int64_t expected, const er_new_event *events, size_t n,
                     int64_t time, er_error *err) {
  return txn_add(t, stream, stream_len, expected, events, n, time, 0, 0, err);
}

int er_txn_restore(er_txn *t, const char *stream, size_t stream_len,
                   int64_t expected, uint64_t position,
                   const er_new_event *events, size_t n, int64_t time,
                   er_error *err) {
  if (expected < 0)
    return er__fail(err, ER_INVALID, "a restored append needs the version before it");
  return txn_add(t, stream, stream_len, expected, events, n, time, 1, position, err);
}

static int txn_add(er_txn *t, const char *stream, size_t stream_len,
                   int64_t expected, const er_new_event *events, size_t n,
                   int64_t time, int restore, uint64_t position,
                   er_error *err) {
  size_t i, bytes = stream_len;
  char *block, *p;
  er_new_event *copies;
  er__pending *x;
  int rc;
  if (t->in_hook)
    return er__fail(err, ER_INVALID, "a commit hook cannot append");
  if ((rc = check_open_txn(t, err)) != ER_OK) return rc;
  rc = er__validate_append(t->store, stream, stream_len, expected, events, n, err);
  if (rc != ER_OK) return rc;
  if (t->n_appends == t->cap) {
    size_t cap = t->cap ? t->cap * 2 : 4;
    er__pending *na = realloc(t->appends, cap * sizeof *na);
    if (!na) return er__fail(err, ER_NOMEM, "out of memory");
    t->appends = na;
    t->cap = cap;
  }
  /* one block: the event structs, then the stream id and every payload */
  for (i = 0; i < n; i++)
    bytes += events[i].type_len + events[i].data_len + events[i].metadata_len +
             events[i].subject_len;
  if (n > ((size_t)-1 - bytes) / sizeof *copies)
    return er__fail(err, ER_NOMEM, "out of memory");
  block = malloc(n * sizeof *copies + bytes);
  if (!block) return er__fail(err, ER_NOMEM, "out of memory");
  copies = (er_new_event *)(void *)block;
  p = block + n * sizeof *copies;
  x = &t->appends[t->n_appends];
  memset(x, 0, sizeof *x);
  memcpy(p, stream, stream_len);
  x->stream = p;
  x->stream_len = stream_len;
  p += stream_len;
  for (i = 0; i < n; i++) {
    er_new_event *c = &copies[i];
    *c = events[i];
    memcpy(p, events[i].type, events[i].type_len);
    c->type = p;
    p += events[i].type_len;
    if (events[i].data_len) memcpy(p, events[i].data, events[i].data_len);
    c->data = p;
    p += events[i].data_len;
    if (events[i].metadata_len)
      memcpy(p, events[i].metadata, events[i].metadata_len);
    c->metadata = p;
    p += events[i].metadata_len;
    if (events[i].subject_len) memcpy(p, events[i].subject, events[i].subject_len);
    c->subject = events[i].subject_len ? p : NULL;
    p += events[i].subject_len;
  }
  x->expected = expected;
  x->time = time;
  x->restore = restore;
  x->restore_position = position;
  x->events = copies;
  x->n = n;
  x->owned = block;
  t->n_appends++;
  return ER_OK;
}

static int check_key(er_txn *t, er_space space, size_t key_len, er_error *err) {
  int rc;
  if ((rc = check_open_txn(t, err)) != ER_OK) return rc;
  if ((rc = er__check_space(space, err)) != ER_OK) return rc;
  if (key_len == 0) return er__fail(err, ER_INVALID, "empty key");
  if (key_len > ER_MAX_KEY_LEN)
    return er__fail(err, ER_INVALID, "key of %zu bytes; the limit is %d", key_len,
                    ER_MAX_KEY_LEN);
  return ER_OK;
}

int er_txn_put(er_txn *t, er_space space, const void *key, size_t key_len,
               const void *val, size_t val_len, er_error *err) {
  int rc = check_key(t, space, key_len, err);
  if (rc != ER_OK) return rc;
  rocksdb_writebatch_put_cf(t->wb, t->store->cf[CF_OF_SPACE(space)], key,
                            key_len, val_len ? val : "", val_len);
  return ER_OK;
}

int er_txn_delete(er_txn *t, er_space space, const void *key, size_t key_len,
                  er_error *err) {
  int rc = check_key(t, space, key_len, err);
  if (rc != ER_OK) return rc;
  rocksdb_writebatch_delete_cf(t->wb, t->store->cf[CF_OF_SPACE(space)], key,
                               key_len);
  return ER_OK;
}

int er_txn_delete_prefix(er_txn *t, er_space space, const void *prefix,
                         size_t prefix_len, er_error *err) {
  uint8_t *end;
  size_t end_len = 0;
  int rc = check_key(t, space, prefix_len, err);
  if (rc != ER_OK) return rc;
  /* The keys that start with the prefix are [prefix, its successor).  A
   * prefix of 0xff bytes only has none; its keys are all keys >= it, and
   * as keys are at most ER_MAX_KEY_LEN bytes, ER_MAX_KEY_LEN + 1 bytes of
   * 0xff bound them. */
  end = malloc(prefix_len);
  if (end && (end_len = er__prefix_end(prefix, prefix_len, end)) == 0) {
    free(end);
    end_len = ER_MAX_KEY_LEN + 1;
    if ((end = malloc(end_len)) != NULL) memset(end, 0xff, end_len);
  }
  if (!end) return er__fail(err, ER_NOMEM, "out of memory");
  rocksdb_writebatch_delete_range_cf(t->wb, t->store->cf[CF_OF_SPACE(space)],
                                     prefix, prefix_len, (const char *)end,
                                     end_len);
  free(end);
  return ER_OK;
}

int er_txn_commit(er_txn *t, er_error *err) { return er__commit(t, err); }

size_t er_txn_appends(const er_txn *t) { return t->n_appends; }

const er_appended *er_txn_result(const er_txn *t, size_t i) {
  if (t->state != TXN_COMMITTED || i >= t->n_appends) return NULL;
  return &t->appends[i].result;
}

void er_txn_free(er_txn *t) {
  size_t i;
  if (!t) return;
  assert(t->state != TXN_COMMITTING); /* not from inside its commit hook */
  for (i = 0; i < t->n_appends; i++) free(t->appends[i].owned);
  free(t->appends);
  if (t->wb) rocksdb_writebatch_destroy(t->wb);
  free(t);
}
