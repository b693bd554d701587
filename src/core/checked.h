/* checked.h — overflow-checked size arithmetic (header-only), for every size product. */
#ifndef CLATTN_CHECKED_H
#define CLATTN_CHECKED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Each helper stores a op b in *out and returns true, or returns false (and
 * leaves *out unspecified) when the exact result does not fit the type. */
static inline bool clattn__mul_size(size_t a, size_t b, size_t *out) {
  return !__builtin_mul_overflow(a, b, out);
}
static inline bool clattn__add_size(size_t a, size_t b, size_t *out) {
  return !__builtin_add_overflow(a, b, out);
}
static inline bool clattn__mul_u64(uint64_t a, uint64_t b, uint64_t *out) {
  return !__builtin_mul_overflow(a, b, out);
}
static inline bool clattn__add_u64(uint64_t a, uint64_t b, uint64_t *out) {
  return !__builtin_add_overflow(a, b, out);
}
static inline bool clattn__mul_i64(int64_t a, int64_t b, int64_t *out) {
  return !__builtin_mul_overflow(a, b, out);
}
static inline bool clattn__add_i64(int64_t a, int64_t b, int64_t *out) {
  return !__builtin_add_overflow(a, b, out);
}

/* Exact 128-bit unsigned products (counts that can pass 2^64). */
__extension__ typedef unsigned __int128 clattn__u128;

/* a·b·c (size_t), false on overflow. */
static inline bool clattn__mul3_size(size_t a, size_t b, size_t c, size_t *out) {
  size_t t;
  return clattn__mul_size(a, b, &t) && clattn__mul_size(t, c, out);
}

#endif
