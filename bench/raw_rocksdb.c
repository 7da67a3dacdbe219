/* raw_rocksdb.c -- the ceiling: the same workloads as plain RocksDB puts and
 * iterator reads through the C API, with the options eventrocks uses (16 MiB
 * memtables, LZ4, a 10-bit bloom filter, a 32 MiB block cache) so that the
 * ratios show the cost of eventrocks itself, not of a different tuning.
 *
 * One key per event: stream, 0x00, big-endian version -> ~150-byte value.
 * No version check, no global log, no id index: the least work an event
 * store on RocksDB could do.  Workloads: append1, append100, append_rr (appends
 * of 10 events round-robin over 1000 streams), read.
 *
 * Built with -DSAME_KEYS (build/bench/raw_layout) the appends write the keys
 * eventrocks writes, with no checks and no encoding: per event the value
 * under its global position and again under its stream key, a 16-byte id
 * -> position entry, and per write one stream head.  It separates the cost
 * of the layout from the cost of the code around it.  */
#include <rocksdb/c.h>

#include "bench_util.h"

static rocksdb_t *db;
#ifdef SAME_KEYS
/* default, log, streams, ids, heads: the families eventrocks writes */
static rocksdb_column_family_handle_t *cfs[5];
#endif
static rocksdb_options_t *opts;
static rocksdb_block_based_table_options_t *topts;
static rocksdb_cache_t *cache;
static rocksdb_writeoptions_t *wopts;
static rocksdb_readoptions_t *ropts;

static void check(char *err, const char *what) {
  if (err) BENCH_DIE("raw_rocksdb: %s: %s", what, err);
}

static void open_db(const char *dir, int durable) {
  char *err = NULL;
  opts = rocksdb_options_create();
  rocksdb_options_set_create_if_missing(opts, 1);
  rocksdb_options_set_max_background_jobs(opts, 2);
  rocksdb_options_set_write_buffer_size(opts, (size_t)16 << 20);
  rocksdb_options_set_db_write_buffer_size(opts, (size_t)48 << 20);
  rocksdb_options_set_compression(opts, rocksdb_lz4_compression);
  rocksdb_options_set_info_log_level(opts, 2);
  cache = rocksdb_cache_create_lru((size_t)32 << 20);
  topts = rocksdb_block_based_options_create();
  rocksdb_block_based_options_set_block_cache(topts, cache);
  rocksdb_block_based_options_set_filter_policy(topts,
                                                rocksdb_filterpolicy_create_bloom(10));
  rocksdb_options_set_block_based_table_factory(opts, topts);
#ifdef SAME_KEYS
  {
    const char *names[5] = {"default", "log", "streams", "ids", "heads"};
    const rocksdb_options_t *o[5] = {opts, opts, opts, opts, opts};
    rocksdb_options_set_create_missing_column_families(opts, 1);
    db = rocksdb_open_column_families(opts, dir, 5, names, o, cfs, &err);
  }
#else
  db = rocksdb_open(opts, dir, &err);
#endif
  check(err, "open");
  wopts = rocksdb_writeoptions_create();
  rocksdb_writeoptions_set_sync(wopts, durable);
  ropts = rocksdb_readoptions_create();
}

static void close_db(void) {
#ifdef SAME_KEYS
  int i;
  for (i = 0; i < 5; i++) rocksdb_column_family_handle_destroy(cfs[i]);
#endif
  rocksdb_close(db);
  rocksdb_writeoptions_destroy(wopts);
  rocksdb_readoptions_destroy(ropts);
  rocksdb_options_destroy(opts);
  rocksdb_block_based_options_destroy(topts);
  rocksdb_cache_destroy(cache);
}

/* "<name>\0<be64 version>" into key; returns its length */
static size_t make_key(char *key, const char *name, long long k,
                       unsigned long long version) {
  int len = k >= 0 ? sprintf(key, "%s-%lld", name, k) : sprintf(key, "%s", name);
  size_t n = (size_t)len + 1;
  int b;
  key[len] = 0;
  for (b = 7; b >= 0; b--) key[n++] = (char)(version >> (b * 8));
  return n;
}

/* events i = 1..n to stream order-(i % 1000), `per` per write */
static double fill_orders(long long n, int per) {
  char key[64], val[256];
  unsigned long long *ver = calloc(1000, sizeof *ver);
  rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
  long long i, j, calls = n / per;
  double t0 = bench_now();
  char *err = NULL;
  for (j = 0; j < calls; j++) {
    long long s = (per == 1 ? j + 1 : j) % 1000;
    for (i = 0; i < per; i++) {
      long long e = j * per + i + 1;
      size_t kl = make_key(key, "order", s, ++ver[s]);
      size_t vl = bench_payload(val, sizeof val, e);
#ifdef SAME_KEYS
      {
        unsigned char pk[8], id[16], pv[8];
        int b;
        unsigned long long x = (unsigned long long)e * 0x9E3779B97F4A7C15ull;
        for (b = 0; b < 8; b++) pk[b] = (unsigned char)((unsigned long long)e >> (56 - 8 * b));
        for (b = 0; b < 8; b++) pv[b] = (unsigned char)((unsigned long long)e >> (8 * b));
        memcpy(id, pk + 2, 6); /* time-ordered first bytes, like a UUID v7 */
        for (b = 6; b < 16; b++) id[b] = (unsigned char)(x >> (8 * (b % 8)));
        rocksdb_writebatch_put_cf(wb, cfs[1], (const char *)pk, 8, val, vl);
        rocksdb_writebatch_put_cf(wb, cfs[2], key, kl, val, vl);
        rocksdb_writebatch_put_cf(wb, cfs[3], (const char *)id, 16, (const char *)pv, 8);
      }
      if (i == per - 1)
        rocksdb_writebatch_put_cf(wb, cfs[4], key, kl - 9, (const char *)&ver[s], 8);
#else
      if (per == 1) {
        rocksdb_put(db, wopts, key, kl, val, vl, &err);
        check(err, "put");
      } else {
        rocksdb_writebatch_put(wb, key, kl, val, vl);
      }
#endif
    }
#ifdef SAME_KEYS
    if (1) {
#else
    if (per > 1) {
#endif
      rocksdb_write(db, wopts, wb, &err);
      check(err, "write");
      rocksdb_writebatch_clear(wb);
    }
  }
  t0 = bench_now() - t0;
  rocksdb_writebatch_destroy(wb);
  free(ver);
  return t0;
}

/* Count (and touch) every value whose key is in [lo, hi); hi NULL = to the
 * end.  Returns the number of values, their bytes into *bytes. */
static long long read_range(const char *lo, size_t lo_len, const char *hi,
                            size_t hi_len, unsigned long long *bytes) {
  rocksdb_readoptions_t *r = rocksdb_readoptions_create();
  rocksdb_iterator_t *it;
  long long count = 0;
  if (hi) rocksdb_readoptions_set_iterate_upper_bound(r, hi, hi_len);
  it = rocksdb_create_iterator(db, r);
  *bytes = 0;
  for (rocksdb_iter_seek(it, lo, lo_len); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
    size_t vl;
    const char *v = rocksdb_iter_value(it, &vl);
    *bytes += vl + (unsigned char)v[vl / 2];
    count++;
  }
  rocksdb_iter_destroy(it);
  rocksdb_readoptions_destroy(r);
  return count;
}

int main(int argc, char **argv) {
  bench_args a;
  bench_parse(argc, argv, &a);
  if (strcmp(a.workload, "append1") == 0 || strcmp(a.workload, "append100") == 0 ||
      strcmp(a.workload, "append_rr") == 0) {
    int per = strcmp(a.workload, "append1") == 0 ? 1 : strcmp(a.workload, "append_rr") == 0 ? 10 : 100;
    char metric[32];
    double t;
    open_db(a.dir, a.durable);
    t = fill_orders(a.n, per);
    snprintf(metric, sizeof metric, "%s.eps", a.workload);
    bench_result(metric, (double)(a.n / per * per) / t);
    close_db();
  } else if (strcmp(a.workload, "read") == 0) {
#ifdef SAME_KEYS
    return 0; /* reads of this layout are what core_bench measures */
#endif
    char key[64], val[256];
    long long i, got, bigs = 0;
    unsigned long long big_ver = 0, *ver = calloc(1000, sizeof *ver), bytes;
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    char *err = NULL;
    double t;
    open_db(a.dir, 0);
    for (i = 1; i <= a.n; i++) {
      size_t kl = i % 2 == 0 ? make_key(key, "tally-big", -1, ++big_ver)
                             : make_key(key, "other", i % 1000, ++ver[i % 1000]);
      bigs += i % 2 == 0;
      rocksdb_writebatch_put(wb, key, kl, val, bench_payload(val, sizeof val, i));
      if (i % 1000 == 0 || i == a.n) {
        rocksdb_write(db, wopts, wb, &err);
        check(err, "write");
        rocksdb_writebatch_clear(wb);
      }
    }
    rocksdb_writebatch_destroy(wb);
    free(ver);
    t = bench_now();
    got = read_range("tally-big\0", 10, "tally-big\1", 10, &bytes);
    t = bench_now() - t;
    if (got != bigs) BENCH_DIE("raw_rocksdb: read %lld of %lld events of tally-big", got, bigs);
    bench_result("load.eps", (double)got / t);
    t = bench_now();
    got = read_range("", 0, NULL, 0, &bytes);
    t = bench_now() - t;
    if (got != a.n) BENCH_DIE("raw_rocksdb: scanned %lld of %lld events", got, a.n);
    bench_result("scan.eps", (double)got / t);
    close_db();
  } else if (strcmp(a.workload, "catchup") && strcmp(a.workload, "snapshot") &&
             strcmp(a.workload, "latency") && strcmp(a.workload, "rss")) {
    BENCH_DIE("raw_rocksdb: unknown workload '%s'", a.workload);
  }
  return 0;
}
