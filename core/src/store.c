/* store.c -- opening and closing a store: its directory, RocksDB options
 * and column families, format marker and counters; refreshing a read-only
 * handle; the commit hook. */
#include "internal.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>


const char *const er__cf_names[CF_COUNT] = {
  "default", "log", "streams", "heads", "ids", "snapshots", "checkpoints",
  "views", "lifecycle", "keys", "subjects"
};

static const char format_key[] = "format";
const char er__clock_key[] = "clock"; /* see er__commit: the time high-water mark */

const char *er_path(const er_store *s) { return s->path; }
int er_is_read_only(const er_store *s) { return s->read_only; }

static int remove_entry(const char *path, const struct stat *st, int flag,
                        struct FTW *ftw) {
  (void)st;
  (void)flag;
  (void)ftw;
  remove(path);
  return 0;
}

/* rm -r of the secondary instance's directory (only files RocksDB made). */
static void remove_tree(const char *dir) {
  nftw(dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
}

/* Write the memtables out before closing: the next open (and every reader
 * opened meanwhile) then has no write-ahead log to replay into memory.
 * Best effort: the log stays valid if a flush fails. */
static void flush_all(er_store *s) {
  rocksdb_flushoptions_t *fo = rocksdb_flushoptions_create();
  size_t i;
  char *rerr = NULL;
  rocksdb_flushoptions_set_wait(fo, 1);
  for (i = 0; i < CF_COUNT; i++) {
    if (!s->cf[i]) continue;
    rocksdb_flush_cf(s->db, fo, s->cf[i], &rerr);
    if (rerr) {
      rocksdb_free(rerr);
      rerr = NULL;
    }
  }
  rocksdb_flushoptions_destroy(fo);
}

/* Release everything `s` holds; safe on a partly opened store. */
static void store_free(er_store *s) {
  size_t i;
  if (!s) return;
  er__iter_detach_all(s);
  if (s->db && !s->read_only && !s->wal_failed) flush_all(s);
  for (i = 0; i < CF_COUNT; i++)
    if (s->cf[i]) rocksdb_column_family_handle_destroy(s->cf[i]);
  for (i = 0; i < s->n_extra_cf; i++)
    rocksdb_column_family_handle_destroy(s->extra_cf[i]);
  free(s->extra_cf);
  /* RocksDB 7.8 leaks a column family reference when a write cannot start
   * the new WAL file that two full memtables need at once (ScheduleFlushes
   * stops at the first failure without releasing the others), and closing
   * the instance then aborts the process on an assertion.  After such a
   * failure the instance stays open, with its files and its lock, until the
   * process ends; what it acknowledged is in its WAL. */
  if (s->db && !s->wal_failed) rocksdb_close(s->db);
  if (s->ropts) rocksdb_readoptions_destroy(s->ropts);
  if (s->wopts) rocksdb_writeoptions_destroy(s->wopts);
  if (s->options) rocksdb_options_destroy(s->options);
  if (s->scan_options) rocksdb_options_destroy(s->scan_options);
  if (s->head_options) rocksdb_options_destroy(s->head_options);
  if (s->table_options) rocksdb_block_based_options_destroy(s->table_options);
  if (s->scan_table_options)
    rocksdb_block_based_options_destroy(s->scan_table_options);
  if (s->cache) rocksdb_cache_destroy(s->cache);
  er__head_cache_clear(s);
  free(s->heads);
  er__life_free(s);
  er__crypt_close(s);
  pthread_rwlock_destroy(&s->life_lock);
  pthread_mutex_destroy(&s->write_lock);
  pthread_mutex_destroy(&s->iter_lock);
  er__wait_destroy(s);
  free(s->path);
  free(s);
}

void er_close(er_store *s) { store_free(s); }

/* Table options shared by both kinds of family: blocks go through the one
 * LRU cache, and so do index and filter blocks, so that a store of any size
 * is read in bounded memory (they would otherwise stay in memory for every
 * open table file: tens of MiB at ten million events). */
static rocksdb_block_based_table_options_t *table_options(er_store *s,
                                                          int bloom,
                                                          size_t block) {
  rocksdb_block_based_table_options_t *t = rocksdb_block_based_options_create();
  rocksdb_block_based_options_set_block_cache(t, s->cache);
  rocksdb_block_based_options_set_block_size(t, block);
  rocksdb_block_based_options_set_cache_index_and_filter_blocks(t, 1);
  rocksdb_block_based_options_set_cache_index_and_filter_blocks_with_high_priority(t, 1);
  rocksdb_block_based_options_set_pin_l0_filter_and_index_blocks_in_cache(t, 1);
  if (bloom)
    rocksdb_block_based_options_set_filter_policy(
        t, rocksdb_filterpolicy_create_bloom(10));
  return t;
}

static rocksdb_options_t *family_options(int create, int read_only) {
  rocksdb_options_t *o = rocksdb_options_create();
  rocksdb_options_set_create_if_missing(o, create);
  rocksdb_options_set_create_missing_column_families(o, !read_only);
  rocksdb_options_set_max_background_jobs(o, 2);
  rocksdb_options_set_write_buffer_size(o, (size_t)16 << 20);
  rocksdb_options_set_db_write_buffer_size(o, (size_t)48 << 20);
  rocksdb_options_set_compression(o, rocksdb_lz4_compression);
  /* RocksDB's info log (the LOG file) keeps only its header: the options
   * and versions of each open.  Debian's librocksdb is built with
   * assertions, and once a write to the LOG file has failed (a full disk)
   * the next one aborts the process in WritableFileWriter; RocksDB's own
   * recovery thread logs as soon as it sees the full disk.  The store's
   * errors reach the caller as er_error, so the log adds nothing else. */
  rocksdb_options_set_info_log_level(o, 5); /* HEADER_LEVEL */
  rocksdb_options_set_keep_log_file_num(o, 4);
  return o;
}

/* Three sets of options: the log and the stream index are read in key
 * order by iterators, never probed for absent keys, so they carry no bloom
 * filter (which would cost CPU at every flush and memory at every read) and
 * use larger blocks; heads, ids and the key-value spaces are probed by key
 * and keep a 10-bit bloom filter; heads are also updated in place. */
static void setup_options(er_store *s, int create) {
  s->cache = rocksdb_cache_create_lru((size_t)32 << 20);
  s->options = family_options(create, s->read_only);
  s->table_options = table_options(s, 1, 4096);
  rocksdb_options_set_block_based_table_factory(s->options, s->table_options);
  /* Heads are overwritten at every append: updated in place, their
   * memtable keeps one entry per stream instead of one per append, and an
   * append's head lands in a small skiplist instead of a deep one (a tenth
   * of a single append's instructions).  The price: a streams iterator may
   * report a version newer than when it was created.  RocksDB allows it
   * only without concurrent memtable writes, which the write lock rules out
   * anyway. */
  rocksdb_options_set_allow_concurrent_memtable_write(s->options, 0);
  s->head_options = family_options(create, s->read_only);
  rocksdb_options_set_block_based_table_factory(s->head_options, s->table_options);
  rocksdb_options_set_inplace_update_support(s->head_options, 1);
  s->scan_options = family_options(create, s->read_only);
  s->scan_table_options = table_options(s, 0, 16384);
  rocksdb_options_set_block_based_table_factory(s->scan_options,
                                                s->scan_table_options);
}

/* Read the format marker and the newest position; write the marker into a
 * new store. */
static int check_format(er_store *s, er_error *err) {
  char *rerr = NULL;
  size_t len = 0;
  char *val = rocksdb_get_cf(s->db, s->ropts, s->cf[CF_DEFAULT], format_key,
                             sizeof format_key - 1, &len, &rerr);
  if (rerr) return er__rocks_fail(err, "reading the format marker", rerr);
  if (val) {
    uint32_t fmt = len == 4 ? er__get_le32((const uint8_t *)val) : 0;
    rocksdb_free(val);
    if (len != 4)
      return er__fail(err, ER_INVALID, "%s: bad format marker", s->path);
    if (fmt < ER_FORMAT_BASE || fmt > ER_FORMAT)
      return er__fail(err, ER_INVALID,
                      "%s: store format %u is not supported by eventrocks "
                      "%s (format %d)%s",
                      s->path, fmt, ER_VERSION_STRING, ER_FORMAT,
                      fmt > ER_FORMAT ? "; upgrade eventrocks" : "");
    s->format = fmt;
    return ER_OK;
  } else {
    /* No marker: a store we are creating now, or something else. */
    int empty;
    rocksdb_iterator_t *it =
        rocksdb_create_iterator_cf(s->db, s->ropts, s->cf[CF_DEFAULT]);
    rocksdb_iter_seek_to_first(it);
    empty = !rocksdb_iter_valid(it);
    rocksdb_iter_destroy(it);
    if (s->read_only)
      /* it has our families, so it was made by eventrocks: a read-only open
       * racing a writer that is opening or closing the store sees this */
      return er__fail(err, ER_IO,
                      "%s: could not read the format marker (a writer may be "
                      "opening or closing the store; try again)",
                      s->path);
    if (!empty)
      return er__fail(err, ER_INVALID,
                      "%s: not an eventrocks store (no format marker)",
                      s->path);
    {
      uint8_t buf[4];
      /* the oldest format that holds what a new store has: older builds
       * can open it until a lifecycle rule needs format 2 */
      er__put_le32(buf, ER_FORMAT_BASE);
      s->format = ER_FORMAT_BASE;
      rocksdb_put_cf(s->db, s->wopts, s->cf[CF_DEFAULT], format_key,
                     sizeof format_key - 1, (const char *)buf, 4, &rerr);
      if (rerr) return er__rocks_fail(err, "writing the format marker", rerr);
    }
    return ER_OK;
  }
}

static int load_counters(er_store *s, er_error *err) {
  rocksdb_iterator_t *it =
      rocksdb_create_iterator_cf(s->db, s->ropts, s->cf[CF_LOG]);
  char *rerr = NULL, *val;
  size_t len = 0;
  int rc = ER_OK;
  rocksdb_iter_seek_to_last(it);
  if (rocksdb_iter_valid(it)) {
    size_t klen, vlen;
    const char *k = rocksdb_iter_key(it, &klen);
    const char *v = rocksdb_iter_value(it, &vlen);
    er_event ev;
    uint64_t first, last;
    if (klen == 8 && er__is_hole(v, vlen) &&
        er__hole_decode(v, vlen, &first, &last, &ev.time) == ER_OK &&
        first == er__get_be64((const uint8_t *)k)) {
      s->last_position = last; /* the newest events were removed */
      s->last_time = ev.time;
    } else if (klen != 8 || er__record_decode(v, vlen, &ev, NULL) != ER_OK) {
      rc = er__fail(err, ER_CORRUPTION, "%s: the newest log record is damaged",
                    s->path);
    } else {
      s->last_position = er__get_be64((const uint8_t *)k);
      s->last_time = ev.time;
    }
  } else {
    rocksdb_iter_get_error(it, &rerr);
    if (rerr) rc = er__rocks_fail(err, "reading the log", rerr);
  }
  rocksdb_iter_destroy(it);
  if (rc != ER_OK) return rc;
  /* The newest record's time is the store's clock unless that record's
   * time was given (an import, a mirror): a commit with given times writes
   * the clock key, the store's own time and the position the commit ended
   * at, so the key rules when it names the last position. */
  val = rocksdb_get_cf(s->db, s->ropts, s->cf[CF_DEFAULT], er__clock_key,
                       sizeof er__clock_key - 1, &len, &rerr);
  if (rerr) return er__rocks_fail(err, "reading the clock", rerr);
  if (val && len == 16 &&
      er__get_le64((const uint8_t *)val + 8) == s->last_position)
    s->last_time = (int64_t)er__get_le64((const uint8_t *)val);
  else if (val && len == 8 && (int64_t)er__get_le64((const uint8_t *)val) > s->last_time)
    s->last_time = (int64_t)er__get_le64((const uint8_t *)val); /* older builds */
  rocksdb_free(val);
  /* A clock further ahead than a day is no clock of ours: a store written
   * by an older build let an imported time move it. */
  if (s->last_time > er__now_micros() + ER_CLOCK_AHEAD_LIMIT) s->last_time = 0;
  return ER_OK;
}

static int file_exists(const char *dir, const char *name) {
  struct stat st;
  char buf[4096];
  if (snprintf(buf, sizeof buf, "%s/%s", dir, name) >= (int)sizeof buf)
    return 0;
  return stat(buf, &st) == 0;
}

/* Whether `dir` holds a store (its CURRENT file) into `*found`; ER_IO,
 * naming the path, when the directory cannot be looked into. */
static int has_store(const char *dir, int *found, er_error *err) {
  struct stat st;
  char buf[4096];
  *found = 0;
  if (snprintf(buf, sizeof buf, "%s/CURRENT", dir) >= (int)sizeof buf)
    return er__fail(err, ER_INVALID, "%s: path too long", dir);
  if (stat(buf, &st) == 0) *found = 1;
  else if (errno != ENOENT) return er__fail(err, ER_IO, "%s: %s", dir, strerror(errno));
  return ER_OK;
}

/* Whether another process holds RocksDB's lock on the store in `dir` (it
 * has the store open for writing, or is creating it).  RocksDB locks the
 * LOCK file with fcntl; F_GETLK reports other processes' locks only. */
static int locked_by_other(const char *dir) {
  char buf[4096];
  struct flock fl;
  int fd, held = 0;
  if (snprintf(buf, sizeof buf, "%s/LOCK", dir) >= (int)sizeof buf) return 0;
  fd = open(buf, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  memset(&fl, 0, sizeof fl);
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  if (fcntl(fd, F_GETLK, &fl) == 0 && fl.l_type != F_UNLCK) held = 1;
  close(fd);
  return held;
}

/* Files RocksDB makes in a new store's directory before its CURRENT file:
 * what an interrupted (or concurrent) creation leaves. */
static int rocksdb_own_file(const char *name) {
  size_t n = strlen(name);
  return strcmp(name, "LOCK") == 0 || strcmp(name, "IDENTITY") == 0 ||
         strcmp(name, "CURRENT") == 0 || /* written since has_store looked */
         strcmp(name, "LOG") == 0 || strncmp(name, "LOG.old.", 8) == 0 ||
         strncmp(name, "MANIFEST-", 9) == 0 || strncmp(name, "OPTIONS-", 8) == 0 ||
         (n > 4 && strcmp(name + n - 4, ".log") == 0) ||
         (n > 6 && strcmp(name + n - 6, ".dbtmp") == 0);
}

/* A directory without a store may become one only when it is empty (or
 * holds only what an interrupted creation left): nothing is ever written
 * into a directory of other files.  ER_LOCKED when another process is
 * creating a store there right now. */
static int may_create_in(const char *dir, er_error *err) {
  DIR *d = opendir(dir);
  struct dirent *e;
  int foreign = 0;
  if (!d) return er__fail(err, ER_IO, "%s: %s", dir, strerror(errno));
  while ((e = readdir(d)) != NULL) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    if (!rocksdb_own_file(e->d_name)) foreign = 1;
  }
  closedir(d);
  /* the lock first: a creator's files come and go while we look */
  if (locked_by_other(dir))
    return er__fail(err, ER_LOCKED,
                    "%s: another process is creating a store there", dir);
  if (foreign)
    return er__fail(err, ER_INVALID,
                    "%s: not an eventrocks store (the directory holds other "
                    "files; a new store needs an empty directory)",
                    dir);
  return ER_OK;
}

/* Whether the RocksDB database at `path` is what a creation of a store
 * killed before its first family leaves: RocksDB writes CURRENT and a
 * manifest with only the 'default' family, then adds ours one by one.  Its
 * default family must be empty: a database of someone else's data is never
 * written into. */
static int interrupted_creation(const char *path, char **names, size_t n) {
  rocksdb_options_t *o;
  rocksdb_t *db;
  char *rerr = NULL;
  int empty = 0;
  if (n != 1 || strcmp(names[0], "default") != 0) return 0;
  o = rocksdb_options_create();
  db = rocksdb_open_for_read_only(o, path, 0, &rerr);
  if (db) {
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_iterator_t *it = rocksdb_create_iterator(db, ro);
    rocksdb_iter_seek_to_first(it);
    empty = !rocksdb_iter_valid(it);
    rocksdb_iter_get_error(it, &rerr);
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    rocksdb_close(db);
  }
  if (rerr) {
    empty = 0;
    rocksdb_free(rerr);
  }
  rocksdb_options_destroy(o);
  return empty;
}

/* The column families of the existing store at s->path into `*existing`
 * (NULL, 0 for a new store), checked: it must have our 'log' family (else
 * it is not ours, or another process is still creating it), and a
 * read-only open needs every family of this version. */
static int existing_families(er_store *s, char ***existing, size_t *n_existing,
                             er_error *err) {
  char *rerr = NULL, **names;
  size_t n = 0, i, j;
  *existing = NULL;
  *n_existing = 0;
  if (!file_exists(s->path, "CURRENT")) return ER_OK;
  names = rocksdb_list_column_families(s->options, s->path, &n, &rerr);
  if (rerr) return er__rocks_fail(err, s->path, rerr);
  for (i = 0, j = 0; i < n; i++)
    if (strcmp(names[i], er__cf_names[CF_LOG]) == 0) j = 1;
  if (!j) {
    int interrupted;
    /* a store that another process is creating has its families added
     * one by one, under RocksDB's lock */
    if (locked_by_other(s->path)) {
      rocksdb_list_column_families_destroy(names, n);
      return er__fail(err, ER_LOCKED,
                      "%s: the store is already open for writing (another "
                      "process is creating it)",
                      s->path);
    }
    interrupted = interrupted_creation(s->path, names, n);
    if (interrupted && !s->read_only) {
      /* finish the creation: open_db adds our families, check_format
       * writes the marker */
      *existing = names;
      *n_existing = n;
      return ER_OK;
    }
    rocksdb_list_column_families_destroy(names, n);
    if (interrupted)
      return er__fail(err, ER_INVALID,
                      "%s: the creation of this store was interrupted; open "
                      "it once for writing to finish it",
                      s->path);
    return er__fail(err, ER_INVALID,
                    "%s: not an eventrocks store (no 'log' column family)",
                    s->path);
  }
  /* a read-only open cannot create the families a newer version adds */
  for (i = 0; s->read_only && i < CF_COUNT; i++) {
    for (j = 0; j < n; j++)
      if (strcmp(names[j], er__cf_names[i]) == 0) break;
    if (j == n) {
      rocksdb_list_column_families_destroy(names, n);
      return er__fail(err, ER_INVALID,
                      "%s: the store lacks the '%s' column family; open it "
                      "once for writing to upgrade it",
                      s->path, er__cf_names[i]);
    }
  }
  *existing = names;
  *n_existing = n;
  return ER_OK;
}

/* Open s->db with the `n` families `names` and their options: a writer, or
 * a secondary instance for a read-only handle. */
static int open_instance(er_store *s, int n, const char **names,
                         const rocksdb_options_t **opts,
                         rocksdb_column_family_handle_t **handles,
                         er_error *err) {
  char *rerr = NULL;
  int rc;
  if (s->read_only) {
    /* A secondary instance, not RocksDB's read-only mode: it reads a
     * consistent state even while a writer in another process flushes and
     * deletes files, and can catch up with it later (er_refresh).  Its own
     * log files go to a private temporary directory. */
    const char *tmp = getenv("TMPDIR");
    char tmpl[4096];
    snprintf(tmpl, sizeof tmpl, "%s/eventrocks-reader-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(tmpl)) return er__fail(err, ER_IO, "%s: %s", tmpl, strerror(errno));
    rocksdb_options_set_max_open_files(s->options, -1);
    rocksdb_options_set_max_open_files(s->scan_options, -1);
    /* Each catch-up (er_refresh) loads the table handlers of every family
     * again, by default with 16 threads made and joined each time: about
     * 20 ms of CPU per catch-up.  One thread does it in well under 1 ms. */
    rocksdb_options_set_max_file_opening_threads(s->options, 1);
    s->db = rocksdb_open_as_secondary_column_families(
        s->options, s->path, tmpl, n, names, opts, handles, &rerr);
    /* Only its info log lives there, open and never rotated: unlink it now,
     * so that no directory is left behind by a reader that gets killed. */
    remove_tree(tmpl);
  } else {
    s->db = rocksdb_open_column_families(s->options, s->path, n, names, opts,
                                         handles, &rerr);
  }
  if (!rerr) return ER_OK;
  rc = er__rocks_fail(err, s->path, rerr);
  if (rc == ER_LOCKED)
    er__fail(err, ER_LOCKED, "%s: the store is already open for writing", s->path);
  return rc;
}

/* Open the RocksDB database with our column families and any others it
 * already has (families added by newer versions must be opened too). */
static int open_db(er_store *s, er_error *err) {
  char **existing = NULL;
  size_t n_existing = 0, n = CF_COUNT, i, j;
  const char **names = NULL;
  const rocksdb_options_t **opts = NULL;
  rocksdb_column_family_handle_t **handles = NULL;
  int rc;

  if ((rc = existing_families(s, &existing, &n_existing, err)) != ER_OK) return rc;
  names = calloc(CF_COUNT + n_existing, sizeof *names);
  opts = calloc(CF_COUNT + n_existing, sizeof *opts);
  handles = calloc(CF_COUNT + n_existing, sizeof *handles);
  if (!names || !opts || !handles) {
    rc = er__fail(err, ER_NOMEM, "out of memory");
    goto done;
  }
  for (i = 0; i < CF_COUNT; i++) names[i] = er__cf_names[i];
  for (i = 0; i < n_existing; i++) {
    int ours = 0;
    for (j = 0; j < CF_COUNT; j++)
      if (strcmp(existing[i], er__cf_names[j]) == 0) ours = 1;
    if (!ours) names[n++] = existing[i];
  }
  for (i = 0; i < n; i++)
    opts[i] = i == CF_LOG || i == CF_STREAMS ? s->scan_options
              : i == CF_HEADS ? s->head_options : s->options;
  if ((rc = open_instance(s, (int)n, names, opts, handles, err)) != ER_OK) goto done;
  for (i = 0; i < CF_COUNT; i++) s->cf[i] = handles[i];
  if (n > CF_COUNT) {
    s->extra_cf = malloc((n - CF_COUNT) * sizeof *s->extra_cf);
    if (!s->extra_cf) {
      for (i = CF_COUNT; i < n; i++)
        rocksdb_column_family_handle_destroy(handles[i]);
      rc = er__fail(err, ER_NOMEM, "out of memory");
      goto done;
    }
    for (i = CF_COUNT; i < n; i++) s->extra_cf[s->n_extra_cf++] = handles[i];
  }
done:
  free(names);
  free(opts);
  free(handles);
  if (existing) rocksdb_list_column_families_destroy(existing, n_existing);
  return rc;
}

/* A write past the file size limit (ulimit -f) raises SIGXFSZ, which kills
 * the process unless it is caught or ignored.  A store that writes ignores
 * it (when the process left it at its default), so that such a write fails
 * with EFBIG and comes back as ER_IO like any other failed write. */
static void ignore_xfsz(void) {
  struct sigaction sa;
  if (sigaction(SIGXFSZ, NULL, &sa) == 0 && !(sa.sa_flags & SA_SIGINFO) &&
      sa.sa_handler == SIG_DFL) {
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_IGN;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGXFSZ, &sa, NULL);
  }
}

int er_open(const char *path, const er_options *opts, er_store **out,
            er_error *err) {
  er_options defaults;
  er_store *s;
  struct stat st;
  int rc, create;

  *out = NULL;
  if (!opts) {
    er_options_init(&defaults);
    opts = &defaults;
  }
  if (!path || !*path) return er__fail(err, ER_INVALID, "empty store path");
  if (opts->max_event_size > ((size_t)1 << 30))
    return er__fail(err, ER_INVALID, "max_event_size is limited to 1 GiB");
  create = opts->create && !opts->read_only;
  if (stat(path, &st) == 0) {
    int found;
    if (!S_ISDIR(st.st_mode))
      return er__fail(err, ER_IO, "%s: not a directory", path);
    if ((rc = has_store(path, &found, err)) != ER_OK) return rc;
    if (!found && !create)
      return er__fail(err, ER_NOT_FOUND, "%s: no store in this directory",
                      path);
    if (!found && (rc = may_create_in(path, err)) != ER_OK) return rc;
  } else if (errno == ENOENT) {
    if (!create)
      return er__fail(err, ER_NOT_FOUND, "%s: no such store", path);
    /* made here, not by RocksDB (0755): whoever reads the directory reads
     * every event, so a new store is its owner's only */
    if (mkdir(path, 0700) != 0 && errno != EEXIST)
      return er__fail(err, ER_IO, "%s: %s", path, strerror(errno));
  } else {
    return er__fail(err, ER_IO, "%s: %s", path, strerror(errno));
  }

  if (!opts->read_only) ignore_xfsz();
  s = calloc(1, sizeof *s);
  if (!s) return er__fail(err, ER_NOMEM, "out of memory");
  pthread_mutex_init(&s->write_lock, NULL);
  pthread_mutex_init(&s->iter_lock, NULL);
  pthread_rwlock_init(&s->life_lock, NULL);
  er__wait_init(s);
  s->path = strdup(path);
  s->read_only = opts->read_only != 0;
  s->sync = opts->sync != 0;
  s->max_event_size =
      opts->max_event_size ? opts->max_event_size : ER_DEFAULT_MAX_EVENT_SIZE;
  s->random_used = ER_RANDOM_POOL;
  s->heads = calloc(ER_HEAD_CACHE_SLOTS, sizeof *s->heads);
  if (!s->path || !s->heads) {
    store_free(s);
    return er__fail(err, ER_NOMEM, "out of memory");
  }
  setup_options(s, create);
  s->ropts = rocksdb_readoptions_create();
  s->wopts = rocksdb_writeoptions_create();
  rocksdb_writeoptions_set_sync(s->wopts, s->sync);

  if ((rc = open_db(s, err)) != ER_OK || (rc = check_format(s, err)) != ER_OK ||
      (rc = er__crypt_open(s, opts->key, err)) != ER_OK ||
      (rc = load_counters(s, err)) != ER_OK ||
      (rc = er__life_load(s, err)) != ER_OK) {
    store_free(s);
    return rc;
  }
  *out = s;
  return ER_OK;
}

uint64_t er_last_position(er_store *s) {
  return __atomic_load_n(&s->last_position, __ATOMIC_ACQUIRE);
}

int er_wait_idle(er_store *s, int timeout_ms) {
  int waited = 0, i;
  if (s->read_only) return 1;
  for (;;) {
    uint64_t v = 0;
    int busy = (rocksdb_property_int(s->db, "rocksdb.num-running-compactions", &v) == 0 && v > 0) ||
               (rocksdb_property_int(s->db, "rocksdb.num-running-flushes", &v) == 0 && v > 0);
    for (i = 0; !busy && i < CF_COUNT; i++)
      busy = (rocksdb_property_int_cf(s->db, s->cf[i], "rocksdb.compaction-pending", &v) == 0 && v > 0) ||
             (rocksdb_property_int_cf(s->db, s->cf[i], "rocksdb.mem-table-flush-pending", &v) == 0 && v > 0);
    if (!busy) return 1;
    if (waited >= timeout_ms) return 0;
    usleep(10000);
    waited += 10;
  }
}

int er_refresh(er_store *s, er_error *err) {
  char *rerr = NULL;
  int rc;
  if (!s->read_only) return ER_OK;
  rocksdb_try_catch_up_with_primary(s->db, &rerr);
  if (rerr) return er__rocks_fail(err, "catching up with the writer", rerr);
  er__lock(s);
  rc = load_counters(s, err);
  if (rc == ER_OK) rc = er__life_load(s, err);
  er__key_cache_clear(s); /* keys made or forgotten by the writer */
  er__unlock(s);
  return rc;
}

void er_set_commit_hook(er_store *s, er_commit_hook hook, void *ud) {
  er__lock(s);
  s->hook = hook;
  s->hook_ud = ud;
  er__unlock(s);
}
