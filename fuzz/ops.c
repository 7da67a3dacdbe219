/*
 * ops.c -- libFuzzer target: sequences of operations on the core C API,
 * checked against a model kept in memory.
 *
 * Every input starts from an empty store (one directory per process, emptied
 * between inputs) and is read as a list of operations, one byte choosing
 * each and the next bytes its arguments: appends with random expected
 * versions (ER_ANY, ER_NO_STREAM, ER_STREAM_EXISTS, the right number, wrong
 * ones, invalid ones) and batch sizes, events with generated ids, given
 * ids, ids of stored events and ids repeated inside the append; retries of
 * earlier appends (exact, cut short, reordered, to another stream);
 * transactions of several appends (some with a given time) and key-value
 * puts; reads of a stream (from, count, backward), of the log (from, count,
 * category and type filters), of one position, of the stream list by
 * prefix; a second writable open (ER_LOCKED); close and reopen (with an
 * iterator left open, which must then answer ER_INVALID); soft and hard
 * deletes, truncations, max_count and max_age limits and compactions
 * (removed events vanish from every read, their ids are free again, check
 * accepts the holes); personal data: the store is opened with a key, the
 * events of some streams carry a subject (two streams share one), and
 * forgets of a subject make its events read as forgotten from then on,
 * while later appends of it read normally (a new key).
 *
 * The model says what each call must answer, from the rules of
 * core/include/eventrocks.h: an append succeeds iff the expectation holds;
 * an idempotent retry returns the earlier append and writes nothing; other
 * reuse of an id is ER_DUPLICATE_EVENT, or ER_WRONG_EXPECTED_VERSION when
 * the expectation fails anyway; a failed transaction writes nothing; ids,
 * versions, positions, types, payloads are what was appended; the times of
 * the events the store timed never go back (across reopens too), an append
 * with a given time keeps it.  After every operation the stream versions
 * and the last position are compared with the model; after the last one,
 * the whole log, every stream both ways, the stream list, the key-value
 * puts and er_check.
 *
 * OPS_TRACE=1 in the environment prints every operation and its answer.
 *
 * Reusing ids in a way that is not a retry of one append (another stream,
 * a prefix, another order, mixed with new ids) is ER_DUPLICATE_EVENT
 * whatever the expectation (eventrocks.h, er_append: "any other use of
 * existing ids");
 * only ids that are exactly one earlier append to this stream are judged
 * by the expectation.  (Until 2026-11-27 the header said otherwise; the
 * model followed the code, and -DOPS_STRICT, which now changes nothing,
 * checked the header's reading.)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "eventrocks.h"
#include "fuzz_util.h"
#include "internal.h" /* ER_CLOCK_AHEAD_LIMIT */

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* ------------------------------------------------------------------------ */
/* Vocabulary                                                                */

#define NSTREAMS 5
static const char *const stream_name[NSTREAMS] = {"a-1", "a-10", "b-1", "c",
                                                  "\xff-\xff"};
static const size_t stream_len[NSTREAMS] = {3, 4, 3, 1, 3};
/* the subject of each stream's events (personal data), or NULL */
static const char *const subject_of[NSTREAMS] = {"alice", "alice", "bob", NULL, NULL};
#define NSUBJECTS 2
static const char *const subject_name[NSUBJECTS] = {"alice", "bob"};
static const uint8_t store_key[ER_KEY_LEN] = "ops-fuzz-master-key-0123456789a";
#define NTYPES 3
static const char *const type_name[NTYPES] = {"Created", "Changed", "X"};
#define NKEYS 4
static const char *const kv_key[NKEYS] = {"p\0k1", "p\0k2", "q\0k1", "q"};
static const size_t kv_key_len[NKEYS] = {4, 4, 4, 1};

#define MAX_EVENTS 4096 /* per input; appends beyond are skipped */
#define MAX_BATCH 6
#define MAX_PAYLOAD 8
#define MAX_TXN 3
#define MAX_REOPENS 1 /* per input: an open costs about 20 ms */
#define MAX_COMPACTIONS 1 /* per input: so does a compaction */

/* ------------------------------------------------------------------------ */
/* The model                                                                 */

typedef struct mevent {
  uint8_t id[16];
  int stream, type;
  uint64_t version, position;
  int64_t time;
  uint8_t data[MAX_PAYLOAD], meta[MAX_PAYLOAD];
  size_t data_len, meta_len;
  size_t append; /* index in model.ap */
  int compacted; /* removed, and a compaction made it a hole */
  int forgotten; /* its subject was forgotten after it was appended */
} mevent;

typedef struct mappend {
  int stream;
  uint64_t first_position, version_before;
  size_t n;
} mappend;

/* A stream's lifecycle (er_delete_stream, er_truncate, er_set_stream_meta
 * with max_count and max_age).  The only max_age is a day (AGE): the events
 * the store times are younger for as long as a run lasts, and the times a
 * transaction may give are 1970 (older) or 2096 (younger), so the model
 * needs no clock.  Once a stream had a max_age, its 1970 events are removed
 * for good, even after the limit is lifted (the store keeps what it removed
 * as a time floor). */
#define AGE 86400
typedef struct mlife {
  int soft, hard;
  uint64_t before, hidden_before, max_count, max_age;
  int aged; /* it had a max_age: events older than a day are removed */
} mlife;

typedef struct model {
  mlife life[NSTREAMS];
  mevent ev[MAX_EVENTS]; /* ev[p - 1] is position p */
  size_t n;
  mappend ap[MAX_EVENTS];
  size_t nap;
  uint64_t version[NSTREAMS];
  int64_t max_time; /* newest time the store itself gave (not given ones) */
  uint8_t kv[NKEYS][MAX_PAYLOAD];
  size_t kv_len[NKEYS];
  int kv_set[NKEYS];
  int key_live[NSUBJECTS]; /* the subject has a key (appended since its last forget) */
} model;

static model M;
static int trace; /* $OPS_TRACE set: print every operation to stderr */
#define TRACE(...) \
  do { if (trace) { fprintf(stderr, "ops: " __VA_ARGS__); fputc('\n', stderr); } } while (0)
static char *dir;
static er_store *S;
static uint64_t next_fresh; /* counter of the ids the fuzzer gives */
static unsigned long tolerated_gap, inputs;

/* A batch being built: events plus their payloads and type indexes. */
typedef struct batch {
  int stream; /* -1: an invalid stream id */
  int64_t expected;
  int64_t time; /* 0: the store's clock */
  size_t n;
  er_new_event e[MAX_BATCH];
  int type[MAX_BATCH];
  uint8_t data[MAX_BATCH][MAX_PAYLOAD], meta[MAX_BATCH][MAX_PAYLOAD];
} batch;

/* ------------------------------------------------------------------------ */
/* Input                                                                     */

typedef struct in {
  const uint8_t *p;
  size_t n;
} in;

static unsigned next(in *r) {
  if (r->n == 0) return 0;
  r->n--;
  return *r->p++;
}

/* ------------------------------------------------------------------------ */
/* Failing                                                                   */

static void dump_model(void) {
  size_t i;
  fprintf(stderr, "model: %zu events, %zu appends; versions", M.n, M.nap);
  for (i = 0; i < NSTREAMS; i++) fprintf(stderr, " %s=%llu", i == 4 ? "xff" : stream_name[i],
                                        (unsigned long long)M.version[i]);
  fputc('\n', stderr);
}

#define FAIL(...)                                                            \
  do {                                                                       \
    fprintf(stderr, "ops: %s:%d: ", __FILE__, __LINE__);                     \
    fprintf(stderr, __VA_ARGS__);                                            \
    fputc('\n', stderr);                                                     \
    dump_model();                                                            \
    abort();                                                                 \
  } while (0)

static const char *code_name(int rc) { return er_code_name(rc); }

/* ------------------------------------------------------------------------ */
/* Rules                                                                     */

static int expected_ok(int64_t e, uint64_t actual) {
  if (e == ER_ANY) return 1;
  if (e == ER_NO_STREAM) return actual == 0;
  if (e == ER_STREAM_EXISTS) return actual > 0;
  return e >= 0 && (uint64_t)e == actual;
}

static int64_t now_micros(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Whether event `m` is removed by its stream's age limit. */
static int aged_out(const mevent *m) {
  return M.life[m->stream].aged && m->time < now_micros() - (int64_t)AGE * 1000000;
}

/* Whether event `m` is removed by its stream's lifecycle. */
static int removed(const mevent *m) {
  const mlife *l = &M.life[m->stream];
  return l->hard || m->version < l->before ||
         (l->max_count && m->version + l->max_count <= M.version[m->stream]) || aged_out(m);
}

/* The first version a read of stream `s` shows. */
static uint64_t first_shown(int s) {
  const mlife *l = &M.life[s];
  uint64_t v = 1;
  if (l->before > v) v = l->before;
  if (l->hidden_before > v) v = l->hidden_before;
  if (l->max_count && M.version[s] >= l->max_count && M.version[s] - l->max_count + 1 > v)
    v = M.version[s] - l->max_count + 1;
  return v;
}

/* Position of the stored event with id `id`, 0 when none (the id of a
 * removed event is free again). */
static uint64_t lookup(const uint8_t id[16]) {
  size_t i;
  for (i = 0; i < M.n; i++)
    if (memcmp(M.ev[i].id, id, 16) == 0 && !removed(&M.ev[i])) return i + 1;
  return 0;
}

enum { OUT_WRITE = 100, OUT_REPLAY = 101 };

/* What appending batch `b` must do when its stream is at `cur` (ids are
 * looked up among the stored events only, as the store does).  Returns
 * OUT_WRITE, OUT_REPLAY (*replay_of = the earlier append) or an error code;
 * *alt is another answer the code gives (the tolerated gap), or -1. */
static int decide(const batch *b, uint64_t cur, size_t *replay_of, int *alt) {
  size_t i, existing = 0;
  uint64_t first = 0;
  int shaped = 1;
  *alt = -1;
  if (M.life[b->stream].hard) return ER_STREAM_DELETED;
  for (i = 0; i < b->n; i++) {
    uint64_t pos;
    if (!b->e[i].has_id) {
      shaped = 0;
      continue;
    }
    pos = lookup(b->e[i].id);
    if (!pos) {
      shaped = 0;
      continue;
    }
    if (i == 0) first = pos;
    if (first == 0 || pos != first + i) shaped = 0;
    existing++;
  }
  if (existing == 0)
    return expected_ok(b->expected, cur) ? OUT_WRITE : ER_WRONG_EXPECTED_VERSION;
  if (shaped) {
    const mappend *a = &M.ap[M.ev[first - 1].append];
    if (a->first_position == first && a->n == b->n && a->stream == b->stream) {
      if (expected_ok(b->expected, a->version_before)) {
        *replay_of = M.ev[first - 1].append;
        return OUT_REPLAY;
      }
      return expected_ok(b->expected, cur) ? ER_DUPLICATE_EVENT
                                           : ER_WRONG_EXPECTED_VERSION;
    }
  }
  (void)alt;
  return ER_DUPLICATE_EVENT;
}

/* The caller-given ids of `bs` (k batches): ER_DUPLICATE_EVENT when one
 * appears twice, *later = the batch of the later copy of the first pair in
 * (id, batch) order, as er_txn_commit reports it; else ER_OK. */
typedef struct id_at {
  const uint8_t *id;
  size_t batch;
} id_at;

static int cmp_id_at(const void *x, const void *y) {
  const id_at *a = x, *b = y;
  int c = memcmp(a->id, b->id, 16);
  if (c) return c;
  return a->batch < b->batch ? -1 : a->batch > b->batch;
}

static int unique_ids(const batch *bs, size_t k, size_t *later) {
  id_at ids[MAX_TXN * MAX_BATCH];
  size_t a, i, n = 0;
  for (a = 0; a < k; a++)
    for (i = 0; i < bs[a].n; i++)
      if (bs[a].e[i].has_id) {
        ids[n].id = bs[a].e[i].id;
        ids[n++].batch = a;
      }
  qsort(ids, n, sizeof *ids, cmp_id_at);
  for (i = 1; i < n; i++)
    if (memcmp(ids[i - 1].id, ids[i].id, 16) == 0) {
      *later = ids[i].batch;
      return ER_DUPLICATE_EVENT;
    }
  return ER_OK;
}

/* ------------------------------------------------------------------------ */
/* Comparing                                                                 */

static void same_event(const er_event *ev, const mevent *m, const char *what) {
  if (memcmp(ev->id, m->id, 16) != 0) FAIL("%s: position %llu: wrong id", what,
                                           (unsigned long long)m->position);
  if (ev->position != m->position || ev->version != m->version)
    FAIL("%s: position %llu version %llu, model position %llu version %llu", what,
         (unsigned long long)ev->position, (unsigned long long)ev->version,
         (unsigned long long)m->position, (unsigned long long)m->version);
  if (ev->time != m->time)
    FAIL("%s: position %llu: time %lld, model %lld", what,
         (unsigned long long)m->position, (long long)ev->time, (long long)m->time);
  if (ev->stream_len != stream_len[m->stream] ||
      memcmp(ev->stream, stream_name[m->stream], ev->stream_len) != 0)
    FAIL("%s: position %llu: wrong stream", what, (unsigned long long)m->position);
  if (ev->type_len != strlen(type_name[m->type]) ||
      memcmp(ev->type, type_name[m->type], ev->type_len) != 0)
    FAIL("%s: position %llu: wrong type", what, (unsigned long long)m->position);
  {
    const char *subj = subject_of[m->stream];
    size_t sl = subj ? strlen(subj) : 0;
    if (ev->subject_len != sl || (sl && memcmp(ev->subject, subj, sl) != 0))
      FAIL("%s: position %llu: wrong subject", what, (unsigned long long)m->position);
    if (ev->forgotten != m->forgotten)
      FAIL("%s: position %llu: forgotten %d, model %d", what,
           (unsigned long long)m->position, ev->forgotten, m->forgotten);
    if (m->forgotten) {
      if (ev->data_len || ev->metadata_len)
        FAIL("%s: position %llu: a forgotten event has data", what,
             (unsigned long long)m->position);
      return;
    }
  }
  if (ev->data_len != m->data_len ||
      (m->data_len && memcmp(ev->data, m->data, m->data_len) != 0))
    FAIL("%s: position %llu: wrong data", what, (unsigned long long)m->position);
  if (ev->metadata_len != m->meta_len ||
      (m->meta_len && memcmp(ev->metadata, m->meta, m->meta_len) != 0))
    FAIL("%s: position %llu: wrong metadata", what, (unsigned long long)m->position);
}

/* The versions of every stream and the last position. */
static void check_versions(void) {
  int s;
  er_error err;
  for (s = 0; s < NSTREAMS; s++) {
    uint64_t v = 12345;
    int rc = er_version(S, stream_name[s], stream_len[s], &v, &err);
    if (rc != ER_OK) FAIL("er_version: %s %s", code_name(rc), err.message);
    if (v != M.version[s])
      FAIL("stream %d at version %llu, model %llu", s, (unsigned long long)v,
           (unsigned long long)M.version[s]);
  }
  if (er_last_position(S) != M.n)
    FAIL("last position %llu, model %zu", (unsigned long long)er_last_position(S), M.n);
}

static void check_at(uint64_t pos) {
  er_event ev;
  void *mem = NULL;
  er_error err;
  int rc = er_event_at(S, pos, &ev, &mem, &err);
  if (pos >= 1 && pos <= M.n && removed(&M.ev[pos - 1])) {
    if (rc != ER_NOT_FOUND) FAIL("er_event_at(%llu) of a removed event: %s", (unsigned long long)pos,
                                 code_name(rc));
  } else if (pos >= 1 && pos <= M.n) {
    if (rc != ER_OK) FAIL("er_event_at(%llu): %s %s", (unsigned long long)pos,
                          code_name(rc), err.message);
    same_event(&ev, &M.ev[pos - 1], "er_event_at");
  } else if (rc != ER_NOT_FOUND) {
    FAIL("er_event_at(%llu) past the log: %s", (unsigned long long)pos, code_name(rc));
  }
  er_free(mem);
}

/* The model's event of stream `s` at version `v`, or NULL. */
static const mevent *model_event(int s, uint64_t v) {
  size_t i;
  for (i = 0; i < M.n; i++)
    if (M.ev[i].stream == s && M.ev[i].version == v) return &M.ev[i];
  return NULL;
}

/* The events of stream `s` the model expects from er_read_stream. */
static void check_stream(int s, uint64_t from, uint64_t count, int backward) {
  er_iter *it = NULL;
  er_error err;
  er_event ev;
  uint64_t v, got = 0, last = M.version[s];
  const mevent *m;
  uint64_t lo = first_shown(s);
  int rc = er_read_stream(S, stream_name[s], stream_len[s], from, count, backward,
                          &it, &err);
  if (M.life[s].hard) {
    if (rc != ER_STREAM_DELETED) FAIL("er_read_stream of a hard-deleted stream: %s", code_name(rc));
    if (it) FAIL("an iterator of a hard-deleted stream");
    return;
  }
  if (rc != ER_OK) FAIL("er_read_stream: %s %s", code_name(rc), err.message);
  if (backward) v = from == 0 || from > last ? last : from;
  else v = from == 0 ? 1 : from;
  if (!backward && v < lo) v = lo;
  for (;;) {
    int more = count == ER_UNLIMITED || got < count;
    /* the versions the age limit removed, anywhere in the stream */
    while (v >= 1 && v >= lo && v <= last && (m = model_event(s, v)) != NULL && aged_out(m))
      v = backward ? v - 1 : v + 1;
    if (backward) more = more && v >= 1 && v >= lo;
    else more = more && v <= last;
    rc = er_iter_next(it, &ev, &err);
    if (!more) {
      if (rc != ER_NOT_FOUND)
        FAIL("er_read_stream(%d, from %llu, count %llu, %s): %s after %llu events", s,
             (unsigned long long)from, (unsigned long long)count,
             backward ? "backward" : "forward", code_name(rc), (unsigned long long)got);
      break;
    }
    if (rc != ER_OK)
      FAIL("er_read_stream(%d, from %llu, count %llu, %s): %s %s at version %llu", s,
           (unsigned long long)from, (unsigned long long)count,
           backward ? "backward" : "forward", code_name(rc),
           rc == ER_NOT_FOUND ? "(too early)" : err.message, (unsigned long long)v);
    if ((m = model_event(s, v)) == NULL)
      FAIL("model: no version %llu of stream %d", (unsigned long long)v, s);
    same_event(&ev, m, "er_read_stream");
    got++;
    v = backward ? v - 1 : v + 1;
  }
  er_iter_free(it);
}

static size_t category_len(int s) {
  const char *dash = memchr(stream_name[s], '-', stream_len[s]);
  return dash ? (size_t)(dash - stream_name[s]) : stream_len[s];
}

/* er_read_all with filter number `f` (0: none). */
static void check_all(uint64_t from, uint64_t count, int f) {
  static const char *const t1[] = {"Created"}, *const t2[] = {"X", "Changed"};
  static const size_t l1[] = {7}, l2[] = {1, 7};
  er_filter filter;
  er_iter *it = NULL;
  er_error err;
  er_event ev;
  uint64_t got = 0;
  size_t p;
  int rc;
  memset(&filter, 0, sizeof filter);
  switch (f) {
  case 1: filter.category = "a"; filter.category_len = 1; break;
  case 2: filter.category = "c"; filter.category_len = 1; break;
  case 3: filter.types = t1; filter.type_lens = l1; filter.ntypes = 1; break;
  case 4:
    filter.types = t2; filter.type_lens = l2; filter.ntypes = 2;
    filter.category = "\xff"; filter.category_len = 1;
    break;
  case 5: filter.category = ""; filter.category_len = 0; break;
  }
  rc = er_read_all(S, from, count, f ? &filter : NULL, &it, &err);
  if (rc != ER_OK) FAIL("er_read_all: %s %s", code_name(rc), err.message);
  for (p = from == 0 ? 1 : from; ; p++) {
    const mevent *m = NULL;
    /* the next event of the model that passes the filter */
    for (; p <= M.n && (count == ER_UNLIMITED || got < count); p++) {
      const mevent *c = &M.ev[p - 1];
      const char *tn = type_name[c->type];
      if (removed(c)) continue;
      if (filter.category &&
          !(category_len(c->stream) == filter.category_len &&
            memcmp(stream_name[c->stream], filter.category, filter.category_len) == 0))
        continue;
      if (filter.ntypes) {
        size_t k;
        for (k = 0; k < filter.ntypes; k++)
          if (strlen(tn) == filter.type_lens[k] && memcmp(tn, filter.types[k], filter.type_lens[k]) == 0)
            break;
        if (k == filter.ntypes) continue;
      }
      m = c;
      break;
    }
    rc = er_iter_next(it, &ev, &err);
    if (!m) {
      if (rc != ER_NOT_FOUND)
        FAIL("er_read_all(from %llu, count %llu, filter %d): %s after %llu events",
             (unsigned long long)from, (unsigned long long)count, f, code_name(rc),
             (unsigned long long)got);
      break;
    }
    if (rc != ER_OK)
      FAIL("er_read_all(from %llu, count %llu, filter %d): %s before position %llu",
           (unsigned long long)from, (unsigned long long)count, f, code_name(rc),
           (unsigned long long)m->position);
    same_event(&ev, m, "er_read_all");
    got++;
  }
  er_iter_free(it);
}

static void check_list(const char *prefix, size_t plen) {
  er_iter *it = NULL;
  er_error err;
  const char *name;
  size_t len;
  uint64_t v;
  int rc, s, prev = -1;
  rc = er_list_streams(S, prefix, plen, &it, &err);
  if (rc != ER_OK) FAIL("er_list_streams: %s %s", code_name(rc), err.message);
  for (;;) {
    int want = -1;
    /* the next stream in byte order after `prev` that exists and matches */
    for (s = 0; s < NSTREAMS; s++) {
      if (M.version[s] == 0 || M.life[s].soft || M.life[s].hard || stream_len[s] < plen ||
          memcmp(stream_name[s], prefix, plen) != 0)
        continue;
      if (prev >= 0) {
        size_t m = stream_len[s] < stream_len[prev] ? stream_len[s] : stream_len[prev];
        int c = memcmp(stream_name[s], stream_name[prev], m);
        if (c < 0 || (c == 0 && stream_len[s] <= stream_len[prev])) continue;
      }
      if (want >= 0) {
        size_t m = stream_len[s] < stream_len[want] ? stream_len[s] : stream_len[want];
        int c = memcmp(stream_name[s], stream_name[want], m);
        if (c > 0 || (c == 0 && stream_len[s] > stream_len[want])) continue;
      }
      want = s;
    }
    rc = er_iter_next_stream(it, &name, &len, &v, &err);
    if (want < 0) {
      if (rc != ER_NOT_FOUND) FAIL("er_list_streams(%zu bytes): one stream too many", plen);
      break;
    }
    if (rc != ER_OK) FAIL("er_list_streams: %s, stream %d missing", code_name(rc), want);
    if (len != stream_len[want] || memcmp(name, stream_name[want], len) != 0 ||
        v != M.version[want])
      FAIL("er_list_streams: got another stream or version than stream %d (%.*s at %llu)",
           want, (int)len, name, (unsigned long long)v);
    prev = want;
  }
  er_iter_free(it);
}

static void check_kv(void) {
  int k;
  for (k = 0; k < NKEYS; k++) {
    void *val = NULL;
    size_t len = 0;
    er_error err;
    int rc = er_get(S, ER_VIEWS, kv_key[k], kv_key_len[k], &val, &len, &err);
    if (M.kv_set[k]) {
      if (rc != ER_OK) FAIL("er_get(key %d): %s", k, code_name(rc));
      if (len != M.kv_len[k] || (len && memcmp(val, M.kv[k], len) != 0))
        FAIL("er_get(key %d): another value", k);
    } else if (rc != ER_NOT_FOUND) {
      FAIL("er_get(key %d) never written: %s", k, code_name(rc));
    }
    er_free(val);
  }
}

static void report(void *ud, const char *problem) {
  (void)ud;
  fprintf(stderr, "er_check: %s\n", problem);
}


/* The problems er_check reports for the model's events that were given a
 * time more than a day ahead of now (a mirror or an import may carry one):
 * the first ten one by one, then one line for the rest.  A compacted event's
 * record is gone, so its time is no longer checked. */
static uint64_t ahead_problems(void) {
  struct timespec ts;
  int64_t limit;
  uint64_t i, n = 0;
  clock_gettime(CLOCK_REALTIME, &ts);
  limit = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000 + ER_CLOCK_AHEAD_LIMIT;
  for (i = 0; i < M.n; i++) n += !M.ev[i].compacted && M.ev[i].time > limit;
  return n <= 10 ? n : 11;
}

static void check_everything(void) {
  er_error err;
  uint64_t problems = 0;
  int s, rc;
  check_versions();
  check_all(0, ER_UNLIMITED, 0);
  for (s = 0; s < NSTREAMS; s++) {
    check_stream(s, 0, ER_UNLIMITED, 0);
    check_stream(s, 0, ER_UNLIMITED, 1);
  }
  check_list("", 0);
  check_kv();
  rc = er_check(S, report, NULL, NULL, &problems, &err);
  if (rc != ER_OK) FAIL("er_check: %s %s", code_name(rc), err.message);
  if (problems != ahead_problems())
    FAIL("er_check: %llu problems, %llu expected (events given times more than a day ahead)",
         (unsigned long long)problems, (unsigned long long)ahead_problems());
}

/* ------------------------------------------------------------------------ */
/* Building batches                                                          */

static void fresh_id(uint8_t id[16]) {
  uint64_t c = ++next_fresh;
  int i;
  memset(id, 0xee, 8);
  for (i = 15; i >= 8; i--) { id[i] = (uint8_t)(c & 0xff); c >>= 8; }
}

static int64_t pick_expected(in *r, uint64_t cur) {
  unsigned k = next(r) % 9;
  switch (k) {
  case 0: case 1: return ER_ANY;
  case 2: return ER_NO_STREAM;
  case 3: return ER_STREAM_EXISTS;
  case 4: case 5: return (int64_t)cur;
  case 6: return (int64_t)cur + 1;
  case 7: return cur > 0 ? (int64_t)cur - 1 : (int64_t)(next(r) % 4);
  default: return next(r) % 2 ? INT64_C(-4) : INT64_MIN; /* invalid */
  }
}

/* A new batch for stream `s` (payloads and ids from the input). */
static void pick_batch(in *r, batch *b, int s, size_t n) {
  size_t i, k;
  memset(b, 0, sizeof *b);
  b->stream = s;
  b->n = n;
  for (i = 0; i < n; i++) {
    er_new_event *e = &b->e[i];
    unsigned mode = next(r) % 10;
    b->type[i] = (int)(next(r) % NTYPES);
    e->type = type_name[b->type[i]];
    e->type_len = strlen(e->type);
    e->data_len = next(r) % (MAX_PAYLOAD + 1);
    for (k = 0; k < e->data_len; k++) b->data[i][k] = (uint8_t)next(r);
    e->data = e->data_len ? b->data[i] : NULL;
    e->metadata_len = next(r) % 3;
    for (k = 0; k < e->metadata_len; k++) b->meta[i][k] = (uint8_t)next(r);
    e->metadata = e->metadata_len ? b->meta[i] : NULL;
    if (mode <= 5) continue; /* a generated id */
    e->has_id = 1;
    if (mode == 8 && M.n > 0) { /* the id of a stored event */
      memcpy(e->id, M.ev[next(r) % M.n].id, 16);
    } else if (mode == 9 && i > 0) { /* the id of an event of this batch */
      const er_new_event *o = &b->e[next(r) % i];
      if (o->has_id) memcpy(e->id, o->id, 16);
      else fresh_id(e->id);
    } else {
      fresh_id(e->id);
    }
  }
}

/* Point the events' payloads at this batch's own buffers (after a copy). */
static void rebase(batch *b) {
  size_t i;
  for (i = 0; i < b->n; i++) {
    b->e[i].type = type_name[b->type[i]];
    b->e[i].data = b->e[i].data_len ? b->data[i] : NULL;
    b->e[i].metadata = b->e[i].metadata_len ? b->meta[i] : NULL;
  }
}

/* A retry of stored append `a`: its ids (and payloads), exact or altered. */
static void pick_retry(in *r, batch *b, size_t a) {
  const mappend *ap = &M.ap[a];
  size_t i;
  unsigned how = next(r) % 6;
  memset(b, 0, sizeof *b);
  b->stream = ap->stream;
  b->n = ap->n;
  for (i = 0; i < ap->n; i++) {
    const mevent *m = &M.ev[ap->first_position - 1 + i];
    b->type[i] = m->type;
    b->e[i].type_len = strlen(type_name[m->type]);
    memcpy(b->data[i], m->data, m->data_len);
    b->e[i].data_len = m->data_len;
    memcpy(b->meta[i], m->meta, m->meta_len);
    b->e[i].metadata_len = m->meta_len;
    memcpy(b->e[i].id, m->id, 16);
    b->e[i].has_id = 1;
  }
  switch (how) {
  case 2: /* cut short */
    if (b->n > 1) b->n--;
    break;
  case 3: /* reordered */
    if (b->n > 1) {
      er_new_event t = b->e[0];
      int ty = b->type[0];
      b->e[0] = b->e[1];
      b->type[0] = b->type[1];
      b->e[1] = t;
      b->type[1] = ty;
      memcpy(b->data[MAX_BATCH - 1], b->data[0], MAX_PAYLOAD);
      memcpy(b->data[0], b->data[1], MAX_PAYLOAD);
      memcpy(b->data[1], b->data[MAX_BATCH - 1], MAX_PAYLOAD);
      memcpy(b->meta[MAX_BATCH - 1], b->meta[0], MAX_PAYLOAD);
      memcpy(b->meta[0], b->meta[1], MAX_PAYLOAD);
      memcpy(b->meta[1], b->meta[MAX_BATCH - 1], MAX_PAYLOAD);
    }
    break;
  case 4: /* to another stream */
    b->stream = (int)((ap->stream + 1 + next(r) % (NSTREAMS - 1)) % NSTREAMS);
    break;
  case 5: /* one more event, new */
    if (b->n < MAX_BATCH) {
      b->type[b->n] = 0;
      b->e[b->n].type_len = strlen(type_name[0]);
      b->n++;
    }
    break;
  }
  rebase(b);
  /* usually what a client retrying does: the version it saw before */
  b->expected = next(r) % 3 == 0 ? (int64_t)ap->version_before
                                 : pick_expected(r, M.version[b->stream]);
}

/* ------------------------------------------------------------------------ */
/* Applying to the model                                                     */

/* Record appended batch `b` at positions first.. (versions after `cur`);
 * ids of generated events are read back from the store, and times. */
static void model_write(const batch *b, uint64_t cur) {
  size_t i;
  mappend *a = &M.ap[M.nap];
  a->stream = b->stream;
  a->first_position = M.n + 1;
  a->version_before = cur;
  a->n = b->n;
  for (i = 0; i < b->n; i++) {
    mevent *m = &M.ev[M.n];
    memset(m, 0, sizeof *m);
    memcpy(m->id, b->e[i].id, 16); /* replaced below when generated */
    m->stream = b->stream;
    m->type = b->type[i];
    m->version = cur + 1 + i;
    m->position = M.n + 1;
    m->time = b->time ? b->time : now_micros(); /* learn reads the store's */
    m->data_len = b->e[i].data_len;
    if (m->data_len) memcpy(m->data, b->e[i].data, m->data_len);
    m->meta_len = b->e[i].metadata_len;
    if (m->meta_len) memcpy(m->meta, b->e[i].metadata, m->meta_len);
    m->append = M.nap;
    M.n++;
  }
  M.nap++;
  M.version[b->stream] = cur + b->n;
  if (subject_of[b->stream])
    M.key_live[strcmp(subject_of[b->stream], "alice") == 0 ? 0 : 1] = 1;
  M.life[b->stream].soft = 0; /* an append restarts a soft-deleted stream */
}

/* After a commit that wrote positions from..to: learn generated ids and
 * times from the store and check the rules of time.  `given[i]` is the
 * time the batch of position from+i was given (0: the store's clock). */
static void learn(uint64_t from, uint64_t to, const int64_t *given,
                  const int *has_id) {
  uint64_t p;
  int64_t clock = 0, newest = M.max_time;
  for (p = from; p <= to; p++) {
    er_event ev;
    void *mem = NULL;
    er_error err;
    mevent *m = &M.ev[p - 1];
    size_t k = (size_t)(p - from);
    int rc = er_event_at(S, p, &ev, &mem, &err);
    if (rc == ER_NOT_FOUND && removed(m))
      continue; /* removed at once: a max_count below the append's size */
    if (rc != ER_OK) FAIL("er_event_at(%llu) just written: %s %s", (unsigned long long)p,
                          code_name(rc), err.message);
    if (!has_id[k]) {
      if (lookup(ev.id) != 0 && lookup(ev.id) != p) FAIL("a generated id already exists");
      memcpy(m->id, ev.id, 16);
    }
    if (given[k]) {
      if (ev.time != given[k])
        FAIL("position %llu was given time %lld, has %lld", (unsigned long long)p,
             (long long)given[k], (long long)ev.time);
    } else {
      if (ev.time < M.max_time)
        FAIL("position %llu: time %lld goes back before %lld", (unsigned long long)p,
             (long long)ev.time, (long long)M.max_time);
      if (clock && ev.time != clock)
        FAIL("position %llu: time %lld, the rest of its commit %lld",
             (unsigned long long)p, (long long)ev.time, (long long)clock);
      clock = ev.time;
      if (ev.time > newest) newest = ev.time; /* given times never move it */
    }
    m->time = ev.time;
    TRACE("  position %llu: stream %d version %llu id %02x%02x%02x%02x..%02x%02x%s",
          (unsigned long long)p, m->stream, (unsigned long long)m->version, ev.id[0], ev.id[1],
          ev.id[2], ev.id[3], ev.id[14], ev.id[15], has_id[k] ? " (given)" : "");
    /* the store's own clock: given times (imports, mirrors) never move it */
    if (!given[k] && ev.time > newest) newest = ev.time;
    same_event(&ev, m, "the event just written");
    er_free(mem);
  }
  M.max_time = newest;
}

/* ------------------------------------------------------------------------ */
/* Operations                                                                */

static void check_appended(const er_appended *res, uint64_t fv, uint64_t v,
                           uint64_t fp, uint64_t p, int replayed) {
  if (res->first_version != fv || res->version != v || res->first_position != fp ||
      res->position != p || res->replayed != replayed)
    FAIL("append result: versions %llu..%llu positions %llu..%llu replayed %d; "
         "model %llu..%llu %llu..%llu %d",
         (unsigned long long)res->first_version, (unsigned long long)res->version,
         (unsigned long long)res->first_position, (unsigned long long)res->position,
         res->replayed, (unsigned long long)fv, (unsigned long long)v,
         (unsigned long long)fp, (unsigned long long)p, replayed);
}

static void check_wrong_version(const er_error *err, int64_t expected, uint64_t actual) {
  if (err->expected != expected || err->actual != actual)
    FAIL("wrong expected version: err expected %lld actual %llu, model %lld %llu",
         (long long)err->expected, (unsigned long long)err->actual,
         (long long)expected, (unsigned long long)actual);
}

/* The events of `b` carry the subject of its stream. */
static void set_subjects(batch *b) {
  size_t i;
  const char *subj = b->stream >= 0 ? subject_of[b->stream] : NULL;
  for (i = 0; i < b->n; i++) {
    b->e[i].subject = subj;
    b->e[i].subject_len = subj ? strlen(subj) : 0;
  }
}

static void do_append(batch *b) {
  er_appended res;
  er_error err;
  size_t replay_of = 0, i;
  int alt, want, rc, has_id[MAX_BATCH];
  int64_t given[MAX_BATCH];
  uint64_t cur;
  const char *sname = b->stream < 0 ? "x\0y" : stream_name[b->stream];
  size_t slen = b->stream < 0 ? 3 : stream_len[b->stream];
  size_t later;

  if (b->stream < 0 || b->n == 0 || b->expected < ER_STREAM_EXISTS) want = ER_INVALID;
  else if (M.n + b->n > MAX_EVENTS) return;
  else if (unique_ids(b, 1, &later) != ER_OK) want = ER_DUPLICATE_EVENT;
  else want = -2;
  cur = b->stream >= 0 ? M.version[b->stream] : 0;
  alt = -1;
  if (want == -2) want = decide(b, cur, &replay_of, &alt);
  for (i = 0; i < b->n; i++) has_id[i] = b->e[i].has_id;
  set_subjects(b);
  memset(&err, 0, sizeof err);
  rc = er_append(S, sname, slen, b->expected, b->e, b->n, &res, &err);
  TRACE("append %zu events to stream %d (version %llu), expected %lld: %s%s, model %s",
        b->n, b->stream, (unsigned long long)cur, (long long)b->expected, code_name(rc),
        rc == ER_OK && res.replayed ? " (replayed)" : "",
        want == OUT_WRITE ? "write" : want == OUT_REPLAY ? "replay" : code_name(want));
  if (want == OUT_WRITE) {
    if (rc != ER_OK) FAIL("append to stream %d, expected %lld at version %llu: %s %s",
                          b->stream, (long long)b->expected, (unsigned long long)cur,
                          code_name(rc), err.message);
    check_appended(&res, cur + 1, cur + b->n, M.n + 1, M.n + b->n, 0);
    {
      uint64_t from = M.n + 1;
      for (i = 0; i < b->n; i++) given[i] = 0;
      model_write(b, cur);
      learn(from, M.n, given, has_id);
    }
  } else if (want == OUT_REPLAY) {
    const mappend *a = &M.ap[replay_of];
    if (rc != ER_OK) FAIL("retry of append %zu (stream %d, expected %lld): %s %s", replay_of,
                          b->stream, (long long)b->expected, code_name(rc), err.message);
    check_appended(&res, a->version_before + 1, a->version_before + a->n,
                   a->first_position, a->first_position + a->n - 1, 1);
  } else if (rc != want) {
    if (rc == alt) {
      tolerated_gap++;
    } else {
      FAIL("append to stream %d (%zu events), expected %lld at version %llu: %s (%s), "
           "model %s", b->stream, b->n, (long long)b->expected, (unsigned long long)cur,
           code_name(rc), err.message, code_name(want));
    }
  } else if (rc == ER_WRONG_EXPECTED_VERSION) {
    check_wrong_version(&err, b->expected, cur);
  }
  if (rc != ER_OK && (err.message[0] == 0 || err.code != rc))
    FAIL("a failed append without its error (code %d, message '%s')", err.code, err.message);
  check_versions();
}

/* A transaction of k batches (and maybe a key-value put), all or nothing. */
static void do_txn(in *r, batch *bs, size_t k) {
  er_txn *t = NULL;
  er_error err;
  size_t a, i, queued = 0, later = 0, fail_at = 0, replay_of[MAX_TXN];
  batch q[MAX_TXN];
  int outcome[MAX_TXN], rc, want = ER_OK, alt = -1, kv = -1;
  uint64_t cur[NSTREAMS], before[MAX_TXN], pos = M.n, total = 0;
  uint8_t kv_val[MAX_PAYLOAD];
  size_t kv_len = 0;

  rc = er_txn_begin(S, &t, &err);
  if (rc != ER_OK) FAIL("er_txn_begin: %s", code_name(rc));
  for (a = 0; a < k; a++) {
    int invalid = bs[a].stream < 0 || bs[a].n == 0 || bs[a].expected < ER_STREAM_EXISTS;
    const char *sname = bs[a].stream < 0 ? "x\0y" : stream_name[bs[a].stream];
    size_t slen = bs[a].stream < 0 ? 3 : stream_len[bs[a].stream];
    set_subjects(&bs[a]);
    rc = er_txn_append_at(t, sname, slen, bs[a].expected, bs[a].e, bs[a].n, bs[a].time,
                          &err);
    if (invalid) {
      if (rc != ER_INVALID) FAIL("er_txn_append of an invalid append: %s", code_name(rc));
      continue;
    }
    if (rc != ER_OK) FAIL("er_txn_append: %s %s", code_name(rc), err.message);
    q[queued] = bs[a];
    rebase(&q[queued]);
    queued++;
    total += bs[a].n;
  }
  if (next(r) % 2) {
    kv = (int)(next(r) % NKEYS);
    kv_len = next(r) % (MAX_PAYLOAD + 1);
    for (i = 0; i < kv_len; i++) kv_val[i] = (uint8_t)next(r);
    rc = er_txn_put(t, ER_VIEWS, kv_key[kv], kv_key_len[kv], kv_val, kv_len, &err);
    if (rc != ER_OK) FAIL("er_txn_put: %s", code_name(rc));
  }
  if (M.n + total > MAX_EVENTS) {
    er_txn_free(t);
    return;
  }

  /* the model's answer */
  for (i = 0; i < NSTREAMS; i++) cur[i] = M.version[i];
  if (unique_ids(q, queued, &later) != ER_OK) {
    want = ER_DUPLICATE_EVENT;
    fail_at = later;
  } else {
    for (a = 0; a < queued && want == ER_OK; a++) {
      int o = decide(&q[a], cur[q[a].stream], &replay_of[a], &alt);
      before[a] = cur[q[a].stream];
      outcome[a] = o;
      if (o == OUT_WRITE) {
        cur[q[a].stream] += q[a].n;
      } else if (o != OUT_REPLAY) {
        want = o;
        fail_at = a;
      }
    }
  }

  memset(&err, 0, sizeof err);
  rc = er_txn_commit(t, &err);
  TRACE("txn of %zu appends%s: %s, model %s", queued, kv >= 0 ? " and a put" : "",
        code_name(rc), code_name(want));
  if (want != ER_OK) {
    if (rc != want && !(rc == alt && rc != ER_OK))
      FAIL("txn of %zu appends: %s (%s), model %s at append %zu", queued, code_name(rc),
           err.message, code_name(want), fail_at);
    if (rc == alt && rc != want) tolerated_gap++;
    if (rc != ER_OK && err.append_index != fail_at)
      FAIL("txn failed at append %zu, model %zu", err.append_index, fail_at);
    if (rc == ER_WRONG_EXPECTED_VERSION)
      check_wrong_version(&err, q[fail_at].expected, before[fail_at]);
  } else {
    int64_t given[MAX_TXN * MAX_BATCH];
    int has_id[MAX_TXN * MAX_BATCH];
    size_t w = 0;
    uint64_t from = M.n + 1;
    if (rc != ER_OK) FAIL("txn of %zu appends: %s %s, model ok", queued, code_name(rc),
                          err.message);
    if (er_txn_appends(t) != queued) FAIL("er_txn_appends: %zu, model %zu",
                                          er_txn_appends(t), queued);
    for (a = 0; a < queued; a++) {
      const er_appended *res = er_txn_result(t, a);
      if (!res) FAIL("no result for append %zu", a);
      if (outcome[a] == OUT_REPLAY) {
        const mappend *ap = &M.ap[replay_of[a]];
        check_appended(res, ap->version_before + 1, ap->version_before + ap->n,
                       ap->first_position, ap->first_position + ap->n - 1, 1);
        continue;
      }
      check_appended(res, before[a] + 1, before[a] + q[a].n, pos + 1, pos + q[a].n, 0);
      pos += q[a].n;
    }
    if (er_txn_result(t, queued) != NULL) FAIL("a result past the last append");
    for (a = 0; a < queued; a++) {
      if (outcome[a] != OUT_WRITE) continue;
      for (i = 0; i < q[a].n; i++, w++) {
        given[w] = q[a].time;
        has_id[w] = q[a].e[i].has_id;
      }
      model_write(&q[a], M.version[q[a].stream]);
    }
    if (M.n >= from) learn(from, M.n, given, has_id);
    if (kv >= 0) {
      M.kv_set[kv] = 1;
      M.kv_len[kv] = kv_len;
      memcpy(M.kv[kv], kv_val, kv_len);
    }
  }
  /* committed or not, a transaction commits once */
  rc = er_txn_commit(t, &err);
  if (rc != ER_INVALID) FAIL("a second er_txn_commit: %s", code_name(rc));
  er_txn_free(t);
  check_versions();
  if (kv >= 0) check_kv();
}

/* A lifecycle operation: 0 soft delete, 1 hard delete, 2 truncate, 3 a
 * max_count (or none), each checked against the model's answer. */
static void do_lifecycle(in *r, int kind) {
  int s = (int)(next(r) % NSTREAMS), rc, want;
  mlife *l = &M.life[s];
  uint64_t v = M.version[s];
  er_error err;
  memset(&err, 0, sizeof err);
  if (kind <= 1) {
    int64_t e = pick_expected(r, v);
    rc = er_delete_stream(S, stream_name[s], stream_len[s], e, kind, &err);
    want = e < ER_STREAM_EXISTS ? ER_INVALID : l->hard ? ER_STREAM_DELETED
           : !expected_ok(e, v) ? ER_WRONG_EXPECTED_VERSION : v == 0 ? ER_NOT_FOUND : ER_OK;
    TRACE("%s delete of stream %d (version %llu), expected %lld: %s, model %s",
          kind ? "hard" : "soft", s, (unsigned long long)v, (long long)e, code_name(rc),
          code_name(want));
    if (rc != want) FAIL("delete of stream %d: %s (%s), model %s", s, code_name(rc), err.message,
                         code_name(want));
    if (rc == ER_WRONG_EXPECTED_VERSION) check_wrong_version(&err, e, v);
    if (rc == ER_OK && kind) l->hard = 1;
    if (rc == ER_OK && !kind) {
      l->soft = 1;
      if (l->hidden_before < v + 1) l->hidden_before = v + 1;
    }
  } else if (kind == 2) {
    uint64_t before = next(r) % (v + 3);
    rc = er_truncate(S, stream_name[s], stream_len[s], before, &err);
    want = before < 1 ? ER_INVALID : l->hard ? ER_STREAM_DELETED : v == 0 ? ER_NOT_FOUND
           : before > v + 1 ? ER_INVALID : ER_OK;
    TRACE("truncate stream %d (version %llu) before %llu: %s, model %s", s,
          (unsigned long long)v, (unsigned long long)before, code_name(rc), code_name(want));
    if (rc != want) FAIL("truncate of stream %d: %s (%s), model %s", s, code_name(rc),
                         err.message, code_name(want));
    if (rc == ER_OK && before > l->before) l->before = before;
  } else {
    er_stream_meta m = {next(r) % 4, 0}, got;
    if (next(r) % 3 == 0) m.max_age = AGE;
    rc = er_set_stream_meta(S, stream_name[s], stream_len[s], &m, &err);
    want = l->hard ? ER_STREAM_DELETED : ER_OK;
    TRACE("max_count %llu, max_age %llu on stream %d (version %llu): %s, model %s",
          (unsigned long long)m.max_count, (unsigned long long)m.max_age, s,
          (unsigned long long)v, code_name(rc), code_name(want));
    if (rc != want) FAIL("set_stream_meta of stream %d: %s (%s), model %s", s, code_name(rc),
                         err.message, code_name(want));
    if (rc == ER_OK) {
      /* what the old limit removed stays removed */
      if (l->max_count && v >= l->max_count && v - l->max_count + 1 > l->before)
        l->before = v - l->max_count + 1;
      l->max_count = m.max_count;
      l->max_age = m.max_age;
      if (m.max_age) l->aged = 1;
    }
    if (er_get_stream_meta(S, stream_name[s], stream_len[s], &got, &err) != ER_OK ||
        got.max_count != l->max_count || got.max_age != l->max_age)
      FAIL("er_get_stream_meta of stream %d: %llu %llu, model %llu %llu", s,
           (unsigned long long)got.max_count, (unsigned long long)got.max_age,
           (unsigned long long)l->max_count, (unsigned long long)l->max_age);
  }
  if (rc != ER_OK && (err.message[0] == 0 || err.code != rc))
    FAIL("a failed lifecycle call without its error (code %d)", err.code);
  check_versions();
}

/* A compaction: it removes bytes, nothing a read sees changes. */
static void do_compact(void) {
  uint64_t n = 0, want = 0, problems = 0;
  size_t i;
  er_error err;
  int rc;
  for (i = 0; i < M.n; i++) want += removed(&M.ev[i]) && !M.ev[i].compacted;
  rc = er_compact(S, &n, &err);
  TRACE("compact: %s, %llu removed, model %llu", code_name(rc), (unsigned long long)n,
        (unsigned long long)want);
  if (rc != ER_OK) FAIL("er_compact: %s %s", code_name(rc), err.message);
  if (n != want) FAIL("er_compact removed %llu events, model %llu", (unsigned long long)n,
                      (unsigned long long)want);
  for (i = 0; i < M.n; i++)
    if (removed(&M.ev[i])) M.ev[i].compacted = 1;
  if (er_check(S, report, NULL, NULL, &problems, &err) != ER_OK ||
      problems != ahead_problems())
    FAIL("er_check after a compaction: %llu problems, %llu expected (events given times "
         "more than a day ahead)", (unsigned long long)problems,
         (unsigned long long)ahead_problems());
  check_versions();
}

/* Forget subject `k`: a key is destroyed when one was made since the last
 * forget; its events appended so far read as forgotten from now on. */
static void do_forget(int k) {
  er_error err;
  int forgotten = -1, rc;
  size_t i;
  const char *subj = subject_name[k];
  rc = er_forget(S, subj, strlen(subj), &forgotten, &err);
  TRACE("forget %s: %s %d, model %d", subj, code_name(rc), forgotten, M.key_live[k]);
  if (rc != ER_OK) FAIL("er_forget(%s): %s %s", subj, code_name(rc), err.message);
  if (forgotten != M.key_live[k])
    FAIL("er_forget(%s) destroyed %d keys, model %d", subj, forgotten, M.key_live[k]);
  M.key_live[k] = 0;
  for (i = 0; i < M.n; i++) {
    const char *s2 = subject_of[M.ev[i].stream];
    if (s2 && strcmp(s2, subj) == 0) M.ev[i].forgotten = 1;
  }
}

static void open_store(void) {
  er_error err;
  er_options o;
  int rc;
  er_options_init(&o);
  o.key = store_key;
  rc = er_open(dir, &o, &S, &err);
  if (rc != ER_OK) FAIL("er_open(%s): %s %s", dir, code_name(rc), err.message);
}

static void run(in *r) {
  unsigned reopens = 0, compactions = 0;
  while (r->n > 0) {
    unsigned op = next(r) % 21;
    if (trace && (op >= 7 && op <= 13)) TRACE("op %u", op);
    switch (op) {
    case 0: case 1: case 2: case 3: { /* an append */
      batch b;
      unsigned sb = next(r);
      int s = sb % 16 == 15 ? -1 : (int)(sb % NSTREAMS);
      size_t n = 0;
      if (next(r) % 16 != 0) { /* else no events: ER_INVALID */
        n = 1 + next(r) % 3;
        if (next(r) % 4 == 0) n += next(r) % 3;
      }
      pick_batch(r, &b, s < 0 ? 0 : s, n);
      b.stream = s;
      b.expected = pick_expected(r, s < 0 ? 0 : M.version[s]);
      do_append(&b);
      break;
    }
    case 4: case 5: { /* a retry of an earlier append */
      batch b;
      if (M.nap == 0) break;
      pick_retry(r, &b, next(r) % M.nap);
      do_append(&b);
      break;
    }
    case 6: { /* a transaction */
      batch bs[MAX_TXN];
      size_t k = 1 + next(r) % MAX_TXN, a;
      for (a = 0; a < k; a++) {
        unsigned kind = next(r) % 4;
        if (kind == 0 && M.nap > 0) {
          pick_retry(r, &bs[a], next(r) % M.nap);
        } else {
          int s = (int)(next(r) % NSTREAMS);
          size_t n = 1 + next(r) % 3;
          /* an exact expectation sees the appends queued before it */
          pick_batch(r, &bs[a], s, n);
          bs[a].expected = pick_expected(r, M.version[s]);
        }
        switch (next(r) % 6) {
        case 4: bs[a].time = INT64_C(1000000); break;          /* 1970 */
        case 5: bs[a].time = INT64_C(4000000000000000); break; /* 2096 */
        default: bs[a].time = 0;                                /* now */
        }
      }
      do_txn(r, bs, k);
      break;
    }
    case 7: case 8: { /* read a stream */
      int s = (int)(next(r) % NSTREAMS);
      uint64_t from = next(r) % 6, count = next(r) % 5;
      check_stream(s, from, count == 4 ? ER_UNLIMITED : count, (int)(next(r) % 2));
      break;
    }
    case 9: { /* read the log */
      uint64_t from = next(r) % 8, count = next(r) % 5;
      check_all(from, count == 4 ? ER_UNLIMITED : count, (int)(next(r) % 6));
      break;
    }
    case 10:
      check_at(next(r) % (M.n + 3));
      break;
    case 11: { /* the stream list */
      static const char *const pre[] = {"", "a", "a-1", "b-1", "\xff", "z", "c"};
      unsigned i = next(r) % 7;
      check_list(pre[i], strlen(pre[i]));
      break;
    }
    case 12: { /* close and reopen; an iterator left open dies with the store */
      er_iter *it = NULL;
      er_event ev;
      er_error err;
      int rc;
      if (reopens++ >= MAX_REOPENS) break;
      if (next(r) % 2) {
        size_t i, shown = 0; /* whether any event is left to read */
        for (i = 0; i < M.n && !shown; i++) shown = !removed(&M.ev[i]);
        rc = er_read_all(S, 0, ER_UNLIMITED, NULL, &it, &err);
        if (rc != ER_OK) FAIL("er_read_all: %s", code_name(rc));
        rc = er_iter_next(it, &ev, &err);
        if (rc != (shown ? ER_OK : ER_NOT_FOUND))
          FAIL("er_iter_next before the close: %s, model %s", code_name(rc),
               code_name(shown ? ER_OK : ER_NOT_FOUND));
      }
      er_close(S);
      S = NULL;
      if (it) {
        rc = er_iter_next(it, &ev, &err);
        if (rc != ER_INVALID) FAIL("er_iter_next after er_close: %s", code_name(rc));
      }
      open_store();
      er_iter_free(it);
      check_versions();
      break;
    }
    case 13: { /* a second writable open is refused */
      er_store *s2 = NULL;
      er_error err;
      int rc;
      if (reopens++ >= MAX_REOPENS) break;
      rc = er_open(dir, NULL, &s2, &err);
      if (rc != ER_LOCKED) FAIL("a second writable open: %s", code_name(rc));
      if (s2) FAIL("a refused open handed out a store");
      break;
    }
    case 16: case 17: case 18:
      do_lifecycle(r, (int)(next(r) % 4));
      break;
    case 19: /* a compaction costs about as much as an open */
      if (compactions++ < MAX_COMPACTIONS) do_compact();
      break;
    case 20: /* personal data: forget a subject */
      do_forget((int)(next(r) % NSUBJECTS));
      break;
    default: /* 14, 15: plain appends with ER_ANY, to grow the streams */
    {
      batch b;
      int s = (int)(next(r) % NSTREAMS);
      pick_batch(r, &b, s, 1 + next(r) % 4);
      b.expected = ER_ANY;
      do_append(&b);
    }
    }
  }
}

static void at_exit(void) {
  if (S) er_close(S);
  S = NULL;
  fu_rmtree(dir);
  if (tolerated_gap)
    fprintf(stderr, "ops: %lu inputs; %lu times an id reused outside a retry was "
            "ER_DUPLICATE_EVENT where the header says ER_WRONG_EXPECTED_VERSION "
            "(tolerated; -DOPS_STRICT to fail)\n", inputs, tolerated_gap);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  trace = getenv("OPS_TRACE") != NULL;
  dir = fu_mkdtemp();
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static int registered;
  in r;
  r.p = data;
  r.n = size;
  memset(&M, 0, sizeof M);
  next_fresh = 0;
  inputs++;
  fu_rmtree(dir); /* the previous input's store */
  CHECK(mkdir(dir, 0700) == 0);
  open_store();
  if (!registered) { /* after the first open: see jsonl_import.c */
    atexit(at_exit);
    registered = 1;
  }
  run(&r);
  check_everything();
  er_close(S);
  S = NULL;
  return 0;
}
