/*
 * internal.h -- shared by the core's source files; not installed.
 *
 * The files, one concern each:
 *   store.c   opening and closing a store, its format marker and counters
 *   names.c   the rules of stream ids and event types, the category rule
 *   record.c  the event record codec
 *   uuid.c    UUID v7 event ids, the clock, the random pool
 *   heads.c   stream heads and their cache
 *   append.c  appends: validation, expected versions, retries, the commit
 *   txn.c     transactions and the key-value writes they queue
 *   iter.c    the iterators' life: bounds, registry, steps, release
 *   read.c    reading events: a stream, the global log, one position, the
 *             list of streams
 *   kv.c      reading the key-value spaces; the one copy of a stored value
 *   crypt.c   personal data: master key, subject keys, sealing, forget
 *   lifecycle.c  deleting and truncating streams, retention limits, the
 *             table of streams under such rules, compaction
 *   check.c   verifying a store; raw keys for tests and repairs
 *   errors.c  result codes, er_error, memory handed out
 *
 * Storage layout (doc/storage.md is the full reference; numbers in keys are
 * big-endian so that byte order is numeric order):
 *
 *   column family  key                          value
 *   default        "format"                     u32 LE format number
 *                  "clock"                      i64 LE the store's own clock,
 *                                               u64 LE the last position of
 *                                               the latest commit that had
 *                                               given times (imports)
 *   log            position u64                 event record (record.c)
 *   streams        stream id, 0x00, version u64 the same event record
 *   heads          stream id                    u64 LE version, u8 flags
 *   ids            event id (16 bytes)          u64 LE position
 *   snapshots      stream id                    snapshot (opaque to the core)
 *   checkpoints    a name (projection, relay)   checkpoint (opaque)
 *   views          name, 0x00, key              read-model value (opaque)
 *   lifecycle      stream id                    deletion, truncation and
 *                                               retention of the stream
 *                                               (lifecycle.c)
 *   keys       subject                      wrapped subject key (crypt.c)
 *   subjects   subject, 0x00, stream id     "" (streams with its events)
 *   default    "keycheck"                   box proving the master key
 *
 * The record is stored twice, under its position and under its stream, so
 * that both hot paths -- loading an aggregate (one stream) and catching up a
 * projection (the global log) -- are sequential scans.
 */
#ifndef ER_INTERNAL_H
#define ER_INTERNAL_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* strdup, clock_gettime, getrandom */
#endif

#include <assert.h>
#include <pthread.h>
#include <rocksdb/c.h>
#include <stdarg.h>
#include <stdint.h>
#include <string.h>

#include "eventrocks.h"

enum {
  CF_DEFAULT, CF_LOG, CF_STREAMS, CF_HEADS, CF_IDS,
  CF_SNAPSHOTS, CF_CHECKPOINTS, CF_VIEWS, /* the er_space families, in order */
  CF_LIFECYCLE,
  CF_KEYS, CF_SUBJECTS, /* crypt.c: wrapped subject keys; subject -> streams */
  CF_COUNT
};
#define CF_OF_SPACE(space) (CF_SNAPSHOTS + (int)(space))

/* A head: u64 LE version, then a flags byte that is reserved (always 0
 * today; it is to carry the deletion state of a stream). */
#define ER_HEAD_LEN 9
#define ER_HEAD_FLAGS 0

#define ER_HEAD_CACHE_SLOTS 4096 /* set associative cache of stream versions */
#define ER_HEAD_CACHE_WAYS 4
#define ER_RANDOM_POOL 4096      /* bytes of randomness fetched at a time */
#define ER_CLOCK_AHEAD_LIMIT INT64_C(86400000000) /* a day: times past now + this are suspect */

/* The lifecycle of a stream (lifecycle.c): which of its events are removed.
 * An event is removed -- invisible to every read, and turned into a hole by
 * er_compact -- when its stream is hard-deleted, its version is below
 * `before`, its time is below `expired_before`, it is not among the newest
 * `max_count` of the stream, or it is older than `max_age` seconds.  Every
 * rule only ever removes more, so a removed event never comes back. */
#define ER_LIFE_SOFT 0x01 /* soft-deleted: hidden from the list of streams */
#define ER_LIFE_HARD 0x02 /* hard-deleted: a tombstone */

typedef struct er__life {
  uint8_t flags;
  uint64_t before;        /* versions below this are removed (0: none) */
  uint64_t hidden_before; /* a soft delete: versions below this are hidden
                             from reads of the stream, not removed */
  int64_t expired_before; /* times below this are removed (0: none) */
  uint64_t max_count;     /* 0: no limit */
  uint64_t max_age;       /* seconds; 0: no limit */
  uint64_t head;          /* the stream's version (kept in memory only) */
} er__life;

typedef struct er__life_entry er__life_entry;
typedef struct er__key_entry er__key_entry;

#define ER_DATA_KEY_LEN 32 /* a subject's key */
#define ER_NONCE_LEN 24    /* XChaCha20-Poly1305 */
#define ER_TAG_LEN 16
#define ER_KEY_ID_LEN 8
#define ER_BOX_OVERHEAD (ER_KEY_ID_LEN + ER_NONCE_LEN + ER_TAG_LEN)
#define ER_SEAL_AD_MAX (28 + ER_MAX_STREAM_LEN + ER_MAX_SUBJECT_LEN)

typedef struct er_head_slot {
  char *stream; /* malloc'd, NULL when empty */
  size_t len;
  uint64_t version;
} er_head_slot;

struct er_store {
  char *path;
  int read_only, sync;
  int wal_failed; /* a write could not start a new WAL file: see store_free */
  size_t max_event_size;

  rocksdb_t *db;
  rocksdb_options_t *options;      /* the point-lookup families */
  rocksdb_options_t *scan_options; /* log and streams: read by iterators */
  rocksdb_options_t *head_options; /* heads: updated in place */
  rocksdb_block_based_table_options_t *table_options, *scan_table_options;
  rocksdb_cache_t *cache;
  rocksdb_column_family_handle_t *cf[CF_COUNT];
  rocksdb_column_family_handle_t **extra_cf; /* families of newer versions */
  size_t n_extra_cf;
  rocksdb_readoptions_t *ropts;
  rocksdb_writeoptions_t *wopts;

  /* Guarded by write_lock (er__lock, er__unlock): the check-and-write of
   * appends.  `writer`, `write_locked`: who holds it, for assert(). */
  pthread_mutex_t write_lock;
  pthread_t writer;
  int write_locked;
  uint64_t last_position;
  int64_t last_time;
  er_head_slot *heads; /* ER_HEAD_CACHE_SLOTS entries */
  uint8_t random[ER_RANDOM_POOL];
  size_t random_used;
  /* The last generated id's time (ms * 4096 + quarter-microseconds) and
   * sequence number: the ids a store generates increase strictly. */
  uint64_t id_clock;
  uint32_t id_seq;

  /* The streams that have a lifecycle (a table loaded at open, changed
   * under write_lock and life_lock; read under life_lock by readers).
   * n_life is read without the lock: 0 skips every lookup. */
  pthread_rwlock_t life_lock;
  er__life_entry *life;
  size_t n_life;
  uint32_t format;    /* the store's format marker */
  int64_t life_now;   /* the latest "now" of max_age: it never goes back */

  /* crypt.c: the master key (has_key), whether the store's key check is
   * written, the record nonces' prefix and counter (write_lock); the cache
   * of subject keys, guarded by key_lock */
  int has_key, key_checked, key_lock_ready;
  uint8_t master[ER_KEY_LEN];
  uint8_t nonce_prefix[16];
  uint64_t nonce_count;
  pthread_mutex_t key_lock;
  er__key_entry *keys;
  size_t n_keys, n_keys_cap;

  er_commit_hook hook; /* set before use; called under write_lock */
  void *hook_ud;

  /* Guarded by wait_lock (wait.c): er_wait_position's sleepers, woken by
   * er__notify_commit after each commit that wrote events. */
  pthread_mutex_t wait_lock;
  pthread_cond_t committed;
  int sleepers; /* atomic: commits skip the lock when nobody waits */
  /* A read-only handle's inotify instance with its watch on the store's
   * directory, kept between waits (closing one costs the kernel an RCU
   * grace period, 10-20 ms); -1 when none is kept.  Atomic: a waiter takes
   * it, and puts it back when the slot is still empty. */
  int watch_fd;

  /* Guarded by iter_lock: live iterators, destroyed by er_close. */
  pthread_mutex_t iter_lock;
  er_iter *iters;
};

typedef enum { ITER_STREAM, ITER_ALL, ITER_STREAMS, ITER_KV } iter_kind;

struct er_iter {
  er_store *store; /* NULL once the store is closed */
  er_iter *prev, *next;
  iter_kind kind;
  rocksdb_iterator_t *it;
  rocksdb_readoptions_t *ropts;
  char *lower, *upper; /* bound copies owned by the iterator */
  size_t lower_len, upper_len;
  int started, backward, done; /* done: at the end, never move again */
  uint64_t remaining;
  /* ITER_STREAM: the stream; ITER_STREAMS: the prefix */
  char *name;
  size_t name_len;
  /* ITER_STREAM: the lifecycle of the stream when the iterator was made */
  uint64_t min_version; /* versions below are removed */
  int64_t min_time;     /* times below are removed */
  uint8_t *plain; /* decrypted data and metadata of the current event */
  size_t plain_cap;
  /* ITER_ALL filter copies */
  char *category;
  size_t category_len;
  int has_category;
  char **types;
  size_t *type_lens;
  size_t ntypes;
};

/* The write lock, and whether the calling thread holds it (for assert()
 * in the functions that need it held). */
static inline void er__lock(er_store *s) {
  pthread_mutex_lock(&s->write_lock);
  s->writer = pthread_self();
  s->write_locked = 1;
}
static inline void er__unlock(er_store *s) {
  s->write_locked = 0;
  pthread_mutex_unlock(&s->write_lock);
}
static inline int er__locked(const er_store *s) {
  return s->write_locked && pthread_equal(s->writer, pthread_self());
}

/* wait.c: set up and tear down the sleepers' lock and condition (er_open,
 * store_free); wake them after a commit (called with the new position
 * published). */
void er__wait_init(er_store *s);
void er__wait_destroy(er_store *s);
void er__notify_commit(er_store *s);

/* errors.c */
int er__fail(er_error *err, int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
int er__rocks_fail(er_error *err, const char *what, char *rocks_msg);
/* A copy of `len` bytes in memory the caller releases with er_free (one
 * byte when `len` is 0, so that NULL only means out of memory). */
void *er__memdup(const void *p, size_t len);

/* names.c: ER_INVALID, with the message the caller sees, when `stream` is
 * not a valid stream id, or event `index` (0-based) of an append has an
 * invalid type. */
int er__check_stream(const char *stream, size_t len, er_error *err);
int er__check_type(const er_new_event *e, size_t index, er_error *err);
int er__check_subject(const char *subject, size_t len, er_error *err);

/* uuid.c */
int er__random(uint8_t *buf, size_t len);
int64_t er__now_micros(void);
/* A new id for an event the store appends at `now` (write_lock held). */
void er__new_id(er_store *s, uint8_t out[16], int64_t now);

/* record.c */
#define ER_RECORD_HEADER 72

typedef struct er_record_info {
  uint32_t batch_size;  /* events in the append that wrote this record */
  uint32_t batch_index; /* index of this record inside that append */
  int sealed;           /* the payload is a box (crypt.c) */
  const uint8_t *box;   /* nonce, ciphertext, tag */
  size_t box_len;
} er_record_info;

#define ER_RECORD_SEALED 0x02 /* flags: data and metadata are encrypted */

/* A record's size; with a subject, the sealed form's. */
size_t er__record_size(size_t stream_len, const er_new_event *ev);
/* The sealed record of an event with a subject, under `key` (id `key_id`)
 * and `nonce`; a forgotten one (ev->forgotten: no payload) with key NULL. */
void er__record_encode_sealed(uint8_t *out, const char *stream,
                              size_t stream_len, const er_new_event *ev,
                              uint64_t position, uint64_t version, int64_t time,
                              uint32_t batch_size, uint32_t batch_index,
                              const uint8_t *key, const uint8_t *key_id,
                              const uint8_t *nonce);
void er__record_encode(uint8_t *out, const char *stream, size_t stream_len,
                       const er_new_event *ev, uint64_t position,
                       uint64_t version, int64_t time, uint32_t batch_size,
                       uint32_t batch_index);
int er__record_decode(const void *buf, size_t len, er_event *ev,
                      er_record_info *info);

/* crypt.c: the master key checked against the store's key check (at
 * open) and wiped (at close); a subject's key (ER_NOT_FOUND: forgotten or
 * never made); a new one queued into `wb` with the key check and format 3
 * (write_lock held), cached after the commit; the cache emptied (a
 * read-only handle's refresh); a record nonce (write_lock held); a box
 * sealed in place; a sealed event's data and metadata decrypted into
 * `*buf` (grown as needed), or the event marked forgotten. */
int er__crypt_open(er_store *s, const uint8_t *key, er_error *err);
void er__crypt_close(er_store *s);
int er__key_get(er_store *s, const char *subject, size_t len,
                uint8_t out[ER_DATA_KEY_LEN], uint8_t id[ER_KEY_ID_LEN],
                er_error *err);
int er__key_new(er_store *s, const char *subject, size_t len,
                uint8_t out[ER_DATA_KEY_LEN], uint8_t id[ER_KEY_ID_LEN],
                rocksdb_writebatch_t *wb);
void er__key_committed(er_store *s, const char *subject, size_t len,
                       const uint8_t key[ER_DATA_KEY_LEN],
                       const uint8_t id[ER_KEY_ID_LEN]);
void er__key_cache_clear(er_store *s);
void er__seal_nonce(er_store *s, uint8_t nonce[ER_NONCE_LEN]);
void er__seal_box(uint8_t *box, size_t plain_len, const uint8_t *key,
                  const uint8_t id[16], uint64_t version, const char *stream,
                  size_t stream_len, const char *subject, size_t subject_len);
int er__unseal_event(er_store *s, er_event *ev, const er_record_info *info,
                     uint8_t **buf, size_t *cap, er_error *err);

/* Holes: what stays in the log where events were removed. */
#define ER_HOLE_LEN 32
void er__hole_encode(uint8_t out[ER_HOLE_LEN], uint64_t first, uint64_t last,
                     int64_t time);
int er__hole_decode(const void *buf, size_t len, uint64_t *first,
                    uint64_t *last, int64_t *time);
int er__is_hole(const void *buf, size_t len); /* a cheap test; decode to check */

/* keys; the byte-by-byte forms are written out so that the compiler turns
 * each into one load or store (loops were kept as loops: 5 instructions a
 * byte, ~220 per record decoded) */
static inline void er__put_be64(uint8_t *p, uint64_t v) {
  p[0] = (uint8_t)(v >> 56); p[1] = (uint8_t)(v >> 48);
  p[2] = (uint8_t)(v >> 40); p[3] = (uint8_t)(v >> 32);
  p[4] = (uint8_t)(v >> 24); p[5] = (uint8_t)(v >> 16);
  p[6] = (uint8_t)(v >> 8);  p[7] = (uint8_t)v;
}
static inline uint64_t er__get_be64(const uint8_t *p) {
  return (uint64_t)p[0] << 56 | (uint64_t)p[1] << 48 | (uint64_t)p[2] << 40 |
         (uint64_t)p[3] << 32 | (uint64_t)p[4] << 24 | (uint64_t)p[5] << 16 |
         (uint64_t)p[6] << 8 | (uint64_t)p[7];
}
static inline void er__put_le64(uint8_t *p, uint64_t v) {
  p[0] = (uint8_t)v;         p[1] = (uint8_t)(v >> 8);
  p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24);
  p[4] = (uint8_t)(v >> 32); p[5] = (uint8_t)(v >> 40);
  p[6] = (uint8_t)(v >> 48); p[7] = (uint8_t)(v >> 56);
}
static inline uint64_t er__get_le64(const uint8_t *p) {
  return (uint64_t)p[0] | (uint64_t)p[1] << 8 | (uint64_t)p[2] << 16 |
         (uint64_t)p[3] << 24 | (uint64_t)p[4] << 32 | (uint64_t)p[5] << 40 |
         (uint64_t)p[6] << 48 | (uint64_t)p[7] << 56;
}
static inline void er__put_le32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)v;         p[1] = (uint8_t)(v >> 8);
  p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24);
}
static inline uint32_t er__get_le32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
         (uint32_t)p[3] << 24;
}

/* Stream index key: stream, 0x00, version (big-endian).  `out` must hold
 * stream_len + 9 bytes.  Returns the key length. */
static inline size_t er__stream_key(uint8_t *out, const char *stream,
                                    size_t stream_len, uint64_t version) {
  memcpy(out, stream, stream_len);
  out[stream_len] = 0;
  er__put_be64(out + stream_len + 1, version);
  return stream_len + 9;
}

/* The first key past every key that starts with `prefix` (`len` >= 1
 * bytes): the prefix up to its last byte that is not 0xff, that byte
 * incremented.  Written into `out` (room for `len` bytes); returns its
 * length, or 0 when the prefix is all 0xff bytes (no key bounds them). */
static inline size_t er__prefix_end(const void *prefix, size_t len,
                                    uint8_t *out) {
  while (len > 0 && ((const uint8_t *)prefix)[len - 1] == 0xff) len--;
  if (len == 0) return 0;
  memcpy(out, prefix, len);
  out[len - 1]++;
  return len;
}

/* append.c: the pieces of an append, used by txn.c */
typedef struct er__pending {
  const char *stream;
  size_t stream_len;
  int64_t expected;
  er_new_event *events;
  size_t n;
  void *owned; /* the block holding copies of stream and events, or NULL */
  int64_t time; /* the events' time, 0 = now */
  int restore;  /* er_txn_restore: may start the stream late, keep positions */
  uint64_t restore_position;
  uint64_t restored_before; /* set by the commit: versions below were removed */
  er_appended result;
} er__pending;

/* A transaction is open until its commit starts; the commit ends it
 * committed or failed, either way for good. */
typedef enum er__txn_state {
  TXN_OPEN, TXN_COMMITTING, TXN_COMMITTED, TXN_FAILED
} er__txn_state;

struct er_txn {
  er_store *store;
  rocksdb_writebatch_t *wb; /* key-value writes queued so far */
  er__pending *appends;
  size_t n_appends, cap;
  er__pending one; /* storage for er_append's single borrowed append */
  er__txn_state state;
  int in_hook; /* the commit hook runs: it may queue key-value writes */
};

int er__expected_ok(int64_t expected, uint64_t actual);
int er__wrong_version(er_error *err, const char *stream, size_t len,
                      int64_t expected, uint64_t actual);
int er__validate_append(er_store *s, const char *stream, size_t stream_len,
                        int64_t expected, const er_new_event *events, size_t n,
                        er_error *err);
int er__commit(er_txn *t, er_error *err);

/* store.c */
extern const char *const er__cf_names[CF_COUNT];
extern const char er__clock_key[6];

/* heads.c: the stored version of a stream (0 when absent), straight from
 * RocksDB; the same through the cache, for appends (write_lock held); a
 * committed version into the cache (write_lock held); the cache emptied
 * (write_lock held, or the store closing). */
int er__head_get(er_store *s, const char *stream, size_t len,
                 uint64_t *version, er_error *err);
int er__head_current(er_store *s, const char *stream, size_t len,
                     uint64_t *version, er_error *err);
void er__head_cached(er_store *s, const char *stream, size_t len,
                     uint64_t version);
void er__head_cache_clear(er_store *s);

/* iter.c: a new iterator of `kind` over family `cf`, between optional
 * bounds (copied), registered with the store; an iterator over the keys of
 * `cf` that start with `prefix` (may be empty), positioned on the first;
 * the iterators of a closing store detached from it (their RocksDB parts
 * destroyed).  Each step moves an iterator (the first one only marks it
 * started): ER_OK on an entry, ER_NOT_FOUND at the end (for good), ER_INVALID
 * when its store was closed, ER_IO/ER_CORRUPTION from RocksDB; a prefix
 * iterator's step also gives the key. */
int er__iter_new(er_store *s, iter_kind kind, int cf, const void *lower,
                 size_t lower_len, const void *upper, size_t upper_len,
                 er_iter **out, er_error *err);
int er__prefix_iter(er_store *s, iter_kind kind, int cf, const void *prefix,
                    size_t prefix_len, er_iter **out, er_error *err);
void er__iter_detach_all(er_store *s);
int er__iter_step(er_iter *it, er_error *err);
int er__prefix_step(er_iter *it, const char **key, size_t *key_len,
                    er_error *err);

/* lifecycle.c: the table loaded (at open; a read-only handle's refresh)
 * and freed; the lifecycle of a stream copied into `*out` (1) or 0 when it
 * has none; whether an event is removed under `l` at time `now` (from
 * er__life_now); before an append is queued into `wb`: ER_STREAM_DELETED
 * for a hard-deleted stream, and a soft delete's flag cleared (write_lock
 * held); after the commit, the stream's new version (and a soft delete
 * cleared) in the table. */
int er__life_load(er_store *s, er_error *err);
void er__life_free(er_store *s);
int er__life_get(er_store *s, const char *stream, size_t len, er__life *out);
int64_t er__life_now(er_store *s);
static inline int er__life_removes_at(const er__life *l, uint64_t version,
                                      int64_t time, int64_t now) {
  if (l->flags & ER_LIFE_HARD) return 1;
  if (version < l->before || time < l->expired_before) return 1;
  if (l->max_count && version + l->max_count <= l->head) return 1;
  if (l->max_age && time < now - (int64_t)(l->max_age * 1000000)) return 1;
  return 0;
}
/* The same, reading the clock only for a max_age (once per event read). */
static inline int er__life_removes(er_store *s, const er__life *l,
                                   uint64_t version, int64_t time) {
  return er__life_removes_at(l, version, time, l->max_age ? er__life_now(s) : 0);
}
/* An append to `stream` (write_lock held): ER_STREAM_DELETED after a hard
 * delete, else ER_OK; it writes nothing. */
int er__life_check_append(er_store *s, const char *stream, size_t len,
                          er_error *err);
/* An append that writes events to a soft-deleted `stream` restarts it: its
 * lifecycle value without the soft flag queued into `wb` (write_lock held);
 * nothing when the stream is not soft-deleted.  Only once the append is
 * known to write: an idempotent retry or a failed expectation restarts
 * nothing. */
void er__life_restart_queue(er_store *s, const char *stream, size_t len,
                            rocksdb_writebatch_t *wb);
void er__life_committed(er_store *s, const char *stream, size_t len,
                        uint64_t version);
/* A restored append (er_txn_restore) that starts `stream` at version
 * `before`: its lifecycle value queued into `wb` (write_lock held), then,
 * after the commit, into the table. */
void er__life_restore_queue(er_store *s, const char *stream, size_t len,
                            uint64_t before, rocksdb_writebatch_t *wb);
void er__life_restored(er_store *s, const char *stream, size_t len,
                       uint64_t before, uint64_t version);
/* Whether the event at `position` is removed (a hole, a removed record or
 * no record at all): 1 or 0; -1 with `err` set when the log cannot be read. */
int er__position_removed(er_store *s, uint64_t position, er_error *err);

/* kv.c: ER_INVALID unless `space` is an er_space; the value of `key` in
 * family `cf`, copied (er__memdup): ER_OK, ER_NOT_FOUND (err untouched),
 * ER_IO/ER_CORRUPTION ("`what`: <RocksDB's message>") or ER_NOMEM. */
int er__check_space(er_space space, er_error *err);
int er__get(er_store *s, int cf, const void *key, size_t key_len, void **val,
            size_t *val_len, const char *what, er_error *err);

#endif
