/* crypt.c -- personal data: the store's master key and its key check, the
 * subjects' keys (wrapped in the "keys" family, cached in memory), sealing
 * and opening event records' payloads, er_forget.
 *
 * Every box is XChaCha20-Poly1305 (libsodium's IETF construction):
 *
 *   key check   default "keycheck": nonce (24), box of KEYCHECK_TEXT
 *   subject key keys: subject -> key id (8), nonce (24), box of the 32-byte
 *               key, with the associated data "eventrocks subject key", key
 *               id, subject
 *   record      key id (8), nonce (24), box of metadata || data (record.c),
 *               with the associated data: event id, version (u64 LE),
 *               stream length (u32 LE), stream, subject
 *
 * A key id is 8 random bytes, never all zero, made with the key: a record
 * sealed with another key of its subject than the current one (the subject
 * was forgotten, then appended to again) reads as forgotten, and a record
 * whose key id is zero is a forgotten event copied from another store (an
 * import: an empty box, no key ever).
 *   subjects    subjects: subject, 0x00, stream -> "" (the streams a
 *               subject's events are in: er_forget drops their snapshots)
 *
 * Record nonces are 16 random bytes drawn at open and a counter (under
 * the write lock): unique per store handle without a system call per event. */
#include "internal.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <xxhash.h>

static const char keycheck_key[] = "keycheck";
static const char keycheck_text[] = "eventrocks key check v1";
static const char wrap_ad[] = "eventrocks subject key";

#define NONCE crypto_aead_xchacha20poly1305_ietf_NPUBBYTES /* 24 */
#define TAG crypto_aead_xchacha20poly1305_ietf_ABYTES      /* 16 */
#define KID ER_KEY_ID_LEN
#define WRAPPED (KID + NONCE + ER_DATA_KEY_LEN + TAG)

/* ---- the cache of subject keys ------------------------------------------ */

struct er__key_entry {
  char *subject; /* NULL: an empty slot */
  size_t len;
  int present; /* 0: known to have no key (forgotten, or never had one) */
  uint8_t key[ER_DATA_KEY_LEN];
  uint8_t id[KID];
};

static size_t slot_of(const er_store *s, const char *subject, size_t len) {
  return (size_t)XXH3_64bits(subject, len) & (s->n_keys_cap - 1);
}

/* The entry of `subject`, or NULL (key_lock held). */
static er__key_entry *cache_find(er_store *s, const char *subject, size_t len) {
  size_t i;
  if (!s->keys) return NULL;
  for (i = slot_of(s, subject, len);; i = (i + 1) & (s->n_keys_cap - 1)) {
    er__key_entry *e = &s->keys[i];
    if (!e->subject) return NULL;
    if (e->len == len && memcmp(e->subject, subject, len) == 0) return e;
  }
}

static void cache_wipe(er_store *s) {
  size_t i;
  for (i = 0; s->keys && i < s->n_keys_cap; i++) {
    free(s->keys[i].subject);
    sodium_memzero(s->keys[i].key, sizeof s->keys[i].key);
  }
  free(s->keys);
  s->keys = NULL;
  s->n_keys = s->n_keys_cap = 0;
}

/* Remember `subject`'s key (NULL: it has none); key_lock held.  Out of
 * memory only costs a lookup next time. */
static void cache_set(er_store *s, const char *subject, size_t len,
                      const uint8_t *key, const uint8_t *id) {
  er__key_entry *e;
  size_t i;
  if (s->n_keys + 1 > s->n_keys_cap / 2) {
    size_t cap = s->n_keys_cap ? s->n_keys_cap * 2 : 64, old = s->n_keys_cap;
    er__key_entry *prev = s->keys, *next;
    if (cap > ((size_t)1 << 20)) { /* a bounded cache: start over */
      cache_wipe(s);
      cap = 64;
      old = 0;
      prev = NULL;
    }
    next = calloc(cap, sizeof *next);
    if (!next) return;
    s->keys = next;
    s->n_keys_cap = cap;
    for (i = 0; i < old; i++)
      if (prev[i].subject) {
        size_t j = slot_of(s, prev[i].subject, prev[i].len);
        while (next[j].subject) j = (j + 1) & (cap - 1);
        next[j] = prev[i];
      }
    if (prev) {
      sodium_memzero(prev, old * sizeof *prev);
      free(prev);
    }
  }
  e = cache_find(s, subject, len);
  if (!e) {
    char *copy = er__memdup(subject, len);
    if (!copy) return;
    for (i = slot_of(s, subject, len); s->keys[i].subject; i = (i + 1) & (s->n_keys_cap - 1)) {}
    e = &s->keys[i];
    e->subject = copy;
    e->len = len;
    s->n_keys++;
  }
  e->present = key != NULL;
  if (key) {
    memcpy(e->key, key, ER_DATA_KEY_LEN);
    memcpy(e->id, id, KID);
  } else {
    sodium_memzero(e->key, sizeof e->key);
  }
}

/* ---- the master key ------------------------------------------------------- */

int er_has_key(const er_store *s) { return s->has_key; }

/* Check `opts->key` against the store's key check (after the format check):
 * a store with sealed events needs its key. */
int er__crypt_open(er_store *s, const uint8_t *key, er_error *err) {
  char *rerr = NULL, *val;
  size_t len = 0;
  if (sodium_init() < 0) return er__fail(err, ER_IO, "libsodium failed to initialise");
  pthread_mutex_init(&s->key_lock, NULL);
  s->key_lock_ready = 1;
  val = rocksdb_get_cf(s->db, s->ropts, s->cf[CF_DEFAULT], keycheck_key,
                       sizeof keycheck_key - 1, &len, &rerr);
  if (rerr) return er__rocks_fail(err, "reading the key check", rerr);
  if (val && !key) {
    rocksdb_free(val);
    return er__fail(err, ER_INVALID,
                    "%s: the store holds encrypted events: open it with its key",
                    s->path);
  }
  if (val) {
    uint8_t plain[sizeof keycheck_text];
    unsigned long long plen = 0;
    int ok = len == NONCE + sizeof keycheck_text - 1 + TAG &&
             crypto_aead_xchacha20poly1305_ietf_decrypt(
                 plain, &plen, NULL, (const uint8_t *)val + NONCE, len - NONCE,
                 NULL, 0, (const uint8_t *)val, key) == 0 &&
             plen == sizeof keycheck_text - 1 &&
             memcmp(plain, keycheck_text, plen) == 0;
    rocksdb_free(val);
    if (!ok) return er__fail(err, ER_INVALID, "%s: wrong key for this store", s->path);
    s->key_checked = 1;
  }
  if (key) {
    memcpy(s->master, key, ER_KEY_LEN);
    s->has_key = 1;
    randombytes_buf(s->nonce_prefix, sizeof s->nonce_prefix);
  }
  return ER_OK;
}

void er__crypt_close(er_store *s) {
  if (s->key_lock_ready) {
    cache_wipe(s);
    pthread_mutex_destroy(&s->key_lock);
  }
  sodium_memzero(s->master, sizeof s->master);
  s->has_key = 0;
}

/* ---- subject keys ------------------------------------------------------- */

/* The key of `subject` into `out`: ER_OK, ER_NOT_FOUND (none: forgotten or
 * never made), ER_CORRUPTION (a wrapped key that does not open), ER_IO. */
int er__key_get(er_store *s, const char *subject, size_t len,
                uint8_t out[ER_DATA_KEY_LEN], uint8_t id[ER_KEY_ID_LEN],
                er_error *err) {
  er__key_entry *e;
  char *rerr = NULL, *val;
  size_t vlen = 0;
  int rc = ER_OK;
  unsigned long long klen = 0;
  if (!s->has_key) return er__fail(err, ER_INVALID, "the store was opened without a key");
  pthread_mutex_lock(&s->key_lock);
  e = cache_find(s, subject, len);
  if (e) {
    if (e->present) {
      memcpy(out, e->key, ER_DATA_KEY_LEN);
      memcpy(id, e->id, KID);
    }
    rc = e->present ? ER_OK : ER_NOT_FOUND;
    pthread_mutex_unlock(&s->key_lock);
    return rc;
  }
  pthread_mutex_unlock(&s->key_lock);
  val = rocksdb_get_cf(s->db, s->ropts, s->cf[CF_KEYS], subject, len, &vlen, &rerr);
  if (rerr) return er__rocks_fail(err, "reading a subject key", rerr);
  if (val) {
    uint8_t ad[sizeof wrap_ad - 1 + KID + ER_MAX_SUBJECT_LEN];
    const uint8_t *v = (const uint8_t *)val;
    memcpy(ad, wrap_ad, sizeof wrap_ad - 1);
    memcpy(ad + sizeof wrap_ad - 1, v, vlen >= KID ? KID : 0);
    memcpy(ad + sizeof wrap_ad - 1 + KID, subject, len);
    if (vlen != WRAPPED ||
        crypto_aead_xchacha20poly1305_ietf_decrypt(
            out, &klen, NULL, v + KID + NONCE, vlen - KID - NONCE, ad,
            sizeof wrap_ad - 1 + KID + len, v + KID, s->master) != 0 ||
        klen != ER_DATA_KEY_LEN)
      rc = er__fail(err, ER_CORRUPTION, "the key of subject '%.*s' is damaged",
                    (int)(len > 100 ? 100 : len), subject);
    if (rc == ER_OK) memcpy(id, v, KID);
    sodium_memzero(val, vlen);
    rocksdb_free(val);
    if (rc != ER_OK) return rc;
  }
  /* a read-only handle catches up later (er_refresh empties the cache);
   * the writer makes keys under its write lock and caches them itself */
  pthread_mutex_lock(&s->key_lock);
  cache_set(s, subject, len, val ? out : NULL, id);
  pthread_mutex_unlock(&s->key_lock);
  return val ? ER_OK : ER_NOT_FOUND;
}

void er__key_cache_clear(er_store *s) {
  if (!s->key_lock_ready) return;
  pthread_mutex_lock(&s->key_lock);
  cache_wipe(s);
  pthread_mutex_unlock(&s->key_lock);
}

/* A new key for `subject` into `out`, its wrapped form queued into `wb`,
 * with the key check and format 3 when the store has none yet (write_lock
 * held).  The caller caches the key once the batch is written
 * (er__key_committed). */
int er__key_new(er_store *s, const char *subject, size_t len,
                uint8_t out[ER_DATA_KEY_LEN], uint8_t id[ER_KEY_ID_LEN],
                rocksdb_writebatch_t *wb) {
  uint8_t wrapped[WRAPPED], ad[sizeof wrap_ad - 1 + KID + ER_MAX_SUBJECT_LEN];
  static const uint8_t zero[KID];
  assert(er__locked(s) && s->has_key);
  crypto_aead_xchacha20poly1305_ietf_keygen(out);
  do randombytes_buf(id, KID); while (memcmp(id, zero, KID) == 0);
  memcpy(wrapped, id, KID);
  randombytes_buf(wrapped + KID, NONCE);
  memcpy(ad, wrap_ad, sizeof wrap_ad - 1);
  memcpy(ad + sizeof wrap_ad - 1, id, KID);
  memcpy(ad + sizeof wrap_ad - 1 + KID, subject, len);
  crypto_aead_xchacha20poly1305_ietf_encrypt(wrapped + KID + NONCE, NULL, out,
                                             ER_DATA_KEY_LEN, ad,
                                             sizeof wrap_ad - 1 + KID + len,
                                             NULL, wrapped + KID, s->master);
  rocksdb_writebatch_put_cf(wb, s->cf[CF_KEYS], subject, len,
                            (const char *)wrapped, sizeof wrapped);
  if (!s->key_checked) {
    uint8_t check[NONCE + sizeof keycheck_text - 1 + TAG], fmt[4];
    randombytes_buf(check, NONCE);
    crypto_aead_xchacha20poly1305_ietf_encrypt(
        check + NONCE, NULL, (const uint8_t *)keycheck_text,
        sizeof keycheck_text - 1, NULL, 0, NULL, check, s->master);
    rocksdb_writebatch_put_cf(wb, s->cf[CF_DEFAULT], keycheck_key,
                              sizeof keycheck_key - 1, (const char *)check,
                              sizeof check);
    er__put_le32(fmt, 3);
    rocksdb_writebatch_put_cf(wb, s->cf[CF_DEFAULT], "format", 6,
                              (const char *)fmt, 4);
  }
  return ER_OK;
}

void er__key_committed(er_store *s, const char *subject, size_t len,
                       const uint8_t key[ER_DATA_KEY_LEN],
                       const uint8_t id[ER_KEY_ID_LEN]) {
  pthread_mutex_lock(&s->key_lock);
  cache_set(s, subject, len, key, id);
  pthread_mutex_unlock(&s->key_lock);
  s->key_checked = 1;
  s->format = 3;
}

/* ---- records ------------------------------------------------------------ */

/* The associated data of a record's box into `ad` (room for
 * ER_SEAL_AD_MAX bytes); returns its length. */
static size_t record_ad(uint8_t *ad, const uint8_t id[16], uint64_t version,
                        const char *stream, size_t stream_len,
                        const char *subject, size_t subject_len) {
  memcpy(ad, id, 16);
  er__put_le64(ad + 16, version);
  er__put_le32(ad + 24, (uint32_t)stream_len);
  memcpy(ad + 28, stream, stream_len);
  memcpy(ad + 28 + stream_len, subject, subject_len);
  return 28 + stream_len + subject_len;
}

void er__seal_nonce(er_store *s, uint8_t nonce[ER_NONCE_LEN]) {
  assert(er__locked(s));
  memcpy(nonce, s->nonce_prefix, 16);
  er__put_le64(nonce + 16, ++s->nonce_count);
}

void er__seal_box(uint8_t *box, size_t plain_len, const uint8_t *key,
                  const uint8_t id[16], uint64_t version, const char *stream,
                  size_t stream_len, const char *subject, size_t subject_len) {
  uint8_t ad[ER_SEAL_AD_MAX];
  size_t adl;
  if (!key) { /* a forgotten event: key id 0, no payload, no key */
    memset(box, 0, ER_BOX_OVERHEAD);
    return;
  }
  adl = record_ad(ad, id, version, stream, stream_len, subject, subject_len);
  /* in place: box holds the key id, the nonce, then the plaintext, room
   * for the tag */
  crypto_aead_xchacha20poly1305_ietf_encrypt_detached(
      box + KID + NONCE, box + KID + NONCE + plain_len, NULL, box + KID + NONCE,
      plain_len, ad, adl, NULL, box + KID, key);
}

int er__unseal_event(er_store *s, er_event *ev, const er_record_info *info,
                     uint8_t **buf, size_t *cap, er_error *err) {
  static const uint8_t zero[KID];
  uint8_t key[ER_DATA_KEY_LEN], kid[KID], ad[ER_SEAL_AD_MAX];
  size_t plain = info->box_len - ER_BOX_OVERHEAD, adl;
  int rc = memcmp(info->box, zero, KID) == 0
               ? ER_NOT_FOUND /* forgotten before it came here */
               : er__key_get(s, ev->subject, ev->subject_len, key, kid, err);
  if (rc == ER_OK && memcmp(kid, info->box, KID) != 0) {
    rc = ER_NOT_FOUND; /* sealed with a key of the subject that was forgotten */
    sodium_memzero(key, sizeof key);
  }
  if (rc == ER_NOT_FOUND) {
    ev->forgotten = 1;
    ev->metadata = ev->data = NULL;
    ev->metadata_len = ev->data_len = 0;
    return ER_OK;
  }
  if (rc != ER_OK) return rc;
  if (plain > *cap) {
    uint8_t *nb = realloc(*buf, plain);
    if (!nb) {
      sodium_memzero(key, sizeof key);
      return er__fail(err, ER_NOMEM, "out of memory");
    }
    *buf = nb;
    *cap = plain;
  }
  adl = record_ad(ad, ev->id, ev->version, ev->stream, ev->stream_len,
                  ev->subject, ev->subject_len);
  rc = crypto_aead_xchacha20poly1305_ietf_decrypt_detached(
      *buf, NULL, info->box + KID + NONCE, plain, info->box + KID + NONCE + plain,
      ad, adl, info->box + KID, key);
  sodium_memzero(key, sizeof key);
  if (rc != 0) {
    rc = er__fail(err, ER_CORRUPTION,
                  "the encrypted data of the event at position %llu does not "
                  "decrypt (damaged, or moved from another event)",
                  (unsigned long long)ev->position);
    if (err) err->position = ev->position;
    return rc;
  }
  /* (no pointer into an empty buffer: it may be NULL) */
  ev->metadata = ev->metadata_len ? *buf : NULL;
  ev->data = ev->data_len ? *buf + ev->metadata_len : NULL;
  return ER_OK;
}

/* ---- er_forget ------------------------------------------------------------ */

int er_forget(er_store *s, const char *subject, size_t subject_len,
              int *forgotten, er_error *err) {
  rocksdb_writebatch_t *wb;
  rocksdb_writeoptions_t *wo;
  rocksdb_flushoptions_t *fo;
  rocksdb_iterator_t *it;
  uint8_t prefix[ER_MAX_SUBJECT_LEN + 1];
  char *rerr = NULL, *val;
  size_t vlen = 0;
  int rc = ER_OK;
  if (forgotten) *forgotten = 0;
  if (s->read_only)
    return er__fail(err, ER_INVALID, "%s: the store is open read-only", s->path);
  if (!s->has_key)
    return er__fail(err, ER_INVALID, "%s: the store was opened without a key", s->path);
  if ((rc = er__check_subject(subject, subject_len, err)) != ER_OK) return rc;
  wb = rocksdb_writebatch_create();
  er__lock(s);
  val = rocksdb_get_cf(s->db, s->ropts, s->cf[CF_KEYS], subject, subject_len,
                       &vlen, &rerr);
  if (rerr) {
    rc = er__rocks_fail(err, "reading a subject key", rerr);
    goto done;
  }
  if (val) {
    sodium_memzero(val, vlen);
    rocksdb_free(val);
    if (forgotten) *forgotten = 1;
  }
  rocksdb_writebatch_delete_cf(wb, s->cf[CF_KEYS], subject, subject_len);
  /* the snapshots of the subject's streams were built from its data */
  memcpy(prefix, subject, subject_len);
  prefix[subject_len] = 0;
  it = rocksdb_create_iterator_cf(s->db, s->ropts, s->cf[CF_SUBJECTS]);
  for (rocksdb_iter_seek(it, (const char *)prefix, subject_len + 1);
       rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
    size_t klen;
    const char *k = rocksdb_iter_key(it, &klen);
    if (klen <= subject_len + 1 || memcmp(k, prefix, subject_len + 1) != 0) break;
    rocksdb_writebatch_delete_cf(wb, s->cf[CF_SNAPSHOTS], k + subject_len + 1,
                                 klen - subject_len - 1);
  }
  rocksdb_iter_get_error(it, &rerr);
  rocksdb_iter_destroy(it);
  if (rerr) {
    rc = er__rocks_fail(err, "reading the subjects", rerr);
    goto done;
  }
  wo = rocksdb_writeoptions_create();
  rocksdb_writeoptions_set_sync(wo, 1);
  rocksdb_write(s->db, wo, wb, &rerr);
  rocksdb_writeoptions_destroy(wo);
  if (rerr) {
    rc = er__rocks_fail(err, "deleting a subject key", rerr);
    goto done;
  }
  pthread_mutex_lock(&s->key_lock);
  cache_set(s, subject, subject_len, NULL, NULL); /* wipes the cached key */
  pthread_mutex_unlock(&s->key_lock);
  /* out of the memtable into a table file where the deletion is; er_compact
   * then rewrites the family without the key and drops the old WAL files */
  fo = rocksdb_flushoptions_create();
  rocksdb_flushoptions_set_wait(fo, 1);
  rocksdb_flush_cf(s->db, fo, s->cf[CF_KEYS], &rerr);
  rocksdb_flushoptions_destroy(fo);
  if (rerr) rc = er__rocks_fail(err, "flushing the keys", rerr);
done:
  er__unlock(s);
  rocksdb_writebatch_destroy(wb);
  return rc;
}

/* ---- sealed values (snapshots) --------------------------------------------- */

int er_seal(er_store *s, const char *subject, size_t subject_len,
            const void *ad, size_t ad_len, const void *plain, size_t len,
            void **out, size_t *out_len, er_error *err) {
  uint8_t key[ER_DATA_KEY_LEN], kid[KID], *box;
  int rc;
  *out = NULL;
  *out_len = 0;
  if ((rc = er__check_subject(subject, subject_len, err)) != ER_OK) return rc;
  if ((rc = er__key_get(s, subject, subject_len, key, kid, err)) != ER_OK) {
    if (rc == ER_NOT_FOUND)
      er__fail(err, ER_NOT_FOUND, "subject '%.*s' has no key",
               (int)(subject_len > 100 ? 100 : subject_len), subject);
    return rc;
  }
  box = malloc(len + ER_SEAL_OVERHEAD);
  if (!box) {
    sodium_memzero(key, sizeof key);
    return er__fail(err, ER_NOMEM, "out of memory");
  }
  memcpy(box, kid, KID);
  randombytes_buf(box + KID, NONCE);
  crypto_aead_xchacha20poly1305_ietf_encrypt(box + KID + NONCE, NULL, plain, len,
                                             ad, ad_len, NULL, box + KID, key);
  sodium_memzero(key, sizeof key);
  *out = box;
  *out_len = len + ER_SEAL_OVERHEAD;
  return ER_OK;
}

int er_unseal(er_store *s, const char *subject, size_t subject_len,
              const void *ad, size_t ad_len, const void *sealed, size_t len,
              void **out, size_t *out_len, er_error *err) {
  uint8_t key[ER_DATA_KEY_LEN], kid[KID], *plain;
  const uint8_t *b = sealed;
  int rc;
  *out = NULL;
  *out_len = 0;
  if ((rc = er__check_subject(subject, subject_len, err)) != ER_OK) return rc;
  if (len < ER_SEAL_OVERHEAD) return er__fail(err, ER_CORRUPTION, "a sealed value is too short");
  rc = er__key_get(s, subject, subject_len, key, kid, err);
  if (rc == ER_OK && memcmp(kid, b, KID) != 0) {
    sodium_memzero(key, sizeof key);
    rc = ER_NOT_FOUND;
  }
  if (rc != ER_OK) {
    if (rc == ER_NOT_FOUND)
      er__fail(err, ER_NOT_FOUND, "subject '%.*s' was forgotten",
               (int)(subject_len > 100 ? 100 : subject_len), subject);
    return rc;
  }
  plain = malloc(len - ER_SEAL_OVERHEAD + 1);
  if (!plain) {
    sodium_memzero(key, sizeof key);
    return er__fail(err, ER_NOMEM, "out of memory");
  }
  rc = crypto_aead_xchacha20poly1305_ietf_decrypt(
      plain, NULL, NULL, b + KID + NONCE, len - KID - NONCE, ad, ad_len, b + KID,
      key);
  sodium_memzero(key, sizeof key);
  if (rc != 0) {
    free(plain);
    return er__fail(err, ER_CORRUPTION, "a sealed value does not decrypt");
  }
  *out = plain;
  *out_len = len - ER_SEAL_OVERHEAD;
  return ER_OK;
}
