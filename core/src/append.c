/* append.c -- appending events: validation, the expected-version check,
 * idempotent retries, and the one WriteBatch that stores an append. */
#include "internal.h"
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>


/* ---- checks -------------------------------------------------------------- */

int er__expected_ok(int64_t expected, uint64_t actual) {
  switch (expected) {
  case ER_ANY: return 1;
  case ER_NO_STREAM: return actual == 0;
  case ER_STREAM_EXISTS: return actual > 0;
  default: return expected >= 0 && (uint64_t)expected == actual;
  }
}

int er__wrong_version(er_error *err, const char *stream, size_t len,
                         int64_t expected, uint64_t actual) {
  char want[64];
  if (expected == ER_NO_STREAM) snprintf(want, sizeof want, "no stream");
  else if (expected == ER_STREAM_EXISTS)
    snprintf(want, sizeof want, "an existing stream");
  else snprintf(want, sizeof want, "version %lld", (long long)expected);
  er__fail(err, ER_WRONG_EXPECTED_VERSION,
           "wrong expected version for stream '%.*s': expected %s, "
           "actual version %llu",
           (int)(len > 200 ? 200 : len), stream, want,
           (unsigned long long)actual);
  if (err) {
    err->expected = expected;
    err->actual = actual;
  }
  return ER_WRONG_EXPECTED_VERSION;
}

int er__validate_append(er_store *s, const char *stream, size_t stream_len,
                        int64_t expected, const er_new_event *events, size_t n,
                        er_error *err) {
  size_t i;
  int rc;
  if (s->read_only)
    return er__fail(err, ER_INVALID, "%s: the store is open read-only",
                    s->path);
  if ((rc = er__check_stream(stream, stream_len, err)) != ER_OK) return rc;
  if (n == 0) return er__fail(err, ER_INVALID, "no events to append");
  if (n > UINT32_MAX)
    return er__fail(err, ER_INVALID, "too many events in one append");
  if (expected < ER_STREAM_EXISTS)
    return er__fail(err, ER_INVALID, "invalid expected version %lld",
                    (long long)expected);
  for (i = 0; i < n; i++) {
    const er_new_event *e = &events[i];
    if ((rc = er__check_type(e, i, err)) != ER_OK) return rc;
    if ((e->data_len && !e->data) || (e->metadata_len && !e->metadata))
      return er__fail(err, ER_INVALID, "event %zu: NULL data", i + 1);
    if (e->subject_len || e->subject) {
      if (!s->has_key)
        return er__fail(err, ER_INVALID,
                        "event %zu: a subject needs a store opened with a key",
                        i + 1);
      if ((rc = er__check_subject(e->subject, e->subject_len, err)) != ER_OK)
        return rc;
    }
    if (e->forgotten && (!e->subject_len || e->data_len || e->metadata_len))
      return er__fail(err, ER_INVALID,
                      "event %zu: a forgotten event needs a subject and no data "
                      "or metadata", i + 1);
    if (e->data_len > s->max_event_size ||
        e->metadata_len > s->max_event_size - e->data_len)
      return er__fail(err, ER_INVALID,
                      "event %zu: data and metadata are %zu bytes; the "
                      "limit is %zu",
                      i + 1, e->data_len + e->metadata_len, s->max_event_size);
  }
  return ER_OK;
}

typedef struct id_ref {
  const uint8_t *id;
  size_t append; /* index of its append in the transaction */
} id_ref;

static int cmp_id_ref(const void *a, const void *b) {
  const id_ref *x = a, *y = b;
  int c = memcmp(x->id, y->id, 16);
  if (c) return c;
  return x->append < y->append ? -1 : x->append > y->append;
}

/* ER_DUPLICATE_EVENT when one caller-given id appears twice among the
 * transaction's events; err->append_index names the later append. */
static int check_unique_ids(const er_txn *t, er_error *err) {
  id_ref *ids;
  size_t a, i, k = 0;
  int rc = ER_OK;
  for (a = 0; a < t->n_appends; a++)
    for (i = 0; i < t->appends[a].n; i++) k += t->appends[a].events[i].has_id != 0;
  if (k < 2) return ER_OK;
  ids = malloc(k * sizeof *ids);
  if (!ids) return er__fail(err, ER_NOMEM, "out of memory");
  for (a = 0, k = 0; a < t->n_appends; a++)
    for (i = 0; i < t->appends[a].n; i++)
      if (t->appends[a].events[i].has_id) {
        ids[k].id = t->appends[a].events[i].id;
        ids[k++].append = a;
      }
  qsort(ids, k, sizeof *ids, cmp_id_ref);
  for (i = 1; i < k; i++)
    if (memcmp(ids[i - 1].id, ids[i].id, 16) == 0) {
      char text[37];
      er_uuid_format(ids[i].id, text);
      rc = er__fail(err, ER_DUPLICATE_EVENT,
                    "event id %s appears twice in one %s", text,
                    t->n_appends > 1 ? "transaction" : "append");
      if (err) {
        err->append_index = ids[i].append;
        memcpy(err->id, ids[i].id, 16);
      }
      break;
    }
  free(ids);
  return rc;
}

/* Position of event id `id` into `*pos` (0 when unknown). */
static int id_lookup(er_store *s, const uint8_t id[16], uint64_t *pos,
                     er_error *err) {
  char *rerr = NULL;
  size_t len = 0;
  char *val = rocksdb_get_cf(s->db, s->ropts, s->cf[CF_IDS], (const char *)id,
                             16, &len, &rerr);
  if (rerr) return er__rocks_fail(err, "reading the id index", rerr);
  *pos = 0;
  if (val) {
    if (len == 8) *pos = er__get_le64((const uint8_t *)val);
    rocksdb_free(val);
    if (*pos == 0) return er__fail(err, ER_CORRUPTION, "damaged id index entry");
  }
  return ER_OK;
}

static int duplicate(er_error *err, const uint8_t id[16], uint64_t pos) {
  char text[37];
  int rc;
  er_uuid_format(id, text);
  rc = er__fail(err, ER_DUPLICATE_EVENT, "event id %s already exists (at position %llu)", text,
                (unsigned long long)pos);
  if (err) memcpy(err->id, id, 16);
  return rc;
}

/* With caller-given ids: decide between a normal append (ER_OK, *replay 0),
 * an idempotent retry (ER_OK, *replay 1, *res filled) and an error. */
static int check_retry(er_store *s, const char *stream, size_t stream_len,
                       int64_t expected, uint64_t current,
                       const er_new_event *events, size_t n, er_appended *res,
                       int *replay, er_error *err) {
  size_t i, found = 0;
  uint64_t first = 0, pos = 0;
  int rc;
  char *rerr = NULL, *val;
  size_t vlen;
  uint8_t key[8];
  er_event ev;
  er_record_info info;

  *replay = 0;
  for (i = 0; i < n; i++) {
    if (!events[i].has_id) continue;
    if ((rc = id_lookup(s, events[i].id, &pos, err)) != ER_OK) return rc;
    if (pos && s->format >= 2) {
      /* the id of a removed event is free again */
      int removed = er__position_removed(s, pos, err);
      if (removed < 0) return err ? err->code : ER_IO;
      if (removed) pos = 0;
    }
    if (!pos) continue;
    if (found == 0 && i == 0) first = pos;
    if (found != i || pos != first + i) return duplicate(err, events[i].id, pos);
    found++;
  }
  if (found == 0) return ER_OK;
  if (found != n) return duplicate(err, events[0].id, first); /* a prefix */
  /* All ids exist, consecutive and in order: were they one append to this
   * stream? */
  er__put_be64(key, first);
  val = rocksdb_get_cf(s->db, s->ropts, s->cf[CF_LOG], (const char *)key, 8,
                       &vlen, &rerr);
  if (rerr) return er__rocks_fail(err, "reading the log", rerr);
  if (!val) return er__fail(err, ER_CORRUPTION, "id index points at a missing event");
  rc = er__record_decode(val, vlen, &ev, &info);
  if (rc != ER_OK) {
    rocksdb_free(val);
    rc = er__fail(err, ER_CORRUPTION, "damaged event record at position %llu",
                  (unsigned long long)first);
    if (err) err->position = first;
    return rc;
  }
  if (ev.stream_len != stream_len || memcmp(ev.stream, stream, stream_len) != 0 ||
      info.batch_index != 0 || info.batch_size != n) {
    rocksdb_free(val);
    return duplicate(err, events[0].id, first);
  }
  res->first_version = ev.version;
  rocksdb_free(val);
  if (!er__expected_ok(expected, res->first_version - 1)) {
    /* not a retry of that append: report what a new append would meet */
    if (er__expected_ok(expected, current)) return duplicate(err, events[0].id, first);
    return er__wrong_version(err, stream, stream_len, expected, current);
  }
  res->version = res->first_version + n - 1;
  res->first_position = first;
  res->position = first + n - 1;
  res->replayed = 1;
  *replay = 1;
  return ER_OK;
}

/* ---- committing appends ------------------------------------------------- */

/* The version of `a`'s stream before it: the result of the latest earlier
 * append to the same stream in this transaction, else the stored head. */
static int version_before(er_txn *t, size_t a, uint64_t *current,
                          er_error *err) {
  const er__pending *x = &t->appends[a];
  size_t i = a;
  while (i-- > 0) {
    const er__pending *y = &t->appends[i];
    if (y->stream_len == x->stream_len &&
        memcmp(y->stream, x->stream, x->stream_len) == 0 && !y->result.replayed) {
      *current = y->result.version;
      return ER_OK;
    }
  }
  return er__head_current(t->store, x->stream, x->stream_len, current, err);
}

/* What one commit builds: every record of the commit, kept whole for the
 * commit hook, and the events decoded from them. */
/* A subject key made by this commit: cached once the commit is written. */
typedef struct new_key {
  const char *subject;
  size_t len;
  uint8_t key[ER_DATA_KEY_LEN], id[ER_KEY_ID_LEN];
} new_key;

typedef struct commit_buf {
  uint8_t *records, *skey; /* the records; room for the longest stream key */
  size_t off;              /* bytes of `records` used so far */
  er_event *written;       /* the written events (for the hook) */
  size_t nwritten;
  uint64_t pos;            /* the last position handed out */
  int64_t now;             /* the store's time for this commit */
  int own_time, given_time; /* some append used the store's time / a given one */
  int holes;                /* a restored append left a hole before it */
  new_key *keys;            /* subject keys made by this commit */
  size_t nkeys;
  const char *subject;      /* the subject of the key in `key`, or NULL */
  size_t subject_len;
  uint8_t key[ER_DATA_KEY_LEN], key_id[ER_KEY_ID_LEN];
} commit_buf;

/* Allocate what the commit of `t` needs; check that no caller-given id
 * appears twice among its events. */
static int commit_prepare(er_txn *t, commit_buf *b, er_error *err) {
  size_t a, i, total = 0, skey_len = 0, nevents = 0;
  int any_id = 0, rc;
  memset(b, 0, sizeof *b);
  for (a = 0; a < t->n_appends; a++) {
    const er__pending *x = &t->appends[a];
    if (x->stream_len + 9 > skey_len) skey_len = x->stream_len + 9;
    for (i = 0; i < x->n; i++) {
      total += er__record_size(x->stream_len, &x->events[i]);
      any_id |= x->events[i].has_id != 0;
    }
    nevents += x->n;
  }
  if (any_id && (rc = check_unique_ids(t, err)) != ER_OK) return rc;
  if (!nevents) return ER_OK;
  b->records = malloc(total);
  b->skey = malloc(skey_len);
  b->written = malloc(nevents * sizeof *b->written);
  b->keys = malloc(nevents * sizeof *b->keys);
  if (!b->records || !b->skey || !b->written || !b->keys)
    return er__fail(err, ER_NOMEM, "out of memory");
  return ER_OK;
}

static void commit_buf_free(commit_buf *b) {
  if (b->keys) sodium_memzero(b->keys, b->nkeys * sizeof *b->keys);
  sodium_memzero(b->key, sizeof b->key);
  free(b->keys);
  free(b->records);
  free(b->skey);
  free(b->written);
}

/* The key of `subject` into b->key: made by this commit already, stored,
 * or made now (queued into `wb` with the subject's index entry). */
static int commit_key(er_store *s, commit_buf *b, rocksdb_writebatch_t *wb,
                      const char *subject, size_t len, er_error *err) {
  size_t i;
  int rc;
  if (b->subject && b->subject_len == len && memcmp(b->subject, subject, len) == 0)
    return ER_OK;
  for (i = 0; i < b->nkeys; i++)
    if (b->keys[i].len == len && memcmp(b->keys[i].subject, subject, len) == 0) {
      memcpy(b->key, b->keys[i].key, ER_DATA_KEY_LEN);
      memcpy(b->key_id, b->keys[i].id, ER_KEY_ID_LEN);
      goto found;
    }
  rc = er__key_get(s, subject, len, b->key, b->key_id, err);
  if (rc == ER_NOT_FOUND) { /* a new subject, or one forgotten: a new key */
    new_key *k = &b->keys[b->nkeys++];
    er__key_new(s, subject, len, b->key, b->key_id, wb);
    k->subject = subject;
    k->len = len;
    memcpy(k->key, b->key, ER_DATA_KEY_LEN);
    memcpy(k->id, b->key_id, ER_KEY_ID_LEN);
  } else if (rc != ER_OK) {
    return rc;
  }
found:
  b->subject = subject;
  b->subject_len = len;
  return ER_OK;
}

/* Check append `a` of `t` against its stream's version (an idempotent
 * retry fills its result and writes nothing) and queue its records, index
 * entries, ids and head.  write_lock held. */
static int commit_append(er_txn *t, size_t a, commit_buf *b, er_error *err) {
  er_store *s = t->store;
  er__pending *x = &t->appends[a];
  uint64_t current = 0;
  int replay = 0, rc;
  size_t i;
  int64_t at;
  uint8_t head[ER_HEAD_LEN], pos_key[8], pos_val[8];
  assert(er__locked(s) && t->state == TXN_COMMITTING);
  memset(&x->result, 0, sizeof x->result);
  rc = version_before(t, a, &current, err);
  if (rc == ER_OK) rc = er__life_check_append(s, x->stream, x->stream_len, err);
  if (rc == ER_OK) {
    for (i = 0; i < x->n && !x->events[i].has_id; i++) {}
    if (i < x->n)
      rc = check_retry(s, x->stream, x->stream_len, x->expected, current,
                       x->events, x->n, &x->result, &replay, err);
  }
  if (rc == ER_OK && !replay && x->restore && current == 0 && x->expected > 0) {
    /* a restored stream whose first versions were removed at the source */
    er__life_restore_queue(s, x->stream, x->stream_len, (uint64_t)x->expected + 1, t->wb);
    x->restored_before = (uint64_t)x->expected + 1;
    current = (uint64_t)x->expected;
  }
  if (rc == ER_OK && !replay && !er__expected_ok(x->expected, current))
    rc = er__wrong_version(err, x->stream, x->stream_len, x->expected, current);
  if (rc != ER_OK) {
    if (err) err->append_index = a;
    return rc;
  }
  if (replay) return ER_OK;
  er__life_restart_queue(s, x->stream, x->stream_len, t->wb);
  if (x->restore && x->restore_position > b->pos + 1) {
    /* the positions between were removed at the source: a hole */
    uint8_t hkey[8], hole[ER_HOLE_LEN], fmt[4];
    er__put_be64(hkey, b->pos + 1);
    er__hole_encode(hole, b->pos + 1, x->restore_position - 1, x->time ? x->time : b->now);
    rocksdb_writebatch_put_cf(t->wb, s->cf[CF_LOG], (const char *)hkey, 8,
                              (const char *)hole, sizeof hole);
    er__put_le32(fmt, s->format > 2 ? s->format : 2);
    rocksdb_writebatch_put_cf(t->wb, s->cf[CF_DEFAULT], "format", 6,
                              (const char *)fmt, 4);
    b->pos = x->restore_position - 1;
    b->holes = 1;
  }
  /* a given time (an import, a mirror) is stored as it is and never moves
   * the store's own clock */
  at = x->time ? x->time : b->now;
  if (x->time) b->given_time = 1;
  else b->own_time = 1;
  for (i = 0; i < x->n; i++) {
    er_new_event *e = &x->events[i];
    uint64_t p = b->pos + 1 + i, ver = current + 1 + i;
    size_t sz = er__record_size(x->stream_len, e);
    uint8_t *rec = b->records + b->off;
    if (!e->has_id) {
      er__new_id(s, e->id, b->now);
      e->has_id = 1;
    }
    if (e->subject_len) {
      uint8_t nonce[ER_NONCE_LEN];
      int same = i > 0 && x->events[i - 1].subject_len == e->subject_len &&
                 memcmp(x->events[i - 1].subject, e->subject, e->subject_len) == 0;
      if (e->forgotten) {
        er__record_encode_sealed(rec, x->stream, x->stream_len, e, p, ver, at,
                                 (uint32_t)x->n, (uint32_t)i, NULL, NULL, NULL);
      } else {
        if ((rc = commit_key(s, b, t->wb, e->subject, e->subject_len, err)) != ER_OK) {
          if (err) err->append_index = a;
          return rc;
        }
        er__seal_nonce(s, nonce);
        er__record_encode_sealed(rec, x->stream, x->stream_len, e, p, ver, at,
                                 (uint32_t)x->n, (uint32_t)i, b->key, b->key_id, nonce);
      }
      if (!same) { /* the subject's streams: their snapshots go with forget */
        uint8_t *sk = malloc(e->subject_len + 1 + x->stream_len);
        if (!sk) return er__fail(err, ER_NOMEM, "out of memory");
        memcpy(sk, e->subject, e->subject_len);
        sk[e->subject_len] = 0;
        memcpy(sk + e->subject_len + 1, x->stream, x->stream_len);
        rocksdb_writebatch_put_cf(t->wb, s->cf[CF_SUBJECTS], (const char *)sk,
                                  e->subject_len + 1 + x->stream_len, "", 0);
        free(sk);
      }
    } else {
      er__record_encode(rec, x->stream, x->stream_len, e, p, ver, at,
                        (uint32_t)x->n, (uint32_t)i);
    }
    if (s->hook) {
      er_event *w = &b->written[b->nwritten];
      er__record_decode(rec, sz, w, NULL);
      w->forgotten = e->forgotten != 0; /* an imported forgotten event */
      if (e->subject_len && !e->forgotten) { /* the hook sees the plaintext */
        w->metadata = e->metadata;
        w->metadata_len = e->metadata_len;
        w->data = e->data;
        w->data_len = e->data_len;
      }
    }
    b->nwritten++;
    b->off += sz;
    er__put_be64(pos_key, p);
    er__put_le64(pos_val, p);
    er__stream_key(b->skey, x->stream, x->stream_len, ver);
    rocksdb_writebatch_put_cf(t->wb, s->cf[CF_LOG], (const char *)pos_key, 8,
                              (const char *)rec, sz);
    rocksdb_writebatch_put_cf(t->wb, s->cf[CF_STREAMS], (const char *)b->skey,
                              x->stream_len + 9, (const char *)rec, sz);
    rocksdb_writebatch_put_cf(t->wb, s->cf[CF_IDS], (const char *)e->id, 16,
                              (const char *)pos_val, 8);
  }
  er__put_le64(head, current + x->n);
  head[8] = ER_HEAD_FLAGS;
  rocksdb_writebatch_put_cf(t->wb, s->cf[CF_HEADS], x->stream, x->stream_len,
                            (const char *)head, sizeof head);
  x->result.first_version = current + 1;
  x->result.version = current + x->n;
  x->result.first_position = b->pos + 1;
  x->result.position = b->pos + x->n;
  b->pos += x->n;
  return ER_OK;
}

/* After appends with given times, the log may end with a time the store
 * did not hand out: queue the store's own clock, and the position it goes
 * with, for the next open (see load_counters). */
static void commit_clock(er_txn *t, const commit_buf *b) {
  uint8_t clock[16];
  assert(er__locked(t->store) && t->state == TXN_COMMITTING);
  er__put_le64(clock, (uint64_t)(b->own_time ? b->now : t->store->last_time));
  er__put_le64(clock + 8, b->pos);
  rocksdb_writebatch_put_cf(t->wb, t->store->cf[CF_DEFAULT], er__clock_key,
                            sizeof er__clock_key - 1, (const char *)clock,
                            sizeof clock);
}

/* The commit hook sees the written events and may queue key-value writes
 * (inline projections); its error refuses the commit. */
static int commit_hook(er_txn *t, const commit_buf *b, er_error *err) {
  er_store *s = t->store;
  er_error local, *herr = err ? err : &local; /* hooks always get one */
  int rc;
  assert(er__locked(s) && t->state == TXN_COMMITTING);
  t->in_hook = 1;
  herr->message[0] = 0;
  rc = s->hook(s->hook_ud, t, b->written, b->nwritten, herr);
  t->in_hook = 0;
  if (rc != ER_OK && herr->message[0] == 0)
    er__fail(herr, rc, "the commit hook refused the commit");
  return rc;
}

/* Write the batch; a failure to start a new WAL file is remembered (see
 * store_free). */
static int commit_write(er_txn *t, er_error *err) {
  er_store *s = t->store;
  char *rerr = NULL;
  assert(er__locked(s) && t->state == TXN_COMMITTING);
  if (rocksdb_writebatch_count(t->wb) == 0) return ER_OK;
  rocksdb_write(s->db, s->wopts, t->wb, &rerr);
  if (!rerr) return ER_OK;
  if (strstr(rerr, "While open a file for appending") && strstr(rerr, ".log"))
    s->wal_failed = 1;
  return er__rocks_fail(err, "writing an append", rerr);
}

/* The commit is written: publish the new position, clock and heads. */
static void commit_publish(er_txn *t, const commit_buf *b) {
  er_store *s = t->store;
  size_t a;
  assert(er__locked(s) && t->state == TXN_COMMITTING);
  t->state = TXN_COMMITTED;
  if (b->nwritten) {
    __atomic_store_n(&s->last_position, b->pos, __ATOMIC_SEQ_CST);
    er__notify_commit(s); /* wait.c: subscribers */
  }
  if (b->holes && s->format < 2) s->format = 2;
  for (a = 0; a < b->nkeys; a++)
    er__key_committed(s, b->keys[a].subject, b->keys[a].len, b->keys[a].key,
                      b->keys[a].id);
  if (b->own_time) s->last_time = b->now;
  for (a = 0; a < t->n_appends; a++) {
    const er__pending *x = &t->appends[a];
    if (!x->result.replayed) {
      er__head_cached(s, x->stream, x->stream_len, x->result.version);
      er__life_committed(s, x->stream, x->stream_len, x->result.version);
      if (x->restored_before)
        er__life_restored(s, x->stream, x->stream_len, x->restored_before, x->result.version);
    }
  }
}

/* Check and write every append of `t` (plus its queued key-value writes) in
 * one WriteBatch.  See er_txn_commit. */
int er__commit(er_txn *t, er_error *err) {
  er_store *s = t->store;
  commit_buf b;
  size_t a;
  int rc;

  if (t->state != TXN_OPEN)
    return er__fail(err, ER_INVALID, "the transaction was already committed");
  t->state = TXN_COMMITTING;
  if ((rc = commit_prepare(t, &b, err)) != ER_OK) {
    t->state = TXN_FAILED;
    commit_buf_free(&b);
    return rc;
  }
  er__lock(s);
  b.pos = s->last_position;
  b.now = er__now_micros();
  if (b.now < s->last_time) b.now = s->last_time; /* the store's time never goes back */
  for (a = 0; a < t->n_appends && rc == ER_OK; a++) rc = commit_append(t, a, &b, err);
  if (rc == ER_OK && b.given_time) commit_clock(t, &b);
  if (rc == ER_OK && b.nwritten && s->hook) rc = commit_hook(t, &b, err);
  if (rc == ER_OK) rc = commit_write(t, err);
  if (rc == ER_OK) commit_publish(t, &b);
  else t->state = TXN_FAILED;
  er__unlock(s);
  commit_buf_free(&b);
  return rc;
}

int er_append(er_store *s, const char *stream, size_t stream_len,
              int64_t expected, er_new_event *events, size_t n,
              er_appended *res, er_error *err) {
  er_txn t;
  int rc = er__validate_append(s, stream, stream_len, expected, events, n, err);
  if (res) memset(res, 0, sizeof *res);
  if (rc != ER_OK) return rc;
  memset(&t, 0, sizeof t);
  t.store = s;
  t.one.stream = stream;
  t.one.stream_len = stream_len;
  t.one.expected = expected;
  t.one.events = events; /* borrowed: generated ids land in the caller's */
  t.one.n = n;
  t.appends = &t.one;
  t.n_appends = 1;
  t.wb = rocksdb_writebatch_create();
  rc = er__commit(&t, err);
  if (rc == ER_OK && res) *res = t.one.result;
  rocksdb_writebatch_destroy(t.wb);
  return rc;
}
