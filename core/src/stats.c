/* eventrocks core: what a store holds and what it takes on disk. */
#define _POSIX_C_SOURCE 200809L /* lstat */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "internal.h"

/* The bytes of the regular files directly in `dir` (a store has no
 * subdirectories of its own). */
static int dir_bytes(const char *dir, uint64_t *bytes, er_error *err) {
  DIR *d = opendir(dir);
  struct dirent *e;
  *bytes = 0;
  if (!d) return er__fail(err, ER_IO, "%s: %s", dir, strerror(errno));
  while ((e = readdir(d)) != NULL) {
    struct stat st;
    char path[4096];
    if (snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >= (int)sizeof path) continue;
    if (lstat(path, &st) == 0 && S_ISREG(st.st_mode)) *bytes += (uint64_t)st.st_size;
  }
  closedir(d);
  return ER_OK;
}

/* RocksDB's integer property `name` of family `cf`, 0 when it has none. */
static uint64_t property(er_store *s, int cf, const char *name) {
  uint64_t v = 0;
  if (rocksdb_property_int_cf(s->db, s->cf[cf], name, &v) != 0) return 0;
  return v;
}

/* The events of a stream with a lifecycle that reads of the log show:
 * versions from the first its rules keep to its head, and of those, when
 * a time rule applies, the ones timed after its cutoff (a scan of them). */
static int count_kept(er_store *s, const char *stream, size_t len,
                      const er__life *l, uint64_t *n, er_error *err) {
  uint64_t lo = l->before > 1 ? l->before : 1;
  int64_t cutoff = l->expired_before;
  er_iter *it;
  er_event ev;
  int rc;
  *n = 0;
  if (l->flags & ER_LIFE_HARD) return ER_OK;
  if (l->max_count && l->head >= l->max_count && l->head - l->max_count + 1 > lo)
    lo = l->head - l->max_count + 1;
  if (lo > l->head) return ER_OK;
  if (l->max_age) {
    int64_t c = er__life_now(s) - (int64_t)(l->max_age * 1000000);
    if (c > cutoff) cutoff = c;
  }
  if (cutoff == 0) {
    *n = l->head - lo + 1; /* versions are contiguous: nothing else removes */
    return ER_OK;
  }
  /* a read of the stream skips what the rules remove; a soft delete only
   * hides, so the reader is made here, from `lo` */
  rc = er__iter_new(s, ITER_STREAM, CF_STREAMS, NULL, 0, NULL, 0, &it, err);
  if (rc != ER_OK) return rc;
  {
    uint8_t key[ER_MAX_STREAM_LEN + 9];
    er__stream_key(key, stream, len, lo);
    rocksdb_iter_seek(it->it, (const char *)key, len + 9);
    it->started = 1;
    while (rocksdb_iter_valid(it->it)) {
      size_t klen, vlen;
      const char *k = rocksdb_iter_key(it->it, &klen);
      const char *v = rocksdb_iter_value(it->it, &vlen);
      if (klen != len + 9 || memcmp(k, stream, len) != 0 || k[len] != 0) break;
      if (er__record_decode(v, vlen, &ev, NULL) == ER_OK && ev.time >= cutoff) ++*n;
      rocksdb_iter_next(it->it);
    }
  }
  er_iter_free(it);
  return ER_OK;
}

/* The streams (one key of `heads` each, but for deleted ones) and the
 * events the log shows, both counted exactly: a stream without a
 * lifecycle has every version up to its head. */
static int count_heads(er_store *s, uint64_t *streams, uint64_t *events,
                       er_error *err) {
  rocksdb_iterator_t *it = rocksdb_create_iterator_cf(s->db, s->ropts, s->cf[CF_HEADS]);
  char *rerr = NULL;
  int rc = ER_OK;
  *streams = *events = 0;
  for (rocksdb_iter_seek_to_first(it); rc == ER_OK && rocksdb_iter_valid(it);
       rocksdb_iter_next(it)) {
    size_t klen, vlen;
    const char *k = rocksdb_iter_key(it, &klen);
    const char *v = rocksdb_iter_value(it, &vlen);
    uint64_t version = vlen >= 8 ? er__get_le64((const uint8_t *)v) : 0, kept;
    er__life l;
    if (!er__life_get(s, k, klen, &l)) {
      ++*streams;
      *events += version;
      continue;
    }
    if (!(l.flags & (ER_LIFE_SOFT | ER_LIFE_HARD))) ++*streams;
    l.head = version;
    rc = count_kept(s, k, klen, &l, &kept, err);
    *events += kept;
  }
  rocksdb_iter_get_error(it, &rerr);
  rocksdb_iter_destroy(it);
  if (rerr) return er__rocks_fail(err, "counting the streams", rerr);
  return rc;
}

int er_stats(er_store *s, er_store_stats *out, er_error *err) {
  int i, rc;
  memset(out, 0, sizeof *out);
  out->last_position = er_last_position(s);
  rc = count_heads(s, &out->streams, &out->events, err);
  if (rc != ER_OK) return rc;
  rc = dir_bytes(s->path, &out->bytes_on_disk, err);
  if (rc != ER_OK) return rc;
  for (i = 0; i < CF_COUNT && i < ER_STATS_FAMILIES; i++) {
    er_family_stats *f = &out->families[i];
    f->name = er__cf_names[i];
    f->bytes = property(s, i, "rocksdb.total-sst-files-size") +
               property(s, i, "rocksdb.size-all-mem-tables");
    f->keys = property(s, i, "rocksdb.estimate-num-keys");
  }
  out->n_families = (size_t)i;
  return ER_OK;
}
