/* kv.c -- reading the key-value spaces (snapshots, checkpoints, views):
 * one value, or the keys under a prefix; and the one copy of a stored value
 * that the core hands out (er_get, er_event_at, er_debug_get). */
#include "internal.h"
#include <stdlib.h>

int er__check_space(er_space space, er_error *err) {
  if ((int)space < 0 || (int)space >= ER_SPACE_COUNT)
    return er__fail(err, ER_INVALID, "no key-value space %d", (int)space);
  return ER_OK;
}

int er__get(er_store *s, int cf, const void *key, size_t key_len, void **val,
            size_t *val_len, const char *what, er_error *err) {
  char *rerr = NULL, *v;
  size_t len = 0;
  *val = NULL;
  *val_len = 0;
  v = rocksdb_get_cf(s->db, s->ropts, s->cf[cf], key, key_len, &len, &rerr);
  if (rerr) return er__rocks_fail(err, what, rerr);
  if (!v) return ER_NOT_FOUND;
  /* RocksDB's memory may come from another allocator than er_free's */
  *val = er__memdup(v, len);
  rocksdb_free(v);
  if (!*val) return er__fail(err, ER_NOMEM, "out of memory");
  *val_len = len;
  return ER_OK;
}

int er_get(er_store *s, er_space space, const void *key, size_t key_len,
           void **val, size_t *val_len, er_error *err) {
  int rc = er__check_space(space, err);
  *val = NULL;
  *val_len = 0;
  if (rc == ER_OK)
    rc = er__get(s, CF_OF_SPACE(space), key, key_len, val, val_len, "reading",
                 err);
  if (rc == ER_NOT_FOUND) er__fail(err, ER_NOT_FOUND, "no such key");
  return rc;
}

int er_scan(er_store *s, er_space space, const void *prefix,
            size_t prefix_len, er_iter **out, er_error *err) {
  int rc = er__check_space(space, err);
  *out = NULL;
  if (rc != ER_OK) return rc;
  return er__prefix_iter(s, ITER_KV, CF_OF_SPACE(space), prefix, prefix_len,
                         out, err);
}

int er_iter_next_kv(er_iter *it, const void **key, size_t *key_len,
                    const void **val, size_t *val_len, er_error *err) {
  const char *k;
  int rc;
  if (it->kind != ITER_KV) return er__fail(err, ER_INVALID, "not a scan iterator");
  if ((rc = er__prefix_step(it, &k, key_len, err)) != ER_OK) return rc;
  *key = k;
  *val = rocksdb_iter_value(it->it, val_len);
  return ER_OK;
}
