/*
 * fuzz_util.h -- shared by the fuzz targets that need a store directory:
 * a fresh temporary directory (in /dev/shm when it exists: RocksDB opens
 * and closes faster there) that a later run removes if this one crashes,
 * its recursive removal, and CHECK.  Everything
 * is static so that a target may leave any of it unused.
 */
#ifndef FUZZ_UTIL_H
#define FUZZ_UTIL_H

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

/* Abort (a crash for libFuzzer) with the condition and where it failed. */
#define CHECK(cond)                                                         \
  do {                                                                      \
    if (!(cond)) {                                                          \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__,      \
              #cond);                                                       \
      abort();                                                              \
    }                                                                       \
  } while (0)

static void fu_rmtree(const char *dir);

/* The base directory of fu_mkdtemp: /dev/shm when writable with 256 MB
 * free (containers often give it 64 MB; a store preallocates about 22 MB
 * of log), else $TMPDIR, else /tmp. */
static const char *fu_base(void) {
  const char *base = getenv("TMPDIR");
  struct stat st;
  struct statvfs vfs;
  if (stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) &&
      access("/dev/shm", W_OK) == 0 && statvfs("/dev/shm", &vfs) == 0 &&
      (unsigned long long)vfs.f_bavail * vfs.f_frsize >= 256ULL << 20)
    return "/dev/shm";
  return base && *base ? base : "/tmp";
}

/* Remove the eventrocks-fuzz-PID-* directories of processes that are gone
 * (a target that crashed, or one of libFuzzer's minimising children). */
static void fu_sweep(const char *base) {
  DIR *d = opendir(base);
  struct dirent *e;
  if (!d) return;
  while ((e = readdir(d)) != NULL) {
    long pid;
    char path[4096];
    if (sscanf(e->d_name, "eventrocks-fuzz-%ld-", &pid) != 1 || pid <= 0) continue;
    if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue;
    snprintf(path, sizeof path, "%s/%s", base, e->d_name);
    fu_rmtree(path);
  }
  closedir(d);
}

/* A new empty directory BASE/eventrocks-fuzz-PID-XXXXXX (see fu_base), after
 * sweeping those of dead processes; malloc'd path.  A RocksDB store takes
 * about 22 MB there (its preallocated log): remove it when done. */
static char *fu_mkdtemp(void) {
  const char *base = fu_base();
  char *dir;
  size_t n;
  fu_sweep(base);
  n = strlen(base) + 64;
  dir = malloc(n);
  CHECK(dir != NULL);
  snprintf(dir, n, "%s/eventrocks-fuzz-%ld-XXXXXX", base, (long)getpid());
  CHECK(mkdtemp(dir) != NULL);
  return dir;
}

static int fu_rm_entry(const char *path, const struct stat *sb, int flag,
                       struct FTW *ftw) {
  (void)sb;
  (void)ftw;
  if (flag == FTW_DP || flag == FTW_D) return rmdir(path) == 0 ? 0 : -1;
  return unlink(path) == 0 ? 0 : -1;
}

/* Remove `dir` and everything under it; NULL is fine. */
static void fu_rmtree(const char *dir) {
  if (dir != NULL) (void)nftw(dir, fu_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

#endif
