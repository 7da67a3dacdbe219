/* uuid.c -- UUID version 7 event ids (RFC 9562) and the clock. */
#include "internal.h"
#include <errno.h>
#include <sys/random.h>
#include <time.h>


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

/* Layout: 48 bits of Unix milliseconds, version 7, 12 bits of the
 * sub-millisecond fraction (RFC 9562 method 3, so ids made in one process are
 * time-ordered to the microsecond), variant 10, 62 random bits. */
void er__uuid7_from(uint8_t out[16], int64_t micros, const uint8_t rnd[10]) {
  uint64_t ms = (uint64_t)(micros / 1000);
  uint32_t frac = (uint32_t)(((micros % 1000) * 4096) / 1000);
  int i;
  for (i = 5; i >= 0; i--) { out[i] = (uint8_t)(ms & 0xff); ms >>= 8; }
  out[6] = (uint8_t)(0x70 | ((frac >> 8) & 0x0f));
  out[7] = (uint8_t)(frac & 0xff);
  out[8] = (uint8_t)(0x80 | (rnd[0] & 0x3f));
  memcpy(out + 9, rnd + 1, 7);
}

/* A UUID v7 whose 12 bits after the milliseconds and the first 14 bits of
 * the variant field form an ordered counter (RFC 9562, 6.2 methods 1 and
 * 3): `clock` = ms * 4096 + fraction of the millisecond, `seq` < 2^14, then
 * 48 random bits.  The store calls it with (clock, seq) increasing, so its
 * ids increase in append order and go into the id index in key order. */
void er__uuid7_seq(uint8_t out[16], uint64_t clock, uint32_t seq,
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
  uint8_t rnd[10];
  if (er__random(rnd, sizeof rnd) != ER_OK) return ER_IO;
  er__uuid7_from(out, er__now_micros(), rnd);
  return ER_OK;
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
