/* names.c -- the rules of the names an event carries: a stream id and an
 * event type are 1 to ER_MAX_STREAM_LEN (ER_MAX_TYPE_LEN) bytes without a
 * NUL; a stream's category is the text before its first '-'. */
#include "internal.h"

size_t er_category(const char *stream, size_t stream_len) {
  const char *dash = stream_len ? memchr(stream, '-', stream_len) : NULL;
  return dash ? (size_t)(dash - stream) : stream_len;
}

int er__check_stream(const char *stream, size_t len, er_error *err) {
  if (!stream || len == 0)
    return er__fail(err, ER_INVALID, "stream id must not be empty");
  if (len > ER_MAX_STREAM_LEN)
    return er__fail(err, ER_INVALID,
                    "stream id is %zu bytes long; the limit is %d", len,
                    ER_MAX_STREAM_LEN);
  if (memchr(stream, 0, len))
    return er__fail(err, ER_INVALID, "stream id must not contain NUL bytes");
  return ER_OK;
}

int er__check_type(const er_new_event *e, size_t index, er_error *err) {
  if (!e->type || e->type_len == 0)
    return er__fail(err, ER_INVALID, "event %zu: type must not be empty",
                    index + 1);
  if (e->type_len > ER_MAX_TYPE_LEN)
    return er__fail(err, ER_INVALID,
                    "event %zu: type is %zu bytes long; the limit is %d",
                    index + 1, e->type_len, ER_MAX_TYPE_LEN);
  if (memchr(e->type, 0, e->type_len))
    return er__fail(err, ER_INVALID,
                    "event %zu: type must not contain NUL bytes", index + 1);
  return ER_OK;
}

int er__check_subject(const char *subject, size_t len, er_error *err) {
  if (!subject || len == 0)
    return er__fail(err, ER_INVALID, "subject must not be empty");
  if (len > ER_MAX_SUBJECT_LEN)
    return er__fail(err, ER_INVALID, "subject is %zu bytes long; the limit is %d",
                    len, ER_MAX_SUBJECT_LEN);
  if (memchr(subject, 0, len))
    return er__fail(err, ER_INVALID, "subject must not contain NUL bytes");
  return ER_OK;
}
