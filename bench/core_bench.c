/* core_bench.c -- eventrocks core from C, no Lua: the same workloads as the
 * Lua contenders, to split the cost between the core and the binding.
 * Workloads: append1, append100, append_rr (appends of 10 events round-robin
 * over 1000 streams), read, catchup, subscribe.  The payload is the same
 * ~150 bytes of JSON as raw_rocksdb.c (the core stores opaque bytes). */
#include <eventrocks.h>

#include "bench_util.h"

static er_store *store;
static er_error err;

static void ok(int rc, const char *what) {
  if (rc != ER_OK) BENCH_DIE("core_bench: %s: %s", what, err.message);
}

static void open_store(const char *dir, int durable) {
  er_options o;
  er_options_init(&o);
  o.sync = durable;
  ok(er_open(dir, &o, &store, &err), "open");
}

/* events i = 1..n: append j of `per` events to order-(j % 1000) with its
 * expected version */
static double fill_orders(long long n, int per) {
  static char payloads[100][256];
  er_new_event ev[100];
  uint64_t *ver = calloc(1000, sizeof *ver);
  long long i, j, calls = n / per;
  double t0 = bench_now();
  for (j = 0; j < calls; j++) {
    long long s = (per == 1 ? j + 1 : j) % 1000;
    char stream[32];
    int sl = sprintf(stream, "order-%lld", s);
    er_appended res;
    for (i = 0; i < per; i++) {
      memset(&ev[i], 0, sizeof ev[i]);
      ev[i].type = "ItemAdded";
      ev[i].type_len = 9;
      ev[i].data = payloads[i];
      ev[i].data_len = bench_payload(payloads[i], sizeof payloads[i], j * per + i + 1);
    }
    ok(er_append(store, stream, (size_t)sl, (int64_t)ver[s], ev, (size_t)per, &res, &err),
       "append");
    ver[s] = res.version;
  }
  t0 = bench_now() - t0;
  free(ver);
  return t0;
}

/* The qty field of a payload (the fold's work: find and parse one field). */
static long long qty_of(const er_event *e) {
  const char *p = memmem(e->data, e->data_len, "\"qty\":", 6);
  return p ? strtoll(p + 6, NULL, 10) : 0;
}

static void read_workload(long long n) {
  er_new_event ev[1000];
  static char payloads[1000][256];
  long long i, k = 0, count = 0, qty = 0, bigs = 0;
  er_iter *it;
  er_event e;
  double t;
  int rc;
  /* set-up: batches of up to 1000 consecutive events, one append per run
   * of a stream inside it (so big and the others interleave) */
  for (i = 1; i <= n; i++) {
    char stream[32];
    int sl = i % 2 == 0 ? sprintf(stream, "tally-big") : sprintf(stream, "other-%lld", i % 1000);
    memset(&ev[0], 0, sizeof ev[0]);
    ev[0].type = "ItemAdded";
    ev[0].type_len = 9;
    ev[0].data = payloads[k];
    ev[0].data_len = bench_payload(payloads[k], sizeof payloads[k], i);
    ok(er_append(store, stream, (size_t)sl, ER_ANY, ev, 1, NULL, &err), "append");
    bigs += i % 2 == 0;
  }
  t = bench_now();
  ok(er_read_stream(store, "tally-big", 9, 0, ER_UNLIMITED, 0, &it, &err), "read_stream");
  while ((rc = er_iter_next(it, &e, &err)) == ER_OK) {
    count++;
    qty += qty_of(&e);
  }
  if (rc != ER_NOT_FOUND) ok(rc, "iter_next");
  er_iter_free(it);
  t = bench_now() - t;
  if (count != bigs || qty <= 0) BENCH_DIE("core_bench: folded %lld of %lld", count, bigs);
  bench_result("load.eps", (double)count / t);
  t = bench_now();
  count = 0;
  ok(er_read_all(store, 0, ER_UNLIMITED, NULL, &it, &err), "read_all");
  while ((rc = er_iter_next(it, &e, &err)) == ER_OK) {
    count++;
    qty += ((const unsigned char *)e.data)[e.data_len / 2];
  }
  if (rc != ER_NOT_FOUND) ok(rc, "iter_next");
  er_iter_free(it);
  t = bench_now() - t;
  if (count != n) BENCH_DIE("core_bench: scanned %lld of %lld", count, n);
  bench_result("scan.eps", (double)count / t);
}

/* A projection keeping a count per stream: every 500 events the changed
 * counts and the checkpoint go into one transaction. */
static void catchup_workload(long long n) {
  enum { STREAMS = 1000, BATCH = 500 };
  uint64_t counts[STREAMS] = {0};
  unsigned char dirty[STREAMS] = {0};
  uint64_t from = 0, done = 0;
  double t;
  fill_orders(n, 100);
  t = bench_now();
  for (;;) {
    er_iter *it;
    er_event e;
    er_txn *txn;
    int rc, got = 0, s;
    uint64_t last = 0;
    ok(er_read_all(store, from + 1, BATCH, NULL, &it, &err), "read_all");
    while ((rc = er_iter_next(it, &e, &err)) == ER_OK) {
      s = atoi(e.stream + 6); /* "order-N" */
      counts[s]++;
      dirty[s] = 1;
      last = e.position;
      got++;
    }
    if (rc != ER_NOT_FOUND) ok(rc, "iter_next");
    er_iter_free(it);
    if (!got) break;
    ok(er_txn_begin(store, &txn, &err), "txn_begin");
    for (s = 0; s < STREAMS; s++)
      if (dirty[s]) {
        char key[32];
        unsigned char val[8];
        int kl = sprintf(key, "counts/order-%d", s), b;
        for (b = 0; b < 8; b++) val[b] = (unsigned char)(counts[s] >> (8 * b));
        ok(er_txn_put(txn, ER_VIEWS, key, (size_t)kl, val, 8, &err), "txn_put");
        dirty[s] = 0;
      }
    {
      unsigned char cp[8];
      int b;
      for (b = 0; b < 8; b++) cp[b] = (unsigned char)(last >> (8 * b));
      ok(er_txn_put(txn, ER_CHECKPOINTS, "counts", 6, cp, 8, &err), "txn_put");
    }
    ok(er_txn_commit(txn, &err), "txn_commit");
    er_txn_free(txn);
    from = last;
    done += (uint64_t)got;
  }
  t = bench_now() - t;
  if ((long long)done != n / 100 * 100) BENCH_DIE("core_bench: caught up %llu", (unsigned long long)done);
  bench_result("catchup.eps", (double)done / t);
}

/* subscribe: a writer thread appends n events one at a time, ~100 us
 * apart, each holding the monotonic time just before its append; the
 * main thread waits with er_wait_position and reads each new event: the
 * latency is from the append call to the reader holding the event. */
#include <pthread.h>

static volatile int writer_failed;
static double *append_took; /* the writer's own append durations */

static void *sub_writer(void *arg) {
  long long n = *(const long long *)arg, i;
  for (i = 0; i < n; i++) {
    er_new_event ev;
    er_error werr;
    double t;
    struct timespec pause = { 0, 100000 };
    nanosleep(&pause, NULL);
    memset(&ev, 0, sizeof ev);
    ev.type = "Ticked";
    ev.type_len = 6;
    t = bench_now();
    ev.data = &t;
    ev.data_len = sizeof t;
    if (er_append(store, "clock-1", 7, ER_ANY, &ev, 1, NULL, &werr) != ER_OK) writer_failed = 1;
    append_took[i] = bench_now() - t;
  }
  return NULL;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static void subscribe_workload(long long n) {
  double *lat = malloc((size_t)n * sizeof *lat);
  uint64_t seen = 0;
  pthread_t th;
  append_took = malloc((size_t)n * sizeof *append_took);
  if (!lat || !append_took) BENCH_DIE("core_bench: out of memory");
  if (pthread_create(&th, NULL, sub_writer, &n) != 0) BENCH_DIE("core_bench: pthread_create");
  while ((long long)seen < n) {
    uint64_t last = 0, p;
    ok(er_wait_position(store, seen, 10000, &last, &err), "wait");
    if (last <= seen) BENCH_DIE("core_bench: no commit within 10 s");
    for (p = seen + 1; p <= last; p++) {
      er_event e;
      void *mem = NULL;
      double t;
      ok(er_event_at(store, p, &e, &mem, &err), "event_at");
      memcpy(&t, e.data, sizeof t);
      lat[p - 1] = bench_now() - t;
      er_free(mem);
    }
    seen = last;
  }
  pthread_join(th, NULL);
  if (writer_failed) BENCH_DIE("core_bench: an append failed");
  qsort(lat, (size_t)n, sizeof *lat, cmp_double);
  bench_result("sub_inproc.p50_us", lat[(n - 1) / 2] * 1e6);
  bench_result("sub_inproc.p99_us", lat[(size_t)((double)(n - 1) * 0.99)] * 1e6);
  /* the part of it that is the append call itself */
  qsort(append_took, (size_t)n, sizeof *append_took, cmp_double);
  bench_result("sub_inproc_append.p50_us", append_took[(n - 1) / 2] * 1e6);
  bench_result("sub_inproc_append.p99_us", append_took[(size_t)((double)(n - 1) * 0.99)] * 1e6);
  free(append_took);
  free(lat);
}

int main(int argc, char **argv) {
  bench_args a;
  bench_parse(argc, argv, &a);
  if (strcmp(a.workload, "append1") == 0) {
    open_store(a.dir, a.durable);
    bench_result("append1.eps", (double)a.n / fill_orders(a.n, 1));
  } else if (strcmp(a.workload, "append100") == 0) {
    open_store(a.dir, a.durable);
    bench_result("append100.eps", (double)(a.n / 100 * 100) / fill_orders(a.n, 100));
  } else if (strcmp(a.workload, "append_rr") == 0) {
    open_store(a.dir, a.durable);
    bench_result("append_rr.eps", (double)(a.n / 10 * 10) / fill_orders(a.n, 10));
  } else if (strcmp(a.workload, "read") == 0) {
    open_store(a.dir, 0);
    read_workload(a.n);
  } else if (strcmp(a.workload, "catchup") == 0) {
    open_store(a.dir, 0);
    catchup_workload(a.n);
  } else if (strcmp(a.workload, "subscribe") == 0) {
    open_store(a.dir, 0);
    subscribe_workload(a.n);
  } else if (strcmp(a.workload, "snapshot") && strcmp(a.workload, "latency") &&
             strcmp(a.workload, "rss")) {
    BENCH_DIE("core_bench: unknown workload '%s'", a.workload);
  } else {
    return 0;
  }
  er_close(store);
  return 0;
}
