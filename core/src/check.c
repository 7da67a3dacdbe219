/* check.c -- verifying a store's invariants, and the raw-key tools for
 * tests and repairs. */
#include "internal.h"
#include <sodium.h>

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

typedef struct checker {
  er_store *s;
  er_report_fn report;
  er_progress_fn progress;
  void *ud;
  uint64_t problems, done, total;
  int64_t ahead;    /* times past this are more than a day ahead of now */
  uint64_t n_ahead; /* events timed past `ahead` */
  uint8_t key[ER_MAX_STREAM_LEN + 9]; /* room for a stream index key */
  /* stream_entry: the stream being read, its last version, 0 before any */
  char stream[ER_MAX_STREAM_LEN];
  size_t stream_len;
  uint64_t last;
  int have;
  uint8_t *plain; /* decrypted payloads of sealed records */
  size_t plain_cap;
} checker;

#define AHEAD_SHOWN 10 /* events timed ahead reported one by one */

static void problem(checker *c, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

static void problem(checker *c, const char *fmt, ...) {
  char msg[600];
  va_list ap;
  c->problems++;
  if (!c->report) return;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  c->report(c->ud, msg);
}

static void tick(checker *c) {
  c->done++;
  if (c->progress && (c->done & 0x3ff) == 0) c->progress(c->ud, c->done, c->total);
}

/* The value of `key` in family `cf` (malloc'd by RocksDB) or NULL.  A key
 * that cannot be read (a damaged block) is a problem, reported here; the
 * check goes on, so `*unreadable` tells the caller not to report the key as
 * missing too. */
static char *get(checker *c, int cf, const void *key, size_t klen, size_t *vlen,
                 int *unreadable) {
  char *rerr = NULL;
  char *v = rocksdb_get_cf(c->s->db, c->s->ropts, c->s->cf[cf], key, klen, vlen, &rerr);
  *unreadable = rerr != NULL;
  if (rerr) {
    problem(c, "%s: a key of %zu bytes could not be read: %s", er__cf_names[cf],
            klen, rerr);
    rocksdb_free(rerr);
  }
  return v;
}

/* The error an iterator stopped on (malloc'd by RocksDB), or NULL when it
 * reached the end. */
static char *iter_error(rocksdb_iterator_t *it) {
  char *rerr = NULL;
  rocksdb_iter_get_error(it, &rerr);
  return rerr;
}

/* An iterator of family `cf` that stopped on a read error: the problem is
 * reported, and the rest of the family is not checked. */
static void family_unreadable(checker *c, int cf, char *rerr) {
  problem(c, "%s: the rest of the family could not be read and was not checked: %s",
          er__cf_names[cf], rerr);
  rocksdb_free(rerr);
}

/* An iterator over the log positioned at the first position >= `pos`. */
static rocksdb_iterator_t *log_at(er_store *s, uint64_t pos) {
  uint8_t key[8];
  rocksdb_iterator_t *it = rocksdb_create_iterator_cf(s->db, s->ropts, s->cf[CF_LOG]);
  er__put_be64(key, pos);
  rocksdb_iter_seek(it, (const char *)key, 8);
  return it;
}

/* The first position in (`after`, `end`] from which the log reads again
 * without an error: positions are keys, a damaged block holds a range of
 * them, and every position past the block reads, so a binary search finds
 * the block's end.  `end` is past the last position (it reads: nothing is
 * there). */
static uint64_t log_resume(er_store *s, uint64_t after, uint64_t end) {
  uint64_t lo = after + 1, hi = end;
  while (lo < hi) {
    uint64_t mid = lo + (hi - lo) / 2;
    rocksdb_iterator_t *it = log_at(s, mid);
    char *rerr = iter_error(it);
    rocksdb_iter_destroy(it);
    if (rerr) {
      rocksdb_free(rerr);
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  return lo;
}

/* `t` (microseconds since the epoch) as UTC date and time, or as the
 * number when no calendar year holds it. */
static void format_time(int64_t t, char *buf, size_t cap) {
  time_t secs = (time_t)(t / 1000000);
  struct tm tm;
  if (t / 1000000 == (int64_t)secs && gmtime_r(&secs, &tm) && tm.tm_year < 8100 &&
      strftime(buf, cap, "%Y-%m-%d %H:%M:%S UTC", &tm) > 0)
    return;
  snprintf(buf, cap, "%lld microseconds after the epoch", (long long)t);
}

#define SHOWN(len) (int)((len) > 80 ? 80 : (len))

/* Whether the lifecycle of a stream explains that its versions `from` to
 * `to` are gone: removed by version (a hard delete, a truncation, max_count)
 * or possibly by time (max_age, whose removed events' times are gone with
 * them). */
static int gap_explained(checker *c, const char *stream, size_t len,
                         uint64_t from, uint64_t to) {
  er__life l;
  (void)from;
  if (!er__life_get(c->s, stream, len, &l)) return 0;
  if (l.flags & ER_LIFE_HARD) return 1;
  if (to < l.before) return 1;
  if (l.max_count && to + l.max_count <= l.head) return 1;
  return l.expired_before != 0 || l.max_age != 0;
}

/* Whether `ev` is removed by its stream's lifecycle (not yet compacted). */
static int removed_event(checker *c, const er_event *ev) {
  er__life l;
  return er__life_get(c->s, ev->stream, ev->stream_len, &l) &&
         er__life_removes(c->s, &l, ev->version, ev->time);
}

/* The log record `v` at `pos`: whole, with a valid stream id, not timed
 * far ahead, with its stream index entry (the same bytes) and its id
 * entry. */
static void check_record(checker *c, uint64_t pos, const char *v, size_t vlen) {
  size_t ilen = 0, xlen = 0;
  er_event ev;
  er_record_info info;
  char *idx, *id;
  int unreadable;
  if (er__record_decode(v, vlen, &ev, &info) != ER_OK || ev.position != pos) {
    problem(c, "log: the record at position %llu is damaged", (unsigned long long)pos);
    return;
  }
  if (info.sealed && c->s->has_key) {
    er_error e;
    if (er__unseal_event(c->s, &ev, &info, &c->plain, &c->plain_cap, &e) != ER_OK) {
      problem(c, "log: %s", e.message);
      return;
    }
  }
  if (ev.stream_len == 0 || ev.stream_len > ER_MAX_STREAM_LEN) {
    problem(c, "log: the record at position %llu has a bad stream id", (unsigned long long)pos);
    return;
  }
  if (ev.time > c->ahead && ++c->n_ahead <= AHEAD_SHOWN) {
    char when[64];
    format_time(ev.time, when, sizeof when);
    problem(c, "log: the event at position %llu is timed %s, more than a day "
            "ahead of now", (unsigned long long)pos, when);
  }
  er__stream_key(c->key, ev.stream, ev.stream_len, ev.version);
  idx = get(c, CF_STREAMS, c->key, ev.stream_len + 9, &ilen, &unreadable);
  if (!idx && !unreadable)
    problem(c, "streams: no index entry for %.*s@%llu (position %llu)",
            SHOWN(ev.stream_len), ev.stream, (unsigned long long)ev.version,
            (unsigned long long)pos);
  else if (idx && (ilen != vlen || memcmp(idx, v, vlen) != 0))
    problem(c, "streams: the index entry of %.*s@%llu differs from the log record at position %llu",
            SHOWN(ev.stream_len), ev.stream, (unsigned long long)ev.version,
            (unsigned long long)pos);
  rocksdb_free(idx);
  /* the id of a removed event is free: an append may have taken it */
  if (removed_event(c, &ev)) return;
  id = get(c, CF_IDS, ev.id, 16, &xlen, &unreadable);
  if (!unreadable && (!id || xlen != 8 || er__get_le64((const uint8_t *)id) != pos)) {
    char text[37];
    er_uuid_format(ev.id, text);
    problem(c, "ids: event id %s does not point at position %llu", text,
            (unsigned long long)pos);
  }
  rocksdb_free(id);
}

/* The log iterator stopped on `rerr` (freed here) with position `expect`
 * next: the unreadable range is reported, and the first position past it
 * returned (past the last position when nothing after it reads). */
static uint64_t skip_unreadable(checker *c, uint64_t expect, char *rerr) {
  uint64_t end = c->s->last_position + 1;
  uint64_t next = log_resume(c->s, expect - 1, end > expect ? end : expect);
  if (next >= end)
    problem(c, "log: positions from %llu on could not be read: %s",
            (unsigned long long)expect, rerr);
  else
    problem(c, "log: positions %llu to %llu could not be read: %s",
            (unsigned long long)expect, (unsigned long long)(next - 1), rerr);
  rocksdb_free(rerr);
  return next;
}

/* The log: positions contiguous, records whole, index and id entries.  A
 * range of positions that cannot be read (a damaged block) is reported and
 * skipped, and the scan goes on after it. */
static void check_log(checker *c) {
  er_store *s = c->s;
  rocksdb_iterator_t *it = log_at(s, 0);
  uint64_t expect = 1;
  for (;;) {
    size_t klen, vlen;
    const char *k, *v;
    uint64_t pos;
    if (!rocksdb_iter_valid(it)) {
      char *rerr = iter_error(it);
      uint64_t next;
      if (!rerr) break;
      next = skip_unreadable(c, expect, rerr);
      rocksdb_iter_destroy(it);
      it = NULL;
      if (next > s->last_position) break;
      c->done += next - expect;
      expect = next;
      it = log_at(s, next);
      continue;
    }
    k = rocksdb_iter_key(it, &klen);
    v = rocksdb_iter_value(it, &vlen);
    tick(c);
    if (klen != 8) {
      problem(c, "log: a key of %zu bytes is not a position", klen);
    } else {
      pos = er__get_be64((const uint8_t *)k);
      if (pos != expect)
        problem(c, "log: position %llu follows %llu (expected %llu)",
                (unsigned long long)pos, (unsigned long long)(expect - 1),
                (unsigned long long)expect);
      expect = pos + 1;
      if (er__is_hole(v, vlen)) {
        uint64_t first, last;
        if (er__hole_decode(v, vlen, &first, &last, NULL) != ER_OK || first != pos)
          problem(c, "log: the hole record at position %llu is damaged",
                  (unsigned long long)pos);
        else {
          c->done += last - first;
          expect = last + 1; /* removed events: accounted for */
        }
      } else {
        check_record(c, pos, v, vlen);
      }
    }
    rocksdb_iter_next(it);
  }
  if (it) rocksdb_iter_destroy(it);
  if (c->n_ahead > AHEAD_SHOWN)
    problem(c, "log: %llu more events are timed more than a day ahead of now",
            (unsigned long long)(c->n_ahead - AHEAD_SHOWN));
  if (expect - 1 != s->last_position)
    problem(c, "log: ends at position %llu but the store counts %llu",
            (unsigned long long)(expect - 1), (unsigned long long)s->last_position);
}

/* The head of a stream must equal its last version. */
static void check_head(checker *c, const char *stream, size_t len, uint64_t last) {
  size_t hlen = 0;
  int unreadable;
  char *h = get(c, CF_HEADS, stream, len, &hlen, &unreadable);
  if (unreadable) return;
  if (!h || hlen < 8)
    problem(c, "heads: stream %.*s has events but no head", SHOWN(len), stream);
  else if (er__get_le64((const uint8_t *)h) > last &&
           gap_explained(c, stream, len, last + 1, er__get_le64((const uint8_t *)h)))
    ; /* its newest events were removed */
  else if (er__get_le64((const uint8_t *)h) != last)
    problem(c, "heads: stream %.*s is at version %llu but its head says %llu", SHOWN(len),
            stream, (unsigned long long)last,
            (unsigned long long)er__get_le64((const uint8_t *)h));
  rocksdb_free(h);
}

typedef void (*entry_fn)(checker *c, const char *k, size_t klen, const char *v,
                         size_t vlen);

/* Every entry of family `cf`, in key order, through `fn`.  Returns 1 when
 * the family was read to its end, 0 when a read error stopped it (reported:
 * the rest of the family is not checked). */
static int scan_family(checker *c, int cf, entry_fn fn) {
  er_store *s = c->s;
  rocksdb_iterator_t *it = rocksdb_create_iterator_cf(s->db, s->ropts, s->cf[cf]);
  char *rerr;
  for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
    size_t klen, vlen;
    const char *k = rocksdb_iter_key(it, &klen), *v = rocksdb_iter_value(it, &vlen);
    fn(c, k, klen, v, vlen);
  }
  rerr = iter_error(it);
  rocksdb_iter_destroy(it);
  if (!rerr) return 1;
  family_unreadable(c, cf, rerr);
  return 0;
}

/* An entry of the stream index: after the previous version of its stream
 * (c->stream, c->stream_len, c->last; a new stream checks the head of the
 * one before), pointing at the same record in the log. */
static void stream_entry(checker *c, const char *k, size_t klen, const char *v,
                         size_t vlen) {
  const char *nul = klen > 9 ? memchr(k, 0, klen - 8) : NULL;
  size_t llen = 0, slen;
  uint64_t ver;
  er_event ev;
  uint8_t pkey[8];
  char *rec;
  int unreadable;
  tick(c);
  if (!nul || (size_t)(nul - k) != klen - 9 || klen - 9 > ER_MAX_STREAM_LEN) {
    problem(c, "streams: a key of %zu bytes is not a stream id and a version", klen);
    return;
  }
  slen = klen - 9;
  ver = er__get_be64((const uint8_t *)k + slen + 1);
  if (!c->have || slen != c->stream_len || memcmp(k, c->stream, slen) != 0) {
    if (c->have) check_head(c, c->stream, c->stream_len, c->last);
    memcpy(c->stream, k, slen);
    c->stream_len = slen;
    c->last = 0;
    c->have = 1;
  }
  if (ver != c->last + 1 &&
      !(ver > c->last + 1 && gap_explained(c, k, slen, c->last + 1, ver - 1)))
    problem(c, "streams: %.*s has version %llu after %llu", SHOWN(slen), k,
            (unsigned long long)ver, (unsigned long long)c->last);
  c->last = ver;
  if (er__record_decode(v, vlen, &ev, NULL) != ER_OK || ev.version != ver ||
      ev.stream_len != slen || memcmp(ev.stream, k, slen) != 0) {
    problem(c, "streams: the record of %.*s@%llu is damaged", SHOWN(slen), k,
            (unsigned long long)ver);
    return;
  }
  er__put_be64(pkey, ev.position);
  rec = get(c, CF_LOG, pkey, 8, &llen, &unreadable);
  if (!rec && !unreadable)
    problem(c, "log: %.*s@%llu points at position %llu, which holds no event", SHOWN(slen),
            k, (unsigned long long)ver, (unsigned long long)ev.position);
  else if (rec && (llen != vlen || memcmp(rec, v, vlen) != 0))
    problem(c, "log: the record at position %llu differs from the index entry of %.*s@%llu",
            (unsigned long long)ev.position, SHOWN(slen), k, (unsigned long long)ver);
  rocksdb_free(rec);
}

/* A head names a stream whose last version it is (the other way round,
 * streams without a head, is stream_entry's part).  Its flags byte is
 * reserved: not checked. */
static void head_entry(checker *c, const char *k, size_t klen, const char *v,
                       size_t vlen) {
  size_t len = 0;
  uint64_t head;
  char *e;
  int unreadable = 0;
  if (vlen < 8 || klen == 0 || klen > ER_MAX_STREAM_LEN) {
    problem(c, "heads: the head of %.*s is damaged", SHOWN(klen), k);
    return;
  }
  head = er__get_le64((const uint8_t *)v);
  er__stream_key(c->key, k, klen, head);
  e = head ? get(c, CF_STREAMS, c->key, klen + 9, &len, &unreadable) : NULL;
  if (head && !e && !unreadable && !gap_explained(c, k, klen, head, head))
    problem(c, "heads: the head of %.*s says version %llu, which the stream does not have",
            SHOWN(klen), k, (unsigned long long)head);
  rocksdb_free(e);
  er__stream_key(c->key, k, klen, head + 1);
  e = get(c, CF_STREAMS, c->key, klen + 9, &len, &unreadable);
  if (e)
    problem(c, "heads: the head of %.*s says version %llu, but the stream goes on",
            SHOWN(klen), k, (unsigned long long)head);
  rocksdb_free(e);
}

/* An id entry points at the event with that id. */
static void id_entry(checker *c, const char *k, size_t klen, const char *v,
                     size_t vlen) {
  size_t llen = 0;
  uint8_t pkey[8];
  char *rec;
  er_event ev;
  int unreadable;
  tick(c);
  if (klen != 16 || vlen != 8) {
    problem(c, "ids: a damaged entry (%zu-byte key, %zu-byte value)", klen, vlen);
    return;
  }
  er__put_be64(pkey, er__get_le64((const uint8_t *)v));
  rec = get(c, CF_LOG, pkey, 8, &llen, &unreadable);
  if (!unreadable &&
      (!rec || er__record_decode(rec, llen, &ev, NULL) != ER_OK || memcmp(ev.id, k, 16) != 0)) {
    char text[37];
    er_uuid_format((const uint8_t *)k, text);
    problem(c, "ids: event id %s points at position %llu, which holds another event", text,
            (unsigned long long)er__get_le64((const uint8_t *)v));
  }
  rocksdb_free(rec);
}

/* A lifecycle entry: a stream id and a whole value (lifecycle.c decodes
 * the family at open, so a damaged one never gets this far; this checks
 * what the table made of it). */
static void life_entry(checker *c, const char *k, size_t klen, const char *v,
                       size_t vlen) {
  er__life l;
  (void)v;
  if (klen == 0 || klen > ER_MAX_STREAM_LEN || vlen == 0 ||
      !er__life_get(c->s, k, klen, &l))
    problem(c, "lifecycle: the entry of %.*s is damaged", SHOWN(klen), k);
  if (c->s->format < 2)
    problem(c, "lifecycle: stream %.*s has a lifecycle in a format %u store",
            SHOWN(klen), k, c->s->format);
}

int er_check(er_store *s, er_report_fn report, er_progress_fn progress,
             void *ud, uint64_t *problems, er_error *err) {
  checker c;
  (void)err; /* no step can fail: the checker holds its own buffers */
  memset(&c, 0, sizeof c);
  c.s = s;
  c.report = report;
  c.progress = progress;
  c.ud = ud;
  c.total = 3 * er_last_position(s);
  c.ahead = er__now_micros() + ER_CLOCK_AHEAD_LIMIT;
  *problems = 0;
  check_log(&c);
  if (scan_family(&c, CF_STREAMS, stream_entry) && c.have)
    check_head(&c, c.stream, c.stream_len, c.last); /* the last stream's */
  scan_family(&c, CF_HEADS, head_entry);
  scan_family(&c, CF_IDS, id_entry);
  scan_family(&c, CF_LIFECYCLE, life_entry);
  if (progress) progress(ud, c.total > c.done ? c.total : c.done, c.total > c.done ? c.total : c.done);
  *problems = c.problems;
  if (c.plain) sodium_memzero(c.plain, c.plain_cap);
  free(c.plain);
  return ER_OK;
}

/* ---- raw keys ---------------------------------------------------------------- */

static int family_index(const char *name, er_error *err) {
  int i;
  for (i = 0; i < CF_COUNT; i++)
    if (name && strcmp(name, er__cf_names[i]) == 0) return i;
  er__fail(err, ER_INVALID, "no column family '%s'", name ? name : "(null)");
  return -1;
}

static int family(er_store *s, const char *name, er_error *err) {
  if (s->read_only) {
    er__fail(err, ER_INVALID, "%s: the store is open read-only", s->path);
    return -1;
  }
  return family_index(name, err);
}

int er_debug_put(er_store *s, const char *fam, const void *key, size_t key_len,
                 const void *val, size_t val_len, er_error *err) {
  int cf = family(s, fam, err);
  char *rerr = NULL;
  if (cf < 0) return ER_INVALID;
  er__lock(s);
  rocksdb_put_cf(s->db, s->wopts, s->cf[cf], key, key_len, val_len ? val : "", val_len, &rerr);
  er__head_cache_clear(s);
  er__key_cache_clear(s);
  er__unlock(s);
  return rerr ? er__rocks_fail(err, "writing", rerr) : ER_OK;
}

int er_debug_delete(er_store *s, const char *fam, const void *key, size_t key_len,
                    er_error *err) {
  int cf = family(s, fam, err);
  char *rerr = NULL;
  if (cf < 0) return ER_INVALID;
  er__lock(s);
  rocksdb_delete_cf(s->db, s->wopts, s->cf[cf], key, key_len, &rerr);
  er__head_cache_clear(s);
  er__key_cache_clear(s);
  er__unlock(s);
  return rerr ? er__rocks_fail(err, "deleting", rerr) : ER_OK;
}

int er_debug_get(er_store *s, const char *fam, const void *key, size_t key_len,
                 void **val, size_t *val_len, er_error *err) {
  int cf = family_index(fam, err), rc;
  *val = NULL;
  *val_len = 0;
  if (cf < 0) return ER_INVALID;
  rc = er__get(s, cf, key, key_len, val, val_len, "reading", err);
  if (rc == ER_NOT_FOUND) er__fail(err, ER_NOT_FOUND, "no such key");
  return rc;
}
