/* uuid.c -- UUID version 7 event ids (RFC 9562), the clock, and the
 * store's pool of randomness. */
#include "internal.h"
#include <errno.h>
#include <sys/random.h>
#include <time.h>
#include <xxhash.h>


int64_t er__now_micros(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Fill `buf` with `len` bytes from the kernel's random source. */
int er__random(uint8_t *buf, size_t len) {
  while (len > 0) {
    ssize_t got = getrandom(buf, len, 0);
    if (got < 0) {
      if (errno == EINTR) continue;
      return ER_IO;
    }
    buf += got;
    len -= (size_t)got;
  }
  return ER_OK;
}

/* The time of an id: milliseconds since the epoch * 4096 + the fraction of
 * the millisecond in 4096ths (RFC 9562 method 3, so that ids made in one
 * process are time-ordered to a quarter of a microsecond). */
static uint64_t id_clock(int64_t micros) {
  return (uint64_t)(micros / 1000) * 4096 +
         (uint64_t)((micros % 1000) * 4096 / 1000);
}

/* The one layout of the UUIDs v7 this library makes: the 48 bits of
 * milliseconds and the 12 bits of fraction of `clock` (id_clock) around the
 * version (7), the variant (binary 10), then `seq` (14 bits) and 48 random
 * bits: 62 bits that are either all random (er_uuid7) or an ordered counter
 * and randomness (RFC 9562, 6.2 methods 1 and 3: er__new_id). */
static void uuid7(uint8_t out[16], uint64_t clock, uint32_t seq,
                  const uint8_t rnd[6]) {
  uint64_t ms = clock >> 12;
  uint32_t frac = (uint32_t)(clock & 0xfff);
  int i;
  for (i = 5; i >= 0; i--) { out[i] = (uint8_t)(ms & 0xff); ms >>= 8; }
  out[6] = (uint8_t)(0x70 | ((frac >> 8) & 0x0f));
  out[7] = (uint8_t)(frac & 0xff);
  out[8] = (uint8_t)(0x80 | ((seq >> 8) & 0x3f));
  out[9] = (uint8_t)(seq & 0xff);
  memcpy(out + 10, rnd, 6);
}

int er_uuid7(uint8_t out[16]) {
  uint8_t rnd[8];
  if (er__random(rnd, sizeof rnd) != ER_OK) return ER_IO;
  uuid7(out, id_clock(er__now_micros()), (uint32_t)rnd[0] << 8 | rnd[1],
        rnd + 2);
  return ER_OK;
}

/* Ten bytes from the store's pool of randomness (write_lock held). */
static void next_random(er_store *s, uint8_t out[10]) {
  if (s->random_used + 10 > ER_RANDOM_POOL) {
    if (er__random(s->random, ER_RANDOM_POOL) != ER_OK) {
      /* no kernel randomness: fall back on hashing the clock and a counter */
      uint64_t x = XXH3_64bits(s->random, ER_RANDOM_POOL) ^
                   (uint64_t)er__now_micros();
      size_t i;
      for (i = 0; i < ER_RANDOM_POOL; i += 8) {
        x = XXH3_64bits(&x, sizeof x);
        memcpy(s->random + i, &x, 8);
      }
    }
    s->random_used = 0;
  }
  memcpy(out, s->random + s->random_used, 10);
  s->random_used += 10;
}

/* Time-ordered, and greater than every id this handle generated before, so
 * that the id index is written in key order (random ids within one
 * microsecond cost the memtable a search per insert: about a quarter of a
 * 100-event append's time). */
void er__new_id(er_store *s, uint8_t out[16], int64_t now) {
  uint8_t rnd[10];
  uint64_t clock = id_clock(now);
  assert(er__locked(s));
  next_random(s, rnd);
  if (clock > s->id_clock) {
    s->id_clock = clock;
    s->id_seq = rnd[6] & 0xff; /* a random start, far from the limit */
  } else if (++s->id_seq > 0x3fff) {
    s->id_clock++; /* 16k ids in a quarter microsecond: borrow the next */
    s->id_seq = 0;
  }
  uuid7(out, s->id_clock, s->id_seq, rnd);
}

void er_uuid_format(const uint8_t id[16], char out[37]) {
  static const char hex[] = "0123456789abcdef";
  /* where each byte's two digits go: the dashes sit at 8, 13, 18 and 23 */
  static const unsigned char at[16] = {0, 2, 4, 6, 9, 11, 14, 16,
                                       19, 21, 24, 26, 28, 30, 32, 34};
  int i;
  for (i = 0; i < 16; i++) {
    out[at[i]] = hex[id[i] >> 4];
    out[at[i] + 1] = hex[id[i] & 0x0f];
  }
  out[8] = out[13] = out[18] = out[23] = '-';
  out[36] = 0;
}

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

int er_uuid_parse(const char *text, size_t len, uint8_t out[16]) {
  size_t i;
  int n = 0;
  if (len != 36) return ER_INVALID;
  for (i = 0; i < 36;) {
    int hi, lo;
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (text[i] != '-') return ER_INVALID;
      i++;
      continue;
    }
    hi = hexval(text[i]);
    lo = hexval(text[i + 1]);
    if (hi < 0 || lo < 0) return ER_INVALID;
    out[n++] = (uint8_t)((hi << 4) | lo);
    i += 2;
  }
  return ER_OK;
}
