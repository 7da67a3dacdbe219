/* raw_rocksdb.c -- the ceiling: the same workloads as plain RocksDB puts and
 * iterator reads through the C API, with the options eventrocks uses (16 MiB
 * memtables, LZ4, a 10-bit bloom filter, a 32 MiB block cache) so that the
 * ratios show the cost of eventrocks itself, not of a different tuning.
 *
 * One key per event: stream, 0x00, big-endian version -> ~150-byte value.
 * No version check, no global log, no id index: the least work an event
 * store on RocksDB could do.  Workloads: append1, append100, read.  */
#include <rocksdb/c.h>

#include "bench_util.h"

static rocksdb_t *db;
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
  db = rocksdb_open(opts, dir, &err);
  check(err, "open");
  wopts = rocksdb_writeoptions_create();
  rocksdb_writeoptions_set_sync(wopts, durable);
  ropts = rocksdb_readoptions_create();
}

static void close_db(void) {
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
      if (per == 1) {
        rocksdb_put(db, wopts, key, kl, val, vl, &err);
        check(err, "put");
      } else {
        rocksdb_writebatch_put(wb, key, kl, val, vl);
      }
    }
    if (per > 1) {
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
  if (strcmp(a.workload, "append1") == 0 || strcmp(a.workload, "append100") == 0) {
    int per = a.workload[6] == '1' && a.workload[7] == 0 ? 1 : 100;
    double t;
    open_db(a.dir, a.durable);
    t = fill_orders(a.n, per);
    bench_result(per == 1 ? "append1.eps" : "append100.eps", (double)(a.n / per * per) / t);
    close_db();
  } else if (strcmp(a.workload, "read") == 0) {
    char key[64], val[256];
    long long i, got, bigs = 0;
    unsigned long long big_ver = 0, *ver = calloc(1000, sizeof *ver), bytes;
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    char *err = NULL;
    double t;
    open_db(a.dir, 0);
    for (i = 1; i <= a.n; i++) {
      size_t kl = i % 2 == 0 ? make_key(key, "big", -1, ++big_ver)
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
    got = read_range("big\0", 4, "big\1", 4, &bytes);
    t = bench_now() - t;
    if (got != bigs) BENCH_DIE("raw_rocksdb: read %lld of %lld events of big", got, bigs);
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
