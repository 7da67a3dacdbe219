/* lifecycle.c -- deleting and truncating streams, retention limits, and
 * compaction.
 *
 * A stream with a lifecycle has a value in the `lifecycle` family (below)
 * and an entry in the store's table of them (loaded at open, a hash table
 * of uthash).  Reads consult the table to skip removed events, so that a
 * delete is one small write and is seen at once; er_compact later turns the
 * removed events into holes and has RocksDB rewrite its files without
 * their bytes.
 *
 * The value (little-endian), 42 bytes:
 *   0   1  value format (1)
 *   1   1  flags: ER_LIFE_SOFT, ER_LIFE_HARD
 *   2   8  before          versions below are removed
 *   10  8  hidden_before   versions below are hidden from the stream (soft)
 *   18  8  expired_before  times below are removed (i64)
 *   26  8  max_count
 *   34  8  max_age (seconds)
 */
#include "internal.h"
#include <stdio.h>
#include <stdlib.h>
#include <uthash.h>

#define LIFE_LEN 42
#define LIFE_FORMAT 1
#define COMPACT_CHUNK 1024 /* removals written per batch by er_compact */

struct er__life_entry {
  char *stream;
  size_t len;
  er__life life;
  UT_hash_handle hh;
};

static void life_encode(uint8_t out[LIFE_LEN], const er__life *l) {
  out[0] = LIFE_FORMAT;
  out[1] = l->flags;
  er__put_le64(out + 2, l->before);
  er__put_le64(out + 10, l->hidden_before);
  er__put_le64(out + 18, (uint64_t)l->expired_before);
  er__put_le64(out + 26, l->max_count);
  er__put_le64(out + 34, l->max_age);
}

static int life_decode(const void *buf, size_t len, er__life *l) {
  const uint8_t *b = buf;
  if (len != LIFE_LEN || b[0] != LIFE_FORMAT ||
      (b[1] & ~(ER_LIFE_SOFT | ER_LIFE_HARD)) != 0)
    return ER_CORRUPTION;
  memset(l, 0, sizeof *l);
  l->flags = b[1];
  l->before = er__get_le64(b + 2);
  l->hidden_before = er__get_le64(b + 10);
  l->expired_before = (int64_t)er__get_le64(b + 18);
  l->max_count = er__get_le64(b + 26);
  l->max_age = er__get_le64(b + 34);
  if (l->max_age > ER_MAX_AGE_LIMIT) return ER_CORRUPTION;
  return ER_OK;
}

/* A lifecycle that removes and hides nothing needs no value. */
static int life_is_empty(const er__life *l) {
  return l->flags == 0 && l->before <= 1 && l->hidden_before <= 1 &&
         l->expired_before == 0 && l->max_count == 0 && l->max_age == 0;
}

/* ---- the table ------------------------------------------------------------ */

static er__life_entry *find(er_store *s, const char *stream, size_t len) {
  er__life_entry *e = NULL;
  HASH_FIND(hh, s->life, stream, len, e);
  return e;
}

/* Set (or, for an empty lifecycle, drop) the entry of `stream`; life_lock
 * held for writing. */
static int table_set(er_store *s, const char *stream, size_t len,
                     const er__life *l) {
  er__life_entry *e = find(s, stream, len);
  if (life_is_empty(l)) {
    if (e) {
      HASH_DEL(s->life, e);
      free(e->stream);
      free(e);
    }
  } else if (e) {
    e->life = *l;
  } else {
    e = calloc(1, sizeof *e);
    if (!e || !(e->stream = er__memdup(stream, len))) {
      free(e);
      return ER_NOMEM;
    }
    e->len = len;
    e->life = *l;
    HASH_ADD_KEYPTR(hh, s->life, e->stream, e->len, e);
  }
  __atomic_store_n(&s->n_life, (size_t)HASH_COUNT(s->life), __ATOMIC_RELEASE);
  return ER_OK;
}

static void table_clear(er_store *s) {
  er__life_entry *e, *tmp;
  HASH_ITER(hh, s->life, e, tmp) {
    HASH_DEL(s->life, e);
    free(e->stream);
    free(e);
  }
  __atomic_store_n(&s->n_life, (size_t)0, __ATOMIC_RELEASE);
}

void er__life_free(er_store *s) {
  pthread_rwlock_wrlock(&s->life_lock);
  table_clear(s);
  pthread_rwlock_unlock(&s->life_lock);
}

int er__life_load(er_store *s, er_error *err) {
  rocksdb_iterator_t *it;
  char *rerr = NULL;
  int rc = ER_OK;
  pthread_rwlock_wrlock(&s->life_lock);
  table_clear(s);
  it = rocksdb_create_iterator_cf(s->db, s->ropts, s->cf[CF_LIFECYCLE]);
  for (rocksdb_iter_seek_to_first(it); rc == ER_OK && rocksdb_iter_valid(it);
       rocksdb_iter_next(it)) {
    size_t klen, vlen;
    const char *k = rocksdb_iter_key(it, &klen);
    const char *v = rocksdb_iter_value(it, &vlen);
    er__life l;
    if (er__check_stream(k, klen, NULL) != ER_OK ||
        life_decode(v, vlen, &l) != ER_OK) {
      rc = er__fail(err, ER_CORRUPTION,
                    "%s: a damaged lifecycle entry (run eventrocks check)",
                    s->path);
      break;
    }
    if ((rc = er__head_get(s, k, klen, &l.head, err)) != ER_OK) break;
    if (table_set(s, k, klen, &l) != ER_OK)
      rc = er__fail(err, ER_NOMEM, "out of memory");
  }
  if (rc == ER_OK) {
    rocksdb_iter_get_error(it, &rerr);
    if (rerr) rc = er__rocks_fail(err, "reading the lifecycle family", rerr);
  }
  rocksdb_iter_destroy(it);
  pthread_rwlock_unlock(&s->life_lock);
  return rc;
}

int er__life_get(er_store *s, const char *stream, size_t len, er__life *out) {
  er__life_entry *e;
  if (__atomic_load_n(&s->n_life, __ATOMIC_ACQUIRE) == 0) return 0;
  pthread_rwlock_rdlock(&s->life_lock);
  e = find(s, stream, len);
  if (e) *out = e->life;
  pthread_rwlock_unlock(&s->life_lock);
  return e != NULL;
}

/* "Now" for max_age: the later of the system's clock and the store's, and
 * never earlier than a previous answer, so that an event max_age removed
 * stays removed when the system clock goes back. */
int64_t er__life_now(er_store *s) {
  int64_t now = er__now_micros(), prev;
  int64_t store_time = __atomic_load_n(&s->last_time, __ATOMIC_RELAXED);
  if (now < store_time) now = store_time;
  prev = __atomic_load_n(&s->life_now, __ATOMIC_RELAXED);
  while (now > prev &&
         !__atomic_compare_exchange_n(&s->life_now, &prev, now, 0,
                                      __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
  }
  return now > prev ? now : prev;
}

int er__life_check_append(er_store *s, const char *stream, size_t len,
                          er_error *err) {
  er__life l;
  assert(er__locked(s));
  if (er__life_get(s, stream, len, &l) && (l.flags & ER_LIFE_HARD))
    return er__fail(err, ER_STREAM_DELETED, "stream '%.*s' was deleted",
                    (int)(len > 200 ? 200 : len), stream);
  return ER_OK;
}

void er__life_restart_queue(er_store *s, const char *stream, size_t len,
                            rocksdb_writebatch_t *wb) {
  er__life l;
  uint8_t v[LIFE_LEN];
  assert(er__locked(s));
  if (!er__life_get(s, stream, len, &l) || !(l.flags & ER_LIFE_SOFT)) return;
  l.flags &= (uint8_t)~ER_LIFE_SOFT;
  life_encode(v, &l);
  rocksdb_writebatch_put_cf(wb, s->cf[CF_LIFECYCLE], stream, len,
                            (const char *)v, sizeof v);
}

void er__life_committed(er_store *s, const char *stream, size_t len,
                        uint64_t version) {
  er__life_entry *e;
  if (__atomic_load_n(&s->n_life, __ATOMIC_ACQUIRE) == 0) return;
  pthread_rwlock_wrlock(&s->life_lock);
  if ((e = find(s, stream, len)) != NULL) {
    e->life.head = version;
    e->life.flags &= (uint8_t)~ER_LIFE_SOFT;
  }
  pthread_rwlock_unlock(&s->life_lock);
}

void er__life_restore_queue(er_store *s, const char *stream, size_t len,
                            uint64_t before, rocksdb_writebatch_t *wb) {
  uint8_t v[LIFE_LEN], fmt[4];
  er__life l;
  assert(er__locked(s));
  if (!er__life_get(s, stream, len, &l)) memset(&l, 0, sizeof l);
  if (l.before < before) l.before = before;
  life_encode(v, &l);
  rocksdb_writebatch_put_cf(wb, s->cf[CF_LIFECYCLE], stream, len,
                            (const char *)v, sizeof v);
  er__put_le32(fmt, s->format > 2 ? s->format : 2);
  rocksdb_writebatch_put_cf(wb, s->cf[CF_DEFAULT], "format", 6,
                            (const char *)fmt, 4);
}

void er__life_restored(er_store *s, const char *stream, size_t len,
                       uint64_t before, uint64_t version) {
  er__life l;
  if (s->format < 2) s->format = 2;
  if (!er__life_get(s, stream, len, &l)) memset(&l, 0, sizeof l);
  if (l.before < before) l.before = before;
  l.head = version;
  pthread_rwlock_wrlock(&s->life_lock);
  table_set(s, stream, len, &l); /* out of memory: reads show the removed
                                    versions' absence anyway (none exist) */
  pthread_rwlock_unlock(&s->life_lock);
}

int er__position_removed(er_store *s, uint64_t position, er_error *err) {
  uint8_t key[8];
  void *val = NULL;
  size_t len = 0;
  er_event ev;
  er__life l;
  int rc, removed;
  er__put_be64(key, position);
  rc = er__get(s, CF_LOG, key, 8, &val, &len, "reading the log", err);
  if (rc == ER_NOT_FOUND) return 1;
  if (rc != ER_OK) return -1;
  if (er__is_hole(val, len)) removed = 1;
  else if (er__record_decode(val, len, &ev, NULL) != ER_OK) removed = 0;
  else
    removed = er__life_get(s, ev.stream, ev.stream_len, &l) &&
              er__life_removes(s, &l, ev.version, ev.time);
  er_free(val);
  return removed;
}

/* ---- changing a lifecycle -------------------------------------------------- */

static int stream_arg(er_store *s, const char *stream, size_t len,
                      er_error *err) {
  if (s->read_only)
    return er__fail(err, ER_INVALID, "%s: the store is open read-only", s->path);
  return er__check_stream(stream, len, err);
}

/* The current lifecycle of `stream` (empty when it has none) and its
 * version; write_lock held. */
static int current_life(er_store *s, const char *stream, size_t len,
                        er__life *l, er_error *err) {
  uint64_t version = 0;
  int rc = er__head_current(s, stream, len, &version, err);
  if (rc != ER_OK) return rc;
  if (!er__life_get(s, stream, len, l)) memset(l, 0, sizeof *l);
  l->head = version;
  return ER_OK;
}

static int deleted(er_error *err, const char *stream, size_t len) {
  return er__fail(err, ER_STREAM_DELETED, "stream '%.*s' was deleted",
                  (int)(len > 200 ? 200 : len), stream);
}

static int missing(er_error *err, const char *stream, size_t len) {
  return er__fail(err, ER_NOT_FOUND, "stream '%.*s' has no events",
                  (int)(len > 200 ? 200 : len), stream);
}

/* Store the new lifecycle `l` of `stream` (with the store's format moved
 * to 2 when it is still 1) and the writes already in `wb`, then put it in
 * the table; write_lock held. */
static int write_life(er_store *s, const char *stream, size_t len,
                      const er__life *l, rocksdb_writebatch_t *wb,
                      er_error *err) {
  uint8_t v[LIFE_LEN], fmt[4];
  char *rerr = NULL;
  int rc;
  assert(er__locked(s));
  if (life_is_empty(l)) {
    rocksdb_writebatch_delete_cf(wb, s->cf[CF_LIFECYCLE], stream, len);
  } else {
    life_encode(v, l);
    rocksdb_writebatch_put_cf(wb, s->cf[CF_LIFECYCLE], stream, len,
                              (const char *)v, sizeof v);
  }
  if (s->format < 2) {
    er__put_le32(fmt, 2);
    rocksdb_writebatch_put_cf(wb, s->cf[CF_DEFAULT], "format", 6,
                              (const char *)fmt, 4);
  }
  rocksdb_write(s->db, s->wopts, wb, &rerr);
  if (rerr) return er__rocks_fail(err, "writing a lifecycle change", rerr);
  if (s->format < 2) s->format = 2;
  pthread_rwlock_wrlock(&s->life_lock);
  rc = table_set(s, stream, len, l);
  pthread_rwlock_unlock(&s->life_lock);
  if (rc != ER_OK) return er__fail(err, ER_NOMEM, "out of memory");
  return ER_OK;
}

int er_delete_stream(er_store *s, const char *stream, size_t len,
                     int64_t expected, int hard, er_error *err) {
  er__life l;
  rocksdb_writebatch_t *wb;
  int rc = stream_arg(s, stream, len, err);
  if (rc != ER_OK) return rc;
  if (expected < ER_STREAM_EXISTS)
    return er__fail(err, ER_INVALID, "invalid expected version %lld",
                    (long long)expected);
  wb = rocksdb_writebatch_create();
  er__lock(s);
  rc = current_life(s, stream, len, &l, err);
  if (rc == ER_OK && (l.flags & ER_LIFE_HARD)) rc = deleted(err, stream, len);
  else if (rc == ER_OK && !er__expected_ok(expected, l.head))
    rc = er__wrong_version(err, stream, len, expected, l.head);
  else if (rc == ER_OK && l.head == 0) rc = missing(err, stream, len);
  if (rc == ER_OK) {
    /* a snapshot is made of the events: it goes with them (a soft-deleted
     * stream that restarts must not load the state of its old events) */
    rocksdb_writebatch_delete_cf(wb, s->cf[CF_SNAPSHOTS], stream, len);
    if (hard) {
      l.flags = ER_LIFE_HARD;
    } else {
      l.flags |= ER_LIFE_SOFT;
      if (l.hidden_before < l.head + 1) l.hidden_before = l.head + 1;
    }
    rc = write_life(s, stream, len, &l, wb, err);
  }
  er__unlock(s);
  rocksdb_writebatch_destroy(wb);
  return rc;
}

int er_truncate(er_store *s, const char *stream, size_t len, uint64_t before,
                er_error *err) {
  er__life l;
  rocksdb_writebatch_t *wb;
  int rc = stream_arg(s, stream, len, err);
  if (rc != ER_OK) return rc;
  if (before < 1)
    return er__fail(err, ER_INVALID, "truncate: the version must be >= 1");
  wb = rocksdb_writebatch_create();
  er__lock(s);
  rc = current_life(s, stream, len, &l, err);
  if (rc == ER_OK && (l.flags & ER_LIFE_HARD)) rc = deleted(err, stream, len);
  else if (rc == ER_OK && l.head == 0) rc = missing(err, stream, len);
  else if (rc == ER_OK && before > l.head + 1)
    rc = er__fail(err, ER_INVALID,
                  "truncate: stream '%.*s' is at version %llu; it can be "
                  "truncated before version %llu at most",
                  (int)(len > 200 ? 200 : len), stream,
                  (unsigned long long)l.head, (unsigned long long)l.head + 1);
  if (rc == ER_OK && before > l.before) {
    l.before = before;
    rc = write_life(s, stream, len, &l, wb, err);
  }
  er__unlock(s);
  rocksdb_writebatch_destroy(wb);
  return rc;
}

int er_set_stream_meta(er_store *s, const char *stream, size_t len,
                       const er_stream_meta *meta, er_error *err) {
  er__life l;
  rocksdb_writebatch_t *wb;
  int64_t now;
  int rc = stream_arg(s, stream, len, err);
  if (rc != ER_OK) return rc;
  if (meta->max_age > ER_MAX_AGE_LIMIT)
    return er__fail(err, ER_INVALID, "max_age is limited to %llu seconds",
                    (unsigned long long)ER_MAX_AGE_LIMIT);
  wb = rocksdb_writebatch_create();
  er__lock(s);
  rc = current_life(s, stream, len, &l, err);
  if (rc == ER_OK && (l.flags & ER_LIFE_HARD)) rc = deleted(err, stream, len);
  if (rc == ER_OK) {
    /* what the old limits removed stays removed */
    now = er__life_now(s);
    if (l.max_count && l.head >= l.max_count &&
        l.head - l.max_count + 1 > l.before)
      l.before = l.head - l.max_count + 1;
    if (l.max_age && now - (int64_t)(l.max_age * 1000000) > l.expired_before)
      l.expired_before = now - (int64_t)(l.max_age * 1000000);
    l.max_count = meta->max_count;
    l.max_age = meta->max_age;
    rc = write_life(s, stream, len, &l, wb, err);
  }
  er__unlock(s);
  rocksdb_writebatch_destroy(wb);
  return rc;
}

int er_get_stream_meta(er_store *s, const char *stream, size_t len,
                   er_stream_meta *meta, er_error *err) {
  er__life l;
  int rc = er__check_stream(stream, len, err);
  memset(meta, 0, sizeof *meta);
  if (rc != ER_OK) return rc;
  if (er__life_get(s, stream, len, &l)) {
    meta->max_count = l.max_count;
    meta->max_age = l.max_age;
  }
  return ER_OK;
}

/* ---- compaction ------------------------------------------------------------ */

/* The removals of one batch of er_compact. */
typedef struct compact_batch {
  rocksdb_writebatch_t *wb;
  size_t n;
  uint64_t run_first, run_last; /* the hole being built (0: none) */
  int64_t run_time;
} compact_batch;

static void close_run(er_store *s, compact_batch *b) {
  uint8_t key[8], hole[ER_HOLE_LEN];
  if (!b->run_first) return;
  er__put_be64(key, b->run_first);
  er__hole_encode(hole, b->run_first, b->run_last, b->run_time);
  rocksdb_writebatch_put_cf(b->wb, s->cf[CF_LOG], (const char *)key, 8,
                            (const char *)hole, sizeof hole);
  b->run_first = b->run_last = 0;
}

/* Queue the removal of `ev`: its log entry becomes (part of) a hole, its
 * stream index entry and its id entry go. */
static int queue_removal(er_store *s, compact_batch *b, const er_event *ev,
                         uint8_t *skey) {
  uint8_t key[8];
  if (b->run_first && ev->position == b->run_last + 1) {
    b->run_last = ev->position;
    er__put_be64(key, ev->position);
    rocksdb_writebatch_delete_cf(b->wb, s->cf[CF_LOG], (const char *)key, 8);
  } else {
    close_run(s, b);
    b->run_first = b->run_last = ev->position;
    b->run_time = ev->time;
  }
  er__stream_key(skey, ev->stream, ev->stream_len, ev->version);
  rocksdb_writebatch_delete_cf(b->wb, s->cf[CF_STREAMS], (const char *)skey,
                               ev->stream_len + 9);
  rocksdb_writebatch_delete_cf(b->wb, s->cf[CF_IDS], (const char *)ev->id, 16);
  b->n++;
  return ER_OK;
}

/* Whether `p` is one of the n positions `pos` (ascending). */
static int among(const uint64_t *pos, size_t n, uint64_t p) {
  size_t lo = 0, hi = n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (pos[mid] == p) return 1;
    if (pos[mid] < p) lo = mid + 1;
    else hi = mid;
  }
  return 0;
}

/* Write a batch of removals.  An id that an append reused meanwhile (the
 * id of a removed event is free again) keeps its new entry: the batch is
 * written under the write lock, after checking each id still points at
 * the removed position, or at another that this batch does not remove
 * (`pos` ascending: the log's order). */
static int write_removals(er_store *s, compact_batch *b, const uint64_t *pos,
                          const uint8_t (*ids)[16], size_t n, er_error *err) {
  char *rerr = NULL;
  size_t i;
  int rc = ER_OK;
  close_run(s, b);
  er__lock(s);
  for (i = 0; i < n && rc == ER_OK; i++) {
    size_t len = 0;
    char *v = rocksdb_get_cf(s->db, s->ropts, s->cf[CF_IDS],
                             (const char *)ids[i], 16, &len, &rerr);
    if (rerr) {
      rc = er__rocks_fail(err, "reading the id index", rerr);
      break;
    }
    if (v && len == 8 && er__get_le64((const uint8_t *)v) != pos[i] &&
        !among(pos, n, er__get_le64((const uint8_t *)v))) {
      /* reused by an event that stays: put back the entry that the batch
       * deletes */
      rocksdb_writebatch_put_cf(b->wb, s->cf[CF_IDS], (const char *)ids[i], 16,
                                v, len);
    }
    rocksdb_free(v);
  }
  if (rc == ER_OK && rocksdb_writebatch_count(b->wb) > 0) {
    rocksdb_write(s->db, s->wopts, b->wb, &rerr);
    if (rerr) rc = er__rocks_fail(err, "writing the holes of a compaction", rerr);
  }
  er__unlock(s);
  rocksdb_writebatch_clear(b->wb);
  b->n = 0;
  return rc;
}

/* Turn every removed event of the log into a hole. */
static int remove_events(er_store *s, uint64_t *removed, er_error *err) {
  rocksdb_iterator_t *it;
  rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
  compact_batch b;
  uint64_t pos[COMPACT_CHUNK];
  uint8_t ids[COMPACT_CHUNK][16];
  uint8_t *skey = malloc(ER_MAX_STREAM_LEN + 9);
  int64_t now = er__life_now(s);
  char *rerr = NULL;
  int rc = ER_OK;
  memset(&b, 0, sizeof b);
  if (!skey) {
    rocksdb_readoptions_destroy(ro);
    return er__fail(err, ER_NOMEM, "out of memory");
  }
  b.wb = rocksdb_writebatch_create();
  rocksdb_readoptions_set_fill_cache(ro, 0);
  it = rocksdb_create_iterator_cf(s->db, ro, s->cf[CF_LOG]);
  for (rocksdb_iter_seek_to_first(it); rc == ER_OK && rocksdb_iter_valid(it);
       rocksdb_iter_next(it)) {
    size_t klen, vlen;
    const char *k = rocksdb_iter_key(it, &klen);
    const char *v = rocksdb_iter_value(it, &vlen);
    er_event ev;
    er__life l;
    (void)k;
    if (er__is_hole(v, vlen)) continue;
    if (klen != 8 || er__record_decode(v, vlen, &ev, NULL) != ER_OK) continue; /* check's to report */
    if (!er__life_get(s, ev.stream, ev.stream_len, &l) ||
        !er__life_removes_at(&l, ev.version, ev.time, now))
      continue;
    pos[b.n] = ev.position;
    memcpy(ids[b.n], ev.id, 16);
    queue_removal(s, &b, &ev, skey);
    if (removed) (*removed)++;
    if (b.n == COMPACT_CHUNK) rc = write_removals(s, &b, pos, (const uint8_t(*)[16])ids, COMPACT_CHUNK, err);
  }
  if (rc == ER_OK) {
    rocksdb_iter_get_error(it, &rerr);
    if (rerr) rc = er__rocks_fail(err, "reading the log", rerr);
  }
  if (rc == ER_OK && b.n) rc = write_removals(s, &b, pos, (const uint8_t(*)[16])ids, b.n, err);
  rocksdb_iter_destroy(it);
  rocksdb_readoptions_destroy(ro);
  rocksdb_writebatch_destroy(b.wb);
  free(skey);
  return rc;
}

int er_compact(er_store *s, uint64_t *removed, er_error *err) {
  rocksdb_flushoptions_t *fo;
  rocksdb_compactoptions_t *co;
  char *rerr = NULL;
  size_t i;
  int rc = ER_OK;
  if (removed) *removed = 0;
  if (s->read_only)
    return er__fail(err, ER_INVALID, "%s: the store is open read-only", s->path);
  if (__atomic_load_n(&s->n_life, __ATOMIC_ACQUIRE) > 0 &&
      (rc = remove_events(s, removed, err)) != ER_OK)
    return rc;
  /* Every family flushed: no write-ahead log file is needed any more and
   * RocksDB deletes them; then every file rewritten without what was
   * deleted or overwritten (bottommost level included). */
  fo = rocksdb_flushoptions_create();
  rocksdb_flushoptions_set_wait(fo, 1);
  for (i = 0; i < CF_COUNT && !rerr; i++) rocksdb_flush_cf(s->db, fo, s->cf[i], &rerr);
  rocksdb_flushoptions_destroy(fo);
  if (rerr) return er__rocks_fail(err, "flushing before a compaction", rerr);
  co = rocksdb_compactoptions_create();
  rocksdb_compactoptions_set_exclusive_manual_compaction(co, 0);
  rocksdb_compactoptions_set_bottommost_level_compaction(co, 2); /* force */
  for (i = 0; i < CF_COUNT; i++)
    rocksdb_compact_range_cf_opt(s->db, s->cf[i], co, NULL, 0, NULL, 0);
  rocksdb_compactoptions_destroy(co);
  return ER_OK;
}

/* ---- holes ------------------------------------------------------------------ */

int er_removed_range(er_store *s, uint64_t from, uint64_t to, int *removed,
                     er_error *err) {
  uint8_t lower[8], upper[8];
  rocksdb_readoptions_t *ro;
  rocksdb_iterator_t *it;
  uint64_t expect = from;
  int64_t now = er__life_now(s);
  char *rerr = NULL;
  int rc = ER_OK;
  *removed = 0;
  if (from == 0 || to < from) {
    *removed = 1;
    return ER_OK;
  }
  er__put_be64(lower, from);
  er__put_be64(upper, to == UINT64_MAX ? to : to + 1);
  ro = rocksdb_readoptions_create();
  rocksdb_readoptions_set_iterate_upper_bound(ro, (const char *)upper, 8);
  it = rocksdb_create_iterator_cf(s->db, ro, s->cf[CF_LOG]);
  /* a hole may start before `from` */
  rocksdb_iter_seek_for_prev(it, (const char *)lower, 8);
  if (!rocksdb_iter_valid(it)) rocksdb_iter_seek(it, (const char *)lower, 8);
  for (; rocksdb_iter_valid(it) && expect <= to; rocksdb_iter_next(it)) {
    size_t klen, vlen;
    const char *k = rocksdb_iter_key(it, &klen);
    const char *v = rocksdb_iter_value(it, &vlen);
    uint64_t pos = klen == 8 ? er__get_be64((const uint8_t *)k) : 0, first, last;
    er_event ev;
    er__life l;
    if (er__is_hole(v, vlen) && er__hole_decode(v, vlen, &first, &last, NULL) == ER_OK &&
        first == pos) {
      if (first > expect) break; /* a missing position */
      if (last + 1 > expect) expect = last + 1;
      continue;
    }
    if (pos < expect) continue; /* the record before `from` */
    if (pos > expect) break;
    if (er__record_decode(v, vlen, &ev, NULL) != ER_OK ||
        !er__life_get(s, ev.stream, ev.stream_len, &l) ||
        !er__life_removes_at(&l, ev.version, ev.time, now))
      break; /* an event that reads is there */
    expect++;
  }
  rocksdb_iter_get_error(it, &rerr);
  if (rerr) rc = er__rocks_fail(err, "reading the log", rerr);
  rocksdb_iter_destroy(it);
  rocksdb_readoptions_destroy(ro);
  if (rc == ER_OK) *removed = expect > to;
  return rc;
}
