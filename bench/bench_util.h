/* bench_util.h -- shared by the C contenders: arguments, the clock, the
 * payload and the RESULT line.  See bench/README.md for the contract. */
#ifndef BENCH_UTIL_H
#define BENCH_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct bench_args {
  const char *workload;
  long long n;
  const char *dir;
  int durable;
} bench_args;

static inline void bench_parse(int argc, char **argv, bench_args *a) {
  char *end = NULL;
  if (argc != 5 || (a->n = strtoll(argv[2], &end, 10)) <= 0 || *end ||
      (strcmp(argv[4], "0") != 0 && strcmp(argv[4], "1") != 0)) {
    fprintf(stderr, "usage: %s WORKLOAD N DIR DURABLE(0|1)\n", argv[0]);
    exit(2);
  }
  a->workload = argv[1];
  a->dir = argv[3];
  a->durable = argv[4][0] == '1';
}

static inline double bench_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static inline void bench_result(const char *metric, double value) {
  printf("RESULT %s %.6g\n", metric, value);
  fflush(stdout);
}

/* The data of event i: about 150 bytes of JSON, like bench/common.lua's. */
static inline size_t bench_payload(char *out, size_t cap, long long i) {
  int len = snprintf(out, cap,
                     "{\"order\":%lld,\"sku\":\"SKU-%05lld\",\"qty\":%lld,"
                     "\"price\":%lld,\"currency\":\"EUR\",\"customer\":"
                     "\"customer-%06lld\",\"note\":\"gift wrap, leave at the "
                     "door; call before delivery\"}",
                     i, i % 100000, i % 7 + 1, 1999 + i % 100, i % 1000003);
  return len < 0 ? 0 : (size_t)len;
}

#define BENCH_DIE(...)                                                         \
  do {                                                                         \
    fprintf(stderr, __VA_ARGS__);                                              \
    fputc('\n', stderr);                                                       \
    exit(1);                                                                   \
  } while (0)

#endif
