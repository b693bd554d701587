/* util.h — small leaf helpers: files, string appends, case-insensitive search, splitmix64. */
#ifndef CLATTN_UTIL_H
#define CLATTN_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* Reads a whole regular file into a NUL-terminated malloc'ed buffer (length
 * in *len when len is not NULL); NULL when absent, unreadable or not a
 * regular file (a FIFO is never opened for reading). */
char *clattn__read_file(const char *path, size_t *len);

/* Appends printf-style text to the NUL-terminated buf of capacity cap
 * (truncating at cap). */
void clattn__append(char *buf, size_t cap, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Sorts v[0..n) ascending (timings: medians of runs). */
void clattn__sort_doubles(double *v, size_t n);

/* 1 when needle occurs in hay, ignoring ASCII case. */
int clattn__strcasestr_bool(const char *hay, const char *needle);

/* splitmix64: advances *state by the golden gamma and returns the mixed
 * value (the one generator of the library: BigBird blocks, FAVOR+ features,
 * the tuner's sampling and data). */
static inline uint64_t clattn__splitmix64(uint64_t *state) {
  uint64_t z = (*state += UINT64_C(0x9e3779b97f4a7c15));
  z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
  z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
  return z ^ (z >> 31);
}

#endif
