/* iter.c -- the life of an iterator: its RocksDB iterator and the bounds it
 * owns, the store's registry of live iterators (which er_close detaches),
 * one step, the prefix iterators (streams, key-value scans), and release.
 * What an iterator returns is read.c's and kv.c's. */
#include "internal.h"
#include <sodium.h>
#include <stdlib.h>

static void iter_register(er_store *s, er_iter *it) {
  pthread_mutex_lock(&s->iter_lock);
  it->store = s;
  it->prev = NULL;
  it->next = s->iters;
  if (s->iters) s->iters->prev = it;
  s->iters = it;
  pthread_mutex_unlock(&s->iter_lock);
}

/* The bounds are copied and owned by the iterator: RocksDB keeps only a
 * pointer to them. */
int er__iter_new(er_store *s, iter_kind kind, int cf, const void *lower,
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
    if (!(it->lower = er__memdup(lower, lower_len))) goto nomem;
    it->lower_len = lower_len;
    rocksdb_readoptions_set_iterate_lower_bound(it->ropts, it->lower, lower_len);
  }
  if (upper) {
    if (!(it->upper = er__memdup(upper, upper_len))) goto nomem;
    it->upper_len = upper_len;
    rocksdb_readoptions_set_iterate_upper_bound(it->ropts, it->upper, upper_len);
  }
  it->it = rocksdb_create_iterator_cf(s->db, it->ropts, s->cf[cf]);
  iter_register(s, it);
  *out = it;
  return ER_OK;
nomem:
  er_iter_free(it);
  return er__fail(err, ER_NOMEM, "out of memory");
}

void er__iter_detach_all(er_store *s) {
  er_iter *it;
  pthread_mutex_lock(&s->iter_lock);
  for (it = s->iters; it; it = it->next) {
    if (it->it) rocksdb_iter_destroy(it->it);
    if (it->ropts) rocksdb_readoptions_destroy(it->ropts);
    it->it = NULL;
    it->ropts = NULL;
    it->store = NULL;
  }
  s->iters = NULL;
  pthread_mutex_unlock(&s->iter_lock);
}

void er_iter_free(er_iter *it) {
  size_t i;
  if (!it) return;
  if (it->store) {
    er_store *s = it->store;
    pthread_mutex_lock(&s->iter_lock);
    if (it->prev) it->prev->next = it->next;
    else s->iters = it->next;
    if (it->next) it->next->prev = it->prev;
    pthread_mutex_unlock(&s->iter_lock);
  }
  if (it->it) rocksdb_iter_destroy(it->it);
  if (it->ropts) rocksdb_readoptions_destroy(it->ropts);
  free(it->lower);
  free(it->upper);
  free(it->name);
  free(it->category);
  if (it->plain) sodium_memzero(it->plain, it->plain_cap);
  free(it->plain);
  for (i = 0; i < it->ntypes; i++) free(it->types[i]);
  free(it->types);
  free(it->type_lens);
  free(it);
}

int er__iter_step(er_iter *it, er_error *err) {
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

int er__prefix_iter(er_store *s, iter_kind kind, int cf, const void *prefix,
                    size_t prefix_len, er_iter **out, er_error *err) {
  er_iter *it;
  uint8_t *upper = NULL;
  size_t upper_len = 0;
  int rc;
  *out = NULL;
  if (prefix_len) {
    if (!(upper = malloc(prefix_len)))
      return er__fail(err, ER_NOMEM, "out of memory");
    upper_len = er__prefix_end(prefix, prefix_len, upper);
  }
  /* a prefix of 0xff bytes only has no upper bound: er__prefix_step stops */
  rc = er__iter_new(s, kind, cf, prefix_len ? prefix : NULL, prefix_len,
                    upper_len ? upper : NULL, upper_len, &it, err);
  free(upper);
  if (rc != ER_OK) return rc;
  if (prefix_len && !(it->name = er__memdup(prefix, prefix_len))) {
    er_iter_free(it);
    return er__fail(err, ER_NOMEM, "out of memory");
  }
  it->name_len = prefix_len;
  rocksdb_iter_seek_to_first(it->it);
  *out = it;
  return ER_OK;
}

int er__prefix_step(er_iter *it, const char **key, size_t *key_len,
                    er_error *err) {
  int rc;
  assert(it->kind == ITER_STREAMS || it->kind == ITER_KV);
  if ((rc = er__iter_step(it, err)) != ER_OK) return rc;
  *key = rocksdb_iter_key(it->it, key_len);
  if (it->name_len && (*key_len < it->name_len ||
                       memcmp(*key, it->name, it->name_len) != 0)) {
    it->done = 1;
    return ER_NOT_FOUND; /* past the prefix (only without an upper bound) */
  }
  return ER_OK;
}
