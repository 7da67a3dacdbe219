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

/* The streams: one key of `heads` each, counted exactly, but for deleted
 * ones. */
static int count_streams(er_store *s, uint64_t *n, er_error *err) {
  rocksdb_iterator_t *it = rocksdb_create_iterator_cf(s->db, s->ropts, s->cf[CF_HEADS]);
  char *rerr = NULL;
  *n = 0;
  for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
    size_t klen;
    const char *k = rocksdb_iter_key(it, &klen);
    er__life l;
    if (!er__life_get(s, k, klen, &l) || !(l.flags & (ER_LIFE_SOFT | ER_LIFE_HARD))) ++*n;
  }
  rocksdb_iter_get_error(it, &rerr);
  rocksdb_iter_destroy(it);
  if (rerr) return er__rocks_fail(err, "counting the streams", rerr);
  return ER_OK;
}

int er_stats(er_store *s, er_store_stats *out, er_error *err) {
  int i, rc;
  memset(out, 0, sizeof *out);
  out->last_position = er_last_position(s);
  if (s->format >= 2) {
    /* a store with holes or removed events: the log is counted */
    er_iter *it;
    er_event ev;
    rc = er_read_all(s, 1, ER_UNLIMITED, NULL, &it, err);
    if (rc != ER_OK) return rc;
    while ((rc = er_iter_next(it, &ev, err)) == ER_OK) out->events++;
    er_iter_free(it);
    if (rc != ER_NOT_FOUND) return rc;
  } else {
    out->events = out->last_position; /* every position holds an event */
  }
  rc = count_streams(s, &out->streams, err);
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
