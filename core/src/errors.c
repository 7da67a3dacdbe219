/* errors.c -- result codes, their names, filling er_error; the defaults of
 * er_options and the memory the core hands out. */
#include "internal.h"
#include <stdio.h>
#include <stdlib.h>


static const char *const code_names[] = {
  "ok", "wrong_expected_version", "duplicate_event", "stream_deleted",
  "locked", "not_found", "io", "corruption", "invalid", "nomem"
};

const char *er_code_name(int code) {
  if (code < 0 || code >= (int)(sizeof code_names / sizeof *code_names))
    return "unknown";
  return code_names[code];
}

void er_options_init(er_options *o) {
  o->create = 1;
  o->read_only = 0;
  o->sync = 0;
  o->max_event_size = ER_DEFAULT_MAX_EVENT_SIZE;
  o->key = NULL;
}

void er_free(void *p) { free(p); }

void *er__memdup(const void *p, size_t len) {
  void *c = malloc(len ? len : 1);
  if (c && len) memcpy(c, p, len);
  return c;
}

/* Fill `err` (if any) with `code` and a formatted message; returns `code`
 * so that callers can write `return er__fail(err, ER_X, ...)`. */
int er__fail(er_error *err, int code, const char *fmt, ...) {
  if (err) {
    va_list ap;
    err->code = code;
    err->expected = 0;
    err->actual = 0;
    err->position = 0;
    err->append_index = 0;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
  }
  return code;
}

/* Turn a RocksDB error string into ER_IO, ER_LOCKED or ER_CORRUPTION, with
 * `what` as context.  Frees `rocks_msg` (which RocksDB allocated). */
int er__rocks_fail(er_error *err, const char *what, char *rocks_msg) {
  int code = ER_IO;
  const char *m = rocks_msg ? rocks_msg : "unknown error";
  if (strstr(m, "Corruption")) code = ER_CORRUPTION;
  else if (strstr(m, "/LOCK:") || strstr(m, "lock hold")) code = ER_LOCKED;
  er__fail(err, code, "%s: %s", what, m);
  rocksdb_free(rocks_msg);
  return code;
}
