/*
 * eventrocks.h -- an embedded event store over RocksDB.
 *
 * This header is the manual of the C core.  The core knows bytes, not values:
 * an event's `data` and `metadata` are opaque byte strings to it (the Lua
 * binding stores MessagePack there).  Nothing here depends on Lua.
 *
 * Conventions
 *  - Every function that can fail returns an int: ER_OK (0) on success or one
 *    of the er_code values.  When it fails and `err` is not NULL, `*err` is
 *    filled with the code and a human readable message; `err` is owned by the
 *    caller (no allocation, nothing to free).
 *  - Strings are (pointer, length) pairs and need not be NUL-terminated.
 *  - Memory handed out by the core says who owns it and how long it lives.
 *  - An er_store may be used from several threads at once, except er_close,
 *    which must not run concurrently with any other call on the same store.
 *    An er_iter belongs to one thread at a time.
 *
 * Storage model
 *  - A store is one directory, owned by one writer process (RocksDB's LOCK).
 *  - Each append puts one or more events at the end of a stream; stream
 *    versions start at 1 and are contiguous; global positions start at 1, are
 *    unique and increase in append order.  One append is one atomic RocksDB
 *    WriteBatch: all of its events are stored, or none.
 */
#ifndef EVENTROCKS_H
#define EVENTROCKS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ER_VERSION_STRING "0.1.0"

/* The newest store format this build reads and writes.  A new store is
 * created at format 1; the first delete, truncation or retention limit
 * moves it to format 2 (an older build would show the removed events). */
#define ER_FORMAT 3
#define ER_FORMAT_BASE 1
/* Format 3: the store holds sealed (encrypted) events, its key check and
 * wrapped subject keys; written with the first append with a subject. */

#define ER_MAX_STREAM_LEN 1024 /* bytes in a stream id (no NUL allowed) */
#define ER_MAX_TYPE_LEN 1024   /* bytes in an event type (no NUL allowed) */
#define ER_DEFAULT_MAX_EVENT_SIZE ((size_t)16 << 20) /* data + metadata */
#define ER_MAX_KEY_LEN 8192 /* bytes in a key of a key-value space */
#define ER_MAX_SUBJECT_LEN 1024 /* bytes in a subject (no NUL allowed) */
#define ER_KEY_LEN 32 /* bytes in a store's master key */

/* Result codes.  ER_NOT_FOUND also marks the normal end of an iterator. */
typedef enum er_code {
  ER_OK = 0,
  ER_WRONG_EXPECTED_VERSION, /* expected-version check failed; nothing written */
  ER_DUPLICATE_EVENT,        /* an event id already exists elsewhere */
  ER_STREAM_DELETED,         /* the stream was hard-deleted */
  ER_LOCKED,                 /* the directory is open for writing elsewhere */
  ER_NOT_FOUND,              /* no such store / event; end of iteration */
  ER_IO,                     /* the file system or RocksDB failed */
  ER_CORRUPTION,             /* stored bytes do not decode */
  ER_INVALID,                /* invalid argument or unusable store */
  ER_NOMEM                   /* out of memory */
} er_code;

/* Expected-version sentinels for er_append; any value >= 0 means "the
 * stream is exactly at this version" (0 = the stream is empty or absent). */
#define ER_ANY INT64_C(-1)
#define ER_NO_STREAM INT64_C(-2)
#define ER_STREAM_EXISTS INT64_C(-3)

/* "No limit" for the count arguments of the readers. */
#define ER_UNLIMITED UINT64_MAX

/* Filled by a failing call when the caller passes one. */
typedef struct er_error {
  int code;          /* an er_code */
  int64_t expected;  /* ER_WRONG_EXPECTED_VERSION: the expectation given */
  uint64_t actual;   /* ER_WRONG_EXPECTED_VERSION: the stream's version */
  uint64_t position; /* ER_CORRUPTION: position of the bad record, 0 if none */
  size_t append_index; /* er_txn_commit: index of the append that failed */
  uint8_t id[16];      /* ER_DUPLICATE_EVENT: the event id (binary UUID) */
  char message[512]; /* NUL-terminated, never empty on failure */
} er_error;

typedef struct er_options {
  int create;            /* create the directory/store if missing (default 1) */
  int read_only;         /* open without taking the write lock (default 0) */
  int sync;              /* fsync the WAL before an append returns (default 0) */
  size_t max_event_size; /* limit on data + metadata bytes; 0 = default */
  /* The store's master key (ER_KEY_LEN bytes, copied by er_open) or NULL.
   * With a key, events appended with a subject are sealed (see "Personal
   * data" below); a store that holds sealed events opens only with it. */
  const uint8_t *key;
} er_options;

typedef struct er_store er_store;
typedef struct er_iter er_iter;

/* An event to append.  `id` is in/out: when `has_id` is 0 the store
 * generates a UUID version 7 and writes it into `id` (and sets `has_id`). */
typedef struct er_new_event {
  uint8_t id[16];
  int has_id;
  const char *type; /* 1..ER_MAX_TYPE_LEN bytes, no NUL */
  size_t type_len;
  const void *data; /* opaque; may be NULL when data_len is 0 */
  size_t data_len;
  const void *metadata; /* opaque; may be NULL when metadata_len is 0 */
  size_t metadata_len;
  /* The person the event is about, or NULL (subject_len 0): with a
   * subject, data and metadata are stored encrypted with that subject's
   * key, which er_forget destroys.  1..ER_MAX_SUBJECT_LEN bytes, no NUL;
   * only on a store opened with a key. */
  const char *subject;
  size_t subject_len;
  /* With a subject: store the event as forgotten already (no data, no
   * metadata, no key): what an import of a forgotten event does. */
  int forgotten;
} er_new_event;

/* What an append did.  `version`/`position` are those of its last event. */
typedef struct er_appended {
  uint64_t first_version, version;
  uint64_t first_position, position;
  int replayed; /* 1: an idempotent retry; nothing was written */
} er_appended;

/* An event read back.  Unless said otherwise its pointers borrow memory of
 * the iterator (or buffer) it came from. */
typedef struct er_event {
  uint8_t id[16];
  uint64_t position;
  uint64_t version;
  int64_t time; /* microseconds since the Unix epoch, set by the store */
  const char *stream;
  size_t stream_len;
  const char *type;
  size_t type_len;
  const void *metadata;
  size_t metadata_len;
  const void *data;
  size_t data_len;
  const char *subject; /* NULL (subject_len 0) for an event without one */
  size_t subject_len;
  int forgotten; /* 1: its subject was forgotten: no data, no metadata */
} er_event;

/* Filter of er_read_all.  A NULL category and ntypes 0 match everything; a
 * non-NULL category, even an empty one, matches the streams of exactly that
 * category (er_category).
 * The strings are copied: they need to live only during the call. */
typedef struct er_filter {
  const char *category;
  size_t category_len;
  const char *const *types; /* `ntypes` type names */
  const size_t *type_lens;
  size_t ntypes;
} er_filter;

/* ------------------------------------------------------------------------ */
/* Library                                                                   */

/* Name of a code, as used by bindings: "wrong_expected_version",
 * "duplicate_event", "stream_deleted", "locked", "not_found", "io",
 * "corruption", "invalid", "nomem"; "ok" for ER_OK.  Static storage. */
const char *er_code_name(int code);

/* Fill `*o` with the defaults (create=1, read_only=0, sync=0,
 * max_event_size=ER_DEFAULT_MAX_EVENT_SIZE). */
void er_options_init(er_options *o);

/* Free memory the core handed out (see er_event_at).  NULL is fine. */
void er_free(void *p);

/* The category of a stream id: its first er_category(stream, stream_len)
 * bytes, which are the text before its first '-' (the whole id when it has
 * none; "" for "-1").  Stream ids are 1 to ER_MAX_STREAM_LEN bytes without
 * NUL; event types 1 to ER_MAX_TYPE_LEN. */
size_t er_category(const char *stream, size_t stream_len);

/* ------------------------------------------------------------------------ */
/* Event ids                                                                  */

/* Write a new UUID version 7 (48-bit Unix milliseconds, 12 bits of
 * sub-millisecond time, 62 random bits) into `out`.  Returns ER_OK or ER_IO
 * when the system's random source fails.  Thread-safe. */
int er_uuid7(uint8_t out[16]);

/* Format `id` as 36 lowercase characters plus a NUL into `out`. */
void er_uuid_format(const uint8_t id[16], char out[37]);

/* Parse the 36-character form (8-4-4-4-12 hex digits, either case) into
 * `out`.  Returns ER_OK, or ER_INVALID when `text` is not a UUID. */
int er_uuid_parse(const char *text, size_t len, uint8_t out[16]);

/* ------------------------------------------------------------------------ */
/* Opening and closing                                                        */

/* Open the store in directory `path` (NUL-terminated).  `opts` may be NULL
 * for the defaults.  On success `*out` is a new handle to release with
 * er_close.  Errors:
 *   ER_LOCKED    the directory is already open for writing (this process or
 *                another one), or another process is creating a store there;
 *   ER_NOT_FOUND no store there and create is 0 or read_only is 1;
 *   ER_INVALID   not an eventrocks store (a directory that holds other files
 *                is never written into: a new store needs an empty or
 *                missing directory), a format number this build does not
 *                read, or a store with sealed events (personal data) opened
 *                without its key or with another one (nothing is written);
 *   ER_IO        the file system refused (path is a file, permissions...);
 *   ER_NOMEM.
 * A writable open sets SIGXFSZ to be ignored when the process left it at
 * its default, so that a write beyond the file size limit (ulimit -f) fails
 * with ER_IO instead of killing the process.
 * A read-only handle sees the store as it was when opened (or last
 * refreshed with er_refresh); it may coexist with one writer.  It is a
 * RocksDB secondary instance; its info log goes to a temporary directory
 * ($TMPDIR or /tmp) that is unlinked as soon as the store is open. */
int er_open(const char *path, const er_options *opts, er_store **out,
            er_error *err);

/* Close the store: destroys the RocksDB resources of every iterator still
 * open (they then report ER_INVALID; er_iter_free stays necessary) and frees
 * the handle.  NULL is fine.  One exception: after an append failed because
 * RocksDB could not create a new write-ahead log file (a full disk, a
 * read-only directory, no file descriptors left), the RocksDB instance is
 * left open -- its files and its write lock -- until the process ends, as
 * closing it would abort the process (a bug of RocksDB 7.8); open the store
 * again from another process. */
void er_close(er_store *s);

/* A read-only handle: catch up with what a writer (in another process)
 * has written since the handle was opened or last refreshed.  New
 * iterators see the new state; iterators already open keep theirs.  A
 * writable handle always sees everything: ER_OK, nothing to do. */
int er_refresh(er_store *s, er_error *err);

/* Wait until RocksDB has no flush or compaction running or due on this
 * handle, at most `timeout_ms` milliseconds: 1 when it is idle, 0 when the
 * time ran out.  For measurements and maintenance (a bulk load leaves
 * compactions behind that later writes would otherwise share the CPU
 * with).  A read-only handle is always idle. */
int er_wait_idle(er_store *s, int timeout_ms);

/* Wait until the store's last position is above `after`, at most
 * `timeout_ms` milliseconds (-1: no limit, 0: only look).  On ER_OK
 * `*last` is the last position: above `after` when it came, at most
 * `after` when the time ran out.  A writable handle is woken by the commit
 * itself (a condition variable signalled after each commit through this
 * handle, from any thread): no polling.  A read-only handle watches the
 * store's directory (inotify: the writer's log file changes) and catches up
 * (er_refresh) at each change, and at least every 500 ms; when inotify is
 * not available it catches up every 2 ms.  Errors: those of er_refresh.
 * Safe from any thread; the handle must not be closed meanwhile. */
int er_wait_position(er_store *s, uint64_t after, int timeout_ms,
                     uint64_t *last, er_error *err);

/* Take a consistent copy of the store into the new directory `dir` (it
 * must not exist; its parent must) while the store stays open and
 * writable: RocksDB's checkpoint, hard links where `dir` is on the same
 * file system.  The copy holds every append acknowledged before the call
 * and a prefix of those made during it, never part of one; it opens as a
 * normal store.  `*position` is the last position it holds.  ER_INVALID for
 * an existing `dir` or a read-only handle (it cannot flush the writer's
 * memtables), ER_IO when the copy fails (a partial `dir` may be left). */
int er_backup(er_store *s, const char *dir, uint64_t *position, er_error *err);

/* What a store holds (er_stats).  events and last_position are exact
 * (events counts what reads of the log show: the heads' versions, with a
 * scan only of the streams that have a time limit), streams is counted exactly (one
 * read of the heads), bytes_on_disk is the size of the files in the
 * store's directory; a family's bytes (its table files and memtables) and
 * keys are RocksDB's estimates. */
#define ER_STATS_FAMILIES 11
typedef struct er_family_stats {
  const char *name; /* static storage */
  uint64_t bytes, keys;
} er_family_stats;

typedef struct er_store_stats {
  uint64_t events, streams, last_position, bytes_on_disk;
  size_t n_families;
  er_family_stats families[ER_STATS_FAMILIES];
} er_store_stats;

/* Fill `out`.  ER_IO when the directory or the heads cannot be read. */
int er_stats(er_store *s, er_store_stats *out, er_error *err);

/* ------------------------------------------------------------------------ */
/* Data lifecycle                                                             */
/* ------------------------------------------------------------------------ */

/* Removed events are invisible to every read at once (er_read_stream,
 * er_read_all, er_event_at); er_compact removes their bytes from the
 * store's files.  Positions of the other events never change: the log has
 * holes where events were removed. */

/* Delete `stream`, whose version must match `expected` (as er_append's).
 * Soft (hard = 0): the stream reads as empty and is not listed, keeps its
 * version, and an append restarts it after that version.  Hard: every
 * event of it is removed and every later append or read of it is
 * ER_STREAM_DELETED.  Either way its snapshot is deleted with it.  ER_NOT_FOUND for a
 * stream that has no events yet; ER_STREAM_DELETED when it was
 * hard-deleted already. */
int er_delete_stream(er_store *s, const char *stream, size_t stream_len,
                     int64_t expected, int hard, er_error *err);

/* Remove the events of `stream` below version `before` (>= 1, at most its
 * version + 1). */
int er_truncate(er_store *s, const char *stream, size_t stream_len,
                uint64_t before, er_error *err);

/* Retention limits of a stream; 0 is no limit.  Keep its newest max_count
 * events, and only events younger than max_age seconds (by their time).
 * Loosening a limit never brings back what it removed. */
typedef struct er_stream_meta {
  uint64_t max_count, max_age;
} er_stream_meta;
#define ER_MAX_AGE_LIMIT (UINT64_C(1) << 40) /* seconds: 34,000 years */

int er_set_stream_meta(er_store *s, const char *stream, size_t stream_len,
                       const er_stream_meta *meta, er_error *err);
int er_get_stream_meta(er_store *s, const char *stream, size_t stream_len,
                   er_stream_meta *meta, er_error *err);

/* Turn every removed event into a hole (its bytes, index and id entries
 * deleted), then flush and compact every family so that no file of the
 * store holds the removed bytes any more (the write-ahead log files
 * included, once RocksDB deletes the obsolete ones).  Runs beside appends;
 * `*removed` (may be NULL) counts the events removed by this call. */
int er_compact(er_store *s, uint64_t *removed, er_error *err);

/* Whether every position from `from` to `to` is a hole or holds a removed
 * event (*removed = 1), or some position there holds an event that reads,
 * or nothing at all (0: a gap that no removal explains, or a read-only
 * handle that has not caught up yet).  Followers of the log that take
 * positions strictly in order use it to step over holes. */
int er_removed_range(er_store *s, uint64_t from, uint64_t to, int *removed,
                     er_error *err);

/* The directory the store was opened with (owned by the store). */
const char *er_path(const er_store *s);

/* 1 when the store was opened read-only. */
int er_is_read_only(const er_store *s);

/* ------------------------------------------------------------------------ */
/* Personal data (crypto-shredding)                                           */
/* ------------------------------------------------------------------------ */

/* A store opened with a master key (er_options.key) seals the events
 * appended with a subject: their data and metadata are encrypted with
 * XChaCha20-Poly1305 under a random key of that subject, and the
 * associated data binds each ciphertext to its event (id, version, stream,
 * subject): a record moved to another event reads as ER_CORRUPTION.  The
 * subject keys are stored wrapped (encrypted) by the master key in a
 * family of their own ("keys"); a key check in the default family makes
 * er_open refuse (ER_INVALID) a store with sealed events opened without
 * its key or with another one.  Ids, streams, versions, positions, types,
 * times and the subject stay in clear.
 *
 * Reads decrypt: an event's data and metadata are plaintext in memory of
 * its iterator.  Once the subject is forgotten, its events read with no
 * data and no metadata (NULL, 0) and `forgotten` = 1. */

/* Destroy the key of `subject` (1..ER_MAX_SUBJECT_LEN bytes): delete it
 * durably (a synced write, then a flush of the keys family), wipe it from
 * memory, and delete the snapshots of every stream that has events of the
 * subject.  After er_compact no file of the store holds the wrapped key
 * any more.  `*forgotten` (may be NULL) is 1 when a key was destroyed, 0
 * when the subject had none (unknown, or forgotten already).  ER_INVALID
 * on a read-only store or one opened without a key, ER_IO. */
int er_forget(er_store *s, const char *subject, size_t subject_len,
              int *forgotten, er_error *err);

/* 1 when the store was opened with a master key. */
int er_has_key(const er_store *s);

/* Seal `len` bytes of `plain` with the key of `subject`, bound to `ad`
 * (`ad_len` bytes, may be 0): for values derived from a subject's events
 * (snapshots).  On ER_OK `*out` (release with er_free) holds `*out_len` =
 * len + ER_SEAL_OVERHEAD bytes.  ER_NOT_FOUND when the subject has no key
 * (none was made, or it was forgotten): store nothing then; ER_INVALID
 * without a master key. */
#define ER_SEAL_OVERHEAD 48
int er_seal(er_store *s, const char *subject, size_t subject_len,
            const void *ad, size_t ad_len, const void *plain, size_t len,
            void **out, size_t *out_len, er_error *err);
/* Open what er_seal made: ER_OK with `*out` (release with er_free),
 * ER_NOT_FOUND when the subject was forgotten, ER_CORRUPTION when the
 * bytes do not decrypt with its key and `ad`. */
int er_unseal(er_store *s, const char *subject, size_t subject_len,
              const void *ad, size_t ad_len, const void *sealed, size_t len,
              void **out, size_t *out_len, er_error *err);

/* ------------------------------------------------------------------------ */
/* Writing                                                                    */

/* Append `n` >= 1 events to `stream` in one atomic write, if the stream's
 * current version satisfies `expected` (ER_ANY, ER_NO_STREAM,
 * ER_STREAM_EXISTS or an exact version >= 0).  The check and the write are
 * atomic with respect to every other append on this handle.  On success
 * `*res` (may be NULL) describes the append.
 *
 * Event ids: events without an id get a new UUID v7 (written back into
 * events[i].id).  When the given ids were all appended to this stream, in
 * this order, by one earlier append whose expectation `expected` also meets
 * (judged against the version before that append), the call is an
 * idempotent retry: it writes nothing and reports that append (replayed=1).
 * When the ids are exactly those of one earlier append to this stream but
 * `expected` does not meet the version before it, the answer is
 * ER_WRONG_EXPECTED_VERSION when `expected` does not meet the current
 * version either, else ER_DUPLICATE_EVENT.  Any other use of existing ids
 * (another stream, part of an append, another order, mixed with new ids)
 * is ER_DUPLICATE_EVENT, whatever `expected`.
 *
 * Errors (nothing is written):
 *   ER_WRONG_EXPECTED_VERSION  err->expected, err->actual are set;
 *   ER_DUPLICATE_EVENT         an id exists outside such a retry, or twice in
 *                              this call;
 *   ER_INVALID                 bad stream/type/sizes, n == 0, read-only store;
 *   ER_IO, ER_CORRUPTION, ER_NOMEM. */
int er_append(er_store *s, const char *stream, size_t stream_len,
              int64_t expected, er_new_event *events, size_t n,
              er_appended *res, er_error *err);

/* ------------------------------------------------------------------------ */
/* Transactions: several appends and key-value writes in one atomic write     */

/* Key-value spaces stored beside the log, written only through transactions
 * so that they change atomically with the events they derive from. */
typedef enum er_space {
  ER_SNAPSHOTS,   /* aggregate snapshots: stream id -> snapshot */
  ER_CHECKPOINTS, /* projection checkpoints: name -> position */
  ER_VIEWS        /* projection read models: name, 0x00, key -> value */
} er_space;
#define ER_SPACE_COUNT 3

typedef struct er_txn er_txn;

/* Start a transaction on a writable store.  Nothing is written before
 * er_txn_commit; release it with er_txn_free whatever happens. */
int er_txn_begin(er_store *s, er_txn **out, er_error *err);

/* Queue an append (same rules as er_append).  The events are validated now
 * (ER_INVALID) and copied: the caller's memory may go once this returns.
 * Appends to the same stream in one transaction see each other: a second
 * append's `expected` is checked against the version the first one leaves. */
int er_txn_append(er_txn *t, const char *stream, size_t stream_len,
                  int64_t expected, const er_new_event *events, size_t n,
                  er_error *err);

/* er_txn_append with the events' time given instead of taken from the
 * clock (integer microseconds since the epoch; 0 means now).  For imports
 * and mirrors, which keep the time of the events they copy: such times are
 * stored as given and never move the store's own clock, so events the store
 * times itself carry the real time (never going back), whatever times were
 * given before. */
int er_txn_append_at(er_txn *t, const char *stream, size_t stream_len,
                     int64_t expected, const er_new_event *events, size_t n,
                     int64_t time, er_error *err);

/* An append that restores events copied from another store (an import, a
 * mirror), where some were removed: when the stream is empty and `expected`
 * is above 0, the stream starts at version expected + 1 and its versions
 * up to `expected` count as removed (a truncation); when `position` is
 * past the store's last position + 1, the positions in between become a
 * hole, so that the events keep their positions.  Otherwise it is
 * er_txn_append_at's append (a position already taken is not kept). */
int er_txn_restore(er_txn *t, const char *stream, size_t stream_len,
                   int64_t expected, uint64_t position,
                   const er_new_event *events, size_t n, int64_t time,
                   er_error *err);

/* Queue a put or a delete in a key-value space (copied; ER_INVALID on a
 * bad space or a key that is empty or longer than ER_MAX_KEY_LEN). */
int er_txn_put(er_txn *t, er_space space, const void *key, size_t key_len,
               const void *val, size_t val_len, er_error *err);
int er_txn_delete(er_txn *t, er_space space, const void *key, size_t key_len,
                  er_error *err);
/* Queue the deletion of every key of `space` that starts with `prefix`
 * (non-empty). */
int er_txn_delete_prefix(er_txn *t, er_space space, const void *prefix,
                         size_t prefix_len, er_error *err);

/* Check every queued append's expectation and write everything in one
 * RocksDB WriteBatch, or nothing.  Errors are those of er_append;
 * err->append_index names the failing append.  A transaction commits at
 * most once: later calls return ER_INVALID. */
int er_txn_commit(er_txn *t, er_error *err);

/* Number of queued appends, and the result of append `i` after a successful
 * commit (NULL when `i` is out of range or the commit did not succeed). */
size_t er_txn_appends(const er_txn *t);
const er_appended *er_txn_result(const er_txn *t, size_t i);

void er_txn_free(er_txn *t);

/* A commit hook runs inside every commit of the store (er_append included)
 * that writes events, after the expected-version checks passed and the
 * events got their positions, versions, ids and time, and before anything
 * is written.  `events` are the events about to be stored (valid during the
 * call).  The hook may queue key-value writes on `t` (er_txn_put, er_txn_delete,
 * er_txn_delete_prefix), which are then written in the same WriteBatch; it
 * must not append or commit.  Returning anything but ER_OK (with `err`
 * filled; `err` is never NULL) aborts the commit: nothing is written.  The
 * hook runs with the store's write lock held: it must not call er_append,
 * er_txn_commit, er_set_commit_hook, er_debug_put, er_debug_delete or
 * er_close on this store (reads are fine).  One hook per store; NULL
 * removes it. */
typedef int (*er_commit_hook)(void *ud, er_txn *t, const er_event *events,
                              size_t n, er_error *err);
void er_set_commit_hook(er_store *s, er_commit_hook hook, void *ud);

/* The value of `key` in `space`: on ER_OK `*val` (release with er_free) and
 * `*val_len`; ER_NOT_FOUND when absent. */
int er_get(er_store *s, er_space space, const void *key, size_t key_len,
           void **val, size_t *val_len, er_error *err);

/* An iterator over the keys of `space` that start with `prefix` (may be
 * empty), in byte order; read it with er_iter_next_kv. */
int er_scan(er_store *s, er_space space, const void *prefix,
            size_t prefix_len, er_iter **out, er_error *err);

/* Next key and value of a scan (borrowed until the next call).
 * ER_NOT_FOUND at the end. */
int er_iter_next_kv(er_iter *it, const void **key, size_t *key_len,
                    const void **val, size_t *val_len, er_error *err);

/* ------------------------------------------------------------------------ */
/* Reading                                                                    */

/* Current version of `stream` into `*version` (0 when it does not exist). */
int er_version(er_store *s, const char *stream, size_t stream_len,
               uint64_t *version, er_error *err);

/* Position of the newest event, 0 for an empty store.  Lock-free: may be
 * called from a commit hook. */
uint64_t er_last_position(er_store *s);

/* The event at `position`.  On ER_OK `*ev` points into `*mem`, which the
 * caller releases with er_free.  ER_NOT_FOUND when there is none;
 * ER_CORRUPTION when its record does not decode. */
int er_event_at(er_store *s, uint64_t position, er_event *ev, void **mem,
                er_error *err);

/* An iterator over `stream`, from version `from` (0 = the first, or the
 * last when `backward`), at most `count` events (ER_UNLIMITED for all),
 * forward or backward.  The iterator reads a consistent view taken now. */
int er_read_stream(er_store *s, const char *stream, size_t stream_len,
                   uint64_t from, uint64_t count, int backward, er_iter **out,
                   er_error *err);

/* An iterator over the global log in position order, from position `from`
 * (inclusive; 0 means 1), returning at most `count` events that pass
 * `filter` (may be NULL). */
int er_read_all(er_store *s, uint64_t from, uint64_t count,
                const er_filter *filter, er_iter **out, er_error *err);

/* Next event of a stream or log iterator.  ER_OK with `*ev` filled (valid
 * until the next call on this iterator or its release), ER_NOT_FOUND at the
 * end, ER_CORRUPTION (err->position set), ER_IO, or ER_INVALID when the
 * store was closed or the iterator is a streams iterator. */
int er_iter_next(er_iter *it, er_event *ev, er_error *err);

/* An iterator over the streams whose id starts with `prefix` (may be empty),
 * in byte order of the id. */
int er_list_streams(er_store *s, const char *prefix, size_t prefix_len,
                    er_iter **out, er_error *err);

/* Next stream of a streams iterator: id (borrowed, valid until the next
 * call) and current version (which, for a stream appended to while the
 * iterator is open, may be newer than when it was created).  ER_NOT_FOUND
 * at the end. */
int er_iter_next_stream(er_iter *it, const char **stream, size_t *stream_len,
                        uint64_t *version, er_error *err);

/* Release an iterator (before or after its store is closed).  NULL is
 * fine. */
void er_iter_free(er_iter *it);

/* ------------------------------------------------------------------------ */
/* Checking and repair tools                                                  */

typedef void (*er_report_fn)(void *ud, const char *problem);
typedef void (*er_progress_fn)(void *ud, uint64_t done, uint64_t total);

/* Verify the store's invariants: positions 1..last contiguous; every record
 * decodes and its checksum holds; every log record has its stream index
 * entry (same bytes) and its id entry, and every stream index entry points
 * at its log record; versions contiguous from 1 in every stream; every head
 * equals its stream's last version and every stream has a head; every id
 * entry points at an event with that id; no event is timed more than a day
 * ahead of now (each of the first ten is reported, then how many more).  `report` (may be NULL) gets one
 * message per problem (valid during the call), `progress` (may be NULL)
 * gets the work done so far out of `total` now and then.  On ER_OK
 * `*problems` holds the number of problems found (0: healthy); an error
 * means the scan itself could not run to the end. */
int er_check(er_store *s, er_report_fn report, er_progress_fn progress,
             void *ud, uint64_t *problems, er_error *err);

/* For tests and repair tools only: put or delete a raw key of the column
 * family `family` ("default", "log", "streams", "heads", "ids", "snapshots",
 * "checkpoints", "views"), bypassing every rule of the store.  Clears the
 * cache of stream versions.  ER_INVALID on an unknown family or a read-only
 * store. */
int er_debug_put(er_store *s, const char *family, const void *key,
                 size_t key_len, const void *val, size_t val_len,
                 er_error *err);
int er_debug_delete(er_store *s, const char *family, const void *key,
                    size_t key_len, er_error *err);
/* For tests and repair tools only: the raw value of `key` in the column
 * family `family` (names as above), read-only stores included.  On ER_OK
 * `*val` (release with er_free) and `*val_len`; ER_NOT_FOUND when absent,
 * ER_INVALID on an unknown family. */
int er_debug_get(er_store *s, const char *family, const void *key,
                 size_t key_len, void **val, size_t *val_len, er_error *err);

#ifdef __cplusplus
}
#endif
#endif
