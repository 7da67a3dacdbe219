/* eventrocks core: online backups.
 *
 * A backup is a RocksDB checkpoint: the memtables are flushed, then every
 * live file of the store is hard-linked into the new directory (copied
 * when it is on another file system) together with the write-ahead log,
 * while appends go on.  RocksDB takes the file list at one point of its
 * history, and an append is one atomic WriteBatch, so the copy holds a
 * prefix of the store's commits: never a torn append. */
#define _POSIX_C_SOURCE 200809L /* lstat */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "internal.h"

/* What the copy in `dir` holds: opened as the normal store it is. */
static int copy_last_position(er_store *s, const char *dir, uint64_t *position,
                              er_error *err) {
  er_options o;
  er_store *copy;
  int rc;
  er_options_init(&o);
  o.create = 0;
  if (s->has_key) o.key = s->master;
  rc = er_open(dir, &o, &copy, err);
  if (rc != ER_OK) return rc;
  *position = er_last_position(copy);
  er_close(copy);
  return ER_OK;
}

int er_backup(er_store *s, const char *dir, uint64_t *position, er_error *err) {
  struct stat st;
  rocksdb_checkpoint_t *cp;
  char *rerr = NULL;
  if (!dir || !*dir) return er__fail(err, ER_INVALID, "the backup directory must be named");
  if (lstat(dir, &st) == 0)
    return er__fail(err, ER_INVALID, "%s exists already: a backup goes to a new directory", dir);
  if (errno != ENOENT) return er__fail(err, ER_IO, "%s: %s", dir, strerror(errno));
  if (s->read_only)
    return er__fail(err, ER_INVALID,
                    "a read-only handle cannot take a backup (it cannot flush the writer's "
                    "memtables, so the copy would miss acknowledged appends): take it with "
                    "the writer's handle");
  cp = rocksdb_checkpoint_object_create(s->db, &rerr);
  if (rerr) return er__rocks_fail(err, "starting the backup", rerr);
  /* log_size_for_flush 0: always flush first, so that the copy's tables
   * hold everything and its write-ahead log only what came during the copy */
  rocksdb_checkpoint_create(cp, dir, 0, &rerr);
  rocksdb_checkpoint_object_destroy(cp);
  if (rerr) return er__rocks_fail(err, "taking the backup", rerr);
  return copy_last_position(s, dir, position, err);
}
