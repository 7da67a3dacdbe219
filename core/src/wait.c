/* wait.c -- waiting for new events: er_wait_position.
 *
 * A writable handle: every commit that wrote events publishes its position
 * and then calls er__notify_commit, which broadcasts a condition variable
 * when anyone sleeps on it.  `sleepers` is read without the lock: the
 * committer stores the position, then reads `sleepers`; a sleeper counts
 * itself in, then reads the position (both sequentially consistent), so
 * one of the two always sees the other and no wake-up is lost.
 *
 * A read-only handle (a writer in another process): the writer's appends
 * change the files of the store's directory (its write-ahead log), which
 * inotify reports; each change catches the handle up (er_refresh). */
#define _GNU_SOURCE /* pthread_condattr_setclock, inotify */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/inotify.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

#define RO_RECHECK_MS 500 /* a read-only handle catches up at least this often */
#define RO_POLL_MS 2      /* ... and this often when inotify is unavailable */

void er__wait_init(er_store *s) {
  pthread_condattr_t a;
  pthread_mutex_init(&s->wait_lock, NULL);
  pthread_condattr_init(&a);
  pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
  pthread_cond_init(&s->committed, &a);
  pthread_condattr_destroy(&a);
  s->watch_fd = -1;
}

void er__wait_destroy(er_store *s) {
  if (s->watch_fd >= 0) close(s->watch_fd);
  pthread_cond_destroy(&s->committed);
  pthread_mutex_destroy(&s->wait_lock);
}

void er__notify_commit(er_store *s) {
  if (__atomic_load_n(&s->sleepers, __ATOMIC_SEQ_CST) == 0) return;
  pthread_mutex_lock(&s->wait_lock);
  pthread_cond_broadcast(&s->committed);
  pthread_mutex_unlock(&s->wait_lock);
}

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A writable handle: sleep on the condition until a commit passes `after`. */
static int wait_writer(er_store *s, uint64_t after, int timeout_ms,
                       uint64_t *last) {
  struct timespec deadline;
  uint64_t pos;
  if (timeout_ms >= 0) {
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
      deadline.tv_sec++;
      deadline.tv_nsec -= 1000000000L;
    }
  }
  pthread_mutex_lock(&s->wait_lock);
  __atomic_add_fetch(&s->sleepers, 1, __ATOMIC_SEQ_CST);
  while ((pos = __atomic_load_n(&s->last_position, __ATOMIC_SEQ_CST)) <= after) {
    int rc = timeout_ms < 0 ? pthread_cond_wait(&s->committed, &s->wait_lock)
                            : pthread_cond_timedwait(&s->committed, &s->wait_lock, &deadline);
    if (rc == ETIMEDOUT) {
      pos = __atomic_load_n(&s->last_position, __ATOMIC_SEQ_CST);
      break;
    }
  }
  __atomic_sub_fetch(&s->sleepers, 1, __ATOMIC_SEQ_CST);
  pthread_mutex_unlock(&s->wait_lock);
  *last = pos;
  return ER_OK;
}

/* Read what inotify has queued on `fd` (non-blocking) and drop it. */
static void drain(int fd) {
  char buf[4096];
  while (read(fd, buf, sizeof buf) > 0) {}
}

/* An inotify instance watching the store's directory: the one the handle
 * keeps, else a new one; -1 when inotify is unavailable. */
static int take_watch(er_store *s) {
  int fd = __atomic_exchange_n(&s->watch_fd, -1, __ATOMIC_ACQ_REL);
  if (fd >= 0) return fd;
  fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (fd >= 0 && inotify_add_watch(fd, s->path, IN_MODIFY | IN_CREATE | IN_MOVED_TO) < 0) {
    close(fd);
    fd = -1;
  }
  return fd;
}

/* Keep `fd` for the next wait, or close it when another waiter's is kept. */
static void put_watch(er_store *s, int fd) {
  int none = -1;
  if (fd < 0) return;
  if (!__atomic_compare_exchange_n(&s->watch_fd, &none, fd, 0, __ATOMIC_ACQ_REL,
                                   __ATOMIC_ACQUIRE))
    close(fd);
}

/* A read-only handle: catch up at every change of the directory.  The
 * watch is set before the first catch-up, so a change made after it wakes
 * the poll; what a kept watch queued since its last wait is dropped before
 * the catch-up, which sees those changes anyway. */
static int wait_reader(er_store *s, uint64_t after, int timeout_ms,
                       uint64_t *last, er_error *err) {
  int64_t deadline = timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
  int fd = take_watch(s), rc = ER_OK;
  if (fd >= 0) drain(fd);
  for (;;) {
    int64_t left;
    int slice;
    if ((rc = er_refresh(s, err)) != ER_OK) break;
    *last = er_last_position(s);
    if (*last > after) break;
    left = deadline < 0 ? RO_RECHECK_MS : deadline - now_ms();
    if (left <= 0) break;
    slice = fd >= 0 ? (left < RO_RECHECK_MS ? (int)left : RO_RECHECK_MS)
                    : (left < RO_POLL_MS ? (int)left : RO_POLL_MS);
    if (fd >= 0) {
      struct pollfd p;
      p.fd = fd;
      p.events = POLLIN;
      p.revents = 0;
      if (poll(&p, 1, slice) > 0) drain(fd);
    } else {
      struct timespec ts;
      ts.tv_sec = 0;
      ts.tv_nsec = (long)slice * 1000000L;
      nanosleep(&ts, NULL);
    }
  }
  put_watch(s, fd);
  return rc;
}

int er_wait_position(er_store *s, uint64_t after, int timeout_ms,
                     uint64_t *last, er_error *err) {
  assert(s && last);
  if (s->read_only) return wait_reader(s, after, timeout_ms, last, err);
  return wait_writer(s, after, timeout_ms, last);
}
