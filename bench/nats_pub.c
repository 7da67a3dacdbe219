/* nats_pub.c -- the raw baseline of the relay benchmark: JetStream
 * asynchronous publishing from the C client, `nats bench`-style, with no
 * store and no encoding in the way.
 *
 *   nats_pub URL N PAYLOAD_BYTES [MAX_PENDING] [msgid]
 *
 * Creates the file-storage stream BENCHRAW on `benchraw.>` (deleting one
 * left by an earlier run), publishes N messages of PAYLOAD_BYTES to
 * `benchraw.x` with js_PublishAsync (jsOptions.PublishAsync.MaxPending =
 * MAX_PENDING, default 256), waits for every acknowledgment
 * (js_PublishAsyncComplete), checks that the stream holds N messages and
 * deletes it.  Prints
 *
 *   RESULT raw_async_publish.mps <messages/s>
 *
 * timed from the first publish to the return of js_PublishAsyncComplete.
 * With `msgid`, every message is a natsMsg with a unique `Nats-Msg-Id`
 * header, published with js_PublishMsgAsync (what the relay does, so the
 * server's duplicate window is in the measurement too), and the metric is
 * `raw_async_publish_msgid.mps`.  Exits non-zero on any failure (an error
 * acknowledgment, a count that differs).  See bench/README.md. */
#include <inttypes.h>
#include <nats/nats.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench_util.h"

#define STREAM "BENCHRAW"
#define SUBJECT "benchraw.x"

static volatile long long pub_errors = 0;
static char first_error[256];

/* Called from the library's thread for every message acknowledged with an
 * error or not acknowledged in time; the library destroys the message. */
static void on_pub_error(jsCtx *js, jsPubAckErr *pae, void *closure) {
  (void)js;
  (void)closure;
  if (pub_errors++ == 0)
    snprintf(first_error, sizeof first_error, "%s (%s, error code %d)",
             pae->ErrText ? pae->ErrText : "?", natsStatus_GetText(pae->Err),
             (int)pae->ErrCode);
}

static void check(natsStatus s, const char *what) {
  if (s != NATS_OK) {
    const char *last = nats_GetLastError(NULL);
    BENCH_DIE("nats_pub: %s: %s%s%s", what, natsStatus_GetText(s),
              last && *last ? ": " : "", last ? last : "");
  }
}

static long long parse_pos(const char *s, const char *what) {
  char *end = NULL;
  long long v = strtoll(s, &end, 10);
  if (v <= 0 || !end || *end)
    BENCH_DIE("nats_pub: %s must be a positive integer, not '%s'", what, s);
  return v;
}

int main(int argc, char **argv) {
  if (argc < 4 || argc > 6 || (argc == 6 && strcmp(argv[5], "msgid") != 0)) {
    fprintf(stderr, "usage: %s URL N PAYLOAD_BYTES [MAX_PENDING] [msgid]\n",
            argv[0]);
    return 2;
  }
  const char *url = argv[1];
  long long n = parse_pos(argv[2], "N");
  long long size = parse_pos(argv[3], "PAYLOAD_BYTES");
  long long max_pending = argc >= 5 ? parse_pos(argv[4], "MAX_PENDING") : 256;
  int msgid = argc == 6;

  /* the payload: bench_util's JSON event text, repeated to the size */
  char *payload = malloc((size_t)size);
  char unit[256];
  if (!payload) BENCH_DIE("nats_pub: out of memory");
  size_t ulen = bench_payload(unit, sizeof unit, 1);
  for (long long i = 0; i < size; i++) payload[i] = unit[(size_t)i % ulen];

  natsConnection *nc = NULL;
  jsCtx *js = NULL;
  jsOptions jo;
  jsErrCode jerr = 0;

  check(natsConnection_ConnectTo(&nc, url), "connect");
  check(jsOptions_Init(&jo), "jsOptions_Init");
  jo.PublishAsync.MaxPending = max_pending;
  jo.PublishAsync.ErrHandler = on_pub_error;
  /* a full window waits for room (default 200 ms, then NATS_TIMEOUT): let
   * a slow disk stall the publisher rather than fail the run */
  jo.PublishAsync.StallWait = 30000;
  check(natsConnection_JetStream(&js, nc, &jo), "JetStream context");

  /* a fresh stream: delete one an interrupted run left */
  natsStatus s = js_DeleteStream(js, STREAM, NULL, &jerr);
  if (s != NATS_OK && !(s == NATS_NOT_FOUND || jerr == JSStreamNotFoundErr))
    check(s, "delete the old stream " STREAM);
  jsStreamConfig cfg;
  const char *subjects[] = {"benchraw.>"};
  jsStreamInfo *si = NULL;
  check(jsStreamConfig_Init(&cfg), "jsStreamConfig_Init");
  cfg.Name = STREAM;
  cfg.Subjects = subjects;
  cfg.SubjectsLen = 1;
  cfg.Storage = js_FileStorage;
  check(js_AddStream(&si, js, &cfg, NULL, &jerr), "create the stream " STREAM);
  jsStreamInfo_Destroy(si);
  si = NULL;

  /* ids unique across runs too: the run's PID and start time, then i */
  char prefix[64], id[96];
  snprintf(prefix, sizeof prefix, "bench-%ld-%lld", (long)getpid(),
           (long long)(bench_now() * 1e6));

  double t0 = bench_now();
  for (long long i = 1; i <= n; i++) {
    if (!msgid) {
      check(js_PublishAsync(js, SUBJECT, payload, (int)size, NULL), "publish");
    } else {
      natsMsg *m = NULL;
      snprintf(id, sizeof id, "%s-%lld", prefix, i);
      check(natsMsg_Create(&m, SUBJECT, NULL, payload, (int)size),
            "natsMsg_Create");
      s = natsMsgHeader_Set(m, "Nats-Msg-Id", id);
      if (s == NATS_OK) s = js_PublishMsgAsync(js, &m, NULL);
      natsMsg_Destroy(m); /* NULL once the library owns it */
      check(s, "publish");
    }
  }
  jsPubOptions po;
  check(jsPubOptions_Init(&po), "jsPubOptions_Init");
  po.MaxWait = 120000;
  check(js_PublishAsyncComplete(js, &po), "wait for the acknowledgments");
  double t1 = bench_now();

  if (pub_errors)
    BENCH_DIE("nats_pub: %lld messages not acknowledged; first: %s",
              (long long)pub_errors, first_error);
  check(js_GetStreamInfo(&si, js, STREAM, NULL, &jerr), "stream info");
  if (si->State.Msgs != (uint64_t)n)
    BENCH_DIE("nats_pub: the stream holds %" PRIu64 " messages, not %lld",
              si->State.Msgs, n);
  jsStreamInfo_Destroy(si);

  bench_result(msgid ? "raw_async_publish_msgid.mps" : "raw_async_publish.mps",
               (double)n / (t1 - t0));

  check(js_DeleteStream(js, STREAM, NULL, &jerr), "delete the stream");
  jsCtx_Destroy(js);
  natsConnection_Destroy(nc);
  nats_Close();
  free(payload);
  return 0;
}
